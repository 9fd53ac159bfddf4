"""Issue 6 scenarios: the provider inside real Airflow 3 components against the emulator process.

Each scenario asserts DAG-run and task states, XCom values (REST API), and what the emulator
received (request log, execution counts).
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from datetime import datetime, timezone
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
    now = datetime.now(timezone.utc).isoformat()
    runs = [(d, s.airflow.trigger(d, logical_date=now if d in example_ids else None)) for d in dag_ids]
    obs = RunObserver(scan_processes=True)
    states = s.airflow.wait_runs(runs, 420, obs)
    assert_all_success(s, runs, states)

    reqs = s.emulator.requests()
    execs = s.emulator.executions()
    known = {e["executionId"] for e in execs}
    ours = 0
    for dag_id, run_id in runs:
        for ti in s.airflow.task_instances(dag_id, run_id):
            if ti["operator"] not in OUR_OPERATORS:
                continue
            ours += 1
            key = (dag_id, run_id, ti["task_id"], int(ti["map_index"]))
            assert key in obs.seen("deferred"), f"{key} never observed deferred: {obs.timeline.get(key)}"
            assert key not in obs.deferred_with_process, f"{key}: a task process existed while deferred"
            window = obs.deferred_window(key)
            assert window is not None
            result = assert_result(s, dag_id, run_id, ti["task_id"], key[3])
            eid = result["executionId"]
            assert eid in known, f"{eid} unknown to the emulator"
            in_window = [r for r in polls_of(reqs, result) if window[0] <= r["time"] <= window[1]]
            assert in_window, f"{key}: {eid} not read (GET or list page) while observed deferred {window}"
            # Exactly-once: the execution id pushed to XCom is the one returned.
            assert s.airflow.xcom_key(dag_id, run_id, ti["task_id"], "execution_id", key[3]) == eid
    assert ours >= 1
    # One POST per operator task, one execution per POST, nothing failed at the API.
    assert len(posts(reqs)) == ours == len(execs), (len(posts(reqs)), ours, len(execs))
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


def test_4_api_storm_503_and_429(e2e: Stack) -> None:
    s = e2e
    dag = "smartmca_e2e_storm"
    s.airflow.wait_dags([dag])
    # 30% of GETs answer 503; of the rest 1/7 answer 429 (10% of all GETs), Retry-After: 1.
    s.emulator.fault(kind="status", status=503, method="GET", route="*", probability=0.3, seed=6)
    s.emulator.fault(
        kind="status", status=429, method="GET", route="*", probability=0.1 / 0.7, seed=7, retryAfter=1
    )
    runs = runs_of(s, [dag, dag])
    obs = RunObserver()
    states = s.airflow.wait_runs(runs, 420, obs)
    assert_all_success(s, runs, states)
    for _dag_id, run_id in runs:
        for ti in s.airflow.task_instances(dag, run_id):
            assert ti["try_number"] == 1, f"{ti['task_id']} retried"
            assert_result(s, dag, run_id, ti["task_id"])
    reqs = s.emulator.requests()
    codes = Counter(r["status"] for r in reqs if r["method"] == "GET")
    s.log(f"storm GET statuses: {dict(codes)}")
    assert codes[503] >= 3 and codes[429] >= 1, codes
    assert len(posts(reqs)) == 10
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
