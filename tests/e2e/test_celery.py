"""Issue 19 scenarios: the provider where Airflow runs at scale - CeleryExecutor with a Redis broker,
two Celery workers and two triggerers (tests/e2e/conftest.py: ``CELERY``, ``CELERY_EVENTS``).

A try ends here in ways the LocalExecutor never shows: a killed worker's try is failed by the
scheduler's heartbeat check and retried on the other worker, and the broker may deliver a task
message again. Each scenario asserts exactly one execution per task in the emulator and the
task's end state.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.harness import RunObserver, task_process_pids, wait_for
from tests.e2e.test_scenarios import (
    STORM_DAG,
    assert_all_success,
    assert_result,
    assert_storm_weathered,
    executions_by_entity,
    posts,
    runs_of,
    start_storm,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


# --------------------------------------------------------------------------- helpers
def workers(s: Stack) -> list[str]:
    """The live Celery workers, by component name."""
    return [n for n, p in s.airflow.procs.items() if n.startswith("worker-") and p.alive()]


def log_size(s: Stack, name: str) -> int:
    return s.airflow.procs[name].log.stat().st_size


def received(s: Stack, name: str, since: int = 0) -> list[str]:
    """The task messages a worker logged as received after byte ``since`` of its log."""
    with open(s.airflow.procs[name].log, "rb") as fh:
        fh.seek(since)
        text = fh.read().decode(errors="replace")
    return [line for line in text.splitlines() if "execute_workload[" in line and "received" in line]


def runner_of(s: Stack, ti: dict[str, Any], timeout: float = 120) -> tuple[list[int], str]:
    """The task process(es) of a task instance and the Celery worker they run under."""
    pids = wait_for(f"task process of {ti['task_id']}", lambda: task_process_pids(ti["id"]), timeout)
    owner = s.airflow.owner(pids[0])
    assert owner is not None and owner.startswith("worker-"), f"task process {pids} runs under {owner}"
    return pids, owner


def kill_worker(s: Stack, name: str) -> None:
    s.log(f"kill -9 the process group of {name}")
    s.airflow.procs[name].kill9()
    s.airflow.procs[name].expected_dead = True  # type: ignore[attr-defined]


def replace_worker(s: Stack, name: str) -> str:
    """Start a fresh worker for a killed one (two workers again for the next scenario)."""
    new = f"worker-{name.removeprefix('worker-')}-{int(time.time()) % 100000}"
    s.airflow.start("celery worker", name=new)
    return new


def assert_one_execution_success(s: Stack, dag: str, run: tuple[str, str], tasks: list[str]) -> None:
    """Each task succeeded with the one execution the emulator has for it (one POST each)."""
    reqs = s.emulator.requests()
    by_entity = executions_by_entity(s)
    assert len(by_entity) == len(tasks) and set(by_entity.values()) == {1}, by_entity
    assert len(posts(reqs)) == len(tasks), [(r["time"], r["path"], r["status"]) for r in posts(reqs)]
    known = {e["executionId"] for e in s.emulator.executions()}
    for task_id in tasks:
        result = assert_result(s, dag, run[1], task_id)
        assert result["executionId"] in known
        assert s.airflow.xcom_key(dag, run[1], task_id, "execution_id") == result["executionId"]


# --------------------------------------------------------------------------- scenarios
@pytest.mark.parametrize(
    "held_route",
    [
        # The POST was processed but the worker dies before its 202 arrives: nothing recorded.
        "trigger",
        # The 202 arrived (the execution id is recorded), the worker dies during the first GET.
        "get_execution",
    ],
)
def test_c1_celery_worker_killed_retry_on_the_other_worker(celery: Stack, held_route: str) -> None:
    """``kill -9`` of a Celery worker (its process group and every task process it started) mid-try:
    the scheduler's heartbeat check fails the try, the retry runs on the other worker and finds
    the one execution."""
    s, af = celery, celery.airflow
    dag = "smartmca_e2e_worker_kill"
    af.wait_dags([dag])
    method = "POST" if held_route == "trigger" else "GET"
    s.emulator.fault(kind="hold", route=held_route, method=method, count=1, holdTimeout=300)
    (run,) = runs_of(s, [dag])
    wait_for(f"{method} {held_route} held", lambda: s.emulator.admin("GET", "held")["held"] >= 1, 300)
    ti = af.task_instances(dag, run[1])[0]
    _pids, victim = runner_of(s, ti)
    (survivor,) = (w for w in workers(s) if w != victim)
    mark = log_size(s, survivor)
    kill_worker(s, victim)
    assert not task_process_pids(ti["id"]), "the task process outlived its worker's process group"
    s.emulator.admin("POST", "release")
    states = af.wait_runs([run], 600, RunObserver())
    assert_all_success(s, [run], states)
    (ti,) = af.task_instances(dag, run[1])
    assert ti["try_number"] == 2, f"expected one retry after the heartbeat timeout: {ti}"
    assert received(s, survivor, mark), f"{survivor} never received the retry"
    assert_one_execution_success(s, dag, run, ["wk_00"])
    replace_worker(s, victim)


def test_c2_task_message_delivered_again(celery: Stack) -> None:
    """The broker delivers a task message again while its first delivery is mid-POST (as Redis
    does once an unacknowledged message outlives its visibility timeout): one execution."""
    s, af = celery, celery.airflow
    assert s.redis is not None
    dag = "smartmca_e2e_worker_kill"
    af.wait_dags([dag])
    s.emulator.fault(kind="hold", route="trigger", method="POST", count=1, holdTimeout=300)
    marks = {w: log_size(s, w) for w in workers(s)}
    (run,) = runs_of(s, [dag])
    wait_for("POST trigger held", lambda: s.emulator.admin("GET", "held")["held"] >= 1, 300)
    ti = af.task_instances(dag, run[1])[0]
    _pids, first = runner_of(s, ti)
    # The Celery task id of this try's message (other unacknowledged messages, of workers killed
    # earlier, may be in the hash too).
    ((celery_id,),) = s.pg.query("select external_executor_id from task_instance where id = %s", (ti["id"],))
    tag = wait_for(
        f"task message {celery_id} unacknowledged",
        lambda: next((t for t, m in s.redis.unacked().items() if m[0]["headers"]["id"] == celery_id), None),
        60,
    )
    s.log(f"{first} holds the POST; delivering task message {celery_id} again")
    s.redis.redeliver(tag)

    def deliveries() -> Counter[str]:
        return Counter(w for w in marks for line in received(s, w, marks[w]) if celery_id in line)

    got = wait_for(
        "the second delivery", lambda: (lambda c: c if sum(c.values()) >= 2 else None)(deliveries()), 120
    )
    s.log(f"deliveries of {celery_id}: {dict(got)}")
    time.sleep(10)  # the duplicate reaches the Execution API while the first still holds the POST
    s.emulator.admin("POST", "release")
    states = af.wait_runs([run], 600, RunObserver())
    assert_all_success(s, [run], states)
    s.log(f"task ended on try {af.task_instances(dag, run[1])[0]['try_number']}")
    assert_one_execution_success(s, dag, run, ["wk_00"])


def test_c3_triggerer_killed_with_100_mapped_waits_over_two_triggerers(celery: Stack) -> None:
    """100 deferred, mapped waits spread over both triggerers (capacity 70 each); the one holding
    most is killed; the other fills its capacity with the orphans, a new one takes the rest: all
    100 end right, each with its one execution."""
    s, af = celery, celery.airflow
    dag, n = "smartmca_e2e_mapped100", 100
    af.wait_dags([dag])
    (run,) = runs_of(s, [dag])

    def holders() -> Counter[int]:
        return Counter(
            r[0] for r in s.pg.query("select triggerer_id from trigger where triggerer_id is not null")
        )

    def spread() -> Counter[int] | None:
        h = holders()
        return h if sum(h.values()) == n and len(h) == 2 else None

    held = wait_for(f"{n} waits on two triggerers", spread, 900, interval=2, on_timeout=af.tails(20))
    (victim_job, _), (survivor_job, _) = held.most_common(2)
    victim = triggerer_of_job(s, victim_job)
    cutoff = max(r["time"] for r in posts(s.emulator.requests()))
    s.log(f"trigger assignment {dict(held)}; kill -9 {victim} (job {victim_job})")
    s.airflow.procs[victim].kill9()
    s.airflow.procs[victim].expected_dead = True  # type: ignore[attr-defined]
    # The survivor fills its capacity with the dead triggerer's waits; the rest stay assigned to
    # the dead one until another triggerer is there to take them.
    wait_for("the survivor to take waits over", lambda: holders()[survivor_job] >= 70, 180, interval=1)
    af.start("triggerer", name=f"{victim}-after-kill")
    states = af.wait_runs([run], 900, RunObserver())
    assert_all_success(s, [run], states)
    reqs = s.emulator.requests()
    assert len(posts(reqs)) == n and not [r for r in posts(reqs) if r["time"] > cutoff]
    by_entity = executions_by_entity(s)
    assert len(by_entity) == n and set(by_entity.values()) == {1}, by_entity
    ids = {assert_result(s, dag, run[1], "mapped", i)["executionId"] for i in range(n)}
    assert len(ids) == n
    tries = Counter(ti["try_number"] for ti in af.task_instances(dag, run[1]))
    assert tries == Counter({1: n}), tries


def triggerer_of_job(s: Stack, job_id: int) -> str:
    """The triggerer process of a ``TriggererJob`` row (its unixname, see ``Airflow.start``)."""
    ((name,),) = s.pg.query("select unixname from job where id = %s", (job_id,))
    assert name in s.airflow.procs, f"job {job_id} is {name!r}, not one of {list(s.airflow.procs)}"
    return str(name)


def test_c4_storm_503_429_across_both_workers(celery: Stack) -> None:
    """A 503/429 storm on every GET while tasks run on both workers: one execution each, no retry."""
    s, af = celery, celery.airflow
    af.wait_dags([STORM_DAG])
    start_storm(s)
    marks = {w: log_size(s, w) for w in workers(s)}
    runs = runs_of(s, [STORM_DAG, STORM_DAG])
    states = af.wait_runs(runs, 600, RunObserver())
    assert_all_success(s, runs, states)
    per_worker = {w: len(received(s, w, mark)) for w, mark in marks.items()}
    s.log(f"task messages per worker: {per_worker}")
    assert all(per_worker.values()), f"a worker took no task: {per_worker}"
    assert_storm_weathered(s, runs)
    by_entity = executions_by_entity(s)
    assert sum(by_entity.values()) == 10 and set(by_entity.values()) == {2}, by_entity  # 5 entities x 2 runs
