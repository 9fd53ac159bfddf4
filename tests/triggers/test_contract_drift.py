"""ExecutionSensor (poke) and ExecutionTrigger against a drifting emulator (issue 10).

For every drift: a named, final error within bounded time, or the documented outcome; no raw
Python exception; and waiting never POSTs anything.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from airflow_provider_smartmca.client.protocol import CONTRACT_RETRIES
from airflow_provider_smartmca.errors import SmartMCAContractError, SmartMCAExecutionError
from airflow_provider_smartmca.sensors import ExecutionSensor
from airflow_provider_smartmca.testing import DRIFTS
from airflow_provider_smartmca.testing.server import Emulator
from airflow_provider_smartmca.triggers import ExecutionTrigger
from tests.triggers.conftest import FAST_RETRIES, start_execution

pytestmark = pytest.mark.slow  # triggers and sensors poll for real, most cases for a second

RAW = (KeyError, TypeError, AttributeError, ValueError, IndexError)
# Drifts under which Get Execution breaks the contract, and the field each names.
GET_BREAKERS = {
    "rename_fields": "executionId",
    "bad_timestamps": "startedAt",
    "status_as_list": "status",
    "nodes_as_number": "nodes",
}
# Drifts Get Execution does not see (lists and application actions only).
OTHERS = sorted(set(DRIFTS) - set(GET_BREAKERS) - {"unknown_status"})
POLL = 0.1


def posts(emu: Emulator) -> int:
    return emu.count(method="POST")


def sensor(execution_id: str, **kwargs: Any) -> ExecutionSensor:
    return ExecutionSensor(
        task_id="wait", execution_id=execution_id, poke_interval=POLL, timeout=30, **kwargs
    )


def poke_until_done(s: ExecutionSensor, seconds: float = 10) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = s.poke({})  # type: ignore[arg-type]
        if result:
            return result
        time.sleep(POLL)
    raise AssertionError("the sensor never finished")


async def first_event(trigger: ExecutionTrigger, timeout: float = 20) -> dict[str, Any]:
    agen = trigger.run()
    try:
        event = await asyncio.wait_for(agen.__anext__(), timeout)
    finally:
        await agen.aclose()
    return event.payload


def run_trigger(execution_id: str, deadline_in: float = 30, **kwargs: Any) -> tuple[dict[str, Any], float]:
    trigger = ExecutionTrigger(
        conn_id="smartmca_default",
        execution_id=execution_id,
        poll_interval=POLL,
        deadline=time.time() + deadline_in,
        **kwargs,
    )
    start = time.monotonic()
    event = asyncio.run(first_event(trigger))
    return event, time.monotonic() - start


def test_every_drift_is_covered() -> None:
    assert set(GET_BREAKERS) | set(OTHERS) | {"unknown_status"} == set(DRIFTS)


# --- the sensor's poke ---------------------------------------------------------------------------


@pytest.mark.parametrize("drift", sorted(GET_BREAKERS))
def test_poke_fails_named_on_a_drifted_execution(emu: Emulator, drift: str) -> None:
    execution_id = start_execution("wf_deal_onboarding")
    emu.configure(drift=[drift])
    before, gets = posts(emu), emu.count(route="get_execution")
    with pytest.raises(SmartMCAContractError) as err:
        sensor(execution_id).poke({})  # type: ignore[arg-type]
    assert type(err.value) is SmartMCAContractError and not isinstance(err.value, RAW)
    assert err.value.endpoint == "get_execution" and err.value.field == GET_BREAKERS[drift]
    assert emu.count(route="get_execution") - gets == 1 + CONTRACT_RETRIES
    assert posts(emu) == before


@pytest.mark.parametrize("drift", OTHERS)
def test_poke_is_unaffected_by_drifts_of_other_endpoints(emu: Emulator, drift: str) -> None:
    execution_id = start_execution("wf_deal_onboarding")
    emu.configure(drift=[drift])
    before = posts(emu)
    result = poke_until_done(sensor(execution_id))
    assert result.xcom_value["status"] == "completed"
    assert posts(emu) == before


def test_poke_waits_on_an_unknown_status_and_fails_fast_when_listed(emu: Emulator) -> None:
    execution_id = start_execution("wf_deal_onboarding")
    emu.configure(drift=["unknown_status"])
    s = sensor(execution_id)
    deadline = time.monotonic() + 5
    while emu.executions()[0]["status"] == "pending" or not emu.count(route="get_execution"):
        assert s.poke({}) is False  # type: ignore[arg-type]
        assert time.monotonic() < deadline
        time.sleep(POLL)
    for _ in range(3):
        assert s.poke({}) is False  # type: ignore[arg-type]  # paused: never success
    with pytest.raises(SmartMCAExecutionError, match="ended paused"):
        sensor(execution_id, failure_statuses=["paused"]).poke({})  # type: ignore[arg-type]
    assert posts(emu) == 1  # the trigger that started it; waiting sends none


# --- the trigger ---------------------------------------------------------------------------------


@pytest.mark.parametrize("drift", sorted(GET_BREAKERS))
def test_trigger_fires_a_named_error_after_a_few_polls(emu: Emulator, drift: str) -> None:
    execution_id = start_execution("wf_deal_onboarding")
    emu.configure(drift=[drift])
    before, gets = posts(emu), emu.count(route="get_execution")
    event, _ = run_trigger(execution_id, deadline_in=60)
    assert event["status"] == "error"
    assert f"'{GET_BREAKERS[drift]}'" in event["message"] and "get_execution" in event["message"]
    # One attempt per poll; a contract error is polled CONTRACT_RETRIES more times, then final (the
    # 60 s deadline would be 600 polls).
    assert emu.count(route="get_execution") - gets == 1 + CONTRACT_RETRIES
    assert posts(emu) == before


@pytest.mark.parametrize("drift", OTHERS)
def test_trigger_is_unaffected_by_drifts_of_other_endpoints(emu: Emulator, drift: str) -> None:
    execution_id = start_execution("wf_deal_onboarding")
    emu.configure(drift=[drift])
    before = posts(emu)
    event, _ = run_trigger(execution_id)
    assert event["status"] == "success", event
    assert posts(emu) == before


def test_trigger_times_out_on_an_unknown_status_naming_it(emu: Emulator) -> None:
    execution_id = start_execution("wf_deal_onboarding")
    emu.configure(drift=["unknown_status"])
    event, elapsed = run_trigger(execution_id, deadline_in=2.0)
    assert event["status"] == "timeout"
    assert "'paused'" in event["message"] and event["execution"]["status"] == "paused"
    assert 1.5 <= elapsed < 2.0 + 10  # the deadline is the promise; the margin is a loaded machine's
    assert posts(emu) == 1


def test_trigger_fails_fast_on_an_unknown_status_listed_in_failure_statuses(emu: Emulator) -> None:
    execution_id = start_execution("wf_deal_onboarding")
    emu.configure(drift=["unknown_status"])
    event, _ = run_trigger(execution_id, deadline_in=60, failure_statuses=["paused"])
    assert event["status"] == "failure" and "ended paused" in event["message"]
    # At the first poll that reads paused (the workflow takes under a second): 600 polls to the deadline.
    assert emu.count(route="get_execution") < 30
    assert posts(emu) == 1


# --- whole DAG runs: the timeout message, in poke and deferrable mode ---------------------------

SENSOR_DAG = """
from airflow.sdk import DAG
from airflow_provider_smartmca.sensors import ExecutionSensor
from tests.operators.helpers import record_failure

