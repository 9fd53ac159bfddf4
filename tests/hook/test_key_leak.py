"""The API key never appears in logs, exception messages or reprs, whatever happens."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_smartmca.client.endpoints import ENDPOINTS
from airflow_provider_smartmca.client.protocol import RawResponse, build_request, error_for_status
from airflow_provider_smartmca.client.settings import ClientSettings
from airflow_provider_smartmca.errors import SmartMCAError
from airflow_provider_smartmca.testing import FULL_KEY

KEY = FULL_KEY


def _every_call(hook, started):
    yield lambda: hook.list_workflows(entity_type="deal")
    yield lambda: hook.get_workflow("wf_deal_onboarding")
    yield lambda: hook.get_workflow("wf_missing")
    yield lambda: hook.trigger_workflow("wf_deal_onboarding", "deal", "leak_3")
    yield lambda: hook.trigger_workflow("wf_deal_onboarding", "merchant", "leak_2")
    yield lambda: hook.list_executions(entity_id="leak_1")
    yield lambda: list(hook.iter_executions(entity_id="leak_1"))
    yield lambda: hook.get_execution(started.execution_id)
    yield lambda: hook.get_execution("exec_missing")
    yield lambda: hook.change_application_status("app_leak", {"status": "approved"})
    yield lambda: hook.advance_application_stage("app_leak")
    yield lambda: hook.assign_underwriter("app_leak", {"underwriterId": "uw_1"})
    yield lambda: hook.get_execution("../etc")
    yield hook.test_connection


def test_key_absent_from_logs_errors_and_reprs(make_hook, smartmca_emulator, caplog):
    caplog.set_level(logging.DEBUG)
    hook = make_hook()
    texts = []
    started = hook.trigger_workflow("wf_deal_onboarding", "deal", "leak_1")
    # Faults on every route make the error paths (retries, lookups, ambiguity) run too.
    smartmca_emulator.add_fault("status", route="*", status=503, probability=0.3, seed=7)
    smartmca_emulator.add_fault("drop_after", route="trigger", count=1)
    for call in _every_call(hook, started):
        try:
            texts.append(repr(call()))
        except SmartMCAError as exc:
            texts += [str(exc), repr(exc), repr(exc.args)]
    texts += [repr(hook), repr(hook.settings), repr(hook.client), str(hook.settings)]
    texts += [r.getMessage() for r in caplog.records] + [caplog.text]
    bad = make_hook(key="smca_wrong_" + "x" * 12)
    with pytest.raises(SmartMCAError) as err:
        bad.get_workflow("wf_deal_onboarding")
    texts.append(str(err.value))
    assert caplog.records, "DEBUG logging should have produced records"
    assert any("GET /api/public/v1" in t for t in texts)
    for text in texts:
        assert KEY not in text
        assert "smca_wrong_xxxx" not in text


def test_server_echoing_the_key_is_redacted():
    settings = ClientSettings(base_url="https://api.example.test", api_key="smca_live_ECHOED")
    request = build_request(settings, "get_workflow", path_params={"workflow_id": "wf_1"})
    raw = RawResponse(
        401, {"content-type": "application/json"}, b'{"error": {"message": "bad key smca_live_ECHOED"}}'
    )
    error = error_for_status(request, raw, settings)
    assert "smca_live_ECHOED" not in str(error) and "***" in str(error)
    assert "smca_live_ECHOED" not in repr(request)


def test_key_registered_with_secrets_masker(hook):
    try:
        from airflow.sdk._shared.secrets_masker import _secrets_masker
    except ImportError:  # Airflow 3.0
        from airflow.sdk.execution_time.secrets_masker import _secrets_masker  # type: ignore[no-redef]

    hook.settings  # noqa: B018 - resolving the connection registers the key
    assert _secrets_masker().redact(f"token {KEY}") != f"token {KEY}"


def test_every_endpoint_is_exercised():
    assert {"list_workflows", "get_workflow", "trigger_workflow", "list_executions", "get_execution"} <= set(
        ENDPOINTS
    )
