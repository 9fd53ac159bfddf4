"""ExecutionEventTrigger under attack: a hostile review of issue 13's delivery promises.

Each test tries to make the watcher lose an execution, fire one twice outside the documented
bound (once more per crash, only the last poll's events), fire one that ended before it
started, leak the key, hang, or grow without bound. Ten of them failed against the first
version of the watcher (page shifts in the first poll, late-visible rows, no Date header, a
clock stepping back, unknown statuses, a failing or foreign stored watermark, two watchers on
one asset, items without timestamps); all pass now. A broken precondition raises
``RuntimeError``, so a test cannot pass without having attacked.

Everything is real: the watcher on a real event loop, the emulator over real HTTP, misbehaving
through its own switches (docs/emulator-faults.md): no ``Date`` header (``date_header``), rows
that become visible late (``list_lag_seconds``), items without timestamps (the
``no_timestamps`` and ``no_completed_at`` drift), one precise page held (a ``hold`` fault with
a ``query`` match). Some attacks need an execution older than the window's 2-minute margin:
they shrink ``events.MARGIN`` (a module constant read at each poll) instead of waiting two
minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from airflow_provider_smartmca.testing.server import Emulator
from airflow_provider_smartmca.triggers import ExecutionEventTrigger, events
from airflow_provider_smartmca.triggers.events import WatermarkRecord
from tests.triggers.conftest import conn_json
from tests.triggers.test_events import (
    KEY,
    MemoryAssetStateStore,
    ids_of,
    run_watcher,
    start,
    wait_all_ended,
    watcher,
)

CONFIG: dict[str, Any] = {
    "keys": {KEY: {"name": "full", "scopes": ["workflows:read", "workflows:trigger"]}},
    "durations": {"pending_seconds": 0.1, "node_seconds": 0.1},
    "workflows": [
        {"id": "wf_quick", "name": "Quick", "entityType": "deal", "nodeCount": 2, "node_seconds": 0.2},
        {"id": "wf_flash", "name": "Flash", "entityType": "deal", "nodeCount": 1, "node_seconds": 0.05},
        {"id": "wf_long", "name": "Long", "entityType": "deal", "nodeCount": 2, "node_seconds": 1.5},
        {"id": "wf_x", "name": "X", "entityType": "deal", "nodeCount": 1, "node_seconds": 9},
        {"id": "wf_y", "name": "Y", "entityType": "deal", "nodeCount": 1, "node_seconds": 2.5},
        {"id": "wf_many", "name": "Many", "entityType": "deal", "nodeCount": 3, "node_seconds": 1.0},
    ],
}


@pytest.fixture(scope="module")
def hostile_emulator() -> Iterator[Emulator]:
    with Emulator(CONFIG) as emu:
        yield emu


@pytest.fixture
def emu(hostile_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    hostile_emulator.reset()
    # A generous timeout: a hold fault may keep a page back on purpose for a few seconds.
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", conn_json(hostile_emulator, KEY, timeout=10))
    yield hostile_emulator
    hostile_emulator.reset()


@pytest.fixture
def small_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1 s window margin, so an execution is "older than the margin" after a second, not two minutes."""
    monkeypatch.setattr(events, "MARGIN", timedelta(seconds=1))


def statuses_of(emu: Emulator, ids: list[str]) -> dict[str, str]:
    return {e["executionId"]: e["status"] for e in emu.executions() if e["executionId"] in ids}


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise RuntimeError(f"precondition not reached: {what}")
        time.sleep(0.02)


def run_many(
    triggers: list[ExecutionEventTrigger], seconds: float, during: Callable[[], Any] | None = None
) -> list[list[dict[str, Any]]]:
    """Run several watchers on one loop (as one triggerer does) for ``seconds``."""
    out: list[list[dict[str, Any]]] = [[] for _ in triggers]

    async def main() -> None:
        gens = [t.run() for t in triggers]

        async def pump(i: int) -> None:
            async for event in gens[i]:
                out[i].append(event.payload)

        tasks = [asyncio.create_task(pump(i)) for i in range(len(triggers))]
        await asyncio.sleep(0.6)
        if during is not None:
            await asyncio.to_thread(during)
        await asyncio.sleep(seconds)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for gen in gens:
            await gen.aclose()

    asyncio.run(main())
    return out


