"""Issue 6 scenarios: the provider inside real Airflow 3 components against the emulator process.

Each scenario asserts DAG-run and task states, XCom values (REST API), and what the emulator
received (request log, execution counts).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.harness import E2EError, RunObserver, task_process_pids, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

EXEC_PATH = "/api/public/v1/workflows/executions/"
OUR_OPERATORS = {
    "TriggerWorkflowOperator",
    "ChangeApplicationStatusOperator",
    "AdvanceApplicationStageOperator",
    "AssignUnderwriterOperator",
}
#: Wait for an execution another task started (the application pipeline example's last step).
OUR_SENSORS = {"ExecutionSensor"}


# --------------------------------------------------------------------------- helpers
def posts(reqs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in reqs if r["method"] == "POST"]


def gets_of(reqs: list[dict[str, Any]], execution_id: str) -> list[dict[str, Any]]:
    return [r for r in reqs if r["method"] == "GET" and r["path"] == EXEC_PATH + execution_id]


def polls_of(reqs: list[dict[str, Any]], execution: dict[str, Any]) -> list[dict[str, Any]]:
    """The requests that read ``execution``: its GETs, or (coalesced waiting) list pages of its workflow."""
    lists = [
        r
        for r in reqs
        if r["method"] == "GET"
        and r["path"] == EXEC_PATH.rstrip("/")
        and (r.get("query") or {}).get("workflow_type") == execution.get("workflowId")
    ]
    return gets_of(reqs, execution["executionId"]) + lists


def assert_all_success(s: Stack, runs: list[tuple[str, str]], states: dict[tuple[str, str], str]) -> None:
    bad = {k: v for k, v in states.items() if v != "success"}
    assert not bad, f"DAG runs not successful: {bad}"
    for dag_id, run_id in runs:
        tis = s.airflow.task_instances(dag_id, run_id)
        not_ok = {ti["task_id"]: ti["state"] for ti in tis if ti["state"] != "success"}
        assert not not_ok, f"{dag_id}: task states {not_ok}"


def assert_result(s: Stack, dag_id: str, run_id: str, task_id: str, map_index: int = -1) -> dict[str, Any]:
    """The task's return value is the completed execution, and the emulator knows it."""
    value = s.airflow.xcom(dag_id, run_id, task_id, map_index)
    assert isinstance(value, dict), f"{dag_id}.{task_id} XCom return_value: {value!r}"
    assert value.get("status") == "completed", value
    assert value.get("executionId"), value
    return value


def executions_by_entity(s: Stack) -> Counter[str]:
    return Counter(e["entityId"] for e in s.emulator.executions())


def wait_deferred(
    s: Stack, dag_id: str, run_id: str, n: int, observer: RunObserver, timeout: float = 240
) -> None:
    """Wait until ``n`` task instances of the run are in state ``deferred`` at the same time."""

    def check() -> bool:
        tis = s.airflow.task_instances(dag_id, run_id)
        observer.observe(dag_id, run_id, tis)
        states = Counter(ti["state"] for ti in tis)
        if states.get("failed") or states.get("up_for_retry"):
            raise E2EError(f"tasks failed while waiting for {n} deferred: {dict(states)}")
        return states.get("deferred", 0) >= n

    wait_for(f"{n} deferred tasks in {dag_id}", check, timeout, interval=1, on_timeout=s.airflow.tails(30))


def runs_of(s: Stack, dag_ids: list[str]) -> list[tuple[str, str]]:
    return [(d, s.airflow.trigger(d)) for d in dag_ids]


