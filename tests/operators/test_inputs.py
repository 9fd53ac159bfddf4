"""Bad input fails clearly, names the argument and sends nothing; secrets stay out of logs and XCom."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from airflow_provider_smartmca.errors import SmartMCAValidationError
from airflow_provider_smartmca.operators import (
    AssignUnderwriterOperator,
    ChangeApplicationStatusOperator,
    TriggerWorkflowOperator,
)
from airflow_provider_smartmca.testing import READ_KEY
from airflow_provider_smartmca.testing.pytest_plugin import FULL_KEY, connection_json
from tests.operators.helpers import FAILURE_TYPES, FAILURES

TRIGGER = dict(task_id="t", workflow_type="wf_deal_onboarding", entity_type="deal", entity_id="deal_1")


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"entity_id": ""}, "entity_id"),
        ({"entity_id": None}, "entity_id"),
        ({"workflow_type": "  "}, "workflow_type"),
        ({"entity_id": "../deal_1"}, "entity_id"),
        ({"entity_id": "deal/1"}, "entity_id"),
        ({"on_retry": "sometimes"}, "on_retry"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"timeout": -5}, "timeout"),
        ({"timeout": timedelta(seconds=-1)}, "timeout"),
    ],
)
def test_static_bad_input_fails_at_parse_time(override, field):
    with pytest.raises(SmartMCAValidationError, match=repr(field)) as info:
        TriggerWorkflowOperator(**{**TRIGGER, **override})
    assert info.value.field == field


def test_application_static_bad_input():
    with pytest.raises(SmartMCAValidationError, match="'application_id'"):
        ChangeApplicationStatusOperator(task_id="c", application_id="", status="approved")
    with pytest.raises(SmartMCAValidationError, match="'status'"):
        ChangeApplicationStatusOperator(task_id="c", application_id="app_1", status="")
    with pytest.raises(SmartMCAValidationError, match="'payload'"):
        AssignUnderwriterOperator(task_id="a", application_id="app_1", payload=["x"])  # type: ignore[arg-type]
    # Named body fields are conveniences, not path segments: any string is sent as given.
    AssignUnderwriterOperator(task_id="a", application_id="app_1", underwriter_id="uw/../1")


def test_templated_values_are_checked_after_rendering_not_at_parse_time():
    op = TriggerWorkflowOperator(**{**TRIGGER, "entity_id": "{{ params.deal }}", "poll_interval": 0.01})
    assert op.entity_id == "{{ params.deal }}"
    assert op.poll_interval == 0.01  # any positive value


BAD_RENDER_DAG = """
from airflow.sdk import DAG, Param
from airflow_provider_smartmca.operators import ChangeApplicationStatusOperator, TriggerWorkflowOperator
from tests.operators.helpers import record_failure

with DAG("{dag_id}", schedule=None, params={"deal": "{value}", "app": "{value}"},
         default_args={"retries": 2, "on_failure_callback": record_failure}) as dag:
    TriggerWorkflowOperator(task_id="trigger", workflow_type="wf_deal_onboarding", entity_type="deal",
                            entity_id="{{ params.deal }}", poll_interval=0.05)
    ChangeApplicationStatusOperator(task_id="change", application_id="{{ params.app }}",
                                    status="approved", poll_interval=0.05)
"""


@pytest.mark.slow
@pytest.mark.parametrize("value", ["", "../deal_1", "deal/1", " deal_1"])
def test_templated_id_rendering_bad_fails_without_sending(
    value, run_dag, smartmca_connection, smartmca_emulator
):
    FAILURES.clear()
    result = run_dag(BAD_RENDER_DAG.replace("{value}", value))
    assert result.state == "failed"
    assert result.task_states == {"trigger": "failed", "change": "failed"}  # not up_for_retry: no retries
    assert "'entity_id'" in FAILURES["trigger"]
    assert "'application_id'" in FAILURES["change"]
    assert smartmca_emulator.count() == 0  # nothing sent at all, not even a GET
    assert smartmca_emulator.executions_created() == 0


MISMATCH_DAG = """
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import TriggerWorkflowOperator
from tests.operators.helpers import record_failure

