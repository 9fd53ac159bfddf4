"""Shared benchmark plumbing: the emulator as a separate process (so its CPU is not counted)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def start_emulator(*extra_args: str) -> tuple[subprocess.Popen[str], str]:
    """Run the emulator CLI on a random port; return (process, base_url). Stop it with ``.terminate()``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_smartmca.testing", "--port", "0", *extra_args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith("SmartMCA emulator listening on "):
            return proc, line.rsplit(" ", 1)[1].strip()
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("emulator did not start")


def stop(proc: subprocess.Popen[str]) -> None:
    """Terminate a process started by :func:`start_emulator`."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
