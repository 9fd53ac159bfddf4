"""ExecutionTrigger run directly on an asyncio loop against the emulator."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
import warnings
from typing import Any

import aiohttp
import pytest

from airflow_provider_smartmca.errors import SmartMCAValidationError
from airflow_provider_smartmca.testing.server import Emulator
from airflow_provider_smartmca.triggers import ExecutionTrigger, context
from tests.triggers.conftest import FULL_KEY, NOREAD_KEY, WRONG_KEY, start_execution

pytestmark = pytest.mark.slow  # triggers poll the emulator for real

POLL = 0.2


async def first_event(trigger: ExecutionTrigger, timeout: float = 15) -> dict[str, Any]:
    """What the triggerer does: take the first event, then close the generator."""
    agen = trigger.run()
    try:
        event = await asyncio.wait_for(agen.__anext__(), timeout)
    finally:
        await agen.aclose()
    return event.payload


def trig(
    execution_id: str, conn_id: str = "smartmca_default", deadline_in: float | None = 8.0
) -> ExecutionTrigger:
    deadline = None if deadline_in is None else time.time() + deadline_in
    return ExecutionTrigger(conn_id=conn_id, execution_id=execution_id, poll_interval=POLL, deadline=deadline)


def rebuilt(trigger: ExecutionTrigger) -> ExecutionTrigger:
    """A trigger rebuilt from its serialized form through JSON, as the triggerer does."""
    classpath, kwargs = trigger.serialize()
    assert classpath == "airflow_provider_smartmca.triggers.execution.ExecutionTrigger"
    return ExecutionTrigger(**json.loads(json.dumps(kwargs)))


@pytest.fixture
def count_connections(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count TCP connections opened by aiohttp connectors (what the server would see)."""
    opened = [0]
    original = aiohttp.TCPConnector._create_connection

    async def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        opened[0] += 1
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(aiohttp.TCPConnector, "_create_connection", counting)
    return opened


def test_every_outcome_gives_its_event_with_get_only_and_one_pool(
    emu: Emulator, count_connections: list[int]
) -> None:
    ids = {
        "completed": start_execution("wf_deal_onboarding"),
        "failed": start_execution("wf_deal_compliance_fail"),
        "cancelled": start_execution("wf_merchant_cancelled", "merchant"),
        "paused": start_execution("wf_deal_paused"),
    }
    before = len(emu.requests)
    cases = {
        **{name: trig(ex, deadline_in=3.0 if name == "paused" else 8.0) for name, ex in ids.items()},
        "404": trig("exec_does_not_exist"),
        "401": trig(ids["completed"], conn_id="smartmca_wrong"),
        "403": trig(ids["completed"], conn_id="smartmca_noread"),
    }

    async def main() -> dict[str, dict[str, Any]]:
        results = await asyncio.gather(*(first_event(rebuilt(t)) for t in cases.values()))
        assert context.current().open_sessions == 0  # the shared sessions were closed by their last user
        return dict(zip(cases, results, strict=True))

    events = asyncio.run(main())
    assert {k: e["status"] for k, e in events.items()} == {
        "completed": "success",
        "failed": "failure",
        "cancelled": "failure",
        "paused": "timeout",
        "404": "error",
        "401": "error",
        "403": "error",
    }
    assert "COMPLIANCE_CHECK_FAILED" in events["failed"]["message"]
    assert events["failed"]["execution"]["failedNodes"][0]["name"] == "OFAC Screening"
    assert events["cancelled"]["execution"]["status"] == "cancelled"
    assert events["paused"]["execution"]["status"] == "paused"  # waited on it, never success
    assert "HTTP 404" in events["404"]["message"] and "HTTP 401" in events["401"]["message"]
    assert "HTTP 403" in events["403"]["message"]
    for event in events.values():
        json.dumps(event)  # small JSON only
        assert set(event) == {"status", "execution_id", "message", "execution"}
    new = emu.requests[before:]
    assert new and {r.method for r in new} == {"GET"}
    assert {r.route for r in new} == {"get_execution"}
    # Three keys -> three shared pools; a handful of connections, not one per poll.
    assert count_connections[0] <= 12 < len(new)


