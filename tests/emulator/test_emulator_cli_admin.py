"""CLI (separate process), admin HTTP API and the pytest plugin."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_smartmca.testing import FULL_KEY, READ_KEY, TRIGGER_KEY

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
KEY = FULL_KEY


def _call(method: str, url: str, body: Any = None, key: str | None = KEY) -> tuple[int, Any, dict[str, str]]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null"), dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null"), dict(err.headers)


@pytest.fixture(scope="module")
def cli_server() -> Iterator[tuple[str, list[str]]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_smartmca.testing", "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    timer = threading.Timer(20, proc.kill)  # never hang the suite
    timer.start()
    try:
        while True:
            line = proc.stdout.readline()
            assert line, f"CLI exited early: {proc.stderr.read() if proc.stderr else ''}"
            lines.append(line.rstrip("\n"))
            if line.startswith("Try: curl"):
                break
    finally:
        timer.cancel()
    url = next(x for x in lines if x.startswith("SmartMCA emulator listening on ")).rsplit(" ", 1)[1]
    yield url, lines
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_cli_prints_url_keys_and_curl(cli_server: tuple[str, list[str]]) -> None:
    url, lines = cli_server
    assert url.startswith("http://127.0.0.1:")
    text = "\n".join(lines)
    for key in (FULL_KEY, READ_KEY, TRIGGER_KEY):
        assert key in text
    assert "workflows:read workflows:trigger" in text
    curl = lines[-1]
    assert f"{url}/api/public/v1/workflows" in curl and "Authorization: Bearer" in curl
    status, body, _ = _call("GET", f"{url}/api/public/v1/workflows")
    assert status == 200 and body["total"] == 9


def test_admin_api_round_trip(cli_server: tuple[str, list[str]]) -> None:
    url, _ = cli_server
    api, admin = url + "/api/public/v1", url + "/_emulator"
    assert _call("POST", admin + "/reset", {}, key=None)[0] == 200
    status, fault, _ = _call("POST", admin + "/faults", {"kind": "status", "route": "get_execution", "status": 503,
                                                          "count": 2}, key=None)  # fmt: skip
    assert status == 201 and fault["kind"] == "status" and fault["count"] == 2
    assert _call("GET", admin + "/faults", key=None)[1]["data"][0]["status"] == 503
    assert _call("POST", admin + "/faults", {"kind": "nope"}, key=None)[0] == 400
    _, trig, _ = _call("POST", api + "/workflows/trigger", {"workflowType": "wf_merchant_kyc",
                                                             "entityType": "merchant", "entityId": "m_adm"})  # fmt: skip
    assert _call("GET", f"{api}/workflows/executions/{trig['executionId']}")[0] == 503
    assert _call("DELETE", admin + "/faults", key=None)[1] == {"cleared": 1}
    assert _call("GET", f"{api}/workflows/executions/{trig['executionId']}")[0] == 200

    _, execs, _ = _call("GET", admin + "/executions?workflow_type=wf_merchant_kyc&entity_id=m_adm", key=None)
    assert execs["created"] == 1 and execs["data"][0]["executionId"] == trig["executionId"]
    _, reqs, _ = _call("GET", admin + "/requests", key=None)
    assert [(r["route"], r["status"], r["key"]) for r in reqs["data"]] == [
        ("trigger", 202, "full"), ("get_execution", 503, "full"), ("get_execution", 200, "full"),
    ]  # fmt: skip
    _, counters, _ = _call("GET", admin + "/counters", key=None)
    assert {"method": "GET", "route": "get_execution", "status": 503, "count": 1} in counters["data"]

    assert _call("POST", admin + "/keys/revoke", {"key": READ_KEY}, key=None)[0] == 200
    assert _call("GET", api + "/workflows", key=READ_KEY)[0] == 401
    assert _call("POST", admin + "/keys/revoke", {"key": "missing"}, key=None)[0] == 404
    assert _call("POST", admin + "/release", {}, key=None)[1] == {"released": 0}
    assert _call("POST", admin + "/reset", {}, key=None)[0] == 200
    assert _call("GET", api + "/workflows", key=READ_KEY)[0] == 200  # reset restores keys
    assert _call("GET", admin + "/executions", key=None)[1]["created"] == 0


def test_cli_port_in_use_is_a_clean_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = subprocess.run(
            [sys.executable, "-m", "airflow_provider_smartmca.testing", "--port", str(port)],
            capture_output=True, text=True, env=ENV, timeout=30,
        )  # fmt: skip
    assert res.returncode == 2
    assert "address already in use" in res.stderr
    assert "Traceback" not in res.stderr


def test_cli_bad_config_is_a_clean_error(tmp_path: Path) -> None:
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"workflows": [{"id": "wf_merchant_kyc", "nodeCount": -1}]}))
    res = subprocess.run(
        [sys.executable, "-m", "airflow_provider_smartmca.testing", "--port", "0", "--config", str(cfg)],
        capture_output=True, text=True, env=ENV, timeout=30,
    )  # fmt: skip
    assert res.returncode == 2
    assert "config.json: workflows[0].nodeCount must be a positive integer" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_pytest_plugin_in_user_project(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        'pytest_plugins = ["airflow_provider_smartmca.testing.pytest_plugin"]\n'
    )
    (tmp_path / "test_user.py").write_text(textwrap.dedent("""
        import json, os, time, urllib.request

        def test_connection(smartmca_connection, smartmca_emulator):
            assert smartmca_connection == "smartmca_default"
            conn = json.loads(os.environ["AIRFLOW_CONN_SMARTMCA_DEFAULT"])
            assert conn["conn_type"] == "smartmca"
            assert conn["host"] == smartmca_emulator.base_url
            assert conn["extra"]["scopes"] == "workflows:read workflows:trigger underwriting:trigger"
            req = urllib.request.Request(
                conn["host"] + "/api/public/v1/workflows/trigger",
                data=json.dumps({"workflowType": "wf_merchant_kyc", "entityType": "merchant",
                                 "entityId": "m1"}).encode(),
                headers={"Authorization": "Bearer " + conn["password"], "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(req) as resp:
                assert resp.status == 202
            assert smartmca_emulator.executions_created("wf_merchant_kyc") == 1

        def test_isolated_between_tests(smartmca_emulator):
            assert smartmca_emulator.executions_created() == 0
    """))  # fmt: skip
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 passed" in res.stdout
