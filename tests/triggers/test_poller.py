"""The shared poller (issue 12): many ExecutionTriggers served by List Executions pages or GETs.

Every test runs real triggers on a real event loop against the emulator over real HTTP. The
emulator here starts an execution's clock when it is created (a real server's executions run
whether anyone looks or not), unlike the per-trigger tests' first-GET clock.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from airflow_provider_smartmca.client import aio
from airflow_provider_smartmca.errors import SmartMCAValidationError
from airflow_provider_smartmca.testing import FULL_KEY
from airflow_provider_smartmca.testing.server import Emulator
from airflow_provider_smartmca.triggers import ExecutionTrigger, budget, context, poller
from tests.triggers.conftest import conn_json

KEY = FULL_KEY
POLL = 0.2
CONFIG = {
    "keys": {
        KEY: {"name": "full", "scopes": ["workflows:read", "workflows:trigger", "underwriting:trigger"]}
    },
    "durations": {"pending_seconds": 0.2, "node_seconds": 0.1},
    "workflows": [
        {"id": "wf_batch", "name": "Batch", "entityType": "deal", "nodeCount": 3, "node_seconds": 0.3},
        {
            "id": "wf_mixed",
            "name": "Mixed",
            "entityType": "deal",
            "nodeCount": 3,
            "node_seconds": 0.25,
            "outcome": {"fail_probability": 0.3, "seed": 7, "error": "mixed failure"},
        },
        {
            "id": "wf_fails",
            "name": "Fails",
            "entityType": "deal",
            "nodeCount": 3,
            "node_seconds": 0.3,
            "outcome": {"fail_at_node": 2, "error": {"code": "NODE_TWO_FAILED", "message": "node two broke"}},
        },
        {
            "id": "wf_staggered",
            "name": "Staggered",
            "entityType": "deal",
            "nodeCount": 3,
            "node_seconds": 1.0,
            "outcome": {"fail_probability": 0.3, "seed": 3},
        },
        {
            "id": "wf_staggered_slow",
            "name": "Staggered, slow",
            "entityType": "deal",
            "nodeCount": 3,
            "node_seconds": 2.5,
            "outcome": {"fail_probability": 0.3, "seed": 3},
        },
        {"id": "wf_forever", "name": "Forever", "entityType": "deal", "nodeCount": 2, "node_seconds": 600},
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


class Metrics:
    """Records what the provider sends to Airflow's Stats."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def incr(self, stat: str, count: int = 1, rate: float = 1, *, tags: Any = None) -> None:
        self.counts[stat] += count


@pytest.fixture
def metrics(monkeypatch: pytest.MonkeyPatch) -> Metrics:
    recorder = Metrics()
    monkeypatch.setattr(budget, "Stats", recorder)
    return recorder


def start(emu: Emulator, workflow: str, n: int = 1, spacing: float = 0.0) -> list[str]:
    """Start ``n`` executions through the sync hook (a real POST each)."""
    from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook

    hook = SmartMCAHook("smartmca_default")
    try:
        ids = []
        for i in range(n):
            ids.append(hook.trigger_workflow(workflow, "deal", f"ent_{workflow}_{i}").execution_id)
            if spacing:
                time.sleep(spacing)
        return ids
    finally:
        hook.close()


def trig(
    execution_id: str,
    workflow_type: str | None,
    deadline_in: float | None = 15.0,
    poll: float = POLL,
) -> ExecutionTrigger:
    """A trigger rebuilt from its JSON kwargs, as the triggerer does."""
    deadline = None if deadline_in is None else time.time() + deadline_in
    built = ExecutionTrigger(
        "smartmca_default", execution_id, poll, deadline, workflow_type=workflow_type
    ).serialize()[1]
    return ExecutionTrigger(**json.loads(json.dumps(built)))


async def first_event(trigger: ExecutionTrigger, timeout: float = 30) -> dict[str, Any]:
    agen = trigger.run()
    try:
        event = await asyncio.wait_for(agen.__anext__(), timeout)
    finally:
        await agen.aclose()
    return event.payload


async def all_events(triggers: list[ExecutionTrigger]) -> list[dict[str, Any]]:
    events = await asyncio.gather(*(first_event(t) for t in triggers))
    # Everything is released once the last wait has left.
    assert len(context.current().pollers) == 0
    assert context.current().open_sessions == 0
    return events


def final_status(emu: Emulator, execution_id: str) -> str:
    return next(e["status"] for e in emu.executions() if e["executionId"] == execution_id)


def expected_event(status: str) -> str:
    return {"completed": "success", "failed": "failure", "cancelled": "failure"}[status]


def gets_of(emu: Emulator, execution_id: str, after_id: int = 0) -> list[Any]:
    return [
        r
        for r in emu.requests
        if r.route == "get_execution" and r.path.endswith("/" + execution_id) and r.id > after_id
    ]


# --- rounds, costs, verdicts ----------------------------------------------------------------


