"""The one place that knows the SmartMCA protocol, shared by the sync and async transports.

Request building and input validation, response parsing, error mapping and retry
classification live here once. A transport only moves bytes: it turns a :class:`PreparedRequest`
into a :class:`RawResponse` or raises :class:`~airflow_provider_smartmca.errors.SmartMCAConnectionError`.
"""

from __future__ import annotations

import enum
import itertools
import json
import logging
import random
import re
import time
import unicodedata
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

from airflow_provider_smartmca import __version__
from airflow_provider_smartmca.client.contract import EXECUTION_STATUSES, http_date
from airflow_provider_smartmca.client.endpoints import API_PREFIX, ENDPOINTS, Endpoint
from airflow_provider_smartmca.client.settings import ClientSettings, check_number
from airflow_provider_smartmca.errors import (
    SmartMCAAuthError,
    SmartMCABadRequestError,
    SmartMCAConnectionError,
    SmartMCAContractError,
    SmartMCAError,
    SmartMCAExecutionError,
    SmartMCAInvalidResponseError,
    SmartMCANotFoundError,
    SmartMCARateLimitError,
    SmartMCAScopeError,
    SmartMCAServerError,
    SmartMCAValidationError,
)

log = logging.getLogger("airflow_provider_smartmca.client")
_UNREADABLE = object()
T = TypeVar("T")

USER_AGENT = f"airflow-provider-smartmca/{__version__}"
RETRYABLE_SERVER_STATUSES = frozenset({500, 502, 503, 504})
MAX_ID_LENGTH = 256
# ";" starts path parameters on some servers (Java's ";jsessionid="), which then drop the rest.
_FORBIDDEN_IN_ID = ("/", "\\", "..", "?", "#", "%", ";")
SORT_ORDERS = ("asc", "desc")
_HEADERS = {"Accept": "application/json", "User-Agent": USER_AGENT}
_SNIPPET = 300  # characters of server text in a message, counted after redaction
_SCOPE_LIMIT = 100


@dataclass(frozen=True)
class PreparedRequest:
    """
    A validated request, ready for any transport. ``headers`` holds the key: it is kept out of ``repr``.

    :param endpoint: the endpoint it calls.
    :param url: the absolute URL, query excluded.
    :param path: the URL path, for messages.
    :param params: the query parameters.
    :param body: the JSON body, or None.
    :param headers: the request headers, Authorization included.
    """

    endpoint: Endpoint
    url: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def label(self) -> str:
        """``name: METHOD path``, how every message names the request."""
        return f"{self.endpoint.name}: {self.endpoint.method} {self.path}"

    def http_arguments(self) -> dict[str, Any]:
        """The arguments of ``request()`` that requests and aiohttp share; redirects are not followed
        (one could carry the key elsewhere)."""
        arguments = dict(method=self.endpoint.method, url=self.url, params=self.params or None)
        return dict(arguments, json=self.body, headers=self.headers, allow_redirects=False)

    def context(self, **more: Any) -> dict[str, Any]:
        """The keyword arguments of an error about this request: operation, method, path and ``more``."""
        return dict(operation=self.endpoint.name, method=self.endpoint.method, path=self.path, **more)


