"""ExecutionTrigger: waits for a SmartMCA execution inside Airflow's triggerer.

One triggerer process runs every deferred wait of the deployment (about a thousand) on ONE
event loop, so everything here is async and cheap:

* what the triggers of the loop share (connection lookups, HTTP sessions, request budgets,
  pollers) is in its :class:`~airflow_provider_smartmca.triggers.context.TriggererContext`: the
  connection is resolved once per run through Airflow's async API, one bounded aiohttp session
  serves every trigger of a connection, and a 429 pauses every wait on its key once;
* a wait reads its execution with one loop over a *reader*: its poller's ticket, when it knows
  its execution's workflow type (:mod:`~airflow_provider_smartmca.triggers.poller` learns many
  executions' states per request from List Executions, and GETs only what the lists cannot
  settle), else its own GET once per interval, jittered, so a thousand tasks deferred together
  do not poll in lockstep. A wait whose poller fails reads with its own GET from then on.

Status classification, error mapping and event shapes are not decided here: they come from
:mod:`airflow_provider_smartmca.client.executions`, :mod:`~airflow_provider_smartmca.client.protocol`
and :mod:`airflow_provider_smartmca.errors`, shared with the sensor's poke mode.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_smartmca.client import executions, protocol
from airflow_provider_smartmca.client.executions import ExecutionWatch, Verdict
from airflow_provider_smartmca.client.settings import check_number
from airflow_provider_smartmca.errors import SmartMCAAuthError, SmartMCAError, SmartMCAValidationError

if TYPE_CHECKING:
    from airflow_provider_smartmca.client.aio import AsyncClient
    from airflow_provider_smartmca.client.contract import Execution
    from airflow_provider_smartmca.client.settings import ClientSettings
    from airflow_provider_smartmca.triggers.budget import RequestBudget
    from airflow_provider_smartmca.triggers.context import TriggererContext
    from airflow_provider_smartmca.triggers.poller import Ticket

_OP = "ExecutionTrigger"
# Poll intervals are stretched or shrunk by up to this fraction, so pollers that started
# together drift apart instead of hitting the API in bursts.
JITTER = 0.1


def jittered(seconds: float) -> float:
    """``seconds`` stretched or shrunk at random by up to :data:`JITTER`."""
    return seconds * random.uniform(1 - JITTER, 1 + JITTER)


def check_trigger_kwargs(operation: str, version: Any, expected: int, conn_id: Any) -> str:
    """
    What every trigger of this provider checks first in its kwargs: their version, and the
    connection id (returned). Kwargs outlive the provider version that wrote them.

    :raises SmartMCAValidationError: naming ``version`` or ``conn_id``.
    """
    if version != expected:
        raise SmartMCAValidationError(
            "version", f"trigger kwargs of version {version!r} are not understood", operation=operation
        )
    if not isinstance(conn_id, str) or not conn_id.strip():
        raise SmartMCAValidationError(
            "conn_id", f"must be a non-empty string, got {conn_id!r}", operation=operation
        )
    return conn_id


def optional_id(name: str, value: Any, operation: str) -> str | None:
    """An optional id argument: None, or checked by :func:`~airflow_provider_smartmca.client.protocol.validate_id`."""
    return None if value is None else protocol.validate_id(name, value, operation)


def trigger_kwargs(trigger: Any, names: Sequence[str], **values: Any) -> tuple[str, dict[str, Any]]:
    """
    A trigger's classpath and kwargs: its attributes ``names`` in that order (``values`` replace
    theirs, in place), then its ``KWARGS_VERSION``. The order is kept: Airflow hashes the kwargs.
    """
    kwargs = {name: getattr(trigger, name) for name in names} | values | {"version": trigger.KWARGS_VERSION}
    return f"{type(trigger).__module__}.{type(trigger).__qualname__}", kwargs


def usable_workflow_type(value: Any) -> str | None:
    """
    ``value`` when it can be the trigger's ``workflow_type`` (a valid id), else None (unknown).

    For callers passing what the server said (``workflowId``): an odd value only costs the wait
    its coalescing (it polls alone), never the task.
    """
    return None if value is None or protocol.id_problem(value) else value


class _OwnGet:
    """The reader of a wait that polls alone: its own GET, one interval (jittered) after the last."""

    def __init__(
        self, trigger: ExecutionTrigger, client: AsyncClient, settings: ClientSettings, budget: RequestBudget
    ) -> None:
        self.trigger, self.client, self.settings, self.budget = trigger, client, settings, budget

    @cached_property
    def request(self) -> protocol.PreparedRequest:
        """The same for every poll: built (validated, headers made) once, at the first."""
        return protocol.build_request(
            self.settings, "get_execution", path_params={"execution_id": self.trigger.execution_id}
        )

    async def read(self, after: float | None) -> Execution:
        """
        Sleep ``after`` seconds (jittered) or, first, a random part of an interval (the sensor has
        just checked once on the worker, and tasks deferred together must not poll together); then
        GET once. One attempt per reading (no tenacity): the trigger's loop is the retry policy, so
        a poll never blocks for a whole retry cycle and the deadline stays honoured.
        """
        interval, deadline = self.trigger.poll_interval, self.trigger.deadline
        wait = random.uniform(0, interval) if after is None else jittered(after)
        await asyncio.sleep(wait if deadline is None else min(wait, max(0.0, deadline - time.time())))
        left = None if deadline is None else max(0.001, deadline - time.time())
        raw = await self.budget.send(self.client, self.request, timeout=left)
        return protocol.parse_response(self.request, raw, self.settings)  # type: ignore[no-any-return]

    async def leave(self) -> None:
        """Nothing to release."""


class ExecutionTrigger(BaseTrigger):
    """
    Wait for one SmartMCA execution (reads only) until it ends, fails to be readable, or the deadline passes.

    With a ``workflow_type``, the wait is served by the shared poller (List Executions pages or
    GETs, whichever is cheaper per round; only a GET ever ends a wait); without one, or when the
    poller fails, it GETs its execution once per interval.

    It fires exactly one event, built by :func:`~airflow_provider_smartmca.client.executions.make_event`:
    ``success`` (completed), ``failure`` (failed/cancelled, with the failed nodes), ``error``
    (401/403/404, bad connection) or ``timeout`` (deadline). Transient errors (network, timeouts,
    429, 5xx, malformed bodies) only delay the next poll. It never cancels the execution.

    :param conn_id: the Airflow connection id; resolved in the triggerer, never serialized.
    :param execution_id: the execution to wait for.
    :param poll_interval: seconds between polls (> 0), jittered by ±10 %.
    :param deadline: absolute epoch seconds after which a ``timeout`` event fires, or None.
        Computed on the worker so a triggerer restart does not restart the clock.
    :param failure_statuses: statuses besides failed/cancelled that end the wait as a failure.
    :param workflow_type: the execution's workflow (its ``workflowId``), or None when unknown.
        Waits that share one are polled together with List Executions; a wait without one polls
        alone. Optional, so kwargs stored before it existed stay valid.
    :param version: the kwargs' version (:attr:`KWARGS_VERSION`); set by ``serialize``.
    :raises SmartMCAValidationError: a bad argument, at construction on the worker, so it fails
        the task with a clear message instead of failing later inside the shared triggerer.

    A version-1 kwargs dict without ``workflow_type`` is read with the workflow type unknown.

    :attr:`coalesce` False makes every wait poll alone with its own GETs (the benchmark's
    baseline, and a way out should a server's List Executions misbehave).
    """

    KWARGS_VERSION = 1  #: Version of the serialized kwargs; kwargs of another version are refused loudly.

    coalesce: bool = True  #: Serve waits that know their workflow type with the shared poller.

    def __init__(
        self,
        conn_id: str,
        execution_id: str,
        poll_interval: float = 30.0,
        deadline: float | None = None,
        failure_statuses: Sequence[str] = (),
        workflow_type: str | None = None,
        version: int = KWARGS_VERSION,
    ) -> None:
        super().__init__()
        self.conn_id = check_trigger_kwargs(_OP, version, self.KWARGS_VERSION, conn_id)
        self.execution_id = protocol.validate_id("execution_id", execution_id, _OP)
        self.poll_interval = check_number("poll_interval", poll_interval, operation=_OP)
        self.deadline = None if deadline is None else check_number("deadline", deadline, operation=_OP)
        self.failure_statuses = executions.check_failure_statuses(failure_statuses, _OP)
        self.workflow_type = optional_id("workflow_type", workflow_type, _OP)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and kwargs: plain JSON only, no key and nothing derived from it.

        ``workflow_type`` is written only when known, so the kwargs of a wait without one are
        exactly those of earlier releases (a provider downgrade can still rebuild them).
        """
        names = ("conn_id", "execution_id", "poll_interval", "deadline", "failure_statuses")
        classpath, kwargs = trigger_kwargs(self, names, failure_statuses=list(self.failure_statuses))
        if self.workflow_type is not None:
            kwargs["workflow_type"] = self.workflow_type
        return classpath, kwargs

    def _ended(self, watch: ExecutionWatch, execution: Any) -> TriggerEvent | None:
        """The final event for a reading that ends the wait, or None to keep waiting (both poll paths)."""
        verdict = watch.seen(execution)
        if verdict is Verdict.SUCCESS:
            return self._event(
                executions.EVENT_SUCCESS, f"SmartMCA execution {self.execution_id} completed", watch.last
            )
        if verdict is Verdict.FAILURE:
            return self._event(executions.EVENT_FAILURE, executions.failure_message(execution), watch.last)
        return None

    def _event(self, status: str, message: str, execution: dict[str, Any] | None = None) -> TriggerEvent:
        return TriggerEvent(executions.make_event(status, self.execution_id, message, execution))

    def _timeout_event(self, watch: ExecutionWatch) -> TriggerEvent:
        return self._event(executions.EVENT_TIMEOUT, watch.timeout_message(), watch.last)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """
        Poll until a final event; one event is yielded, then the generator ends.

        A rebuilt trigger whose deadline already passed (the triggerer was down, or the task was
        deferred with no time left) times out at once, before resolving the connection or sending
        any request: the deadline is the user's, not the triggerer's.
        """
        watch = ExecutionWatch(self.execution_id, self.log, self.failure_statuses)
        if self.deadline is not None and time.time() >= self.deadline:
            yield self._timeout_event(watch)
            return
        from airflow_provider_smartmca.triggers.context import current

        shared = current()
        for attempt in (1, 2):
            try:
                settings = await shared.settings(self.conn_id)
            # A missing connection (AirflowNotFoundException) or an unusable one (SmartMCAConfigError,
            # an AirflowException too) is final; anything else is a bug and keeps its traceback.
            except AirflowException as exc:
                yield self._event(
                    executions.EVENT_ERROR, f"SmartMCA connection {self.conn_id!r} is unusable: {exc}"
                )
                return
            try:
                event = await self._wait(shared, settings, watch)
            except SmartMCAAuthError as exc:
                if attempt == 1:  # a rotated key: read the connection again, once
                    self.log.warning("SmartMCA answered 401; reading connection %r again", self.conn_id)
                    continue
                event = self._event(executions.EVENT_ERROR, str(exc), watch.last)
            yield event
            return

    async def cleanup(self) -> None:
        """Do nothing on purpose.

        ``cleanup()`` also runs when the trigger merely moves to another triggerer or the
        triggerer restarts; cancelling the SmartMCA execution here would kill healthy work.
        The shared HTTP session is released by ``run()``'s ``async with``.
        """

    async def _wait(
        self, shared: TriggererContext, settings: ClientSettings, watch: ExecutionWatch
    ) -> TriggerEvent:
        """
        Take readings until the execution ends or the deadline passes. A 401 propagates (see ``run``).

        The reader is the shared poller's ticket when it can serve this wait, else (or once the
        poller fails) the wait's own GET; each reading is judged by ``watch`` alike.

        ``async with`` returns the session to the shared pool on every exit: event, error, or
        CancelledError (triggerer shutdown, trigger moved); its last user closes it. CancelledError
        is never caught here, so it propagates untouched, and nothing is sent to SmartMCA on the
        way out: the execution is left alone.

        Each reading is dropped before waiting for the next: kept alive for a whole interval it
        would be promoted to the oldest GC generation, and every full collection walks Airflow's
        ~1M long-lived objects (~0.1 s of CPU each, stalling every trigger).
        """
        from airflow_provider_smartmca.triggers.budget import incr
        from airflow_provider_smartmca.triggers.poller import PollerUnavailable

        async with shared.session(settings) as client:
            # Held for the whole wait: the key's budget lives while any of its waits does.
            reader: _OwnGet | Ticket = (own := _OwnGet(self, client, settings, shared.budget(settings)))
            if self.coalesce and self.workflow_type is not None:
                reader = shared.poller(settings).join(
                    self.execution_id, self.workflow_type, self.poll_interval, self.deadline
                )
            after: float | None = None  # the first reading: a random point of the first interval
            try:
                while True:
                    if self.deadline is not None and self.deadline - time.time() <= 0:
                        return self._timeout_event(watch)
                    try:
                        execution = await reader.read(after)
                    except PollerUnavailable as exc:
                        incr("poller.fallbacks")
                        msg = "Waiting for SmartMCA execution %s with its own GETs from now on: %s"
                        self.log.warning(msg, self.execution_id, exc)
                        await reader.leave()
                        reader = own
                        continue
                    except SmartMCAAuthError:
                        raise
                    except SmartMCAError as exc:
                        try:
                            after = watch.failed(exc, settings, self.poll_interval)
                        except SmartMCAError:  # 403/404, bad request, TLS/config, contract drift: final
                            return self._event(executions.EVENT_ERROR, str(exc), watch.last)
                        continue
                    if execution is None:  # the deadline passed while the poller had no reading
                        return self._timeout_event(watch)
                    if (ended := self._ended(watch, execution)) is not None:
                        return ended
                    after = self.poll_interval
                    del execution  # before waiting: GC (see the docstring)
            finally:
                await reader.leave()
