"""Mutable emulator state shared by the HTTP handlers and the test-facing API."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from airflow_provider_smartmca.testing.config import ApiKey, EmulatorConfig
from airflow_provider_smartmca.testing.faults import FaultSet
from airflow_provider_smartmca.testing.state import ExecutionStore

__all__ = ["EmulatorState", "RequestRecord"]


@dataclass(frozen=True)
class RequestRecord:
    """One served API request (admin routes are not recorded).

    :param key: label (configured name) of the API key used, ``None`` if none/unknown.
    :param fault: kind of the fault injected into this request, if any.
    """

    time: float
    method: str
    path: str
    route: str
    query: dict[str, str]
    status: int | None  # None when the connection was dropped
    key: str | None
    fault: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly representation."""
        return {
            "time": self.time,
            "method": self.method,
            "path": self.path,
            "route": self.route,
            "query": self.query,
            "status": self.status,
            "key": self.key,
            "fault": self.fault,
        }


class EmulatorState:
    """Everything the emulator knows: config, keys, executions, faults, logs.

    :param config: validated configuration.
    """

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.keys: dict[str, ApiKey] = dict(config.keys)
        self.revoked: set[str] = set()
        self.store = ExecutionStore(config)
        self.faults = FaultSet()
        # Bounded and append-only so logging stays O(1) on the hot path.
        self.log: deque[RequestRecord] = deque(maxlen=config.request_log_size)
        self.counters: Counter[tuple[str, str, int | None]] = Counter()
        self._counter_lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._hold_event: asyncio.Event | None = None
        self.held = 0  # requests currently waiting for release

    # -- logging -----------------------------------------------------------
    def record(self, rec: RequestRecord) -> None:
        """Append to the request log and bump the (method, route, status) counter."""
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
        """Drop executions, faults, logs and counters; restore revoked keys."""
        self.store.reset()
        self.faults.clear()
        self.log.clear()
        with self._counter_lock:
            self.counters.clear()
        self.keys = dict(self.config.keys)
        self.revoked.clear()

    def revoke(self, key_or_name: str) -> bool:
        """Revoke a key by secret or by configured name; return whether it existed."""
        found = False
        for secret, k in self.keys.items():
            if key_or_name in (secret, k.name):
                self.revoked.add(secret)
                found = True
        return found

    def now(self) -> float:
        """Wall clock (one place to patch if ever needed)."""
        return time.time()
