"""
Onboard one deal with SmartMCA and use the result downstream.

``onboard_deal`` starts the ``wf_deal_onboarding`` workflow for the deal given in the run's
``deal_id`` param, exactly once, and waits for it (on the worker here; set ``deferrable=True``
to wait in the triggerer instead). Its return value, the final execution with node-level
detail, goes to XCom; ``summarize_onboarding`` reads it to decide what to tell the ISO.

If the workflow fails or is cancelled, ``onboard_deal`` fails with the failed nodes and their
errors, and ``summarize_onboarding`` does not run. A retry of ``onboard_deal`` (a dead worker,
a cleared task) reattaches to the execution it started instead of starting a second one.

Connection: ``smartmca_default`` (host = API base URL, password = API key with the scopes
``workflows:read workflows:trigger``). Poll interval: 30 s, or the Airflow Variable
``smartmca_poll_interval`` given as the environment variable ``AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL``
(read from the environment so that parsing this file never calls the API or the metadata DB).
``make demo`` runs this DAG against the local emulator.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Param, task

from airflow_provider_smartmca.operators import TriggerWorkflowOperator

POLL_INTERVAL = float(os.environ.get("AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL", "30"))

with DAG(
    dag_id="example_smartmca_onboard_deal",
    description="Onboard one deal with SmartMCA and report the outcome",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={"deal_id": Param("deal_1001", type="string", minLength=1, description="The deal to onboard")},
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["smartmca", "example"],
) as dag:
    onboard_deal = TriggerWorkflowOperator(
        task_id="onboard_deal",
        workflow_type="wf_deal_onboarding",
        entity_type="deal",
        entity_id="{{ params.deal_id }}",
        poll_interval=POLL_INTERVAL,
        timeout=timedelta(hours=2),
    )

    @task
    def summarize_onboarding(execution: dict[str, Any]) -> dict[str, Any]:
        """Turn the finished execution into what the ISO notification needs."""
        nodes = execution.get("nodes") or []
        done = [n["name"] for n in nodes if n.get("status") == "completed"]
        contract = next((n for n in nodes if n.get("name") == "Generate Contract"), None)
        summary = {
            "deal_id": execution["entityId"],
            "execution_id": execution["executionId"],
            "status": execution["status"],
            "nodes_done": f"{len(done)}/{execution.get('nodeCount') or len(nodes)}",
            "contract_generated": bool(contract and contract.get("status") == "completed"),
            "completed_at": execution.get("completedAt"),
        }
        print(f"Deal {summary['deal_id']} onboarded: {summary}")
        return summary

    summarize_onboarding(onboard_deal.output)