with DAG("{dag_id}", schedule=None, default_args={"retries": 2, "on_failure_callback": record_failure}) as dag:
    TriggerWorkflowOperator(task_id="t", workflow_type="wf_deal_onboarding", entity_type="merchant",
                            entity_id="m_1", poll_interval=0.05)
"""


def test_entity_type_mismatch_fails_fast_naming_both(run_dag, smartmca_connection, smartmca_emulator):
    result = run_dag(MISMATCH_DAG)
    assert result.task_states == {"t": "failed"}
    assert "'merchant'" in FAILURES["t"] and "'deal'" in FAILURES["t"]
    assert smartmca_emulator.count(route="get_workflow") == 1
    assert smartmca_emulator.count(method="POST") == 0


FORBIDDEN_DAG = """
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import AssignUnderwriterOperator, TriggerWorkflowOperator
from tests.operators.helpers import record_failure

with DAG("{dag_id}", schedule=None, default_args={"retries": 3, "on_failure_callback": record_failure}) as dag:
    TriggerWorkflowOperator(task_id="trigger", workflow_type="wf_deal_onboarding", entity_type="deal",
                            entity_id="deal_1", poll_interval=0.05)
    AssignUnderwriterOperator(task_id="assign", application_id="app_1", poll_interval=0.05)
"""


def test_missing_scope_403_fails_at_once_without_retries(run_dag, smartmca_emulator, monkeypatch):
    # A read-only key that declares no scopes locally: the server answers 403.
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", connection_json(smartmca_emulator, READ_KEY))
    result = run_dag(FORBIDDEN_DAG)
    assert result.task_states == {"trigger": "failed", "assign": "failed"}
    assert smartmca_emulator.count(route="trigger", status=403) == 1
    assert smartmca_emulator.count(route="assign_underwriter", status=403) == 1
    assert smartmca_emulator.executions_created() == 0
    assert FAILURE_TYPES["trigger"][:2] == ["AirflowFailException", "SmartMCAScopeError"]
    assert "workflows:trigger" in FAILURES["trigger"]
    assert "underwriting:trigger" in FAILURES["assign"]


SECRET_DAG = """
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import ChangeApplicationStatusOperator, TriggerWorkflowOperator

with DAG("{dag_id}", schedule=None) as dag:
    for deferrable in (False, True):
        TriggerWorkflowOperator(task_id=f"trigger_{deferrable}", workflow_type="wf_deal_onboarding",
                                entity_type="deal", entity_id="deal_1", poll_interval=0.05, deferrable=deferrable)
        ChangeApplicationStatusOperator(task_id=f"change_{deferrable}", application_id="app_1", status="approved",
                                        poll_interval=0.05, deferrable=deferrable)
"""


@pytest.mark.slow
def test_key_never_in_logs_or_xcom_and_link_shown(run_dag, smartmca_emulator, monkeypatch, capfd):
    template = "https://app.smartmca.com/executions/{execution_id}"
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMARTMCA_DEFAULT", connection_json(smartmca_emulator, execution_url_template=template)
    )
    result = run_dag(SECRET_DAG)
    assert result.state == "success"
    out, err = capfd.readouterr()
    assert "Started SmartMCA execution" in out + err  # the task logs were captured
    assert FULL_KEY not in out + err

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=result.dag_id).all()
        values = {f"{r.task_id}|{r.key}": XComModel.deserialize_value(r) for r in rows}
    assert FULL_KEY not in json.dumps(values, default=str)
    for task_id in ("trigger_False", "trigger_True", "change_False", "change_True"):
        execution_id = values[f"{task_id}|execution_id"]
        link = result.xcom(task_id, key="_link_SmartMCAExecutionLink")
        assert link == f"https://app.smartmca.com/executions/{execution_id}"


@pytest.mark.slow
def test_previous_execution_found_without_task_state_store(smartmca_connection, smartmca_emulator):
    """Airflow < 3.3 path: no task_state_store; try 2 finds try 1's execution by listing."""
    from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook

    run_start = datetime.now(UTC) - timedelta(seconds=1)
    first = SmartMCAHook().trigger_workflow("wf_deal_slow", "deal", "deal_9")  # try 1, then the worker died

    class TI:
        try_number = 2
        pushed: dict = {}

        def xcom_push(self, key, value):
            self.pushed[key] = value

    class DagRun:
        start_date = run_start

    op = TriggerWorkflowOperator(
        task_id="t", workflow_type="wf_deal_slow", entity_type="deal", entity_id="deal_9", poll_interval=0.05
    )
    ti = TI()
    value = op.execute({"ti": ti, "dag_run": DagRun()})  # type: ignore[arg-type]
    assert value["executionId"] == first.execution_id == ti.pushed["execution_id"]
    assert value["status"] == "completed"
    assert smartmca_emulator.executions_created() == 1


