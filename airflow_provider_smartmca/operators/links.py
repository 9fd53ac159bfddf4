"""The "SmartMCA execution" extra link of every operator that starts an execution."""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow.exceptions import AirflowException
from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

XCOM_EXECUTION_ID = "execution_id"


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
        if not execution_id:
            return ""
        conn_id = getattr(operator, "smartmca_conn_id", None)
        if not conn_id:
            return ""
        from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook

        try:
            template = SmartMCAHook(conn_id).settings.execution_url_template
        except AirflowException:  # no or a broken connection: no link, and never a failed task
            return ""
        if not template:
            return ""
        try:
            return template.format(execution_id=execution_id)
        except (KeyError, IndexError, ValueError):
            return ""
