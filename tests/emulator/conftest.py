"""Fixtures for the emulator's own tests (real HTTP on loopback, no mocks)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from emu_helpers import Api

# Importing the plugin's fixtures here (instead of ``pytest_plugins``) works from
# a non-root conftest.
from airflow_provider_smartmca.testing.pytest_plugin import (  # noqa: F401
    smartmca_connection,
    smartmca_emulator,
    smartmca_emulator_session,
)
from airflow_provider_smartmca.testing.server import Emulator


@pytest.fixture
def api(smartmca_emulator: Emulator) -> Iterator[Api]:  # noqa: F811
    client = Api(smartmca_emulator)
    yield client
    client.s.close()


@pytest.fixture
def make_emulator() -> Iterator[Any]:
    """Factory for emulators with a custom config; all stopped at teardown."""
    started: list[Emulator] = []

    def factory(config: Any = None, **kw: Any) -> Emulator:
        emu = Emulator(config, **kw).start()
        started.append(emu)
        return emu

    yield factory
    for emu in started:
        emu.stop()
