"""Transport rules, once for both transports (:mod:`.sync` on workers, :mod:`.aio` in the triggerer).

What :class:`~airflow_provider_smartmca.client.settings.ClientSettings` states, applied: the route
(proxy and trusted CAs), what a response may cost, and what a failed exchange means.

**May the request have reached the server?** :func:`failure` answers from facts, for requests,
urllib3 and aiohttp alike, walking the exception's chain (``args``, ``reason`` and the like,
``__cause__``, ``__context__``). "Not sent" (``request_sent=False``: a POST may be sent again)
only where nothing of the request can have left: the connection was refused or timed out while
connecting, the name did not resolve, or the proxy refused before a tunnel or a forward was set
up (CONNECT answered non-2xx, the proxy unreachable). A chain that also shows the connection
breaking once it was up (a reset, a remote close, a read timeout) is "unknown", and so is
everything else (``request_sent=True``: a POST is then looked up, never sent again). requests
reports a drop behind a proxy as a ``ProxyError`` whatever its moment: its wrapped cause decides.
TLS failures and requests that cannot be built are settings errors (``SmartMCAConfigError``).

Exceptions are matched by class name, so importing this module imports neither HTTP library.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_smartmca.client import protocol
from airflow_provider_smartmca.client.settings import ClientSettings, is_loopback
from airflow_provider_smartmca.errors import SmartMCAConfigError, SmartMCAError, SmartMCAInvalidResponseError

#: Bytes a transport asks for per read while streaming a body.
READ_CHUNK = 64 * 1024
#: Environment variables naming a CA bundle, in priority order (see :func:`resolve_route`).
CA_BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


# --- one rule for both transports: proxy and trusted CAs ------------------------------------------


@dataclass(frozen=True)
class Route:
    """
    How this process reaches the API: the proxy and the trusted CAs, per the rules in
    ``ClientSettings``. Built by :func:`resolve_route`; never holds the key.

    :param proxy: the proxy URL, or None for a direct connection. May hold proxy credentials:
        never put it in a message.
    :param verify: False (no verification), True (the default store, certifi), or the path of a
        CA bundle file or directory.
    :param verify_source: where ``verify`` came from, for messages.
    """

    proxy: str | None = field(default=None, repr=False)
    verify: bool | str = True
    verify_source: str = "the default CA store (certifi)"

    @property
    def ca_path(self) -> str | None:
        """The CA bundle path to load, the default store's included; None when not verifying."""
        if self.verify is False:
            return None
        if self.verify is True:
            import certifi  # installed with requests; imported only by a transport

            return str(certifi.where())
        return str(self.verify)


def _no_proxy(hostname: str, port: int | None, env: Mapping[str, str]) -> bool:
    """
    Whether ``NO_PROXY`` covers the host: CIDR blocks for an IP host; names, ``.suffix``, ``*`` and
    ``host:port`` as the standard library reads them (as requests does). ``urllib.request`` is
    imported late: it is heavy, and DAG files import this module.
    """
    no_proxy = env.get("no_proxy") or env.get("NO_PROXY") or ""
    if not no_proxy.strip():
        return False
    with suppress(ValueError):  # CIDR blocks, for an IP host; a bad block matches nothing
        address = ipaddress.ip_address(hostname)
        for entry in (e.strip() for e in no_proxy.split(",") if "/" in e):
            with suppress(ValueError):
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
    import urllib.request

    target = f"{hostname}:{port}" if port else hostname
    return bool(urllib.request.proxy_bypass_environment(target, {"no": no_proxy}))  # type: ignore[attr-defined]


def _proxy_for(base_url: str, env: Mapping[str, str]) -> str | None:
    """The proxy URL for ``base_url``, or None; an error names the variable, never its value (it may
    hold proxy credentials)."""
    parts = urlsplit(base_url)
    hostname = parts.hostname or ""
    for name in (f"{parts.scheme}_proxy", "all_proxy"):
        variable = name if env.get(name) else name.upper()
        if not (value := (env.get(variable) or "").strip()):
            continue
        if _no_proxy(hostname, parts.port, env):
            return None
        if "://" not in value:
            value = "http://" + value  # as curl and requests read "proxy:3128"
        scheme = value.split("://", 1)[0].lower()
        if scheme not in ("http", "https") or not urlsplit(value).hostname:
            raise SmartMCAConfigError(
                f"the environment variable {variable} is not an http:// or https:// proxy URL "
                f"(scheme {scheme!r}); this provider supports only HTTP proxies"
            )
        return value
    return None


