"""A number a server sends that no float can hold: ``"total": 10**400`` (the emulator's ``huge_total`` drift).

It is valid JSON, and Python reads it as an exact integer; anything that divides it (the
poller's page estimate) or turns it into a float overflows. The contract bounds every integer
field, so it is a ``SmartMCAContractError`` naming the endpoint and the field, and what reads
lists carries on as with any drifted list: the poller falls back to GETs.
"""

from __future__ import annotations

import asyncio

import pytest

from airflow_provider_smartmca.errors import SmartMCAContractError
from airflow_provider_smartmca.testing.server import Emulator
from tests.triggers import test_poller
from tests.triggers.test_poller import Metrics, all_events, start, trig

# The poller tests' emulator (executions of wf_batch end quickly) and metrics.
shared_emulator, emu, metrics = test_poller.shared_emulator, test_poller.emu, test_poller.metrics


def test_a_list_total_beyond_any_float_is_a_contract_error_naming_it(emu: Emulator) -> None:
    from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook

    emu.configure(drift=["huge_total"])
    hook = SmartMCAHook("smartmca_default", max_retries=0)
    with pytest.raises(SmartMCAContractError, match="'total'") as info:
        hook.list_executions(workflow_type="wf_batch")
    assert info.value.endpoint == "list_executions" and info.value.field == "total"
    assert len(str(info.value)) < 400  # the 400 digits are not repeated


def test_waits_on_a_list_with_a_huge_total_fall_back_to_gets_and_end(emu: Emulator, metrics: Metrics) -> None:
    ids = start(emu, "wf_batch", 4)
    emu.configure(drift=["huge_total"])
    events = asyncio.run(all_events([trig(i, "wf_batch") for i in ids]))
    assert {e["status"] for e in events} == {"success"}
    assert metrics.counts["smartmca.poller.lists_unusable"] == 1
    assert metrics.counts["smartmca.poller.fallbacks"] == 0  # the poller itself never failed
