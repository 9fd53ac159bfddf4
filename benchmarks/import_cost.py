"""What importing the DAG-facing modules costs every DAG file at every parse, measured as whole processes.

Runs ``python -c "import airflow.sdk"`` (baseline) and the same plus the provider's hooks,
operators and sensors, alternately, several times each; prints median wall time and peak RSS
and checks that neither requests nor aiohttp (nor the emulator) got imported.
Targets: at most +30 ms and +3 MB over the baseline.

Usage::

    python benchmarks/import_cost.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from _support import REPO

PROBE = """
import json, resource, sys, time
t0 = time.perf_counter()
import airflow.sdk
{extra}
elapsed = time.perf_counter() - t0
heavy = sorted(m for m in ("requests", "aiohttp", "airflow_provider_smartmca.testing") if m in sys.modules)
print(json.dumps({{"seconds": elapsed, "rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "heavy": heavy}}))
"""
PROVIDER = "import airflow_provider_smartmca.hooks, airflow_provider_smartmca.operators, airflow_provider_smartmca.sensors"


def run(extra: str) -> dict[str, object]:
    """One fresh interpreter; wall time is the whole process's, as a DAG parse pays it."""
    import time

    start = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(extra=extra)],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    result["process_seconds"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    run("")  # warm the OS file cache for both variants
    run(PROVIDER)
    base, prov = [], []
    for _ in range(args.rounds):  # alternate, so machine noise hits both alike
        base.append(run(""))
        prov.append(run(PROVIDER))

    def med(rows: list[dict[str, object]], key: str) -> float:
        return statistics.median(float(r[key]) for r in rows)  # type: ignore[arg-type]

    d_ms = (med(prov, "process_seconds") - med(base, "process_seconds")) * 1000
    d_import_ms = (med(prov, "seconds") - med(base, "seconds")) * 1000
    d_mb = (med(prov, "rss_kb") - med(base, "rss_kb")) / 1024
    heavy = sorted({m for r in prov for m in r["heavy"]})  # type: ignore[attr-defined]
    print(f"rounds:                 {args.rounds} (alternating, medians)")
    print(
        f"import airflow.sdk:     {med(base, 'process_seconds') * 1000:.0f} ms process, {med(base, 'rss_kb') / 1024:.1f} MB peak RSS"
    )
    print(
        f"+ hooks/operators/sensors: {med(prov, 'process_seconds') * 1000:.0f} ms process, {med(prov, 'rss_kb') / 1024:.1f} MB peak RSS"
    )
    print(
        f"added:                  {d_ms:+.1f} ms process ({d_import_ms:+.1f} ms in-import), {d_mb:+.2f} MB (targets <= 30 ms, <= 3 MB)"
    )
    print(f"heavy modules imported: {heavy or 'none'} (requests, aiohttp and the emulator must not be)")
    ok = d_ms <= 30 and d_mb <= 3 and not heavy
    print("result:                 " + ("MEETS TARGETS" if ok else "MISSES TARGETS"))
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
