"""Emulator-wide behaviours: server clock, Date header, list order and lag, trailing-slash lists, drift.

Unlike a :class:`~airflow_provider_smartmca.testing.faults.Fault`, a behaviour
applies to every request until changed. The same names are used in the config
file, the admin API (``/_emulator/behaviour``) and :meth:`Emulator.configure`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

__all__ = ["BEHAVIOUR_FIELDS", "DRIFTS", "LIST_ORDERS", "Behaviour", "iso_ms", "parse_behaviour"]

LIST_ORDERS = ("honour", "ignore_asc", "shuffle")
DRIFTS = (
    "rename_fields",
    "list_envelope",
    "list_items_without_id",
    "action_204",
    "action_no_execution",
    "unknown_status",
    "unsorted_list",
    "bad_timestamps",
    "status_as_list",
    "nodes_as_number",
    "list_items_not_objects",
    "no_timestamps",
    "no_completed_at",
    "total_counts_page",
    "huge_total",
)


def iso_ms(ts: float) -> str:
    """Format a Unix timestamp as ISO-8601 UTC with milliseconds and ``Z`` (a four-digit year, even year 1)."""
    dt = datetime.fromtimestamp(ts, tz=UTC)
    return f"{dt.year:04d}-" + dt.strftime("%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Behaviour:
    """Server-wide behaviour; frozen so a request reads one consistent snapshot.

    :param clock_offset_seconds: the server clock runs this far ahead (negative: behind) of
        the emulator's clock; used for the ``Date`` header and every timestamp the server writes.
    :param date_offset_seconds: the ``Date`` header runs this far ahead (negative: behind) of
        the timestamps the server writes, as a gateway whose clock differs from the database's.
    :param date_header: send a ``Date`` header on API responses; ``False``: none at all (as
        some gateways and serverless platforms answer), so a client has no server clock.
    :param list_order: ``honour`` (``sort_by``/``sort_order``), ``ignore_asc`` (always oldest
        first) or ``shuffle`` (a seeded order fixed per execution id, so pages stay consistent).
    :param list_seed: seed of the ``shuffle`` order.
    :param list_lag_seconds: List Executions omits executions created less than this many
        seconds ago (``total`` counts only what it shows), as a read replica lagging behind
        does: a new execution is visible to Get Execution at once, to the list only later.
    :param list_end_lag_seconds: List Executions shows an execution that ended less than this
        many seconds ago as it was just before its end (``running`` on its last node, or
        ``pending``), as a read replica applying status updates late does; Get Execution says
        how it ended at once. A large value is a replica that never catches up.
    :param trailing_slash_list: answer ``GET .../workflows/executions/`` (and ``.../workflows/``)
        as the list endpoint, as many real servers do, instead of 404.
    :param drift: names from :data:`DRIFTS`; each makes the server answer in another shape.
    """

    clock_offset_seconds: float = 0.0
    date_offset_seconds: float = 0.0
    date_header: bool = True
    list_order: str = "honour"
    list_seed: int = 0
    list_lag_seconds: float = 0.0
    list_end_lag_seconds: float = 0.0
    trailing_slash_list: bool = False
    drift: frozenset[str] = field(default_factory=frozenset)

    def now(self, clock: float) -> float:
        """The time the server shows (its offset applied) when the emulator's clock reads ``clock``."""
        return clock + self.clock_offset_seconds

    def stamp(self, ts: float) -> str | int:
        """Render an emulator-clock timestamp as the server writes it (offset, maybe drifted)."""
        ts += self.clock_offset_seconds
        return round(ts * 1000) if "bad_timestamps" in self.drift else iso_ms(ts)

    @property
    def effective_list_order(self) -> str:
        """``list_order``, or ``shuffle`` under the ``unsorted_list`` drift."""
        return "shuffle" if "unsorted_list" in self.drift else self.list_order

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly representation (same keys as the config and admin API)."""
        out = asdict(self)
        out["drift"] = sorted(self.drift)
        return out


BEHAVIOUR_FIELDS = tuple(Behaviour.__dataclass_fields__)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_behaviour(data: Mapping[str, Any], base: Behaviour | None = None) -> Behaviour:
    """Validate ``data`` (a partial update) and return ``base`` with it applied.

    :raises ValueError: naming the field, e.g. ``list_order must be one of [...]``.
    """
    unknown = sorted(set(data) - set(BEHAVIOUR_FIELDS))
    if unknown:
        raise ValueError(f"unknown behaviour field(s) {unknown} (expected some of {list(BEHAVIOUR_FIELDS)})")
    out: dict[str, Any] = {}
    for name, value in data.items():
        if name in ("clock_offset_seconds", "date_offset_seconds"):
            if not _number(value):
                raise ValueError(f"{name} must be a finite number of seconds")
            value = float(value)
        elif name == "date_header" and not isinstance(value, bool):
            raise ValueError("date_header must be true or false")
        elif name in ("list_lag_seconds", "list_end_lag_seconds"):
            if not _number(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative finite number of seconds")
            value = float(value)
        elif name == "list_order" and value not in LIST_ORDERS:
            raise ValueError(f"list_order must be one of {list(LIST_ORDERS)}")
        elif name == "list_seed" and (not isinstance(value, int) or isinstance(value, bool)):
            raise ValueError("list_seed must be an integer")
        elif name == "trailing_slash_list" and not isinstance(value, bool):
            raise ValueError("trailing_slash_list must be true or false")
        elif name == "drift":
            if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
                raise ValueError("drift must be a list of drift names")
            bad = sorted(str(d) for d in value if d not in DRIFTS)
            if bad:
                raise ValueError(f"drift has unknown name(s) {bad} (expected some of {list(DRIFTS)})")
            value = frozenset(value)
        out[name] = value
    return replace(base or Behaviour(), **out)
