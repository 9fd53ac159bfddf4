"""Fault injection rules.

A :class:`Fault` matches requests by route name (``trigger``, ``get_execution``
...), by path glob (anything containing ``/``), or ``*``; optionally by HTTP
method.  It fires for the next ``count`` matching requests and/or with a seeded
``probability``.
"""

from __future__ import annotations

import fnmatch
import itertools
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FAULT_KINDS", "ROUTE_NAMES", "Fault", "FaultSet", "parse_fault"]

# Kinds acting before the handler (nothing happens server-side) ...
PRE_KINDS = frozenset({"status", "latency", "drop_before", "html_error"})
# ... and after it (the request was fully processed).
POST_KINDS = frozenset({"drop_after", "malformed_json", "hold"})
FAULT_KINDS = PRE_KINDS | POST_KINDS

ROUTE_NAMES = (
    "list_workflows",
    "get_workflow",
    "trigger",
    "list_executions",
    "get_execution",
    "change_status",
    "advance_stage",
    "assign_underwriter",
)

_ids = itertools.count(1)


@dataclass
class Fault:
    """One fault rule.

    :param kind: one of ``status``, ``latency``, ``drop_before``, ``drop_after``,
        ``malformed_json``, ``html_error``, ``hold``.
    :param route: route name, path glob (e.g. ``/api/public/v1/workflows/executions/*``) or ``*``.
    :param method: HTTP method to match, or ``None`` for any.
    :param status: HTTP status for ``status`` (429/500/502/503...), ``malformed_json`` (default 200)
        and ``html_error`` (default 502).
    :param retry_after: ``Retry-After`` seconds on 429 responses.
    :param latency: seconds added before processing (``latency`` kind).
    :param count: fire for this many matching requests, then retire (``None`` = unlimited).
        :func:`parse_fault` defaults it to 1, or to unlimited when ``probability`` is set.
    :param probability: fire with this probability (seeded by ``seed``).
    :param seed: RNG seed for ``probability``.
    :param hold_timeout: maximum seconds a ``hold`` waits for release.
    """

    kind: str
    route: str = "*"
    method: str | None = None
    status: int | None = None
    retry_after: int = 1
    latency: float = 0.0
    count: int | None = None
    probability: float | None = None
    seed: int = 0
    hold_timeout: float = 30.0
    id: int = field(default_factory=lambda: next(_ids))
    fired: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def matches(self, method: str, route: str, path: str) -> bool:
        """Return whether this rule applies to the request (without consuming it)."""
        if self.method is not None and self.method.upper() != method:
            return False
        if self.route == "*" or self.route == route:
            return True
        if "/" in self.route:
            return fnmatch.fnmatchcase(path, self.route) or fnmatch.fnmatchcase(
                path, "/api/public/v1" + self.route
            )
        return False

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly representation (admin API)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "route": self.route,
            "method": self.method,
            "status": self.status,
            "retryAfter": self.retry_after,
            "latency": self.latency,
            "count": self.count,
            "probability": self.probability,
            "seed": self.seed,
            "fired": self.fired,
        }


def parse_fault(spec: Mapping[str, Any]) -> Fault:
    """Build a :class:`Fault` from keyword-style data (Python API or admin JSON).

    :raises ValueError: with a readable message when the spec is invalid.
    """
    data = dict(spec)
    kind = data.pop("kind", None)
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {sorted(FAULT_KINDS)}")
    if "retryAfter" in data:
        data["retry_after"] = data.pop("retryAfter")
    if "holdTimeout" in data:
        data["hold_timeout"] = data.pop("holdTimeout")
    allowed = {
        "route",
        "method",
        "status",
        "retry_after",
        "latency",
        "count",
        "probability",
        "seed",
        "hold_timeout",
    }
    unknown = set(data) - allowed
    if unknown:
        raise ValueError(f"unknown fault field(s): {sorted(unknown)}")
    route = data.get("route", "*")
    if not isinstance(route, str) or not (route == "*" or route in ROUTE_NAMES or "/" in route):
        raise ValueError(f"route must be '*', a path glob or one of {list(ROUTE_NAMES)}")
    status = data.get("status")
    if kind == "status":
        if not isinstance(status, int) or not 400 <= status <= 599:
            raise ValueError("status faults need an integer 'status' between 400 and 599")
    elif status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise ValueError("status must be an HTTP status code")
    if "count" not in data:
        # One-shot by default; probabilistic faults stay active until cleared.
        data["count"] = None if data.get("probability") is not None else 1
    count = data.get("count")
    if count is not None and (not isinstance(count, int) or isinstance(count, bool) or count < 1):
        raise ValueError("count must be a positive integer")
    prob = data.get("probability")
    if prob is not None and (not isinstance(prob, (int, float)) or not 0 <= prob <= 1):
        raise ValueError("probability must be between 0 and 1")
    for num in ("latency", "hold_timeout", "retry_after"):
        if num in data and (not isinstance(data[num], (int, float)) or data[num] < 0):
            raise ValueError(f"{num} must be a non-negative number")
    if "retry_after" in data:
        data["retry_after"] = int(data["retry_after"])
    return Fault(kind=kind, **data)


class FaultSet:
    """Thread-safe ordered collection of faults; first matching rule wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        """Register a fault."""
        with self._lock:
            self._faults.append(fault)
        return fault

    def clear(self) -> int:
        """Remove every fault and return how many there were."""
        with self._lock:
            n = len(self._faults)
            self._faults.clear()
            return n

    def list(self) -> list[Fault]:
        """Snapshot of the active faults."""
        with self._lock:
            return list(self._faults)

    def take(self, method: str, route: str, path: str) -> Fault | None:
        """Return the fault that fires for this request (consuming a count), if any."""
        if not self._faults:  # fast path: no lock when nothing is configured
            return None
        with self._lock:
            for f in self._faults:
                if not f.matches(method, route, path):
                    continue
                if f.probability is not None and f._rng.random() >= f.probability:
                    continue
                f.fired += 1
                if f.count is not None and f.fired >= f.count:
                    self._faults.remove(f)
                return f
        return None
