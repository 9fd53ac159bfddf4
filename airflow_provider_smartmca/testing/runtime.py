"""Mutable emulator state shared by the HTTP handlers and the test-facing API."""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from airflow_provider_smartmca.testing.behaviour import Behaviour, parse_behaviour
from airflow_provider_smartmca.testing.config import ApiKey, EmulatorConfig
from airflow_provider_smartmca.testing.faults import FaultSet, parse_fault
from airflow_provider_smartmca.testing.state import Clock, ExecutionStore

__all__ = ["ACTION_ROUTES", "EmulatorState", "RequestRecord"]

# The POST routes that make the server act (start an execution).
ACTION_ROUTES = ("trigger", "change_status", "advance_stage", "assign_underwriter")


@dataclass(frozen=True)
class RequestRecord:
    """One served API request (admin routes are not recorded).

    :param key: label (configured name) of the API key used, ``None`` if none/unknown.
    :param fault: kind of the fault injected into this request, if any.
    :param id: sequence number of the request (never reused, not even across resets).
    :param handled: whether the request reached its handler (passed pre-handler faults and auth).
    :param body: the JSON body the handler parsed (POSTs), else ``None``.
    :param execution_id: the execution the handler created, else ``None``.
    """

    time: float
    method: str
    path: str
    route: str
    query: dict[str, str]
    status: int | None  # None when the connection was dropped
    key: str | None
    fault: str | None
    id: int = 0
    handled: bool = False
    body: Any = None
    execution_id: str | None = None

    @property
    def acted(self) -> bool:
        """Whether this was a POST that reached an action handler (trigger or application action)."""
        return self.handled and self.method == "POST" and self.route in ACTION_ROUTES

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly representation."""
        return {
            "id": self.id,
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "query": self.query,
            "status": self.status,
            "key": self.key,
            "fault": self.fault,
            "handled": self.handled,
            "body": self.body,
            "executionId": self.execution_id,
        }


class EmulatorState:
    """Everything the emulator knows: config, keys, executions, faults, logs.

    :param config: validated configuration.
    :param clock: ``real`` (the wall clock) or ``manual`` (moves only by :meth:`Clock.advance`).
    """

    def __init__(self, config: EmulatorConfig, clock: str = "real") -> None:
        self.config = config
        self.keys: dict[str, ApiKey] = dict(config.keys)
        self.revoked: set[str] = set()
        self.clock = Clock(clock)
        self.store = ExecutionStore(config, self.clock)
        self.faults = FaultSet()
        self._install_config_faults()
        # Bounded and append-only so logging stays O(1) on the hot path.
        self.log: deque[RequestRecord] = deque(maxlen=config.request_log_size)
        self.counters: Counter[tuple[str, str, int | None]] = Counter()
        self._counter_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._hold_event: asyncio.Event | None = None
        self.held = 0  # requests currently waiting for release
        self.stopping = False  # set while the server shuts down: slow streams give up
        self.request_ids = itertools.count(1)
        self.epoch = 0  # bumped by reset(); a request logs only into the epoch it began in
        # Replaced whole (never mutated), so a request reads one consistent snapshot.
        self.behaviour: Behaviour = config.behaviour

    def configure(self, **options: Any) -> Behaviour:
        """Change behaviours (validated); see :class:`Behaviour` for the names."""
        self.behaviour = parse_behaviour(options, self.behaviour)
        return self.behaviour

    def actions(self) -> list[RequestRecord]:
        """Log entries of the POSTs that reached an action handler, oldest first."""
        return [r for r in list(self.log) if r.acted]

    # -- logging -----------------------------------------------------------
    def record(self, rec: RequestRecord, epoch: int) -> None:
        """Append to the request log and bump the (method, route, status) counter, unless the
        request began before the last :meth:`reset` (a test must not see its predecessor's)."""
        if epoch != self.epoch:
            return
        self.log.append(rec)
        with self._counter_lock:
            self.counters[(rec.method, rec.route, rec.status)] += 1

    def counters_snapshot(self) -> dict[tuple[str, str, int | None], int]:
        """Copy of the counters."""
        with self._counter_lock:
            return dict(self.counters)

    # -- holds (loop-side) -------------------------------------------------
    def hold_event(self) -> asyncio.Event:
        """Event the current held requests wait on (created lazily on the loop)."""
        if self._hold_event is None:
            self._hold_event = asyncio.Event()
        return self._hold_event

    def release_on_loop(self) -> int:
        """Release every held request; must run on the server loop."""
        n = self.held
        if self._hold_event is not None:
            self._hold_event.set()
            self._hold_event = None
        return n

    # -- reset -------------------------------------------------------------
    def reset(self) -> None:
        """Drop executions, faults, logs and counters; restore keys, the clock, and the config's faults
        and behaviours."""
        self.epoch += 1
        self.store.reset()
        self.clock.reset()
        self.faults.clear()
        self.log.clear()
        with self._counter_lock:
            self.counters.clear()
        self.keys = dict(self.config.keys)
        self.revoked.clear()
        self.behaviour = self.config.behaviour
        self._install_config_faults()

    def _install_config_faults(self) -> None:
        for spec in self.config.faults:
            self.faults.add(parse_fault(spec))

    def revoke(self, key_or_name: str) -> bool:
        """Revoke a key by secret or by configured name; return whether it existed."""
        found = False
        for secret, k in self.keys.items():
            if key_or_name in (secret, k.name):
                self.revoked.add(secret)
                found = True
        return found
