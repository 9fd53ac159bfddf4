"""The one place where an operator starts a SmartMCA execution exactly once and waits for it.

Every operator of this provider that starts an execution (``TriggerWorkflowOperator`` and the
three application operators) subclasses :class:`SmartMCAExecutionOperator` and only says how to
send its POST (and, before Airflow 3.3, how to find its execution again). This base owns the rest:

1. render-time checks of the operator's own arguments (ids are checked by the hook, before any request);
2. with ``on_retry="reattach"``, find this task's previous execution (see :meth:`_previous`) and
   reattach to it when it is pending or running, return it when it completed, or start a new one
   when it failed or was cancelled (the semantics of Airflow's ``ResumableJobMixin``);
3. otherwise send the POST through :mod:`~airflow_provider_smartmca.hooks.start_once`, which keeps
   its intent in this task's :class:`~airflow_provider_smartmca.hooks.start_once.TaskStartStore`
   before sending; then log the ``executionId``, push it to XCom and record it, before any waiting;
4. wait on the worker, or defer to ``ExecutionTrigger`` with an absolute deadline computed here;
5. turn the final execution into the return value, or into a failure listing the failed nodes.

Time budget, in one place: everything before the POST (a previous try's execution, the workflow
check, the snapshot) spends from one deadline, and the POST and its lookup from their own, as
:class:`~airflow_provider_smartmca.hooks.start_once.StartBudget` states; then the wait lasts at most
``timeout`` (default :data:`DEFAULT_TIMEOUT`). Every retry goes through the one policy
(:func:`~airflow_provider_smartmca.client.protocol.retrying`).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

# Through common-compat: airflow.sdk has no conf, nor AirflowFailException, before Airflow 3.2.
from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, conf

from airflow_provider_smartmca.client.contract import Accepted, Execution
from airflow_provider_smartmca.client.executions import (
    EVENT_FAILURE,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
    ExecutionWatch,
    Verdict,
    check_failure_statuses,
    classify_status,
    final_result,
    progress,
    validate_event,
)
from airflow_provider_smartmca.client.protocol import (
    Deadline,
    Retry,
    check_choice,
    spending,
    validate_id,
    when_to_retry,
)
from airflow_provider_smartmca.client.settings import ClientSettings, check_number
from airflow_provider_smartmca.errors import (
    SmartMCAAmbiguousTriggerError,
    SmartMCAError,
    SmartMCAExecutionError,
    SmartMCAExecutionTimeoutError,
    SmartMCANotFoundError,
    SmartMCAValidationError,
)
from airflow_provider_smartmca.hooks.smartmca import HOOK_PARAMS, SmartMCAHook
from airflow_provider_smartmca.hooks.start_once import (
    OnIntent,
    StartBudget,
    TaskStartRecord,
    TaskStartStore,
    recover,
)
from airflow_provider_smartmca.operators.links import XCOM_EXECUTION_ID, SmartMCAExecutionLink, execution_url

if TYPE_CHECKING:
    from airflow.sdk import Context

#: Default seconds between two polls of an execution (any positive value is accepted).
DEFAULT_POLL_INTERVAL = 30.0
#: Default wait: 7 days, as dbt Cloud's. SmartMCA workflows may hold human steps (an underwriter's
#: review) that take days; a wait nobody bounded still ends, and ``timeout=None`` stays possible.
DEFAULT_TIMEOUT = timedelta(days=7)
ON_RETRY_CHOICES = ("reattach", "retrigger")


def is_templated(value: Any) -> bool:
    """Whether a string still holds Jinja (then it is checked after rendering, not at parse time)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_static_id(field: str, value: Any, operation: str) -> None:
    """Parse-time check of a required id: missing or empty fails now; a static value is validated now."""
    if value is None:
        raise SmartMCAValidationError(field, "is required", operation=operation)
    if not is_templated(value):
        validate_id(field, value, operation)


