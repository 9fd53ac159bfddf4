"""Exactly-once across task retries, run with ``dag.test()``.

``dag.test()`` does retry a failed task (``retries=1``, ``retry_delay=0``): the second try gets a
new task-instance id but the same ``task_state_store`` scope (dag, run, task, map index), and
XCom is cleared between tries, as with a real scheduler. A worker's death cannot be reproduced
in-process (``dag.test()`` runs the task in the test process), so "death" is a test-only subclass
whose first try raises right after the 202 and the durable record, before any waiting: from the
next try's point of view that is the same state a dead worker leaves behind.
"""

from __future__ import annotations

import pytest

from tests.operators.helpers import FAILURES

DAG_SOURCE = """
from datetime import timedelta
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import {operator}
from tests.operators.helpers import record_failure


class DiesOnFirstTry({operator}):
    '''Try 1 starts the execution, then "dies" {when} waiting.'''

    def execute(self, context):
        self._try = context["ti"].try_number
        return super().execute(context)

    def _wait(self, execution_id):
        if self._try == 1 and "{when}" == "before":
            raise RuntimeError("worker died after the 202")
        result = super()._wait(execution_id)
        if self._try == 1 and "{when}" == "after":
            raise RuntimeError("worker died after the execution ended")
        return result


default_args = {"retries": 1, "retry_delay": timedelta(0), "on_failure_callback": record_failure}
with DAG("{dag_id}", schedule=None, default_args=default_args) as dag:
    DiesOnFirstTry(task_id="t", poll_interval=0.05, deferrable={deferrable}, on_retry="{on_retry}", {args})
"""

TRIGGER_ARGS = 'workflow_type="{workflow}", entity_type="deal", entity_id="deal_42"'
APP_ARGS = 'application_id="app_42", status="approved"'


def _source(
    operator="TriggerWorkflowOperator",
    when="before",
    deferrable=False,
    on_retry="reattach",
    args=None,
    workflow="wf_deal_slow",
):
    args = args or TRIGGER_ARGS.replace("{workflow}", workflow)
    return (
        DAG_SOURCE.replace("{operator}", operator)
        .replace("{when}", when)
        .replace("{deferrable}", str(deferrable))
        .replace("{on_retry}", on_retry)
        .replace("{args}", args)
    )


@pytest.mark.slow
@pytest.mark.parametrize("deferrable", [False, True], ids=["sync", "deferrable"])
def test_retry_after_worker_death_reattaches(deferrable, run_dag, smartmca_connection, smartmca_emulator):
    result = run_dag(_source(deferrable=deferrable))
    assert result.state == "success", FAILURES
    assert smartmca_emulator.executions_created() == 1
    assert smartmca_emulator.count(route="trigger", method="POST") == 1
    [execution] = smartmca_emulator.executions()
    value = result.xcom("t")
    assert value["executionId"] == execution["executionId"] == result.xcom("t", key="execution_id")
    assert value["status"] == "completed"


def test_application_retry_after_worker_death_sends_the_action_once(
    run_dag, smartmca_connection, smartmca_emulator
):
    result = run_dag(_source(operator="ChangeApplicationStatusOperator", args=APP_ARGS))
    assert result.state == "success", FAILURES
    assert smartmca_emulator.count(route="change_status", method="POST") == 1
    assert smartmca_emulator.executions_created() == 1
    assert result.xcom("t")["status"] == "completed"


def test_retry_after_completion_starts_nothing(run_dag, smartmca_connection, smartmca_emulator):
    result = run_dag(_source(when="after", workflow="wf_deal_onboarding"))
    assert result.state == "success", FAILURES
    assert smartmca_emulator.executions_created() == 1
    assert result.xcom("t")["status"] == "completed"


def test_retry_after_failure_starts_exactly_one_new(run_dag, smartmca_connection, smartmca_emulator):
    result = run_dag(_source(when="none", workflow="wf_deal_compliance_fail"))
    assert result.state == "failed"
    assert smartmca_emulator.executions_created() == 2
    assert [e["status"] for e in smartmca_emulator.executions()] == ["failed", "failed"]
    assert "OFAC screening returned a potential match" in FAILURES["t"]


@pytest.mark.slow
def test_retrigger_is_opt_in(run_dag, smartmca_connection, smartmca_emulator):
    result = run_dag(_source(on_retry="retrigger"))
    assert result.state == "success", FAILURES
    assert smartmca_emulator.executions_created() == 2


@pytest.mark.parametrize(
    ("operator", "route", "args"),
    [
        ("TriggerWorkflowOperator", "trigger", TRIGGER_ARGS.replace("{workflow}", "wf_deal_onboarding")),
        # An action's lost answer is recovered only when the workflow it starts is known.
        (
            "ChangeApplicationStatusOperator",
            "change_status",
            APP_ARGS + ', lookup_workflow_type="wf_app_status_change"',
        ),
        (
            "AssignUnderwriterOperator",
            "assign_underwriter",
            'application_id="app_42", underwriter_id="uw_1", lookup_workflow_type="wf_app_assign_underwriter"',
        ),
    ],
)
def test_ambiguous_post_still_one_execution(
    operator, route, args, run_dag, smartmca_connection, smartmca_emulator
):
    smartmca_emulator.add_fault("drop_after", route=route, count=1)
    result = run_dag(_source(operator=operator, when="none", args=args))
    assert result.state == "success", FAILURES
    assert smartmca_emulator.count(route=route, method="POST") == 1
    assert smartmca_emulator.executions_created() == 1
    assert result.xcom("t")["status"] == "completed"


