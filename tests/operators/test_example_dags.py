"""The example DAGs parse without import errors and run to success against the emulator."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "airflow_provider_smartmca" / "examples"
NAMES = [
    "example_smartmca_onboard_deal",
    "example_smartmca_daily_applications",
    "example_smartmca_application_pipeline",
    "example_smartmca_funding_on_onboarding",
]
FUNDING = "example_smartmca_funding_on_onboarding"


def test_examples_parse_without_import_errors():
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.2
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    bag = DagBag(dag_folder=str(EXAMPLES))
    assert bag.import_errors == {}
    assert sorted(bag.dag_ids) == sorted(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_example_runs_to_success(name, run_dag, smartmca_connection, smartmca_emulator, monkeypatch):
    monkeypatch.setenv("AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL", "0.05")
    result = run_dag((EXAMPLES / f"{name}.py").read_text(), dag_id=name)
    assert result.state == "success", result.task_states
    assert set(result.task_states.values()) == {"success"}
    if name == "example_smartmca_onboard_deal":
        summary = result.xcom("summarize_onboarding")
        assert summary["status"] == "completed" and summary["nodes_done"] == "8/8"
        assert summary["contract_generated"] is True
        assert smartmca_emulator.executions_created() == 1
    elif name == "example_smartmca_daily_applications":
        assert smartmca_emulator.executions_created(workflow_type="wf_app_underwriting") == 5
        assert result.xcom("report")["underwritten"] == 5
    elif name == FUNDING:
        # Started by hand, without conf: no asset event, nothing to fund, no request.
        assert result.xcom("fund_onboarded_deals") == {"events": 0, "funded": [], "skipped": []}
        assert smartmca_emulator.count() == 0
    else:
        assert smartmca_emulator.count(method="POST") == 3
        assert [e["workflowId"] for e in smartmca_emulator.executions()] == [
            "wf_app_status_change",
            "wf_app_advance_stage",
            "wf_app_assign_underwriter",
        ]
        # The last step only starts its execution (the 202 answer); the deferrable ExecutionSensor
        # waits for that execution and returns it completed.
        started = result.xcom("assign_underwriter", key="execution_id")
        answer = result.xcom("assign_underwriter")
        assert answer["executionId"] == started and answer["status"] == "pending", answer
        waited = result.xcom("wait_for_assignment")
        assert waited["executionId"] == started and waited["status"] == "completed"
        reads = [
            r for r in smartmca_emulator.requests if r.method == "GET" and r.path.endswith(f"/{started}")
        ]
        assert reads, "the sensor did not read the execution"


def _funding_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("funding_example", EXAMPLES / f"{FUNDING}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_funding_example_watches_completed_onboardings():
    """The DAG is scheduled on one asset whose watcher fires for completed ``wf_deal_onboarding``."""
    from airflow_provider_smartmca.triggers.events import ExecutionEventTrigger

    module = _funding_module()
    asset = module.onboarding_completed
    assert asset.uri == "smartmca://workflows/wf_deal_onboarding/completed"
    (watcher,) = asset.watchers
    assert isinstance(watcher.trigger, ExecutionEventTrigger)
    _classpath, kwargs = watcher.trigger.serialize()
    assert kwargs["workflow_type"] == "wf_deal_onboarding"
    assert kwargs["statuses"] == ["completed"]
    assert kwargs["conn_id"] == "smartmca_default"


def test_funding_example_deduplicates_by_execution_id():
    """A repeated event (a triggerer crash) adds nothing; the first event of each execution wins."""
    module = _funding_module()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)

    def event(seconds: int, execution_id: str, entity_id: str) -> SimpleNamespace:
        payload = {"executionId": execution_id, "entityId": entity_id, "status": "completed"}
        return SimpleNamespace(
            timestamp=t0 + timedelta(seconds=seconds), extra={"from_trigger": True, "payload": payload}
        )

    events = [event(3, "exec_b", "deal_b"), event(1, "exec_a", "deal_a"), event(5, "exec_a", "deal_a_again")]
    unique = module.unique_executions(events)
    assert list(unique) == ["exec_a", "exec_b"]
    assert unique["exec_a"]["entityId"] == "deal_a"
    # Without Airflow's "payload" wrapper the extra itself is the payload.
    assert module.event_payload({"executionId": "exec_c"}) == {"executionId": "exec_c"}


def test_funding_example_funds_given_executions_once(smartmca_connection, smartmca_emulator, monkeypatch):
    """A manual run funds each completed execution of its conf once; others are skipped."""
    from airflow_provider_smartmca.hooks import SmartMCAHook
    from airflow_provider_smartmca.testing.dag_runner import run_dag as run_dag_path

    monkeypatch.setenv("AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL", "1")
    hook = SmartMCAHook()
    done = hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_fund_1").execution_id
    failed = hook.trigger_workflow("wf_deal_compliance_fail", "deal", "deal_fund_2").execution_id
    assert done and failed
    for execution_id in (done, failed):
        hook.wait_for_execution(execution_id, poll_interval=0.05)
    result = run_dag_path(
        EXAMPLES / f"{FUNDING}.py", dag_id=FUNDING, conf={"execution_ids": [done, failed, done]}
    )
    assert result.state == "success", result.task_states
    assert result.xcom("fund_onboarded_deals") == {"events": 0, "funded": [done], "skipped": [failed]}
    reads = [r for r in smartmca_emulator.requests if r.method == "GET" and r.path.endswith(f"/{done}")]
    assert reads, "the task did not read the execution through the hook"