def read_once(
    hook: SmartMCAHook, log: Any, execution_id: str, failure_statuses: Collection[str]
) -> Execution | None:
    """
    Read an execution once before waiting on it (and at each sensor poke), logging its progress.

    :return: the execution; None after a transient failure, logged: the wait rides it out.
    :raises SmartMCAError: a failure that a later poll would meet again.
    """
    try:
        execution = hook.get_execution(execution_id)
    except SmartMCAError as exc:
        if when_to_retry(exc) is Retry.NEVER:
            raise
        log.warning("Checking SmartMCA execution %s failed transiently: %s", execution_id, exc)
        return None
    ExecutionWatch(execution_id, log, failure_statuses).seen(execution)
    return execution


def result_if_ended(execution: Execution | None, failure_statuses: Collection[str]) -> dict[str, Any] | None:
    """The result of an execution that ended (raising for a failure, see ``final_result``); None otherwise."""
    if execution is None or not classify_status(execution.status, failure_statuses).ended:
        return None
    return final_result(execution, failure_statuses)


def defer_wait(
    task: BaseOperator, seen: Execution | None, workflow_type: str | None, terms: dict[str, Any], **defer: Any
) -> dict[str, Any]:
    """
    The deferrable wait of the operators and the sensor: the result when ``seen`` (the check
    before deferring; None when it failed transiently) already ended; else defer ``task`` to
    ``ExecutionTrigger``, which polls the waits on one workflow together.

    :param workflow_type: the execution's workflow when ``seen`` names none.
    :param terms: the trigger's ``conn_id``, ``execution_id``, ``poll_interval``, ``deadline``
        and ``failure_statuses``.
    :param defer: ``kwargs`` and ``timeout`` of ``task.defer``.
    """
    if (result := result_if_ended(seen, terms["failure_statuses"])) is not None:
        return result
    # Imported here: DAG files import this module, and must not pay for the trigger's deps.
    from airflow_provider_smartmca.triggers.execution import ExecutionTrigger, usable_workflow_type

    workflow_type = usable_workflow_type((seen.workflow_id if seen else None) or workflow_type)
    trigger = ExecutionTrigger(**terms, workflow_type=workflow_type)
    task.defer(trigger=trigger, method_name="execute_complete", **defer)


