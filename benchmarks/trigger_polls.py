"""Benchmark: N ExecutionTriggers in one event loop, as one triggerer process runs them.

The triggers are rebuilt from ``serialize()`` (as the triggerer does), resolve the Airflow
connection ``smartmca_default`` from the environment, and poll over HTTPS on loopback a minimal
aiohttp server running in a separate process (so its CPU is not counted), which completes each
execution D seconds after its first poll and counts polls and TCP connections.

Printed figures (targets for N=1000, poll 1 s, D=10 s on a 2-core machine):

* CPU ms per poll: user+sys CPU of the trigger process during the run / polls seen by the server
  (target <= 0.3);
* TCP connections opened, as seen by the server (target <= 100);
* peak RSS of the trigger process (target <= 150 MB);
* latency from completion to event, max and p99 (target: every one <= 1.2 * poll + 1 s).

Usage::

    .venv/bin/python benchmarks/trigger_polls.py --n 1000 --poll 1 --duration 10
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
from pathlib import Path
from typing import Any

API = "/api/public/v1/workflows/executions/"
KEY = "smca_bench_key_5b1e0c"
NODES = ["Validate Deal", "Fetch Merchant", "Credit Pull", "Bank Statements", "Compliance", "Pricing"]


# --- the server (separate process) ------------------------------------------------------------


def serve(args: argparse.Namespace) -> None:
    """Minimal SmartMCA ``get_execution`` over HTTPS; completes D s after an execution's first GET."""
    import ssl

    from aiohttp import web

    first_poll: dict[str, float] = {}
    peers: set[tuple[str, int]] = set()
    polls = [0]

    def body(execution_id: str, now: float) -> dict[str, Any]:
        start = first_poll.setdefault(execution_id, now)
        done_at = start + args.duration
        finished = now >= done_at
        ran = len(NODES) if finished else min(len(NODES) - 1, int((now - start) / args.duration * len(NODES)))
        nodes = [
            {
                "id": f"n{i}",
                "name": name,
                "status": "completed" if i < ran else ("running" if i == ran else "pending"),
                "error": None,
            }
            for i, name in enumerate(NODES)
        ]
        return {
            "executionId": execution_id,
            "workflowId": "wf_bench",
            "workflowName": "Benchmark",
            "entityType": "deal",
            "entityId": "deal_1",
            "status": "completed" if finished else "running",
            "startedAt": dt.datetime.fromtimestamp(start, dt.timezone.utc).isoformat(),
            "completedAt": dt.datetime.fromtimestamp(done_at, dt.timezone.utc).isoformat()
            if finished
            else None,
            "nodeCount": len(NODES),
            "currentNode": None if finished else NODES[ran],
            "nodes": nodes,
        }

    async def get_execution(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            return web.json_response({"error": {"message": "bad key"}}, status=401)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            peers.add(tuple(peer[:2]))
        polls[0] += 1
        return web.json_response(body(request.match_info["execution_id"], time.time()))

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "polls": polls[0],
                "connections": len(peers),
                "completed_at": {k: v + args.duration for k, v in first_poll.items()},
            }
        )

    async def main() -> None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        app = web.Application()
        app.router.add_get(API + "{execution_id}", get_execution)
        app.router.add_get("/_stats", stats)
        runner = web.AppRunner(app, access_log=None, handle_signals=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx, backlog=4096)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        print(port, flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the trigger process ---------------------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run_triggers(n: int, poll: float, timeout: float) -> tuple[dict[str, float], dict[str, str]]:
    from airflow_provider_smartmca.triggers import ExecutionTrigger

    deadline = time.time() + timeout
    # What the worker stores and the triggerer rebuilds: classpath + JSON kwargs.
    stored = [
        json.dumps(ExecutionTrigger("smartmca_default", f"exec_{i:05d}", poll, deadline).serialize()[1])
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

    async def sample_rss() -> None:
        while True:
            await asyncio.sleep(1)
            rss = int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20
            print(f"t={time.monotonic() - t0:.0f}s rss={rss:.0f}MB fired={len(fired)}", file=sys.stderr)

    t0 = time.monotonic()
    sampler = asyncio.ensure_future(sample_rss()) if os.environ.get("BENCH_VERBOSE") else None
    await asyncio.gather(*(one(t) for t in triggers))
    if sampler:
        sampler.cancel()
    return fired, statuses


async def run_baseline(n: int, poll: float, base: str, cert: str) -> None:
    """The floor: bare aiohttp pollers (one shared session, same pool bound), no provider code."""
    import random
    import ssl

    import aiohttp

    from airflow_provider_smartmca.triggers.execution import JITTER, POOL_LIMIT

    async def poller(session: aiohttp.ClientSession, i: int) -> None:
        await asyncio.sleep(random.uniform(0, poll))
        while True:
            async with session.get(
                f"{base}{API}exec_{i:05d}", headers={"Authorization": f"Bearer {KEY}"}
            ) as r:
                if json.loads(await r.read())["status"] == "completed":
                    return
            await asyncio.sleep(poll * random.uniform(1 - JITTER, 1 + JITTER))

    connector = aiohttp.TCPConnector(limit=POOL_LIMIT, ssl=ssl.create_default_context(cafile=cert))
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(poller(session, i) for i in range(n)))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1000, help="number of triggers (default 1000)")
    parser.add_argument("--poll", type=float, default=1.0, help="poll interval, seconds (default 1)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="D: seconds from first poll to completion (default 10)"
    )
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="run bare aiohttp pollers instead of ExecutionTriggers (the floor on this machine)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() the imported objects first (shows how much of the CPU is Python's GC "
        "walking Airflow's import heap)",
    )
    parser.add_argument("--profile", help="write a cProfile of the trigger process to this file")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cert", help=argparse.SUPPRESS)
    parser.add_argument("--key", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return 0

    with tempfile.TemporaryDirectory(prefix="smartmca-bench-") as tmp:
        from airflow_provider_smartmca.testing.tls import self_signed_cert

        cert, key = (str(p) for p in self_signed_cert(tmp))
        server = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve",
                "--cert",
                cert,
                "--key",
                key,
                "--duration",
                str(args.duration),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            base = f"https://127.0.0.1:{port}"
            # The triggers resolve this connection themselves, through Airflow's async API.
            os.environ["AIRFLOW_CONN_SMARTMCA_DEFAULT"] = json.dumps(
                {"conn_type": "smartmca", "host": base, "password": KEY, "extra": {"verify_ssl": cert}}
            )
            # A triggerer is a long-running process: its imports (aiohttp, Airflow's connection
            # API) are done before our triggers arrive. Do them here, outside the measurement,
            # for the triggers and the baseline alike.
            import aiohttp  # noqa: F401

            from airflow_provider_smartmca.client import aio  # noqa: F401
            from airflow_provider_smartmca.triggers.execution import _resolve

            asyncio.run(_resolve("smartmca_default"))

            gc.collect()
            if args.gc_freeze:
                gc.freeze()
            rss_before_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            profiler = None
            if args.profile:
                import cProfile

                profiler = cProfile.Profile()
                profiler.enable()
            cpu0, wall0 = cpu_seconds(), time.monotonic()
            if args.baseline:
                asyncio.run(run_baseline(args.n, args.poll, base, cert))
                fired, statuses = {}, {}
            else:
                fired, statuses = asyncio.run(run_triggers(args.n, args.poll, args.duration * 3 + 60))
            cpu, wall = cpu_seconds() - cpu0, time.monotonic() - wall0
            if profiler:
                profiler.disable()
                profiler.dump_stats(args.profile)
            stats = _get_stats(base, cert)
        finally:
            server.terminate()
            server.wait(10)

    if args.baseline:
        print(f"baseline (bare aiohttp, Airflow imported): {args.n} pollers, {stats['polls']} polls")
        print(
            f"CPU per poll: {cpu * 1000 / max(1, stats['polls']):.3f} ms; TCP connections: {stats['connections']}"
        )
        print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        return 0
    completed_at = stats["completed_at"]
    latencies = sorted(max(0.0, fired[i] - completed_at[i]) for i in fired if i in completed_at)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan")
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    bound = 1.2 * args.poll + 1
    ok = {
        "cpu": cpu * 1000 / max(1, stats["polls"]) <= 0.3,
        "connections": stats["connections"] <= 100,
        "rss": peak_rss_mb <= 150,
        "latency": bool(latencies) and latencies[-1] <= bound and len(latencies) == args.n,
        "events": set(statuses.values()) == {"success"},
    }
    print(
        f"triggers: {args.n}, poll {args.poll} s, completion {args.duration} s after first poll, HTTPS loopback"
    )
    print(
        f"events: {len(fired)} ({', '.join(f'{s}={list(statuses.values()).count(s)}' for s in set(statuses.values()))})"
    )
    print(f"wall time: {wall:.1f} s; polls counted by the server: {stats['polls']}")
    print(
        f"CPU per poll: {cpu * 1000 / max(1, stats['polls']):.3f} ms ({cpu:.2f} s CPU in total)  [target <= 0.3]"
    )
    print(f"TCP connections opened: {stats['connections']}  [target <= 100]")
    print(f"peak RSS: {peak_rss_mb:.0f} MB ({rss_before_mb:.0f} MB after imports)  [target <= 150]")
    print(
        f"completion -> event latency: max {latencies[-1]:.3f} s, p99 {p99:.3f} s  [target <= {bound:.1f} s]"
    )
    print(
        "targets:",
        "all met" if all(ok.values()) else "MISSED " + ", ".join(k for k, v in ok.items() if not v),
    )
    return 0 if all(ok.values()) else 1


def _get_stats(base: str, cert: str) -> dict[str, Any]:
    import ssl
    import urllib.request

    ctx = ssl.create_default_context(cafile=cert)
    with urllib.request.urlopen(base + "/_stats", context=ctx, timeout=30) as resp:
        return json.load(resp)


if __name__ == "__main__":
    sys.exit(main())
