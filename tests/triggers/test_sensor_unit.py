"""ExecutionSensor pieces that need no DAG run: bad input, event handling."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from airflow_provider_smartmca.client.executions import make_event
from airflow_provider_smartmca.errors import SmartMCAExecutionError, SmartMCAValidationError
from airflow_provider_smartmca.sensors import ExecutionSensor
from airflow_provider_smartmca.testing.server import Emulator


@pytest.mark.parametrize("bad", ["", "   ", "a/b", "../workflows", "x?y", "."])
def test_static_execution_id_that_is_empty_or_path_like_fails_at_parse_time(bad: str) -> None:
    with pytest.raises(SmartMCAValidationError, match="'execution_id'"):
        ExecutionSensor(task_id="wait", execution_id=bad)


@pytest.mark.parametrize("rendered", ["None", "", "a/b"])
def test_rendered_execution_id_that_is_missing_or_path_like_fails_naming_it(
    emu: Emulator, rendered: str
) -> None:
    """A missing upstream XCom renders as "None": it must point at the template, not GET /executions/None."""
    sensor = ExecutionSensor(task_id="wait", execution_id="{{ ti.xcom_pull('start') }}")
    sensor.execution_id = rendered  # what rendering produced
    with pytest.raises(SmartMCAValidationError, match="'execution_id'"):
        sensor.poke({})  # type: ignore[arg-type]
    assert not emu.requests  # rejected before any request


def test_deferrable_needs_a_positive_poke_interval() -> None:
    with pytest.raises(ValueError, match="poke_interval"):
        ExecutionSensor(task_id="wait", execution_id="exec_1", deferrable=True, poke_interval=0)


@pytest.mark.parametrize(
    ("event", "soft_fail", "raises"),
    [
        (None, False, SmartMCAExecutionError),
        ({"status": "bogus", "execution_id": "exec_1", "message": "?"}, False, SmartMCAExecutionError),
        (make_event("success", "exec_other", "done"), False, SmartMCAExecutionError),
        (make_event("failure", "exec_1", "node 3 failed"), True, SmartMCAExecutionError),
        # What the trigger reports as an error a retry would meet again: fail without retries.
        (make_event("error", "exec_1", "HTTP 401"), True, AirflowFailException),
        (make_event("timeout", "exec_1", "timed out"), False, AirflowSensorTimeout),
        (make_event("timeout", "exec_1", "timed out"), True, AirflowSkipException),
    ],
)
def test_execute_complete_fails_closed(event: Any, soft_fail: bool, raises: type[Exception]) -> None:
    sensor = ExecutionSensor(task_id="wait", execution_id="exec_1", soft_fail=soft_fail)
    with pytest.raises(raises):
        sensor.execute_complete({}, event)  # type: ignore[arg-type]
