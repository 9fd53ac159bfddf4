"""In-process emulator: an aiohttp server on its own event loop in a daemon thread."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ssl
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from airflow_provider_smartmca.testing.app import API_PREFIX, build_app
from airflow_provider_smartmca.testing.behaviour import Behaviour
from airflow_provider_smartmca.testing.config import (
    EmulatorConfig,
    EmulatorConfigError,
    EmulatorError,
    load_config,
)
from airflow_provider_smartmca.testing.faults import Fault, parse_fault
from airflow_provider_smartmca.testing.runtime import EmulatorState, RequestRecord

__all__ = ["Emulator"]


class Emulator:
    """SmartMCA API emulator for tests.

    ``base_url`` has no ``/api/public/v1`` suffix (it is what goes into an Airflow
    connection's ``host``); ``api_url`` includes it.

    :param config: ``None`` for defaults, a dict, an :class:`EmulatorConfig` or a JSON/YAML path.
    :param host: interface to bind.
    :param port: TCP port, ``0`` for a random free one.
    :param tls_cert: PEM certificate file; with ``tls_key`` serves HTTPS.
    :param tls_key: PEM private key file.
    :param clock: ``real`` (the default) or ``manual``: the server's time stands still until
        :meth:`advance` moves it, so a two-hour workflow ends after ``advance(7200)``.
    """

    def __init__(
        self,
        config: EmulatorConfig | Mapping[str, Any] | str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        clock: str = "real",
    ) -> None:
        self.config = load_config(config)
        self.host = host
        self.port = port
        self._tls = (str(tls_cert), str(tls_key)) if tls_cert and tls_key else None
        if bool(tls_cert) != bool(tls_key):
            raise EmulatorError("tls_cert and tls_key must be given together")
        try:
            self.state = EmulatorState(self.config, clock)
        except ValueError as exc:
            raise EmulatorConfigError(str(exc)) from None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._stop: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------
    @property
    def scheme(self) -> str:
        """``https`` when TLS is configured, else ``http``."""
        return "https" if self._tls else "http"

    @property
    def base_url(self) -> str:
        """Root URL, e.g. ``http://127.0.0.1:54321`` (no API prefix)."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        """``base_url`` + ``/api/public/v1``."""
        return self.base_url + API_PREFIX

    @property
    def running(self) -> bool:
        """Whether the server thread is serving."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 10.0) -> Emulator:
        """Start serving; blocks until the socket listens.

        :raises EmulatorError: if the port is in use or the server cannot start.
        """
        if self.running:
            return self
        ready = threading.Event()
        result: dict[str, BaseException] = {}
        self.state.stopping = False

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self.state.loop = loop
            try:
                loop.run_until_complete(self._serve(ready, result))
            finally:
                loop.close()
                ready.set()

        self._thread = threading.Thread(target=run, name="smartmca-emulator", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise EmulatorError(f"emulator did not start within {timeout} s")
        if "error" in result:
            self._thread.join(timeout)
            self._thread = None
            raise EmulatorError(str(result["error"])) from result["error"]
        return self

    async def _serve(self, ready: threading.Event, result: dict[str, BaseException]) -> None:
        self._stop = asyncio.Event()
        ssl_ctx: ssl.SSLContext | None = None
        try:
            if self._tls:
                ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ssl_ctx.load_cert_chain(*self._tls)
            runner = web.AppRunner(build_app(self.state), access_log=None, handle_signals=False)
            await runner.setup()
            site = web.TCPSite(runner, self.host, self.port, ssl_context=ssl_ctx, backlog=4096)
            await site.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                result["error"] = EmulatorError(
                    f"cannot listen on {self.host}:{self.port}: address already in use"
                )
            else:
                result["error"] = EmulatorError(
                    f"cannot listen on {self.host}:{self.port}: {exc.strerror or exc}"
                )
            ready.set()
            return
        except (ssl.SSLError, ValueError) as exc:
            result["error"] = EmulatorError(f"cannot start emulator: {exc}")
            ready.set()
            return
        self._runner = runner
        if self.port == 0:
            server = getattr(site, "_server", None)
            sockets = getattr(server, "sockets", None) or []
            self.port = sockets[0].getsockname()[1]
        ready.set()
        await self._stop.wait()
        self.state.stopping = True
        self.state.release_on_loop()
        await runner.cleanup()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server and join its thread (idempotent)."""
        if self._thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(timeout)
        self._thread = None

    def wait(self) -> None:
        """Block until the server thread ends (used by the CLI)."""
        while self._thread is not None and self._thread.is_alive():
            self._thread.join(0.5)

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- test helpers ------------------------------------------------------
    @property
    def keys(self) -> dict[str, frozenset[str]]:
        """Accepted keys (secret -> scopes), revoked ones excluded."""
        return {k: v.scopes for k, v in self.state.keys.items() if k not in self.state.revoked}

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of the request log (most recent last, bounded)."""
        return list(self.state.log)

    def counters(self) -> dict[tuple[str, str, int | None], int]:
        """Request counts by ``(method, route, status)``; ``status`` is ``None`` for dropped connections."""
        return self.state.counters_snapshot()

    def count(self, route: str | None = None, status: int | None = None, method: str | None = None) -> int:
        """Sum of counters matching the given route name / status / method."""
        return sum(
            n
            for (m, r, s), n in self.counters().items()
            if (route is None or r == route)
            and (status is None or s == status)
            and (method is None or m == method)
        )

    def executions_created(self, workflow_type: str | None = None, entity_id: str | None = None) -> int:
        """Number of executions created since start/reset matching the filters."""
        return self.state.store.count(workflow_type, entity_id)

    def executions(
        self, workflow_type: str | None = None, entity_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Current detail views of the matching executions, in creation order."""
        now = self.state.clock.now()
        return [
            ex.view(now, with_nodes=True)
            for ex in self.state.store.all()
            if (workflow_type is None or ex.workflow.id == workflow_type)
            and (entity_id is None or ex.entity_id == entity_id)
        ]

    def now(self) -> float:
        """The server's clock (a Unix timestamp): what executions, timestamps and ``Date`` follow."""
        return self.state.clock.now()

    def advance(self, seconds: float) -> float:
        """Move the server's clock forward by ``seconds``; return the new time.

        Executions progress, timestamps and ``Date`` headers move, at once. The provider's own
        timing (deadlines, backoff, poll sleeps) stays on the real clock. :meth:`reset` puts the
        clock back.

        :raises EmulatorConfigError: naming ``seconds`` when it is negative or not a finite number.
        """
        try:
            return self.state.clock.advance(seconds)
        except ValueError as exc:
            raise EmulatorConfigError(str(exc)) from None

    def actions(self) -> list[RequestRecord]:
        """The POSTs that reached an action handler (trigger, application actions), oldest first.

        Each is a request log entry: ``id``, ``time``, ``route``, ``path``, ``body``, ``status``
        (``None`` when dropped), ``fault`` and ``execution_id`` (``None`` when nothing was
        created). An entry is written when its response ends or its connection drops.
        """
        return self.state.actions()

    @property
    def behaviour(self) -> Behaviour:
        """The current server-wide behaviours (see :meth:`configure`)."""
        return self.state.behaviour

    def configure(self, **options: Any) -> Behaviour:
        """Change server-wide behaviours until the next :meth:`reset` (which restores the config's).

        e.g. ``configure(clock_offset_seconds=-60, list_order="ignore_asc", drift=["action_204"])``.

        :param options: ``clock_offset_seconds``, ``date_offset_seconds``, ``date_header``,
            ``list_order``, ``list_seed``, ``list_lag_seconds``, ``list_end_lag_seconds``,
            ``trailing_slash_list``, ``drift`` (see docs/emulator-faults.md).
        :raises ValueError: naming the field when an option is invalid.
        """
        return self.state.configure(**options)

    def add_fault(self, kind: str, route: str = "*", **options: Any) -> Fault:
        """Inject a fault, e.g. ``add_fault("status", route="get_execution", status=503, count=3)``.

        :param kind: ``status``, ``latency``, ``drop_before``, ``html_error``, ``echo``,
            ``huge_body`` (before the handler); ``drop_after``, ``malformed_json``, ``hold``,
            ``trickle``, ``status_after``, ``drop_mid_body`` (after it: the server acted).
        :param route: route name, path glob or ``*``.
        :param options: ``method``, ``query`` (e.g. ``{"status": "running", "page": "2"}``),
            ``status``, ``retry_after``, ``latency``, ``count``, ``probability``, ``seed``,
            ``hold_timeout``, ``bytes_per_second``, ``size``, ``chunked``, ``echo_in``, ``offset``.
        """
        return self.state.faults.add(parse_fault({"kind": kind, "route": route, **options}))

    def clear_faults(self) -> int:
        """Remove all faults; return how many were active."""
        return self.state.faults.clear()

    def revoke_key(self, key: str) -> None:
        """Revoke a key (by secret or configured name): later requests get 401."""
        if not self.state.revoke(key):
            raise EmulatorError("unknown key")

    @property
    def held(self) -> int:
        """Number of requests currently held by a ``hold`` fault."""
        return self.state.held

    def wait_for_held(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Wait until at least ``n`` requests are held; return whether it happened."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state.held >= n:
                return True
            time.sleep(0.01)
        return False

    def release_held(self) -> int:
        """Let every held request send its response; return how many were held."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return 0
        fut = asyncio.run_coroutine_threadsafe(self._release(), loop)
        return fut.result(5)

    async def _release(self) -> int:
        return self.state.release_on_loop()

    def reset(self) -> None:
        """Forget executions, faults, logs, counters, revocations and :meth:`configure` changes."""
        if self._loop is not None and not self._loop.is_closed() and self.running:
            asyncio.run_coroutine_threadsafe(self._reset(), self._loop).result(5)
        else:
            self.state.reset()

    async def _reset(self) -> None:
        self.state.release_on_loop()
        self.state.reset()
