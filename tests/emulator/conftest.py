"""Fixtures for the emulator's own tests (real HTTP on loopback, no mocks)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator

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
def make_emulator(smartmca_make_emulator: Callable[..., Emulator]) -> Callable[..., Emulator]:
    """The plugin's factory, with no connection: emulators with a custom config, stopped at teardown."""
    return functools.partial(smartmca_make_emulator, conn_id=None)
