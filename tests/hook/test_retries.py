"""Retry and exactly-once POST semantics, with faults injected by the emulator."""

from __future__ import annotations

import socket

import pytest

from airflow_provider_smartmca.errors import (
    SmartMCAAmbiguousTriggerError,
    SmartMCAConnectionError,
    SmartMCAInvalidResponseError,
    SmartMCARateLimitError,
    SmartMCAServerError,
)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_get_retried_on_5xx(hook, smartmca_emulator, status):
    smartmca_emulator.add_fault("status", route="get_workflow", status=status, count=2)
    assert hook.get_workflow("wf_deal_onboarding").id == "wf_deal_onboarding"
    assert smartmca_emulator.count(route="get_workflow") == 3


def test_get_gives_up_after_max_retries(make_hook, smartmca_emulator):
    hook = make_hook(extra={"max_retries": 2})
    smartmca_emulator.add_fault("status", route="get_workflow", status=503, count=10)
    with pytest.raises(SmartMCAServerError, match="503"):
        hook.get_workflow("wf_deal_onboarding")
    assert smartmca_emulator.count(route="get_workflow") == 3


def test_hook_argument_overrides_connection_extra(make_hook, smartmca_emulator):
    hook = make_hook(extra={"max_retries": 5}, max_retries=0)
    smartmca_emulator.add_fault("status", route="get_workflow", status=503, count=1)
    with pytest.raises(SmartMCAServerError):
        hook.get_workflow("wf_deal_onboarding")
    assert smartmca_emulator.count(route="get_workflow") == 1


@pytest.mark.slow
def test_429_honours_retry_after(make_hook, smartmca_emulator):
    hook = make_hook()
    smartmca_emulator.add_fault("status", route="get_workflow", status=429, retry_after=1, count=1)
    import time

    start = time.monotonic()
    assert hook.get_workflow("wf_deal_onboarding").id
    assert time.monotonic() - start >= 0.9


def test_retry_after_is_capped(make_hook, smartmca_emulator):
    hook = make_hook(extra={"retry_after_cap": 0.1, "max_retries": 0})
    smartmca_emulator.add_fault("status", route="get_workflow", status=429, retry_after=3600, count=1)
    with pytest.raises(SmartMCARateLimitError) as err:
        hook.get_workflow("wf_deal_onboarding")
    assert err.value.retry_after == pytest.approx(0.1)


def test_get_retried_after_dropped_connection(hook, smartmca_emulator):
    smartmca_emulator.add_fault("drop_before", route="get_execution", count=1)
    started = hook.trigger_workflow("wf_deal_onboarding", "deal", "d_drop")
    assert hook.get_execution(started.execution_id).execution_id == started.execution_id


def test_post_retried_on_429(hook, smartmca_emulator):
    smartmca_emulator.add_fault("status", route="trigger", status=429, retry_after=0, count=2)
    assert hook.trigger_workflow("wf_deal_onboarding", "deal", "d_429").execution_id
    assert smartmca_emulator.executions_created(entity_id="d_429") == 1


def test_post_retried_when_connection_refused(caplog):
    from airflow_provider_smartmca.client.settings import ClientSettings
    from airflow_provider_smartmca.client.sync import SyncClient

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = SyncClient(
        ClientSettings(
            base_url=f"http://127.0.0.1:{port}", api_key="k" * 8, max_retries=2, retry_min_wait=0.01
        )
    )
    with pytest.raises(SmartMCAConnectionError) as err:
        client.call("trigger_workflow", body={"workflowType": "w", "entityType": "deal", "entityId": "d"})
    assert err.value.request_sent is False
    assert "did not receive it" in str(err.value)
    retries = [r.getMessage() for r in caplog.records if "; retry " in r.getMessage()]
    assert len(retries) == 2 and "retry 2/2" in retries[-1]


def test_post_5xx_is_not_resent_but_found(hook, smartmca_emulator):
    """The 5xx happens after the server acted (an HTML 502 from a proxy): the lookup finds the execution."""
    smartmca_emulator.add_fault("drop_after", route="trigger", count=1)
    result = hook.trigger_workflow("wf_deal_onboarding", "deal", "d_amb")
    assert result.execution_id.startswith("exec_") and result.recovered is True
    assert smartmca_emulator.executions_created(entity_id="d_amb") == 1
    assert smartmca_emulator.count(route="trigger") == 1


