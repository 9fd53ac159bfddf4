"""What an execution's status means, and the trigger events that carry it: decided once, for every mode.

The sync wait (hook), the sensor's poke, the trigger and ``execute_complete`` all use these
functions, so an execution cannot end as success in one mode and failure in another.
Fail closed: only ``completed`` is success; an unknown status keeps waiting until the deadline.
"""

from __future__ import annotations

import enum
from typing import Any

from airflow_provider_smartmca.client.endpoints import ACTIVE_STATUSES, FAILED_STATUSES, SUCCESS_STATUS
from airflow_provider_smartmca.errors import SmartMCAExecutionError


class Verdict(enum.Enum):
    """What to do after reading an execution's status."""

    SUCCESS = "success"
    FAILURE = "failure"
    WAIT = "wait"
    UNKNOWN = "unknown"  # keep waiting, warn once per change; never success


def classify_status(status: Any) -> Verdict:
    """Map an execution status to a :class:`Verdict` (fail closed)."""
    if status == SUCCESS_STATUS:
        return Verdict.SUCCESS
    if status in FAILED_STATUSES:
        return Verdict.FAILURE
    if status in ACTIVE_STATUSES:
        return Verdict.WAIT
    return Verdict.UNKNOWN


def _error_text(error: Any) -> str:
    """A node's ``error`` is a string or an object with ``message`` (and maybe ``code``)."""
    if isinstance(error, dict):
        message = error.get("message") or error.get("code") or str(error)
        return f"{error['code']}: {message}" if error.get("code") and error.get("message") else str(message)
    return str(error)


def failed_nodes(execution: dict[str, Any]) -> list[dict[str, str]]:
    """The nodes that failed or were cancelled, as ``{"name", "status", "error"}``."""
    found = []
    for node in execution.get("nodes") or []:
        if not isinstance(node, dict):
            continue
        if node.get("status") in FAILED_STATUSES or node.get("error"):
            found.append(
                {
                    "name": str(node.get("name") or node.get("id") or "?"),
                    "status": str(node.get("status")),
                    "error": _error_text(node["error"]) if node.get("error") else "",
                }
            )
    return found


def failure_message(execution: dict[str, Any]) -> str:
    """A message for a failed or cancelled execution, listing the failed nodes and their errors."""
    execution_id = execution.get("executionId", "?")
    head = f"SmartMCA execution {execution_id} ({execution.get('workflowId', '?')}) ended {execution.get('status')}"
    nodes = failed_nodes(execution)
    if not nodes:
        return head + " (no failed node reported)"
    details = "; ".join(
        f"{n['name']} [{n['status']}]" + (f": {n['error']}" if n["error"] else "") for n in nodes
    )
    return f"{head}. Failed nodes: {details}"


def progress(execution: dict[str, Any]) -> str:
    """One progress line: status, nodes done out of the total, current node."""
    nodes = [n for n in execution.get("nodes") or [] if isinstance(n, dict)]
    total = execution.get("nodeCount") or len(nodes)
    done = sum(1 for n in nodes if n.get("status") in ("completed", "skipped"))
    current = execution.get("currentNode") or next(
        (n.get("name") for n in nodes if n.get("status") == "running"), None
    )
    line = f"execution {execution.get('executionId')} {execution.get('status')}: {done}/{total} nodes done"
    return line + (f", current node: {current}" if current else "")


_SUMMARY_FIELDS = (
    "executionId",
    "workflowId",
    "workflowName",
    "entityType",
    "entityId",
    "status",
    "startedAt",
    "completedAt",
    "nodeCount",
)


def summary(execution: dict[str, Any]) -> dict[str, Any]:
    """A small JSON summary of an execution, for trigger events (kept small: events live in the DB)."""
    result: dict[str, Any] = {k: execution.get(k) for k in _SUMMARY_FIELDS if k in execution}
    if "nodes" in execution or "failedNodes" not in execution:
        result["failedNodes"] = failed_nodes(execution)[:20]
        result["progress"] = progress(execution)
    else:  # already a summary: summarising it again changes nothing
        result["failedNodes"] = execution["failedNodes"]
        result["progress"] = execution.get("progress")
    return result


def final_result(execution: dict[str, Any]) -> dict[str, Any]:
    """Return a completed execution; raise for failed or cancelled, and for anything else (fail closed)."""
    verdict = classify_status(execution.get("status"))
    if verdict is Verdict.SUCCESS:
        return execution
    if verdict is Verdict.FAILURE:
        raise SmartMCAExecutionError(
            failure_message(execution),
            execution_id=execution.get("executionId"),
            execution_status=execution.get("status"),
        )
    raise SmartMCAExecutionError(
        f"SmartMCA execution {execution.get('executionId')} is not finished (status {execution.get('status')!r})",
        execution_id=execution.get("executionId"),
        execution_status=execution.get("status"),
    )


