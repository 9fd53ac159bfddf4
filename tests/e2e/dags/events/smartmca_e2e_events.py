"""Event-driven test DAG of the end-to-end suite, parsed only by the event stack (tests/e2e/conftest.py).

``smartmca_e2e_events`` is scheduled on the completions of ``wf_e2e_medium`` (an e2e-only
workflow, ~8 s long) through an ``ExecutionEventTrigger`` polling every 2 s. Its task returns
every triggering event as it received it, duplicates included, so a scenario can compare what
the runs saw with the asset events Airflow stored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, get_current_context, task

from airflow_provider_smartmca.triggers import ExecutionEventTrigger

medium_completed = Asset(
    name="smartmca_e2e_medium_completed",
    uri="smartmca://workflows/wf_e2e_medium/completed",
    watchers=[
        AssetWatcher(
            name="smartmca_e2e_medium_watcher",
            trigger=ExecutionEventTrigger(
                workflow_type="wf_e2e_medium", statuses=("completed",), poll_interval=2
            ),
        )
    ],
)

with DAG(
    "smartmca_e2e_events",
    schedule=[medium_completed],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    tags=["smartmca-e2e"],
):

    @task
    def record_events() -> list[dict[str, Any]]:
        """The run's triggering events, oldest first: execution id and event timestamp."""
        events = get_current_context()["triggering_asset_events"].get(medium_completed, [])
        out = []
        for event in sorted(events, key=lambda e: e.timestamp):
            payload = (event.extra or {}).get("payload") or {}
            out.append({"executionId": payload.get("executionId"), "timestamp": event.timestamp.isoformat()})
        return out

    record_events()