@dataclass(frozen=True)
class RawResponse:
    """What a transport received: the status, lower-cased headers and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


#: Redaction removes every run of this many consecutive characters of the key (the whole key when
#: it is shorter), wherever it appears: a key cut short, by a server, a proxy or a snippet, is
#: caught as surely as a whole one.
REDACT_PART = 8


def _key_windows(secret: str, size: int, step: int = 1) -> list[str]:
    """The key's runs of ``size`` characters that start every ``step``, in the key and its URL form
    (percent-encoded, as a server echoing the key into a URL, a redirect, writes it)."""
    forms = {secret, quote(secret, safe="")}
    return sorted({form[i : i + size] for form in forms for i in range(0, len(form) - size + 1, step)})


def _mask_pieces(text: str, pieces: list[str]) -> str:
    """
    Replace each run of ``text`` covered by occurrences of ``pieces`` (overlapping too: a lookahead
    matches at every start; all pieces are equally long) with one mask.

    The mask is made of a character the key lacks, so no window across a mask spells a piece;
    every window left between masks was searched and held none: the result holds no piece.
    """
    if not any(piece in text for piece in pieces):
        return text
    key_chars = set("".join(pieces))
    mask = 3 * next(
        ch for ch in itertools.chain("*#", map(chr, itertools.count(0xE000))) if ch not in key_chars
    )
    n = len(pieces[0])
    out: list[str] = []
    copied_to, run_end = 0, -1
    for match in re.finditer("(?=" + "|".join(map(re.escape, pieces)) + ")", text):
        if match.start() > run_end:  # a new run: keep the text before it
            out += [text[copied_to : match.start()], mask]
        run_end = copied_to = match.start() + n
    out.append(text[copied_to:])
    return "".join(out)


def redact(text: str | bytes, secret: str | None, limit: int | None = None) -> str:
    """
    Remove the API key from server text, whole and in part, and only then shorten it.

    Every run of the text covered by pieces of :data:`REDACT_PART` consecutive characters of the
    key becomes ``***``, so the result never holds that many consecutive characters of the key.
    Cutting after redacting cannot leave a piece of the key behind, as cutting first would. Every
    message built from server text goes through here (or :func:`load_json` for JSON bodies).

    :param text: server text; bytes are decoded as UTF-8, bad bytes replaced.
    :param secret: the API key; None or empty redacts nothing.
    :param limit: the result's maximum length. Only a bounded prefix is read: ``limit`` characters
        plus the key's length, so a key overlapping the cut is seen whole.
    """
    secret = secret or ""
    if limit is not None:
        keep = limit + len(secret)
        text = text[: 4 * keep] if isinstance(text, bytes) else text[:keep]  # UTF-8: <= 4 bytes a char
    result = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    if secret:
        result = _mask_pieces(result, _key_windows(secret, min(REDACT_PART, len(secret))))
    return result if limit is None else result[:limit]


def _redact_tree(value: Any, pieces: list[str]) -> Any:
    if isinstance(value, str):
        return _mask_pieces(value, pieces)
    if isinstance(value, list):
        return [_redact_tree(item, pieces) for item in value]
    if isinstance(value, dict):
        return {_mask_pieces(str(k), pieces): _redact_tree(v, pieces) for k, v in value.items()}
    return value


def load_json(body: bytes, secret: str | None) -> Any:
    """
    Parse a JSON body (UTF-8, as RFC 8259 requires) with the API key redacted, as :func:`redact`
    does, from every string in it, object keys included: what a server echoes must reach no XCom,
    trigger event or message.

    The usual case costs a few searches of the raw text. Every n-character piece of the key holds
    one of its ``step``-character blocks that start at a multiple of ``step``; a text without any
    block and without an escape that could spell one (``\\uXXXX``; any escape if the key has a
    character JSON escapes) holds no piece, nor does any string parsed from it.

    :raises ValueError: the body is not UTF-8 JSON, or is nested too deeply to parse.
    """
    text = body.decode("utf-8-sig")
    try:
        data = json.loads(text)
        if not secret:
            return data
        n = min(REDACT_PART, len(secret))
        step = (n + 1) // 2
        escapable = any(ch in '"\\/' or ch < " " for ch in secret)
        blocks = _key_windows(secret, step, step)
        if "\\u" not in text and not (escapable and "\\" in text) and not any(b in text for b in blocks):
            return data
        return _redact_tree(data, _key_windows(secret, n))
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


# --- input validation ---------------------------------------------------------------------------


def validate_id(field_name: str, value: Any, operation: str | None = None) -> str:
    """
    Check an identifier that goes into a URL path or a body: ``value``, or a validation error
    naming ``field_name`` and what :func:`id_problem` found.

    Each id is checked once, by the boundary that receives it, before any request:
    :func:`build_request` checks path ids, :func:`list_executions_query` the list filters, a hook
    method the ids of its POST body, an operator its own arguments (at parse time when static,
    once rendered otherwise), a trigger its own on creation, and ``start_once`` a stored record's.
    """
    if (problem := id_problem(value)) is not None:
        raise SmartMCAValidationError(field_name, problem, operation=operation)
    return value


def id_problem(value: Any) -> str | None:
    """
    What is wrong with ``value`` as an identifier, or None.

    It must be a non-empty string, without surrounding white space, control characters, or any of
    ``/ \\ .. ? # % ;``, and not ``.``, so that the server receives exactly this path segment and it
    can never reach another endpoint: URL normalisation (requests/urllib3 and aiohttp's yarl alike)
    removes a ``.`` segment, so ``get_execution(".")`` would read ``/workflows/executions/``, the list.
    The NFKC form is checked too: a server or proxy that folds compatibility characters turns a
    fullwidth full stop (U+FF0E) into a dot segment, a fullwidth solidus (U+FF0F) into a slash.
    """
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not value.strip():
        return "must not be empty or white space"
    if value != value.strip():
        return "must not start or end with white space"
    if len(value) > MAX_ID_LENGTH:
        return f"is longer than {MAX_ID_LENGTH} characters"
    for form in dict.fromkeys((value, unicodedata.normalize("NFKC", value))):
        folded = "" if form == value else " (after Unicode compatibility folding)"
        if form == ".":
            return f"is a dot segment{folded}, which URL normalisation removes"
        if (token := next((t for t in _FORBIDDEN_IN_ID if t in form), None)) is not None:
            return f"must not contain {token!r}{folded}: {value!r}"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        return "must not contain control characters"
    return None


def check_ids(operation: str | None, **ids: Any) -> dict[str, str]:
    """The ids given, None ones left out, each checked by :func:`validate_id`."""
    return {name: validate_id(name, value, operation) for name, value in ids.items() if value is not None}


def check_choice(name: str, value: Any, choices: tuple[str, ...], operation: str | None = None) -> str:
    """``value`` when it is one of ``choices``; else a validation error naming ``name`` and the choices."""
    if value not in choices:
        problem = f"must be one of {', '.join(choices)}; got {value!r}"
        raise SmartMCAValidationError(name, problem, operation=operation)
    return value


def list_executions_query(
    workflow_type: str | None = None,
    entity_type: str | None = None,
    entity_id: str | None = None,
    status: str | None = None,
    page: int = 1,
    limit: int = 20,
    sort_by: str = "startedAt",
    sort_order: str = "desc",
) -> dict[str, str]:
    """Validate the ``list_executions`` arguments and return its query parameters."""
    op = "list_executions"
    query = check_ids(op, workflow_type=workflow_type, entity_type=entity_type, entity_id=entity_id)
    if status is not None:
        query["status"] = check_choice("status", status, EXECUTION_STATUSES, op)
    page, limit = check_number("page", page, operation=op), check_number("limit", limit, operation=op)
    query.update(page=str(page), limit=str(limit), sort_by=validate_id("sort_by", sort_by, op))
    query["sort_order"] = check_choice("sort_order", sort_order, SORT_ORDERS, op)
    return query


def build_request(
    settings: ClientSettings,
    name: str,
    *,
    path_params: Mapping[str, Any] | None = None,
    query: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
) -> PreparedRequest:
    """
    Build the request for endpoint ``name``: scope check, id validation and encoding, headers.

    :raises SmartMCAScopeError: the connection declares scopes and lacks the endpoint's.
    :raises SmartMCAValidationError: an id is invalid.
    """
    endpoint = ENDPOINTS[name]
    if settings.scopes is not None and endpoint.scope not in settings.scopes:
        raise SmartMCAScopeError(
            f"{name} needs scope {endpoint.scope!r}, which the connection does not declare "
            f"(declared: {', '.join(sorted(settings.scopes))}). Use an API key with that scope and "
            "add it to the connection extra 'scopes'.",
            scope=endpoint.scope,
            operation=name,
            method=endpoint.method,
        )
    params = dict(path_params or {})
    if set(params) != set(endpoint.path_params):
        raise TypeError(f"{name} takes path parameters {endpoint.path_params}, got {tuple(params)}")
    ids = {key: quote(validate_id(key, value, name), safe="") for key, value in params.items()}
    path = API_PREFIX + endpoint.path.format(**ids)
    headers = {"Authorization": f"Bearer {settings.api_key}", **_HEADERS}
    if body is not None:
        headers["Content-Type"] = "application/json"
    json_body = None if body is None else dict(body)
    return PreparedRequest(endpoint, settings.base_url + path, path, dict(query or {}), json_body, headers)


# --- responses and errors -------------------------------------------------------------------------


# Delta-seconds are ASCII digits (RFC 9110); a fraction is tolerated. Never float() alone: it
# reads "nan", "inf", "-5", "1_0" and non-ASCII digits, and nan slips through min() and max().
_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def parse_retry_after(value: str | None, cap: float) -> float | None:
    """
    Parse ``Retry-After`` (seconds, or an HTTP date) and cap it: a finite wait from 0 to ``cap``,
    or None when absent or unreadable. Never raises, whatever the server sent.
    """
    text = (value or "").strip()
    if _DELTA_SECONDS.fullmatch(text):
        seconds = float(text)  # only digits: finite, or inf for hundreds of them (capped below)
    else:
        if (when := http_date(text)) is None:
            return None
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), cap)


def _error_json(raw: RawResponse) -> dict[str, Any]:
    """An error response's JSON object, parsed once; empty when the body is not one."""
    with suppress(ValueError, RecursionError):
        data = json.loads(raw.body)
        return data if isinstance(data, dict) else {}
    return {}


def _server_message(raw: RawResponse, data: dict[str, Any], secret: str | None) -> str:
    """
    The server's own error text, key redacted and then shortened: ``error.message`` from the JSON
    body, else a body snippet.
    """
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        text: str | bytes = str(error["message"])
    elif isinstance(error, str) and error:
        text = error
    elif data.get("message"):
        text = str(data["message"])
    elif _looks_like_html(raw):
        return "an HTML page instead of a JSON error (a proxy or gateway answered?)"
    else:
        text = raw.body
    return redact(text, secret, limit=_SNIPPET).strip() or "(empty body)"


def _looks_like_html(raw: RawResponse) -> bool:
    return "html" in raw.headers.get("content-type", "") or raw.body[:1024].lstrip()[:1] == b"<"


def _required_scope(data: dict[str, Any], default: str, secret: str | None) -> str:
    """The scope a 403 names (server text: redacted, shortened), else the endpoint's own."""
    error = data.get("error")
    scope = error.get("requiredScope") if isinstance(error, dict) else None
    return redact(str(scope), secret, limit=_SCOPE_LIMIT) if scope else default


def error_for_status(request: PreparedRequest, raw: RawResponse, settings: ClientSettings) -> SmartMCAError:
    """Map an error response to the matching :class:`SmartMCAError` subclass, key redacted."""
    data = _error_json(raw)
    server = _server_message(raw, data, settings.api_key)
    where = f"{request.label} returned HTTP {raw.status}: {server}"
    ctx = request.context(status=raw.status, server_message=server)
    status = raw.status
    if status == 401:
        return SmartMCAAuthError(f"{where}. Check the API key (the connection's password).", **ctx)
    if status == 403:
        scope = _required_scope(data, request.endpoint.scope, settings.api_key)
        return SmartMCAScopeError(f"{where}. The API key lacks scope {scope!r}.", scope=scope, **ctx)
    if status == 404:
        return SmartMCANotFoundError(where, **ctx)
    if status == 429:
        retry_after = parse_retry_after(raw.headers.get("retry-after"), settings.retry_after_cap)
        return SmartMCARateLimitError(f"{where} (Retry-After: {retry_after})", retry_after=retry_after, **ctx)
    if status >= 500:
        return SmartMCAServerError(where, **ctx)
    if 300 <= status < 400:
        location = redact(raw.headers.get("location", "?"), settings.api_key, limit=_SNIPPET)
        return SmartMCAInvalidResponseError(f"{where}; unexpected redirect to {location}", **ctx)
    return SmartMCABadRequestError(where, **ctx)


def parse_response(request: PreparedRequest, raw: RawResponse, settings: ClientSettings) -> Any:
    """
    Turn a response into the endpoint's typed object (:mod:`~airflow_provider_smartmca.client.contract`),
    or raise the matching error. An empty 2xx to a POST is left to the contract, which decides what
    it means.

    :raises SmartMCAError: a subclass chosen by :func:`error_for_status`.
    :raises SmartMCAInvalidResponseError: a body that is not JSON (an HTML page, a truncated body):
        transient, as a proxy or a dropped connection causes it.
    :raises SmartMCAContractError: JSON of the wrong shape: the API is not what the provider expects.
    """
    if not 200 <= raw.status < 300:
        raise error_for_status(request, raw, settings)
    endpoint, data = request.endpoint, None
    if raw.body.strip() or endpoint.idempotent:
        if _looks_like_html(raw):
            raise _unreadable(request, raw, "an HTML page instead of JSON")
        data = _UNREADABLE
        # Suppressed, not handled: raised in an except, our error would keep the ValueError as its
        # __context__, whose .doc/.object hold the whole body (it may echo the key).
        with suppress(ValueError):
            data = load_json(raw.body, settings.api_key)
        if data is _UNREADABLE:
            snippet = redact(raw.body, settings.api_key, limit=80)
            raise _unreadable(request, raw, f"a body that is not valid JSON (truncated?): {snippet!r}")
    return endpoint.parse(endpoint.name, data, raw.headers)


def _unreadable(request: PreparedRequest, raw: RawResponse, what: str) -> SmartMCAInvalidResponseError:
    """The error for a 2xx body that is not JSON; built only then (a poll's success path stays lean)."""
    return SmartMCAInvalidResponseError(
        f"{request.label} returned HTTP {raw.status} with {what}", **request.context(status=raw.status)
    )


# --- retries: the one policy -------------------------------------------------------------------


#: A read whose answer breaks the contract is sent again this many times at most: a passing glitch
#: (a half-deployed server) may heal, a contract that really differs must fail fast and loudly.
CONTRACT_RETRIES = 2


class Retry(enum.Enum):
    """When a failed request may be tried again: the answer of :func:`when_to_retry`."""

    NOW = "now"  #: send the same request again, after the backoff
    LATER = "later"  #: not this request now, but a later poll, or the task's retry, may succeed
    NEVER = "never"  #: final


def when_to_retry(exc: BaseException, *, idempotent: bool = True, failures: int | None = None) -> Retry:
    """
    The one retry predicate: per-request retries, waits, patient reads and task retries all ask it.

    A 429 or a request that surely never reached the server: NOW, for any method. A 5xx (500, 502,
    503, 504), an unreadable body or a request that may have reached the server: NOW only when
    ``idempotent`` (re-sending a POST could start a second execution), else LATER; other 5xx are
    LATER. A contract error is NOW for the first :data:`CONTRACT_RETRIES` failures of a read, then
    NEVER. An execution that failed or a wait that timed out is LATER (a task retry may do better).
    Anything else is NEVER: bad input, 400/401/403/404, a bad connection, an ambiguous start.

    :param idempotent: whether sending the request again is harmless (a GET); a task retry asks
        with False, as it repeats a POST.
    :param failures: failures in a row of this request, this one included; None when the caller's
        call has already had its retries (then a contract error is final).
    """
    if isinstance(exc, SmartMCAContractError):
        again = idempotent and failures is not None and failures <= CONTRACT_RETRIES
        return Retry.NOW if again else Retry.NEVER
    if isinstance(exc, SmartMCARateLimitError):
        return Retry.NOW
    if isinstance(exc, SmartMCAConnectionError):
        return Retry.NOW if idempotent or not exc.request_sent else Retry.LATER
    if isinstance(exc, SmartMCAServerError):
        return Retry.NOW if idempotent and exc.status in RETRYABLE_SERVER_STATUSES else Retry.LATER
    if isinstance(exc, SmartMCAInvalidResponseError):
        return Retry.NOW if idempotent else Retry.LATER
    return Retry.LATER if isinstance(exc, SmartMCAExecutionError) else Retry.NEVER


def backoff_seconds(settings: ClientSettings, attempt: int, exc: BaseException | None) -> float:
    """The one backoff before retry ``attempt`` (1-based): ``Retry-After`` when given (capped by
    ``retry_after_cap``), else exponential from ``retry_min_wait`` up to ``retry_max_wait``, with jitter."""
    if isinstance(exc, SmartMCARateLimitError) and exc.retry_after is not None:
        return exc.retry_after
    base = min(settings.retry_max_wait, settings.retry_min_wait * (2 ** min(attempt - 1, 64)))
    return base / 2 + random.uniform(0, base / 2)


@dataclass(slots=True, eq=False)
class Deadline:
    """
    A point on the monotonic clock that a caller passes down and every layer spends from: each
    request's timeout is at most what is left, no backoff sleeps past it, and retries stop there.

    :param at: ``time.monotonic()`` seconds.
    """

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        """Seconds left, 0 once spent."""
        return max(0.0, self.at - time.monotonic())


# The deadline in force, and whether reads inside are patient.
_SPENDING: ContextVar[tuple[Deadline, bool] | None] = ContextVar("smartmca_spending", default=None)


@contextmanager
def spending(deadline: Deadline, *, patient: bool = False, inherit: bool = True) -> Iterator[Deadline]:
    """
    Make every call inside spend from ``deadline`` (the context's, so callees need no argument).

    :param patient: a read is retried through transient failures until the deadline, whatever
        ``max_retries``; otherwise ``max_retries`` bounds it too.
    :param inherit: the deadline is cut to an enclosing one, if any: an inner layer never has more
        time than its caller. False starts afresh (a start's POST and lookup have budgets of their own).
    :return: the deadline in force.
    """
    outer = _SPENDING.get()
    if inherit and outer is not None and outer[0].at < deadline.at:
        deadline = outer[0]
    token = _SPENDING.set((deadline, patient))
    try:
        yield deadline
    finally:
        _SPENDING.reset(token)


#: A retry is sent only with at least this much of its deadline left (or the whole ``timeout``, when
#: shorter): one sent with a millisecond left could only time out, hiding the failure before it.
LEAST_RETRY_SECONDS = 0.05


def retrying(
    settings: ClientSettings,
    request: PreparedRequest,
    attempt: Callable[[float | None], T],
    *,
    retry: bool = True,
    timeout: float | None = None,
) -> T:
    """
    The one retry loop: run ``attempt(timeout)`` (send and parse ``request`` once) until it
    succeeds or :func:`when_to_retry` says not now, ``max_retries`` (outside a patient
    :func:`spending`) or the deadline of the enclosing :func:`spending` is spent.

    :param retry: False tries once (a poll loop that asks the predicate itself).
    :param timeout: the caller's own limit per attempt, seconds.
    :raises SmartMCAError: the last failure; or, when the deadline was spent before the first
        attempt, :class:`~airflow_provider_smartmca.errors.SmartMCAConnectionError` (``request_sent=False``).
    """
    deadline, patient = _SPENDING.get() or (None, False)
    idempotent = request.endpoint.idempotent
    failures, last = 0, None
    least = min(settings.timeout, LEAST_RETRY_SECONDS)
    while True:
        seconds = timeout
        if deadline is not None:
            left = deadline.remaining()
            if left <= 0 or (last is not None and left < least):
                raise last or connection_error(
                    request, "not sent: its time budget is spent", request_sent=False
                )
            seconds = min(settings.timeout, left if timeout is None else min(timeout, left))
            if seconds + min(settings.connect_timeout, seconds) > left:
                seconds = left / 2  # a new connection's connect comes on top of the timeout
        try:
            return attempt(seconds)
        except SmartMCAError as exc:
            failures, last = failures + 1, exc
            verdict = when_to_retry(exc, idempotent=idempotent, failures=failures)
            again = verdict is Retry.NOW or (patient and idempotent and verdict is Retry.LATER)
            if not (retry and again and (patient or failures <= settings.max_retries)):
                raise
            wait = backoff_seconds(settings, failures, exc)
            if deadline is not None and wait + least > deadline.remaining():
                log.warning("%s; not retried: its time budget is spent", exc)
                raise
            limit = f"{failures}, patiently" if patient else f"{failures}/{settings.max_retries}"
            log.warning("%s; retry %s in %.1f s", exc, limit, wait)
            time.sleep(wait)


def connection_error(request: PreparedRequest, detail: str, *, request_sent: bool) -> SmartMCAConnectionError:
    """The error a transport raises when no complete response came back."""
    outcome = "the server may have received it" if request_sent else "the server did not receive it"
    return SmartMCAConnectionError(
        f"{request.label} failed: {detail} ({outcome})", request_sent=request_sent, **request.context()
    )


def log_request(request: PreparedRequest) -> None:
    """Debug line for one request; headers (and so the key) are never logged."""
    log.debug("SmartMCA %s %s params=%s", request.endpoint.method, request.path, request.params)