def resolve_route(settings: ClientSettings, environ: Mapping[str, str] | None = None) -> Route:
    """
    Decide the proxy and the trusted CAs for ``settings`` from this process's environment.

    The one place both transports take these decisions from; see ``ClientSettings``.

    :param settings: the client settings.
    :param environ: the environment to read, ``os.environ`` by default.
    :raises SmartMCAConfigError: a CA path that does not exist, or a proxy that is not HTTP.
    """
    env = os.environ if environ is None else environ
    proxy = _proxy_for(settings.base_url, env)
    if not settings.base_url.startswith("https://"):
        return Route(proxy=proxy, verify=False, verify_source="plain http")
    verify = settings.verify_ssl
    if verify is False or isinstance(verify, str):  # anything else verifies (fail closed)
        if isinstance(verify, str) and not os.path.exists(verify):
            raise SmartMCAConfigError(
                f"connection extra 'verify_ssl' names {verify!r}, which does not exist in this process"
            )
        return Route(proxy=proxy, verify=verify, verify_source="connection extra 'verify_ssl'")
    for variable in CA_BUNDLE_ENV:
        if not (path := (env.get(variable) or "").strip()):
            continue
        if not os.path.exists(path):
            raise SmartMCAConfigError(
                f"the environment variable {variable} names {path!r}, which does not exist; fix it, "
                "or set the connection extra 'verify_ssl' to a CA bundle path"
            )
        return Route(proxy=proxy, verify=path, verify_source=f"the environment variable {variable}")
    return Route(proxy=proxy)


# --- one rule for both transports: what a response may cost -------------------------------------


class CappedBody:
    """
    A response read chunk by chunk within ``max_response_bytes`` (see ``ClientSettings``), in a
    ``with`` block: a 2xx announcing (``Content-Length``) or sending more is refused; an error
    status's body is cut at the cap. It keeps the headers lower-cased, hands over the
    :class:`~.protocol.RawResponse`, and calls ``close`` (the response's) unless the body was read
    to its end (``complete``): a connection with unread bytes cannot go back to the pool.
    ``declared`` is the ``Content-Length``, when present and readable (not chunked).
    """

    def __init__(
        self,
        request: protocol.PreparedRequest,
        status: int,
        headers: Mapping[str, str],
        settings: ClientSettings,
        close: Callable[[], Any],
    ):
        self.request, self.status, self.close = request, status, close
        self.limit = settings.max_response_bytes
        self.ok = 200 <= status < 300
        self.headers = {k.lower(): v for k, v in headers.items()}
        length = self.headers.get("content-length", "").strip()
        self.declared = int(length) if length.isdigit() else None
        self.chunks: list[bytes] = []
        self.size = 0
        self.complete = False
        if self.ok and self.declared is not None and self.declared > self.limit:
            self.__exit__()
            raise self.too_large()

    def too_large(self) -> SmartMCAInvalidResponseError:
        """The error for a 2xx body over the cap, naming endpoint and cap."""
        size = f"of {self.declared} bytes" if self.declared is not None else "that went on"
        return SmartMCAInvalidResponseError(
            f"{self.request.label} returned HTTP {self.status} with a body {size}, over the cap of "
            f"{self.limit} bytes; it was not read further. If such an answer is real, raise the "
            "connection extra 'max_response_bytes'",
            **self.request.context(status=self.status),
        )

    def __enter__(self) -> CappedBody:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.complete:
            with suppress(Exception):
                self.close()

    def take(self, chunk: bytes) -> bool:
        """Add the next chunk (empty at the end of the body); return whether to read on."""
        if not chunk:
            self.complete = True
            return False
        self.size += len(chunk)
        if self.size > self.limit:
            if self.ok:
                raise self.too_large()
            chunk = chunk[: len(chunk) - (self.size - self.limit)]
        self.chunks.append(chunk)
        return self.size <= self.limit

    def response(self) -> protocol.RawResponse:
        """The status, the headers and the bytes read."""
        return protocol.RawResponse(self.status, self.headers, b"".join(self.chunks))