def test_many_waits_cost_a_few_requests_a_round_and_only_a_get_ends_a_wait(
    emu: Emulator, metrics: Metrics
) -> None:
    ids = start(emu, "wf_mixed", 40)
    before = emu.requests[-1].id
    started = time.monotonic()
    events = asyncio.run(all_events([trig(i, "wf_mixed") for i in ids]))
    elapsed = time.monotonic() - started

    # The same events as per-execution polling: status, execution, message.
    for execution_id, event in zip(ids, events, strict=True):
        status = final_status(emu, execution_id)
        assert event["status"] == expected_event(status), (execution_id, event)
        assert event["execution_id"] == execution_id
        assert event["execution"]["status"] == status
        assert set(event) == {"status", "execution_id", "message", "execution"}
        # The verdict came from a GET: a list item never ends a wait (it has no nodes).
        assert gets_of(emu, execution_id, before)[-1].status == 200
        if status == "failed":
            assert event["execution"]["failedNodes"] and "mixed failure" in event["message"]
    assert {"failure", "success"} == {e["status"] for e in events}

    new = [r for r in emu.requests if r.id > before]
    lists = [r for r in new if r.route == "list_executions"]
    gets = [r for r in new if r.route == "get_execution"]
    assert lists and all(r.query["workflow_type"] == "wf_mixed" for r in lists)
    assert all(r.query["limit"] == "100" and r.query["status"] in ("pending", "running") for r in lists)
    # Per-execution polling would have sent one GET per wait per round.
    rounds = elapsed / POLL
    assert len(new) < 0.3 * len(ids) * rounds, (len(lists), len(gets), rounds)
    assert len(gets) <= 2 * len(ids)  # about one GET per execution: the one that saw it end
    assert metrics.counts["smartmca.requests.list_executions"] == len(lists)
    assert metrics.counts["smartmca.requests.get_execution"] == len(gets)
    assert metrics.counts["smartmca.poller.waits_served.list"] > len(ids)
    assert metrics.counts["smartmca.poller.waits_served.get"] >= len(ids)


def test_a_lone_wait_sends_one_get_per_round(emu: Emulator) -> None:
    (execution_id,) = start(emu, "wf_batch")
    before = emu.requests[-1].id
    started = time.monotonic()
    event = asyncio.run(all_events([trig(execution_id, "wf_batch")]))[0]
    elapsed = time.monotonic() - started
    assert event["status"] == "success"
    new = [r for r in emu.requests if r.id > before]
    assert {r.route for r in new} == {"get_execution"}
    assert 2 <= len(new) <= elapsed / POLL + 1


def test_waits_on_one_execution_share_its_get(emu: Emulator) -> None:
    (execution_id,) = start(emu, "wf_batch")
    before = emu.requests[-1].id
    started = time.monotonic()
    events = asyncio.run(all_events([trig(execution_id, "wf_batch") for _ in range(5)]))
    elapsed = time.monotonic() - started
    assert {e["status"] for e in events} == {"success"}
    new = [r for r in emu.requests if r.id > before]
    assert {r.route for r in new} == {"get_execution"}
    assert len(new) <= elapsed / POLL + 1  # one GET a round for all five


