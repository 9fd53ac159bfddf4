"""Issue 17, "a user's first hour": each item replayed the way a new user meets it.

Real ``airflow`` CLI and console scripts in subprocesses, real HTTP on loopback against the emulator.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from airflow_provider_smartmca.testing import FULL_KEY, Emulator
from tests.provider.airflow_cli import AIRFLOW

KEY = FULL_KEY
CHECK = str(Path(sys.executable).with_name("smartmca-check"))


def _env() -> dict[str, str]:
    """This session's environment, without any connection given as an environment variable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}


# --- a connection added with `airflow connections add`, used outside a task ------------------------


@pytest.fixture
def cli_connection(smartmca_emulator: Emulator) -> Iterator[str]:
    """A connection stored in the metadata database by the README's own command."""
    conn_id = f"smartmca_first_hour_{uuid.uuid4().hex[:8]}"
    add = [AIRFLOW, "connections", "add", conn_id, "--conn-type", "smartmca"]
    add += ["--conn-host", smartmca_emulator.base_url, "--conn-password", KEY]
    add += ["--conn-extra", '{"scopes": "workflows:read workflows:trigger underwriting:trigger"}']
    proc = subprocess.run(add, capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield conn_id
    subprocess.run([AIRFLOW, "connections", "delete", conn_id], capture_output=True, env=_env(), timeout=120)


@pytest.mark.slow
def test_smartmca_check_finds_a_connection_added_with_the_cli(cli_connection: str, smartmca_emulator):
    proc = subprocess.run(
        [CHECK, "--conn-id", cli_connection], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert smartmca_emulator.base_url in proc.stdout
    assert KEY not in proc.stdout + proc.stderr


def test_a_hook_in_a_plain_script_reads_a_connection_added_with_the_cli(
    cli_connection: str, smartmca_emulator: Emulator
):
    script = textwrap.dedent(
        f"""
        from airflow_provider_smartmca.hooks import SmartMCAHook

        hook = SmartMCAHook({cli_connection!r})
        print(hook.settings.base_url)
        print(len(hook.list_workflows().items))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=_env(), timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    base_url, count = proc.stdout.split()[-2:]
    assert base_url == smartmca_emulator.base_url
    assert int(count) > 0


# --- the pytest plugin writes only under its throwaway home, whatever the import order -------------

USER_CONFTEST = 'pytest_plugins = ["airflow_provider_smartmca.testing.pytest_plugin"]\n'
USER_TEST = """
from airflow_provider_smartmca.hooks import SmartMCAHook  # imports Airflow before the plugin runs a DAG

DAG_FILE = '''
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import TriggerWorkflowOperator

with DAG("first_hour_import_order", schedule=None) as dag:
    TriggerWorkflowOperator(
        task_id="start", workflow_type="wf_deal_onboarding", entity_type="deal", entity_id="deal_1",
        poll_interval=0.05,
    )
'''


def test_user_dag(smartmca_connection, smartmca_run_dag, tmp_path):
    assert SmartMCAHook(smartmca_connection).settings.base_url
    (tmp_path / "user_dag.py").write_text(DAG_FILE)
    result = smartmca_run_dag(tmp_path / "user_dag.py")
    assert result.state == "success", result.task_states
"""


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.slow
def test_the_plugin_writes_nothing_under_home_when_the_hook_is_imported_first(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    # What importing Airflow itself creates under an unset AIRFLOW_HOME (its log folder): not ours.
    bare = tmp_path / "bare"
    bare.mkdir()
    subprocess.run([sys.executable, "-c", "import airflow"], env={**env, "HOME": str(bare)}, check=True)
    user_home = tmp_path / "home"
    user_home.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    (project / "conftest.py").write_text(USER_CONFTEST)
    (project / "test_user.py").write_text(USER_TEST)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--basetemp",
            str(tmp_path / "t"),
            ".",
        ],
        env={**env, "HOME": str(user_home)},
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert _tree(user_home) == _tree(bare), "written under HOME: " + ", ".join(
        sorted(_tree(user_home) - _tree(bare))
    )


# --- typed list results behave as sequences -----------------------------------------------------


def test_list_results_iterate_index_and_count_the_page_not_the_total(smartmca_connection: str) -> None:
    from airflow_provider_smartmca.hooks import SmartMCAHook

    hook = SmartMCAHook(smartmca_connection)
    workflows = hook.list_workflows()
    assert [wf.id for wf in workflows] == [wf.id for wf in workflows.items]
    assert len(workflows) == len(workflows.items) > 1
    assert workflows[0] == workflows.items[0] and workflows[-1] == workflows.items[-1]
    assert workflows[:2] == workflows.items[:2]
    assert workflows[0].raw["id"] == workflows[0].id  # the JSON as received
    for i in range(3):
        hook.trigger_workflow("wf_deal_onboarding", "deal", f"deal_list_{i}")
    page = hook.list_executions(limit=2)
    assert page.total == 3 and len(page) == 2  # the page's items, not every match
    assert [e.execution_id for e in page] == [page[0].execution_id, page[1].execution_id]
    assert page[0].raw["executionId"] == page[0].execution_id
    with pytest.raises(IndexError):
        page[2]
    empty = hook.list_executions(entity_id="deal_nobody")
    assert len(empty) == 0 and not empty and list(empty) == []


# --- what a pip user reads: the README fits PyPI, the test extra is declared ---------------------


def test_the_readme_fits_the_pypi_page_and_pytest_is_the_testing_extra() -> None:
    import tomllib

    root = Path(__file__).resolve().parents[2]
    assert len((root / "README.md").read_bytes()) <= 16000
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert any(req.startswith("pytest") for req in project["optional-dependencies"]["testing"])
    assert "[testing]" in (root / "README.md").read_text()


def test_the_documented_constraints_files_pin_their_airflow_and_a_common_compat_that_fits() -> None:
    import importlib.util
    import re
    import tomllib

    from packaging.requirements import Requirement

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("smartmca_matrix_script", root / "scripts" / "matrix.py")
    assert spec is not None and spec.loader is not None
    matrix = importlib.util.module_from_spec(spec)
    sys.modules["smartmca_matrix_script"] = matrix  # its dataclasses look their module up
    spec.loader.exec_module(matrix)
    airflow_of = {cell.constraints.name: cell.airflow for cell in matrix.CELLS}
    named = set()
    for page in (root / "README.md", root / "docs" / "guide" / "install.md"):
        named |= set(re.findall(r"-c requirements/(airflow-3\.\d\.txt)", page.read_text()))
    assert named and named <= set(airflow_of), named
    floor = next(
        Requirement(r)
        for r in tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
        if r.startswith("apache-airflow-providers-common-compat")
    )
    for name, airflow in airflow_of.items():
        pins = dict(
            line.split("#")[0].strip().split("==")
            for line in (root / "requirements" / name).read_text().splitlines()
            if "==" in line and not line.startswith("#")
        )
        assert pins["apache-airflow"] == airflow, name
        assert floor.specifier.contains(pins["apache-airflow-providers-common-compat"]), name
