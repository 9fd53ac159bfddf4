"""Client settings: what an Airflow connection (plus hook arguments) means for the HTTP client.

This module knows nothing of Airflow: it takes the connection's plain fields, so the worker
(sync ``get_connection``) and the triggerer (async connection API) share one interpretation.
:class:`ClientSettings` states the rules both transports follow (the request deadline, the body
cap, the proxy and the trusted CAs); :mod:`.transport` applies them.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import logging
import math
import os
import re
import sys
from collections.abc import Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, fields, replace
from typing import Any, NamedTuple
from urllib.parse import SplitResult, urlsplit

from airflow_provider_smartmca.client.endpoints import API_PREFIX, KNOWN_SCOPES
from airflow_provider_smartmca.errors import SmartMCAConfigError, SmartMCAValidationError

log = logging.getLogger("airflow_provider_smartmca.client")

DEFAULT_BASE_URL = "https://api.smartmca.com"
DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
_PREFIXED_EXTRA = "extra__smartmca__"


@dataclass(frozen=True)
class ClientSettings:
    """
    Everything the HTTP client needs. The API key is excluded from ``repr`` and comparisons.

    Both transports follow the same rules, stated here once:

    * **Deadline.** ``timeout`` is the total time one request may take: sending it, waiting for
      the answer and reading the whole body (a server trickling its body one byte a second is
      cut off at ``timeout``). Connecting is bounded by ``connect_timeout`` too, and on the
      worker a new connection's connect time comes on top of ``timeout``. Each retry gets its
      own ``timeout``. A deadline hit after the request went out is a ``SmartMCAConnectionError``
      with ``request_sent=True``: a POST is then ambiguous and never re-sent.
    * **Body cap.** A body is read in chunks and never beyond ``max_response_bytes``. A 2xx
      announcing more (``Content-Length``) is refused before its body is read; one sending more
      is cut off at the cap. Either fails with a ``SmartMCAInvalidResponseError`` naming the
      endpoint and the cap. It counts as transient, like any unreadable body: the provider cannot
      tell an intermediary's page from a real answer without reading it, each attempt costs at
      most the cap and ``timeout``, and the message names the setting to raise if the answer
      is real. An error status (4xx, 5xx) is never refused for its size: its status decides what
      happens, and its body, truncated at the cap, only supplies the message.
    * **Proxy.** ``HTTPS_PROXY`` (``HTTP_PROXY`` for an ``http://`` base URL), else ``ALL_PROXY``,
      lower case first, unless ``NO_PROXY`` covers the host (names, ``.suffix``, ``*``, and
      CIDR blocks for IP hosts). Only ``http://`` and ``https://`` proxies. The worker and the
      triggerer read the environment of their own process when a client starts (a hook's first
      call, a trigger's first poll); nothing else is read (no ``.netrc``, which could replace
      the bearer key with other credentials, no OS proxy settings).
    * **Trusted CAs.** ``verify_ssl`` false, or the path of a CA bundle (file or directory),
      wins. Otherwise (unset or true): ``REQUESTS_CA_BUNDLE``, else ``SSL_CERT_FILE``, else the
      default store, certifi's bundle (what ``requests`` ships with). A named file that does
      not exist is a ``SmartMCAConfigError`` naming the extra or variable, raised before any
      request.

    :param base_url: scheme://host[:port], no trailing slash, no API prefix, no credentials.
    :param api_key: the bearer key (from ``Connection.password`` only); surrounding white space
        (a secrets file's trailing newline) is removed by :func:`settings_from_connection`.
    :param scopes: the scopes the key declares, or None when undeclared (then the server decides).
    :param timeout: total seconds one request may take (see the deadline rule above).
    :param connect_timeout: seconds to open a connection.
    :param max_retries: retries after the first attempt for a retryable failure (0 disables).
    :param retry_min_wait: first backoff wait, seconds; doubles per attempt, with jitter.
    :param retry_max_wait: cap of one backoff wait, seconds.
    :param retry_after_cap: cap applied to a server's ``Retry-After``, seconds.
    :param verify_ssl: verify TLS certificates (true: with the CA lookup above); false; or the
        path of a CA bundle file or directory.
    :param clock_skew: seconds of tolerance when matching executions to a trigger request by time.
    :param max_response_bytes: the most bytes of one response body that are read (see above).
    :param execution_url_template: optional UI link, e.g. ``https://app.smartmca.com/executions/{execution_id}``.
    :param unknown_extras: connection extra keys this provider does not know (typos); see
        :meth:`unknown_extras_message`.
    """

    base_url: str = DEFAULT_BASE_URL
    api_key: str = field(default="", repr=False, compare=False)
    scopes: frozenset[str] | None = None
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_retries: int = 5
    retry_min_wait: float = 0.5
    retry_max_wait: float = 30.0
    retry_after_cap: float = 60.0
    verify_ssl: bool | str = True
    clock_skew: float = 30.0
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    execution_url_template: str | None = None
    unknown_extras: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        """Settings built directly (tests, library users) get the same checks as a connection's."""
        for name in _SETTING_NUMBERS:
            check_number(name, getattr(self, name), source="setting")
        if self.api_key:
            _check_key_characters(self.api_key)

    def with_overrides(self, *, _source: str = "argument", **overrides: Any) -> ClientSettings:
        """Return a copy with the non-None ``overrides`` applied and validated."""
        known = {f.name for f in fields(self)} - {"api_key", "unknown_extras"}
        if unknown := set(overrides) - known:
            raise SmartMCAConfigError(f"unknown client setting(s): {', '.join(sorted(unknown))}")
        values = {k: _coerce(k, v, _source) for k, v in overrides.items() if v is not None}
        if "scopes" in values:
            values["scopes"] = parse_scopes(values["scopes"])
        return replace(self, **values)

    def request_seconds(self, timeout: float | None = None) -> float:
        """
        The total seconds the next request may take: ``timeout``, or less when the caller has less.

        :param timeout: the caller's own limit (a wait's remaining time), or None.
        """
        if timeout is None:
            return self.timeout
        return min(self.timeout, check_number("timeout", timeout, bound="request_timeout"))

    def unknown_extras_message(self) -> str | None:
        """One line naming each unknown connection extra and the valid key closest to it, or None."""
        if not self.unknown_extras:
            return None
        described = "; ".join(_describe_unknown(name) for name in self.unknown_extras)
        return f"unknown connection extra(s), ignored: {described}"


# --- numbers: one check, one table ----------------------------------------------------------------


class Bound(NamedTuple):
    """What one number may be: an integer or any number, from ``minimum`` to ``maximum`` inclusive."""

    integer: bool
    minimum: float
    maximum: float


_DAY = 86400.0
#: Every number this provider is given, by name, with its bounds: client settings (connection
#: extras, hook arguments), waits, watchers and list paging. Each boundary checks its numbers
#: with :func:`check_number` before any request; nothing else checks them again.
BOUNDS: dict[str, Bound] = {
    "timeout": Bound(False, 0.001, _DAY),
    "connect_timeout": Bound(False, 0.001, _DAY),
    "max_retries": Bound(True, 0, 100),
    "retry_min_wait": Bound(False, 0.0, _DAY),
    "retry_max_wait": Bound(False, 0.0, _DAY),
    "retry_after_cap": Bound(False, 0.0, _DAY),
    "clock_skew": Bound(False, 0.0, _DAY),
    "max_response_bytes": Bound(True, 1024, 1024**3),
    "poll_interval": Bound(False, 0.001, _DAY),
    "wait_timeout": Bound(False, 0.001, 366 * _DAY),  # a wait's (operators, the sensor): a year at most
    "deadline": Bound(False, 0.0, 4102444800.0),  # epoch seconds: from 1970 to 2100
    "restart_lookback": Bound(False, 0.0, 30 * _DAY),
    "patience": Bound(False, 0.001, 366 * _DAY),  # hook.patiently: how long a read retries transient failures
    "page": Bound(True, 1, 1_000_000),
    "limit": Bound(True, 1, 100),
    "request_timeout": Bound(False, 1e-6, math.inf),  # a caller's time left for one request (a wait's)
}


#: The numbers among :class:`ClientSettings`' fields.
_SETTING_NUMBERS = tuple(f.name for f in fields(ClientSettings) if f.name in BOUNDS)


def _shown_number(value: Any) -> str:
    """``value`` for a message, short: ``repr`` of a huge integer fails or runs to thousands of digits."""
    if isinstance(value, int) and not isinstance(value, bool) and not -(10**15) < value < 10**15:
        return f"an integer of {len(hex(value)) - 2} hex digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _read_number(value: Any, integer: bool, text: bool) -> float | int | None:
    """The number in ``value``, or None when it is none (no bool; text only when ``text``)."""
    if text and isinstance(value, str):
        with suppress(ValueError):  # else it stays text, which is no number
            value = float(value.strip())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if integer and isinstance(value, float):  # an integral float only from text or an extra; 2.0 is 2
        return int(value) if text and value.is_integer() else None
    return value


def check_number(
    name: str,
    value: Any,
    *,
    bound: str | None = None,
    operation: str | None = None,
    text: bool = False,
    source: str | None = None,
) -> Any:
    """
    The one check of a number the provider is given: of the right kind, within its :data:`BOUNDS`.

    Comparisons are exact (a huge integer is never converted to float), and NaN or infinity is
    out of every bound, so nothing here can overflow.

    :param name: the argument or setting, named in the error.
    :param bound: its row in :data:`BOUNDS`, when not ``name``.
    :param operation: what it was given to, for the message.
    :param text: also read a number written as text (a connection extra typed in the UI, a
        rendered template); an integer may then be written ``2.0`` or ``1e6``.
    :param source: for a client setting, where it came from (``connection extra``,
        ``argument``, ``setting``): the error is then a :class:`SmartMCAConfigError`.
    :return: the number, as ``int`` or ``float`` per its bound.
    :raises SmartMCAValidationError: naming ``name`` and the bound (``SmartMCAConfigError``
        with ``source``).
    """
    rule = BOUNDS[bound or name]
    number = _read_number(value, rule.integer, text)
    if number is not None and rule.minimum <= number <= rule.maximum:
        if rule.integer:
            return number
        return float(number) if number <= sys.float_info.max else math.inf  # 10**400 under an inf bound
    kind = "an integer" if rule.integer else "a number"
    low, high = (f"{x:.0f}" if 1e6 <= x < math.inf else f"{x:g}" for x in (rule.minimum, rule.maximum))
    problem = f"must be {kind} from {low} to {high}, got {_shown_number(value)}"
    if source is not None:
        raise SmartMCAConfigError(f"{source} {name!r} {problem}")
    raise SmartMCAValidationError(name, problem, operation=operation)


def _coerce(name: str, value: Any, source: str) -> Any:
    where = f"{source} {name!r}"
    if name in _SETTING_NUMBERS:
        return check_number(name, value, text=True, source=source)
    if name == "verify_ssl":
        return _parse_verify(where, value)
    if name == "execution_url_template" and not isinstance(value, str):
        raise SmartMCAConfigError(f"{where} must be a string, got {type(value).__name__}")
    return value


# --- booleans and the CA path -------------------------------------------------------------------

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off", "")


def _did_you_mean(value: Any) -> str:
    hint = difflib.get_close_matches(str(value).strip().lower(), ("true", "false"), n=1)
    return f" (did you mean {hint[0]!r}?)" if hint else ""


def _parse_bool(where: str, value: Any) -> bool:
    text = str(value).strip().lower()  # a bool too: "true" or "false"
    if text in (*_TRUE, *_FALSE):
        return text in _TRUE
    raise SmartMCAConfigError(f"{where} must be true or false, got {value!r}{_did_you_mean(value)}")


def _parse_verify(where: str, value: Any) -> bool | str:
    """True, False, or the path of an existing CA bundle file or directory."""
    if isinstance(value, str) and value.strip().lower() not in (*_TRUE, *_FALSE):
        path = os.path.expanduser(value.strip())
        if os.path.exists(path):
            return path
        raise SmartMCAConfigError(
            f"{where} must be true, false or the path of a CA bundle file or directory; "
            f"{value!r} is neither a boolean nor an existing path{_did_you_mean(value)}"
        )
    return _parse_bool(where, value)


def parse_scopes(value: Any) -> frozenset[str] | None:
    """Parse declared scopes: a list, or a space/comma separated string. Empty means undeclared."""
    if value is None:
        return None
    if isinstance(value, str):
        items: Iterable[Any] = value.replace(",", " ").split()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        raise SmartMCAConfigError(f"connection extra 'scopes' must be a list or a string, got {value!r}")
    scopes = frozenset(str(s).strip() for s in items if str(s).strip())
    if unknown := scopes - KNOWN_SCOPES:
        raise SmartMCAConfigError(
            f"connection extra 'scopes' has unknown scope(s) {sorted(unknown)}; known: {sorted(KNOWN_SCOPES)}"
        )
    return scopes or None


# --- the key ------------------------------------------------------------------------------------


def _check_key_characters(key: str) -> None:
    """Refuse a key an HTTP header cannot carry as is; the message never quotes the key."""
    for position, char in enumerate(key, start=1):
        if not "!" <= char <= "~":
            raise SmartMCAConfigError(
                f"the API key (the connection's password) has a character an HTTP header cannot "
                f"carry at position {position} of {len(key)} (white space, a control character or a "
                "non-ASCII character); enter the key again"
            )


def normalize_key(password: str | None) -> str:
    """
    The API key to send: the connection password without surrounding white space.

    Surrounding white space is removed rather than refused: a key read from a secrets file often
    ends with a newline, and no valid key starts or ends with white space. Anything else an HTTP
    header cannot carry (inner white space, control or non-ASCII characters) is refused.

    :raises SmartMCAConfigError: no key, or one with a forbidden character; never quoting the key.
    """
    if not (key := (password or "").strip()):
        raise SmartMCAConfigError(
            "the connection has no API key: set its password field (shown as 'API key' in the UI)"
        )
    _check_key_characters(key)
    return key


# --- the base URL -------------------------------------------------------------------------------


def is_loopback(hostname: str) -> bool:
    """Whether ``hostname`` is this machine (``localhost``, ``*.localhost``, a loopback address)."""
    if hostname == "localhost" or hostname.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _shown(url: str) -> str:
    """``url`` for a message: anything before an ``@`` in the authority (credentials) is hidden."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://)?[^/?#]*@", lambda m: (m.group(1) or "") + "***@", url)


def _check_port(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise SmartMCAConfigError(f"{where} must be a TCP port from 1 to 65535, got {value!r}")
    return value


def _url_problem(parts: SplitResult) -> str | None:
    """What makes the connection host no base URL, or None."""
    if "@" in parts.netloc:
        return "must not contain credentials (user:password@): put the API key in the connection's password field"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "is not a valid http(s) base URL"
    if parts.query or parts.fragment:
        return "must not contain a query or fragment"
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        return "has an invalid port: use a TCP port from 1 to 65535"
    return None


def normalize_base_url(
    host: str | None, port: int | None = None, *, allow_insecure_http: bool = False
) -> str:
    """
    Build the base URL from the connection host, with or without a scheme.

    Plain ``http://`` is refused except on loopback, or when ``allow_insecure_http`` is set,
    because the key would cross the network in clear text. Credentials in the URL are refused
    (and never repeated in the message): ``requests`` would send them as Basic auth in place of
    the bearer key.
    """
    if not (raw := (host or "").strip()):
        return DEFAULT_BASE_URL
    if "://" not in raw:
        raw = "https://" + raw
    shown = _shown(raw)
    parts = urlsplit(raw)
    if (problem := _url_problem(parts)) is not None:
        raise SmartMCAConfigError(f"connection host {shown!r} {problem}")
    if (url_port := parts.port) is not None:
        _check_port(f"the port of connection host {shown!r}", url_port)
    if port is not None:
        _check_port("connection port", port)
        if url_port is not None and url_port != port:
            raise SmartMCAConfigError(
                f"connection host {shown!r} names port {url_port} but the connection port is {port}"
            )
    if parts.scheme == "http" and not allow_insecure_http and not is_loopback(parts.hostname or ""):
        raise SmartMCAConfigError(
            f"connection host {shown!r} uses plain http:// on a non-loopback host; use https:// "
            "or set the extra 'allow_insecure_http' to true"
        )
    netloc = parts.netloc if port is None or url_port is not None else f"{parts.netloc}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path.rstrip('/').removesuffix(API_PREFIX)}"


# --- the connection -----------------------------------------------------------------------------

_EXTRA_SETTINGS = ("scopes", *_SETTING_NUMBERS, "verify_ssl", "execution_url_template")
#: Every connection extra key this provider reads.
KNOWN_EXTRAS = (*_EXTRA_SETTINGS, "allow_insecure_http")


def _describe_unknown(name: str) -> str:
    bare = name.removeprefix(_PREFIXED_EXTRA).strip().lower()
    if close := difflib.get_close_matches(bare, KNOWN_EXTRAS, n=1, cutoff=0.6):
        return f"{name!r} (did you mean {close[0]!r}?)"
    return f"{name!r} (valid keys: {', '.join(KNOWN_EXTRAS)})"


def _redact_name(name: str, key: str) -> str:
    return name.replace(key, "***") if len(key) >= 4 else name


def settings_from_connection(
    *, host: str | None, port: int | None, password: str | None, extra: Mapping[str, Any] | str | None
) -> ClientSettings:
    """
    Interpret an Airflow connection's fields.

    An unknown extra key (a typo such as ``max_retry``) is not an error, so a connection shared
    with a newer provider version keeps working; it is logged as a warning naming the closest
    valid key, and kept in :attr:`ClientSettings.unknown_extras` for ``test_connection``. A key name
    is user text: the API key itself pasted as a name is redacted before it can reach the log.

    :param host: the connection host (base URL, scheme optional, no credentials).
    :param port: the connection port, if any (hidden in the UI, honoured if set).
    :param password: the API key; surrounding white space is removed (see :func:`normalize_key`).
    :param extra: the connection extras, as a dict or JSON text.
    """
    if isinstance(extra, str):
        try:
            extra = json.loads(extra) if extra.strip() else {}
        except ValueError:
            raise SmartMCAConfigError("connection extra is not valid JSON") from None
    if extra is not None and not isinstance(extra, Mapping):
        raise SmartMCAConfigError("connection extra must be a JSON object")
    extra = dict(extra or {})
    key = normalize_key(password)
    insecure = _parse_bool("connection extra 'allow_insecure_http'", extra.get("allow_insecure_http", False))
    base_url = normalize_base_url(host, port, allow_insecure_http=insecure)
    overrides = {name: extra.get(name) for name in _EXTRA_SETTINGS if extra.get(name) not in (None, "")}
    unknown = tuple(sorted(_redact_name(str(k), key) for k in extra if k not in KNOWN_EXTRAS))
    settings = ClientSettings(base_url=base_url, api_key=key, unknown_extras=unknown)
    settings = settings.with_overrides(_source="connection extra", **overrides)
    if message := settings.unknown_extras_message():
        log.warning("SmartMCA connection: %s", message)
    return settings
