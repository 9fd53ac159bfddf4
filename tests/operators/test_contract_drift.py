"""Operators against a drifting emulator, as whole DAG runs (issue 10).

A few runs only (each costs seconds): a drift that breaks an answer fails the task at once with
the named error (no Airflow retry, no second POST, in both modes); an unknown status times out
naming it, or fails fast when listed in ``failure_statuses``; an application action answered
without an ``executionId`` succeeds with nothing to wait for.
"""

from __future__ import annotations

import pytest

from airflow_provider_smartmca.client.protocol import CONTRACT_RETRIES
from airflow_provider_smartmca.testing.pytest_plugin import FULL_KEY, connection_json
from airflow_provider_smartmca.testing.server import Emulator
from tests.operators.helpers import FAILURE_TYPES, FAILURES

ATTEMPTS = 1 + CONTRACT_RETRIES  # a read whose answer breaks the contract is sent this many times


@pytest.fixture
def fast_connection(smartmca_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    conn = connection_json(smartmca_emulator, retry_min_wait=0.01, retry_max_wait=0.05)
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", conn)
    FAILURES.clear()
    FAILURE_TYPES.clear()
    return "smartmca_default"


HEADER = """
from datetime import timedelta
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import (
    AdvanceApplicationStageOperator,
    AssignUnderwriterOperator,
    ChangeApplicationStatusOperator,
    TriggerWorkflowOperator,
)
from tests.operators.helpers import record_failure

default_args = {"retries": RETRIES, "retry_delay": timedelta(0), "on_failure_callback": record_failure}
"""

TRIGGERS = (
    HEADER
    + """
with DAG("{dag_id}", schedule=None, default_args=default_args) as dag:
    for mode, deferrable in (("sync", False), ("deferrable", True)):
        TriggerWorkflowOperator(
            task_id=f"trigger_{mode}", workflow_type="wf_deal_slow", entity_type="deal",
            entity_id=f"deal_{mode}", deferrable=deferrable, poll_interval=0.05, timeout=60,
        )
"""
)


@pytest.mark.parametrize(
    ("drift", "cause", "named"),
    [
        # The 202 lacks executionId: looked up, the lookup's list is renamed too -> ambiguous.
        ("rename_fields", "SmartMCAAmbiguousTriggerError", "'executionId' is missing"),
        # Get Execution's status is a list: the wait (or the check before deferring) fails.
        ("status_as_list", "SmartMCAContractError", "'status' must be a non-empty string"),
    ],
)
def test_a_drifted_answer_fails_the_task_once_without_retry_or_second_post(
    run_dag, smartmca_emulator, fast_connection, drift, cause, named
):
    smartmca_emulator.configure(drift=[drift])
    result = run_dag(TRIGGERS.replace("RETRIES", "1"))
    # No wait ran to its 60 s deadline (1200 polls a task): each task read a snapshot, then its
    # contract attempts of a lookup or a Get Execution.
    reads = smartmca_emulator.count(route="list_executions") + smartmca_emulator.count(route="get_execution")
    assert reads <= 2 * (1 + 2 * ATTEMPTS)
    for mode in ("sync", "deferrable"):
        task = f"trigger_{mode}"
        assert result.task_states[task] == "failed", result.task_states
        assert FAILURE_TYPES[task][:2] == ["AirflowFailException", cause]  # final:
        assert tries(result, task) == 1  # the retry never ran
        assert named in FAILURES[task] and FULL_KEY not in FAILURES[task]
    assert smartmca_emulator.count(method="POST") == 2  # one per task, in spite of retries=1
    assert smartmca_emulator.executions_created() == 2


UNKNOWN_STATUS = (
    HEADER
    + """
with DAG("{dag_id}", schedule=None, default_args=default_args) as dag:
    for mode, deferrable in (("sync", False), ("deferrable", True)):
        TriggerWorkflowOperator(
            task_id=f"waits_{mode}", workflow_type="wf_deal_onboarding", entity_type="deal",
            entity_id=f"deal_w_{mode}", deferrable=deferrable, poll_interval=0.1, timeout=2,
        )
        TriggerWorkflowOperator(
            task_id=f"fails_fast_{mode}", workflow_type="wf_deal_onboarding", entity_type="deal",
            entity_id=f"deal_f_{mode}", deferrable=deferrable, poll_interval=0.1, timeout=600,
            failure_statuses=["paused"],
        )
"""
)


@pytest.mark.slow
def test_unknown_status_times_out_naming_it_or_fails_fast_when_listed(
    run_dag, smartmca_emulator, fast_connection
):
    smartmca_emulator.configure(drift=["unknown_status"])
    result = run_dag(UNKNOWN_STATUS.replace("RETRIES", "0"))
    # Two 2 s waits at 0.1 s polls (21 reads each at most) and two fail-fast waits: nowhere near the
    # 600 s timeout's 6000 polls.
    assert smartmca_emulator.count(route="get_execution") < 100
    assert set(result.task_states.values()) == {"failed"}, result.task_states
    for mode in ("sync", "deferrable"):
        assert FAILURE_TYPES[f"waits_{mode}"][0] == "SmartMCAExecutionTimeoutError"
        assert "'paused'" in FAILURES[f"waits_{mode}"]
        assert FAILURE_TYPES[f"fails_fast_{mode}"][0] == "SmartMCAExecutionError"
        assert "ended paused" in FAILURES[f"fails_fast_{mode}"]
    assert smartmca_emulator.count(method="POST") == 4


ACTIONS = (
    HEADER
    + """
with DAG("{dag_id}", schedule=None, default_args=default_args) as dag:
    for mode, deferrable in (("sync", False), ("deferrable", True)):
        common = dict(deferrable=deferrable, poll_interval=0.05, timeout=60)
        ChangeApplicationStatusOperator(
            task_id=f"change_status_{mode}", application_id=f"app_cs_{mode}", status="approved", **common
        )
        AdvanceApplicationStageOperator(task_id=f"advance_stage_{mode}", application_id=f"app_as_{mode}", **common)
        AssignUnderwriterOperator(
            task_id=f"assign_underwriter_{mode}", application_id=f"app_au_{mode}", underwriter_id="uw_7", **common
        )
"""
)


@pytest.mark.parametrize(("drift", "returned"), [("action_204", {}), ("action_no_execution", {"ok": True})])
def test_an_action_answered_without_execution_id_succeeds_with_nothing_to_wait_for(
    run_dag, smartmca_emulator, fast_connection, drift, returned
):
    smartmca_emulator.configure(drift=[drift])
    result = run_dag(ACTIONS.replace("RETRIES", "1"))
    assert set(result.task_states.values()) == {"success"}, (result.task_states, FAILURES)
    for task in result.task_states:
        assert result.xcom(task) == returned
        assert result.xcom(task, key="execution_id") is None  # nothing to wait for, nothing to link
    assert smartmca_emulator.count(method="POST") == 6  # once each
    assert smartmca_emulator.count(route="get_execution") == 0


def tries(result, task_id: str) -> int:
    """How many tries the task ran, from the metadata DB."""
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session

    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter_by(dag_id=result.dag_id, run_id=result.run_id, task_id=task_id)
            .one()
        )
        return ti.try_number


