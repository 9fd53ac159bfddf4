"""The shipped ``run_dag`` helper: a DAG file from anywhere runs offline with ``dag.test()``.

On Airflow 3.3 ``dag.test()`` on a DAG file outside ``[core] dags_folder`` fails with "the dag
is not serialized" (issue 11); ``run_dag`` places the file, migrates the DB and reads the outcome.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_smartmca.testing import RunDagError, run_dag
from airflow_provider_smartmca.testing.dag_runner import COPY_SUBFOLDER

ONBOARD = """
from airflow.sdk import DAG, task
from airflow_provider_smartmca.operators import TriggerWorkflowOperator

with DAG("DAG_ID", schedule=None) as dag:
    start = TriggerWorkflowOperator(
        task_id="start",
        workflow_type="WORKFLOW",
        entity_type="deal",
        entity_id="deal_run_dag",
        poll_interval=0.05,
    )

    @task
    def summarize(execution: dict, **context) -> dict:
        return {"status": execution["status"], "conf": dict(context["dag_run"].conf or {})}

    summarize(start.output)
"""


def dag_file(
    folder: Path, workflow: str = "wf_deal_onboarding", name: str = "onboard.py"
) -> tuple[Path, str]:
    dag_id = f"run_dag_{uuid.uuid4().hex[:8]}"
    path = folder / name
    path.write_text(ONBOARD.replace("DAG_ID", dag_id).replace("WORKFLOW", workflow))
    return path, dag_id


def dags_folder() -> Path:
    from airflow import settings

    return Path(settings.DAGS_FOLDER).resolve()


@pytest.mark.slow
def test_plain_dag_test_outside_the_dags_folder_is_what_run_dag_fixes(
    smartmca_connection: str, smartmca_run_dag: Any, tmp_path: Path
) -> None:
    path, dag_id = dag_file(tmp_path)
    from airflow import __version__ as airflow_version

    if tuple(int(p) for p in airflow_version.split(".")[:2]) >= (3, 3):
        # What the new user met: the DAG imported from its own folder cannot be tested.
        spec = importlib.util.spec_from_file_location(f"plain_{dag_id}", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        with pytest.raises(Exception, match="not serialized"):
            module.dag.test()

    result = smartmca_run_dag(path, conf={"note": "hi"})
    assert result.dag_id == dag_id and result.succeeded, result.task_states
    assert result.state == "success"
    assert result.task_states == {"start": "success", "summarize": "success"}
    assert result.xcoms["summarize"] == {"status": "completed", "conf": {"note": "hi"}}
    assert result.xcom("start", key="execution_id").startswith("exec_")
    assert result.xcom("start", key="no_such_key") is None
    # The copy lives in run_dag's own subfolder; the user's file is left as it was.
    assert result.dag_file == dags_folder() / COPY_SUBFOLDER / "onboard.py"
    assert result.dag_file.read_text() == path.read_text()


@pytest.mark.slow
def test_a_failed_run_is_reported_not_raised(smartmca_connection: str, tmp_path: Path) -> None:
    path, _ = dag_file(tmp_path, workflow="wf_deal_compliance_fail")
    result = run_dag(path)
    assert result.state == "failed" and not result.succeeded
    assert result.task_states == {"start": "failed", "summarize": "upstream_failed"}
    assert "summarize" not in result.xcoms


def test_a_file_under_the_dags_folder_runs_in_place(smartmca_connection: str) -> None:
    folder = dags_folder() / f"in_place_{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    path, _ = dag_file(folder)
    result = run_dag(path)
    assert result.succeeded and result.dag_file == path.resolve()


def test_bad_files_and_ids_are_named(tmp_path: Path) -> None:
    with pytest.raises(RunDagError, match=r"not an existing \.py file"):
        run_dag(tmp_path / "missing.py")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(RunDagError, match=r"notes\.txt"):
        run_dag(tmp_path / "notes.txt")

    broken = tmp_path / "broken_dag.py"
    broken.write_text("from airflow.sdk import DAG\nwith DAG('broken', schedule=None) as dag:\n    1/0\n")
    with pytest.raises(RunDagError, match=r"(?s)broken_dag\.py cannot be imported.*ZeroDivisionError"):
        run_dag(broken)

    suffix = uuid.uuid4().hex[:6]
    two = tmp_path / "two_dags.py"
    two.write_text(
        textwrap.dedent(f"""
        from airflow.sdk import DAG
        from airflow.providers.standard.operators.empty import EmptyOperator
        with DAG("first_{suffix}", schedule=None) as first:
            EmptyOperator(task_id="a")
        with DAG("second_{suffix}", schedule=None) as second:
            EmptyOperator(task_id="b")
        """)
    )
    with pytest.raises(
        RunDagError, match=f"defines 2 DAGs \\(first_{suffix}, second_{suffix}\\): pass dag_id"
    ):
        run_dag(two)
    with pytest.raises(RunDagError, match="has no DAG 'third'"):
        run_dag(two, dag_id="third")
    assert run_dag(two, dag_id=f"second_{suffix}").task_states == {"b": "success"}


NEW_USER_SCRIPT = """
import json, os, sys
import airflow_provider_smartmca.testing as testing

cheap = "airflow" not in sys.modules and "airflow_provider_smartmca.testing.dag_runner" not in sys.modules
with testing.Emulator({"durations": {"pending_seconds": 0.05, "node_seconds": 0.02}}) as emu:
    os.environ["AIRFLOW_CONN_SMARTMCA_DEFAULT"] = json.dumps(
        {"conn_type": "smartmca", "host": emu.base_url, "password": testing.FULL_KEY}
    )
    result = testing.run_dag(sys.argv[1])
print("RESULT " + json.dumps({
    "cheap": cheap, "state": result.state, "tasks": result.task_states,
    "summary": result.xcoms["summarize"], "home": os.environ["AIRFLOW_HOME"],
    "dag_file": str(result.dag_file),
}))
"""


@pytest.mark.slow
def test_a_new_user_with_no_airflow_home_runs_a_dag_file(tmp_path: Path) -> None:
    """A fresh process, no AIRFLOW_HOME: a throwaway home is made, migrated, used and removed."""
    path, _ = dag_file(tmp_path)
    user_home = tmp_path / "user"
    user_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env["HOME"] = str(user_home)  # ~/airflow must stay untouched
    script = tmp_path / "new_user.py"
    script.write_text(NEW_USER_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(path)], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    report = json.loads(line.removeprefix("RESULT "))
    assert report["cheap"], "importing the testing package imported Airflow or the DAG runner"
    assert report["state"] == "success", report
    assert report["summary"]["status"] == "completed"
    home = Path(report["home"])
    assert home.name.startswith("smartmca-airflow-home-")
    assert Path(report["dag_file"]).is_relative_to(home / "dags")
    assert not home.exists(), "the throwaway home is removed at exit"
    assert not (user_home / "airflow").exists()
