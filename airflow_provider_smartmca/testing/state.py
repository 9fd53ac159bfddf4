"""Execution store, lazily computed lifecycle, and the emulator's clock.

An execution's status is a pure function of the time elapsed since its clock
started, so no background task is needed: ``pending`` for ``pending_seconds``,
then each node runs for ``node_seconds``, then the planned terminal status.
Elapsed time is read from a :class:`Clock`: the real one, or a manual one that
moves only when a test advances it.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow_provider_smartmca.testing.behaviour import iso_ms
from airflow_provider_smartmca.testing.config import EmulatorConfig, WorkflowDef

__all__ = ["CLOCK_MODES", "EXECUTION_STATUSES", "Clock", "Execution", "ExecutionStore", "iso_ms"]

EXECUTION_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
CLOCK_MODES = ("real", "manual")


class Clock:
    """The server's time, as a Unix timestamp: every execution, timestamp, ``Date`` header and
    log entry reads it.

    ``real`` follows the wall clock; ``manual`` stands still at the time it was made. Both move
    forward by :meth:`advance`. The provider's own timing (deadlines, backoff, poll sleeps) stays
    on the real clock: this clock moves the server only.

    :param mode: ``real`` or ``manual``.
    :raises ValueError: naming ``clock`` when the mode is unknown.
    """

    def __init__(self, mode: str = "real") -> None:
        if mode not in CLOCK_MODES:
            raise ValueError(f"clock must be one of {list(CLOCK_MODES)}, not {mode!r}")
        self.mode = mode
        self._origin = time.time()
        self._advanced = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        """The server's current time."""
        base = time.time() if self.mode == "real" else self._origin
        return base + self._advanced

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (a finite number, at least 0); return the new time.

        :raises ValueError: naming ``seconds`` when it is negative, not finite or not a number.
        """
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds):
            raise ValueError("seconds must be a finite number")
        if seconds < 0:
            raise ValueError("seconds must be at least 0: the clock never goes back")
        with self._lock:
            self._advanced += float(seconds)
        return self.now()

    def reset(self) -> None:
        """Back to how it was made: the wall clock, or a manual clock standing at the time now."""
        with self._lock:
            self._origin = time.time()
            self._advanced = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly state (the admin API's ``/_emulator/clock``)."""
        now = self.now()
        return {"mode": self.mode, "now": iso_ms(now), "timestamp": now, "advanced_seconds": self._advanced}


@dataclass
class Execution:
    """One workflow execution and its precomputed plan.

    ``end_node`` is the 0-based index of the node where a failure/cancellation
    happens (``-1`` for a cancellation before any node); ``final`` is the
    terminal status.
    """

    id: str
    seq: int
    workflow: WorkflowDef
    entity_type: str
    entity_id: str
    created_at: float  # server clock (Clock.now); reported as startedAt
    clock_start: float | None  # server clock when the lifecycle clock started
    pending_s: float
    node_s: float
    final: str
    end_node: int
    error: str | dict[str, Any] | None
    node_names: list[str]

    def _times(self, now: float) -> tuple[float, float]:
        start = self.clock_start if self.clock_start is not None else now
        return start, now - start if self.clock_start is not None else -1.0

    def terminal_time(self) -> float:
        """Seconds after clock start when the execution reaches its final status."""
        if self.final == "completed":
            return self.pending_s + len(self.node_names) * self.node_s
        return self.pending_s + (self.end_node + 1) * self.node_s

    def view(
        self, now: float, with_nodes: bool, stamp: Callable[[float], str | int] = iso_ms
    ) -> dict[str, Any]:
        """Render the execution as seen at server time ``now`` (:meth:`Clock.now`).

        :param stamp: renders each timestamp (the server's clock offset and format).
        """
        start, elapsed = self._times(now)
        n = len(self.node_names)
        term_t = self.terminal_time()
        completed_at: str | int | None = None
        current: str | None = None
        if elapsed < self.pending_s:
            status, ran = "pending", 0  # ran = nodes that have started
            running_idx = -1
        elif elapsed >= term_t:
            status = self.final
            running_idx = -1
            ran = n if self.final == "completed" else self.end_node + 1
            if status != "paused":  # a paused execution is not complete
                completed_at = stamp(start + term_t)
        else:
            status = "running"
            running_idx = min(int((elapsed - self.pending_s) / self.node_s), n - 1) if self.node_s else n - 1
            ran = running_idx + 1
            current = self.node_names[running_idx]
        out: dict[str, Any] = {
            "executionId": self.id,
            "workflowId": self.workflow.id,
            "workflowName": self.workflow.name,
            "entityType": self.entity_type,
            "entityId": self.entity_id,
            "status": status,
            "startedAt": stamp(self.created_at),
            "completedAt": completed_at,
            "nodeCount": n,
            "currentNode": current,
        }
        if with_nodes:
            out["nodes"] = [self._node(i, start, ran, running_idx, status, stamp) for i in range(n)]
        return out

    def _node(
        self,
        i: int,
        start: float,
        ran: int,
        running_idx: int,
        status: str,
        stamp: Callable[[float], str | int],
    ) -> dict[str, Any]:
        n_start = start + self.pending_s + i * self.node_s
        node: dict[str, Any] = {
            "id": f"node_{i + 1}",
            "name": self.node_names[i],
            "status": "pending",
            "startedAt": None,
            "completedAt": None,
            "result": None,
            "error": None,
        }
        terminal = status not in ("pending", "running")
        if i >= ran:
            if terminal and status != "completed":
                node["status"] = "skipped"
            return node
        node["startedAt"] = stamp(n_start)
        if i == running_idx:
            node["status"] = "running"
            return node
        node["completedAt"] = stamp(n_start + self.node_s)
        if terminal and i == self.end_node and self.final in ("failed", "paused"):
            node["status"] = "failed"
            node["error"] = self.error if self.error is not None else f"{self.node_names[i]} failed"
        elif terminal and i == self.end_node and self.final == "cancelled":
            node["status"] = "cancelled"
        else:
            node["status"] = "completed"
            node["result"] = {"message": f"{self.node_names[i]} completed", "output": {"step": i + 1}}
        return node