# --------------------------------------------------------------------------- scenarios
def test_1_happy_path_all_example_dags_deferrable(e2e: Stack) -> None:
    """Every example DAG (and the e2e happy DAG) succeeds with deferrable operators; the polling
    GETs arrive while the task is ``deferred`` and no task process exists for it."""
    s = e2e
    dags = s.airflow.api("GET", "dags?limit=200")["dags"]
    example_ids = sorted(
        d["dag_id"] for d in dags if (d.get("relative_fileloc") or "").split("/")[-1] in s.example_files
    )
    assert len(example_ids) >= 3 or not s.example_files, f"example DAGs not all parsed: {example_ids}"
    dag_ids = [*example_ids, "smartmca_e2e_happy"]
    s.airflow.wait_dags(dag_ids)
    s.log(f"happy path over {dag_ids}")
    # Examples get a logical date (the daily one derives its application ids from it).
    now = datetime.now(UTC).isoformat()
    runs = [(d, s.airflow.trigger(d, logical_date=now if d in example_ids else None)) for d in dag_ids]
    obs = RunObserver(scan_processes=True)
    states = s.airflow.wait_runs(runs, 420, obs)
    assert_all_success(s, runs, states)

    reqs = s.emulator.requests()
    execs = s.emulator.executions()
    known = {e["executionId"] for e in execs}
    starts = 0
    started_only: set[str] = set()  # started with wait_for_completion=False: an ExecutionSensor waits
    waited: set[str] = set()
    for dag_id, run_id in runs:
        for ti in s.airflow.task_instances(dag_id, run_id):
            if ti["operator"] not in OUR_OPERATORS | OUR_SENSORS:
                continue
            key = (dag_id, run_id, ti["task_id"], int(ti["map_index"]))
            if ti["operator"] in OUR_OPERATORS:
                starts += 1
                # Exactly-once: the execution id pushed to XCom is the one returned.
                eid = s.airflow.xcom_key(dag_id, run_id, ti["task_id"], "execution_id", key[3])
                answer = s.airflow.xcom(dag_id, run_id, ti["task_id"], key[3])
                assert isinstance(answer, dict) and answer.get("executionId") == eid, (key, answer)
                if answer.get("status") != "completed":  # the 202 answer: the task did not wait
                    assert key not in obs.seen("deferred"), f"{key} returned {answer} but deferred"
                    started_only.add(eid)
                    continue
            assert key in obs.seen("deferred"), f"{key} never observed deferred: {obs.timeline.get(key)}"
            assert key not in obs.deferred_with_process, f"{key}: a task process existed while deferred"
            window = obs.deferred_window(key)
            assert window is not None
            result = assert_result(s, dag_id, run_id, ti["task_id"], key[3])
            eid = result["executionId"]
            assert eid in known, f"{eid} unknown to the emulator"
            in_window = [r for r in polls_of(reqs, result) if window[0] <= r["time"] <= window[1]]
            assert in_window, f"{key}: {eid} not read (GET or list page) while observed deferred {window}"
            waited.add(eid)
    assert starts >= 1
    assert started_only <= waited, f"started, never waited for: {started_only - waited}"
    # One POST per operator task, one execution per POST, nothing failed at the API.
    assert len(posts(reqs)) == starts == len(execs), (len(posts(reqs)), starts, len(execs))
    assert not [r for r in reqs if (r["status"] or 0) >= 400], "unexpected API errors"


def test_2_triggerer_killed_with_20_deferred_tasks(e2e: Stack) -> None:
    s = e2e
    dag = "smartmca_e2e_fanout20"
    s.airflow.wait_dags([dag])
    (run,) = runs_of(s, [dag])
    obs = RunObserver()
    wait_deferred(s, dag, run[1], 20, obs)
    reqs = s.emulator.requests()
    assert len(posts(reqs)) == 20
    cutoff = max(r["time"] for r in posts(reqs))
    old = s.airflow.procs["triggerer"]
    s.log("kill -9 triggerer")
    old.kill9()
    old.expected_dead = True  # type: ignore[attr-defined]
    time.sleep(3)
    s.airflow.start("triggerer", name="triggerer-2")
    states = s.airflow.wait_runs([run], 360, obs)
    assert_all_success(s, [run], states)
    reqs = s.emulator.requests()
    assert len(posts(reqs)) == 20, "a POST was re-sent"
    assert not [r for r in posts(reqs) if r["time"] > cutoff]
    by_entity = executions_by_entity(s)
    assert len(by_entity) == 20 and set(by_entity.values()) == {1}, by_entity
    ids = set()
    for i in range(20):
        ids.add(assert_result(s, dag, run[1], f"fan_{i:02d}")["executionId"])
    assert len(ids) == 20
    # The new triggerer really did the polling after the kill.
    assert [r for r in reqs if r["method"] == "GET" and r["time"] > cutoff + 3]
    tries = {ti["task_id"]: ti["try_number"] for ti in s.airflow.task_instances(dag, run[1])}
    assert set(tries.values()) == {1}, tries


