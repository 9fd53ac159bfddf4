"""Helpers shared by the operator tests: failure capture, result normalisation, DAG sources."""

from __future__ import annotations

from typing import Any

#: task_id (or task_id[map_index]) -> str(exception) of its last failure, filled by ``record_failure``.
FAILURES: dict[str, str] = {}
#: task_id -> type name of the exception of its last failure.
FAILURE_TYPES: dict[str, list[str]] = {}

_VOLATILE = {"executionId", "startedAt", "completedAt", "entityId", "applicationId"}


def record_failure(context: Any) -> None:
    """``on_failure_callback`` that keeps the exception message, so tests can compare it."""
    ti = context["ti"]
    exc = context.get("exception")
    name = ti.task_id if ti.map_index is None or ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
    FAILURES[name] = str(exc)
    chain = []
    while exc is not None:
        chain.append(type(exc).__name__)
        exc = exc.__cause__
    FAILURE_TYPES[name] = chain


def normalize(value: Any) -> Any:
    """Drop the fields that differ between two runs of the same workflow (ids, timestamps)."""
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items() if k not in _VOLATILE}
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


def normalize_message(message: str) -> str:
    """Replace execution ids in a failure message, so two runs' messages compare equal."""
    import re

    return re.sub(r"exec_[0-9a-f]+", "exec_X", message)
