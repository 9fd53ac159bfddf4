"""Shared helpers for the emulator tests (unique module name to avoid clashes)."""

from __future__ import annotations

import time
from typing import Any

import requests

from airflow_provider_smartmca.testing import FULL_KEY, READ_KEY, TRIGGER_KEY
from airflow_provider_smartmca.testing.server import Emulator

FULL = {"Authorization": f"Bearer {FULL_KEY}"}
READ = {"Authorization": f"Bearer {READ_KEY}"}
TRIGGER = {"Authorization": f"Bearer {TRIGGER_KEY}"}


class Api:
    """Tiny test client bound to an emulator."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.s = requests.Session()

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
        return self.s.get(
            self.emu.api_url + path, headers=FULL if headers is None else headers, timeout=10, **kw
        )

    def post(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
        return self.s.post(
            self.emu.api_url + path, headers=FULL if headers is None else headers, timeout=10, **kw
        )

    def trigger(self, wf: str, entity_type: str, entity_id: str = "e1") -> dict[str, Any]:
        r = self.post(
            "/workflows/trigger", json={"workflowType": wf, "entityType": entity_type, "entityId": entity_id}
        )
        assert r.status_code == 202, r.text
        return dict(r.json())

    def wait_status(self, exec_id: str, statuses: tuple[str, ...], timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = dict(self.get(f"/workflows/executions/{exec_id}").json())
            if body["status"] in statuses or time.monotonic() > deadline:
                return body
            time.sleep(0.01)
