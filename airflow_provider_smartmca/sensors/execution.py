"""ExecutionSensor: wait for a SmartMCA execution, in poke, reschedule or deferrable mode.

Every mode reaches the same outcome for the same execution, because the decisions are shared:
status classification and failure messages come from
:mod:`airflow_provider_smartmca.client.executions`, transient-error classification from the one
retry predicate, :func:`airflow_provider_smartmca.client.protocol.when_to_retry`, and the XCom
value is always the full execution dict read by the sync hook.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

# Through common-compat: airflow.sdk has no conf before Airflow 3.2, nor these exceptions before 3.2.
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
    BaseOperator,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

try:  # the class BaseOperator.resume_execution raises: airflow.sdk's from 3.2, core's before
    from airflow.sdk.exceptions import TaskDeferralTimeout
except ImportError:  # pragma: no cover - Airflow < 3.2
    from airflow.exceptions import TaskDeferralTimeout  # type: ignore[no-redef,attr-defined]

from airflow_provider_smartmca.client import executions
from airflow_provider_smartmca.client.settings import check_number
from airflow_provider_smartmca.errors import SmartMCAExecutionError, SmartMCAValidationError
from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook
from airflow_provider_smartmca.operators.base import check_static_id, defer_wait, read_once, result_if_ended

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_smartmca.client.contract import Execution

_OP = "ExecutionSensor"
# Extra time given to Airflow's own defer timeout beyond the trigger's deadline: the trigger
# fires the timeout event itself; Airflow's timeout is only a backstop if no triggerer runs.
_DEFER_TIMEOUT_GRACE = 300.0


class ExecutionSensor(BaseSensorOperator):
    """
    Wait until a SmartMCA workflow execution ends; return the completed execution.

    * ``completed``: success; the return value (XCom) is the full execution, in every mode.
    * ``failed`` / ``cancelled``: the task fails, naming the failed nodes and their errors.
    * ``pending`` / ``running`` and unknown statuses (e.g. ``paused``): keep waiting until
      ``timeout``, then :class:`~airflow.sdk.exceptions.AirflowSensorTimeout` (skipped with
      ``soft_fail``). An unknown status is never success.
    * Transient API errors (network, 429, 5xx) only delay the next check; 401/403/404 fail.

    :param execution_id: the execution to wait for (templated, e.g. from an XCom).
    :param smartmca_conn_id: the Airflow connection id.
    :param deferrable: hand the wait to the triggerer; defaults to ``[operators] default_deferrable``.
    :param poke_interval: seconds between checks, also the trigger's poll interval.
    :param timeout: seconds before giving up (the sensor's timeout; in deferrable mode an absolute
        deadline computed on the worker when the task starts).
    :param mode: ``poke`` or ``reschedule`` when not deferrable.
    :param soft_fail: skip instead of failing on timeout. An execution that failed, or an API
        answer of 401/403/404, fails the task in every mode, with or without ``soft_fail``.
    :param failure_statuses: statuses besides ``failed`` and ``cancelled`` that fail the sensor,
        e.g. ``["paused"]``; other unknown statuses are waited on until ``timeout``.
    """

    template_fields: Sequence[str] = ("execution_id", "smartmca_conn_id")
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        execution_id: str,
        smartmca_conn_id: str = SmartMCAHook.default_conn_name,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        failure_statuses: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_static_id("execution_id", execution_id, _OP)
        self.failure_statuses = executions.check_failure_statuses(failure_statuses, _OP)
        if deferrable:  # caught here, at DAG parse time, rather than when the task defers
            check_number("poke_interval", self.poke_interval, bound="poll_interval", operation=_OP)
            check_number("timeout", self.timeout, bound="wait_timeout", operation=_OP)
        self.execution_id, self.smartmca_conn_id, self.deferrable = execution_id, smartmca_conn_id, deferrable

    @cached_property
    def hook(self) -> SmartMCAHook:
        """One hook (one pooled HTTP session) per task try."""
        return SmartMCAHook(self.smartmca_conn_id)

    def _read(self) -> Execution | None:
        """
        The execution, read once (None after a transient failure); its last status is remembered.
        Each poke may run in a new process (reschedule), so each check logs as a first sighting.
        """
        if self.execution_id in ("None", ""):
            problem = (
                f"rendered to {self.execution_id!r}: the template's upstream value (an XCom?) is missing"
            )
            raise SmartMCAValidationError("execution_id", problem, operation=_OP)
        execution = read_once(self.hook, self.log, self.execution_id, self.failure_statuses)
        if execution is not None:
            self._last_status = execution.status
        return execution

    def poke(self, context: Context) -> bool | PokeReturnValue:
        """One ``get_execution``: done with the execution as XCom, not yet, or raise."""
        execution = result_if_ended(self._read(), self.failure_statuses)
        return False if execution is None else PokeReturnValue(is_done=True, xcom_value=execution)

    def execute(self, context: Context) -> Any:
        """Poke/reschedule as usual; deferrable: check once, then defer to :class:`ExecutionTrigger`."""
        if not self.deferrable:
            try:
                return super().execute(context)
            except AirflowSensorTimeout as exc:
                # Airflow's own message does not say what the execution was doing: name its last status.
                last = getattr(self, "_last_status", None)
                raise AirflowSensorTimeout(
                    f"{exc} SmartMCA execution {self.execution_id}: last status {last!r}; "
                    "the provider does not cancel it."
                ) from None
        # An absolute epoch from the worker: it survives triggerer restarts and, as in poke mode,
        # counts from the task's start.
        deadline = time.time() + self.timeout
        terms = dict(conn_id=self.smartmca_conn_id, execution_id=self.execution_id, deadline=deadline)
        terms.update(poll_interval=self.poke_interval, failure_statuses=self.failure_statuses)
        timeout = timedelta(seconds=self.timeout + _DEFER_TIMEOUT_GRACE)
        return defer_wait(self, self._read(), None, terms, timeout=timeout)

    def execute_complete(self, context: Context, event: Any = None) -> Any:
        """
        Turn the trigger's event into the same outcome as poke mode (fail closed). The event carries
        only a small summary: a success is re-read, so the XCom is the same full execution as in
        poke mode, and ``final_result`` checks it again.
        """
        event = executions.validate_event(event, self.execution_id)
        status = event["status"]
        if status == executions.EVENT_TIMEOUT:
            self._timed_out(event["message"])
        if status == executions.EVENT_ERROR:
            # The trigger rides out transient errors itself: what it reports, a retry would meet again.
            raise AirflowFailException(event["message"])
        if status != executions.EVENT_SUCCESS:
            raise SmartMCAExecutionError(
                event["message"],
                execution_id=self.execution_id,
                execution_status=(event.get("execution") or {}).get("status"),
            )
        return executions.final_result(
            self.hook.patiently(self.hook.get_execution, self.execution_id), self.failure_statuses
        )

    def _timed_out(self, message: str) -> None:
        raise (AirflowSkipException if self.soft_fail else AirflowSensorTimeout)(message)

    def resume_execution(self, next_method: str, next_kwargs: dict[str, Any] | None, context: Context) -> Any:
        """Resume after deferral with poke mode's ``soft_fail`` semantics.

        ``BaseSensorOperator.resume_execution`` skips on *any* error when ``soft_fail`` is set,
        while poke mode skips only on timeouts; skipping a failed execution would hide it.
        So only timeouts skip here too.
        """
        try:
            return BaseOperator.resume_execution(self, next_method, next_kwargs, context)
        except TaskDeferralTimeout as exc:
            self._timed_out(str(exc) or "Sensor timed out while deferred")
