"""
Every day, underwrite the day's new applications: one SmartMCA execution per application.

``new_application_ids`` yields the ids of the applications created on the run's logical date.
Here it reads them from the run's ``application_ids`` param (or makes a small sample for the
day); in production, query your loan origination system instead.

``underwrite`` is a mapped ``TriggerWorkflowOperator``, one task instance per application, in
deferrable mode: the POST that starts each execution runs on a worker, then the wait moves to
the triggerer, so 500 applications do not hold 500 worker slots. ``max_active_tis_per_dagrun``
bounds how many run at once, which also bounds the load on the SmartMCA API. Each mapped
instance starts its execution exactly once, also across retries.

``report`` collects the finished executions.

Connection: ``smartmca_default`` (scopes ``workflows:read workflows:trigger``). Poll interval:
30 s, or ``AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL``. Needs a running triggerer.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, get_current_context, task

from airflow_provider_smartmca.operators import TriggerWorkflowOperator

POLL_INTERVAL = float(os.environ.get("AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL", "30"))

with DAG(
    dag_id="example_smartmca_daily_applications",
    description="Underwrite the day's new applications with SmartMCA, bounded concurrency",
    schedule="@daily",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "application_ids": Param(
            [], type="array", items={"type": "string"}, description="Override: applications to underwrite"
        )
    },
    default_args={"retries": 2, "retry_delay": timedelta(minutes=5)},
    tags=["smartmca", "example"],
) as dag:

    @task
    def new_application_ids() -> list[str]:
        """The applications created on the run's logical date (replace with your system's query)."""
        context = get_current_context()
        ids = list(context["params"].get("application_ids") or [])
        if not ids:
            day = context["ds_nodash"]
            ids = [f"app_{day}_{n:03d}" for n in range(1, 6)]
        print(f"{len(ids)} application(s) to underwrite: {ids}")
        return ids

    underwrite = TriggerWorkflowOperator.partial(
        task_id="underwrite",
        workflow_type="wf_app_underwriting",
        entity_type="application",
        deferrable=True,
        poll_interval=POLL_INTERVAL,
        timeout=timedelta(hours=4),
        max_active_tis_per_dagrun=10,
    ).expand(entity_id=new_application_ids())

    @task
    def report(executions: list[dict[str, Any]]) -> dict[str, Any]:
        """Summarise the day's underwriting runs."""
        outcome = {
            "underwritten": len(executions),
            "executions": {e["entityId"]: e["executionId"] for e in executions},
        }
        print(outcome)
        return outcome

    report(underwrite.output)
