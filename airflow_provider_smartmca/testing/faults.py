"""Fault injection rules.

A :class:`Fault` matches requests by route name (``trigger``, ``get_execution``
...), by path glob (anything containing ``/``), or ``*``; optionally by HTTP
method and by query parameters (``query={"status": "running", "page": "2"}``: one
precise page of a list).  It fires for the next ``count`` matching requests and/or
with a seeded ``probability``.
"""

from __future__ import annotations

import fnmatch
import itertools
import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ECHO_MODES",
    "FAULT_KINDS",
    "POST_KINDS",
    "PRE_KINDS",
    "ROUTE_NAMES",
    "Fault",
    "FaultSet",
    "parse_fault",
]

# Kinds acting before the handler (nothing happens server-side) ...
PRE_KINDS = frozenset({"status", "latency", "drop_before", "html_error", "echo", "huge_body"})
# ... and after it (the request was fully processed).
POST_KINDS = frozenset({"drop_after", "malformed_json", "hold", "trickle", "status_after", "drop_mid_body"})
FAULT_KINDS = PRE_KINDS | POST_KINDS
ECHO_MODES = ("body", "json_body", "location", "required_scope")
# Options that only mean something for some kinds (the older options are accepted by every kind).
_KIND_OPTIONS = {
    "bytes_per_second": {"trickle"},
    "size": {"huge_body"},
    "chunked": {"huge_body"},
    "echo_in": {"echo"},
    "offset": {"echo"},
}
_ALIASES = {
    "retryAfter": "retry_after",
    "holdTimeout": "hold_timeout",
    "bytesPerSecond": "bytes_per_second",
    "echoIn": "echo_in",
}
_CAMEL = {v: k for k, v in _ALIASES.items()}
_ALLOWED = {
    "route",
    "method",
    "query",
    "status",
    "retry_after",
    "latency",
    "count",
    "probability",
    "seed",
    "hold_timeout",
}
_ALLOWED |= set(_KIND_OPTIONS)

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

    :param kind: before the handler (nothing happens server-side): ``status``, ``latency``,
        ``drop_before``, ``html_error``, ``echo``, ``huge_body``; after it (the server acted):
        ``drop_after``, ``malformed_json``, ``hold``, ``trickle``, ``status_after``, ``drop_mid_body``.
    :param route: route name, path glob (e.g. ``/api/public/v1/workflows/executions/*``) or ``*``.
    :param method: HTTP method to match, or ``None`` for any.
    :param query: query parameters the request must carry with exactly these values (others
        may be present too), e.g. ``{"status": "running", "page": "2"}``; ``None`` for any.
        A parameter the client leaves out does not match, even if the server defaults it.
    :param status: HTTP status for ``status`` (429/500/502/503...), ``status_after`` (default 500),
        ``malformed_json`` (default 200), ``html_error`` (default 502), ``huge_body`` (default 200)
        and ``echo`` (default 500; 302 for ``echo_in="location"``, 403 for ``"required_scope"``).
    :param retry_after: ``Retry-After`` on 429 responses: seconds, or a string sent verbatim (``"nan"``).
    :param latency: seconds added before processing (``latency`` kind).
    :param count: fire for this many matching requests, then retire (``None`` = unlimited).
        :func:`parse_fault` defaults it to 1, or to unlimited when ``probability`` is set.
    :param probability: fire with this probability (seeded by ``seed``).
    :param seed: RNG seed for ``probability``.
    :param hold_timeout: maximum seconds a ``hold`` waits for release.
    :param bytes_per_second: ``trickle`` rate of the real body, after status and headers.
    :param size: ``huge_body`` size in bytes (streamed, never built in memory).
    :param chunked: ``huge_body`` without ``Content-Length`` (chunked transfer encoding).
    :param echo_in: where an ``echo`` puts the request's ``Authorization``: ``body``
        (text/plain), ``json_body`` (``error.message``), ``location`` (3xx ``Location``) or
        ``required_scope`` (403 ``error.requiredScope`` and ``error.message``).
    :param offset: ``echo`` in ``body``/``json_body``: character where the echoed
        ``Authorization: Bearer <key>`` line starts (filler text before it).
    """

    kind: str
    route: str = "*"
    method: str | None = None
    query: dict[str, str] | None = None
    status: int | None = None
    retry_after: int | str = 1
    latency: float = 0.0
    count: int | None = None
    probability: float | None = None
    seed: int = 0
    hold_timeout: float = 30.0
    bytes_per_second: float = 1.0
    size: int = 800_000_000
    chunked: bool = False
    echo_in: str = "body"
    offset: int = 270
    id: int = field(default_factory=lambda: next(_ids))
    fired: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def matches(self, method: str, route: str, path: str, query: Mapping[str, str] | None = None) -> bool:
        """Return whether this rule applies to the request (without consuming it).

        :param query: the request's query parameters (first value of each).
        """
        if self.method is not None and self.method.upper() != method:
            return False
        if self.query and any((query or {}).get(k) != v for k, v in self.query.items()):
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
            "query": self.query,
            "status": self.status,
            "retryAfter": self.retry_after,
            "latency": self.latency,
            "count": self.count,
            "probability": self.probability,
            "seed": self.seed,
            "fired": self.fired,
            **{_CAMEL.get(k, k): getattr(self, k) for k in _KIND_OPTIONS if self.kind in _KIND_OPTIONS[k]},
        }


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any, minimum: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def _in_range(value: Any, lo: int, hi: int) -> bool:
    return _is_int(value, lo) and value <= hi


def _check_status(kind: str, data: dict[str, Any]) -> None:
    """Validate ``status`` for ``kind`` and fill in the new kinds' defaults."""
    status = data.get("status")
    if kind == "echo":
        mode = data.setdefault("echo_in", "body")
        if mode not in ECHO_MODES:
            raise ValueError(f"echo_in must be one of {list(ECHO_MODES)}")
        status = data.setdefault("status", {"location": 302, "required_scope": 403}.get(mode, 500))
        if mode == "location" and not _in_range(status, 300, 399):
            raise ValueError("echo_in 'location' needs a 3xx status")
    elif kind in ("status_after", "huge_body"):
        status = data.setdefault("status", 500 if kind == "status_after" else 200)
    if kind in ("status", "status_after"):
        if not _in_range(status, 400, 599):
            raise ValueError(f"{kind} faults need an integer 'status' between 400 and 599")
    elif status is not None and not _in_range(status, 100, 599):
        raise ValueError("status must be an HTTP status code")


def _query(value: Any) -> dict[str, str]:
    """Validate a ``query`` match; integers are taken as their text (``page=2`` is ``"2"``)."""
    problem = 'query must be an object of parameter names to values, e.g. {"page": "2"}'
    if not isinstance(value, Mapping):
        raise ValueError(problem)
    out: dict[str, str] = {}
    for name, v in value.items():
        if not isinstance(name, str) or not name:
            raise ValueError(problem)
        if isinstance(v, int) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str):
            raise ValueError(f"query.{name} must be a string (or an integer)")
        out[name] = v
    return out


def parse_fault(spec: Mapping[str, Any]) -> Fault:
    """Build a :class:`Fault` from keyword-style data (Python API or admin JSON).

    :raises ValueError: with a readable message when the spec is invalid.
    """
    data = {_ALIASES.get(k, k): v for k, v in spec.items()}
    kind = data.pop("kind", None)
    if kind not in FAULT_KINDS:
        raise ValueError(f"kind must be one of {sorted(FAULT_KINDS)}")
    unknown = set(data) - _ALLOWED
    if unknown:
        raise ValueError(f"unknown fault field(s): {sorted(unknown)}")
    for name in data:
        if kind not in _KIND_OPTIONS.get(name, (kind,)):
            raise ValueError(f"{name} only applies to {sorted(_KIND_OPTIONS[name])} faults")
    if data.get("method") is not None and not isinstance(data["method"], str):
        raise ValueError("method must be an HTTP method name")
    if data.get("query") is not None:
        data["query"] = _query(data["query"]) or None  # {} matches any query
    route = data.get("route", "*")
    if not isinstance(route, str) or not (route == "*" or route in ROUTE_NAMES or "/" in route):
        raise ValueError(f"route must be '*', a path glob or one of {list(ROUTE_NAMES)}")
    _check_status(kind, data)
    if "count" not in data:
        # One-shot by default; probabilistic faults stay active until cleared.
        data["count"] = None if data.get("probability") is not None else 1
    count = data.get("count")
    if count is not None and not _is_int(count, 1):
        raise ValueError("count must be a positive integer")
    prob = data.get("probability")
    if prob is not None and (not _is_num(prob) or not 0 <= prob <= 1):
        raise ValueError("probability must be between 0 and 1")
    for num in ("latency", "hold_timeout"):
        if num in data and (not _is_num(data[num]) or data[num] < 0):
            raise ValueError(f"{num} must be a non-negative number")
    retry_after = data.get("retry_after", 1)
    if isinstance(retry_after, str):
        # Sent verbatim (e.g. "nan", an HTTP date), so only header-breaking characters are refused.
        if not retry_after or any(ord(ch) < 32 for ch in retry_after):
            raise ValueError("retry_after must be a non-negative number or a non-empty header string")
    elif not _is_num(retry_after) or retry_after < 0:
        raise ValueError("retry_after must be a non-negative number or a non-empty header string")
    else:
        data["retry_after"] = int(retry_after)
    if "bytes_per_second" in data and (
        not _is_num(data["bytes_per_second"]) or data["bytes_per_second"] <= 0
    ):
        raise ValueError("bytes_per_second must be a positive number")
    if "size" in data and not _is_int(data["size"], 1):
        raise ValueError("size must be a positive integer (bytes)")
    if "chunked" in data and not isinstance(data["chunked"], bool):
        raise ValueError("chunked must be true or false")
    if "offset" in data and not _is_int(data["offset"], 0):
        raise ValueError("offset must be a non-negative integer")
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

    def take(
        self, method: str, route: str, path: str, query: Mapping[str, str] | None = None
    ) -> Fault | None:
        """Return the fault that fires for this request (consuming a count), if any.

        :param query: the request's query parameters (first value of each).
        """
        if not self._faults:  # fast path: no lock when nothing is configured
            return None
        with self._lock:
            for f in self._faults:
                if not f.matches(method, route, path, query):
                    continue
                if f.probability is not None and f._rng.random() >= f.probability:
                    continue
                f.fired += 1
                if f.count is not None and f.fired >= f.count:
                    self._faults.remove(f)
                return f
        return None