NO_WAIT_DAG = """
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import AdvanceApplicationStageOperator, TriggerWorkflowOperator

with DAG("{dag_id}", schedule=None) as dag:
    TriggerWorkflowOperator(task_id="trigger", workflow_type="wf_deal_onboarding", entity_type="deal",
                            entity_id="deal_5", wait_for_completion=False)
    AdvanceApplicationStageOperator(task_id="advance", application_id="app_5", wait_for_completion=False,
                                    payload={"note": "from Airflow"})
"""


def test_without_waiting_the_start_response_is_returned(run_dag, smartmca_connection, smartmca_emulator):
    result = run_dag(NO_WAIT_DAG)
    assert result.state == "success"
    trigger, advance = result.xcom("trigger"), result.xcom("advance")
    assert trigger["executionId"] == result.xcom("trigger", key="execution_id")
    assert trigger["status"] == "pending"
    assert advance["applicationId"] == "app_5" and advance["action"] == "advance-stage"
    assert advance["executionId"] == result.xcom("advance", key="execution_id")
    assert smartmca_emulator.count(route="get_execution") == 0


AMBIGUOUS_DAG = """
from datetime import timedelta
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import TriggerWorkflowOperator
from tests.operators.helpers import record_failure

with DAG("{dag_id}", schedule=None, default_args={"retries": 2, "retry_delay": timedelta(0),
                                                  "on_failure_callback": record_failure}) as dag:
    TriggerWorkflowOperator(task_id="t", workflow_type="wf_deal_onboarding", entity_type="deal",
                            entity_id="deal_6", poll_interval=0.05)
"""


def test_unresolvable_ambiguous_post_fails_without_retrying(run_dag, smartmca_connection, smartmca_emulator):
    # A 503 to the POST: the server may or may not have acted; finding nothing proves nothing
    # (it may still be processing it), so the task fails without retries and never re-sends.
    smartmca_emulator.add_fault("status", route="trigger", status=503, count=1)
    result = run_dag(AMBIGUOUS_DAG)
    assert result.task_states == {"t": "failed"}
    assert smartmca_emulator.count(route="trigger", method="POST") == 1  # never re-sent
    assert smartmca_emulator.executions_created() == 0
    assert "Check SmartMCA" in FAILURES["t"]


def test_post_never_sent_without_its_snapshot(run_dag, smartmca_connection, smartmca_emulator):
    """The pre-POST snapshot cannot be read (a 400): nothing is sent that could not be recovered."""
    smartmca_emulator.add_fault("status", route="list_executions", status=400, count=None)
    result = run_dag(AMBIGUOUS_DAG)
    assert result.task_states == {"t": "failed"}
    assert smartmca_emulator.count(route="trigger", method="POST") == 0


LOST_202_SOURCE = """
from datetime import timedelta
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import {operator}
from tests.operators.helpers import record_failure


class Lost202OnFirstTry({operator}):
    '''Try 1's POST reaches SmartMCA, but the worker dies before the 202 is read or recorded.'''

    def start_execution(self, record, on_intent):
        response = super().start_execution(record, on_intent)
        if not getattr(type(self), "died", False):
            type(self).died = True
            raise RuntimeError("worker died while the 202 was in flight")
        return response


default_args = {"retries": 1, "retry_delay": timedelta(0), "on_failure_callback": record_failure}
with DAG("{dag_id}", schedule=None, default_args=default_args) as dag:
    Lost202OnFirstTry(task_id="t", poll_interval=0.05, {args})
"""


@pytest.mark.parametrize(
    ("operator", "args", "route", "posts"),
    [
        # The earlier trigger + try 1's; try 2 sends nothing.
        ("TriggerWorkflowOperator", TRIGGER_ARGS.replace("{workflow}", "wf_deal_onboarding"), "trigger", 2),
        # The earlier action was advance-stage; only try 1 sent change-status. Its workflow is
        # known (lookup_workflow_type), so the execution it started can be told apart.
        (
            "ChangeApplicationStatusOperator",
            APP_ARGS + ', lookup_workflow_type="wf_app_status_change"',
            "change_status",
            1,
        ),
    ],
)
def test_retry_after_death_with_the_202_in_flight_finds_the_execution(
    operator, args, route, posts, run_dag, smartmca_connection, smartmca_emulator
):
    from airflow_provider_smartmca.hooks import SmartMCAHook

    # An earlier execution for the same entity must not be mistaken for the lost one.
    hook = SmartMCAHook()
    if operator == "TriggerWorkflowOperator":
        earlier = hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_42")
    else:
        earlier = hook.advance_application_stage("app_42")
    earlier = earlier.raw
    source = LOST_202_SOURCE.replace("{operator}", operator).replace("{args}", args)
    result = run_dag(source)
    assert result.state == "success", FAILURES
    assert smartmca_emulator.count(route=route, method="POST") == posts
    value = result.xcom("t")
    assert value["status"] == "completed"
    assert value["executionId"] != earlier["executionId"]
    assert len(smartmca_emulator.executions()) == 2


@pytest.mark.slow
def test_retry_after_death_mid_action_is_ambiguous_when_its_workflow_is_unknown(
    run_dag, smartmca_connection, smartmca_emulator
):
    """Another client may act on the same application: without lookup_workflow_type, a new
    execution there proves nothing, so the retry fails (no retries) and never sends again."""
    source = LOST_202_SOURCE.replace("{operator}", "ChangeApplicationStatusOperator").replace(
        "{args}", APP_ARGS
    )
    result = run_dag(source)
    assert result.task_states == {"t": "failed"}
    assert smartmca_emulator.count(route="change_status", method="POST") == 1
    assert "lookup_workflow_type" in FAILURES["t"]
