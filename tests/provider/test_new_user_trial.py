"""Issue 11, "What the new-user trial hit": each item replayed the way a new user met it.

Real HTTP on loopback against the emulator; DAGs run with the shipped ``run_dag``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests

from airflow_provider_smartmca.client import aio, protocol
from airflow_provider_smartmca.client.settings import ClientSettings, settings_from_connection
from airflow_provider_smartmca.client.sync import SyncClient
from airflow_provider_smartmca.client.transport import Route, tls_failure
from airflow_provider_smartmca.errors import SmartMCAConfigError, SmartMCAValidationError
from airflow_provider_smartmca.hooks import SmartMCAHook
from airflow_provider_smartmca.operators import TriggerWorkflowOperator
from airflow_provider_smartmca.testing import FULL_KEY, Emulator
from airflow_provider_smartmca.testing.cli import DEFAULT_PORT, _parser
from airflow_provider_smartmca.triggers import ExecutionTrigger

KEY = FULL_KEY
SCRIPT = Path(sys.executable).with_name("smartmca-emulator")


# --- find_executions_since: an ISO string or a naive datetime ------------------------------------


@pytest.mark.parametrize("since", ["2026-01-01T00:00:00Z", datetime(2026, 1, 1), 1767225600, None], ids=repr)
def test_find_executions_since_refuses_anything_but_an_aware_datetime(
    smartmca_connection: str, smartmca_emulator: Emulator, since: Any
) -> None:
    with pytest.raises(SmartMCAValidationError, match=r"'since'.*timezone-aware datetime") as err:
        SmartMCAHook(smartmca_connection).find_executions_since(since)
    assert err.value.field == "since"
    assert smartmca_emulator.count() == 0  # refused before any request


# --- templated poll_interval, timeout and connection id; hook_params; a missing XCom -------------

TRIAL_DAG = """
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import TriggerWorkflowOperator
from airflow_provider_smartmca.sensors import ExecutionSensor

with DAG("DAG_ID", schedule=None) as dag:
    TriggerWorkflowOperator(
        task_id="templated",
        workflow_type="wf_deal_onboarding",
        entity_type="deal",
        entity_id="deal_trial",
        smartmca_conn_id="{{ var.value.smartmca_conn }}",
        poll_interval="{{ var.value.smartmca_poll }}",
        timeout="{{ var.value.smartmca_timeout }}",
        hook_params={"max_retries": 2, "timeout": 5},
    )
    TriggerWorkflowOperator(
        task_id="templated_timeout",
        workflow_type="wf_deal_paused",
        entity_type="deal",
        entity_id="deal_paused",
        smartmca_conn_id="{{ var.value.smartmca_conn }}",
        poll_interval="{{ var.value.smartmca_poll }}",
        timeout="{{ var.value.smartmca_short }}",
    )
    # A missing upstream XCom renders as "None".
    ExecutionSensor(
        task_id="missing_xcom",
        execution_id="{{ ti.xcom_pull(task_ids='no_such_task') }}",
        smartmca_conn_id="{{ var.value.smartmca_conn }}",
        poke_interval=0.05,
        timeout=5,
    )
