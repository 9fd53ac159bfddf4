"""Throughput of the SmartMCA emulator.

Starts the emulator CLI in a separate process, opens N keep-alive connections
with an aiohttp client and sends a bounded number of ``GET
/workflows/executions/{id}`` requests (bounded in time too).

Usage::

    python benchmarks/emulator_throughput.py [--connections 1000] [--requests 20000] [--max-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import urllib.request

import aiohttp
from _support import start_emulator as start_server

KEY = "smca_test_full"


def trigger(api: str) -> str:
    body = json.dumps(
        {"workflowType": "wf_deal_onboarding", "entityType": "deal", "entityId": "bench"}
    ).encode()
    req = urllib.request.Request(
        api + "/workflows/trigger",
        data=body,
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(json.load(resp)["executionId"])


async def run(api: str, exec_id: str, connections: int, total: int, max_seconds: float) -> dict[str, float]:
    url = f"{api}/workflows/executions/{exec_id}"
    headers = {"Authorization": f"Bearer {KEY}"}
    connector = aiohttp.TCPConnector(limit=connections, force_close=False, keepalive_timeout=120)
    timeout = aiohttp.ClientTimeout(total=60)
    latencies: list[float] = []
    errors = 0
    sent = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Open every connection up front so the measured phase really uses N sockets.
        async def warm() -> None:
            nonlocal errors
            try:
                async with session.get(url, headers=headers) as r:
                    await r.read()
            except aiohttp.ClientError:
                errors += 1

        await asyncio.gather(*(warm() for _ in range(connections)))
        # Private attribute, read only to report how many sockets are pooled.
        opened = sum(len(v) for v in getattr(connector, "_conns", {}).values())
        start = time.perf_counter()
        deadline = start + max_seconds

        async def worker() -> None:
            nonlocal errors, sent
            while sent < total and time.perf_counter() < deadline:
                sent += 1
                t0 = time.perf_counter()
                try:
                    async with session.get(url, headers=headers) as r:
                        await r.read()
                        if r.status != 200:
                            errors += 1
                except (TimeoutError, aiohttp.ClientError):
                    errors += 1
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - start
    latencies.sort()
    n = len(latencies)
    return {
        "connections": connections,
        "idle_pooled_after_warmup": opened,
        "requests": n,
        "seconds": elapsed,
        "req_per_s": n / elapsed if elapsed else 0.0,
        "p50_ms": latencies[n // 2] * 1000 if n else 0.0,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else 0.0,
        "errors": errors,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--max-seconds", type=float, default=30.0)
    args = p.parse_args()
    proc, base = start_server()
    try:
        api = base + "/api/public/v1"
        exec_id = trigger(api)
        res = asyncio.run(run(api, exec_id, args.connections, args.requests, args.max_seconds))
    finally:
        proc.terminate()
        proc.wait(10)
    pooled = res["idle_pooled_after_warmup"]
    print(f"connections:      {res['connections']} (keep-alive sockets pooled after warm-up: {pooled})")
    print(f"requests:         {res['requests']} in {res['seconds']:.2f} s")
    print(f"throughput:       {res['req_per_s']:.0f} req/s")
    print(f"latency p50/p99:  {res['p50_ms']:.1f} ms / {res['p99_ms']:.1f} ms")
    print(f"errors:           {res['errors']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
