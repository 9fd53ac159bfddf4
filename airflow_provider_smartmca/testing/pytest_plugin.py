"""pytest fixtures for testing DAGs against the emulator.

Enable in your ``conftest.py`` with
``pytest_plugins = ["airflow_provider_smartmca.testing.pytest_plugin"]``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

from airflow_provider_smartmca.testing.server import Emulator

if TYPE_CHECKING:
    from airflow_provider_smartmca.testing.dag_runner import DagRunResult

__all__ = [
    "FAST_CONFIG",
    "smartmca_connection",
    "smartmca_emulator",
    "smartmca_emulator_session",
    "smartmca_run_dag",
]

FAST_CONFIG = {"durations": {"pending_seconds": 0.05, "node_seconds": 0.02}}
FULL_KEY = "smca_test_full"
FULL_SCOPES = "workflows:read workflows:trigger underwriting:trigger"


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
    conn = {
        "conn_type": "smartmca",
        "host": smartmca_emulator.base_url,
        "password": FULL_KEY,
        "extra": {"scopes": FULL_SCOPES},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", json.dumps(conn))
    return "smartmca_default"


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
