"""The one place that knows the SmartMCA protocol, shared by the sync and async transports.

Request building and input validation, response parsing, error mapping and retry
classification live here once. A transport only moves bytes: it turns a :class:`PreparedRequest`
into a :class:`RawResponse` or raises :class:`~airflow_provider_smartmca.errors.SmartMCAConnectionError`.
"""

from __future__ import annotations

import json
import logging
import random
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from airflow_provider_smartmca import __version__
from airflow_provider_smartmca.client.endpoints import ENDPOINTS, EXECUTION_STATUSES, Endpoint
from airflow_provider_smartmca.client.settings import ClientSettings
from airflow_provider_smartmca.errors import (
    SmartMCAAuthError,
    SmartMCABadRequestError,
    SmartMCAConnectionError,
    SmartMCAError,
    SmartMCAInvalidResponseError,
    SmartMCANotFoundError,
    SmartMCARateLimitError,
    SmartMCAScopeError,
    SmartMCAServerError,
    SmartMCAValidationError,
)

log = logging.getLogger("airflow_provider_smartmca.client")

USER_AGENT = f"airflow-provider-smartmca/{__version__}"
RETRYABLE_SERVER_STATUSES = frozenset({500, 502, 503, 504})
MAX_ID_LENGTH = 256
_FORBIDDEN_IN_ID = ("/", "\\", "..", "?", "#", "%")
SORT_ORDERS = ("asc", "desc")
_SNIPPET = 300


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


@dataclass(frozen=True)
class RawResponse:
    """What a transport received: the status, lower-cased headers and the raw body."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def redact(text: str, secret: str | None) -> str:
    """Remove the API key from ``text``; every message built from server text goes through here."""
    if secret and len(secret) >= 4:
        return text.replace(secret, "***")
    return text


# --- input validation ---------------------------------------------------------------------------


def validate_id(field_name: str, value: Any, operation: str | None = None) -> str:
    """
    Check an identifier that goes into a URL path or a body.

    It must be a non-empty string, without surrounding white space, control characters, or any of
    ``/ \\ .. ? # %``, so that a path segment can never reach another endpoint.
    """
    if not isinstance(value, str):
        raise SmartMCAValidationError(
            field_name, f"must be a string, got {type(value).__name__}", operation=operation
        )
    if not value.strip():
        raise SmartMCAValidationError(field_name, "must not be empty or white space", operation=operation)
    if value != value.strip():
        raise SmartMCAValidationError(
            field_name, "must not start or end with white space", operation=operation
        )
    if len(value) > MAX_ID_LENGTH:
        raise SmartMCAValidationError(
            field_name, f"is longer than {MAX_ID_LENGTH} characters", operation=operation
        )
    for token in _FORBIDDEN_IN_ID:
        if token in value:
            raise SmartMCAValidationError(
                field_name, f"must not contain {token!r}: {value!r}", operation=operation
            )
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        raise SmartMCAValidationError(field_name, "must not contain control characters", operation=operation)
    return value


def list_executions_query(
    *,
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
    query: dict[str, str] = {}
    for name, value in (
        ("workflow_type", workflow_type),
        ("entity_type", entity_type),
        ("entity_id", entity_id),
    ):
        if value is not None:
            query[name] = validate_id(name, value, op)
    if status is not None:
        if status not in EXECUTION_STATUSES:
            raise SmartMCAValidationError(
                "status", f"must be one of {', '.join(EXECUTION_STATUSES)}; got {status!r}", operation=op
            )
        query["status"] = status
    if isinstance(page, bool) or not isinstance(page, int) or page < 1:
        raise SmartMCAValidationError("page", f"must be an integer >= 1, got {page!r}", operation=op)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise SmartMCAValidationError(
            "limit", f"must be an integer from 1 to 100, got {limit!r}", operation=op
        )
    if sort_order not in SORT_ORDERS:
        raise SmartMCAValidationError(
            "sort_order", f"must be 'asc' or 'desc', got {sort_order!r}", operation=op
        )
    query.update(
        page=str(page), limit=str(limit), sort_by=validate_id("sort_by", sort_by, op), sort_order=sort_order
    )
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
    path = endpoint.path.format(
        **{key: quote(validate_id(key, value, name), safe="") for key, value in params.items()}
    )
    full_path = settings.api_root[len(settings.base_url) :] + path
    headers = {
        "Authorization": f"Bearer {settings.api_key}",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }
    if body is not None:
        headers["Content-Type"] = "application/json"
    return PreparedRequest(
        endpoint=endpoint,
        url=settings.api_root + path,
        path=full_path,
        params=dict(query or {}),
        body=dict(body) if body is not None else None,
        headers=headers,
    )


# --- responses and errors -------------------------------------------------------------------------


def parse_retry_after(value: str | None, cap: float) -> float | None:
    """Parse ``Retry-After`` (seconds, or an HTTP date) and cap it; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime  # rare path; keeps DAG-parse imports light

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - datetime.now(timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), cap)


