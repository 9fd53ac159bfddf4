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

from tests.e2e.harness import REPO, Airflow, EmulatorProc, Postgres, make_root, wait_for

ARTIFACTS = Path(os.environ.get("E2E_ARTIFACTS", REPO / "build" / "e2e-artifacts"))
EXAMPLE_DAGS = REPO / "airflow_provider_smartmca" / "examples"
TEST_DAGS = Path(__file__).resolve().parent / "dags"
# Event-driven DAGs run only in the ``event_stack`` (asset scheduling on, nothing else parsed): in
# the session stack their watchers would poll the emulator during every other scenario.
EVENT_EXAMPLES = ("example_smartmca_funding_on_onboarding.py",)
EVENT_TEST_DAGS = TEST_DAGS / "events"

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
    return sorted(
        p for p in EXAMPLE_DAGS.glob("*.py") if not p.name.startswith("_") and p.name not in EVENT_EXAMPLES
    )


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
        _tear_down(root, pg, emu, af, ARTIFACTS)


def _tear_down(
    root: Path, pg: Postgres | None, emu: EmulatorProc | None, af: Airflow | None, artifacts: Path
) -> None:
    """Stop every process of a stack, copy its logs to ``artifacts`` and delete its files."""
    if af is not None:
        af.stop_all()
    if emu is not None:
        emu.proc.stop()
    if pg is not None:
        pg.stop()
    artifacts.mkdir(parents=True, exist_ok=True)
    for f in (root / "logs").glob("*.log"):
        shutil.copy(f, artifacts / f.name)
    if pg is not None and pg.log.exists():
        shutil.copy(pg.log, artifacts / "postgres.log")
    if af is not None and (af.home / "logs").exists():
        shutil.copytree(af.home / "logs", artifacts / "airflow-task-logs", dirs_exist_ok=True)
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


# --------------------------------------------------------------------------- event-driven stack
@dataclass
class EventStack(Stack):
    """A second deployment for event-driven scheduling: ``USE_JOB_SCHEDULE`` on, and only the
    asset-scheduled DAGs in its dags folder (so nothing else can start runs by itself).

    :param before_watcher: executions that completed before any watcher started (must never fire).
    """

    before_watcher: list[str]


#: The one workflow whose completion the funding example watches (see its module).
ONBOARDING = "wf_deal_onboarding"
# Onboarding ends ~6 s after it starts here: long enough to be seen active, short enough to test.
EVENT_EMULATOR_CONFIG = {
    **EMULATOR_CONFIG,
    "workflows": [
        {"id": ONBOARDING, "pending_seconds": 2, "node_seconds": 0.5},
        *EMULATOR_CONFIG["workflows"],
    ],
}


@pytest.fixture(scope="module")
def event_stack() -> Iterator[EventStack]:
    """Its own PostgreSQL, emulator and Airflow, started only when an event scenario runs."""
    root = make_root()
    pg: Postgres | None = None
    emu: EmulatorProc | None = None
    af: Airflow | None = None
    t0 = time.monotonic()
    try:
        pg = Postgres(root / "pg")
        emu = EmulatorProc(root, EVENT_EMULATOR_CONFIG)
        # History: an onboarding that ends before any watcher exists. It must never fire.
        before = emu.start_execution(ONBOARDING, "deal", "deal-before-watcher")
        files = [*(EXAMPLE_DAGS / name for name in EVENT_EXAMPLES), *sorted(EVENT_TEST_DAGS.glob("*.py"))]
        af = Airflow(root, pg.url, emu.url, files, extra_env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True"})
        af.migrate()
        wait_for(
            "the pre-watcher execution to complete",
            lambda: emu.executions(entity_id="deal-before-watcher")[0]["status"] == "completed",
            60,
        )
        af.start_all()
        s = EventStack(root, pg, emu, af, list(EVENT_EXAMPLES), before_watcher=[before])
        s.log(f"event stack up in {time.monotonic() - t0:.0f}s (logs: {root / 'logs'})")
        yield s
    except BaseException:
        if af is not None:
            print(af.tails(60), file=sys.stderr)
        raise
    finally:
        _tear_down(root, pg, emu, af, ARTIFACTS / "events")


@pytest.fixture
def events(event_stack: EventStack, request: pytest.FixtureRequest) -> Iterator[EventStack]:
    """The event stack (not reset between tests: its watchers keep their watermark); logs on failure."""
    event_stack.airflow.check_alive()
    t0 = time.monotonic()
    yield event_stack
    event_stack.log(f"{request.node.name} took {time.monotonic() - t0:.0f}s")
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n===== event stack logs after failed {request.node.name} =====", file=sys.stderr)
        print(event_stack.airflow.tails(80), file=sys.stderr)
        print(f"\n----- emulator -----\n{event_stack.emulator.proc.tail(30)}", file=sys.stderr)
