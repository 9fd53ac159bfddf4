"""The "SmartMCA execution" extra link of every operator that starts an execution."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowException
from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

XCOM_EXECUTION_ID = "execution_id"


def execution_url(hook: Any, execution_id: str) -> str | None:
    """
    The execution in the SmartMCA app, from the connection extra ``execution_url_template``; None
    without one, and without a usable connection or template (a link never fails a task).
    """
    try:
        template = hook.settings.execution_url_template
        return template.format(execution_id=execution_id) if template else None
    except (AirflowException, KeyError, IndexError, ValueError):
        return None


class SmartMCAExecutionLink(BaseOperatorLink):
    """
    Link to the task's SmartMCA execution in the SmartMCA app.

    Shown only when the connection extra ``execution_url_template`` is set, e.g.
    ``https://app.smartmca.com/executions/{execution_id}``. The execution id is read from the
    task's XCom ``execution_id``. Airflow resolves the link on the worker, after the task.
    """

    name = "SmartMCA execution"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        execution_id = XCom.get_value(ti_key=ti_key, key=XCOM_EXECUTION_ID)
        conn_id = getattr(operator, "smartmca_conn_id", None)
        if not execution_id or not conn_id:
            return ""
        from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook

        return execution_url(SmartMCAHook(conn_id), execution_id) or ""
