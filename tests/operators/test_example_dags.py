"""The three example DAGs parse without import errors and run to success against the emulator."""

from __future__ import annotations

from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "airflow_provider_smartmca" / "examples"
NAMES = [
    "example_smartmca_onboard_deal",
    "example_smartmca_daily_applications",
    "example_smartmca_application_pipeline",
]


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
    else:
        assert smartmca_emulator.count(method="POST") == 3
        assert [e["workflowId"] for e in smartmca_emulator.executions()] == [
            "wf_app_status_change",
            "wf_app_advance_stage",
            "wf_app_assign_underwriter",
        ]