@pytest.mark.parametrize(
    "held_route",
    [
        # The 202 reached the task (its execution id is recorded), then the process dies while
        # its first GET of the execution is held: the retry reattaches via the recorded id.
        "get_execution",
        # The POST was processed but the process dies before its 202 arrives: nothing is
        # recorded, the retry must find the execution again (lookup) instead of re-sending.
        "trigger",
    ],
)
def test_3_worker_killed_after_the_202_retry_reattaches(e2e: Stack, held_route: str) -> None:
    s = e2e
    dag = "smartmca_e2e_worker_kill"
    s.airflow.wait_dags([dag])
    method = "POST" if held_route == "trigger" else "GET"
    s.emulator.fault(kind="hold", route=held_route, method=method, count=1, holdTimeout=120)
    (run,) = runs_of(s, [dag])
    wait_for(
        f"{method} {held_route} held", lambda: s.emulator.admin("GET", "held")["held"] >= 1, 180, interval=1
    )
    assert len(s.emulator.executions()) == 1  # the execution exists server-side
    ti = s.airflow.task_instances(dag, run[1])[0]
    pids = wait_for("task process", lambda: task_process_pids(ti["id"]), 30)
    s.log(f"kill -9 task process {pids} of {ti['id']} (held {method} {held_route})")
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    time.sleep(1)
    s.emulator.admin("POST", "release")
    obs = RunObserver()
    states = s.airflow.wait_runs([run], 300, obs)
    assert_all_success(s, [run], states)
    tis = s.airflow.task_instances(dag, run[1])
    assert tis[0]["try_number"] == 2, "the task was not retried exactly once"
    reqs = s.emulator.requests()
    assert len(posts(reqs)) == 1, (
        f"the retry re-sent the POST: {[(r['time'], r['path']) for r in posts(reqs)]}"
    )
    execs = s.emulator.executions()
    assert len(execs) == 1, execs
    result = assert_result(s, dag, run[1], "wk_00")
    assert result["executionId"] == execs[0]["executionId"]
    assert s.airflow.xcom_key(dag, run[1], "wk_00", "execution_id") == result["executionId"]


STORM_DAG = "smartmca_e2e_storm"


def start_storm(s: Stack) -> None:
    """30% of GETs answer 503; of the rest 1/7 answer 429 (10% of all GETs), Retry-After: 1."""
    s.emulator.fault(kind="status", status=503, method="GET", route="*", probability=0.3, seed=6)
    s.emulator.fault(
        kind="status", status=429, method="GET", route="*", probability=0.1 / 0.7, seed=7, retryAfter=1
    )


def assert_storm_weathered(s: Stack, runs: list[tuple[str, str]]) -> None:
    """Two runs of the storm DAG: every task ran once and returned its result, the storm hit (503s
    and 429s), and each of the 10 tasks sent one POST."""
    for _dag_id, run_id in runs:
        for ti in s.airflow.task_instances(STORM_DAG, run_id):
            assert ti["try_number"] == 1, f"{ti['task_id']} retried"
            assert_result(s, STORM_DAG, run_id, ti["task_id"])
    reqs = s.emulator.requests()
    codes = Counter(r["status"] for r in reqs if r["method"] == "GET")
    s.log(f"storm GET statuses: {dict(codes)}")
    assert codes[503] >= 3 and codes[429] >= 1, codes
    assert len(posts(reqs)) == 10


def test_4_api_storm_503_and_429(e2e: Stack) -> None:
    s = e2e
    s.airflow.wait_dags([STORM_DAG])
    start_storm(s)
    runs = runs_of(s, [STORM_DAG, STORM_DAG])
    obs = RunObserver()
    states = s.airflow.wait_runs(runs, 420, obs)
    assert_all_success(s, runs, states)
    assert_storm_weathered(s, runs)
    assert len(s.emulator.executions()) == 10


