"""Dynamic task mapping: 50 entities, 50 executions, no duplicates."""

from __future__ import annotations

import pytest

MAPPED_DAG = """
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import TriggerWorkflowOperator

with DAG("{dag_id}", schedule=None) as dag:
    TriggerWorkflowOperator.partial(
        task_id="onboard",
        workflow_type="wf_deal_onboarding",
        entity_type="deal",
        poll_interval=0.05,
        max_active_tis_per_dagrun=8,
    ).expand(entity_id=[f"deal_{i:03d}" for i in range(50)])
"""


@pytest.mark.slow
def test_mapped_over_50_entities(run_dag, smartmca_connection, smartmca_emulator):
    result = run_dag(MAPPED_DAG)
    assert result.state == "success"
    assert len(result.task_states) == 50
    assert set(result.task_states.values()) == {"success"}
    assert smartmca_emulator.executions_created() == 50
    executions = smartmca_emulator.executions()
    assert sorted(e["entityId"] for e in executions) == [f"deal_{i:03d}" for i in range(50)]
    for i in (0, 17, 49):
        value = result.xcom("onboard", map_index=i)
        assert value["entityId"] == f"deal_{i:03d}" and value["status"] == "completed"
        assert result.xcom("onboard", key="execution_id", map_index=i) == value["executionId"]