def stored(store: MemoryAssetStateStore) -> WatermarkRecord:
    return WatermarkRecord.from_json(json.loads(store.values[store.only_key()]))


def start_fast(emu: Emulator, workflow: str, n: int) -> list[str]:
    """Start ``n`` executions with real POSTs on one keep-alive connection (the hook takes ~90 ms each)."""
    split = urlsplit(emu.api_url)
    conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=10)
    ids = []
    try:
        for i in range(n):
            body = {"workflowType": workflow, "entityType": "deal", "entityId": f"ent_{workflow}_{i}"}
            conn.request(
                "POST",
                f"{split.path}/workflows/trigger",
                body=json.dumps(body),
                headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            answer = json.loads(resp.read())
            if resp.status != 202:
                raise RuntimeError(f"trigger answered {resp.status}: {answer}")
            ids.append(answer["executionId"])
    finally:
        conn.close()
    return ids


def get_raw(emu: Emulator, path: str) -> list[tuple[str, str]]:
    """The response headers of a real GET, as http.client read them off the wire."""
    split = urlsplit(emu.api_url)
    conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=10)
    try:
        conn.request("GET", split.path + path, headers={"Authorization": f"Bearer {KEY}"})
        resp = conn.getresponse()
        resp.read()
        return resp.getheaders()
    finally:
        conn.close()


