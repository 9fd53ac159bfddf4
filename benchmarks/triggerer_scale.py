"""Benchmark: N deferred, mapped ``TriggerWorkflowOperator`` tasks under a real triggerer.

Brings up the end-to-end suite's Celery stack (tests/e2e/conftest.py ``CELERY``: PostgreSQL,
Redis, CeleryExecutor with two workers, the emulator in its own process) with ONE triggerer, and
runs the same N waits twice, each with a fresh triggerer:

* **coalesced** (the default): waits of one workflow share the poller (List Executions pages);
* **per-execution** (baseline): the triggerer starts with ``ExecutionTrigger.coalesce = False``
  (a ``sitecustomize`` on its ``PYTHONPATH``), so every wait GETs its execution once per round.

Each execution stays pending ``--pending`` seconds from its POST, long enough for all N tasks to
defer; the "carry" window is the time during which all N waits are deferred at once. Printed per
mode:

* the triggerer's CPU seconds (its whole process group, ``/proc/<pid>/stat`` utime+stime) and
  CPU per round while it carries N waits; its peak memory (``VmHWM`` of each process, summed);
* API requests per round while carrying N waits (the emulator's request log), and per wait;
* time from an execution's end (``completedAt``) to its task's success, split into the provider
  part (``completedAt`` -> the GET that saw it completed: only a GET ends a wait) and Airflow's
  part (that GET -> the task instance's ``end_date``: event, scheduling, the resumed try on a
  Celery worker). Median and max.

Not a timed test: it prints figures. The machine's load average is printed before and after.

Usage::

    .venv/bin/python benchmarks/triggerer_scale.py --n 200 --poll 5 --pending 420
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.e2e.conftest import CELERY, EMULATOR_CONFIG, running_stack  # noqa: E402
from tests.e2e.harness import Proc, wait_for  # noqa: E402

WORKFLOW = "wf_bench"
MODES = {"coalesced": "", "per-execution": "ExecutionTrigger.coalesce = False"}
CLK_TCK = os.sysconf("SC_CLK_TCK")

DAG_TEMPLATE = """
from datetime import datetime
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import TriggerWorkflowOperator

