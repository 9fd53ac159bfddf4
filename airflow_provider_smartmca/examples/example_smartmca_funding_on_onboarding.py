"""
Fund a deal when SmartMCA finishes onboarding it: a DAG scheduled on SmartMCA events.

Nobody triggers this DAG. It is scheduled on an ``Asset`` whose ``AssetWatcher`` runs an
:class:`~airflow_provider_smartmca.triggers.ExecutionEventTrigger` in the triggerer:
the trigger polls List Executions and fires one asset event for each ``wf_deal_onboarding``
execution that **completes** after the watcher started, however the execution was started (a
person in the SmartMCA app, a trigger condition, another system, another DAG). Each asset
event starts a run, but Airflow may merge events that arrive close together into one run, so
``fund_onboarded_deals`` reads **every** triggering event of its run, not just one.

Each event's payload (``event.extra["payload"]``) holds the execution's ``executionId``,
``workflowId``, ``workflowName``, ``entityType``, ``entityId``, ``status``, ``startedAt`` and
``completedAt``. The task re-reads each execution with the hook (node-level detail, and a check
that it is still ``completed``) and funds its deal.

**Duplicates.** A watcher fires each execution once in normal operation, but a triggerer crash
may fire the last poll's executions once more (Airflow persists an event only after the trigger
has moved on). So:

* inside a run, :func:`unique_executions` keeps one event per ``executionId``;
* across runs, the funding call must be idempotent keyed on ``executionId`` (for example pass
  ``funding-<executionId>`` as your funding system's idempotency key), so that a repeat in a
  later run is a no-op. ``fund()`` below stands in for that call.

A run started by hand has no asset events; give it ``{"execution_ids": [...]}`` as conf to fund
(or re-fund, idempotently) given executions.

Needs a running triggerer, and (for the watermark that survives triggerer restarts) Airflow 3.3
or later; see the README section on scheduling on SmartMCA events.

Connection: ``smartmca_default`` (scope ``workflows:read``). Poll interval: 60 s, or
``AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL`` (read from the environment so that parsing this file never
calls the API or the metadata DB).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from airflow.sdk import DAG, Asset, AssetWatcher, Param, get_current_context, task

from airflow_provider_smartmca.triggers import ExecutionEventTrigger

WORKFLOW = "wf_deal_onboarding"
POLL_INTERVAL = float(os.environ.get("AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL", "60"))

# START watcher
#: One asset per (workflow, status): its asset events are the executions that ended so.
onboarding_completed = Asset(
    name="smartmca_deal_onboarding_completed",
    uri=f"smartmca://workflows/{WORKFLOW}/completed",
    watchers=[
        AssetWatcher(
            name="smartmca_deal_onboarding_completed_watcher",
            trigger=ExecutionEventTrigger(
                workflow_type=WORKFLOW,
                statuses=("completed",),
                poll_interval=POLL_INTERVAL,
            ),
        )
    ],
)
# END watcher


def event_payload(extra: Mapping[str, Any]) -> Mapping[str, Any]:
    """The trigger's payload inside an asset event's ``extra`` (Airflow nests it under ``payload``)."""
    payload = extra.get("payload")
    return payload if isinstance(payload, Mapping) else extra


def unique_executions(events: Iterable[Any]) -> dict[str, Mapping[str, Any]]:
    """
    One payload per ``executionId``, oldest event first: a repeated event adds nothing.

    :param events: the run's triggering asset events (objects with ``extra`` and ``timestamp``).
    :return: payload by execution id, in the order the executions first fired.
    """
    unique: dict[str, Mapping[str, Any]] = {}
    for event in sorted(events, key=lambda e: e.timestamp):
        payload = event_payload(event.extra or {})
        execution_id = payload.get("executionId")
        if isinstance(execution_id, str) and execution_id not in unique:
            unique[execution_id] = payload
    return unique


def fund(deal_id: str, execution_id: str) -> dict[str, Any]:
    """Stand-in for your funding system's call, idempotent on ``funding-<executionId>``."""
    instruction = {
        "dealId": deal_id,
        "executionId": execution_id,
        "idempotencyKey": f"funding-{execution_id}",
    }
    print(f"Funding deal {deal_id}: {instruction}")
    return instruction


with DAG(
    dag_id="example_smartmca_funding_on_onboarding",
    description="Fund each deal whose SmartMCA onboarding completes (event-driven)",
    schedule=[onboarding_completed],
    start_date=datetime(2026, 1, 1),
    catchup=False,
    params={
        "execution_ids": Param(
            [], type="array", items={"type": "string"}, description="Manual runs: executions to fund"
        )
    },
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    tags=["smartmca", "example", "event-driven"],
) as dag:

    @task
    def fund_onboarded_deals() -> dict[str, Any]:
        """Fund the deal of every execution that triggered this run, once per ``executionId``."""
        # Imported here: the hook is needed only when the task runs, not while the DAG is parsed.
        from airflow_provider_smartmca.hooks import SmartMCAHook

        context = get_current_context()
        events = context["triggering_asset_events"].get(onboarding_completed, [])
        executions = unique_executions(events)
        for execution_id in context["params"].get("execution_ids") or []:
            executions.setdefault(execution_id, {"executionId": execution_id})
        print(f"{len(events)} event(s), {len(executions)} execution(s): {list(executions)}")

        hook = SmartMCAHook()
        funded, skipped = [], []
        for execution_id in executions:
            execution = hook.get_execution(execution_id)
            if execution.status != "completed" or not execution.entity_id:
                skipped.append(execution_id)  # e.g. a manual run given an execution still running
                continue
            fund(execution.entity_id, execution_id)
            funded.append(execution_id)
        return {"events": len(events), "funded": funded, "skipped": skipped}

    fund_onboarded_deals()