def test_5_key_revoked_mid_run_fails_fast(e2e: Stack) -> None:
    s = e2e
    dag = "smartmca_e2e_revoke"
    s.airflow.wait_dags([dag])
    (run,) = runs_of(s, [dag])
    obs = RunObserver()
    wait_deferred(s, dag, run[1], 4, obs)
    s.emulator.admin("POST", "keys/revoke", {"key": "full"})
    revoked_at = time.time()
    states = s.airflow.wait_runs([run], 240, obs)
    assert states[run] == "failed"
    elapsed = time.time() - revoked_at
    tis = s.airflow.task_instances(dag, run[1])
    assert {ti["state"] for ti in tis} == {"failed"}, [(t["task_id"], t["state"]) for t in tis]
    # Fast: well before the executions would have ended (~54 s), bounded by one poll interval.
    assert elapsed < 45, f"took {elapsed:.0f}s to fail after the revoke"
    reqs = s.emulator.requests()
    unauthorized = Counter(r["path"] for r in reqs if r["status"] == 401)
    s.log(f"401s per path: {dict(unauthorized)}")
    assert unauthorized, "no 401 seen"
    assert all(n <= 3 for n in unauthorized.values()), unauthorized
    assert sum(unauthorized.values()) <= 3 * len(tis)
    assert len(posts(reqs)) == 4
    # The auth error reached the task log.
    log = s.airflow.task_log(dag, run[1], tis[0]["task_id"])
    assert "401" in log or "nauthori" in log or "revoked" in log.lower(), log[-2000:]


def test_6_two_triggerers_one_killed(e2e: Stack) -> None:
    s = e2e
    af = s.airflow
    dag = "smartmca_e2e_ha"
    af.wait_dags([dag])
    current = next(n for n in reversed(af.procs) if n.startswith("triggerer") and af.procs[n].alive())
    af.start("triggerer", name="triggerer-ha")

    def alive_triggerers() -> list[int]:
        rows = s.pg.query(
            "select id from job where job_type = 'TriggererJob' and state = 'running' "
            "and latest_heartbeat > now() - interval '5 seconds' order by id"
        )
        return [r[0] for r in rows]

    ids = wait_for(
        "two live triggerers", lambda: (lambda a: a if len(a) == 2 else None)(alive_triggerers()), 120
    )
    job_to_proc = {ids[0]: current, ids[1]: "triggerer-ha"}  # started in that order
    (run,) = runs_of(s, [dag])
    obs = RunObserver()
    wait_deferred(s, dag, run[1], 10, obs)

    def holders() -> Counter[int]:
        rows = s.pg.query("select triggerer_id from trigger where triggerer_id is not null")
        return Counter(r[0] for r in rows)

    held = wait_for(
        "10 assigned triggers", lambda: (lambda h: h if sum(h.values()) == 10 else None)(holders()), 60
    )
    victim_job = held.most_common(1)[0][0]
    victim = job_to_proc[victim_job]
    survivor_job = next(j for j in ids if j != victim_job)
    s.log(f"trigger assignment {dict(held)}; kill -9 {victim} (job {victim_job})")
    cutoff = max(r["time"] for r in posts(s.emulator.requests()))
    af.procs[victim].kill9()
    af.procs[victim].expected_dead = True  # type: ignore[attr-defined]
    # The survivor takes the orphaned triggers over (after the health-check threshold).
    wait_for(
        "survivor to own every remaining trigger",
        lambda: set(holders()) <= {survivor_job},
        120,
        interval=1,
    )
    states = af.wait_runs([run], 360, obs)
    assert_all_success(s, [run], states)
    reqs = s.emulator.requests()
    assert len(posts(reqs)) == 10
    assert not [r for r in posts(reqs) if r["time"] > cutoff]
    by_entity = executions_by_entity(s)
    assert len(by_entity) == 10 and set(by_entity.values()) == {1}, by_entity
    for i in range(10):
        assert_result(s, dag, run[1], f"ha_{i:02d}")
    assert af.procs[next(p for p in job_to_proc.values() if p != victim)].alive()


# --------------------------------------------------------------------------- event-driven scheduling
# Issue 13: DAGs scheduled on an Asset whose AssetWatcher runs ExecutionEventTrigger. These run on
# the event stack (tests/e2e/conftest.py: USE_JOB_SCHEDULE on, only asset-scheduled DAGs parsed).
FUNDING_DAG = "example_smartmca_funding_on_onboarding"
ONBOARDING_URI = "smartmca://workflows/wf_deal_onboarding/completed"
EVENTS_DAG = "smartmca_e2e_events"
MEDIUM_URI = "smartmca://workflows/wf_e2e_medium/completed"
#: Both watchers of the event stack poll every 2 s (AIRFLOW_VAR_SMARTMCA_POLL_INTERVAL, the test DAG).
WATCH_POLL = 2.0
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


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def payload_of(event: dict[str, Any]) -> dict[str, Any]:
    """The trigger's payload inside an asset event: Airflow stores ``{"from_trigger", "payload"}``."""
    extra = event.get("extra") or {}
    payload = extra.get("payload")
    assert extra.get("from_trigger") is True and isinstance(payload, dict), f"not a watcher event: {event}"
    return payload


