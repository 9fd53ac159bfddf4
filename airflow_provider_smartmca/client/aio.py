"""Async transport over aiohttp, for the triggerer.

A :class:`SessionPool` shares one ``aiohttp.ClientSession`` between every user with the same
base URL, key and TLS setting: a triggerer running a thousand waits keeps one bounded
connection pool instead of opening a TCP+TLS connection per poll. The triggerer's pool is its
event loop's (:class:`~airflow_provider_smartmca.triggers.context.TriggererContext`). A session
is reference counted and closed when its last user leaves, cancelled or not, so no "Unclosed
client session" warning is left behind.

It follows the transport rules of :mod:`~airflow_provider_smartmca.client.transport` (total
deadline, body cap, proxy, trusted CAs, what a failure means), like the worker's
:mod:`~airflow_provider_smartmca.client.sync`.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import os
import ssl
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from airflow_provider_smartmca.client import protocol
from airflow_provider_smartmca.client.settings import ClientSettings
from airflow_provider_smartmca.client.transport import CappedBody, Route, failure, resolve_route
from airflow_provider_smartmca.errors import SmartMCAConfigError

DEFAULT_POOL_LIMIT = 100


@dataclass
class _Shared:
    session: aiohttp.ClientSession
    users: int = 0


@functools.lru_cache(maxsize=16)
def _ssl_context(ca_path: str) -> ssl.SSLContext:
    """Loading a CA bundle costs milliseconds: once per path and process, not per trigger."""
    if os.path.isdir(ca_path):
        return ssl.create_default_context(capath=ca_path)
    return ssl.create_default_context(cafile=ca_path)


class SessionPool:
    """
    The shared sessions of one event loop (a session belongs to the loop that made it), keyed
    by base URL, key hash (never the key in clear) and TLS setting.
    """

    def __init__(self) -> None:
        self._shared: dict[tuple[str, str, Any], _Shared] = {}

    def __len__(self) -> int:
        return len(self._shared)

    @asynccontextmanager
    async def borrow(
        self, settings: ClientSettings, pool_limit: int = DEFAULT_POOL_LIMIT
    ) -> AsyncIterator[AsyncClient]:
        """
        Borrow the session for ``settings`` for the duration of the ``async with`` block.

        ``trust_env`` is off: proxy and CAs come from the route, per request (the worker's rule),
        and no ``.netrc`` entry replaces the bearer key. The close is shielded so a cancelled user
        still closes the pool it was the last to hold.

        :param settings: connection settings; users with equal base URL, key and TLS share one pool.
        :param pool_limit: the connector's connection bound, applied when the session is created.
        """
        key = (settings.base_url, hashlib.sha256(settings.api_key.encode()).hexdigest(), settings.verify_ssl)
        shared = self._shared.get(key)
        if shared is None or shared.session.closed:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=pool_limit), trust_env=False)
            shared = self._shared[key] = _Shared(session)
        shared.users += 1
        try:
            yield AsyncClient(settings, shared.session)
        finally:
            shared.users -= 1
            if shared.users == 0 and self._shared.get(key) is shared:
                del self._shared[key]
                await asyncio.shield(shared.session.close())


def shared_session(
    settings: ClientSettings, pool_limit: int = DEFAULT_POOL_LIMIT
) -> AbstractAsyncContextManager[AsyncClient]:
    """
    A session of its own for an ``async with`` block, closed at its end (a one-user pool).

    Triggers borrow their event loop's shared session instead
    (:meth:`~airflow_provider_smartmca.triggers.context.TriggererContext.session`).
    """
    return SessionPool().borrow(settings, pool_limit)


class AsyncClient:
    """
    Sends SmartMCA requests over a shared aiohttp session. It only moves bytes: the caller builds
    the request and parses the response with :mod:`~airflow_provider_smartmca.client.protocol`,
    and its own loop is the retry policy (the trigger polls; it never blocks in a retry cycle).

    :param settings: where and how to connect.
    :param session: the session to use; from a :class:`SessionPool`.
    """

    def __init__(self, settings: ClientSettings, session: aiohttp.ClientSession) -> None:
        self.settings = settings
        self._session = session

    def __repr__(self) -> str:
        return f"AsyncClient(base_url={self.settings.base_url!r})"

    @functools.cached_property
    def _route(self) -> tuple[Route, ssl.SSLContext | bool]:
        """The proxy/CA decision (shared with the worker) and the TLS option it means for aiohttp,
        opened by the first request."""
        route = resolve_route(self.settings)
        if (ca_path := route.ca_path) is None:
            return route, False
        try:
            return route, _ssl_context(ca_path)
        except (ssl.SSLError, OSError, ValueError):
            message = f"the CA bundle from {route.verify_source} ({ca_path!r}) cannot be loaded"
        raise SmartMCAConfigError(message)

    async def send(
        self, request: protocol.PreparedRequest, *, timeout: float | None = None
    ) -> protocol.RawResponse:
        """
        Send once; return the raw response or raise ``SmartMCAConnectionError``.

        The error is raised outside the ``except`` block, so the library's exception is neither its
        cause nor its context.

        :param request: the request, from :func:`~airflow_provider_smartmca.client.protocol.build_request`.
        :param timeout: a shorter total limit than the ``timeout`` setting for this request, seconds
            (a wait's remaining time).
        :raises SmartMCAConfigError: the proxy or CA rule cannot be met, or TLS failed.
        """
        protocol.log_request(request)
        seconds = self.settings.request_seconds(timeout)
        try:
            return await self._exchange(request, seconds)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            route = self._route[0]  # opened by _exchange, before anything could fail
            error = failure(request, exc, route, seconds, self.settings.timeout)
        raise error

    async def _exchange(self, request: protocol.PreparedRequest, seconds: float) -> protocol.RawResponse:
        """The timeout is total: sending, waiting and reading the whole body."""
        route, ssl_option = self._route
        timeout = aiohttp.ClientTimeout(total=seconds, connect=min(self.settings.connect_timeout, seconds))
        arguments = dict(request.http_arguments(), timeout=timeout, proxy=route.proxy, ssl=ssl_option)
        async with self._session.request(**arguments) as resp:
            with CappedBody(request, resp.status, resp.headers, self.settings, resp.close) as body:
                while body.take(await resp.content.readany()):
                    pass
            return body.response()