def epoch(stamp: str) -> float:
    """A timestamp of the emulator's own record (real clock, ISO 8601 with Z) as Unix time."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def is_list(query: dict[str, str], status: str, page: int = 1) -> bool:
    return query.get("status") == status and query.get("page") == str(page)


# --- losses ---------------------------------------------------------------------------------------


def test_a_running_execution_skipped_by_a_page_shift_in_the_first_poll_still_fires(
    emu: Emulator, small_margin: None
) -> None:
    x = start("wf_x")[0]  # ends ~9.1 s after this
    # Older than the (shrunk) margin plus the Date header's 1 s grain when the watcher starts:
    # out of every window, so only the active set can make x fire.
    time.sleep(2.5)
    ys = start_fast(emu, "wf_y", 100)  # newer than x: page 1 of "running", x alone on page 2
    wait_for(lambda: set(statuses_of(emu, [x, *ys]).values()) == {"running"}, 5, "all 101 running")
    # The first poll's first read of "running" page 1 is answered (x on page 2), then held.
    emu.add_fault("hold", route="list_executions", query={"status": "running", "page": 1}, hold_timeout=20)
    state: dict[str, Any] = {"shifted": False, "released": None}

    def stage() -> None:
        if not emu.wait_for_held(1, timeout=5):
            raise RuntimeError("running page 1 was not read")
        first = next(r for r in emu.requests if r.route == "list_executions" and is_list(r.query, "pending"))
        if first.time - epoch(emu.executions()[0]["startedAt"]) < events.MARGIN.total_seconds() + 1.1:
            raise RuntimeError("x is not older than the margin when the watcher starts")
        # The first poll has read "pending" already: the next "pending" read is the second poll's.
        emu.add_fault("hold", route="list_executions", query={"status": "pending"}, hold_timeout=20)
        if "completed" in statuses_of(emu, ys).values() or statuses_of(emu, [x])[x] != "running":
            raise RuntimeError("a y ended before running page 1 was read")
        # One newer execution ends between page 1 and page 2: x moves up to page 1.
        wait_for(lambda: "completed" in statuses_of(emu, ys).values(), 8, "a y completed")
        state["shifted"] = statuses_of(emu, [x])[x] == "running"
        emu.release_held()  # page 2 is read now, after the shift
        # The second poll goes on only after x ended (after the first poll).
        if not emu.wait_for_held(1, timeout=8):
            raise RuntimeError("the second poll did not start")
        wait_for(lambda: statuses_of(emu, [x])[x] == "completed", 12, "x completed")
        state["released"] = time.monotonic()
        emu.release_held()

    fired, _ = run_watcher(
        watcher(MemoryAssetStateStore(), poll_interval=0.5),
        20,
        during=stage,
        # The second poll is over once every y (all tracked, all ended by then) has fired.
        until=lambda ev: state["released"] is not None and set(ys) <= set(ids_of(ev)),
        then=1.0,
    )
    if not state["shifted"]:
        raise RuntimeError("the page shift did not happen as staged")
    if not set(ys) <= set(ids_of(fired)):
        raise RuntimeError("the second poll did not finish in time")
    assert statuses_of(emu, [x])[x] == "completed"
    assert x in ids_of(fired), "x ended after the watcher's first poll and never fired"


@pytest.mark.parametrize(
    "drift",
    [[], ["no_completed_at"], ["no_timestamps"]],
    ids=["with_timestamps", "no_completed_at", "no_timestamps"],
)
def test_rows_that_become_visible_late_inside_the_margin_still_fire(emu: Emulator, drift: list[str]) -> None:
    # A list replica 3 s behind: far inside the 2-minute margin the docs say covers it.
    emu.configure(list_lag_seconds=3.0, drift=drift)
    events, ids = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_quick"),
        10,
        during=lambda: start("wf_quick", 3),
        until=lambda ev: len(ev) >= 3,
    )
    assert statuses_of(emu, ids) == dict.fromkeys(ids, "completed")
    assert ids_of(events) == Counter(ids)


def test_without_a_date_header_executions_ending_before_anything_is_listed_still_fire(
    emu: Emulator,
) -> None:
    emu.configure(date_header=False)
    if "Date" in dict(get_raw(emu, "/workflows/executions")):
        raise RuntimeError("the emulator still sends Date")
    lists = lambda: sum(  # noqa: E731
        1 for r in emu.requests if r.route == "list_executions" and is_list(r.query, "pending")
    )
    flash: list[str] = []

    def go() -> None:
        n = lists()
        wait_for(lambda: lists() > n, 5, "a poll")  # just after a (failing) poll ...
        flash.extend(start("wf_flash", 2))  # ... two start and end well before the next one
        wait_all_ended(emu, flash)
        wait_for(lambda: lists() > n + 1, 5, "the next poll")
        start("wf_long")  # something active at last: the watcher places itself

    events, _ = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type=None, poll_interval=2.0),
        6,
        during=go,
        until=lambda ev: set(flash) <= set(ids_of(ev)),
    )
    assert set(flash) <= set(ids_of(events)), "ended after the watcher started, never fired"


def test_a_server_clock_stepping_back_loses_nothing_that_ends_after_the_step(emu: Emulator) -> None:
    def go() -> list[str]:
        n = emu.count(route="list_executions")
        wait_for(lambda: emu.count(route="list_executions") > n, 5, "a poll")
        emu.configure(clock_offset_seconds=-900)  # an NTP step, a VM resumed, another node
        ids = start("wf_flash", 2)
        wait_all_ended(emu, ids)
        return ids

    events, ids = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_flash", poll_interval=2.0),
        6,
        during=go,
        until=lambda ev: len(ev) >= 2,
    )
    assert ids_of(events) == Counter(ids)


def test_an_unknown_status_keeps_the_execution_tracked_until_it_completes(
    emu: Emulator, small_margin: None
) -> None:
    x: list[str] = []

    def go() -> None:
        x.extend(start("wf_long"))  # ~3.1 s
        time.sleep(0.8)  # tracked as running
        emu.configure(drift=["unknown_status"])  # it reads "paused" for a while ...
        wait_all_ended(emu, x)  # (the admin view shows the truth: it completed meanwhile)
        time.sleep(0.6)
        emu.configure(drift=[])  # ... then the server answers "completed" again

    events, _ = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_long"), 2.0, during=go, until=lambda ev: bool(ev)
    )
    assert statuses_of(emu, x) == {x[0]: "completed"}
    assert ids_of(events) == Counter(x)


class FlakyStore(MemoryAssetStateStore):
    """An asset state store whose reads or writes fail the first ``fail_gets``/``fail_sets`` times."""

    def __init__(self, fail_gets: int = 0, fail_sets: int = 0) -> None:
        super().__init__()
        self.fail_gets, self.fail_sets = fail_gets, fail_sets

    async def aget(self, key: str, default: Any = None) -> Any:
        if self.fail_gets:
            self.fail_gets -= 1
            raise ConnectionError("the metadata DB is restarting")
        return await super().aget(key, default)

    async def aset(self, key: str, value: Any) -> None:
        if self.fail_sets:
            self.fail_sets -= 1
            raise ConnectionError("the metadata DB is restarting")
        await super().aset(key, value)


def _downtime(emu: Emulator, store: MemoryAssetStateStore) -> list[str]:
    """A first run that saves a watermark, then executions that end while the watcher is down."""
    first, _ = run_watcher(watcher(store, workflow_type="wf_quick"), 1.0)
    assert first == [] and store.values
    down = start("wf_quick", 3)
    wait_all_ended(emu, down)
    return down


def test_a_store_read_failing_once_at_restart_is_retried_and_loses_nothing(emu: Emulator) -> None:
    store = FlakyStore()
    down = _downtime(emu, store)
    store.fail_gets = 1
    second, _ = run_watcher(watcher(store, workflow_type="wf_quick"), 1.5)
    assert ids_of(second) == Counter(down)


def test_a_watermark_of_another_version_looks_back_and_loses_nothing(emu: Emulator) -> None:
    store = MemoryAssetStateStore()
    down = _downtime(emu, store)
    value = json.loads(store.values[store.only_key()])
    store.values[store.only_key()] = json.dumps({**value, "version": 2, "more": "a newer provider's field"})
    second, _ = run_watcher(watcher(store, workflow_type="wf_quick"), 1.5)
    assert ids_of(second) == Counter(down)


def test_two_watchers_on_one_asset_keep_separate_watermarks(emu: Emulator, small_margin: None) -> None:
    store = MemoryAssetStateStore()  # one asset, as Airflow injects it into each of its watchers
    tracked: list[str] = []
    a = watcher(store, workflow_type="wf_long")
    b = watcher(store, workflow_type="wf_quick", poll_interval=0.2)  # saves more often: last word
    run_many([a, b], 1.0, during=lambda: tracked.extend(start("wf_long")))
    if statuses_of(emu, tracked) != {tracked[0]: "running"}:
        raise RuntimeError("x ended too early")
    # A's triggerer dies; B (the asset's other watcher, on another triggerer) polls on while x
    # ends: B reads x, sees it is not its workflow, forgets it, and saves over A's watermark.
    run_watcher(
        watcher(store, workflow_type="wf_quick", poll_interval=0.2),
        8,
        until=lambda ev: statuses_of(emu, tracked)[tracked[0]] == "completed",
        then=1.0,
    )
    again, _ = run_watcher(watcher(store, workflow_type="wf_long"), 1.5)
    assert ids_of(again) == Counter(tracked)


def test_an_execution_without_timestamps_fires_once(emu: Emulator, small_margin: None) -> None:
    emu.configure(drift=["no_timestamps"])
    events, ids = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_quick"),
        4.0,
        during=lambda: start("wf_quick", 1),
    )
    assert ids_of(events) == Counter(ids)


# --- what holds -----------------------------------------------------------------------------------


def test_a_total_that_counts_only_the_page_loses_no_running_execution(
    emu: Emulator, small_margin: None
) -> None:
    # 150 running, older than the window when the watcher starts: only the active lists can make
    # them fire. A total of 100 on a full page of 100 must not end the read of the running list.
    emu.configure(drift=["total_counts_page"])
    ids = start_fast(emu, "wf_x", 150)  # each ends ~9.1 s after its start
    time.sleep(2.5)
    wait_for(lambda: set(statuses_of(emu, ids).values()) == {"running"}, 5, "all 150 running")
    events, _ = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_x", poll_interval=0.5),
        20,
        until=lambda ev: len(ids_of(ev)) >= 150,
        then=0.5,
    )
    assert set(statuses_of(emu, ids).values()) == {"completed"}
    assert ids_of(events) == Counter(ids)


def test_a_date_header_ahead_of_the_timestamps_by_more_than_the_margin_loses_nothing(emu: Emulator) -> None:
    # A gateway clock 5 minutes ahead of the database's: every startedAt reads 300 s before Date.
    emu.configure(date_offset_seconds=300)
    wait_all_ended(emu, start("wf_flash"))  # history: the server has shown a timestamp
    lists = lambda: sum(  # noqa: E731
        1 for r in emu.requests if r.route == "list_executions" and is_list(r.query, "pending")
    )
    flash: list[str] = []

    def go() -> None:
        n = lists()
        wait_for(lambda: lists() > n, 5, "a poll")  # just after a poll ...
        flash.extend(start("wf_flash", 2))  # ... two start and end well before the next one
        wait_all_ended(emu, flash)
        if lists() > n + 1:
            raise RuntimeError("a poll saw them running")

    events, _ = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_flash", poll_interval=2.0),
        6,
        during=go,
        until=lambda ev: set(flash) <= set(ids_of(ev)),
    )
    assert ids_of(events) == Counter(flash), "ended after the watcher started: each fires once"


def test_pages_shifting_under_a_slow_storm_lose_nothing_and_repeat_nothing(emu: Emulator) -> None:
    # 150 running (two pages of "running") ending while the watcher pages slowly through 429/503s.
    def go() -> list[str]:
        ids = start_fast(emu, "wf_many", 150)
        emu.add_fault("latency", route="list_executions", latency=0.15, count=40)
        emu.add_fault("status", route="list_executions", status=503, probability=0.15, seed=3)
        emu.add_fault("status", route="*", status=429, retry_after=1, count=2)
        return ids

    events, ids = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_many", poll_interval=0.3),
        18,
        during=go,
        until=lambda ev: len(ids_of(ev)) >= 150,
        then=1.0,
    )
    assert set(ids_of(events)) == set(ids)
    assert max(ids_of(events).values()) == 1


def test_executions_that_go_pending_to_completed_between_two_polls_all_fire(emu: Emulator) -> None:
    events, ids = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_flash", poll_interval=1.5),
        10,
        during=lambda: start_fast(emu, "wf_flash", 30),
        until=lambda ev: len(ev) >= 30,
        then=2.0,
    )
    assert ids_of(events) == Counter(ids)


@pytest.mark.parametrize("crash_after", [1, 4])
def test_a_crash_at_any_event_repeats_only_that_polls_events(emu: Emulator, crash_after: int) -> None:
    store = MemoryAssetStateStore()
    first: list[dict[str, Any]] = []

    def go() -> list[str]:
        ids = start_fast(emu, "wf_quick", 6)
        wait_all_ended(emu, ids)
        return ids

    first, ids = run_watcher(
        watcher(store, workflow_type="wf_quick", poll_interval=1.0),
        8,
        during=go,
        until=lambda ev: len(ev) >= crash_after,
    )
    second, _ = run_watcher(watcher(store, workflow_type="wf_quick"), 1.5)
    together = ids_of(first) + ids_of(second)
    assert set(together) == set(ids)
    assert all(n <= 2 for n in together.values())
    assert set(ids_of(second)) & set(ids_of(first)) <= set(ids_of(first))  # only the crashed poll's


def test_a_store_that_fails_every_write_still_delivers_and_does_not_crash(emu: Emulator) -> None:
    store = FlakyStore(fail_sets=10**6)
    events, ids = run_watcher(
        watcher(store, workflow_type="wf_quick"),
        8,
        during=lambda: start("wf_quick", 3),
        until=lambda ev: len(ev) >= 3,
        then=1.0,
    )
    assert ids_of(events) == Counter(ids) and store.values == {}


def test_a_store_read_that_fails_on_the_first_start_backfills_nothing(emu: Emulator) -> None:
    ended = start("wf_quick", 3)
    wait_all_ended(emu, ended)
    events, _ = run_watcher(watcher(FlakyStore(fail_gets=1), workflow_type="wf_quick"), 1.5)
    assert events == []


@pytest.mark.parametrize("echo_in", ["json_body", "location"])
def test_a_server_echoing_the_key_never_gets_it_into_logs_events_or_the_watermark(
    emu: Emulator, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str], echo_in: str
) -> None:
    caplog.set_level(logging.DEBUG)
    store = MemoryAssetStateStore()

    def go() -> list[str]:
        ids = start("wf_long", 2)
        emu.add_fault("echo", route="list_executions", echo_in=echo_in, count=2)
        emu.add_fault("echo", route="get_execution", echo_in=echo_in, count=2)
        return ids

    events, ids = run_watcher(
        watcher(store, workflow_type="wf_long"), 12, during=go, until=lambda ev: len(ev) >= 2
    )
    assert ids_of(events) == Counter(ids)
    out, err = capfd.readouterr()  # the trigger's own log goes through structlog to the console
    assert "SmartMCA" in out + err and KEY not in out + err
    assert KEY not in caplog.text
    assert KEY not in json.dumps(events) and KEY not in json.dumps(store.values)


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "hold", "hold_timeout": 30},
        {"kind": "trickle", "bytes_per_second": 20},
        {"kind": "huge_body", "size": 200_000_000},
        {"kind": "drop_mid_body"},
    ],
    ids=lambda f: f["kind"],
)
def test_a_list_that_never_finishes_answering_delays_but_does_not_hang(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, fault: dict[str, Any]
) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", conn_json(emu, KEY, timeout=2))

    def go() -> list[str]:
        emu.add_fault(route="list_executions", count=2, **fault)
        return start("wf_quick", 2)

    t0 = time.monotonic()
    events, ids = run_watcher(
        watcher(MemoryAssetStateStore(), workflow_type="wf_quick"),
        15,
        during=go,
        until=lambda ev: len(ev) >= 2,
    )
    emu.release_held()
    assert ids_of(events) == Counter(ids)
    assert time.monotonic() - t0 < 14


def test_the_watermark_stays_small_under_load(emu: Emulator) -> None:
    store = MemoryAssetStateStore()
    events, ids = run_watcher(
        watcher(store, workflow_type="wf_flash", poll_interval=0.3),
        10,
        during=lambda: start_fast(emu, "wf_flash", 120),
        until=lambda ev: len(ev) >= 120,
        then=1.0,
    )
    assert ids_of(events) == Counter(ids)
    record = stored(store)
    # Fired ids stay only while the next window can show them (MARGIN + poll_interval).
    assert len(json.dumps(record.to_json())) < 64_000
    assert record.active == frozenset()


# --- dates at the edge of the calendar --------------------------------------------------------------

YEAR_ONE = datetime(1, 1, 1, tzinfo=UTC)


def year_one_clock(emu: Emulator, seconds: float = 30) -> None:
    """The emulator's clock (its timestamps; no ``Date`` header) ``seconds`` past 0001-01-01T00:00:00Z."""
    emu.configure(date_header=False, clock_offset_seconds=YEAR_ONE.timestamp() + seconds - time.time())
    stamps = [e["startedAt"] for e in json.loads(get_body(emu, "/workflows/executions?limit=1"))["data"]]
    if "Date" in dict(get_raw(emu, "/workflows/executions")) or any(
        not s.startswith("0001-") for s in stamps
    ):
        raise RuntimeError(f"the emulator's clock is not at year 1: {stamps}")


