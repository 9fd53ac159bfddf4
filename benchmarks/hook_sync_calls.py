"""CPU per call and TCP connections for sequential sync calls through one SmartMCAHook, over HTTPS.

The emulator runs in a separate process with a throwaway self-signed certificate. The same run
measures a baseline that opens a new ``requests.Session`` per call (what the dbt Cloud hook does).
Connections are counted where urllib3 opens them. Target: 1 connection, <= 0.8 ms CPU per call.

Usage::

    python benchmarks/hook_sync_calls.py [--calls 300]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

from _support import start_emulator, stop

KEY = "smca_test_full"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()

    import requests
    import urllib3.util.connection

    from airflow_provider_smartmca.hooks import SmartMCAHook
    from airflow_provider_smartmca.testing.tls import self_signed_cert

    opened = 0
    real_create = urllib3.util.connection.create_connection

    def counting_create(*a, **kw):  # type: ignore[no-untyped-def]
        nonlocal opened
        opened += 1
        return real_create(*a, **kw)

    urllib3.util.connection.create_connection = counting_create  # type: ignore[assignment]
    urllib3.connection.connection.create_connection = counting_create  # type: ignore[attr-defined]

    tmp = tempfile.mkdtemp()
    cert, key = self_signed_cert(tmp)
    proc, base_url = start_emulator("--tls-cert", str(cert), "--tls-key", str(key))
    try:
        conn = {
            "conn_type": "smartmca",
            "host": base_url,
            "password": KEY,
            "extra": {"verify_ssl": str(cert)},
        }
        os.environ["AIRFLOW_CONN_SMARTMCA_DEFAULT"] = json.dumps(conn)
        hook = SmartMCAHook()
        execution_id = hook.trigger_workflow("wf_deal_onboarding", "deal", "bench_deal").execution_id
        hook.close()

        hook = SmartMCAHook()
        hook.get_execution(execution_id)  # warm-up: resolve the connection, load TLS context
        opened = 0
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for _ in range(args.calls):
            hook.get_execution(execution_id)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        hook_connections = opened + 1  # + the warm-up connection, reused by every call

        opened = 0
        url = f"{base_url}/api/public/v1/workflows/executions/{execution_id}"
        headers = {"Authorization": f"Bearer {KEY}"}
        bcpu0 = time.process_time()
        for _ in range(args.calls):
            with requests.Session() as session:  # baseline: a new session per call
                session.get(url, headers=headers, verify=str(cert), timeout=30).raise_for_status()
        bcpu = time.process_time() - bcpu0
        baseline_connections = opened
    finally:
        stop(proc)

    print(f"calls:                         {args.calls} sequential get_execution over HTTPS on loopback")
    print(f"SmartMCAHook CPU per call:     {cpu / args.calls * 1000:.3f} ms (target <= 0.8 ms)")
    print(f"SmartMCAHook wall per call:    {wall / args.calls * 1000:.3f} ms")
    print(f"SmartMCAHook TCP connections:  {hook_connections} (target 1)")
    print(
        f"baseline (session per call):   {bcpu / args.calls * 1000:.3f} ms CPU per call, {baseline_connections} connections"
    )
    ok = cpu / args.calls <= 0.0008 and hook_connections == 1
    print("result:                        " + ("MEETS TARGETS" if ok else "MISSES TARGETS"))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
