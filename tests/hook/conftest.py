"""Fixtures for hook tests: a connection factory pointing at the emulator."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from airflow_provider_smartmca.hooks import SmartMCAHook
from airflow_provider_smartmca.testing import FULL_KEY


@pytest.fixture
def make_hook(smartmca_emulator, monkeypatch) -> Callable[..., SmartMCAHook]:
    """Build a hook on a fresh ``smartmca_default`` connection to the emulator; fast retries."""

    def make(
        *,
        key: str = FULL_KEY,
        extra: dict[str, Any] | None = None,
        host: str | None = None,
        **hook_kwargs: Any,
    ) -> SmartMCAHook:
        conn = {
            "conn_type": "smartmca",
            "host": host or smartmca_emulator.base_url,
            "password": key,
            "extra": {"retry_min_wait": 0.01, "retry_max_wait": 0.05, **(extra or {})},
        }
        monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", json.dumps(conn))
        return SmartMCAHook(**hook_kwargs)

    return make


@pytest.fixture
def hook(make_hook) -> SmartMCAHook:
    """A hook with a full-scope key."""
    return make_hook()