# --- trigger events ---------------------------------------------------------------------------

EVENT_SUCCESS = "success"
EVENT_FAILURE = "failure"
EVENT_TIMEOUT = "timeout"
EVENT_ERROR = "error"
EVENT_STATUSES = frozenset({EVENT_SUCCESS, EVENT_FAILURE, EVENT_TIMEOUT, EVENT_ERROR})


def make_event(
    status: str, execution_id: str, message: str, execution: dict[str, Any] | None = None
) -> dict[str, Any]:
    """
    Build a trigger event payload: small JSON only.

    :param status: one of success, failure, timeout, error.
    :param execution_id: the execution waited on.
    :param message: a human-readable, already redacted, message.
    :param execution: the last execution seen, summarised into the event.
    """
    if status not in EVENT_STATUSES:
        raise ValueError(f"unknown event status {status!r}")
    return {
        "status": status,
        "execution_id": execution_id,
        "message": message,
        "execution": summary(execution) if execution else None,
    }


def validate_event(event: Any, expected_execution_id: str | None = None) -> dict[str, Any]:
    """
    Check an event that came back to ``execute_complete``; a missing or malformed one fails.

    :raises SmartMCAExecutionError: the event is None, not a dict, has an unknown status, or is
        for another execution.
    """
    if not isinstance(event, dict):
        raise SmartMCAExecutionError(f"SmartMCA trigger returned no usable event: {event!r}")
    status = event.get("status")
    execution_id = event.get("execution_id")
    if status not in EVENT_STATUSES:
        raise SmartMCAExecutionError(f"SmartMCA trigger event has unknown status {status!r}: {event!r}")
    if not isinstance(execution_id, str) or not execution_id:
        raise SmartMCAExecutionError(f"SmartMCA trigger event has no execution_id: {event!r}")
    if expected_execution_id is not None and execution_id != expected_execution_id:
        raise SmartMCAExecutionError(
            f"SmartMCA trigger event is for execution {execution_id}, expected {expected_execution_id}"
        )
    if not isinstance(event.get("message", ""), str):
        raise SmartMCAExecutionError(f"SmartMCA trigger event has a non-string message: {event!r}")
    return event


# --- one wait, polled by the worker (hook) or the triggerer (trigger) -------------------------


class ExecutionWatch:
    """
    What each poll of one execution means, shared by the worker's sync wait and the async trigger,
    so both log, warn, back off and time out alike; only the sending and the sleeping differ.

    :param execution_id: the execution being watched.
    :param log: where progress goes (the hook's or the trigger's logger).
    """

    def __init__(self, execution_id: str, log: Any) -> None:
        self.execution_id = execution_id
        self.log = log
        #: Small summary of the last execution seen (kept small: see ``seen``), or None.
        self.last: dict[str, Any] | None = None
        self._last_seen: tuple[Any, str] | None = None
        self._failures = 0

    def seen(self, execution: dict[str, Any]) -> Verdict:
        """Record one successful poll; log progress when it changed; return what it means."""
        self._failures = 0
        verdict = classify_status(execution.get("status"))
        seen = (execution.get("status"), progress(execution))
        if seen != self._last_seen:
            if verdict is Verdict.UNKNOWN and (self._last_seen is None or self._last_seen[0] != seen[0]):
                self.log.warning(
                    "SmartMCA execution %s has unknown status %r; waiting until the deadline "
                    "(never treated as success)",
                    self.execution_id,
                    seen[0],
                )
            self._last_seen = seen
            # Only a summary is kept: a whole execution per wait, replaced every poll, would be
            # promoted to the oldest GC generation (costly with a thousand waits in a triggerer).
            self.last = summary(execution)
            self.log.info("SmartMCA %s", seen[1])
        return verdict

    def failed(self, exc: BaseException, settings: Any, interval: float) -> float:
        """Record a transient poll failure; return how long to wait before the next poll."""
        from airflow_provider_smartmca.client.protocol import backoff_seconds

        self._failures += 1
        # Honours a 429's Retry-After; else exponential backoff with jitter; never faster than the interval.
        wait = max(interval, backoff_seconds(settings, self._failures, exc))
        self.log.warning(
            "Polling SmartMCA execution %s failed transiently (%d in a row), polling again in %.1f s: %s",
            self.execution_id,
            self._failures,
            wait,
            exc,
        )
        return wait

    def timeout_message(self) -> str:
        """The message of a wait that hit its deadline."""
        seen = self._last_seen[1] if self._last_seen else "never read"
        return (
            f"Timed out waiting for SmartMCA execution {self.execution_id} (last seen: {seen}). "
            "It is left running in SmartMCA."
        )

    @property
    def last_status(self) -> Any:
        """The status of the last execution seen, or None."""
        return self._last_seen[0] if self._last_seen else None