DRIFT_AFTER_DEFER = (
    HEADER
    + """
import json, urllib.request


class DriftsOnceDeferred(TriggerWorkflowOperator):
    '''The API starts to drift between the check before deferring and the trigger's polls.'''

    def defer(self, **kwargs):
        request = urllib.request.Request(
            "BASE_URL/_emulator/behaviour", data=json.dumps({"drift": ["status_as_list"]}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        urllib.request.urlopen(request, timeout=5).read()
        super().defer(**kwargs)


with DAG("{dag_id}", schedule=None, default_args=default_args) as dag:
    DriftsOnceDeferred(
        task_id="deferred", workflow_type="wf_deal_slow", entity_type="deal", entity_id="deal_d",
        deferrable=True, poll_interval=0.05, timeout=60,
    )
"""
)


def test_a_contract_error_in_the_triggerer_fails_the_task_without_retry(
    run_dag, smartmca_emulator, fast_connection
):
    result = run_dag(
        DRIFT_AFTER_DEFER.replace("RETRIES", "1").replace("BASE_URL", smartmca_emulator.base_url)
    )
    assert result.task_states["deferred"] == "failed"
    assert "'status' must be a non-empty string" in FAILURES["deferred"]
    assert smartmca_emulator.count(method="POST") == 1  # never sent again, retry or not
    assert tries(result, "deferred") == 1  # as in sync mode: a retry cannot fix a contract that differs
