"""ExecutionEventTrigger (issue 13): asset watchers that fire when SmartMCA executions end.

Every test runs the real watcher on a real event loop against the emulator over real HTTP.
Executions start through the sync hook (a real POST each) from another thread while the
watcher polls, as a person in the SmartMCA app would. The emulator starts an execution's clock
when it is created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from airflow_provider_smartmca.errors import SmartMCAValidationError
from airflow_provider_smartmca.testing.server import Emulator
from airflow_provider_smartmca.triggers import ExecutionEventTrigger
from airflow_provider_smartmca.triggers.events import STATE_KEY, WatermarkRecord
from tests.triggers.conftest import conn_json

KEY = "smca_test_events_key_3c9d"
POLL = 0.3
PAYLOAD_KEYS = {
    "executionId",
    "workflowId",
    "workflowName",
    "entityType",
    "entityId",
    "status",
    "startedAt",
    "completedAt",
}
CONFIG = {
    "keys": {KEY: {"name": "full", "scopes": ["workflows:read", "workflows:trigger"]}},
    "durations": {"pending_seconds": 0.1, "node_seconds": 0.1},
    "workflows": [
        {"id": "wf_quick", "name": "Quick", "entityType": "deal", "nodeCount": 2, "node_seconds": 0.2},
        {"id": "wf_app", "name": "App", "entityType": "application", "nodeCount": 1, "node_seconds": 0.2},
        {
            "id": "wf_mixed",
            "name": "Mixed",
            "entityType": "deal",
            "nodeCount": 2,
            "node_seconds": 0.2,
            "outcome": {"fail_probability": 0.5, "seed": 11, "error": "mixed failure"},
        },
        {"id": "wf_long", "name": "Long", "entityType": "deal", "nodeCount": 2, "node_seconds": 1.5},
    ],
}


@pytest.fixture(scope="module")
def shared_emulator() -> Iterator[Emulator]:
    with Emulator(CONFIG) as emu:
        yield emu


@pytest.fixture
def emu(shared_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    shared_emulator.reset()
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", conn_json(shared_emulator, KEY, timeout=2))
    yield shared_emulator
    shared_emulator.reset()


class MemoryAssetStateStore:
    """Stands in for the accessors Airflow 3.3's triggerer injects (one watched asset).

    Values go through JSON, as Airflow's store does; ``writes`` counts saves.
    """

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.writes = 0
        self._by_name = {"smartmca://workflows/wf/completed": self}
        self._by_uri: dict[str, Any] = {}

    async def aget(self, key: str, default: Any = None) -> Any:
        return json.loads(self.values[key]) if key in self.values else default

    async def aset(self, key: str, value: Any) -> None:
        self.values[key] = json.dumps(value)
        self.writes += 1

    def only_key(self) -> str:
        """The one key a single watcher writes (``ExecutionEventTrigger.state_key``)."""
        (key,) = self.values
        assert key.startswith(STATE_KEY + ":"), key
        return key


def start(workflow: str, n: int = 1, entity_type: str = "deal") -> list[str]:
    """Start ``n`` executions through the sync hook (a real POST each)."""
    from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook

    hook = SmartMCAHook("smartmca_default")
    try:
        return [
            hook.trigger_workflow(
                workflow, entity_type, f"ent_{workflow}_{time.monotonic_ns()}_{i}"
            ).execution_id
            for i in range(n)
        ]
    finally:
        hook.close()


def watcher(store: MemoryAssetStateStore | None = None, **kwargs: Any) -> ExecutionEventTrigger:
    """A watcher rebuilt from its JSON kwargs, as the triggerer does, with the store injected."""
    kwargs.setdefault("poll_interval", POLL)
    built = ExecutionEventTrigger(**kwargs).serialize()[1]
    trigger = ExecutionEventTrigger(**json.loads(json.dumps(built)))
    trigger.asset_state_store = store
    return trigger


def run_watcher(
    trigger: ExecutionEventTrigger,
    seconds: float,
    during: Callable[[], Any] | None = None,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
    then: float = 0.0,
) -> tuple[list[dict[str, Any]], Any]:
    """
    Run the watcher; after its first poll, call ``during`` in a thread; stop after ``seconds``,
    or ``then`` seconds after ``until`` holds (a crash at that point).
    """
    events: list[dict[str, Any]] = []
    result: Any = None

    async def main() -> None:
        nonlocal result
        agen = trigger.run()

        async def pump() -> None:
            async for event in agen:
                events.append(event.payload)

        task = asyncio.create_task(pump())
        await asyncio.sleep(POLL * 2)  # the first poll has placed the watcher on the server's clock
        if during is not None:
            result = await asyncio.to_thread(during)
        end = time.monotonic() + seconds
        while time.monotonic() < end and not (until and until(events)):
            await asyncio.sleep(0.05)
        await asyncio.sleep(then)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await agen.aclose()

    asyncio.run(main())
    return events, result


def wait_all_ended(emu: Emulator, ids: list[str], timeout: float = 15) -> dict[str, str]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        statuses = {e["executionId"]: e["status"] for e in emu.executions() if e["executionId"] in ids}
        if all(s not in ("pending", "running") for s in statuses.values()) and len(statuses) == len(ids):
            return statuses
        time.sleep(0.1)
    raise AssertionError("executions did not end")


def ids_of(events: list[dict[str, Any]]) -> Counter[str]:
    return Counter(e["executionId"] for e in events)


# --- what fires ----------------------------------------------------------------------------


def test_n_executions_ending_after_the_watcher_starts_give_n_events(
    emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    store = MemoryAssetStateStore()
    trigger = watcher(store, workflow_type="wf_quick")
    events, ids = run_watcher(
        trigger, 20, during=lambda: start("wf_quick", 12), until=lambda ev: len(ev) >= 12
    )
    run_watcher_tail = ids_of(events)
    assert run_watcher_tail == Counter(ids), (len(events), len(ids))
    for event in events:
        assert set(event) == PAYLOAD_KEYS
        assert event["status"] == "completed" and event["workflowId"] == "wf_quick"
        assert event["entityType"] == "deal" and event["entityId"].startswith("ent_wf_quick")
        assert event["startedAt"] and event["completedAt"]
        assert KEY not in json.dumps(event)
    # The key appears nowhere: kwargs, logs, the stored watermark.
    assert KEY not in json.dumps(trigger.serialize()) and KEY not in repr(trigger)
    assert KEY not in caplog.text
    assert KEY not in json.dumps(store.values)
    requests = [r for r in emu.requests if r.route == "list_executions"]
    assert requests and all(r.query["workflow_type"] == "wf_quick" for r in requests)
    assert all(r.query["sort_by"] == "startedAt" for r in requests)


def test_executions_that_ended_before_it_started_give_none(emu: Emulator) -> None:
    ended = start("wf_quick", 5)
    wait_all_ended(emu, ended)
    # With Airflow's state store (a first start) and without one (look-back off): nothing.
    for store, lookback in ((MemoryAssetStateStore(), 600.0), (None, 0.0)):
        events, _ = run_watcher(watcher(store, workflow_type="wf_quick", restart_lookback=lookback), 1.5)
        assert events == []


def test_running_when_it_started_fires_when_it_ends(emu: Emulator) -> None:
    # Started (and running) before the watcher: it did not *end* before, so it fires.
    running = start("wf_long", 3)
    events, _ = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_long"), 10, until=lambda ev: len(ev) >= 3
    )
    assert ids_of(events) == Counter(running)
    gets = [r for r in emu.requests if r.route == "get_execution"]
    assert len(gets) <= 2 * len(running)  # one GET each once it left the active lists


def test_statuses_are_filtered(emu: Emulator) -> None:
    def go() -> list[str]:
        ids = start("wf_mixed", 16)
        wait_all_ended(emu, ids)
        return ids

    for statuses in (("failed",), ("completed",), ("completed", "failed")):
        events, ids = run_watcher(
            watcher(MemoryAssetStateStore(), workflow_type="wf_mixed", statuses=statuses), 1.5, during=go
        )
        finals = {e["executionId"]: e["status"] for e in emu.executions() if e["executionId"] in ids}
        expected = Counter(i for i, s in finals.items() if s in statuses)
        assert 0 < len(expected) < 16 or len(statuses) == 2
        assert ids_of(events) == expected, statuses
        assert {e["status"] for e in events} <= set(statuses)


def test_entity_type_is_filtered(emu: Emulator) -> None:
    def go() -> list[str]:
        apps = start("wf_app", 3, entity_type="application")
        deals = start("wf_quick", 3)
        wait_all_ended(emu, apps + deals)
        return apps

    events, apps = run_watcher(watcher(MemoryAssetStateStore(), entity_type="application"), 1.5, during=go)
    assert ids_of(events) == Counter(apps)


# --- restarts -------------------------------------------------------------------------------


def test_a_restart_with_the_stored_watermark_repeats_nothing_and_loses_nothing(emu: Emulator) -> None:
    store = MemoryAssetStateStore()
    first, before = run_watcher(
        watcher(store, workflow_type="wf_long"),
        8,
        during=lambda: start("wf_long", 2),
        until=lambda ev: len(ev) >= 2,
        then=POLL * 3,  # one more poll: it saves the watermark covering the events
    )
    assert ids_of(first) == Counter(before)  # both ended while it ran; the next poll saved it
    assert WatermarkRecord.from_json(json.loads(store.values[store.only_key()])).since is not None
    # Down: two start and end, one starts and is still running when the watcher is back.
    during_downtime = start("wf_long", 2)
    wait_all_ended(emu, during_downtime)
    still_running = start("wf_long", 1)
    second, _ = run_watcher(watcher(store, workflow_type="wf_long"), 10, until=lambda ev: len(ev) >= 3)
    assert ids_of(second) == Counter(during_downtime + still_running)
    assert not set(ids_of(second)) & set(before)


def test_a_tracked_execution_that_ends_while_the_watcher_is_down_fires_after_the_restart(
    emu: Emulator,
) -> None:
    store = MemoryAssetStateStore()
    running: list[str] = []
    first, _ = run_watcher(
        watcher(store, workflow_type="wf_long"), 1.0, during=lambda: running.extend(start("wf_long", 2))
    )
    assert first == []
    assert set(running) <= set(json.loads(store.values[store.only_key()])["active"])
    wait_all_ended(emu, running)
    second, _ = run_watcher(watcher(store, workflow_type="wf_long"), 5, until=lambda ev: len(ev) >= 2)
    assert ids_of(second) == Counter(running)


def test_a_crash_right_after_yielding_repeats_at_most_that_polls_events(emu: Emulator) -> None:
    store = MemoryAssetStateStore()
    ids = start("wf_quick", 4)
    # Stop at the first event: the watermark covering it is saved only at the next poll.
    first, _ = run_watcher(
        watcher(store, workflow_type="wf_quick", restart_lookback=0), 10, until=lambda ev: len(ev) >= 1
    )
    wait_all_ended(emu, ids)
    second, _ = run_watcher(watcher(store, workflow_type="wf_quick"), 2.0)
    together = ids_of(first) + ids_of(second)
    assert set(together) == set(ids)  # nothing lost
    assert all(n <= 2 for n in together.values())  # at most once more
    assert sum(together.values()) - len(ids) <= len(first)  # the repeats are the crashed poll's


def test_without_a_state_store_a_restart_looks_back(emu: Emulator) -> None:
    ended = start("wf_quick", 3)
    wait_all_ended(emu, ended)
    events, _ = run_watcher(watcher(None, workflow_type="wf_quick", restart_lookback=600), 1.5)
    assert ids_of(events) == Counter(ended)  # ended within the look-back: reported (a repeat, maybe)


# --- a hostile API --------------------------------------------------------------------------


def test_a_storm_delays_but_never_drops(emu: Emulator) -> None:
    store = MemoryAssetStateStore()

    def go() -> list[str]:
        emu.add_fault("status", route="list_executions", status=503, count=6)
        emu.add_fault("status", route="*", status=429, retry_after=1, count=3)
        emu.add_fault("html_error", route="get_execution", count=2)
        ids = start("wf_long", 4)
        emu.add_fault("malformed_json", route="list_executions", count=2)
        return ids

    events, ids = run_watcher(
        watcher(store, workflow_type="wf_long"), 25, during=go, until=lambda ev: len(ev) >= 4
    )
    assert ids_of(events) == Counter(ids)


def test_a_contract_error_delays_but_never_drops(emu: Emulator) -> None:
    def go() -> list[str]:
        ids = start("wf_long", 2)
        # The lists answer in a shape the watcher refuses while the executions end, then recover.
        emu.configure(drift=["list_items_without_id"])
        wait_all_ended(emu, ids)
        time.sleep(POLL * 3)
        emu.configure(drift=[])
        return ids

    events, ids = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_long"),
        15,
        during=go,
        until=lambda ev: len(ev) >= 2,
    )
    assert ids_of(events) == Counter(ids)


@pytest.mark.parametrize("order", ["ignore_asc", "shuffle"])
def test_a_list_that_ignores_sort_order_loses_nothing(emu: Emulator, order: str) -> None:
    emu.configure(list_order=order)
    events, ids = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_quick"),
        15,
        during=lambda: start("wf_quick", 6),
        until=lambda ev: len(ev) >= 6,
    )
    assert ids_of(events) == Counter(ids)


@pytest.mark.parametrize("offset", [-3600, 3600])
def test_a_skewed_server_clock_neither_loses_nor_backfills(emu: Emulator, offset: int) -> None:
    emu.configure(clock_offset_seconds=offset)
    old = start("wf_quick", 2)
    wait_all_ended(emu, old)
    events, ids = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_quick"),
        15,
        during=lambda: start("wf_quick", 4),
        until=lambda ev: len(ev) >= 4,
    )
    assert ids_of(events) == Counter(ids)


# --- arguments ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"statuses": ("running",)}, "statuses"),
        ({"statuses": "completed"}, "statuses"),
        ({"statuses": ()}, "statuses"),
        ({"workflow_type": "wf/../x"}, "workflow_type"),
        ({"entity_type": ""}, "entity_type"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"restart_lookback": -1}, "restart_lookback"),
        ({"conn_id": " "}, "conn_id"),
        ({"version": 2}, "version"),
    ],
)
def test_bad_arguments_fail_at_construction_naming_the_argument(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(SmartMCAValidationError) as info:
        ExecutionEventTrigger(**kwargs)
    assert field in str(info.value)


def test_kwargs_are_plain_json_and_equal_watchers_hash_alike() -> None:
    a = ExecutionEventTrigger(workflow_type="wf_quick", statuses=["completed", "failed"])
    b = ExecutionEventTrigger(workflow_type="wf_quick", statuses=("completed", "failed"))
    classpath, kwargs = a.serialize()
    assert classpath == "airflow_provider_smartmca.triggers.events.ExecutionEventTrigger"
    assert json.loads(json.dumps(kwargs)) == kwargs
    assert ExecutionEventTrigger.hash(*a.serialize()) == ExecutionEventTrigger.hash(*b.serialize())
    assert kwargs["poll_interval"] >= 30  # a sensible default for an API with an unstated rate limit