def deadline_detail(seconds: float, setting: float) -> str:
    """
    What a transport says when a request ran out of its ``seconds``: the 'timeout' ``setting``,
    or less, when that was all the caller's deadline had left.
    """
    if seconds < setting:
        return f"no complete response within {seconds:.3g} s: all the time its caller's deadline left"
    return f"no complete response within {seconds:g} s (the 'timeout' setting: total per request)"


# OpenSSL's reasons when the server's first bytes are not a TLS record: almost always a plain-HTTP
# answer to the ClientHello (OpenSSL 3.2+ says RECORD_LAYER_FAILURE where older ones said
# WRONG_VERSION_NUMBER).
_NOT_TLS_REASONS = frozenset(
    {"WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE"}
)


def tls_failure(request: protocol.PreparedRequest, reason: str, route: Route) -> SmartMCAConfigError:
    """
    The error for a failed TLS handshake, the same for both transports.

    A server that answers plain HTTP on an ``https://`` URL is named as such, with the fix: a
    host without a scheme and a ``smartmca://`` URI both mean ``https://``, and the CA store
    or ``verify_ssl`` cannot help.

    :param request: the request that failed (its URL holds no credentials).
    :param reason: the ``ssl`` error's reason, e.g. ``WRONG_VERSION_NUMBER``.
    :param route: where the trusted CAs came from.
    """
    name = request.endpoint.name
    parts = urlsplit(request.url)
    if reason.upper() not in _NOT_TLS_REASONS or parts.scheme != "https":
        return SmartMCAConfigError(
            f"{name}: TLS to the SmartMCA API failed ({reason}); trusted CAs come from "
            f"{route.verify_source}: check the certificate or the connection extra 'verify_ssl'"
        )
    http_host = f"http://{parts.netloc}"
    if is_loopback(parts.hostname or ""):
        fix = f'use the JSON connection form with "host": "{http_host}"'
    else:
        fix = (
            f'if it really serves plain HTTP, set the host to "{http_host}" and the extra '
            "'allow_insecure_http' to true (the key then crosses the network in clear text); "
            "otherwise check the host and port"
        )
    return SmartMCAConfigError(
        f"{name}: TLS to the SmartMCA API failed ({reason}): the server at {parts.netloc} did not "
        "answer with TLS, so it looks like a plain-HTTP server on an https:// URL. A host without a "
        f"scheme and a smartmca:// URI both mean https://; {fix}. The extra 'verify_ssl' does not "
        "change this"
    )


# --- one rule for both transports: what a failure means -------------------------------------------


def _names(text: str) -> frozenset[str]:
    """Exception classes as "<top-level package>.<name>", matched anywhere in a class hierarchy."""
    return frozenset(text.split())


_TLS = _names("ssl.SSLError requests.SSLError urllib3.SSLError aiohttp.ClientSSLError")
_UNBUILDABLE = _names(
    "requests.InvalidHeader requests.InvalidURL requests.InvalidSchema requests.MissingSchema aiohttp.InvalidURL"
)
# Nothing of the request left: no connection was made, a connect timed out, a name did not resolve
# (urllib3's NewConnectionError, aiohttp's ClientConnectorError), the proxy was unreachable or
# answered CONNECT with a non-2xx (aiohttp's ClientHttpProxyError) ...
_UNREACHABLE = _names(
    "builtins.ConnectionRefusedError urllib3.NewConnectionError aiohttp.ClientConnectorError"
)
_TIMED_OUT = _names("urllib3.ConnectTimeoutError aiohttp.ConnectionTimeoutError")
_NEVER_CONNECTED = _UNREACHABLE | _TIMED_OUT | {"socket.gaierror", "aiohttp.ClientHttpProxyError"}
# ... unless the chain also shows a connection that was up, then broke or went silent (a
# ConnectionResetError: http.client's RemoteDisconnected too).
_WAS_UP = _names(
    "builtins.ConnectionResetError builtins.BrokenPipeError urllib3.ReadTimeoutError urllib3.ProtocolError "
    "aiohttp.ServerDisconnectedError aiohttp.SocketTimeoutError aiohttp.ClientPayloadError"
)
_PROXY = _names(
    "requests.ProxyError urllib3.ProxyError aiohttp.ClientHttpProxyError aiohttp.ClientProxyConnectionError"
)
_TIMEOUT = _names(
    "builtins.TimeoutError requests.ReadTimeout urllib3.ReadTimeoutError aiohttp.ServerTimeoutError"
)
_CUT_SHORT = _names(
    "requests.ChunkedEncodingError requests.ContentDecodingError urllib3.ProtocolError urllib3.DecodeError "
    "http.HTTPException aiohttp.ClientPayloadError"
)
_CHAIN_LIMIT = 16
# Where a library keeps the exception it wraps, besides args: urllib3 (reason), aiohttp (the others).
_WRAPPING = ("reason", "os_error", "certificate_error")


