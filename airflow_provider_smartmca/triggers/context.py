"""TriggererContext: what the triggers of one event loop share, in one object per loop.

A triggerer runs every deferred wait and asset watcher of the deployment on one event loop.
What they share lives in that loop's context; each registry in it is keyed by what its rule
needs, and forgets an entry with its last user:

* **connection lookups in flight**, by ``conn_id``: triggers that start together (a triggerer
  starting or restarting) share one lookup instead of a round trip each to the supervisor.
  Nothing is cached: a trigger starting after a lookup ended makes a new one, so a changed
  key is always picked up;
* **HTTP sessions**, by base URL, key hash and TLS setting
  (:class:`~airflow_provider_smartmca.client.aio.SessionPool`): one bounded connection pool,
  closed when its last user leaves, cancelled or not;
* **request budgets**, by API key (its SHA-256, never the key in clear): a 429 pauses every
  request made with that key once (:class:`~airflow_provider_smartmca.triggers.budget.RequestBudget`);
* **execution pollers**, by key hash and connection settings
  (:mod:`~airflow_provider_smartmca.triggers.poller`): the waits that know their workflow type.

Contexts are kept per event loop, weakly: nothing crosses loops or outlives its loop.
"""

from __future__ import annotations

import asyncio
import hashlib
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING
from weakref import WeakKeyDictionary, WeakValueDictionary

from airflow_provider_smartmca.client.settings import ClientSettings, settings_from_connection
from airflow_provider_smartmca.triggers.budget import RequestBudget

if TYPE_CHECKING:
    from airflow_provider_smartmca.client.aio import AsyncClient, SessionPool
    from airflow_provider_smartmca.triggers.poller import ExecutionPoller

#: Connection bound of a shared session. Polls are tiny GETs on keep-alive connections: a
#: thousand waits polling every second need only a handful. Each idle TLS connection costs
#: ~0.3 MB (asyncio's SSL protocol buffers), and a loop stall (a GC pass) makes every due poll
#: ask for a connection at once, growing the pool to its bound.
POOL_LIMIT = 32


def key_hash(settings: ClientSettings) -> str:
    """The API key's SHA-256: what registries keep instead of the key."""
    return hashlib.sha256(settings.api_key.encode()).hexdigest()


async def _mask_key(secret: str) -> None:
    """Register the key with the secrets masker without blocking the event loop.

    ``mask_secret`` also tells the supervisor with a *synchronous* send, which can deadlock the
    triggerer while another async call is in flight; ``amask_secret`` (Airflow 3.3+) uses
    ``asend``. Older versions fall back to the sync call (there the connection API already masks).
    """
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:  # pragma: no cover - Airflow < 3.3
        from airflow_provider_smartmca.hooks.smartmca import mask_key

        return mask_key(secret)
    await amask_secret(secret)


async def _resolve(conn_id: str) -> ClientSettings:
    """The connection's client settings, through Airflow's async connection API.

    The sync ``get_connection`` / ``extra_dejson`` mask secrets with a blocking call to the
    supervisor and break the triggerer on Airflow 3.
    """
    from airflow.providers.common.compat.connection import get_async_connection, get_async_extra_dejson

    conn = await get_async_connection(conn_id)
    if conn.password:
        await _mask_key(conn.password)
    extra = await get_async_extra_dejson(conn)
    settings = settings_from_connection(host=conn.host, port=conn.port, password=conn.password, extra=extra)
    if settings.api_key != conn.password:
        await _mask_key(settings.api_key)  # the masker matches exact strings: the stripped key too
    return settings


class TriggererContext:
    """What the triggers of one event loop share (see the module docstring). Get it with :func:`current`."""

    def __init__(self) -> None:
        self.lookups: dict[str, asyncio.Task[ClientSettings]] = {}
        self.budgets: WeakValueDictionary[str, RequestBudget] = WeakValueDictionary()
        self.pollers: dict[tuple[str, ClientSettings], ExecutionPoller] = {}
        self._sessions: SessionPool | None = None  # made on first use: it imports aiohttp

    def __repr__(self) -> str:
        return f"TriggererContext(sessions={self.open_sessions}, pollers={len(self.pollers)})"

    @property
    def open_sessions(self) -> int:
        """How many shared HTTP sessions are open."""
        return 0 if self._sessions is None else len(self._sessions)

    async def settings(self, conn_id: str) -> ClientSettings:
        """The connection's settings, sharing a lookup of ``conn_id`` already in flight."""
        if (lookup := self.lookups.get(conn_id)) is None:
            lookup = self.lookups[conn_id] = asyncio.get_running_loop().create_task(_resolve(conn_id))
            lookup.add_done_callback(lambda done: self.lookups.pop(conn_id, None))
        return await asyncio.shield(lookup)  # a cancelled trigger must not cancel the others' lookup

    def session(self, settings: ClientSettings) -> AbstractAsyncContextManager[AsyncClient]:
        """Borrow the shared session of ``settings`` (at most :data:`POOL_LIMIT` connections) for an ``async with`` block."""
        if self._sessions is None:
            from airflow_provider_smartmca.client.aio import SessionPool

            self._sessions = SessionPool()
        return self._sessions.borrow(settings, POOL_LIMIT)

    def budget(self, settings: ClientSettings) -> RequestBudget:
        """The request budget of ``settings``' API key; hold it while sending (it goes with its last holder)."""
        return self.budgets.setdefault(key_hash(settings), RequestBudget(settings))

    def poller(self, settings: ClientSettings) -> ExecutionPoller:
        """
        The execution poller of ``settings`` (made on first use, and again after one failed);
        waits register with its :meth:`~airflow_provider_smartmca.triggers.poller.ExecutionPoller.join`.

        The poller is keyed by the key's hash and every other setting, so every wait it serves
        is read with the timeout, CA and caps of its own connection.
        """
        from airflow_provider_smartmca.triggers.poller import ExecutionPoller

        key = (key_hash(settings), settings)
        if (poller := self.pollers.get(key)) is None or poller.failure is not None:
            poller = self.pollers[key] = ExecutionPoller(self, settings, key)
        return poller


_CONTEXTS: WeakKeyDictionary[asyncio.AbstractEventLoop, TriggererContext] = WeakKeyDictionary()


def current() -> TriggererContext:
    """The running event loop's context, made on first use."""
    return _CONTEXTS.setdefault(asyncio.get_running_loop(), TriggererContext())
