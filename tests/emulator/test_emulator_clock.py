"""The emulator's clock: ``clock="manual"`` stands still until a test advances it.

Executions, timestamps, ``Date`` headers and the request log follow it; the provider's own
timing stays real, so a two-hour workflow is seen ending a few short polls after ``advance``.
"""

from __future__ import annotations

import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests
from emu_helpers import Api

from airflow_provider_smartmca.testing import Emulator, EmulatorConfigError

TWO_HOURS = {
    "workflows": [
        # Two hours: pending for one, then its eight nodes for 7.5 minutes each.
        {"id": "wf_deal_onboarding", "pending_seconds": 3600, "node_seconds": 450},
    ]
}


def _ts(iso: str) -> float:
    return time.mktime(time.strptime(iso[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone + int(iso[20:23]) / 1000


def _date(r: requests.Response) -> float:
    return parsedate_to_datetime(r.headers["Date"]).timestamp()


def test_a_manual_clock_stands_still_until_advanced(make_emulator: Any) -> None:
    emu = make_emulator(TWO_HOURS, clock="manual")
    api = Api(emu)
    start = emu.now()
    ex = api.trigger("wf_deal_onboarding", "deal")["executionId"]
    time.sleep(0.05)
    r = api.get(f"/workflows/executions/{ex}")
    assert r.json()["status"] == "pending"
    assert _ts(r.json()["startedAt"]) == pytest.approx(start, abs=0.001)
    assert _date(r) == int(start)  # the Date header is the server's clock (whole seconds)
    assert emu.now() == start

    emu.advance(3600 + 450 * 2 + 1)  # into the third node
    body = api.get(f"/workflows/executions/{ex}").json()
    assert body["status"] == "running" and body["currentNode"] == body["nodes"][2]["name"]
    assert [n["status"] for n in body["nodes"]] == ["completed", "completed", "running"] + ["pending"] * 5

    emu.advance(7200)
    r = api.get(f"/workflows/executions/{ex}")
    body = r.json()
    assert body["status"] == "completed"
    assert _ts(body["completedAt"]) - _ts(body["startedAt"]) == pytest.approx(7200, abs=0.002)
    assert _date(r) == int(start + 3600 + 900 + 1 + 7200)
    assert emu.requests[-1].time == pytest.approx(start + 11701)  # the request log follows it too
    assert emu.executions()[0]["status"] == "completed"


def test_a_two_hour_workflow_ends_a_few_short_polls_after_advancing_two_hours(
    smartmca_make_emulator: Any,
) -> None:
    from airflow_provider_smartmca.hooks import SmartMCAHook

    emu = smartmca_make_emulator(TWO_HOURS, clock="manual")
    hook = SmartMCAHook()
    execution_id = hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_2h").execution_id
    result: dict[str, Any] = {}

    def wait() -> None:
        result["execution"] = hook.wait_for_execution(
            execution_id, poll_interval=0.05, deadline=time.time() + 60
        )

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    while emu.count(route="get_execution") < 3:  # the wait is polling a pending execution
        assert waiter.is_alive()
        time.sleep(0.01)
    polls_before = emu.count(route="get_execution")
    emu.advance(2 * 3600)
    waiter.join(30)
    assert not waiter.is_alive()
    assert result["execution"].status == "completed"
    assert emu.count(route="get_execution") - polls_before <= 2  # the next poll sees the end


def test_the_admin_endpoint_reads_and_advances_the_clock(make_emulator: Any) -> None:
    emu = make_emulator(TWO_HOURS, clock="manual")
    admin = emu.base_url + "/_emulator/clock"
    before = requests.get(admin, timeout=5).json()
    assert before["mode"] == "manual" and before["advanced_seconds"] == 0
    after = requests.post(admin, json={"advance": 7200}, timeout=5).json()
    assert after["timestamp"] == pytest.approx(before["timestamp"] + 7200)
    assert after["advanced_seconds"] == 7200
    assert emu.now() == pytest.approx(after["timestamp"])
    for body in ({"advance": -1}, {"advance": "1h"}, {"advance": True}, {"advance": 1, "x": 2}, [], {}):
        r = requests.post(admin, json=body, timeout=5)
        assert r.status_code == 400 and "advance" in r.json()["error"]["message"], body
    listed = requests.get(emu.base_url + "/_emulator/", timeout=5).json()["endpoints"]
    assert {(e["method"], e["path"]) for e in listed} >= {
        ("GET", "/_emulator/clock"),
        ("POST", "/_emulator/clock"),
    }


def test_a_real_clock_is_the_default_and_can_jump_ahead(make_emulator: Any) -> None:
    emu = make_emulator()
    assert abs(emu.now() - time.time()) < 60
    emu.advance(3600)
    assert emu.now() - time.time() == pytest.approx(3600, abs=60)
    api = Api(emu)
    assert _date(api.get("/workflows")) - time.time() == pytest.approx(3600, abs=60)
    emu.reset()  # puts the clock back
    assert abs(emu.now() - time.time()) < 60


def test_reset_puts_a_manual_clock_back(make_emulator: Any) -> None:
    emu = make_emulator(clock="manual")
    emu.advance(100)
    emu.reset()
    assert requests.get(emu.base_url + "/_emulator/clock", timeout=5).json()["advanced_seconds"] == 0


@pytest.mark.parametrize("seconds", [-1, float("nan"), float("inf"), "10", True])
def test_advance_refuses_what_is_not_a_step_forward(make_emulator: Any, seconds: Any) -> None:
    emu = make_emulator(clock="manual")
    start = emu.now()
    with pytest.raises(EmulatorConfigError, match="seconds must be"):
        emu.advance(seconds)
    assert emu.now() == start


def test_an_unknown_clock_mode_is_named() -> None:
    with pytest.raises(EmulatorConfigError, match=r"clock must be one of \['real', 'manual'\], not 'fake'"):
        Emulator(clock="fake")


def test_the_plugin_factory_connects_a_manual_emulator(smartmca_make_emulator: Any) -> None:
    """The user's story (README): a two-hour onboarding, two hours advanced, seen ending at once."""
    from airflow_provider_smartmca.hooks import SmartMCAHook

    emu = smartmca_make_emulator(TWO_HOURS, clock="manual")
    hook = SmartMCAHook()
    started = hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_123")
    assert hook.get_execution(started.execution_id).status == "pending"
    emu.advance(2 * 3600)
    polls = emu.count(route="get_execution")
    done = hook.wait_for_execution(started.execution_id, poll_interval=0.05, deadline=time.time() + 30)
    assert done.status == "completed"
    assert emu.count(route="get_execution") - polls == 1