class _RetryTI:
    """A second try's task instance, as a worker before Airflow 3.3 has it (no task_state_store)."""

    try_number = 2

    def __init__(self):
        self.pushed: dict = {}

    def xcom_push(self, key, value):
        self.pushed[key] = value


class _DagRun:
    start_date = datetime.now(UTC) - timedelta(minutes=5)


def test_action_retry_without_store_or_lookup_fails_closed(smartmca_connection, smartmca_emulator):
    """Before Airflow 3.3 nothing tells try 2 whether try 1 sent a non-idempotent action: never re-send it."""
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_provider_smartmca.operators import AdvanceApplicationStageOperator

    op = AdvanceApplicationStageOperator(task_id="t", application_id="app_42", poll_interval=0.05)
    with pytest.raises(AirflowFailException) as info:
        op.execute({"ti": _RetryTI(), "dag_run": _DagRun()})  # type: ignore[arg-type]
    message = str(info.value)
    assert "lookup_workflow_type" in message and "on_retry='retrigger'" in message
    assert smartmca_emulator.count(route="advance_stage", method="POST") == 0


def test_action_retry_without_store_sends_again_only_when_opted_in(smartmca_connection, smartmca_emulator):
    from airflow_provider_smartmca.operators import AdvanceApplicationStageOperator

    op = AdvanceApplicationStageOperator(
        task_id="t",
        application_id="app_42",
        poll_interval=0.05,
        on_retry="retrigger",
        wait_for_completion=False,
    )
    op.execute({"ti": _RetryTI(), "dag_run": _DagRun()})  # type: ignore[arg-type]
    assert smartmca_emulator.count(route="advance_stage", method="POST") == 1


def test_on_kill_says_what_is_left_running(smartmca_connection, smartmca_emulator, capfd):
    op = TriggerWorkflowOperator(**TRIGGER)
    op._execution_id = "exec_abc"
    op.on_kill()
    out, err = capfd.readouterr()
    assert "exec_abc is left running" in out + err
    assert "no cancel endpoint" in out + err


BAD_REQUEST_DAG = """
from datetime import timedelta

from airflow.sdk import DAG
from airflow_provider_smartmca.operators import TriggerWorkflowOperator
from tests.operators.helpers import record_failure

default_args = {"retries": 3, "retry_delay": timedelta(0), "on_failure_callback": record_failure}
with DAG("{dag_id}", schedule=None, default_args=default_args) as dag:
    TriggerWorkflowOperator(task_id="trigger", workflow_type="wf_deal_onboarding", entity_type="deal",
                            entity_id="deal_1", poll_interval=0.05)
"""


@pytest.mark.slow
def test_a_400_fails_at_once_without_retries(run_dag, smartmca_connection, smartmca_emulator):
    # The one retry predicate says "never" for a 400: a task retry would send the same request.
    smartmca_emulator.add_fault("status", route="trigger", status=400, count=None)
    result = run_dag(BAD_REQUEST_DAG)
    assert result.task_states == {"trigger": "failed"}
    assert smartmca_emulator.count(route="trigger", method="POST") == 1
    assert FAILURE_TYPES["trigger"][:2] == ["AirflowFailException", "SmartMCABadRequestError"]