def get_body(emu: Emulator, path: str) -> bytes:
    split = urlsplit(emu.api_url)
    conn = http.client.HTTPConnection(split.hostname or "127.0.0.1", split.port, timeout=10)
    try:
        conn.request("GET", split.path + path, headers={"Authorization": f"Bearer {KEY}"})
        return conn.getresponse().read()
    finally:
        conn.close()


def clamp_warnings(capfd: pytest.CaptureFixture[str]) -> int:
    """How often the watcher said its clock is too close to year 1 (Airflow's structlog writes to the fds)."""
    out, err = capfd.readouterr()
    return (out + err).count("before year 1")


@pytest.mark.parametrize("durable", [True, False], ids=["state store", "in memory (restart_lookback)"])
def test_a_server_clock_at_year_one_without_a_date_header_never_ends_the_watcher(
    emu: Emulator, capfd: pytest.CaptureFixture[str], durable: bool
) -> None:
    start("wf_flash")  # something listed with a timestamp at year 1: the watcher's only clock
    year_one_clock(emu)
    flash: list[str] = []

    def go() -> None:
        flash.extend(start("wf_flash", 2))
        wait_all_ended(emu, flash)

    events, _ = run_watcher(
        watcher(MemoryAssetStateStore() if durable else None, workflow_type="wf_flash", restart_lookback=600),
        4,
        during=go,
        until=lambda ev: set(flash) <= set(ids_of(ev)),
    )
    assert set(flash) <= set(ids_of(events)), "ended after the watcher started, never fired"
    assert max(ids_of(events)[i] for i in flash) == 1
    # Timestamps before 1970 give the watcher no clock at all, so it may never need to clamp; when it
    # does, it says so once, not at every poll.
    assert clamp_warnings(capfd) <= 1, "said once, not at every poll"


