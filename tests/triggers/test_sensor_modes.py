"""The same outcome in every mode: poke, reschedule and deferrable, through real DAG runs.

Each mode runs one DAG holding one ExecutionSensor per scenario, against fresh executions of
the same workflows, and the final task states and XCom return values must match exactly.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from airflow_provider_smartmca.testing.server import Emulator
from tests.triggers.conftest import start_execution

pytestmark = pytest.mark.slow  # a DAG per mode that really waits (poke, reschedule, deferrable)

SOURCE = """
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_smartmca.sensors import ExecutionSensor

CASES = __CASES__

with DAG("{dag_id}", schedule=None, start_date=datetime(2024, 1, 1), catchup=False) as dag:
    for task_id, case in CASES.items():
        ExecutionSensor(
            task_id=task_id,
            execution_id=case["execution_id"],
            smartmca_conn_id=case.get("conn_id", "smartmca_default"),
            timeout=case.get("timeout", 20),
            soft_fail=case.get("soft_fail", False),
            poke_interval=0.3,
            __MODE__
        )
"""

MODES = {
    "poke": 'mode="poke", deferrable=False',
    "reschedule": 'mode="reschedule", deferrable=False',
    "deferrable": "deferrable=True",
}

EXPECTED = {
    "completed": "success",
    "failed": "failed",
    "cancelled": "failed",
    "timeout": "failed",
    "soft_fail_timeout": "skipped",
    "soft_fail_failed": "failed",  # soft_fail only skips timeouts, in every mode
    "storm_503": "success",
    "storm_429": "success",
    "unauthorized_401": "failed",
    "forbidden_403": "failed",
    "not_found_404": "failed",
    "unknown_status_paused": "failed",  # waits on "paused" until the timeout; never success
}

# Modules a DAG file must not pull in by importing the sensor.
HEAVY = ("requests", "aiohttp", "airflow_provider_smartmca.testing")


def _cases(emu: Emulator) -> dict[str, dict[str, Any]]:
    """Fresh executions for one DAG run; the emulator starts each clock at its first GET."""
    completed = start_execution("wf_deal_onboarding")
    storm_503 = start_execution("wf_deal_onboarding")
    storm_429 = start_execution("wf_merchant_kyc", "merchant")
    path = "/api/public/v1/workflows/executions/"
    emu.add_fault("status", route=path + storm_503, status=503, count=4)
    emu.add_fault("status", route=path + storm_429, status=429, retry_after=1, count=2)
    return {
        # Templated: rendered by Jinja before the sensor runs.
        "completed": {"execution_id": "{{ '" + completed + "' }}"},
        "failed": {"execution_id": start_execution("wf_deal_compliance_fail")},
        "cancelled": {"execution_id": start_execution("wf_merchant_cancelled", "merchant")},
        "timeout": {"execution_id": start_execution("wf_slow"), "timeout": 2},
        "soft_fail_timeout": {"execution_id": start_execution("wf_slow"), "timeout": 2, "soft_fail": True},
        "soft_fail_failed": {"execution_id": start_execution("wf_deal_compliance_fail"), "soft_fail": True},
        "storm_503": {"execution_id": storm_503},
        "storm_429": {"execution_id": storm_429},
        "unauthorized_401": {"execution_id": completed, "conn_id": "smartmca_wrong"},
        "forbidden_403": {"execution_id": completed, "conn_id": "smartmca_noread"},
        "not_found_404": {"execution_id": "exec_does_not_exist"},
        "unknown_status_paused": {"execution_id": start_execution("wf_deal_paused"), "timeout": 2.5},
    }


def _normalized(value: Any) -> Any:
    """An XCom execution without what differs between two executions of the same workflow."""
    if not isinstance(value, dict):
        return value
    return {
        "keys": sorted(value),
        "status": value.get("status"),
        "workflowId": value.get("workflowId"),
        "nodes": [(n.get("name"), n.get("status")) for n in value.get("nodes", [])],
    }


@pytest.fixture(scope="module")
def outcomes() -> dict[str, dict[str, Any]]:
    return {}


@pytest.mark.parametrize("mode", list(MODES))
def test_each_mode(mode: str, emu: Emulator, run_dag: Any, outcomes: dict[str, dict[str, Any]]) -> None:
    outcomes[mode] = _run_mode(mode, emu, run_dag)


def _run_mode(mode: str, emu: Emulator, run_dag: Any) -> dict[str, Any]:
    """Run every case in ``mode`` and check it; returns the outcome the modes must share."""
    cases = _cases(emu)
    before = len(emu.requests)
    source = SOURCE.replace("__CASES__", repr(cases)).replace("__MODE__", MODES[mode])
    result = run_dag(source)
    assert result.task_states == EXPECTED, f"{mode}: {result.task_states}"
    xcoms = {task_id: _normalized(result.xcom(task_id)) for task_id in EXPECTED}
    assert xcoms["completed"]["status"] == "completed" and xcoms["completed"]["nodes"]
    assert "nodes" in xcoms["completed"]["keys"]  # the full execution, not the event summary
    assert all(xcoms[t] is None for t in EXPECTED if t not in ("completed", "storm_503", "storm_429"))
    # Waiting never changes anything in SmartMCA: no POST, no cancel.
    assert {r.method for r in emu.requests[before:]} == {"GET"}
    return {"states": result.task_states, "xcoms": xcoms}


def test_every_mode_has_the_same_outcome(
    outcomes: dict[str, dict[str, Any]], emu: Emulator, run_dag: Any
) -> None:
    from tests.airflow_versions import unmet_need

    # Under pytest-xdist the modes may have run in other workers: run the missing ones here, but
    # only those this Airflow can run (tests.airflow_versions.NEEDS skips the others).
    for mode in MODES:
        if (
            mode not in outcomes
            and unmet_need(f"tests/triggers/test_sensor_modes.py::test_each_mode[{mode}]") is None
        ):
            emu.reset()  # fresh executions, as each test_each_mode gets
            outcomes[mode] = _run_mode(mode, emu, run_dag)
    reference = outcomes["poke"]
    for mode, outcome in outcomes.items():
        assert outcome == reference, mode


def test_importing_the_sensor_stays_light() -> None:
    import subprocess

    code = f"import sys, airflow_provider_smartmca.sensors; print([m for m in {HEAVY!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
