"""Every operator, sync and deferrable, against completed, failed, cancelled and timed-out executions.

One DAG per outcome holds all eight (operator, mode) tasks, run with ``dag.test()`` (which runs a
deferred task's trigger inline). Return values (and failure messages) must be the same in both modes.
"""

from __future__ import annotations

import pytest

from tests.operators.conftest import OUTCOMES
from tests.operators.helpers import FAILURE_TYPES, FAILURES, normalize, normalize_message

pytestmark = pytest.mark.slow  # every case runs DAGs to each outcome, in both modes

OPERATORS = ("trigger", "change_status", "advance_stage", "assign_underwriter")

DAG_SOURCE = """
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import (
    AdvanceApplicationStageOperator,
    AssignUnderwriterOperator,
    ChangeApplicationStatusOperator,
    TriggerWorkflowOperator,
)
from tests.operators.helpers import record_failure

common = dict(poll_interval=0.05, timeout={timeout}, on_failure_callback=record_failure)
with DAG("{dag_id}", schedule=None) as dag:
    for mode, deferrable in (("sync", False), ("deferrable", True)):
        TriggerWorkflowOperator(
            task_id=f"trigger_{mode}", workflow_type="{workflow}", entity_type="{entity_type}",
            entity_id=f"ent_{mode}", deferrable=deferrable, **common,
        )
        ChangeApplicationStatusOperator(
            task_id=f"change_status_{mode}", application_id=f"app_cs_{mode}", status="approved",
            reason="score above threshold", deferrable=deferrable, **common,
        )
        AdvanceApplicationStageOperator(
            task_id=f"advance_stage_{mode}", application_id=f"app_as_{mode}", deferrable=deferrable, **common,
        )
        AssignUnderwriterOperator(
            task_id=f"assign_underwriter_{mode}", application_id=f"app_au_{mode}", underwriter_id="uw_7",
            deferrable=deferrable, **common,
        )
"""


@pytest.mark.parametrize("outcome", list(OUTCOMES))
def test_every_operator_both_modes(outcome, run_dag, smartmca_connection, smartmca_emulator, action_outcome):
    workflow, entity_type, _ = OUTCOMES[outcome]
    action_outcome(outcome)
    FAILURES.clear()
    timeout = 1.5 if outcome == "timeout" else 60
    result = run_dag(
        DAG_SOURCE.replace("{workflow}", workflow)
        .replace("{entity_type}", entity_type)
        .replace("{timeout}", str(timeout))
    )
    # Exactly one execution per task: 4 operators x 2 modes.
    assert smartmca_emulator.executions_created() == 8
    for op in OPERATORS:
        sync, deferred = f"{op}_sync", f"{op}_deferrable"
        # The execution id is in XCom in both modes, whatever the outcome (pushed before waiting).
        for task_id in (sync, deferred):
            assert result.xcom(task_id, key="execution_id", map_index=-1).startswith("exec_")
        if outcome == "completed":
            assert result.task_states[sync] == result.task_states[deferred] == "success"
            sync_value, deferred_value = result.xcom(sync), result.xcom(deferred)
            assert sync_value["status"] == "completed"
            assert normalize(sync_value) == normalize(deferred_value)
            # The deferrable value is the execution as re-read with the sync hook: the same dict.
            from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook

            assert SmartMCAHook().get_execution(deferred_value["executionId"]).raw == deferred_value
            assert SmartMCAHook().get_execution(sync_value["executionId"]).raw == sync_value
        else:
            assert result.task_states[sync] == result.task_states[deferred] == "failed", result.task_states
            assert result.xcom(sync) is None and result.xcom(deferred) is None
            assert FAILURE_TYPES[sync][0] == FAILURE_TYPES[deferred][0]
            if outcome == "timeout":
                assert FAILURE_TYPES[sync][0] == "SmartMCAExecutionTimeoutError"
                for task_id in (sync, deferred):
                    assert "does not cancel it" in FAILURES[task_id]
            else:
                assert normalize_message(FAILURES[sync]) == normalize_message(FAILURES[deferred])
                assert f"ended {outcome}" in FAILURES[sync]
                if outcome == "failed":
                    assert "Failed nodes:" in FAILURES[sync]
                    expected = (
                        "OFAC screening returned a potential match" if op == "trigger" else "bureau down"
                    )
                    assert expected in FAILURES[sync]


def test_api_storm_never_fails_a_task(run_dag, smartmca_emulator, make_storm_connection):
    """Half of all GETs answer 503 and the per-call retries are off: every task still succeeds, once."""
    make_storm_connection()
    for route in ("get_workflow", "get_execution", "list_executions"):
        smartmca_emulator.add_fault("status", route=route, status=503, probability=0.5, seed=11)
    FAILURES.clear()
    result = run_dag(
        DAG_SOURCE.replace("{workflow}", "wf_deal_onboarding")
        .replace("{entity_type}", "deal")
        .replace("{timeout}", "120")
    )
    assert result.state == "success", FAILURES
    assert smartmca_emulator.count(status=503) > 10  # the storm really happened
    assert smartmca_emulator.executions_created() == 8
    for op in OPERATORS:
        assert normalize(result.xcom(f"{op}_sync")) == normalize(result.xcom(f"{op}_deferrable"))
