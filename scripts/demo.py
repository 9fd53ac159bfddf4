"""`make demo`: run the example DAG "onboard one deal" end to end against the SmartMCA emulator.

On a fresh clone, with nothing else running, this:

1. starts the SmartMCA API emulator in this process (random local port);
2. creates a throwaway AIRFLOW_HOME (set before Airflow is imported) and runs ``airflow db migrate``;
3. points the ``smartmca_default`` connection at the emulator (``AIRFLOW_CONN_SMARTMCA_DEFAULT``);
4. copies ``examples/example_smartmca_onboard_deal.py`` into the dags folder and runs it
   with ``dag.test()``;
5. prints the execution's outcome and exits non-zero if the DAG run did not succeed.

Options: ``--verbose`` shows Airflow's task logs; ``--keep`` keeps the AIRFLOW_HOME;
``--deal-id ID`` onboards another deal.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "airflow_provider_smartmca" / "examples" / "example_smartmca_onboard_deal.py"
DAG_ID = "example_smartmca_onboard_deal"
DEMO_KEY = "smca_test_full"  # a key of the emulator's default catalog, not a real secret


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway AIRFLOW_HOME")
    parser.add_argument("--deal-id", default="deal_1001", help="the deal to onboard")
    args = parser.parse_args()
    started = time.monotonic()

    home = Path(tempfile.mkdtemp(prefix="smartmca-demo-airflow-"))
    dags = home / "dags"
    dags.mkdir()
    # Before anything imports airflow: Airflow reads its configuration once, at import.
    os.environ.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__DAGS_FOLDER=str(dags),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__LOGGING__LOGGING_LEVEL="INFO" if args.verbose else "WARNING",
        AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL="0.5",
    )
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))

    from airflow_provider_smartmca.testing.server import Emulator

    try:
        with Emulator() as emulator:
            print(f"SmartMCA emulator listening on {emulator.base_url}")
            os.environ["AIRFLOW_CONN_SMARTMCA_DEFAULT"] = json.dumps(
                {
                    "conn_type": "smartmca",
                    "host": emulator.base_url,
                    "password": DEMO_KEY,
                    "extra": {"execution_url_template": emulator.base_url + "/executions/{execution_id}"},
                }
            )
            print(f"Throwaway AIRFLOW_HOME: {home}; migrating the metadata DB ...")
            airflow_bin = Path(sys.executable).with_name("airflow")
            migrate = subprocess.run(
                [str(airflow_bin), "db", "migrate"], env=os.environ.copy(), capture_output=True, text=True
            )
            if migrate.returncode != 0:
                print(migrate.stdout[-2000:], migrate.stderr[-4000:], sep="\n", file=sys.stderr)
                print("DEMO FAILED: airflow db migrate failed", file=sys.stderr)
                return 2
            shutil.copy(EXAMPLE, dags / EXAMPLE.name)
            return run_example(dags / EXAMPLE.name, args.deal_id, emulator, started)
    finally:
        if args.keep:
            print(f"AIRFLOW_HOME kept at {home}")
        else:
            shutil.rmtree(home, ignore_errors=True)


def run_example(path: Path, deal_id: str, emulator: object, started: float) -> int:
    spec = importlib.util.spec_from_file_location(DAG_ID, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"Running DAG {DAG_ID} for deal {deal_id} with dag.test() ...")
    dag_run = module.dag.test(run_conf={"deal_id": deal_id})

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    def xcom(task_id: str, key: str = "return_value"):
        with create_session() as session:
            row = (
                session.query(XComModel)
                .filter_by(dag_id=DAG_ID, run_id=dag_run.run_id, task_id=task_id, key=key, map_index=-1)
                .one_or_none()
            )
            return None if row is None else XComModel.deserialize_value(row)

    states = {ti.task_id: str(ti.state) for ti in dag_run.get_task_instances()}
    execution_id = xcom("onboard_deal", "execution_id")
    execution = xcom("onboard_deal")
    summary = xcom("summarize_onboarding")
    if execution is None and execution_id:  # the task failed: show what the emulator knows
        found = [e for e in emulator.executions() if e["executionId"] == execution_id]  # type: ignore[attr-defined]
        execution = found[0] if found else None

    print()
    print("=" * 72)
    print(f"DAG run        : {dag_run.run_id} -> {dag_run.state}")
    print(f"Task states    : {states}")
    print(f"Execution id   : {execution_id}")
    if execution:
        nodes = execution.get("nodes") or []
        done = sum(1 for n in nodes if n.get("status") == "completed")
        print(f"Workflow       : {execution.get('workflowId')} ({execution.get('workflowName')})")
        print(f"Status         : {execution.get('status')}")
        print(f"Nodes done     : {done}/{execution.get('nodeCount') or len(nodes)}")
        for node in nodes:
            error = node.get("error")
            print(f"  - {node.get('name'):<26} {node.get('status')}" + (f"  ({error})" if error else ""))
    print(f"Downstream     : {summary}")
    print(f"Emulator saw   : {emulator.executions_created()} execution(s) created")  # type: ignore[attr-defined]
    print(f"Elapsed        : {time.monotonic() - started:.1f} s")
    print("=" * 72)
    if str(dag_run.state) != "success" or not summary or summary.get("status") != "completed":
        print("DEMO FAILED: the DAG run did not succeed", file=sys.stderr)
        return 1
    print("DEMO OK: the deal was onboarded exactly once and the downstream task used the result.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
