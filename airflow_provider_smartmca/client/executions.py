"""What an execution's status means, and the trigger events that carry it: decided once, for every mode.

The sync wait (hook), the sensor's poke, the trigger and ``execute_complete`` all use these
functions, so an execution cannot end as success in one mode and failure in another.
Fail closed: only ``completed`` is success; an unknown status keeps waiting until the deadline.
"""

from __future__ import annotations

import enum
from collections.abc import Collection
from datetime import datetime
from typing import Any

from airflow_provider_smartmca.client.contract import (
    ACTIVE_STATUSES,
    ATTRIBUTES,
    FAILED_STATUSES,
    SUCCESS_STATUS,
    Execution,
    Node,
)
from airflow_provider_smartmca.errors import SmartMCAExecutionError, SmartMCAValidationError


class Verdict(enum.Enum):
    """What to do after reading an execution's status."""

    SUCCESS = "success"
    FAILURE = "failure"
    WAIT = "wait"
    UNKNOWN = "unknown"  # keep waiting, warn once per change; never success

    @property
    def ended(self) -> bool:
        """The execution ended: the wait is over, in success or failure."""
        return self in (Verdict.SUCCESS, Verdict.FAILURE)


def check_failure_statuses(value: Any, operation: str) -> tuple[str, ...]:
    """
    ``failure_statuses`` as given to an operator, the sensor, the trigger or a wait: a list (tuple,
    set) of status names, each a non-empty string.

    :raises SmartMCAValidationError: anything else (a bare string too), naming ``failure_statuses``.
    """
    collection = isinstance(value, (list, tuple, set, frozenset))
    if collection and all(isinstance(s, str) and s for s in value):
        return tuple(value)
    got = f"a {type(value).__name__}" + (" with an empty or non-string item" if collection else "")
    problem = f"must be a list of status names (non-empty strings), got {got}"
    raise SmartMCAValidationError("failure_statuses", problem, operation=operation)


def classify_status(status: Any, failure_statuses: Collection[str] = ()) -> Verdict:
    """
    Map an execution status to a :class:`Verdict` (fail closed).

    :param failure_statuses: extra statuses that end the wait as a failure (e.g. ``paused``).
    """
    if status == SUCCESS_STATUS:
        return Verdict.SUCCESS
    if status in FAILED_STATUSES or status in failure_statuses:
        return Verdict.FAILURE
    if status in ACTIVE_STATUSES:
        return Verdict.WAIT
    return Verdict.UNKNOWN


def failed_nodes(execution: Execution) -> list[Node]:
    """The nodes that failed or were cancelled, or that report an error."""
    return [n for n in execution.nodes if n.status in FAILED_STATUSES or n.error]


def failure_message(execution: Execution) -> str:
    """A message for an execution that ended badly, listing the failed nodes and their errors."""
    head = f"SmartMCA execution {execution.execution_id} ({execution.workflow_id or '?'}) ended {execution.status}"
    if not (nodes := failed_nodes(execution)):
        return head + " (no failed node reported)"
    details = "; ".join(f"{n.name} [{n.status}]" + (f": {n.error}" if n.error else "") for n in nodes)
    return f"{head}. Failed nodes: {details}"


def nodes_done(execution: Execution) -> int | None:
    """How many nodes completed or were skipped; None when the execution carries no node list.

    A List Executions item has ``nodeCount`` but no ``nodes``: its count of nodes done is
    unknown, not zero.
    """
    if not execution.nodes:
        return None
    return sum(1 for n in execution.nodes if n.status in ("completed", "skipped"))


def progress(execution: Execution) -> str:
    """One progress line: status, nodes done out of the total (when known), current node."""
    current = execution.current_node or next((n.name for n in execution.nodes if n.status == "running"), None)
    line = f"execution {execution.execution_id} {execution.status}"
    # No node list (a List Executions item): "0/6 nodes done" would read as no progress.
    if (done := nodes_done(execution)) is not None:
        line += f": {done}/{execution.node_count or len(execution.nodes)} nodes done"
    return line + (f", current node: {current}" if current else "")


#: The execution fields a :func:`summary` holds.
_SUMMARY = ("executionId", "workflowId", "entityType", "entityId", "status", "startedAt", "completedAt")


def fields_json(execution: Execution, names: Collection[str]) -> dict[str, Any]:
    """The execution's fields ``names`` (JSON keys, in that order), timestamps in ISO 8601."""
    values = {name: getattr(execution, ATTRIBUTES[name]) for name in names}
    return {name: v.isoformat() if isinstance(v, datetime) else v for name, v in values.items()}


def summary(execution: Execution) -> dict[str, Any]:
    """A small JSON summary of an execution, for trigger events (kept small: events live in the DB)."""
    failed = [{"name": n.name, "status": n.status, "error": n.error} for n in failed_nodes(execution)]
    return {**fields_json(execution, _SUMMARY), "failedNodes": failed[:20], "progress": progress(execution)}