def _kinds(exc: BaseException) -> frozenset[str]:
    return frozenset(f"{c.__module__.partition('.')[0]}.{c.__name__}" for c in type(exc).__mro__)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what it wraps (``args``, ``_WRAPPING``, ``__cause__``, ``__context__``), at most 16."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < _CHAIN_LIMIT:
        current = todo.pop(0)
        if current in seen:  # exceptions compare by identity
            continue
        seen.append(current)
        wrapped = (getattr(current, name, None) for name in _WRAPPING)
        linked = (*current.args, *wrapped, current.__cause__, current.__context__)
        todo.extend(e for e in linked if isinstance(e, BaseException))
    return seen


def _not_sent(chain: list[BaseException]) -> str | None:
    """Why nothing of the request can have left, or None when it may have. urllib3 says a CONNECT
    answered non-2xx with a bare OSError ("Tunnel connection failed: 407 ...")."""
    kinds = frozenset().union(*map(_kinds, chain))
    tunnel_refused = any(str(e).startswith("Tunnel connection failed") for e in chain)
    if kinds & _WAS_UP or not (tunnel_refused or kinds & _NEVER_CONNECTED):
        return None
    if tunnel_refused or kinds & _PROXY:
        return "the proxy refused or could not be reached: no tunnel or forward was set up"
    if kinds & _TIMED_OUT and not kinds & _UNREACHABLE:
        return "connect timed out"
    return "connection refused or unreachable"


def _tls_reason(chain: list[BaseException]) -> str:
    """The ``ssl`` error's own words (no URL, no header), found in the library's wrapping."""
    for exc in chain:
        words = getattr(exc, "verify_message", None) or getattr(exc, "reason", None)
        if words and "ssl.SSLError" in _kinds(exc):
            return str(words)
    return type(chain[0]).__name__


def failure(
    request: protocol.PreparedRequest, exc: BaseException, route: Route, seconds: float, setting: float
) -> SmartMCAError:
    """
    The SmartMCA error for a transport library's exception; it never quotes the exception (it may
    hold headers). See the module docstring for what is "not sent".

    :param request: the request that failed.
    :param exc: what requests, urllib3, aiohttp, http.client or a socket raised.
    :param route: the route used (where the trusted CAs came from, for a TLS failure).
    :param seconds: the request's time, for a timeout's message.
    :param setting: the 'timeout' setting: ``seconds`` below it were cut by a caller's deadline.
    """
    kinds, chain = _kinds(exc), _chain(exc)
    if kinds & _TLS:
        return tls_failure(request, _tls_reason(chain), route)
    if kinds & _UNBUILDABLE:
        return SmartMCAConfigError(
            f"{request.endpoint.name}: the request could not be built ({type(exc).__name__})"
        )
    if (reason := _not_sent(chain)) is not None:
        return protocol.connection_error(request, reason, request_sent=False)
    if kinds & _TIMEOUT:
        return protocol.connection_error(request, deadline_detail(seconds, setting), request_sent=True)
    if kinds & _CUT_SHORT:
        return protocol.connection_error(request, "response cut short", request_sent=True)
    return protocol.connection_error(request, f"connection dropped ({type(exc).__name__})", request_sent=True)
