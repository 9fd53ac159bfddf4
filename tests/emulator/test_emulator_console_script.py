"""The installed ``smartmca-emulator`` console script, driven with the reference's own cURL example."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from airflow_provider_smartmca.testing import FULL_KEY

SCRIPT = Path(sys.executable).with_name("smartmca-emulator")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_console_script_serves_the_reference_curl_example() -> None:
    assert SCRIPT.exists(), "the console script is installed with the package"
    proc = subprocess.Popen([str(SCRIPT), "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("SmartMCA emulator listening on "), first
        url = first.rsplit(" ", 1)[1].strip()
        # As in the API reference's cURL example, with the emulator's base URL and key.
        out = subprocess.run(
            ["curl", "-sS", "-X", "POST", f"{url}/api/public/v1/workflows/trigger",
             "-H", f"Authorization: Bearer {FULL_KEY}", "-H", "Content-Type: application/json",
             "-d", json.dumps({"workflowType": "wf_deal_onboarding", "entityType": "deal", "entityId": "deal_456"}),
             "-w", "\n%{http_code}"],
            capture_output=True, text=True, timeout=20, check=True,
        ).stdout  # fmt: skip
        body, code = out.rsplit("\n", 1)
        assert code == "202"
        started = json.loads(body)
        assert started["status"] == "pending" and started["entityId"] == "deal_456"
        assert started["message"] == 'Workflow "Deal Onboarding" triggered'
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
