"""pytest fixtures for testing DAGs against the emulator.

Enable in your ``conftest.py`` with
``pytest_plugins = ["airflow_provider_smartmca.testing.pytest_plugin"]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_smartmca.testing.catalog import FULL_KEY
from airflow_provider_smartmca.testing.server import Emulator

if TYPE_CHECKING:
    from airflow_provider_smartmca.testing.dag_runner import DagRunResult

__all__ = [
    "FAST_CONFIG",
    "FULL_KEY",
    "connection_json",
    "smartmca_connection",
    "smartmca_emulator",
    "smartmca_emulator_session",
    "smartmca_make_emulator",
    "smartmca_run_dag",
]

FAST_CONFIG = {"durations": {"pending_seconds": 0.05, "node_seconds": 0.02}}
FULL_SCOPES = "workflows:read workflows:trigger underwriting:trigger"


def connection_json(emulator: Emulator, key: str = FULL_KEY, **extra: object) -> str:
    """An Airflow connection (JSON, for ``AIRFLOW_CONN_<ID>``) to ``emulator`` with ``key``.

    :param extra: connection extras, e.g. ``retry_min_wait=0.01``.
    """
    conn = {"conn_type": "smartmca", "host": emulator.base_url, "password": key, "extra": extra}
    return json.dumps(conn)


@pytest.fixture(scope="session")
def smartmca_emulator_session() -> Iterator[Emulator]:
    """One emulator for the whole session (fast durations); pair with ``reset()``."""
    with Emulator(FAST_CONFIG) as emu:
        yield emu


@pytest.fixture
def smartmca_emulator(smartmca_emulator_session: Emulator) -> Iterator[Emulator]:
    """A running emulator with fast durations, reset to a clean state for each test."""
    smartmca_emulator_session.reset()
    yield smartmca_emulator_session
    smartmca_emulator_session.reset()


@pytest.fixture
def smartmca_connection(smartmca_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the ``smartmca_default`` Airflow connection at the emulator; returns the conn id."""
    monkeypatch.setenv(
        "AIRFLOW_CONN_SMARTMCA_DEFAULT", connection_json(smartmca_emulator, scopes=FULL_SCOPES)
    )
    return "smartmca_default"


@pytest.fixture
def smartmca_make_emulator(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Emulator]]:
    """
    Start an emulator of your own (config, clock), stopped after the test; by default the
    ``smartmca_default`` connection points at it.

    ``make(config=None, *, clock="real", conn_id="smartmca_default", key=..., **emulator_kwargs)``;
    ``conn_id=None`` sets no connection. With ``clock="manual"`` the emulator's time stands still
    until :meth:`~airflow_provider_smartmca.testing.Emulator.advance` moves it::

        def test_a_two_hour_onboarding(smartmca_make_emulator):
            emu = smartmca_make_emulator(
                {"workflows": [{"id": "wf_deal_onboarding", "pending_seconds": 3600, "node_seconds": 450}]},
                clock="manual",
            )
            hook = SmartMCAHook()
            started = hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_1")
            emu.advance(2 * 3600)
            assert hook.wait_for_execution(started.execution_id, poll_interval=0.05).status == "completed"
    """
    started: list[Emulator] = []

    def make(
        config: Any = None,
        *,
        clock: str = "real",
        conn_id: str | None = "smartmca_default",
        key: str = FULL_KEY,
        **emulator_kwargs: Any,
    ) -> Emulator:
        emulator = Emulator(config, clock=clock, **emulator_kwargs).start()
        started.append(emulator)
        if conn_id is not None:
            monkeypatch.setenv(
                f"AIRFLOW_CONN_{conn_id.upper()}", connection_json(emulator, key, scopes=FULL_SCOPES)
            )
        return emulator

    yield make
    for emulator in started:
        emulator.stop()


@pytest.fixture
def smartmca_run_dag() -> Callable[..., DagRunResult]:
    """
    :func:`~airflow_provider_smartmca.testing.run_dag`: run a DAG file with ``dag.test()``.

    Pair it with ``smartmca_connection`` to run against the emulator::

        def test_my_dag(smartmca_connection, smartmca_run_dag):
            result = smartmca_run_dag("dags/onboard_deal.py")
            assert result.state == "success", result.task_states
    """
    from airflow_provider_smartmca.testing.dag_runner import run_dag

    return run_dag