def _server_message(raw: RawResponse) -> str:
    """The server's own error text: ``error.message`` from the JSON body, else a short body snippet."""
    try:
        data = json.loads(raw.body)
    except ValueError:
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        if data.get("message"):
            return str(data["message"])
    text = raw.body.decode("utf-8", "replace").strip()
    if _looks_like_html(raw):
        return "an HTML page instead of a JSON error (a proxy or gateway answered?)"
    return text[:_SNIPPET] or "(empty body)"


def _looks_like_html(raw: RawResponse) -> bool:
    return "html" in raw.headers.get("content-type", "") or raw.body.lstrip()[:1] == b"<"


def _required_scope(raw: RawResponse, default: str) -> str:
    try:
        error = json.loads(raw.body).get("error", {})
        return str(error.get("requiredScope") or default)
    except (ValueError, AttributeError):
        return default


def error_for_status(request: PreparedRequest, raw: RawResponse, settings: ClientSettings) -> SmartMCAError:
    """Map an error response to the matching :class:`SmartMCAError` subclass, key redacted."""
    endpoint = request.endpoint
    server = redact(_server_message(raw), settings.api_key)
    where = f"{endpoint.name}: {endpoint.method} {request.path} returned HTTP {raw.status}: {server}"
    ctx: dict[str, Any] = dict(
        operation=endpoint.name,
        method=endpoint.method,
        path=request.path,
        status=raw.status,
        server_message=server,
    )
    status = raw.status
    if status == 401:
        return SmartMCAAuthError(f"{where}. Check the API key (the connection's password).", **ctx)
    if status == 403:
        scope = _required_scope(raw, endpoint.scope)
        return SmartMCAScopeError(f"{where}. The API key lacks scope {scope!r}.", scope=scope, **ctx)
    if status == 404:
        return SmartMCANotFoundError(where, **ctx)
    if status == 429:
        retry_after = parse_retry_after(raw.headers.get("retry-after"), settings.retry_after_cap)
        return SmartMCARateLimitError(f"{where} (Retry-After: {retry_after})", retry_after=retry_after, **ctx)
    if status >= 500:
        return SmartMCAServerError(where, **ctx)
    if 300 <= status < 400:
        location = raw.headers.get("location", "?")
        return SmartMCAInvalidResponseError(f"{where}; unexpected redirect to {location}", **ctx)
    return SmartMCABadRequestError(where, **ctx)


# Fields a successful response must carry, per endpoint: a missing one is an invalid response.
_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "list_workflows": ("data",),
    "list_executions": ("data",),
    "trigger_workflow": ("executionId",),
    "get_execution": ("executionId", "status"),
    "get_workflow": ("id",),
}