def test_a_stored_watermark_at_year_one_never_ends_the_watcher_and_loses_nothing(emu: Emulator) -> None:
    store = MemoryAssetStateStore()
    down = _downtime(emu, store)
    value = json.loads(store.values[store.only_key()])
    store.values[store.only_key()] = json.dumps({**value, "since": "0001-01-01T00:00:00+00:00"})
    second, _ = run_watcher(watcher(store, workflow_type="wf_quick"), 1.5)
    assert set(down) <= set(ids_of(second))
    assert stored(store).since is not None and stored(store).since.year > 1  # back on the server's clock


@pytest.mark.parametrize(
    "change", [{"active": "exec_zz"}, {"active": [1, 2]}, {"fired": ["exec_zz"]}, {"since": 5}], ids=repr
)
def test_a_misshapen_stored_watermark_is_set_aside_and_loses_nothing(
    emu: Emulator, change: dict[str, Any]
) -> None:
    store = MemoryAssetStateStore()
    down = _downtime(emu, store)
    value = json.loads(store.values[store.only_key()])
    store.values[store.only_key()] = json.dumps({**value, **change})
    before = len(emu.requests)
    second, _ = run_watcher(watcher(store, workflow_type="wf_quick"), 1.5)
    assert ids_of(second) == Counter(down)
    read = [r.path.rsplit("/", 1)[1] for r in emu.requests[before:] if r.route == "get_execution"]
    assert all(len(i) > 2 for i in read), f"a string read as a list of ids: {read}"
    assert stored(store).active.isdisjoint({"e", "x", "c", "_", "z", "1", "2"})