@pytest.fixture
def manual_emu(monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """An emulator whose clock moves only when the test advances it."""
    with Emulator(CONFIG, clock="manual") as emu:
        monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", conn_json(emu, KEY, timeout=2))
        yield emu


def test_lists_that_change_between_pages_cost_gets_never_a_wrong_verdict(
    manual_emu: Emulator, metrics: Metrics
) -> None:
    # 250 executions of 7.7 s each, started 4 ms apart on the emulator's clock, which stands still
    # while they start (however slow the machine) and then runs with the wall clock: three pages a
    # round. They end one after another, and each page takes 0.1 s, so executions end between the
    # pages of a round and the later pages shift: some running executions are on none of the pages.
    emu = manual_emu
    ids = []
    for _ in range(250):
        ids += start(emu, "wf_staggered_slow")
        emu.advance(0.004)
    emu.advance(0.2)  # the last one started is running too
    emu.add_fault("latency", route="list_executions", latency=0.1, count=10_000)
    before = emu.requests[-1].id
    done = threading.Event()

    def clock() -> None:  # from here on, the emulator's clock runs with the wall clock
        while not done.wait(0.05):
            emu.advance(0.05)

    ticker = threading.Thread(target=clock, daemon=True)
    ticker.start()
    try:
        events = asyncio.run(all_events([trig(i, "wf_staggered_slow", deadline_in=40) for i in ids]))
    finally:
        done.set()
        ticker.join(5)
    for execution_id, event in zip(ids, events, strict=True):
        assert event["status"] == expected_event(final_status(emu, execution_id)), execution_id
        assert gets_of(emu, execution_id, before)  # ended by a GET
    pages = [r for r in emu.requests if r.id > before and r.route == "list_executions"]
    assert {r.query["page"] for r in pages} >= {"1", "2", "3"}
    # Some executions were absent from a round's pages while still running (shifted pages):
    # each cost a GET, and none was taken as ended.
    assert metrics.counts["smartmca.poller.misses"] > 0


def test_absent_from_the_active_lists_then_failed_reads_failed(emu: Emulator) -> None:
    ids = start(emu, "wf_fails", 4)
    before = emu.requests[-1].id
    events = asyncio.run(all_events([trig(i, "wf_fails") for i in ids]))
    for execution_id, event in zip(ids, events, strict=True):
        assert event["status"] == "failure"
        assert "NODE_TWO_FAILED: node two broke" in event["message"]
        assert event["execution"]["failedNodes"][0]["name"]
        assert gets_of(emu, execution_id, before)[-1].status == 200
    assert any(r.route == "list_executions" for r in emu.requests if r.id > before)


def test_absent_from_the_active_lists_is_never_an_end(emu: Emulator) -> None:
    # Under this drift executions read "paused" once they leave pending: they vanish from the
    # pending and running lists, yet never end. The waits must wait for their deadline.
    ids = start(emu, "wf_batch", 3)
    emu.configure(drift=["unknown_status"])
    before = emu.requests[-1].id
    events = asyncio.run(all_events([trig(i, "wf_batch", deadline_in=2.0) for i in ids]))
    assert [e["status"] for e in events] == ["timeout"] * 3
    assert all(e["execution"]["status"] == "paused" for e in events)
    new = [r for r in emu.requests if r.id > before]
    assert any(r.route == "get_execution" for r in new)


def test_a_list_that_never_shows_the_end_cannot_hold_a_wait(emu: Emulator, metrics: Metrics) -> None:
    # A list replica that never sees the end: it shows the ended executions running, on their
    # last node, for ever, while GET says completed. Each wait's reading stops changing, so
    # after CONFIRM_ROUNDS list rounds its own GET confirms it, and the wait ends.
    ids = start(emu, "wf_batch", 5)
    while {final_status(emu, i) for i in ids} != {"completed"}:
        time.sleep(0.1)
    emu.configure(list_end_lag_seconds=1e9)
    before = emu.requests[-1].id
    events = asyncio.run(all_events([trig(i, "wf_batch", deadline_in=8.0) for i in ids]))
    assert [e["status"] for e in events] == ["success"] * 5
    new = [r for r in emu.requests if r.id > before]
    lists = [r for r in new if r.route == "list_executions"]
    gets = [r for r in new if r.route == "get_execution"]
    assert all(r.query["status"] in ("pending", "running") for r in lists)
    # A bounded number of rounds: the first (pending and running lists), CONFIRM_ROUNDS - 1
    # more of the running list, then one GET per execution.
    assert len(lists) <= poller.CONFIRM_ROUNDS + 1, len(lists)
    assert len(gets) == 5, len(gets)
    assert metrics.counts["smartmca.poller.confirmations"] == 5


def test_a_list_that_fails_now_and_then_cannot_reset_what_it_holds(emu: Emulator) -> None:
    # The same stale replica, and a third of its answers are 503s: a failed list round is no
    # reading, so it neither counts nor restarts the rounds a wait has been listed unchanged.
    ids = start(emu, "wf_batch", 5)
    while {final_status(emu, i) for i in ids} != {"completed"}:
        time.sleep(0.1)
    emu.configure(list_end_lag_seconds=1e9)
    emu.add_fault("status", route="list_executions", status=503, probability=0.35, seed=4)
    before = emu.requests[-1].id
    events = asyncio.run(all_events([trig(i, "wf_batch", deadline_in=10.0) for i in ids]))
    assert [e["status"] for e in events] == ["success"] * 5
    lists = [r for r in emu.requests if r.id > before and r.route == "list_executions"]
    answered = [r for r in lists if r.status == 200 and r.query["status"] == "running"]
    assert len(answered) <= poller.CONFIRM_ROUNDS, len(answered)  # then the GETs
    assert len(lists) <= 3 * poller.CONFIRM_ROUNDS, len(lists)


def test_a_404_ends_only_its_own_wait(emu: Emulator) -> None:
    ids = start(emu, "wf_batch", 3)
    triggers = [trig(i, "wf_batch") for i in [*ids, "exec_does_not_exist"]]
    events = asyncio.run(all_events(triggers))
    assert [e["status"] for e in events] == ["success"] * 3 + ["error"]
    assert "HTTP 404" in events[-1]["message"]


def test_the_lists_total_chooses_gets_when_the_tenant_is_busy(emu: Emulator) -> None:
    # 320 other active executions of the same workflow: four pages a round for three waits.
    start(emu, "wf_forever", 320)
    ids = start(emu, "wf_batch", 3)
    mine = start(emu, "wf_forever", 3)
    before = emu.requests[-1].id
    events = asyncio.run(all_events([trig(i, "wf_forever", deadline_in=3.0) for i in mine]))
    assert [e["status"] for e in events] == ["timeout"] * 3
    new = [r for r in emu.requests if r.id > before]
    lists = [r for r in new if r.route == "list_executions"]
    gets = [r for r in new if r.route == "get_execution"]
    # The first page's total (320) says four pages: GETs are cheaper from then on, with a
    # look at the lists again every REPROBE_ROUNDS rounds.
    rounds = 3.0 / POLL
    assert len(lists) <= 2 + 2 * rounds / poller.REPROBE_ROUNDS, len(lists)
    assert len(gets) >= 3 * rounds / 2
    assert ids  # (the quick ones are not awaited here)


def test_a_total_that_counts_only_the_page_never_ends_the_lists_after_a_full_page(emu: Emulator) -> None:
    # 150 running waits: two pages of "running". The server's total says 100 on the full page 1.
    emu.configure(drift=["total_counts_page"])
    workflow = emu.config.workflows["wf_forever"]
    ids = [emu.state.store.create(workflow, "deal", f"deal_total_{i}").id for i in range(150)]
    before = emu.requests[-1].id if emu.requests else 0
    events = asyncio.run(all_events([trig(i, "wf_forever", deadline_in=2.0) for i in ids]))
    assert [e["status"] for e in events] == ["timeout"] * 150
    new = [r for r in emu.requests if r.id > before]
    assert any(r.route == "list_executions" and r.query["page"] == "2" for r in new)
    # Page 2's executions are read from the lists like page 1's, not by a GET each round.
    gets = Counter(r.path.rsplit("/", 1)[1] for r in new if r.route == "get_execution")
    # (A loaded machine may leave a wait or two out of a slow round, to be read by GETs: 50 page-2
    # waits polled by GET would be the break.)
    per_wait = [gets[i] for i in ids]
    assert sum(n > min(per_wait) + 2 for n in per_wait) <= 2, sorted(Counter(per_wait).items())


def test_a_refused_or_drifted_list_falls_back_to_gets(emu: Emulator, metrics: Metrics) -> None:
    ids = start(emu, "wf_batch", 6)
    emu.configure(drift=["list_envelope"])
    before = emu.requests[-1].id
    events = asyncio.run(all_events([trig(i, "wf_batch") for i in ids]))
    assert {e["status"] for e in events} == {"success"}
    assert metrics.counts["smartmca.poller.lists_unusable"] == 1
    lists = [r for r in emu.requests if r.id > before and r.route == "list_executions"]
    assert len(lists) == 1  # looked once, then GETs only


def test_a_401_on_a_list_reads_the_connection_again_then_fails_each_wait(emu: Emulator) -> None:
    ids = start(emu, "wf_forever", 4)

    async def main() -> list[dict[str, Any]]:
        tasks = [asyncio.ensure_future(first_event(trig(i, "wf_forever"))) for i in ids]
        await asyncio.sleep(3 * POLL)
        emu.revoke_key(KEY)
        return await all_events_of(tasks)

    events = asyncio.run(main())
    assert [e["status"] for e in events] == ["error"] * 4
    assert all("HTTP 401" in e["message"] for e in events)


async def all_events_of(tasks: list[asyncio.Future[dict[str, Any]]]) -> list[dict[str, Any]]:
    events = await asyncio.gather(*tasks)
    assert len(context.current().pollers) == 0 and context.current().open_sessions == 0
    return list(events)


# --- one budget per key ----------------------------------------------------------------------


def test_a_429_storm_pauses_every_wait_on_the_key_once_per_429(emu: Emulator, metrics: Metrics) -> None:
    coalesced = start(emu, "wf_batch", 10)
    (alone,) = start(emu, "wf_deal_onboarding")  # no workflow type: polls alone, same budget
    emu.add_fault("status", route="list_executions", status=429, retry_after=1, count=3)
    before = emu.requests[-1].id
    started = time.monotonic()
    triggers = [trig(i, "wf_batch", deadline_in=30) for i in coalesced] + [trig(alone, None, deadline_in=30)]
    events = asyncio.run(all_events(triggers))
    assert {e["status"] for e in events} == {"success"}
    assert time.monotonic() - started >= 3 * 1.0 - 0.1
    new = [r for r in emu.requests if r.id > before]
    refusals = [r for r in new if r.status == 429]
    assert len(refusals) == 3  # one list a round was refused, not one request per wait
    for refusal in refusals:
        during = [r for r in new if refusal.time + 0.3 < r.time < refusal.time + 0.9]
        assert not during, [(r.route, r.time - refusal.time) for r in during]  # nobody sent meanwhile
    assert metrics.counts["smartmca.rate_limited"] == 3


def test_transient_list_errors_delay_but_never_fail(emu: Emulator) -> None:
    ids = start(emu, "wf_batch", 8)
    emu.add_fault("status", route="list_executions", status=503, count=4)
    emu.add_fault("drop_before", route="list_executions", count=2)
    emu.add_fault("html_error", route="list_executions", count=1)
    events = asyncio.run(all_events([trig(i, "wf_batch", deadline_in=30) for i in ids]))
    assert {e["status"] for e in events} == {"success"}
    assert emu.count(route="list_executions", status=503) == 4


# --- independence ------------------------------------------------------------------------------


def test_cancelling_one_wait_among_many_leaves_the_others_alone(emu: Emulator) -> None:
    ids = start(emu, "wf_batch", 12)
    doomed = ids[5]

    async def main() -> tuple[list[dict[str, Any]], int]:
        tasks = [asyncio.ensure_future(first_event(trig(i, "wf_batch", deadline_in=30))) for i in ids]
        await asyncio.sleep(2 * POLL)
        tasks[5].cancel()
        with pytest.raises(asyncio.CancelledError):
            await tasks[5]
        mark = emu.requests[-1].id
        others = await all_events_of(tasks[:5] + tasks[6:])
        return others, mark

    events, mark = asyncio.run(main())
    assert {e["status"] for e in events} == {"success"}
    assert not gets_of(emu, doomed, mark + 1)  # nothing is read for it any more
    assert final_status(emu, doomed) == "completed"  # and nothing was done to it


def test_the_pollers_failure_degrades_to_per_execution_gets(
    emu: Emulator, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = start(emu, "wf_batch", 6)
    rounds = [0]
    original = poller.ExecutionPoller._serve

    async def broken(self: Any, *args: Any) -> None:
        rounds[0] += 1
        if rounds[0] == 2:
            raise RuntimeError("injected poller bug")
        await original(self, *args)

    monkeypatch.setattr(poller.ExecutionPoller, "_serve", broken)
    before = emu.requests[-1].id
    events = asyncio.run(all_events([trig(i, "wf_batch") for i in ids]))
    assert {e["status"] for e in events} == {"success"}
    assert metrics.counts["smartmca.poller.fallbacks"] == 6
    for execution_id in ids:
        assert gets_of(emu, execution_id, before)


def test_a_stalled_poller_degrades_to_per_execution_gets(
    emu: Emulator, metrics: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = start(emu, "wf_batch", 4)

    async def hangs(self: Any, client: Any) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(poller.ExecutionPoller, "_round", hangs)
    started = time.monotonic()
    events = asyncio.run(all_events([trig(i, "wf_batch") for i in ids]))
    assert {e["status"] for e in events} == {"success"}
    # Grace: two request timeouts (2 s each here) and two intervals, then each wait polls alone.
    assert time.monotonic() - started < 2 * 2 + 2 * POLL + 3
    assert metrics.counts["smartmca.poller.fallbacks"] == 4


def test_deadlines_still_end_waits_at_the_deadline(emu: Emulator) -> None:
    ids = start(emu, "wf_forever", 3)
    started = time.monotonic()
    events = asyncio.run(all_events([trig(i, "wf_forever", deadline_in=1.0, poll=30) for i in ids]))
    assert [e["status"] for e in events] == ["timeout"] * 3
    assert time.monotonic() - started < 2.5  # at the deadline, not a 30 s poll later


def test_nothing_leaks_after_the_last_wait_or_across_event_loops(emu: Emulator) -> None:
    ids = start(emu, "wf_batch", 8)
    results: dict[str, Any] = {}

    def in_a_thread(name: str, subset: list[str]) -> None:
        async def main() -> list[dict[str, Any]]:
            tasks = [asyncio.ensure_future(first_event(trig(i, "wf_batch"))) for i in subset]
            await asyncio.sleep(POLL)
            results[name + "_pollers"] = len(context.current().pollers)  # this loop's own poller
            return await all_events_of(tasks)

        try:
            results[name] = asyncio.run(main())
        except BaseException as exc:  # reported below
            results[name] = exc

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        threads = [threading.Thread(target=in_a_thread, args=(n, ids[k::2])) for k, n in enumerate("ab")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        gc.collect()
    for name in "ab":
        assert not isinstance(results[name], BaseException), results[name]
        assert {e["status"] for e in results[name]} == {"success"}
        assert results[name + "_pollers"] == 1
    assert not [w for w in caught if "Unclosed" in str(w.message) or "never awaited" in str(w.message)]
    # The loops are gone, and so is everything kept for them.
    assert not any(c.pollers or c.budgets or c.lookups or c.open_sessions for c in context._CONTEXTS.values())


def test_a_cancelled_last_wait_still_releases_the_poller_and_session(emu: Emulator) -> None:
    (execution_id,) = start(emu, "wf_forever")

    async def main() -> None:
        tasks = [asyncio.ensure_future(first_event(trig(execution_id, "wf_forever"))) for _ in range(3)]
        await asyncio.sleep(3 * POLL)
        assert len(context.current().pollers) == 1 and context.current().open_sessions == 1
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert len(context.current().pollers) == 0 and context.current().open_sessions == 0

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        asyncio.run(main())
        gc.collect()
    assert not [w for w in caught if "Unclosed" in str(w.message)]


def test_one_context_per_event_loop_keys_each_registry_by_its_rule(
    emu: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another connection with the same key and another timeout: its own lookup and poller (its
    # waits are read with its own settings), but the key's one budget and the one session.
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_SAME_KEY", conn_json(emu, KEY, timeout=3))
    ids = start(emu, "wf_forever", 4)
    contexts: list[context.TriggererContext] = []

    def other(execution_id: str) -> ExecutionTrigger:
        return ExecutionTrigger(
            "smartmca_same_key", execution_id, POLL, time.time() + 2, workflow_type="wf_forever"
        )

    async def main() -> list[dict[str, Any]]:
        shared = context.current()
        contexts.append(shared)
        assert context.current() is shared
        triggers = [trig(i, "wf_forever", deadline_in=2) for i in ids[:2]] + [other(i) for i in ids[2:]]
        tasks = [asyncio.ensure_future(first_event(t)) for t in triggers]
        await asyncio.sleep(3 * POLL)
        assert len(shared.pollers) == 2 and shared.open_sessions == 1
        assert list(shared.budgets) == [hashlib.sha256(KEY.encode()).hexdigest()]
        assert KEY not in repr([*shared.pollers, *shared.budgets, *shared.lookups, shared])
        events = await all_events_of(tasks)
        assert not shared.pollers and not shared.lookups and shared.open_sessions == 0
        return events

    async def remember() -> None:
        contexts.append(context.current())

    assert [e["status"] for e in asyncio.run(main())] == ["timeout"] * 4
    asyncio.run(remember())
    assert contexts[0] is not contexts[1]  # one per event loop


def test_an_event_watcher_shares_the_waits_session_and_budget(emu: Emulator) -> None:
    from airflow_provider_smartmca.triggers import ExecutionEventTrigger

    ids = start(emu, "wf_forever", 3)
    # The watcher's first window list is refused: every wait on the key pauses with it.
    emu.add_fault("status", route="list_executions", query={"status": "completed"}, status=429, retry_after=1)
    before = emu.requests[-1].id

    async def main() -> set[tuple[int, int]]:
        shared = context.current()
        waits = [asyncio.ensure_future(first_event(trig(i, "wf_forever", deadline_in=3))) for i in ids]
        watcher = ExecutionEventTrigger(workflow_type="wf_forever", poll_interval=POLL).run()
        watching = asyncio.ensure_future(watcher.__anext__())
        seen = set()
        await asyncio.sleep(POLL)  # every trigger has started
        while not all(w.done() for w in waits):
            seen.add((shared.open_sessions, len(shared.budgets)))
            await asyncio.sleep(POLL / 4)
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        await watcher.aclose()
        assert {e["status"] for e in await all_events_of(waits)} == {"timeout"}
        return seen

    assert asyncio.run(main()) == {(1, 1)}  # one session, one budget, all along
    new = [r for r in emu.requests if r.id > before]
    (refusal,) = [r for r in new if r.status == 429]
    during = [r for r in new if refusal.time + 0.2 < r.time < refusal.time + 0.9]
    assert not during, [(r.route, r.time - refusal.time) for r in during]  # nobody sent meanwhile
    assert any(r.route == "get_execution" or r.query.get("status") == "running" for r in new)


# --- kwargs --------------------------------------------------------------------------------------


def test_workflow_type_is_optional_and_old_kwargs_stay_valid() -> None:
    old = {
        "conn_id": "smartmca_default",
        "execution_id": "exec_1",
        "poll_interval": 5.0,
        "deadline": None,
        "failure_statuses": [],
        "version": 1,
    }
    assert ExecutionTrigger(**old).workflow_type is None
    assert ExecutionTrigger(**old).serialize()[1] == old  # unchanged: a downgrade can rebuild it
    new = ExecutionTrigger(**old, workflow_type="wf_batch").serialize()[1]
    assert new == {**old, "workflow_type": "wf_batch"}
    assert ExecutionTrigger(**new).serialize()[1] == new
    for bad in ("", "a/b", 12, "../x"):
        with pytest.raises(SmartMCAValidationError, match="'workflow_type'"):
            ExecutionTrigger(**old, workflow_type=bad)


def test_key_never_leaks_through_the_poller(
    emu: Emulator, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    ids = start(emu, "wf_fails", 3)
    emu.add_fault("status", route="list_executions", status=429, retry_after=0.3, count=1)
    emu.add_fault("echo", route="list_executions", echo_in="json_body", status=502, count=1)
    with caplog.at_level(logging.DEBUG):
        events = asyncio.run(all_events([trig(i, "wf_fails") for i in ids]))
    assert {e["status"] for e in events} == {"failure"}
    logs = caplog.text + "".join(capfd.readouterr())
    assert "polling again in" in logs
    assert KEY not in logs and KEY not in json.dumps(events)
    assert KEY[:8] not in json.dumps(events)


# --- the worker passes the workflow type -----------------------------------------------------


class _TaskInstance:
    try_number = 1

    def xcom_push(self, key: str, value: Any) -> None:
        pass


def test_the_operator_and_the_sensor_defer_with_the_workflow_type(emu: Emulator) -> None:
    from airflow.providers.common.compat.sdk import TaskDeferred

    from airflow_provider_smartmca.operators import TriggerWorkflowOperator
    from airflow_provider_smartmca.sensors import ExecutionSensor

    operator = TriggerWorkflowOperator(
        task_id="start",
        workflow_type="wf_forever",
        entity_type="deal",
        entity_id="deal_1",
        deferrable=True,
        poll_interval=1,
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({"ti": _TaskInstance()})  # type: ignore[arg-type]
    trigger = deferred.value.trigger
    assert isinstance(trigger, ExecutionTrigger)
    assert trigger.serialize()[1]["workflow_type"] == "wf_forever"

    sensor = ExecutionSensor(
        task_id="wait", execution_id=trigger.execution_id, deferrable=True, poke_interval=1, timeout=60
    )
    with pytest.raises(TaskDeferred) as deferred:
        sensor.execute({})  # type: ignore[arg-type]
    assert deferred.value.trigger.serialize()[1]["workflow_type"] == "wf_forever"


def test_an_odd_workflow_id_from_the_server_only_costs_coalescing() -> None:
    from airflow_provider_smartmca.triggers.execution import usable_workflow_type

    assert usable_workflow_type("wf_batch") == "wf_batch"
    assert usable_workflow_type(None) is None
    assert usable_workflow_type("a/b") is None and usable_workflow_type(12) is None


def test_coalescing_can_be_switched_off(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    # The per-execution polling of earlier releases, kept selectable (the benchmark's baseline).
    monkeypatch.setattr(ExecutionTrigger, "coalesce", False)
    ids = start(emu, "wf_batch", 4)
    before = emu.requests[-1].id
    events = asyncio.run(all_events([trig(i, "wf_batch") for i in ids]))
    assert {e["status"] for e in events} == {"success"}
    assert {r.route for r in emu.requests if r.id > before} == {"get_execution"}


# --- the request budget on its own (what issue 13's event trigger reuses) ----------------------


async def _settings() -> Any:
    return await context.current().settings("smartmca_default")


def _get(settings: Any, execution_id: str) -> Any:
    from airflow_provider_smartmca.client import protocol

    return protocol.build_request(settings, "get_execution", path_params={"execution_id": execution_id})


def test_budget_many_429s_at_once_pause_the_key_once(emu: Emulator, metrics: Metrics) -> None:
    (execution_id,) = start(emu, "wf_forever")
    emu.add_fault("status", route="get_execution", status=429, retry_after=1, count=5)

    async def main() -> tuple[list[int], float, float]:
        settings = await _settings()
        shared = context.current().budget(settings)
        assert context.current().budget(settings) is shared  # one per key in the loop
        async with aio.shared_session(settings) as client:
            request = _get(settings, execution_id)
            answers = await asyncio.gather(*(shared.send(client, request) for _ in range(5)))
            paused = shared.pause_left()
            started = time.monotonic()
            await shared.send(client, request)  # waits the pause out, once
            return [a.status for a in answers], paused, time.monotonic() - started

    statuses, paused, waited = asyncio.run(main())
    assert statuses == [429] * 5
    assert 0.8 < paused <= 1.0  # five refusals, one pause: not five seconds
    assert 0.7 < waited < 1.5
    assert metrics.counts["smartmca.rate_limited"] == 5
    assert metrics.counts["smartmca.requests.get_execution"] == 6


def test_budget_sends_nothing_when_the_pause_outlasts_the_callers_time(emu: Emulator) -> None:
    from airflow_provider_smartmca.errors import SmartMCARateLimitError

    (execution_id,) = start(emu, "wf_forever")

    async def main() -> None:
        settings = await _settings()
        shared = context.current().budget(settings)
        shared.pause(5)
        before = len(emu.requests)
        async with aio.shared_session(settings) as client:
            started = time.monotonic()
            with pytest.raises(SmartMCARateLimitError, match="not sent") as refused:
                await shared.send(client, _get(settings, execution_id), timeout=0.5)
            assert time.monotonic() - started < 0.1  # at once, not after the pause
        assert refused.value.retry_after and refused.value.retry_after > 4
        assert len(emu.requests) == before

    asyncio.run(main())


def test_budget_bounds_concurrency_and_vanishes_with_its_last_holder(emu: Emulator) -> None:
    (execution_id,) = start(emu, "wf_forever")
    emu.add_fault("latency", route="get_execution", latency=0.3, count=6)

    async def main() -> float:
        settings = await _settings()
        narrow = budget.RequestBudget(settings, concurrency=2)
        async with aio.shared_session(settings) as client:
            request = _get(settings, execution_id)
            started = time.monotonic()
            await asyncio.gather(*(narrow.send(client, request) for _ in range(6)))
            elapsed = time.monotonic() - started
        shared = context.current().budget(settings)
        assert len(context.current().budgets) == 1
        del shared
        gc.collect()
        assert not context.current().budgets
        return elapsed

    assert asyncio.run(main()) >= 3 * 0.3 - 0.05  # three waves of two


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_round_of_many_waits_never_blocks_the_loop(emu: Emulator, loop_blocks: list[str]) -> None:
    ids = start(emu, "wf_staggered", 150)
    triggers = [trig(ids[i % len(ids)], "wf_staggered", deadline_in=30) for i in range(300)]

    async def main() -> list[dict[str, Any]]:
        tasks = []
        for i, trigger in enumerate(triggers):
            tasks.append(asyncio.ensure_future(first_event(trigger)))
            if i % 20 == 19:
                await asyncio.sleep(0)  # added in batches, as the triggerer does
        return await all_events_of(tasks)

    gc.collect()
    gc.freeze()  # Airflow's import heap makes full GC passes stop the world; see test_trigger.py
    try:
        events = asyncio.run(main(), debug=True)
    finally:
        gc.unfreeze()
    assert {e["status"] for e in events} <= {"success", "failure"} and len(events) == 300
    assert not loop_blocks, loop_blocks[:5]


# --- what a coalesced wait logs ---------------------------------------------------------------


class _Levels(logging.Handler):
    """(level, message) of every record of one stdlib logger."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


def test_list_readings_log_no_node_count_and_only_status_changes_at_info(emu: Emulator) -> None:
    ids = start(emu, "wf_staggered", 4)  # 1 s nodes at a 0.2 s poll: the current node moves between rounds
    triggers = [trig(i, "wf_staggered") for i in ids]
    records, logger = _Levels(), logging.getLogger("tests.triggers.progress")
    logger.addHandler(records)
    level, logger.level, logger.propagate = logger.level, logging.DEBUG, False
    for trigger in triggers:
        trigger._log = logger  # a plain logger at DEBUG: Airflow's drops debug before any handler
    try:
        events = asyncio.run(all_events(triggers))
    finally:
        logger.removeHandler(records)
        logger.setLevel(level)
    assert {e["status"] for e in events} <= {"success", "failure"}
    for execution_id, event in zip(ids, events, strict=True):
        lines = [(lv, m) for lv, m in records.lines if m.startswith(f"SmartMCA execution {execution_id} ")]
        # A list item has no node list: its line names no count ("0/3 nodes done" would be false).
        listed = [m for _, m in lines if "nodes done" not in m]
        assert listed and all(", current node: " in m or " pending" in m for m in listed), lines
        assert not [m for m in listed if "running: 0/" in m]
        # Info: each line changes the status, or gives a count of nodes done (a GET's reading).
        status = None
        for lv, message in lines:
            now = message.split()[3].rstrip(":,")
            if lv == logging.INFO:
                assert now != status or "nodes done" in message, lines
            else:
                assert lv == logging.DEBUG and now == status and "nodes done" not in message, lines
            status = now
        # The last line is the GET that ended the wait, at info, with its nodes counted.
        assert lines[-1][0] == logging.INFO and "/3 nodes done" in lines[-1][1]
        assert event["execution"]["progress"] in lines[-1][1]
    # Somewhere the current node moved between two list readings: logged, at debug.
    assert [lv for lv, _ in records.lines].count(logging.DEBUG) >= 1, records.lines


def test_a_get_after_list_readings_logs_its_count_then_lists_stay_quiet() -> None:
    from airflow_provider_smartmca.client.contract import parse_execution
    from airflow_provider_smartmca.client.executions import ExecutionWatch, progress

    def reading(status: str, current: str | None, nodes: list[str] | None) -> Any:
        data: dict[str, Any] = {
            "executionId": "exec_1",
            "status": status,
            "nodeCount": 3,
            "currentNode": current,
        }
        if nodes is not None:
            data["nodes"] = [{"name": f"n{k}", "status": s} for k, s in enumerate(nodes)]
        return parse_execution("get_execution", data)

    listed = reading("running", "n1", None)
    assert progress(listed) == "execution exec_1 running, current node: n1"
    got = reading("running", "n1", ["completed", "running", "pending"])
    assert progress(got) == "execution exec_1 running: 1/3 nodes done, current node: n1"

    records, logger = _Levels(), logging.getLogger("tests.triggers.watch")
    logger.addHandler(records)
    logger.setLevel(logging.DEBUG)
    try:
        watch = ExecutionWatch("exec_1", logger)
        watch.seen(reading("pending", None, None))  # first reading: info
        watch.seen(listed)  # pending -> running: info
        watch.seen(listed)  # nothing changed: nothing
        watch.seen(reading("running", "n2", None))  # only the current node moved: debug
        watch.seen(got)  # a count of nodes done: info
        watch.seen(reading("running", "n1", None))  # a list item after a GET: count unknown, debug
        watch.seen(reading("running", "n2", ["completed", "completed", "running"]))  # 2/3: info
        watch.seen(reading("completed", None, ["completed"] * 3))  # info
    finally:
        logger.removeHandler(records)
    assert [lv for lv, _ in records.lines] == [
        logging.INFO,
        logging.INFO,
        logging.DEBUG,
        logging.INFO,
        logging.DEBUG,
        logging.INFO,
        logging.INFO,
    ]
    assert watch.last_status == "completed"
    assert watch.last is not None and watch.last["progress"] == "execution exec_1 completed: 3/3 nodes done"
