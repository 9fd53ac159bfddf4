"""Benchmark: N deferred waits (ExecutionTriggers) in one event loop, as one triggerer process runs them.

The triggers are rebuilt from ``serialize()`` (as the triggerer does), resolve the Airflow
connection ``smartmca_default`` from the environment, and poll over HTTPS on loopback a minimal
SmartMCA server (Get Execution and List Executions) running in a separate process, so its CPU
is not counted. The server holds N executions of workflow ``wf_loadtest``, which start one after
another over one poll interval and end D seconds later, plus ``--others`` running executions of
another workflow that never end. It counts requests by kind and TCP connections.

Each case (``--others``, by default 0 and 2000) runs the waits twice, each time in a fresh
process: **coalesced** (today's default: the shared poller, List Executions pages or GETs) and
**per-execution** (``ExecutionTrigger.coalesce = False``: one GET per wait per interval, the
polling of earlier releases, kept as the frozen baseline). A lone wait is measured too. Printed
for each: requests (GETs and list pages), requests per wait per round, CPU seconds, peak RSS
and its increase over the imports, TCP connections, and the worst completion -> event delay.

Targets (N=1000, poll 1 s, D=10 s, 2 cores), checked on the coalesced runs:

* requests in total <= 1,300 with no other executions, <= 2,000 with 2,000 others;
* CPU <= 1/4 of the per-execution run of the same case;
* peak RSS <= 150 MB; TCP connections <= 100;
* completion -> event <= poll + 1 s, for every wait;
* a lone wait: one request per round.

The machine is shared: the load average is printed before and after. On a busy machine the
per-execution run cannot keep its cadence (fewer than one request per wait per round); its CPU
is then understated, and a warning says so.

``--baseline`` instead runs bare aiohttp pollers (one GET per wait per interval, no provider
code): the floor of per-request CPU on this machine.

Usage::

    .venv/bin/python benchmarks/trigger_polls.py --n 1000 --poll 1 --duration 10
    .venv/bin/python benchmarks/trigger_polls.py --n 1000 --poll 1 --duration 10 --baseline
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

API = "/api/public/v1/workflows/executions"
KEY = "smca_bench_key_5b1e0c"
NODES = ["Validate Deal", "Fetch Merchant", "Credit Pull", "Bank Statements", "Compliance", "Pricing"]
# No 4-character block of KEY in these names: load_json's fast path (no key piece in the body)
# applies, as it does for real keys, which are random.
BENCH_WF, OTHER_WF = "wf_loadtest", "wf_other"
REPO = Path(__file__).resolve().parent.parent


# --- the server (separate process) ------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """Get Execution and List Executions over HTTPS, for N bench and ``--others`` other executions."""
    import ssl

    from aiohttp import web

    n, others = args.n, args.others
    stagger = args.poll  # bench executions start one after another over one poll interval
    born = time.time() - 3600  # the others' startedAt: long running
    state: dict[str, Any] = {"go": None, "gets": 0, "lists": 0, "peers": set()}
    index = {f"exec_{i:05d}": i for i in range(n)}
    # Newest first (sort_by=startedAt, sort_order=desc): bench executions, latest first, then the others.
    bench_order = [f"exec_{i:05d}" for i in reversed(range(n))]
    other_order = [f"other_{i:05d}" for i in range(others)]

    def times(i: int) -> tuple[float, float] | None:
        go = state["go"]
        if go is None:
            return None
        start = go + i * stagger / max(1, n)
        return start, start + args.duration

    def status_of(execution_id: str, now: float) -> str:
        i = index.get(execution_id)
        if i is None:
            return "running"  # the others never end
        t = times(i)
        if t is None or now < t[0]:
            return "pending"
        return "running" if now < t[1] else "completed"

    def iso(ts: float) -> str:
        return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()

    def body(execution_id: str, now: float, with_nodes: bool) -> dict[str, Any]:
        i = index.get(execution_id)
        status = status_of(execution_id, now)
        if i is None:
            start, end, workflow = born, None, OTHER_WF
        else:
            t = times(i) or (now, now + args.duration)
            start, end, workflow = t[0], t[1], BENCH_WF
        if status == "pending":
            ran = 0
        elif status == "completed":
            ran = len(NODES)
        else:
            elapsed = now - start
            ran = min(len(NODES) - 1, int(elapsed / args.duration * len(NODES))) if end else 1
        out: dict[str, Any] = {
            "executionId": execution_id,
            "workflowId": workflow,
            "workflowName": "Benchmark",
            "entityType": "deal",
            "entityId": "deal_1",
            "status": status,
            "startedAt": iso(start),
            "completedAt": iso(end) if status == "completed" and end else None,
            "nodeCount": len(NODES),
            "currentNode": NODES[ran] if status == "running" else None,
        }
        if with_nodes:
            out["nodes"] = [
                {
                    "id": f"n{k}",
                    "name": name,
                    "status": "completed"
                    if k < ran
                    else ("running" if k == ran and status == "running" else "pending"),
                    "error": None,
                }
                for k, name in enumerate(NODES)
            ]
        return out

    def authorised(request: web.Request) -> bool:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            state["peers"].add(tuple(peer[:2]))
        return request.headers.get("Authorization") == f"Bearer {KEY}"

    async def get_execution(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        state["gets"] += 1
        execution_id = request.match_info["execution_id"]
        if execution_id not in index and not execution_id.startswith("other_"):
            return web.json_response({"error": {"message": "not found"}}, status=404)
        return web.json_response(body(execution_id, time.time(), with_nodes=True))

    async def list_executions(request: web.Request) -> web.Response:
        if not authorised(request):
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        state["lists"] += 1
        q, now = request.query, time.time()
        workflow, status = q.get("workflow_type"), q.get("status")
        page, limit = int(q.get("page", "1")), min(100, int(q.get("limit", "20")))
        candidates = (bench_order if workflow in (None, BENCH_WF) else []) + (
            other_order if workflow in (None, OTHER_WF) else []
        )
        rows = [e for e in candidates if status is None or status_of(e, now) == status]
        data = [body(e, now, with_nodes=False) for e in rows[(page - 1) * limit : page * limit]]
        return web.json_response({"data": data, "total": len(rows), "page": page, "limit": limit})

    async def go(request: web.Request) -> web.Response:
        state.update(go=time.time(), gets=0, lists=0, peers=set())
        return web.json_response({"go": state["go"]})

    async def stats(request: web.Request) -> web.Response:
        completed = {f"exec_{i:05d}": (times(i) or (0, 0))[1] for i in range(n)}
        return web.json_response(
            {
                "gets": state["gets"],
                "lists": state["lists"],
                "connections": len(state["peers"]),
                "completed_at": completed,
            }
        )

    async def main() -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        app = web.Application()
        app.router.add_get(API, list_executions)
        app.router.add_get(API + "/{execution_id}", get_execution)
        app.router.add_post("/_go", go)
        app.router.add_get("/_stats", stats)
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def _call(base: str, cert: str, path: str, method: str = "GET") -> dict[str, Any]:
    import ssl

    ctx = ssl.create_default_context(cafile=cert)
    request = urllib.request.Request(base + path, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(request, context=ctx, timeout=30) as resp:
        return json.load(resp)  # type: ignore[no-any-return]


# --- the trigger process (one per measured run) --------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def run_triggers(n: int, poll: float, timeout: float) -> tuple[dict[str, float], dict[str, str], float]:
    from airflow_provider_smartmca.triggers import ExecutionTrigger

    deadline = time.time() + timeout
    # What the worker stores and the triggerer rebuilds: classpath + JSON kwargs.
    stored = [
        json.dumps(
            ExecutionTrigger(
                "smartmca_default", f"exec_{i:05d}", poll, deadline, workflow_type=BENCH_WF
            ).serialize()[1]
        )
        for i in range(n)
    ]
    triggers = [ExecutionTrigger(**json.loads(kwargs)) for kwargs in stored]
    fired: dict[str, float] = {}
    statuses: dict[str, str] = {}

    async def one(trigger: ExecutionTrigger) -> None:
        agen = trigger.run()
        try:
            event = await agen.__anext__()
        finally:
            await agen.aclose()
        fired[trigger.execution_id] = time.time()
        statuses[trigger.execution_id] = event.payload["status"]

    started = time.time()
    await asyncio.gather(*(one(t) for t in triggers))
    return fired, statuses, started


async def run_bare(n: int, poll: float, base: str, cert: str) -> None:
    """The floor: bare aiohttp pollers (one shared session, same pool bound), no provider code."""
    import random
    import ssl

    import aiohttp

    from airflow_provider_smartmca.triggers.context import POOL_LIMIT
    from airflow_provider_smartmca.triggers.execution import JITTER

    async def poller(session: aiohttp.ClientSession, i: int) -> None:
        await asyncio.sleep(random.uniform(0, poll))
        while True:
            async with session.get(
                f"{base}{API}/exec_{i:05d}", headers={"Authorization": f"Bearer {KEY}"}
            ) as r:
                if json.loads(await r.read())["status"] == "completed":
                    return
            await asyncio.sleep(poll * random.uniform(1 - JITTER, 1 + JITTER))

    connector = aiohttp.TCPConnector(limit=POOL_LIMIT, ssl=ssl.create_default_context(cafile=cert))
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(poller(session, i) for i in range(n)))


def measure(args: argparse.Namespace) -> int:
    """One measured run in this process; prints its figures as one JSON line."""
    sys.path.insert(0, str(REPO))
    os.environ["AIRFLOW_CONN_SMARTMCA_DEFAULT"] = json.dumps(
        {"conn_type": "smartmca", "host": args.base, "password": KEY, "extra": {"verify_ssl": args.cert}}
    )
    # A triggerer is a long-running process: its imports (aiohttp, Airflow's connection API) are
    # done before our triggers arrive. Do them here, outside the measurement, in every mode.
    import aiohttp  # noqa: F401

    from airflow_provider_smartmca.client import aio  # noqa: F401
    from airflow_provider_smartmca.triggers import budget, poller  # noqa: F401
    from airflow_provider_smartmca.triggers.context import _resolve
    from airflow_provider_smartmca.triggers.execution import ExecutionTrigger

    asyncio.run(_resolve("smartmca_default"))
    if args.run == "per-execution":
        ExecutionTrigger.coalesce = False  # the polling of earlier releases: one GET per wait per round
    gc.collect()
    if args.gc_freeze:
        gc.freeze()
    rss_imports = peak_rss_mb()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    _call(args.base, args.cert, "/_go", "POST")
    cpu0, wall0 = cpu_seconds(), time.monotonic()
    fired: dict[str, float] = {}
    statuses: dict[str, str] = {}
    started = time.time()
    if args.run == "bare":
        asyncio.run(run_bare(args.n, args.poll, args.base, args.cert))
    else:
        fired, statuses, started = asyncio.run(run_triggers(args.n, args.poll, args.duration * 3 + 60))
    cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
    if profiler:
        profiler.disable()
        profiler.dump_stats(args.profile)
    print(
        json.dumps(
            {
                "cpu": cpu,
                "wall": wall,
                "rss_imports": rss_imports,
                "rss_peak": peak_rss_mb(),
                "fired": fired,
                "started": started,
                "statuses": statuses,
            }
        )
    )
    return 0


# --- the orchestrator --------------------------------------------------------------------------


def start_server(
    args: argparse.Namespace, cert: str, key: str, others: int
) -> tuple[subprocess.Popen[str], str]:
    server = subprocess.Popen(
        [
            *(sys.executable, __file__, "--serve", "--cert", cert, "--key", key),
            *("--n", str(args.n), "--poll", str(args.poll), "--duration", str(args.duration)),
            *("--others", str(others)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    return server, f"https://127.0.0.1:{int(server.stdout.readline())}"


def run_once(args: argparse.Namespace, base: str, cert: str, mode: str, n: int) -> dict[str, Any]:
    """Run ``mode`` with ``n`` waits in a fresh process; return its figures and the server's counts."""
    command = [sys.executable, __file__, "--run", mode, "--base", base, "--cert", cert]
    command += ["--n", str(n), "--poll", str(args.poll), "--duration", str(args.duration)]
    if args.gc_freeze:
        command.append("--gc-freeze")
    if args.profile:
        command += ["--profile", f"{args.profile}.{mode}.{n}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.duration * 6 + 300)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(_call(base, cert, "/_stats"))
    result["mode"], result["n"] = mode, n
    completed_at = result.pop("completed_at")
    fired = result.pop("fired")
    delays = sorted(max(0.0, fired[i] - completed_at[i]) for i in fired if i in completed_at)
    result["delay_max"] = delays[-1] if delays else float("nan")
    result["delay_p99"] = delays[min(len(delays) - 1, int(0.99 * len(delays)))] if delays else float("nan")
    result["events"] = len(fired)
    statuses = result.pop("statuses")
    result["all_success"] = bool(statuses) and set(statuses.values()) == {"success"} and len(statuses) == n
    result["requests"] = result["gets"] + result["lists"]
    # A round per poll interval over each wait's life (from its trigger's start to its event).
    life = sum(t - result["started"] for t in fired.values()) / max(1, len(fired))
    result["rounds"] = life / args.poll
    result["per_wait_round"] = result["requests"] / max(1, n) / max(1e-9, result["rounds"])
    return result


def row(r: dict[str, Any]) -> str:
    return (
        f"  {r['mode']:<14} waits {r['n']:>5}  requests {r['requests']:>6} (GET {r['gets']:>6}, list pages "
        f"{r['lists']:>4})  per wait per round {r['per_wait_round']:.3f}  CPU {r['cpu']:.2f} s  "
        f"peak RSS {r['rss_peak']:.0f} MB (+{r['rss_peak'] - r['rss_imports']:.0f} over imports)  "
        f"TCP {r['connections']:>3}  completion->event max {r['delay_max']:.2f} s (p99 {r['delay_p99']:.2f})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="number of waits (default 1000)")
    parser.add_argument("--poll", type=float, default=1.0, help="poll interval, seconds (default 1)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="D: seconds each execution runs (default 10)"
    )
    parser.add_argument(
        "--others",
        default="0,2000",
        help="comma-separated cases: running executions of another workflow on the tenant (default 0,2000)",
    )
    parser.add_argument(
        "--modes",
        default="coalesced,per-execution",
        help="what to run in each case (default coalesced,per-execution)",
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="run bare aiohttp pollers instead (no provider code: the floor on this machine)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() the imported objects first (shows how much of the CPU is Python's GC "
        "walking Airflow's import heap)",
    )
    parser.add_argument("--profile", help="write a cProfile of each trigger process to PROFILE.<mode>.<n>")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--run", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        args.others = int(args.others)
        serve(args)
        return 0
    if args.run:
        return measure(args)

    sys.path.insert(0, str(REPO))
    from airflow_provider_smartmca.testing.tls import self_signed_cert

    load = os.getloadavg()
    print(
        f"{args.n} waits, poll {args.poll} s, executions of {args.duration} s (started over one interval), "
        f"HTTPS loopback; load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )
    ok: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="smartmca-bench-") as tmp:
        cert, key = (str(p) for p in self_signed_cert(tmp))
        if args.baseline:
            server, base = start_server(args, cert, key, 0)
            try:
                r = run_once(args, base, cert, "bare", args.n)
            finally:
                server.terminate()
                server.wait(10)
            print(f"baseline (bare aiohttp, Airflow imported): {args.n} pollers, {r['requests']} GETs")
            print(
                f"CPU per request: {r['cpu'] * 1000 / max(1, r['requests']):.3f} ms ({r['cpu']:.2f} s); "
                f"TCP connections: {r['connections']}; peak RSS: {r['rss_peak']:.0f} MB"
            )
            return 0
        modes = [m.strip() for m in args.modes.split(",") if m.strip()]
        for others in (int(x) for x in args.others.split(",")):
            server, base = start_server(args, cert, key, others)
            try:
                results = {mode: run_once(args, base, cert, mode, args.n) for mode in modes}
                lone = run_once(args, base, cert, "coalesced", 1) if others == 0 else None
            finally:
                server.terminate()
                server.wait(10)
            print(f"\n{others} other running executions (of another workflow):")
            for r in results.values():
                print(row(r))
            if lone is not None:
                print(row({**lone, "mode": "lone wait"}))
            coalesced, baseline = results.get("coalesced"), results.get("per-execution")
            if coalesced is None:
                continue
            limit = 1300 if others == 0 else 2000
            bound = args.poll + 1
            checks = {
                f"requests <= {limit}": coalesced["requests"] <= limit,
                "events all success": coalesced["all_success"],
                "peak RSS <= 150 MB": coalesced["rss_peak"] <= 150,
                "TCP connections <= 100": coalesced["connections"] <= 100,
                f"completion->event <= {bound:.1f} s": coalesced["delay_max"] <= bound,
            }
            if baseline is not None:
                ratio = coalesced["cpu"] / max(1e-9, baseline["cpu"])
                reduction = baseline["requests"] / max(1, coalesced["requests"])
                print(
                    f"  coalesced vs per-execution: {reduction:.1f}x fewer requests, CPU {ratio:.2f}x "
                    f"({coalesced['cpu']:.2f} s vs {baseline['cpu']:.2f} s)"
                )
                checks["CPU <= 1/4 of per-execution"] = ratio <= 0.25
                if baseline["per_wait_round"] < 0.95:
                    print(
                        f"  warning: per-execution polling did not keep its cadence "
                        f"({baseline['per_wait_round']:.2f} requests per wait per round): the machine "
                        "is busy and its CPU figure is understated"
                    )
                checks["per-execution events all success"] = baseline["all_success"]
            if lone is not None:
                checks["lone wait: one request per round"] = (
                    lone["per_wait_round"] <= 1.1 and lone["lists"] == 0
                )
            print("  targets:", ", ".join(f"{k} {'ok' if v else 'MISSED'}" for k, v in checks.items()))
            ok.update({f"{others}: {k}": v for k, v in checks.items()})
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(
        "targets:",
        "all met" if all(ok.values()) else "MISSED " + "; ".join(k for k, v in ok.items() if not v),
    )
    return 0 if all(ok.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