def final_result(execution: Execution, failure_statuses: Collection[str] = ()) -> dict[str, Any]:
    """
    Return a completed execution's JSON (the operators' and sensor's return value); raise for
    failed, cancelled or a ``failure_statuses`` status, and for anything else (fail closed).
    """
    if (verdict := classify_status(execution.status, failure_statuses)) is Verdict.SUCCESS:
        return execution.raw
    unfinished = f"SmartMCA execution {execution.execution_id} is not finished (status {execution.status!r})"
    message = failure_message(execution) if verdict is Verdict.FAILURE else unfinished
    raise SmartMCAExecutionError(
        message, execution_id=execution.execution_id, execution_status=execution.status
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
    :param execution: the :func:`summary` of the last execution seen, if any.
    """
    if status not in EVENT_STATUSES:
        raise ValueError(f"unknown event status {status!r}")
    return {"status": status, "execution_id": execution_id, "message": message, "execution": execution}


def validate_event(event: Any, expected_execution_id: str | None = None) -> dict[str, Any]:
    """
    Check an event that came back to ``execute_complete``; a missing or malformed one fails.

    :raises SmartMCAExecutionError: the event is None, not a dict, has an unknown status, or is
        for another execution.
    """
    if not isinstance(event, dict):
        raise SmartMCAExecutionError(f"SmartMCA trigger returned no usable event: {event!r}")
    status, execution_id = event.get("status"), event.get("execution_id")
    if status not in EVENT_STATUSES:
        problem = f"has unknown status {status!r}: {event!r}"
    elif not isinstance(execution_id, str) or not execution_id:
        problem = f"has no execution_id: {event!r}"
    elif expected_execution_id is not None and execution_id != expected_execution_id:
        problem = f"is for execution {execution_id}, expected {expected_execution_id}"
    elif not isinstance(event.get("message", ""), str):
        problem = f"has a non-string message: {event!r}"
    else:
        return event
    raise SmartMCAExecutionError(f"SmartMCA trigger event {problem}")


# --- one wait, polled by the worker (hook) or the triggerer (trigger) -------------------------


class ExecutionWatch:
    """
    What each poll of one execution means, shared by the worker's sync wait, the sensor and the
    async trigger, so all log, warn, back off and time out alike; only sending and sleeping differ.

    :param execution_id: the execution being watched.
    :param log: where progress goes (the hook's or the trigger's logger).
    :param failure_statuses: extra statuses that end the wait as a failure (e.g. ``paused``).
    :ivar last: small summary of the last execution seen (kept small: see :meth:`seen`), or None.
    """

    def __init__(self, execution_id: str, log: Any, failure_statuses: Collection[str] = ()) -> None:
        self.execution_id = execution_id
        self.log = log
        self.failure_statuses = frozenset(failure_statuses)
        self.last: dict[str, Any] | None = None
        self._last_seen: tuple[str, str] | None = None  # (status, progress line) of the last reading
        self._done: int | None = None  # nodes done, as the last reading with a node list said
        self._unknown_logged: set[str] = set()
        self._failures = 0

    def seen(self, execution: Execution) -> Verdict:
        """
        Record one successful poll; log its progress when it changed; return what it means.

        A status change, or a change in the count of nodes done, is logged at info: what an
        on-call engineer follows. A reading that only moves the current node (a List Executions
        item has no node list, so its count is unknown) is logged at debug: with a thousand
        waits in a triggerer, a line per node per wait would be most of the log and of the CPU.
        Only a summary is kept: a whole execution per wait, replaced every poll, would be promoted
        to the oldest GC generation (costly with a thousand waits in a triggerer).
        """
        self._failures = 0
        status = execution.status
        verdict = classify_status(status, self.failure_statuses)
        line = progress(execution)
        last = self._last_seen
        if last is not None and last[1] == line:  # the line names the status: nothing changed
            return verdict
        if verdict is Verdict.UNKNOWN and status not in self._unknown_logged:
            self._unknown_logged.add(status)
            self.log.warning(
                "SmartMCA execution %s has status %r, which the provider does not know; waiting until "
                "the deadline (never treated as success; list it in failure_statuses to fail fast)",
                self.execution_id,
                status,
            )
        done = nodes_done(execution)
        # An unknown count (a list reading after a GET) is no change: the count did not go back.
        moved = last is None or last[0] != status or (done is not None and done != self._done)
        self._last_seen = (status, line)
        if done is not None:
            self._done = done
        self.last = summary(execution)
        (self.log.info if moved else self.log.debug)("SmartMCA %s", line)
        return verdict

    def failed(self, exc: BaseException, settings: Any, interval: float) -> float:
        """
        Record a failed poll; return how long to wait before the next one.

        :func:`~airflow_provider_smartmca.client.protocol.when_to_retry` decides, counting the
        failures in a row: transient failures are polled again until the deadline, a contract
        error a few times at most.

        :raises BaseException: ``exc`` itself, when it is final.
        """
        from airflow_provider_smartmca.client.protocol import Retry, backoff_seconds, when_to_retry

        self._failures += 1
        if when_to_retry(exc, failures=self._failures) is Retry.NEVER:
            raise exc
        # Honours a 429's Retry-After; else exponential backoff with jitter; never faster than the interval.
        wait = max(interval, backoff_seconds(settings, self._failures, exc))
        self.log.warning(
            "Polling SmartMCA execution %s failed (%d in a row), polling again in %.1f s: %s",
            self.execution_id,
            self._failures,
            wait,
            exc,
        )
        return wait

    def timeout_message(self) -> str:
        """The message of a wait that hit its deadline, naming the last status seen."""
        last = self._last_seen
        seen = (
            f"; last status {last[0]!r} ({last[1]})" if last else ": it could not be read before the deadline"
        )
        return (
            f"Timed out waiting for SmartMCA execution {self.execution_id}{seen}. The provider does not "
            "cancel it (the API has no cancel endpoint)."
        )

    @property
    def last_status(self) -> str | None:
        """The status of the last execution seen, or None."""
        return self._last_seen[0] if self._last_seen else None
