"""Absurd numbers at every boundary: one check, a clear error naming the argument and its bound.

``10**400`` (a float conversion overflows), ``10**5000`` (beyond Python's digit limit for
``str(int)``), ``1e400`` as text (infinity), and values that are finite but absurd (a 10-year
wait, a restart look-back of 3,000 years) reach every public number: connection extras, hook
arguments, operator, sensor, trigger and watcher arguments, list paging. Each must fail before
any request with a ``SmartMCAValidationError`` (a ``SmartMCAConfigError`` for a client setting)
naming the argument, never a raw ``OverflowError`` or ``ValueError``.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from airflow_provider_smartmca.client.settings import BOUNDS, ClientSettings, settings_from_connection
from airflow_provider_smartmca.errors import SmartMCAConfigError, SmartMCAValidationError
from airflow_provider_smartmca.operators import TriggerWorkflowOperator
from airflow_provider_smartmca.triggers import ExecutionEventTrigger, ExecutionTrigger

HUGE = [10**400, -(10**400), 10**5000, 1e308 * 10, "1e400"]
SETTINGS = [name for name in BOUNDS if name in ClientSettings.__dataclass_fields__]
TRIGGER = dict(task_id="t", workflow_type="wf_deal_onboarding", entity_type="deal", entity_id="deal_1")


def shown(value: Any) -> str:
    """A test id: a huge integer by its size (``repr`` refuses more than 4,300 digits)."""
    if isinstance(value, dict):
        return ",".join(f"{k}={shown(v)}" for k, v in value.items())
    if isinstance(value, int) and abs(value) > 10**20:
        return f"{'-' if value < 0 else ''}int_of_{value.bit_length()}_bits"
    return repr(value)


def message_of(exc: BaseException) -> str:
    text = str(exc)
    assert len(text) < 400, text  # a 5,000-digit number is not repeated
    return text


def test_every_client_setting_has_a_bound():
    assert set(SETTINGS) == {
        "timeout",
        "connect_timeout",
        "max_retries",
        "retry_min_wait",
        "retry_max_wait",
        "retry_after_cap",
        "clock_skew",
        "max_response_bytes",
    }


@pytest.mark.parametrize("value", HUGE, ids=shown)
@pytest.mark.parametrize("name", SETTINGS)
def test_a_huge_extra_is_a_config_error_naming_it(name: str, value: Any) -> None:
    with pytest.raises(SmartMCAConfigError, match=f"connection extra '{name}'") as info:
        settings_from_connection(host=None, port=None, password="smca_k3y", extra={name: value})
    assert "from" in message_of(info.value)  # the bound is stated


@pytest.mark.parametrize("value", HUGE, ids=shown)
def test_a_huge_hook_argument_or_direct_setting_is_a_config_error(make_hook, smartmca_emulator, value):
    hook = make_hook(timeout=value)
    with pytest.raises(SmartMCAConfigError, match="argument 'timeout'"):
        hook.get_workflow("wf_deal_onboarding")
    if not isinstance(value, str):
        with pytest.raises(SmartMCAConfigError, match="'max_retries'"):
            ClientSettings(max_retries=value)
    assert smartmca_emulator.count() == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"poll_interval": 10**400},
        {"poll_interval": 10**5000},
        {"poll_interval": 0},
        {"poll_interval": -1},
        {"poll_interval": math.nan},
        {"deadline": 10**400},
        {"deadline": -(10**400)},
        {"deadline": 1e300},
    ],
    ids=shown,
)
def test_a_hook_wait_refuses_absurd_numbers_before_any_request(hook, smartmca_emulator, kwargs):
    (name,) = kwargs
    with pytest.raises(SmartMCAValidationError, match=f"'{name}'") as info:
        hook.wait_for_execution("exec_1", **kwargs)
    message_of(info.value)
    assert smartmca_emulator.count() == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("poll_interval", 10**400),
        ("poll_interval", 10**5000),
        ("poll_interval", 1e12),
        ("deadline", 10**400),
        ("deadline", 1e300),
    ],
    ids=shown,
)
def test_a_trigger_refuses_absurd_numbers(name: str, value: Any) -> None:
    with pytest.raises(SmartMCAValidationError, match=f"'{name}'") as info:
        ExecutionTrigger("smartmca_default", "exec_1", **{name: value})
    assert info.value.field == name and "from" in message_of(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("poll_interval", 10**400),
        ("poll_interval", 1e12),
        ("restart_lookback", 10**400),
        ("restart_lookback", 10**5000),
        ("restart_lookback", 1e11),  # 3,000 years: before year 1
        ("restart_lookback", 10 * 366 * 86400.0),
    ],
    ids=shown,
)
def test_a_watcher_refuses_absurd_numbers(name: str, value: Any) -> None:
    with pytest.raises(SmartMCAValidationError, match=f"'{name}'") as info:
        ExecutionEventTrigger(**{name: value})
    assert info.value.field == name and "from" in message_of(info.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("poll_interval", 10**400),
        ("poll_interval", "1e400"),
        ("poll_interval", 10**5000),
        ("timeout", 10**400),
        ("timeout", -(10**400)),
        ("timeout", 10 * 366 * 86400),  # ten years
        ("timeout", timedelta(days=3660)),
        ("timeout", timedelta.max),
    ],
    ids=shown,
)
def test_an_operator_refuses_absurd_numbers_at_parse_time(name: str, value: Any) -> None:
    with pytest.raises(SmartMCAValidationError, match=f"'{name}'") as info:
        TriggerWorkflowOperator(**{**TRIGGER, name: value})
    assert info.value.field == name and "from" in message_of(info.value)


def test_an_operators_hook_params_are_checked_at_parse_time() -> None:
    with pytest.raises(SmartMCAConfigError, match="'max_retries'"):
        TriggerWorkflowOperator(**TRIGGER, hook_params={"max_retries": 10**400})


@pytest.mark.parametrize(
    ("name", "value"), [("page", 10**5000), ("page", 10**400), ("limit", 10**400)], ids=shown
)
def test_list_paging_refuses_absurd_numbers_before_any_request(hook, smartmca_emulator, name, value):
    with pytest.raises(SmartMCAValidationError, match=f"'{name}'") as info:
        hook.list_executions(**{name: value})
    message_of(info.value)
    assert smartmca_emulator.count() == 0


def test_sensible_values_still_pass() -> None:
    op = TriggerWorkflowOperator(**TRIGGER, poll_interval="2.5", timeout=timedelta(days=30))
    assert (op.poll_interval, op.timeout) == (2.5, 30 * 86400.0)
    watcher = ExecutionEventTrigger(poll_interval=30, restart_lookback=86400)
    assert (watcher.poll_interval, watcher.restart_lookback) == (30.0, 86400.0)
    settings = settings_from_connection(
        host=None, port=None, password="smca_k3y", extra={"max_retries": "3", "timeout": 12.5}
    )
    assert (settings.max_retries, settings.timeout) == (3, 12.5)


@pytest.mark.parametrize(
    ("name", "value"), [("timeout", 10 * 366 * 86400), ("poke_interval", 1e12)], ids=shown
)
def test_a_deferrable_sensor_refuses_absurd_numbers_at_parse_time(name: str, value: Any) -> None:
    from airflow_provider_smartmca.sensors import ExecutionSensor

    with pytest.raises(SmartMCAValidationError, match=f"'{name}'") as info:
        ExecutionSensor(task_id="wait", execution_id="exec_1", deferrable=True, **{name: value})
    assert "from" in message_of(info.value)


# --- failure_statuses: one check at every entry point ---------------------------------------------

BAD_STATUSES = ["paused", [""], ["paused", 1], 5, {"paused": 1}]


@pytest.mark.parametrize("value", BAD_STATUSES, ids=repr)
def test_bad_failure_statuses_are_refused_at_every_entry_point(hook, smartmca_emulator, value):
    from airflow_provider_smartmca.sensors import ExecutionSensor

    builders = {
        "operator": lambda: TriggerWorkflowOperator(**TRIGGER, failure_statuses=value),
        "sensor": lambda: ExecutionSensor(task_id="s", execution_id="exec_1", failure_statuses=value),
        "trigger": lambda: ExecutionTrigger("smartmca_default", "exec_1", failure_statuses=value),
        "hook wait": lambda: hook.wait_for_execution("exec_1", failure_statuses=value),
    }
    for where, build in builders.items():
        with pytest.raises(SmartMCAValidationError, match="'failure_statuses'") as info:
            build()
        assert info.value.field == "failure_statuses", where
    assert smartmca_emulator.count() == 0


def test_a_callers_time_left_for_one_request_is_bounded_by_the_timeout_setting() -> None:
    settings = ClientSettings(timeout=30)
    assert settings.request_seconds(10**400) == settings.request_seconds(math.inf) == 30.0
    assert settings.request_seconds(2) == 2.0
    for bad in (0, -(10**400), math.nan, "5"):
        with pytest.raises(SmartMCAValidationError, match="'timeout'"):
            settings.request_seconds(bad)
