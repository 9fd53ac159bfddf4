"""Async transport over aiohttp, for the triggerer.

One ``aiohttp.ClientSession`` is shared by every user with the same (event loop, base URL, key,
TLS setting): a triggerer running a thousand waits keeps one bounded connection pool instead of
opening a TCP+TLS connection per poll. The session is reference counted and closed when its
last user leaves, cancelled or not, so no "Unclosed client session" warning is left behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from airflow_provider_smartmca.client import protocol
from airflow_provider_smartmca.client.settings import ClientSettings
from airflow_provider_smartmca.errors import SmartMCAConfigError

DEFAULT_POOL_LIMIT = 100


@dataclass
class _Shared:
    session: aiohttp.ClientSession
    users: int = 0


# Sessions are bound to the loop that created them; keying by loop keeps tests that run several
# loops (and a triggerer that restarts its loop) from ever sharing one across loops.
_SESSIONS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[Any, ...], _Shared]] = (
    weakref.WeakKeyDictionary()
)


def _session_key(settings: ClientSettings) -> tuple[Any, ...]:
    # A hash, not the key itself, so the registry never holds the secret in clear.
    key_hash = hashlib.sha256(settings.api_key.encode()).hexdigest()
    return (settings.base_url, key_hash, settings.verify_ssl)


def _ssl_option(verify: bool | str) -> ssl.SSLContext | bool:
    if isinstance(verify, str):
        return ssl.create_default_context(cafile=verify)
    return bool(verify)


def open_sessions_count() -> int:
    """How many shared sessions are open in the running loop (for tests and benchmarks)."""
    return len(_SESSIONS.get(asyncio.get_running_loop(), {}))


@asynccontextmanager
async def shared_session(
    settings: ClientSettings, pool_limit: int = DEFAULT_POOL_LIMIT
) -> AsyncIterator[AsyncClient]:
    """
    Borrow the shared session for ``settings`` for the duration of the ``async with`` block.

    :param settings: connection settings; users with equal base URL, key and TLS share one pool.
    :param pool_limit: the connector's connection bound, applied when the session is created.
    """
    loop = asyncio.get_running_loop()
    per_loop = _SESSIONS.setdefault(loop, {})
    key = _session_key(settings)
    shared = per_loop.get(key)
    if shared is None or shared.session.closed:
        connector = aiohttp.TCPConnector(limit=pool_limit, ssl=_ssl_option(settings.verify_ssl))
        shared = per_loop[key] = _Shared(aiohttp.ClientSession(connector=connector))
    shared.users += 1
    try:
        yield AsyncClient(settings, shared.session)
    finally:
        shared.users -= 1
        if shared.users == 0 and per_loop.get(key) is shared:
            del per_loop[key]
            # Shielded so a cancelled user still closes the pool it was the last to hold.
            await asyncio.shield(shared.session.close())


class AsyncClient:
    """
    Sends SmartMCA requests over a shared aiohttp session. It only moves bytes: the caller builds
    the request and parses the response with :mod:`~airflow_provider_smartmca.client.protocol`,
    and its own loop is the retry policy (the trigger polls; it never blocks in a retry cycle).

    :param settings: where and how to connect.
    :param session: the session to use; see :func:`shared_session`.
    """

    def __init__(self, settings: ClientSettings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._session = session
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=settings.connect_timeout, sock_read=settings.timeout
        )

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.settings.base_url!r})"

    async def send(self, request: protocol.PreparedRequest) -> protocol.RawResponse:
        """Send once; return the raw response or raise ``SmartMCAConnectionError``."""
        protocol.log_request(request)
        try:
            async with self._session.request(
                request.endpoint.method,
                request.url,
                params=request.params or None,
                json=request.body,
                headers=request.headers,
                timeout=self._timeout,
                allow_redirects=False,
            ) as resp:
                body = await resp.read()
                headers = {k.lower(): v for k, v in resp.headers.items()}
                return protocol.RawResponse(resp.status, headers, body)
        except aiohttp.ClientConnectorCertificateError:
            raise SmartMCAConfigError(
                f"{request.endpoint.name}: TLS certificate of {self.settings.base_url} was rejected; "
                "check the certificate or the connection extra 'verify_ssl'"
            ) from None
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError):
            raise protocol.connection_error(request, "connect failed", request_sent=False) from None
        except (asyncio.TimeoutError, aiohttp.SocketTimeoutError):
            raise protocol.connection_error(request, "read timed out", request_sent=True) from None
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            raise protocol.connection_error(request, "connection dropped", request_sent=True) from None