def parse_response(request: PreparedRequest, raw: RawResponse, settings: ClientSettings) -> dict[str, Any]:
    """
    Return the response's JSON object, or raise the matching error.

    :raises SmartMCAError: a subclass chosen by :func:`error_for_status`.
    :raises SmartMCAInvalidResponseError: non-JSON, HTML, truncated or incomplete bodies.
    """
    if not 200 <= raw.status < 300:
        raise error_for_status(request, raw, settings)
    endpoint = request.endpoint
    where = f"{endpoint.name}: {endpoint.method} {request.path} returned HTTP {raw.status} with"
    ctx: dict[str, Any] = dict(
        operation=endpoint.name, method=endpoint.method, path=request.path, status=raw.status
    )
    if _looks_like_html(raw):
        raise SmartMCAInvalidResponseError(f"{where} an HTML page instead of JSON", **ctx)
    try:
        data = json.loads(raw.body)
    except ValueError:
        snippet = redact(raw.body[:80].decode("utf-8", "replace"), settings.api_key)
        raise SmartMCAInvalidResponseError(
            f"{where} a body that is not valid JSON (truncated?): {snippet!r}", **ctx
        ) from None
    if not isinstance(data, dict):
        raise SmartMCAInvalidResponseError(f"{where} JSON that is not an object", **ctx)
    for name in _REQUIRED_FIELDS.get(endpoint.name, ()):
        if data.get(name) in (None, ""):
            raise SmartMCAInvalidResponseError(f"{where} no {name!r} field", **ctx)
    if "data" in _REQUIRED_FIELDS.get(endpoint.name, ()) and not isinstance(data["data"], list):
        raise SmartMCAInvalidResponseError(f"{where} a 'data' field that is not a list", **ctx)
    return data


# --- retries ------------------------------------------------------------------------------------


def should_retry(endpoint: Endpoint, exc: BaseException) -> bool:
    """
    Whether a failed attempt may be sent again.

    A 429 or a request that surely never reached the server is retried for any method. A 5xx
    or a request that may have reached the server is retried only for idempotent endpoints
    (GET): re-sending a POST there could start a second execution.
    """
    if isinstance(exc, SmartMCARateLimitError):
        return True
    if isinstance(exc, SmartMCAConnectionError):
        return endpoint.idempotent or not exc.request_sent
    if isinstance(exc, SmartMCAServerError):
        return endpoint.idempotent and exc.status in RETRYABLE_SERVER_STATUSES
    return False


def backoff_seconds(settings: ClientSettings, attempt: int, exc: BaseException | None) -> float:
    """Wait before retry ``attempt`` (1-based): ``Retry-After`` when given, else exponential with jitter."""
    if isinstance(exc, SmartMCARateLimitError) and exc.retry_after is not None:
        return exc.retry_after
    base = min(settings.retry_max_wait, settings.retry_min_wait * (2 ** (attempt - 1)))
    return base / 2 + random.uniform(0, base / 2)


def retry_policy(settings: ClientSettings, endpoint: Endpoint) -> dict[str, Any]:
    """Keyword arguments for ``tenacity.Retrying``: the sync client's retry policy."""
    import tenacity

    def _wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return backoff_seconds(settings, state.attempt_number, exc)

    def _before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        log.warning("%s; retry %d/%d in %.1f s", exc, state.attempt_number, settings.max_retries, wait)

    return dict(
        stop=tenacity.stop_after_attempt(settings.max_retries + 1),
        retry=tenacity.retry_if_exception(lambda exc: should_retry(endpoint, exc)),
        wait=_wait,
        before_sleep=_before_sleep,
        reraise=True,
    )


def connection_error(request: PreparedRequest, detail: str, *, request_sent: bool) -> SmartMCAConnectionError:
    """The error a transport raises when no complete response came back."""
    endpoint = request.endpoint
    outcome = "the server may have received it" if request_sent else "the server did not receive it"
    return SmartMCAConnectionError(
        f"{endpoint.name}: {endpoint.method} {request.path} failed: {detail} ({outcome})",
        request_sent=request_sent,
        operation=endpoint.name,
        method=endpoint.method,
        path=request.path,
    )


def log_request(request: PreparedRequest) -> None:
    """Debug line for one request; headers (and so the key) are never logged."""
    log.debug("SmartMCA %s %s params=%s", request.endpoint.method, request.path, request.params)
