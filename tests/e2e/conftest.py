"""Fixtures of the end-to-end suite: one real Airflow deployment per session.

The session starts PostgreSQL, the SmartMCA emulator and the Airflow components once (the
slowest part); every test resets the emulator and starts its own DAG runs. A failed test prints
the tail of every component's log; all logs are copied to ``$E2E_ARTIFACTS`` (default
``build/e2e-artifacts``) at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.harness import REPO, Airflow, EmulatorProc, Postgres, make_root

ARTIFACTS = Path(os.environ.get("E2E_ARTIFACTS", REPO / "build" / "e2e-artifacts"))
EXAMPLE_DAGS = REPO / "airflow_provider_smartmca" / "examples"
TEST_DAGS = Path(__file__).resolve().parent / "dags"

# Default catalog plus two e2e workflows long enough to observe (and disturb) a deferred wait.
EMULATOR_CONFIG = {
    "durations": {"pending_seconds": 3, "node_seconds": 0.5},
    "request_log_size": 200000,
    "workflows": [
        {
            "id": "wf_e2e_medium",
            "name": "E2E medium",
            "entityType": "deal",
            "nodeCount": 3,
            "pending_seconds": 5,
            "node_seconds": 1,
        },
        {
            "id": "wf_e2e_slow",
            "name": "E2E slow",
            "entityType": "deal",
            "nodeCount": 2,
            "pending_seconds": 50,
            "node_seconds": 2,
        },
    ],
}


@dataclass
class Stack:
    root: Path
    pg: Postgres
    emulator: EmulatorProc
    airflow: Airflow
    example_files: list[str]

    def log(self, msg: str) -> None:
        print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _example_files() -> list[Path]:
    return sorted(p for p in EXAMPLE_DAGS.glob("*.py") if not p.name.startswith("_"))


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    root = make_root()
    pg: Postgres | None = None
    emu: EmulatorProc | None = None
    af: Airflow | None = None
    t0 = time.monotonic()
    try:
        pg = Postgres(root / "pg")
        emu = EmulatorProc(root, EMULATOR_CONFIG)
        examples = _example_files()
        af = Airflow(root, pg.url, emu.url, [*examples, *sorted(TEST_DAGS.glob("*.py"))])
        af.migrate()
        af.start_all()
        s = Stack(root, pg, emu, af, [p.name for p in examples])
        s.log(f"stack up in {time.monotonic() - t0:.0f}s (logs: {root / 'logs'})")
        yield s
    except BaseException:
        if af is not None:
            print(af.tails(60), file=sys.stderr)
        raise
    finally:
        if af is not None:
            af.stop_all()
        if emu is not None:
            emu.proc.stop()
        if pg is not None:
            pg.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for f in (root / "logs").glob("*.log"):
            shutil.copy(f, ARTIFACTS / f.name)
        if pg is not None and pg.log.exists():
            shutil.copy(pg.log, ARTIFACTS / "postgres.log")
        if af is not None and (af.home / "logs").exists():
            shutil.copytree(af.home / "logs", ARTIFACTS / "airflow-task-logs", dirs_exist_ok=True)
        shutil.rmtree(root, ignore_errors=True)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


@pytest.fixture
def e2e(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The session stack with a freshly reset emulator; on failure, print every component's log tail."""
    stack.emulator.reset()
    stack.airflow.check_alive()
    t0 = time.monotonic()
    yield stack
    stack.log(f"{request.node.name} took {time.monotonic() - t0:.0f}s")
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n===== component logs after failed {request.node.name} =====", file=sys.stderr)
        print(stack.airflow.tails(50), file=sys.stderr)
        print(f"\n----- emulator -----\n{stack.emulator.proc.tail(30)}", file=sys.stderr)
    stack.emulator.admin("DELETE", "faults")
    stack.emulator.admin("POST", "release")
