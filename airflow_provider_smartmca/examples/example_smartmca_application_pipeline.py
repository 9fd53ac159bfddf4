"""
An application's pipeline, step by step: change status → advance stage → assign underwriter.

Each step sends one SmartMCA application action and waits for the workflow execution it
starts before the next step runs, so the underwriter is only assigned once the application has
really moved on. Each action is sent exactly once: a retry after a lost response or a dead
worker finds the execution the first attempt started instead of sending the action again.

The last step splits starting from waiting: ``assign_underwriter`` only starts its execution
(``wait_for_completion=False``; its return value is SmartMCA's 202 answer, and the execution id
is in its XCom under the key ``execution_id``), and ``wait_for_assignment``, an
``ExecutionSensor``, waits for that execution in the triggerer (``deferrable=True``: no worker
slot while waiting). The outcome is the one the operator's own wait gives (the completed
execution as the return value; a failed execution fails the task), but the wait is a task of
its own, with its own ``timeout`` and retries, and tasks that need only the started execution
could run between the two. The sensor also waits for executions started outside Airflow.

Every field is templated; ``payload`` passes any extra field of the API's body through.

Connection: ``smartmca_default``. Scopes: ``workflows:read`` and ``workflows:trigger``, plus
``underwriting:trigger`` for the last step. Poll interval: 30 s, or
``AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL``. Needs a running triggerer (for the sensor).
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta

from airflow.sdk import DAG, Param

from airflow_provider_smartmca.operators import (
    AdvanceApplicationStageOperator,
    AssignUnderwriterOperator,
    ChangeApplicationStatusOperator,
)
from airflow_provider_smartmca.sensors import ExecutionSensor

POLL_INTERVAL = float(os.environ.get("AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL", "30"))

with DAG(
    dag_id="example_smartmca_application_pipeline",
    description="Approve an application, advance its stage and assign an underwriter",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "application_id": Param("app_2001", type="string", minLength=1),
        "underwriter_id": Param("uw_17", type="string", minLength=1),
    },
    default_args={
        "retries": 2,
        "retry_delay": timedelta(minutes=1),
        "poll_interval": POLL_INTERVAL,
        "timeout": timedelta(hours=1),
    },
    tags=["smartmca", "example"],
) as dag:
    approve = ChangeApplicationStatusOperator(
        task_id="approve",
        application_id="{{ params.application_id }}",
        status="approved",
        reason="Approved by the {{ dag.dag_id }} run {{ run_id }}",
        payload={"notifyMerchant": True},
    )
    advance = AdvanceApplicationStageOperator(
        task_id="advance_stage",
        application_id="{{ params.application_id }}",
    )
    assign = AssignUnderwriterOperator(
        task_id="assign_underwriter",
        application_id="{{ params.application_id }}",
        underwriter_id="{{ params.underwriter_id }}",
        wait_for_completion=False,  # start only: wait_for_assignment waits
    )
    wait_for_assignment = ExecutionSensor(
        task_id="wait_for_assignment",
        execution_id="{{ ti.xcom_pull(task_ids='assign_underwriter', key='execution_id') }}",
        deferrable=True,
        poke_interval=POLL_INTERVAL,
        timeout=timedelta(hours=4),
    )
    approve >> advance >> assign >> wait_for_assignment
