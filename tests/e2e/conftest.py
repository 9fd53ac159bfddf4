"""Fixtures of the end-to-end suite: real Airflow deployments, each built by one factory.

:func:`running_stack` starts what a :class:`StackSpec` names - PostgreSQL, the SmartMCA emulator,
Redis for the CeleryExecutor, and the Airflow components - once per session (``LOCAL``) or per
module (``EVENTS``, ``CELERY``, ``CELERY_EVENTS``): the slowest part. Every test starts its own
DAG runs (on a stack that is reset, after an emulator reset). A failed test prints the tail of
every component's log; all logs are copied to ``$E2E_ARTIFACTS/<stack>`` (default
``build/e2e-artifacts``) at the end.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import REPO, Airflow, EmulatorProc, Postgres, Redis, make_root, wait_for

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
        # The application pipeline example starts the assignment and waits with a deferrable
        # ExecutionSensor: the execution must still run when the sensor first checks, so it defers.
        {"id": "wf_app_assign_underwriter", "pending_seconds": 20, "node_seconds": 0.5},
        {
            "id": "wf_e2e_medium",
            "name": "E2E medium",
            "entityType": "deal",
            "nodeCount": 3,
            "pending_seconds": 5,
            "node_seconds": 1,
        },
        {
            "id": "wf_e2e_long",
            "name": "E2E long",
            "entityType": "deal",
            "nodeCount": 2,
            "pending_seconds": 200,
            "node_seconds": 2,
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
    """One running deployment.

    :param before_watcher: executions that completed before any watcher started (must never fire).
    :param redis: the Celery broker, on a Celery stack.
    """

    spec: StackSpec
    root: Path
    pg: Postgres
    emulator: EmulatorProc
    airflow: Airflow
    example_files: list[str]
    before_watcher: list[str] = field(default_factory=list)
    redis: Redis | None = None

    def log(self, msg: str) -> None:
        print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _example_files() -> list[Path]:
    return sorted(
        p for p in EXAMPLE_DAGS.glob("*.py") if not p.name.startswith("_") and p.name not in EVENT_EXAMPLES
    )


@dataclass(frozen=True)
class StackSpec:
    """What a deployment runs: its emulator catalog, its DAG files, its executor and components.

    :param history: ``(workflow, entity_id)`` executions started (and awaited to completion) before
        Airflow starts, so no watcher can have seen them.
    :param env: Airflow settings of this stack on top of the harness defaults.
    """

    name: str
    emulator_config: dict[str, Any]
    dag_files: Callable[[], list[Path]]
    executor: str = "LocalExecutor"
    triggerers: int = 1
    celery_workers: int = 0
    env: dict[str, str] = field(default_factory=dict)
    history: tuple[tuple[str, str], ...] = ()


@contextmanager
def running_stack(spec: StackSpec) -> Iterator[Stack]:
    """Start PostgreSQL, the emulator, Redis (Celery only) and Airflow for ``spec``; stop them and
    copy their logs to ``$E2E_ARTIFACTS/<spec.name>`` at the end."""
    root = make_root()
    pg: Postgres | None = None
    emu: EmulatorProc | None = None
    broker: Redis | None = None
    af: Airflow | None = None
    t0 = time.monotonic()
    try:
        pg = Postgres(root / "pg")
        emu = EmulatorProc(root, spec.emulator_config)
        before = [emu.start_execution(wf, "deal", entity) for wf, entity in spec.history]
        files = spec.dag_files()
        env = {"AIRFLOW__CORE__EXECUTOR": spec.executor, **spec.env}
        if spec.executor == "CeleryExecutor":
            broker = Redis(root)
            env.update(celery_env(broker.url, pg.port))
        af = Airflow(root, pg.url, emu.url, files, extra_env=env)
        af.migrate()
        emulator = emu
        for _wf, entity in spec.history:
            wait_for(
                f"the history execution {entity} to complete",
                lambda entity=entity: emulator.executions(entity_id=entity)[0]["status"] == "completed",
                120,
            )
        af.start_all(spec.triggerers, spec.celery_workers)
        s = Stack(
            spec, root, pg, emu, af, [p.name for p in files if p.parent == EXAMPLE_DAGS], before, broker
        )
        s.log(f"{spec.name} stack up in {time.monotonic() - t0:.0f}s (logs: {root / 'logs'})")
        yield s
    except BaseException:
        if af is not None:
            print(af.tails(60), file=sys.stderr)
        raise
    finally:
        _tear_down(root, pg, emu, af, broker, ARTIFACTS / spec.name)


def celery_env(broker_url: str, pg_port: int) -> dict[str, str]:
    """CeleryExecutor settings: Redis broker, PostgreSQL result backend, small workers, and a short
    task heartbeat timeout so a killed worker's try is failed (and retried elsewhere) quickly."""
    return {
        "AIRFLOW__CELERY__BROKER_URL": broker_url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+postgresql+psycopg2://postgres@127.0.0.1:{pg_port}/airflow",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "4",
        "AIRFLOW__CELERY__TASK_ACKS_LATE": "True",
        "AIRFLOW__CELERY__WORKER_ENABLE_REMOTE_CONTROL": "False",
        # A message unacknowledged this long is delivered again (to a starting worker at once).
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "60",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
        "AIRFLOW__CORE__PARALLELISM": "64",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "128",
    }