def test_a_watcher_sends_to_its_own_connection_when_another_connection_shares_its_key(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Budgets are shared by key; the base URL, timeout and caps are each connection's own."""
    from airflow_provider_smartmca.triggers.context import current

    with Emulator(CONFIG) as other:
        monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_OTHER", conn_json(other, KEY, timeout=10))
        trigger = watcher(MemoryAssetStateStore(), conn_id="smartmca_other", workflow_type="wf_quick")

        async def main() -> None:
            shared = current()
            # Another user of the same key (a wait on smartmca_default) holds the key's budget.
            held = shared.budget(await shared.settings("smartmca_default"))
            agen = trigger.run()
            task = asyncio.create_task(anext(agen))
            await asyncio.sleep(1.0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await agen.aclose()
            assert held.settings.base_url == emu.base_url
            if other.base_url == emu.base_url:
                raise RuntimeError("the two emulators must differ")

        asyncio.run(main())
        assert [r for r in other.requests if r.route == "list_executions"]
        assert not [r for r in emu.requests if r.route in ("list_executions", "get_execution")]


def test_a_watcher_request_that_outlasts_the_timeout_setting_names_that_setting(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The watcher has no deadline: its slow request ran out of the 'timeout' setting, and says so."""
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", conn_json(emu, KEY, timeout=0.3))
    emu.add_fault("latency", route="list_executions", latency=2, count=None)
    run_watcher(watcher(MemoryAssetStateStore(), workflow_type="wf_quick"), 1.5)
    out, err = capfd.readouterr()  # the trigger logs through structlog, to the console
    failed = [line for line in (out + err).splitlines() if "poll failed" in line]
    assert failed and all("the 'timeout' setting" in m and "deadline" not in m for m in failed), failed
