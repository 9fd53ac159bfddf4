"""The one place where an operator starts a SmartMCA execution exactly once and waits for it.

Every operator of this provider that starts an execution (``TriggerWorkflowOperator`` and the
three application operators) subclasses :class:`SmartMCAExecutionOperator` and only says how
to validate its arguments, how to send its POST and how to find its execution again. This base
owns the rest:

1. validate the rendered arguments (nothing is sent when one is bad);
2. look for this task's previous execution (``task_state_store`` on Airflow >= 3.3, else a
   lookup of the executions started since the DAG run began) and, with ``on_retry="reattach"``,
   reattach to it when it is pending or running, return it when it completed, or start a new one
   when it failed or was cancelled (the semantics of Airflow's ``ResumableJobMixin``);
3. otherwise send the POST (the hook makes it exactly-once: an unknown outcome is looked up, never
   blindly re-sent), then log the ``executionId``, push it to XCom under ``execution_id`` and
   record it durably, all before any waiting;
4. wait on the worker, or defer to ``ExecutionTrigger`` with an absolute deadline computed here;
5. turn the final execution into the return value, or into a failure listing the failed nodes.

Status classification, failure messages and event validation live in
:mod:`airflow_provider_smartmca.client.executions`; this module only calls them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

# Through common-compat: airflow.sdk has no conf, nor AirflowFailException, before Airflow 3.2.
from airflow.providers.common.compat.sdk import AirflowFailException, BaseOperator, conf

from airflow_provider_smartmca.client.executions import (
    EVENT_FAILURE,
    EVENT_SUCCESS,
    EVENT_TIMEOUT,
    Verdict,
    classify_status,
    final_result,
    progress,
    validate_event,
)
from airflow_provider_smartmca.errors import (
    SmartMCAAmbiguousTriggerError,
    SmartMCAAuthError,
    SmartMCAConfigError,
    SmartMCAError,
    SmartMCAExecutionError,
    SmartMCAExecutionTimeoutError,
    SmartMCAInvalidResponseError,
    SmartMCANotFoundError,
    SmartMCAScopeError,
    SmartMCAValidationError,
    is_transient,
)
from airflow_provider_smartmca.operators.links import SmartMCAExecutionLink
from airflow_provider_smartmca.operators.resume import ResumeMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook

#: Default seconds between two polls of an execution (any positive value is accepted).
DEFAULT_POLL_INTERVAL = 30.0
ON_RETRY_CHOICES = ("reattach", "retrigger")

# Errors that a task retry cannot fix, or must not blindly repeat: fail at once, without Airflow
# retries. An ambiguous trigger is one of them: the POST may have started an execution that the
# lookup could not identify, and a retry would send it again.
_FINAL_ERRORS = (
    SmartMCAAmbiguousTriggerError,
    SmartMCAValidationError,
    SmartMCAScopeError,
    SmartMCAAuthError,
    SmartMCAConfigError,
    SmartMCANotFoundError,
)


def is_templated(value: Any) -> bool:
    """Whether a string still holds Jinja (then it is validated after rendering, not at parse time)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def check_static_id(field: str, value: Any, operation: str) -> None:
    """Parse-time check of a required id: missing or empty fails now; a static value is validated now."""
    from airflow_provider_smartmca.client.protocol import validate_id

    if value is None:
        raise SmartMCAValidationError(field, "is required", operation=operation)
    if isinstance(value, str) and not is_templated(value):
        validate_id(field, value, operation)