def _tear_down(
    root: Path,
    pg: Postgres | None,
    emu: EmulatorProc | None,
    af: Airflow | None,
    broker: Redis | None,
    artifacts: Path,
) -> None:
    """Stop every process of a stack, copy its logs to ``artifacts`` and delete its files."""
    if af is not None:
        af.stop_all()
    if broker is not None:
        broker.stop()
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


def _watched(s: Stack, request: pytest.FixtureRequest, reset: bool) -> Iterator[Stack]:
    """A stack for one test (emulator reset first if ``reset``); on failure, every component's log tail."""
    if reset:
        s.emulator.reset()
    s.airflow.check_alive()
    t0 = time.monotonic()
    yield s
    s.log(f"{request.node.name} took {time.monotonic() - t0:.0f}s")
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        print(f"\n===== {s.spec.name} stack logs after failed {request.node.name} =====", file=sys.stderr)
        print(s.airflow.tails(80), file=sys.stderr)
        print(f"\n----- emulator -----\n{s.emulator.proc.tail(30)}", file=sys.stderr)
    if reset:
        s.emulator.admin("DELETE", "faults")
        s.emulator.admin("POST", "release")


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

#: The LocalExecutor deployment of most scenarios: the example DAGs and the e2e test DAGs.
LOCAL = StackSpec("local", EMULATOR_CONFIG, lambda: [*_example_files(), *sorted(TEST_DAGS.glob("*.py"))])
#: Event-driven scheduling: ``USE_JOB_SCHEDULE`` on, and only the asset-scheduled DAGs (so nothing
#: else can start runs by itself). History: an onboarding that ends before any watcher exists.
EVENTS = StackSpec(
    "events",
    EVENT_EMULATOR_CONFIG,
    lambda: [*(EXAMPLE_DAGS / name for name in EVENT_EXAMPLES), *sorted(EVENT_TEST_DAGS.glob("*.py"))],
    env={"AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True"},
    history=((ONBOARDING, "deal-before-watcher"),),
)
#: Where Airflow runs at scale: CeleryExecutor (Redis broker), two workers, two triggerers; the
#: e2e test DAGs only (the example DAGs are proven on the LocalExecutor stack).
CELERY = StackSpec(
    "celery",
    EMULATOR_CONFIG,
    lambda: sorted(TEST_DAGS.glob("*.py")),
    executor="CeleryExecutor",
    triggerers=2,
    celery_workers=2,
    # 100 waits cannot fit in one triggerer: they spread over both.
    env={"AIRFLOW__TRIGGERER__CAPACITY": "70"},
)
#: The event stack's DAGs and history on the Celery stack's components.
CELERY_EVENTS = StackSpec(
    "celery-events",
    EVENT_EMULATOR_CONFIG,
    EVENTS.dag_files,
    executor="CeleryExecutor",
    triggerers=2,
    celery_workers=2,
    env=EVENTS.env,
    history=EVENTS.history,
)


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    with running_stack(LOCAL) as s:
        yield s


@pytest.fixture
def e2e(stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The session stack with a freshly reset emulator."""
    yield from _watched(stack, request, reset=True)


@pytest.fixture(scope="module")
def event_stack() -> Iterator[Stack]:
    """Its own PostgreSQL, emulator and Airflow, started only when an event scenario runs."""
    with running_stack(EVENTS) as s:
        yield s


@pytest.fixture
def events(event_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The event stack (not reset between tests: its watchers keep their watermark)."""
    yield from _watched(event_stack, request, reset=False)


@pytest.fixture(scope="module")
def celery_stack() -> Iterator[Stack]:
    with running_stack(CELERY) as s:
        yield s


@pytest.fixture
def celery(celery_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The Celery stack with a freshly reset emulator."""
    yield from _watched(celery_stack, request, reset=True)


@pytest.fixture(scope="module")
def celery_event_stack() -> Iterator[Stack]:
    with running_stack(CELERY_EVENTS) as s:
        yield s


@pytest.fixture
def celery_events(celery_event_stack: Stack, request: pytest.FixtureRequest) -> Iterator[Stack]:
    yield from _watched(celery_event_stack, request, reset=False)