class _Records(logging.Handler):
    """Collects records of one logger directly (Airflow's structlog setup bypasses caplog)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)


@pytest.fixture
def asyncio_log() -> Any:
    logger = logging.getLogger("asyncio")
    handler, level = _Records(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def test_transient_storms_never_fail(emu: Emulator, capfd: pytest.CaptureFixture[str]) -> None:
    storm_503 = start_execution("wf_deal_onboarding")
    storm_429 = start_execution("wf_merchant_kyc", "merchant")
    emu.add_fault("status", route=f"/api/public/v1/workflows/executions/{storm_503}", status=503, count=6)
    emu.add_fault(
        "status", route=f"/api/public/v1/workflows/executions/{storm_429}", status=429, retry_after=1, count=3
    )
    emu.add_fault("drop_before", route=f"/api/public/v1/workflows/executions/{storm_503}", count=2)

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(
            first_event(trig(storm_503, deadline_in=20)), first_event(trig(storm_429, deadline_in=20))
        )

    started = time.monotonic()
    events = asyncio.run(main())
    assert [e["status"] for e in events] == ["success", "success"]
    assert emu.count(route="get_execution", status=503) == 6
    assert emu.count(route="get_execution", status=429) == 3
    assert time.monotonic() - started >= 3 * 1.0 - 0.1  # Retry-After honoured on each 429
    out = "".join(capfd.readouterr())
    assert "polling again in" in out and "Retry-After: 1.0" in out


def test_rebuilt_trigger_is_identical_and_past_deadline_times_out_at_once(emu: Emulator) -> None:
    ex = start_execution("wf_deal_onboarding")
    original = ExecutionTrigger("smartmca_default", ex, 2, time.time() + 60)
    copy = rebuilt(original)
    assert copy.serialize() == original.serialize()
    assert repr(copy) == repr(original)
    assert asyncio.run(first_event(copy))["status"] == "success"

    before = len(emu.requests)
    late = rebuilt(ExecutionTrigger("smartmca_default", ex, 30, time.time() - 1))
    started = time.monotonic()
    event = asyncio.run(first_event(late))
    assert event["status"] == "timeout" and "does not cancel it" in event["message"]
    assert len(emu.requests) == before  # no request at all
    assert time.monotonic() - started < 10  # at once, not after a 30 s poll (margin: a loaded machine)

    # A deadline that passes while waiting ends the wait at the deadline, not a poll later.
    slow = start_execution("wf_slow")
    started = time.monotonic()
    event = asyncio.run(first_event(ExecutionTrigger("smartmca_default", slow, 30, time.time() + 1)))
    assert event["status"] == "timeout"
    assert event["execution"] is None or event["execution"]["status"] in ("pending", "running")
    assert time.monotonic() - started < 1 + 10  # the 1 s deadline, not the 30 s poll; margin as above


def test_missing_connection_is_an_error_event(emu: Emulator) -> None:
    event = asyncio.run(first_event(trig("exec_x", conn_id="smartmca_nope")))
    assert event["status"] == "error" and "smartmca_nope" in event["message"]


def test_cancellation_reraises_closes_the_session_and_cancels_nothing(emu: Emulator) -> None:
    ex = start_execution("wf_slow")
    before = len(emu.requests)

    async def main() -> None:
        task = asyncio.ensure_future(first_event(trig(ex, deadline_in=None)))
        await asyncio.sleep(1.0)  # a few polls
        assert context.current().open_sessions == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert context.current().open_sessions == 0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main())
        gc.collect()
    assert not [w for w in caught if "Unclosed" in str(w.message)]
    assert {r.method for r in emu.requests[before:]} == {"GET"}
    assert emu.executions(entity_id="ent_wf_slow")[0]["status"] in ("pending", "running")


def test_two_hundred_triggers_in_debug_mode_never_block_the_loop(
    emu: Emulator, asyncio_log: _Records, loop_blocks: list[str], capfd: pytest.CaptureFixture[str]
) -> None:
    ids = [start_execution(wf) for wf in ("wf_deal_onboarding", "wf_deal_compliance_fail")]

    triggers = [rebuilt(trig(ids[i % 2], deadline_in=20)) for i in range(200)]

    async def main() -> list[dict[str, Any]]:
        tasks = []
        for i, trigger in enumerate(triggers):
            # Started in small batches, as the triggerer adds them; starting 200 debug-mode
            # tasks in one step would itself be the slow callback.
            tasks.append(asyncio.ensure_future(first_event(trigger)))
            if i % 20 == 19:
                await asyncio.sleep(0)
        return await asyncio.gather(*tasks)

    # Airflow's import graph leaves ~1M objects on the heap, and a full GC pass over them takes
    # ~0.1 s: that is a stop-the-world pause, not a blocking call of ours. Freeze them into the
    # permanent generation (as long-running services do) so only our own work is measured.
    gc.collect()
    gc.freeze()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            events = asyncio.run(main(), debug=True)
    finally:
        gc.unfreeze()
    gc.collect()
    assert [e["status"] for e in events] == ["success", "failure"] * 100
    assert not loop_blocks, loop_blocks[:5]
    out = "".join(capfd.readouterr())
    assert "Unclosed client session" not in asyncio_log.text + out
    assert not [w for w in caught if "Unclosed" in str(w.message)]


def test_key_never_leaks(
    emu: Emulator, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    ex = start_execution("wf_deal_compliance_fail")
    emu.add_fault("status", route="get_execution", status=503, count=2)
    triggers = [trig(ex), trig(ex, conn_id="smartmca_wrong"), trig(ex, conn_id="smartmca_noread")]

    async def main() -> list[dict[str, Any]]:
        return await asyncio.gather(*(first_event(t) for t in triggers))

    with caplog.at_level(logging.DEBUG):
        events = asyncio.run(main())
    assert [e["status"] for e in events] == ["failure", "error", "error"]
    logs = caplog.text + "".join(capfd.readouterr())
    assert "polling again in" in logs  # the logs were captured
    for key in (FULL_KEY, NOREAD_KEY, WRONG_KEY):
        assert key not in logs
        assert key not in json.dumps(events)
        for t in triggers:
            assert key not in json.dumps(t.serialize()) and key not in repr(t)


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"execution_id": ""}, "execution_id"),
        ({"execution_id": "  "}, "execution_id"),
        ({"execution_id": "../workflows"}, "execution_id"),
        ({"execution_id": "a/b"}, "execution_id"),
        ({"execution_id": 12}, "execution_id"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": -1}, "poll_interval"),
        ({"poll_interval": float("nan")}, "poll_interval"),
        ({"poll_interval": "5"}, "poll_interval"),
        ({"deadline": object()}, "deadline"),
        ({"deadline": float("inf")}, "deadline"),
        ({"conn_id": ""}, "conn_id"),
        ({"workflow_type": "a/b"}, "workflow_type"),
        ({"workflow_type": ""}, "workflow_type"),
    ],
)
def test_bad_input_fails_at_construction_naming_the_argument(kwargs: dict[str, Any], argument: str) -> None:
    args: dict[str, Any] = {
        "conn_id": "smartmca_default",
        "execution_id": "exec_1",
        "poll_interval": 1,
        "deadline": None,
    }
    args.update(kwargs)
    with pytest.raises(SmartMCAValidationError, match=repr(argument)):
        ExecutionTrigger(**args)


def test_triggers_started_together_share_one_connection_lookup(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import airflow.providers.common.compat.connection as compat

    lookups: list[str] = []
    original = compat.get_async_connection

    async def counting(conn_id: str, hook: Any = None) -> Any:
        lookups.append(conn_id)
        return await original(conn_id)

    monkeypatch.setattr(compat, "get_async_connection", counting)
    ex = start_execution("wf_deal_onboarding")

    async def main() -> list[dict[str, Any]]:
        tasks = [asyncio.ensure_future(first_event(trig(ex))) for _ in range(50)]
        await asyncio.sleep(0)
        tasks[0].cancel()  # a cancelled trigger must not cancel the lookup the others wait for
        return await asyncio.gather(*tasks[1:])

    assert {e["status"] for e in asyncio.run(main())} == {"success"}
    assert lookups == ["smartmca_default"]
    # A trigger started later makes its own lookup: nothing is cached.
    assert asyncio.run(first_event(trig(ex)))["status"] == "success"
    assert len(lookups) == 2