with DAG("{dag_id}", schedule=None) as dag:
    for mode, kwargs in (("poke", dict(mode="poke")), ("deferrable", dict(deferrable=True))):
        ExecutionSensor(
            task_id=f"wait_{mode}", execution_id=IDS[mode], poke_interval=0.2, timeout=2,
            on_failure_callback=record_failure, **kwargs,
        )
        ExecutionSensor(
            task_id=f"fail_fast_{mode}", execution_id=IDS[mode], poke_interval=0.2, timeout=60,
            failure_statuses=["paused"], on_failure_callback=record_failure, **kwargs,
        )
"""


def test_sensor_timeout_names_the_unknown_status_in_every_mode(
    emu: Emulator, run_dag: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.operators.helpers import FAILURES
    from tests.triggers.conftest import FULL_KEY, conn_json

    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", conn_json(emu, FULL_KEY, **FAST_RETRIES))
    ids = {mode: start_execution("wf_deal_onboarding") for mode in ("poke", "deferrable")}
    emu.configure(drift=["unknown_status"])
    FAILURES.clear()
    result = run_dag(SENSOR_DAG.replace("IDS[mode]", f"{ids!r}[mode]"))
    # Two 2 s waits at 0.2 s pokes and two fail-fast waits: the 60 s timeouts would be 600 reads.
    assert emu.count(route="get_execution") < 100
    assert set(result.task_states.values()) == {"failed"}, result.task_states
    assert posts(emu) == 2  # the two start_execution calls
    for mode in ("poke", "deferrable"):
        assert "ended paused" in FAILURES[f"fail_fast_{mode}"]
    assert "'paused'" in FAILURES["wait_deferrable"]
    assert "'paused'" in FAILURES["wait_poke"], FAILURES["wait_poke"]
