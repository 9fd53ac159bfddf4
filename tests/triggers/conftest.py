"""Fixtures for the sensor/trigger tests: an emulator whose executions take a little while.

Executions start their clock at their first GET, so an execution created before a DAG run is
still pending when the sensor first looks, and deferrable mode really defers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from airflow_provider_smartmca.testing.server import Emulator

FULL_KEY = "smca_test_full"
NOREAD_KEY = "smca_test_noread_9f3c"  # accepted by the server, but lacks workflows:read -> 403
WRONG_KEY = "smca_wrong_key_7e21"  # unknown to the server -> 401

CONFIG = {
    "keys": {
        FULL_KEY: {"name": "full", "scopes": ["workflows:read", "workflows:trigger", "underwriting:trigger"]},
        NOREAD_KEY: {"name": "noread", "scopes": ["workflows:trigger"]},
    },
    "durations": {"pending_seconds": 0.5, "node_seconds": 0.05, "clock_starts_on_first_get": True},
    "workflows": [
        {"id": "wf_slow", "name": "Slow", "entityType": "deal", "nodeCount": 2, "node_seconds": 600},
    ],
}

# Fast client retries, so storms cost tenths of seconds rather than the default backoff.
FAST_RETRIES = {"retry_min_wait": 0.05, "retry_max_wait": 0.2, "max_retries": 3}


def conn_json(emulator: Emulator, key: str, **extra: object) -> str:
    return json.dumps(
        {
            "conn_type": "smartmca",
            "host": emulator.base_url,
            "password": key,
            "extra": {**FAST_RETRIES, **extra},
        }
    )


@pytest.fixture(scope="session")
def trig_emulator() -> Iterator[Emulator]:
    with Emulator(CONFIG) as emu:
        yield emu


@pytest.fixture
def emu(trig_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Iterator[Emulator]:
    """A clean emulator plus three connections: good key, wrong key (401), key lacking read (403)."""
    trig_emulator.reset()
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", conn_json(trig_emulator, FULL_KEY))
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_WRONG", conn_json(trig_emulator, WRONG_KEY))
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_NOREAD", conn_json(trig_emulator, NOREAD_KEY))
    yield trig_emulator
    trig_emulator.reset()


def start_execution(workflow: str, entity_type: str = "deal") -> str:
    """Create an execution through the sync hook; its clock starts at its first GET."""
    from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook

    hook = SmartMCAHook("smartmca_default")
    try:
        return hook.trigger_workflow(workflow, entity_type, f"ent_{workflow}").execution_id
    finally:
        hook.close()
