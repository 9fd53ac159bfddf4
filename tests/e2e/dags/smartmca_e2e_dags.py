"""Test DAGs of the end-to-end suite (copied next to the example DAGs into the e2e AIRFLOW_HOME).

Workflows ``wf_e2e_slow`` / ``wf_e2e_medium`` exist only in the e2e emulator configuration
(tests/e2e/conftest.py); every task defers (``deferrable=True``).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG

from airflow_provider_smartmca.operators import TriggerWorkflowOperator

START = datetime(2026, 1, 1)


def _dag(dag_id: str, retries: int = 0) -> DAG:
    return DAG(
        dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        tags=["smartmca-e2e"],
        default_args={"retries": retries, "retry_delay": timedelta(seconds=1)},
    )


def _tasks(dag: DAG, prefix: str, n: int, workflow: str, poll: float) -> None:
    with dag:
        for i in range(n):
            TriggerWorkflowOperator(
                task_id=f"{prefix}_{i:02d}",
                workflow_type=workflow,
                entity_type="deal",
                entity_id=f"{prefix}-{i:02d}",
                deferrable=True,
                poll_interval=poll,
                timeout=900,
            )


# Scenario 1: one deferred task, observed while the triggerer polls.
e2e_happy = _dag("smartmca_e2e_happy")
_tasks(e2e_happy, "happy", 1, "wf_e2e_medium", 1)

# Scenario 2: 20 deferred tasks; the triggerer is killed with -9 mid-wait.
e2e_fanout = _dag("smartmca_e2e_fanout20")
_tasks(e2e_fanout, "fan", 20, "wf_e2e_slow", 2)

# Scenario 3: the task process is killed right after the 202; the retry reattaches.
e2e_worker_kill = _dag("smartmca_e2e_worker_kill", retries=2)
_tasks(e2e_worker_kill, "wk", 1, "wf_e2e_medium", 1)

# Scenario 4: API storm (503 / 429 on GETs).
e2e_storm = _dag("smartmca_e2e_storm")
_tasks(e2e_storm, "storm", 5, "wf_e2e_medium", 1)

# Scenario 5: key revoked while the tasks are deferred.
e2e_revoke = _dag("smartmca_e2e_revoke")
_tasks(e2e_revoke, "revoke", 4, "wf_e2e_slow", 1)

# Scenario 6: two triggerers, one killed mid-wait.
e2e_ha = _dag("smartmca_e2e_ha")
_tasks(e2e_ha, "ha", 10, "wf_e2e_slow", 2)

# Celery stack (tests/e2e/test_celery.py): 100 mapped waits spread over two triggerers, one killed.
# Their executions stay pending 200 s (wf_e2e_long): all 100 deferred after ~70 s on a busy 2-core host.
e2e_mapped = _dag("smartmca_e2e_mapped100")
with e2e_mapped:
    TriggerWorkflowOperator.partial(
        task_id="mapped",
        workflow_type="wf_e2e_long",
        entity_type="deal",
        deferrable=True,
        poll_interval=3,
        timeout=1800,
    ).expand(entity_id=[f"map-{i:03d}" for i in range(100)])