class SmartMCAExecutionOperator(BaseOperator):
    """
    Base of the operators that start one SmartMCA execution and (optionally) wait for it.

    :param smartmca_conn_id: the Airflow connection to SmartMCA (templated).
    :param wait_for_completion: wait for the execution to end; the return value is then the final
        execution, otherwise the POST's answer.
    :param deferrable: wait in the triggerer instead of on the worker. Defaults to
        ``[operators] default_deferrable``.
    :param poll_interval: seconds (or a timedelta) between two polls (templated).
    :param timeout: seconds (or a timedelta) to wait for the execution, default 7 days; None waits
        without limit (templated). The execution itself is not cancelled when the wait times out.
    :param failure_statuses: statuses besides ``failed`` and ``cancelled`` that end the wait as a
        failure, e.g. ``["paused"]``. Other unknown statuses are waited on until the timeout.
    :param on_retry: ``"reattach"`` (default): a retry looks at this task's previous execution
        first and only starts a new one when it failed or was cancelled. ``"retrigger"``: every
        try starts a fresh execution, even when the previous try died with its POST in flight
        (so it may start a second one: only for workflows that are safe to run twice).
    :param hook_params: hook settings for this task: ``timeout``, ``max_retries``,
        ``retry_min_wait``, ``retry_max_wait``, ``retry_after_cap`` (override the connection's).

    A subclass sets :attr:`operation` (its name in error messages, and the hook method it calls)
    and provides :meth:`start_execution`, and as needed :meth:`check_rendered`,
    :meth:`before_start` and :meth:`lookup_filters`; the rest is shared.
    """

    template_fields: Sequence[str] = ("smartmca_conn_id", "poll_interval", "timeout")
    operator_extra_links = (SmartMCAExecutionLink(),)
    ui_color = "#e8f1fb"

    operation: ClassVar[str] = "smartmca"

    def __init__(
        self,
        *,
        smartmca_conn_id: str = "smartmca_default",
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | timedelta | str = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta | str | None = DEFAULT_TIMEOUT,
        failure_statuses: Collection[str] = (),
        on_retry: str = "reattach",
        hook_params: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        op = self.operation
        if not isinstance(smartmca_conn_id, str) or not smartmca_conn_id.strip():
            raise SmartMCAValidationError("smartmca_conn_id", "must be a non-empty string", operation=op)
        check_choice("on_retry", on_retry, ON_RETRY_CHOICES, op)
        self.failure_statuses = check_failure_statuses(failure_statuses, op)
        if unknown := sorted(set(hook_params or {}) - set(HOOK_PARAMS)):
            problem = f"unknown key(s) {unknown}; known: {', '.join(HOOK_PARAMS)}"
            raise SmartMCAValidationError("hook_params", problem, operation=op)
        ClientSettings().with_overrides(_source="hook_params", **(hook_params or {}))  # values, now
        self.smartmca_conn_id = smartmca_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval: Any = poll_interval
        self.timeout: Any = timeout
        # Templated values are checked once rendered (check_rendered); static ones now, at parse time.
        self._check_times(rendered=False)
        self.on_retry = on_retry
        self.hook_params = dict(hook_params or {})
        self._execution_id: str | None = None

    def check_rendered(self) -> None:
        """Check the rendered (templated) arguments; raise :class:`SmartMCAValidationError`."""
        self._check_times(rendered=True)

    def _check_times(self, *, rendered: bool) -> None:
        """
        ``poll_interval`` and ``timeout`` as seconds (from a number, a timedelta or a rendered
        template's string), within their ``BOUNDS``; a template waits for rendering, and a
        ``timeout`` of None waits without limit.
        """
        for name, bound in (("poll_interval", "poll_interval"), ("timeout", "wait_timeout")):
            value = getattr(self, name)
            if (value is None and name == "timeout") or (is_templated(value) and not rendered):
                continue
            value = value.total_seconds() if isinstance(value, timedelta) else value
            number = check_number(name, value, bound=bound, operation=self.operation, text=True)
            setattr(self, name, float(number))

    def before_start(self) -> None:
        """Checks that need the API but send nothing (e.g. the workflow's entity type)."""

    def start_execution(self, record: TaskStartRecord, on_intent: OnIntent) -> Accepted:
        """Send the POST that starts the execution, through the hook (which makes it start-once)."""
        raise NotImplementedError

    def lookup_filters(self) -> dict[str, str] | None:
        """``list_executions`` filters that find this task's executions (used before Airflow 3.3)."""
        return None

    @cached_property
    def hook(self) -> SmartMCAHook:
        """The hook, created once per task (and so one pooled HTTP session)."""
        return SmartMCAHook(self.smartmca_conn_id, **self.hook_params)

    def execute(self, context: Context) -> Any:
        """
        Start (or reattach) and wait. Every read before the POST, and the snapshot, spend from one
        deadline; the wait has its own.
        """
        try:
            self.check_rendered()
            with spending(Deadline.after(StartBudget.of(self.hook.settings).before_post)):
                result, execution_id = self._start(context)
            return self._seen(result if execution_id is None else self._wait(execution_id))
        except SmartMCAError as exc:
            if isinstance(exc, SmartMCAExecutionError):
                self._seen({"executionId": exc.execution_id, "status": exc.execution_status})
            # A task retry repeats the POST: what must never be re-sent fails the task for good.
            if when_to_retry(exc, idempotent=False) is Retry.NEVER:
                raise AirflowFailException(str(exc)) from exc
            raise

    def _start(self, context: Context) -> tuple[Any, str | None]:
        """Reattach or start: ``(result, None)`` when done, ``(None, execution_id)`` to wait for it."""
        store = TaskStartStore(context.get("task_state_store"))
        record = store.load()
        previous = self._previous(context, store, record) if self.on_retry == "reattach" else None
        if isinstance(previous, dict):  # an action that was done and started nothing
            self.log.info("This task's action was already done by an earlier try; nothing is sent again")
            return previous, None
        if previous is not None:
            if classify_status(previous.status, self.failure_statuses) is not Verdict.FAILURE:
                self.log.info(
                    "Reattaching to this task's previous SmartMCA execution (%s); nothing is sent again",
                    progress(previous),
                )
                return self._follow(context, previous.execution_id, record.response or previous.raw, previous)
            self.log.warning(
                "Previous SmartMCA execution %s of this task ended %s; starting a new one",
                previous.execution_id,
                previous.status,
            )
        self.before_start()

        def on_intent(intent: Any) -> None:
            """A new POST supersedes the previous (failed) execution; None: it surely did nothing."""
            store.save(TaskStartRecord(intent=intent, workflow_id=record.workflow_id))

        accepted = self.start_execution(record, on_intent)
        store.save(TaskStartRecord.answered(accepted, record.workflow_id))
        if accepted.execution_id is None:
            self.log.info(
                "SmartMCA answered %s without an executionId: done, nothing to wait for", self.operation
            )
            return accepted.raw, None
        how = "Recovered" if accepted.recovered else "Started"
        self.log.info("%s SmartMCA execution %s", how, accepted.execution_id)
        if self.wait_for_completion:
            # The 202 names the workflow: the trigger polls it with the other waits of that workflow.
            self._workflow_type = accepted.workflow_id or record.workflow_id
        return self._follow(context, accepted.execution_id, accepted.raw)

    def _follow(
        self, context: Context, execution_id: str, answer: Any, seen: Execution | None = None
    ) -> tuple[Any, str | None]:
        """
        Remember the id for on_kill and push it to XCom (the extra link reads it), before any
        waiting; then ``answer`` when not waiting, the result when ``seen`` completed, or wait.
        """
        self._execution_id = execution_id
        context["ti"].xcom_push(key=XCOM_EXECUTION_ID, value=execution_id)
        if not self.wait_for_completion:
            return answer, None
        if seen is not None and classify_status(seen.status, self.failure_statuses) is Verdict.SUCCESS:
            return final_result(seen), None
        return None, execution_id

    def _previous(
        self, context: Context, store: TaskStartStore, record: TaskStartRecord
    ) -> Execution | dict[str, Any] | None:
        """
        This task's previous execution, read fresh; the answer of an earlier action that started
        none; or None. A POST whose try died in flight is resolved by the start-once lookup.
        """
        if not store.durable:
            return self._previous_by_lookup(context)
        if record.intent is not None:
            cause = f"{self.operation}: an earlier try died while its request was in flight"
            store.save(TaskStartRecord.answered(recover(self.hook, record.intent, cause)))
            record = store.load()
        if record.execution_id is None:
            return record.response
        try:
            return self.hook.patiently(self.hook.get_execution, record.execution_id)
        except SmartMCANotFoundError:
            self.log.warning(
                "Recorded execution %s no longer exists; starting a new one", record.execution_id
            )
            return None

    def _previous_by_lookup(self, context: Context) -> Execution | None:
        """Airflow < 3.3 (no task_state_store): the newest matching execution since the DAG run began."""
        ti = context["ti"]
        if (getattr(ti, "try_number", 1) or 1) <= 1:
            return None
        filters = self.lookup_filters()
        dag_run = context.get("dag_run")
        since = getattr(dag_run, "start_date", None) or getattr(dag_run, "run_after", None)
        if filters is None or since is None:
            # Nothing tells this try whether an earlier one sent its POST: never re-send silently.
            raise SmartMCAAmbiguousTriggerError(
                f"{self.operation}: this is try {ti.try_number}, and before Airflow 3.3 (no task_state_store) "
                "nothing records whether an earlier try sent the request. It is not sent again, so that "
                "nothing is done twice. Set lookup_workflow_type so that a retry can find the earlier "
                "execution, or on_retry='retrigger' to accept sending it again.",
                candidates=[],
                operation=self.operation,
            )
        # The DAG run's start is on Airflow's clock; the server stamps startedAt on its own.
        since -= timedelta(seconds=self.hook.settings.clock_skew)
        found = self.hook.patiently(lambda: self.hook.find_executions_since(since, **filters))
        if not found:
            return None
        self.log.info(
            "Found %d execution(s) of %s since the DAG run began; using the newest", len(found), filters
        )
        return self.hook.patiently(self.hook.get_execution, found[0].execution_id)

    def _wait(self, execution_id: str) -> dict[str, Any]:
        """
        Wait on the worker or defer. Both waits take the same terms: seconds once rendered, and the
        absolute end of the wait (epoch seconds), computed once, here on the worker. When deferrable,
        a transient failure of the read before deferring still defers: the trigger rides out the
        storm without holding a worker.
        """
        wait = dict(poll_interval=self.poll_interval, failure_statuses=self.failure_statuses)
        wait["deadline"] = None if self.timeout is None else time.time() + float(self.timeout)
        if not self.deferrable:
            return final_result(self.hook.wait_for_execution(execution_id, **wait), self.failure_statuses)
        seen = read_once(self.hook, self.log, execution_id, self.failure_statuses)
        wait.update(conn_id=self.smartmca_conn_id, execution_id=execution_id)
        workflow_type = getattr(self, "_workflow_type", None)
        return defer_wait(self, seen, workflow_type, wait, kwargs={"execution_id": execution_id})

    def execute_complete(
        self, context: Context, event: Any = None, execution_id: str | None = None
    ) -> dict[str, Any]:
        """
        Resume after the trigger: validate the event, re-read the execution (patiently: the result
        of an ended execution must not be lost to a passing API storm), same result as sync mode.
        """
        self._seen(event.get("execution") if isinstance(event, dict) else None)
        event = validate_event(event, expected_execution_id=execution_id)
        execution_id = self._execution_id = event["execution_id"]
        status = event["status"]
        message = event.get("message") or ""
        if status == EVENT_TIMEOUT:
            raise SmartMCAExecutionTimeoutError(
                message or f"Timed out waiting for SmartMCA execution {execution_id}.",
                execution_id=execution_id,
            )
        if status in (EVENT_SUCCESS, EVENT_FAILURE):
            execution = self.hook.patiently(self.hook.get_execution, execution_id)
            verdict = classify_status(execution.status, self.failure_statuses)
            expected = Verdict.SUCCESS if status == EVENT_SUCCESS else Verdict.FAILURE
            if verdict is expected:
                return final_result(execution, self.failure_statuses)
            raise SmartMCAExecutionError(
                f"SmartMCA trigger reported {status} for execution {execution_id}, but it now reads "
                f"{execution.status!r}; failing closed. Trigger message: {message}",
                execution_id=execution_id,
                execution_status=execution.status,
            )
        # The trigger rides out transient errors itself: what it reports, a task retry would meet again.
        raise AirflowFailException(f"Waiting for SmartMCA execution {execution_id} failed: {message}")

    def _seen(self, result: Any) -> Any:
        """Keep the execution JSON the task last saw, for the OpenLineage facet; return ``result``."""
        if isinstance(result, dict):
            self._lineage_seen = result
        return result

    def _lineage(self, *, failed: bool) -> Any:
        """The OpenLineage facets: what the task saw wins; its own target (lookup filters) fills the gaps."""
        from airflow_provider_smartmca.operators.lineage import operator_lineage

        target = self.lookup_filters() or {}
        seen = {
            "workflowId": getattr(self, "_workflow_type", None) or target.get("workflow_type"),
            "entityType": target.get("entity_type"),
            "entityId": target.get("entity_id"),
        }
        seen.update((k, v) for k, v in getattr(self, "_lineage_seen", {}).items() if v is not None)
        execution_id = seen.get("executionId") or self._execution_id
        url = execution_url(self.hook, execution_id) if execution_id else None
        return operator_lineage(seen, execution_id, url, failed=failed)

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """
        OpenLineage: an ``OperatorLineage`` whose run facet ``smartmca_execution`` names the
        execution (id, workflow, entity, status, link), built from what the task saw: no request.
        None when OpenLineage is not installed.
        """
        return self._lineage(failed=False)

    def get_openlineage_facets_on_failure(self, task_instance: Any) -> Any:
        """OpenLineage on failure: as on complete; without an execution, the facet says none was started."""
        return self._lineage(failed=True)

    def on_kill(self) -> None:
        """SmartMCA has no cancel endpoint: say which execution is left running and how to find it."""
        if (execution_id := self._execution_id) is None:
            self.log.info("Task killed before any SmartMCA execution was started")
            return
        where = (
            execution_url(self.hook, execution_id)
            or f"GET /api/public/v1/workflows/executions/{execution_id}"
        )
        self.log.warning(
            "Task killed; SmartMCA execution %s is left running (the SmartMCA API has no cancel endpoint). "
            "Find it at %s. A retry of this task reattaches to it (on_retry='reattach').",
            execution_id,
            where,
        )