def fired_by_execution(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Asset events by the execution they report, oldest first."""
    out: dict[str, list[dict[str, Any]]] = {}
    for event in sorted(events, key=lambda e: (_ts(e["timestamp"]), e["id"])):
        out.setdefault(str(payload_of(event)["executionId"]), []).append(event)
    return out


def last_watermark_save(s: Stack, asset_id: int) -> datetime | None:
    """When the watcher last saved its watermark in Airflow's asset_state_store (3.3+), or None."""
    rows = s.pg.query("select max(updated_at) from asset_state_store where asset_id = %s", (asset_id,))
    return rows[0][0] if rows else None


def wait_watcher_started(s: Stack, asset_id: int) -> datetime:
    """A watermark saved in the state store: the watcher finished its first poll (its start point)."""
    return wait_for(
        f"the watcher of asset {asset_id} to save a watermark",
        lambda: last_watermark_save(s, asset_id),
        240,
        interval=1,
        on_timeout=s.airflow.tails(40),
    )


TERMINAL_STATES = ("success", "failed")


class Watched:
    """An asset with a watcher and the DAG scheduled on it, from a baseline: only what is new counts
    (the event stack is shared by the event scenarios and is not reset between them)."""

    def __init__(self, s: Stack, uri: str, dag_id: str):
        self.s, self.af, self.dag_id = s, s.airflow, dag_id
        self.asset = self.af.asset_id(uri)
        self.old_events = {e["id"] for e in self.af.asset_events(self.asset)}
        self.old_runs = {r["dag_run_id"] for r in self.af.dag_runs(dag_id)}

    def events(self) -> list[dict[str, Any]]:
        return [e for e in self.af.asset_events(self.asset) if e["id"] not in self.old_events]

    def fired(self) -> dict[str, list[dict[str, Any]]]:
        return fired_by_execution(self.events())

    def wait_fired(self, ids: set[str], what: str, timeout: float = 240) -> None:
        wait_for(what, lambda: ids <= set(self.fired()), timeout, interval=0.5, on_timeout=self.af.tails(40))

    def runs(self) -> list[dict[str, Any]]:
        return [r for r in self.af.dag_runs(self.dag_id) if r["dag_run_id"] not in self.old_runs]

    def consumed(self, runs: list[dict[str, Any]]) -> Counter[int]:
        """How many of ``runs`` consumed each asset event (by event id)."""
        out: Counter[int] = Counter()
        for run in runs:
            out.update(e["id"] for e in self.af.upstream_asset_events(self.dag_id, run["dag_run_id"]))
        return out

    def settled_runs(self, timeout: float = 300, all_consumed: bool = False) -> list[dict[str, Any]]:
        """The new runs once none is queued or running (and, if asked, every new event is consumed)."""

        def check() -> list[dict[str, Any]] | None:
            self.af.check_alive()
            runs = self.runs()
            if any(r["state"] not in TERMINAL_STATES for r in runs):
                return None
            if all_consumed and not {e["id"] for e in self.events()} <= set(self.consumed(runs)):
                return None
            return runs or None

        return list(wait_for(f"{self.dag_id} runs", check, timeout, interval=1, on_timeout=self.af.tails(40)))

    def flush(self, workflow: str, entity_id: str) -> tuple[str, list[dict[str, Any]]]:
        """One more execution, ending alone: its run takes every event still waiting for a run.

        Airflow 3.3.2 (without apache/airflow#62501) dates a DAG's run queue entry at the *first*
        queued event and consumes only events up to that date; later events of the same burst stay
        unconsumed, without a queue entry, until another event arrives. Delayed, never dropped."""
        execution_id = self.s.emulator.start_execution(workflow, "deal", entity_id)
        self.wait_fired({execution_id}, f"the flush execution {execution_id} to fire")
        return execution_id, self.settled_runs(all_consumed=True)


def test_7_event_driven_one_asset_event_per_execution(events: Stack) -> None:
    """Executions started through the emulator after the watcher started give one asset event each;
    the funding example's runs (Airflow may merge events into one run) fund every execution once."""
    s, af = events, events.airflow
    af.wait_dags([FUNDING_DAG, EVENTS_DAG])
    w = Watched(s, ONBOARDING_URI, FUNDING_DAG)
    started_at = wait_watcher_started(s, w.asset)
    s.log(f"onboarding watcher started (watermark saved {started_at.isoformat()})")
    ids: list[str] = []
    # Two waves: each ends within about one poll, the second a few polls after the first.
    for wave in range(2):
        for i in range(3):
            ids.append(s.emulator.start_execution("wf_deal_onboarding", "deal", f"deal-evt-{wave}{i}"))
        time.sleep(4 if wave == 0 else 0)
    # Not watched: another workflow on the same entity type ends too (and fails).
    other = s.emulator.start_execution("wf_deal_compliance_fail", "deal", "deal-evt-other")
    w.wait_fired(set(ids), "an asset event for each execution", 180)
    time.sleep(3)  # a few scheduler loops
    runs = w.settled_runs()
    waiting = {e["id"] for e in w.events()} - set(w.consumed(runs))
    s.log(f"{len(ids)} executions fired; {len(runs)} run(s) so far; {len(waiting)} event(s) not consumed yet")
    flush_id, _ = w.flush("wf_deal_onboarding", "deal-evt-flush")
    ids.append(flush_id)
    # Quiet for a few polls: a late repeat would show up now, and start another run.
    time.sleep(4 * WATCH_POLL)
    runs = w.settled_runs(all_consumed=True)

    fired = w.fired()
    counts = {eid: len(evs) for eid, evs in fired.items()}
    s.log(f"{len(ids)} executions -> {sum(counts.values())} asset events -> {len(runs)} DAG run(s)")
    assert counts == dict.fromkeys(ids, 1), f"expected exactly one event per execution: {counts}"
    ever = fired_by_execution(af.asset_events(w.asset))
    assert not set(s.before_watcher) & set(ever), "an execution that ended before the watcher fired"
    assert other not in ever
    # Each payload is the execution as SmartMCA reports it.
    truth = {e["executionId"]: e for e in s.emulator.executions(workflow_type="wf_deal_onboarding")}
    for eid, (event,) in fired.items():
        payload = payload_of(event)
        assert set(payload) == PAYLOAD_KEYS, payload
        want = truth[eid]
        for key in ("workflowId", "workflowName", "entityType", "entityId", "status"):
            assert payload[key] == want[key], (key, payload, want)
        assert payload["status"] == "completed"
        assert _ts(payload["startedAt"]) == _ts(want["startedAt"])
        assert _ts(payload["completedAt"]) == _ts(want["completedAt"])
        assert _ts(event["timestamp"]) >= started_at, "an event from before the watcher started"

    # Every run was started by the asset and succeeded; together the runs consumed every event
    # once and funded every execution exactly once (the task de-duplicates by executionId).
    funded: Counter[str] = Counter()
    for run in runs:
        assert run["run_type"] == "asset_triggered", run
        assert run["state"] == "success", run
        funded.update(af.xcom(FUNDING_DAG, run["dag_run_id"], "fund_onboarded_deals")["funded"])
    consumed = w.consumed(runs)
    new_events = [e for evs in fired.values() for e in evs]
    assert all(consumed[e["id"]] == 1 for e in new_events), (consumed, new_events)
    assert Counter({k: v for k, v in funded.items() if k in counts}) == Counter(ids), funded
    # The task re-read each execution through the hook.
    reqs = s.emulator.requests()
    for eid in ids:
        assert gets_of(reqs, eid), f"{eid} was never read by the funding task"


def test_8_event_driven_triggerer_killed_no_loss_bounded_repeats(events: Stack) -> None:
    assert_watcher_survives_triggerer_kill(events)


def watcher_triggerer(s: Stack, asset_id: int) -> str:
    """The live triggerer running the watcher of ``asset_id`` (its TriggererJob's unixname, see
    ``Airflow.start``)."""
    af = s.airflow
    alive = [n for n in af.procs if n.startswith("triggerer") and af.procs[n].alive()]
    rows = s.pg.query(
        "select j.unixname from trigger t join asset_watcher w on w.trigger_id = t.id "
        "join job j on j.id = t.triggerer_id where w.asset_id = %s",
        (asset_id,),
    )
    assert len(rows) == 1 and rows[0][0] in alive, f"asset {asset_id}: watcher held by {rows}, alive {alive}"
    return str(rows[0][0])


def assert_watcher_survives_triggerer_kill(events: Stack) -> None:
    """``kill -9`` of the triggerer right after the watcher fired: every execution still fires, and
    only what the watcher yielded after its last watermark save (at most one poll's events) fires
    again, once, from the new triggerer.

    Bound asserted: each execution has 1 or 2 asset events; an execution with 2 is one whose first
    event was stored after the watcher's last ``asset_state_store`` save before the kill (the
    watermark is saved one poll after its events are yielded), and its second event comes after
    the kill."""
    s, af = events, events.airflow
    af.wait_dags([FUNDING_DAG, EVENTS_DAG])
    w = Watched(s, MEDIUM_URI, EVENTS_DAG)
    wait_watcher_started(s, w.asset)
    # Batch 1 (~8 s each, started 0.5 s apart) ends across the kill; batch 2 ends while the
    # triggerer is down or after the new one took over.
    ids = []
    for i in range(8):
        ids.append(s.emulator.start_execution("wf_e2e_medium", "deal", f"deal-kill-a{i}"))
        time.sleep(0.5)
    batch1 = set(ids)
    wait_for(
        "two events of the first batch",
        lambda: len(batch1 & set(w.fired())) >= 2,
        120,
        interval=0.25,
        on_timeout=af.tails(40),
    )
    name = watcher_triggerer(s, w.asset)
    af.procs[name].kill9()
    killed_at = datetime.now(UTC)
    af.procs[name].expected_dead = True  # type: ignore[attr-defined]
    # The triggerer is dead: this is the watermark a new one resumes from.
    last_save = last_watermark_save(s, w.asset)
    assert last_save is not None
    s.log(
        f"kill -9 {name} at {killed_at.isoformat()}; {len(batch1 & set(w.fired()))} of the first batch "
        f"fired; last watermark save {last_save.isoformat()}"
    )
    for i in range(4):
        ids.append(s.emulator.start_execution("wf_e2e_medium", "deal", f"deal-kill-b{i}"))
    time.sleep(3)
    af.start("triggerer", name=f"{name}-after-kill")
    w.wait_fired(set(ids), "an asset event for each execution after the restart")
    time.sleep(4 * WATCH_POLL)  # let any repeat arrive
    flush_id, _ = w.flush("wf_e2e_medium", "deal-kill-flush")
    time.sleep(4 * WATCH_POLL)
    runs = w.settled_runs(all_consumed=True)

    fired = w.fired()
    counts = {eid: len(evs) for eid, evs in fired.items()}
    repeated = sorted(eid for eid, n in counts.items() if n > 1)
    after_save = [eid for eid, evs in fired.items() if last_save < _ts(evs[0]["timestamp"]) <= killed_at]
    s.log(
        f"{len(ids)} executions -> {sum(counts.values())} events; repeated {repeated}; "
        f"fired after the last save and before the kill: {after_save}; {len(runs)} run(s)"
    )
    assert set(fired) == {*ids, flush_id}, f"lost: {sorted(set(ids) - set(fired))}; extra: {set(fired)}"
    assert max(counts.values()) <= 2, counts
    for eid in repeated:
        first, second = (_ts(e["timestamp"]) for e in fired[eid])
        assert last_save < first <= killed_at, (
            f"{eid} repeated but its first event ({first}) is not among those fired after the "
            f"last watermark save ({last_save}) and before the kill ({killed_at})"
        )
        assert second > killed_at, (eid, second, killed_at)
    assert len(repeated) <= len(after_save)
    assert counts[flush_id] == 1
    # The runs saw every execution, and every stored event, duplicates included.
    seen: Counter[str] = Counter()
    for run in runs:
        assert run["state"] == "success", run
        seen.update(e["executionId"] for e in af.xcom(EVENTS_DAG, run["dag_run_id"], "record_events"))
    assert all(seen[eid] >= n for eid, n in counts.items()), (seen, counts)