"""


@pytest.mark.slow
def test_templated_settings_render_and_a_missing_xcom_fails_before_any_request(
    smartmca_emulator: Emulator, smartmca_run_dag: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Only the templated id names this connection: an unrendered id would find no connection.
    conn = {"conn_type": "smartmca", "host": smartmca_emulator.base_url, "password": KEY}
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_TRIAL", json.dumps(conn))
    monkeypatch.delenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", raising=False)
    for name, value in {"CONN": "smartmca_trial", "POLL": "0.05", "TIMEOUT": "60", "SHORT": "0.5"}.items():
        monkeypatch.setenv(f"AIRFLOW_VAR_SMARTMCA_{name}", value)
    dag_id = f"trial_{uuid.uuid4().hex[:8]}"
    dag_file = tmp_path / "trial_dag.py"
    dag_file.write_text(TRIAL_DAG.replace("DAG_ID", dag_id))

    start = time.monotonic()
    result = smartmca_run_dag(dag_file)
    # The default poll interval (30 s) would take far longer: the rendered 0.05 was used.
    assert time.monotonic() - start < 120
    assert result.task_states == {
        "templated": "success",
        "templated_timeout": "failed",  # timed out after the rendered 0.5 s
        "missing_xcom": "failed",
    }
    assert result.xcoms["templated"]["status"] == "completed"
    paths = [r.path for r in smartmca_emulator.requests]
    assert not [p for p in paths if p.endswith("/None")], paths  # never GET /executions/None


def test_hook_params_reach_the_hook_and_unknown_keys_are_refused(
    smartmca_connection: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = {"task_id": "t", "workflow_type": "wf_deal_onboarding", "entity_type": "deal", "entity_id": "d"}
    op = TriggerWorkflowOperator(**args, hook_params={"max_retries": 0, "timeout": 7})
    assert (op.hook.settings.max_retries, op.hook.settings.timeout) == (0, 7)
    with pytest.raises(SmartMCAValidationError, match=r"'hook_params'.*verfiy_ssl"):
        TriggerWorkflowOperator(**args, hook_params={"verfiy_ssl": False})


# --- the emulator's port and banner --------------------------------------------------------------


def test_default_port_is_not_airflows_api_server_port() -> None:
    assert _parser().parse_args([]).port == DEFAULT_PORT == 8765


def test_banner_admin_url_answers_with_the_admin_endpoints() -> None:
    proc = subprocess.Popen([str(SCRIPT), "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        banner = [proc.stdout.readline() for _ in range(2)]
        admin = banner[1].split("admin API: ", 1)[1].rstrip(")\n ")
        assert admin.endswith("/_emulator/")
        resp = requests.get(admin, timeout=10)
        assert resp.status_code == 200, resp.text
        listed = {(e["method"], e["path"]) for e in resp.json()["endpoints"]}
        assert {("POST", "/_emulator/faults"), ("GET", "/_emulator/requests")} <= listed
        # Every listed GET answers (the index cannot advertise a route that is not there).
        base = admin.removesuffix("/_emulator/")
        for method, path in listed:
            if method == "GET":
                assert requests.get(base + path, timeout=10).status_code == 200, path
        assert requests.get(base + "/_emulator", timeout=10).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


# --- an https:// URL (the URI form's default) on a plain-HTTP emulator ----------------------------


def https_settings(emu: Emulator) -> ClientSettings:
    return settings_from_connection(
        host=emu.base_url.replace("http://", "https://"), port=None, password=KEY, extra={"max_retries": 0}
    )


def sync_send(settings: ClientSettings) -> protocol.RawResponse:
    client = SyncClient(settings)
    try:
        return client.send(protocol.build_request(settings, "list_workflows"))
    finally:
        client.close()


async def _async_send(settings: ClientSettings) -> protocol.RawResponse:
    async with aio.shared_session(settings) as client:
        return await client.send(protocol.build_request(settings, "list_workflows"))


def async_send(settings: ClientSettings) -> protocol.RawResponse:
    return asyncio.run(asyncio.wait_for(_async_send(settings), 10))


def assert_says_what_to_do(message: str, emu: Emulator) -> None:
    assert "plain-HTTP server on an https:// URL" in message, message
    assert f'"host": "http://127.0.0.1:{emu.port}"' in message, message
    assert "JSON connection form" in message, message
    assert "trusted CAs" not in message  # the CA store is not the problem
    assert KEY not in message and KEY[:8] not in message


@pytest.mark.parametrize("send", [sync_send, async_send], ids=["sync", "async"])
def test_https_url_on_a_plain_http_server_says_to_use_http(
    smartmca_emulator: Emulator, send: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(SmartMCAConfigError) as err:
        send(https_settings(smartmca_emulator))
    assert_says_what_to_do(str(err.value), smartmca_emulator)


def test_uri_connection_on_a_plain_http_emulator_worker_and_triggerer(
    smartmca_emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The new user's exact setup: ``smartmca://:key@127.0.0.1:PORT`` beside a plain-HTTP emulator."""
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_URI", f"smartmca://:{KEY}@127.0.0.1:{smartmca_emulator.port}")
    with pytest.raises(SmartMCAConfigError) as err:
        SmartMCAHook("smartmca_uri", max_retries=0).list_workflows()
    assert_says_what_to_do(str(err.value), smartmca_emulator)

    async def first_event() -> dict[str, Any]:
        trigger = ExecutionTrigger("smartmca_uri", "exec_1", poll_interval=0.05, deadline=time.time() + 10)
        agen = trigger.run()
        try:
            return (await asyncio.wait_for(agen.__anext__(), 15)).payload
        finally:
            await agen.aclose()

    event = asyncio.run(first_event())
    assert event["status"] == "error", event
    assert_says_what_to_do(event["message"], smartmca_emulator)


@pytest.mark.parametrize("reason", ["WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE"])
def test_plain_http_on_a_remote_https_url_names_allow_insecure_http(reason: str) -> None:
    settings = ClientSettings(base_url="https://api.example.test:8443", api_key=KEY)
    request = protocol.build_request(settings, "list_workflows")
    message = str(tls_failure(request, reason, Route()))
    assert "plain-HTTP server on an https:// URL" in message
    assert '"http://api.example.test:8443"' in message and "allow_insecure_http" in message
    assert "JSON connection form" not in message and KEY not in message


def test_a_certificate_failure_still_points_at_the_trusted_cas() -> None:
    settings = ClientSettings(base_url="https://api.example.test", api_key=KEY)
    request = protocol.build_request(settings, "list_workflows")
    message = str(tls_failure(request, "certificate verify failed: self-signed certificate", Route()))
    assert "trusted CAs come from the default CA store" in message and "verify_ssl" in message
    assert "plain-HTTP" not in message