for mode in {modes!r}:
    with DAG(f"bench_{{mode.replace('-', '_')}}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):
        TriggerWorkflowOperator.partial(
            task_id="wait", workflow_type={workflow!r}, entity_type="deal", deferrable=True,
            poll_interval={poll}, timeout=7200,
        ).expand(entity_id=[f"{{mode}}-{{i:04d}}" for i in range({n})])
"""


def group_stats(leader: int) -> tuple[float, int]:
    """(CPU seconds, summed VmHWM kB) of every live process in the process group ``leader``."""
    cpu, hwm = 0.0, 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != leader:  # pgrp
                continue
            cpu += (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime
            for line in Path(f"/proc/{entry}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    hwm += int(line.split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return cpu, hwm


class Sampler(threading.Thread):
    """Samples a process group's CPU and memory every second (processes never exit mid-run)."""

    def __init__(self, proc: Proc):
        super().__init__(daemon=True)
        self.proc, self.stopped = proc, threading.Event()
        self.samples: list[tuple[float, float, int]] = []

    def run(self) -> None:
        while not self.stopped.is_set():
            cpu, hwm = group_stats(self.proc.pid)
            self.samples.append((time.time(), cpu, hwm))
            self.stopped.wait(1.0)

    def cpu_between(self, t0: float, t1: float) -> float:
        inside = [cpu for t, cpu, _ in self.samples if t0 <= t <= t1]
        return inside[-1] - inside[0] if len(inside) >= 2 else float("nan")


def ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def pct(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"median {statistics.median(values):.1f} s, max {max(values):.1f} s"


def run_mode(s: Any, mode: str, n: int, poll: float, timeout: float) -> dict[str, Any]:
    af = s.airflow
    env: dict[str, str] = {}
    if MODES[mode]:
        site = Path(tempfile.mkdtemp(prefix="bench-site-"))
        (site / "sitecustomize.py").write_text(
            "from airflow_provider_smartmca.triggers.execution import ExecutionTrigger\n" + MODES[mode] + "\n"
        )
        env["PYTHONPATH"] = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])
    for name, proc in af.procs.items():
        if name.startswith("triggerer") and proc.alive():
            proc.stop()
            proc.expected_dead = True  # type: ignore[attr-defined]
    trig = af.start("triggerer", name=f"triggerer-{mode}", extra_env=env)
    sampler = Sampler(trig)
    sampler.start()
    dag = f"bench_{mode.replace('-', '_')}"
    af.wait_dags([dag])
    run_id = af.trigger(dag)
    started = time.time()
    deferred_all: list[float] = []

    def poll_states() -> bool:
        tis = af.task_instances(dag, run_id)
        states = [t["state"] for t in tis]
        if len(tis) == n and states.count("deferred") == n and not deferred_all:
            deferred_all.append(time.time())
        if deferred_all and len(deferred_all) == 1 and states.count("deferred") < n:
            deferred_all.append(time.time())  # the first wait ended: the carry window closes
        af.check_alive()
        return len(tis) == n and all(st in ("success", "failed") for st in states)

    wait_for(f"{mode}: {n} tasks done", poll_states, timeout, interval=2, on_timeout=af.tails(20))
    sampler.stopped.set()
    sampler.join()
    tis = af.task_instances(dag, run_id)
    reqs = s.emulator.requests()
    execs = {
        e["entityId"]: e
        for e in s.emulator.executions(workflow_type=WORKFLOW)
        if e["entityId"].startswith(mode)
    }
    out: dict[str, Any] = {"mode": mode, "n": n, "success": sum(t["state"] == "success" for t in tis)}
    out["defer_all_s"] = deferred_all[0] - started if deferred_all else float("nan")
    polls = [r for r in reqs if r["method"] == "GET" and "/workflows/executions" in r["path"]]
    if len(deferred_all) == 2:
        t0, t1 = deferred_all
        rounds = (t1 - t0) / poll
        window = [r for r in polls if t0 <= r["time"] <= t1]
        out["carry_s"] = t1 - t0
        out["req_per_round"] = len(window) / rounds if rounds else float("nan")
        out["cpu_per_round"] = sampler.cpu_between(t0, t1) / rounds if rounds else float("nan")
    out["cpu_total"] = sampler.samples[-1][1] - sampler.samples[0][1]
    out["peak_mb"] = max(h for _, _, h in sampler.samples) / 1024
    out["polls_total"] = len(polls)
    provider, airflow = [], []
    by_id = {e["executionId"]: e for e in execs.values()}
    for ti in tis:
        eid = af.xcom_key(dag, run_id, "wait", "execution_id", ti["map_index"])
        e = by_id.get(eid)
        if not e or not e.get("completedAt") or not ti.get("end_date"):
            continue
        done = ts(e["completedAt"])
        seen = [
            r["time"] for r in polls if r["path"].endswith(eid) and r["time"] >= done and r["status"] == 200
        ]
        # Coalesced: the list page that reported it completed is followed by its confirming GET.
        if seen:
            provider.append(min(seen) - done)
            airflow.append(ts(ti["end_date"]) - min(seen))
    out["provider"], out["airflow"] = provider, airflow
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=200, help="mapped tasks (waits) per mode")
    ap.add_argument("--poll", type=float, default=5.0, help="the tasks' poll_interval (s)")
    ap.add_argument("--pending", type=float, default=420.0, help="seconds each execution stays pending")
    ap.add_argument("--modes", default="coalesced,per-execution")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per mode, seconds")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    dags = Path(tempfile.mkdtemp(prefix="bench-dags-")) / "bench_triggerer_scale.py"
    dags.write_text(
        textwrap.dedent(DAG_TEMPLATE.format(modes=modes, workflow=WORKFLOW, poll=args.poll, n=args.n))
    )
    config = {
        **EMULATOR_CONFIG,
        "workflows": [
            {
                "id": WORKFLOW,
                "name": "Bench",
                "entityType": "deal",
                "nodeCount": 1,
                "pending_seconds": args.pending,
                "node_seconds": 1,
            },
        ],
    }
    spec = replace(
        CELERY,
        name="bench",
        emulator_config=config,
        dag_files=lambda: [dags],
        triggerers=1,
        env={"AIRFLOW__TRIGGERER__CAPACITY": "1000", "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"},
    )
    print(f"load average before: {os.getloadavg()}", flush=True)
    results = []
    with running_stack(spec) as s:
        for mode in modes:
            r = run_mode(s, mode, args.n, args.poll, args.timeout)
            results.append(r)
            print(f"{mode}: {r}", flush=True)
    print(f"load average after: {os.getloadavg()}")
    print(
        f"\n{args.n} mapped deferred TriggerWorkflowOperator tasks, poll {args.poll:g} s, one triggerer, 2 Celery workers"
    )
    for r in results:
        print(
            f"{r['mode']:>14}: {r['success']}/{r['n']} success; all deferred after {r['defer_all_s']:.0f} s, "
            f"carried {r.get('carry_s', float('nan')):.0f} s; "
            f"{r.get('req_per_round', float('nan')):.1f} requests/round "
            f"({r.get('req_per_round', float('nan')) / r['n']:.3f} per wait); "
            f"triggerer CPU {r.get('cpu_per_round', float('nan')):.3f} s/round, {r['cpu_total']:.1f} s total; "
            f"peak memory {r['peak_mb']:.0f} MB; {r['polls_total']} polling requests in all"
        )
        print(f"{'':>16}end -> success: provider {pct(r['provider'])}; Airflow {pct(r['airflow'])}")


if __name__ == "__main__":
    main()
