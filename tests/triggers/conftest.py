"""Fixtures for the sensor/trigger tests: an emulator whose executions take a little while.

Executions start their clock at their first GET, so an execution created before a DAG run is
still pending when the sensor first looks, and deferrable mode really defers.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator

import pytest

from airflow_provider_smartmca.testing import FULL_KEY
from airflow_provider_smartmca.testing.server import Emulator

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


def _waited_for_a_cpu() -> float:
    """Seconds the calling thread has spent runnable but waiting for a CPU (Linux schedstat)."""
    with open(f"/proc/self/task/{threading.get_native_id()}/schedstat") as stat:
        return int(stat.read().split()[1]) / 1e9


@pytest.fixture
def loop_blocks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The callbacks of this thread's event loops (not the emulator's) that held the loop: 50 ms
    or more of this thread's CPU (computing), or 0.5 s or more of wall time (sleeping or waiting
    on I/O), not counting the time the OS kept the thread waiting for a CPU. A loaded machine
    preempts a callback and makes it wait for the GIL (the emulator runs in this process); it does
    not make the callback block. (asyncio's debug mode times callbacks by the wall clock alone, so a
    busy machine trips it.)"""
    if not os.path.exists(f"/proc/self/task/{threading.get_native_id()}/schedstat"):
        pytest.skip("needs Linux schedstat to tell a blocking callback from a preempted one")
    blocks: list[str] = []
    run = asyncio.events.Handle._run
    test_thread = threading.get_ident()

    def timed(handle: asyncio.Handle) -> None:
        if threading.get_ident() != test_thread:
            return run(handle)
        started, cpu, waited = time.perf_counter(), time.thread_time(), _waited_for_a_cpu()
        try:
            run(handle)
        finally:
            cpu = time.thread_time() - cpu
            held = time.perf_counter() - started - (_waited_for_a_cpu() - waited)
            if cpu >= 0.05 or held >= 0.5:
                blocks.append(f"{handle!r} held the loop for {held:.3f} s ({cpu:.3f} s of CPU)")

    monkeypatch.setattr(asyncio.events.Handle, "_run", timed)
    return blocks