class ExecutionStore:
    """Thread-safe store of executions (server loop writes, test thread reads).

    :param config: emulator configuration (durations and catalog).
    """

    def __init__(self, config: EmulatorConfig, clock: Clock | None = None) -> None:
        self.config = config
        self.clock = clock or Clock()
        self._lock = threading.Lock()
        self._by_id: dict[str, Execution] = {}
        self._order: list[Execution] = []
        self._per_workflow: Counter[str] = Counter()

    def reset(self) -> None:
        """Forget every execution."""
        with self._lock:
            self._by_id.clear()
            self._order.clear()
            self._per_workflow.clear()

    def create(self, wf: WorkflowDef, entity_type: str, entity_id: str) -> Execution:
        """Create an execution and plan its outcome deterministically."""
        now = self.clock.now()
        with self._lock:
            self._per_workflow[wf.id] += 1
            seq = self._per_workflow[wf.id]
            final, end_node = self._plan(wf, seq)
            ex = Execution(
                id=f"exec_{uuid.uuid4().hex[:20]}",
                seq=seq,
                workflow=wf,
                entity_type=entity_type,
                entity_id=entity_id,
                created_at=now,
                clock_start=None if self.config.clock_starts_on_first_get else now,
                pending_s=wf.pending_seconds
                if wf.pending_seconds is not None
                else self.config.pending_seconds,
                node_s=wf.node_seconds if wf.node_seconds is not None else self.config.node_seconds,
                final=final,
                end_node=end_node,
                error=wf.outcome.error,
                node_names=wf.node_names(),
            )
            self._by_id[ex.id] = ex
            self._order.append(ex)
        return ex

    @staticmethod
    def _plan(wf: WorkflowDef, seq: int) -> tuple[str, int]:
        o = wf.outcome
        n = wf.nodeCount
        fail_status = "paused" if wf.onFailure == "pause" else "failed"
        if o.fail_probability is not None:
            # Seeded per (workflow, seed, sequence number) so reruns are reproducible.
            rng = random.Random(f"{wf.id}:{o.seed}:{seq}")
            if rng.random() < o.fail_probability:
                node = o.at_node if o.at_node else rng.randint(1, n)
                return fail_status, node - 1
            return "completed", n - 1
        if o.kind == "fail":
            return fail_status, (o.at_node or 1) - 1
        if o.kind == "cancel":
            return "cancelled", (o.at_node or 0) - 1
        return "completed", n - 1

    def get(self, execution_id: str, first_get: bool = False) -> Execution | None:
        """Return an execution; ``first_get`` starts a deferred clock."""
        ex = self._by_id.get(execution_id)
        if ex is not None and first_get and ex.clock_start is None:
            with self._lock:
                if ex.clock_start is None:
                    ex.clock_start = self.clock.now()
        return ex

    def all(self) -> list[Execution]:
        """Snapshot of all executions in creation order."""
        with self._lock:
            return list(self._order)

    def count(self, workflow_type: str | None = None, entity_id: str | None = None) -> int:
        """Number of executions ever created (since the last reset) matching the filters."""
        with self._lock:
            return sum(
                1
                for e in self._order
                if (workflow_type is None or e.workflow.id == workflow_type)
                and (entity_id is None or e.entity_id == entity_id)
            )