def _seconds(field: str, value: Any, operation: str) -> float:
    """A positive number of seconds (a number or a timedelta), or a clear error naming ``field``."""
    if isinstance(value, timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SmartMCAValidationError(
            field, f"must be a number of seconds or a timedelta, got {value!r}", operation=operation
        )
    if value <= 0:
        raise SmartMCAValidationError(field, f"must be positive, got {value!r}", operation=operation)
    return float(value)


class SmartMCAExecutionOperator(ResumeMixin, BaseOperator):
    """
    Base of the operators that start one SmartMCA execution and (optionally) wait for it.

    :param smartmca_conn_id: the Airflow connection to SmartMCA.
    :param wait_for_completion: wait for the execution to end; the return value is then the final
        execution, otherwise the 202 response.
    :param deferrable: wait in the triggerer instead of on the worker. Defaults to
        ``[operators] default_deferrable``.
    :param poll_interval: seconds (or a timedelta) between two polls; any positive value.
    :param timeout: seconds (or a timedelta) to wait for the execution, or None for no limit. The
        execution itself is left running when the wait times out.
    :param on_retry: ``"reattach"`` (default): a retry looks at this task's previous execution
        first and only starts a new one when it failed or was cancelled. ``"retrigger"``: every
        try starts a fresh execution.
    """

    template_fields: Sequence[str] = ()
    operator_extra_links = (SmartMCAExecutionLink(),)
    ui_color = "#e8f1fb"

    #: Name used in error messages.
    operation: ClassVar[str] = "smartmca"

    def __init__(
        self,
        *,
        smartmca_conn_id: str = "smartmca_default",
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | timedelta = DEFAULT_POLL_INTERVAL,
        timeout: float | timedelta | None = None,
        on_retry: str = "reattach",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(smartmca_conn_id, str) or not smartmca_conn_id.strip():
            raise SmartMCAValidationError(
                "smartmca_conn_id", "must be a non-empty string", operation=self.operation
            )
        if on_retry not in ON_RETRY_CHOICES:
            raise SmartMCAValidationError(
                "on_retry",
                f"must be one of {', '.join(ON_RETRY_CHOICES)}, got {on_retry!r}",
                operation=self.operation,
            )
        self.smartmca_conn_id = smartmca_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = _seconds("poll_interval", poll_interval, self.operation)
        self.timeout = None if timeout is None else _seconds("timeout", timeout, self.operation)
        self.on_retry = on_retry
        self._execution_id: str | None = None

    # --- what subclasses provide ------------------------------------------------------------

    def validate_rendered(self) -> None:
        """Validate the rendered (templated) arguments; raise :class:`SmartMCAValidationError`."""

    def before_start(self) -> None:
        """Checks that need the API but send nothing (e.g. the workflow's entity type)."""

    def start_execution(self, context: Context) -> dict[str, Any]:
        """Send the POST that starts the execution; return the response (with ``executionId``)."""
        raise NotImplementedError

    def lookup_filters(self) -> dict[str, str] | None:
        """``list_executions`` filters that find this task's executions (fallback before Airflow 3.3)."""
        return None

    # --- shared machinery -------------------------------------------------------------------

    @cached_property
    def hook(self) -> SmartMCAHook:
        """The hook, created once per task (and so one pooled HTTP session)."""
        from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook

        return SmartMCAHook(self.smartmca_conn_id)

    def execute(self, context: Context) -> Any:
        try:
            return self._execute(context)
        except _FINAL_ERRORS as exc:
            # Bad input, a missing scope, a bad key: a task retry would fail the same way.
            raise AirflowFailException(str(exc)) from exc

    def _execute(self, context: Context) -> Any:
        self.validate_rendered()
        previous = self._previous_execution(context) if self.on_retry == "reattach" else None
        response: dict[str, Any] | None = None
        if previous is not None:
            verdict = classify_status(previous.get("status"))
            execution_id = str(previous["executionId"])
            if verdict is Verdict.FAILURE:
                self.log.warning(
                    "Previous SmartMCA execution %s of this task ended %s; starting a new one",
                    execution_id,
                    previous.get("status"),
                )
                previous = None
            else:
                self.log.info(
                    "Reattaching to this task's previous SmartMCA execution %s (%s); nothing is sent again",
                    execution_id,
                    progress(previous),
                )
                self._record(context, execution_id, None)
                if not self.wait_for_completion:
                    return self._stored_response(context) or previous
                if verdict is Verdict.SUCCESS:
                    return final_result(previous)
                return self._wait(context, execution_id)
        self.before_start()
        self._remember_posts(context)
        response = self.start_execution(context)
        new_id = self._execution_id_of(response)
        if new_id is None:
            self.log.info("The response carries no executionId; nothing to wait for")
            return response
        self.log.info("Started SmartMCA execution %s", new_id)
        self._record(context, new_id, response)
        if not self.wait_for_completion:
            return response
        return self._wait(context, new_id)

    def _execution_id_of(self, response: Any) -> str | None:
        if not isinstance(response, dict):
            raise SmartMCAInvalidResponseError(
                f"{self.operation}: the response is not an object: {response!r}"
            )
        execution_id = response.get("executionId")
        if execution_id is None:
            return None
        if not isinstance(execution_id, str) or not execution_id:
            raise SmartMCAInvalidResponseError(
                f"{self.operation}: the response has a bad executionId: {response!r}"
            )
        return execution_id

    def _deadline(self) -> float | None:
        """The absolute end of the wait (epoch seconds), computed once, on the worker."""
        return None if self.timeout is None else time.time() + self.timeout

    def _wait(self, context: Context, execution_id: str) -> dict[str, Any]:
        deadline = self._deadline()
        if not self.deferrable:
            execution = self.hook.wait_for_execution(
                execution_id, poll_interval=self.poll_interval, deadline=deadline
            )
            return final_result(execution)
        try:
            execution = self.hook.get_execution(execution_id)
        except SmartMCAError as exc:
            if not is_transient(exc):
                raise
            # The trigger rides out a storm without holding a worker; no need to check first.
            self.log.warning("First check of %s failed transiently (%s); deferring anyway", execution_id, exc)
        else:
            if classify_status(execution.get("status")) in (Verdict.SUCCESS, Verdict.FAILURE):
                self.log.info("SmartMCA %s: already ended, not deferring", progress(execution))
                return final_result(execution)
            self.log.info("SmartMCA %s; deferring", progress(execution))
        from airflow_provider_smartmca.triggers.execution import ExecutionTrigger

        self.defer(
            trigger=ExecutionTrigger(
                conn_id=self.smartmca_conn_id,
                execution_id=execution_id,
                poll_interval=self.poll_interval,
                deadline=deadline,
            ),
            method_name="execute_complete",
            kwargs={"execution_id": execution_id},
        )

    def execute_complete(
        self, context: Context, event: Any = None, execution_id: str | None = None
    ) -> dict[str, Any]:
        """Resume after the trigger: validate the event, re-read the execution, same result as sync mode."""
        event = validate_event(event, expected_execution_id=execution_id)
        execution_id = event["execution_id"]
        self._execution_id = execution_id
        status = event["status"]
        message = event.get("message") or ""
        if status == EVENT_TIMEOUT:
            raise SmartMCAExecutionTimeoutError(
                message or f"Timed out waiting for SmartMCA execution {execution_id}; it is left running.",
                execution_id=execution_id,
            )
        if status in (EVENT_SUCCESS, EVENT_FAILURE):
            # The result must not be lost to a passing API storm now that the execution ended.
            execution = self.hook.patiently(self.hook.get_execution, execution_id)
            verdict = classify_status(execution.get("status"))
            expected = Verdict.SUCCESS if status == EVENT_SUCCESS else Verdict.FAILURE
            if verdict is expected:
                return final_result(execution)
            raise SmartMCAExecutionError(
                f"SmartMCA trigger reported {status} for execution {execution_id}, but it now reads "
                f"{execution.get('status')!r}; failing closed. Trigger message: {message}",
                execution_id=execution_id,
                execution_status=execution.get("status"),
            )
        raise SmartMCAExecutionError(
            f"Waiting for SmartMCA execution {execution_id} failed: {message}", execution_id=execution_id
        )

    def on_kill(self) -> None:
        """SmartMCA has no cancel endpoint: say which execution is left running and how to find it."""
        execution_id = self._execution_id
        if execution_id is None:
            self.log.info("Task killed before any SmartMCA execution was started")
            return
        where = f"GET /api/public/v1/workflows/executions/{execution_id}"
        try:
            template = self.hook.settings.execution_url_template
            if template:
                where = template.format(execution_id=execution_id)
        except (SmartMCAError, KeyError, IndexError, ValueError):
            pass
        self.log.warning(
            "Task killed; SmartMCA execution %s is left running (the SmartMCA API has no cancel endpoint). "
            "Find it at %s. A retry of this task reattaches to it (on_retry='reattach').",
            execution_id,
            where,
        )