def test_post_5xx_before_acting_raises_ambiguous(hook, smartmca_emulator):
    smartmca_emulator.add_fault("status", route="trigger", status=503, count=1)
    with pytest.raises(SmartMCAAmbiguousTriggerError) as err:
        hook.trigger_workflow("wf_deal_onboarding", "deal", "d_503")
    assert err.value.candidates == []
    assert "may or may not have taken effect" in str(err.value) and "503" in str(err.value)
    assert smartmca_emulator.count(route="trigger") == 1
    assert smartmca_emulator.executions_created(entity_id="d_503") == 0


def test_earlier_executions_do_not_count_as_the_lost_one(hook, smartmca_emulator):
    first = hook.trigger_workflow("wf_deal_onboarding", "deal", "d_twice")
    smartmca_emulator.add_fault("drop_after", route="trigger", count=1)
    second = hook.trigger_workflow("wf_deal_onboarding", "deal", "d_twice")
    assert second.recovered is True and second.execution_id != first.execution_id
    assert smartmca_emulator.executions_created(entity_id="d_twice") == 2


def test_application_action_lost_response_found_when_its_workflow_is_known(hook, smartmca_emulator):
    workflow = hook.change_application_status("app_9", {"status": "in_review"}).workflow_id
    smartmca_emulator.add_fault("drop_after", route="advance_stage", count=1)
    found = hook.advance_application_stage("app_9", workflow_type="wf_app_advance_stage")
    assert found.recovered is True and found.workflow_id != workflow
    assert len(smartmca_emulator.executions(entity_id="app_9")) == 2


def test_application_action_lost_response_is_ambiguous_when_its_workflow_is_unknown(hook, smartmca_emulator):
    """Another client may act on the same application: a new execution there proves nothing."""
    smartmca_emulator.add_fault("drop_after", route="advance_stage", count=1)
    with pytest.raises(SmartMCAAmbiguousTriggerError, match="workflow this action starts is not known"):
        hook.advance_application_stage("app_10")
    assert smartmca_emulator.count(route="advance_stage") == 1


@pytest.mark.parametrize("kind", ["malformed_json", "html_error"])
def test_invalid_get_response(make_hook, smartmca_emulator, kind):
    hook = make_hook(extra={"max_retries": 0})
    smartmca_emulator.add_fault(kind, route="get_workflow", count=1)
    with pytest.raises((SmartMCAInvalidResponseError, SmartMCAServerError)) as err:
        hook.get_workflow("wf_deal_onboarding")
    assert "get_workflow: GET /api/public/v1/workflows/wf_deal_onboarding" in str(err.value)


def test_patiently_rides_out_a_storm_that_outlasts_the_retries(make_hook, smartmca_emulator):
    hook = make_hook(extra={"max_retries": 1})
    smartmca_emulator.add_fault("status", route="get_workflow", status=503, count=6)
    with pytest.raises(SmartMCAServerError):
        hook.get_workflow("wf_deal_onboarding")  # 2 attempts, both 503
    assert hook.patiently(hook.get_workflow, "wf_deal_onboarding").id == "wf_deal_onboarding"
    assert smartmca_emulator.count(route="get_workflow") == 7


def test_patiently_raises_final_errors_at_once_and_gives_up_after_patience(make_hook, smartmca_emulator):
    from airflow_provider_smartmca.errors import SmartMCANotFoundError

    hook = make_hook(extra={"max_retries": 0})
    with pytest.raises(SmartMCANotFoundError):
        hook.patiently(hook.get_workflow, "wf_missing")
    assert smartmca_emulator.count(route="get_workflow") == 1
    smartmca_emulator.add_fault("status", route="get_workflow", status=503, count=1000)
    # It gives up with the last 503, or (on a loaded machine) with the timeout of the request that
    # the deadline cut short.
    with pytest.raises((SmartMCAServerError, SmartMCAConnectionError)):
        hook.patiently(hook.get_workflow, "wf_deal_onboarding", patience=0.3)
    assert 2 <= smartmca_emulator.count(route="get_workflow", status=503) < 1000
