"""Every hook method against the emulator over real HTTP on loopback."""

from __future__ import annotations

import time

import pytest

from airflow_provider_smartmca.client.endpoints import ENDPOINTS
from airflow_provider_smartmca.errors import (
    SmartMCAAuthError,
    SmartMCABadRequestError,
    SmartMCANotFoundError,
    SmartMCAScopeError,
)
from airflow_provider_smartmca.hooks import SmartMCAHook
from airflow_provider_smartmca.testing import READ_KEY


def test_list_workflows_with_filters(hook):
    everything = hook.list_workflows()
    assert everything.total == len(everything.items) >= 3
    deals = hook.list_workflows(entity_type="deal")
    assert deals.items and {w.entity_type for w in deals.items} == {"deal"}
    onboarding = hook.list_workflows(category="onboarding")
    assert {w.raw["category"] for w in onboarding.items} == {"onboarding"}


def test_get_workflow_and_not_found(hook):
    wf = hook.get_workflow("wf_deal_onboarding")
    assert wf.id == "wf_deal_onboarding"
    assert wf.entity_type == "deal" and wf.raw["nodeCount"] == 8
    with pytest.raises(
        SmartMCANotFoundError, match=r"get_workflow: GET /api/public/v1/workflows/wf_nope .*404"
    ):
        hook.get_workflow("wf_nope")


def test_trigger_then_get_execution_until_completed(hook, smartmca_emulator):
    started = hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_456")
    assert started.execution_id.startswith("exec_")
    assert started.raw["status"] == "pending"
    assert started.raw["workflowName"] == "Deal Onboarding"
    final = hook.wait_for_execution(started.execution_id, poll_interval=0.05, deadline=time.time() + 20)
    assert final.status == "completed"
    assert len(final.nodes) == final.node_count == 8
    assert smartmca_emulator.executions_created("wf_deal_onboarding", "deal_456") == 1


def test_trigger_entity_type_mismatch_names_both(hook, smartmca_emulator):
    with pytest.raises(SmartMCABadRequestError) as err:
        hook.trigger_workflow("wf_deal_onboarding", "merchant", "m_1")
    assert "merchant" in str(err.value) and "deal" in str(err.value)
    assert err.value.status == 400
    assert smartmca_emulator.executions_created() == 0


def test_list_executions_pages_and_iter(hook):
    ids = {hook.trigger_workflow("wf_merchant_kyc", "merchant", f"m_{i}").execution_id for i in range(7)}
    page1 = hook.list_executions(workflow_type="wf_merchant_kyc", limit=3, page=1)
    assert page1.total == 7 and len(page1.items) == 3
    assert page1.server_time is not None
    page3 = hook.list_executions(workflow_type="wf_merchant_kyc", limit=3, page=3)
    assert len(page3.items) == 1
    walked = [e.execution_id for e in hook.iter_executions(workflow_type="wf_merchant_kyc", limit=3)]
    assert len(walked) == 7 and set(walked) == ids
    ascending = hook.list_executions(workflow_type="wf_merchant_kyc", limit=100, sort_order="asc").items
    starts = [e.raw["startedAt"] for e in ascending]
    assert starts == sorted(starts)
    one = hook.list_executions(entity_id="m_3")
    assert [e.entity_id for e in one.items] == ["m_3"]


def test_iter_executions_is_lazy(hook, smartmca_emulator):
    for i in range(5):
        hook.trigger_workflow("wf_merchant_kyc", "merchant", f"lazy_{i}")
    before = smartmca_emulator.count(route="list_executions")
    iterator = hook.iter_executions(workflow_type="wf_merchant_kyc", limit=2)
    assert smartmca_emulator.count(route="list_executions") == before
    next(iterator)
    assert smartmca_emulator.count(route="list_executions") == before + 1


@pytest.mark.parametrize(
    ("method", "body", "action"),
    [
        ("change_application_status", {"status": "approved", "reason": "docs ok"}, "change-status"),
        ("advance_application_stage", {}, "advance-stage"),
        ("assign_underwriter", {"underwriterId": "uw_7"}, "assign-underwriter"),
    ],
)
def test_application_actions(hook, smartmca_emulator, method, body, action):
    result = getattr(hook, method)("app_123", body)
    assert result.execution_id.startswith("exec_")
    assert result.raw["applicationId"] == "app_123"
    assert result.raw["action"] == action
    [execution] = smartmca_emulator.executions(entity_id="app_123")
    assert execution["entityType"] == "application"


def test_change_status_requires_status_server_side(hook):
    with pytest.raises(SmartMCABadRequestError, match="status"):
        hook.change_application_status("app_1")


def test_unknown_key_is_auth_error(make_hook):
    hook = make_hook(key="smca_wrong_key_0000")
    with pytest.raises(SmartMCAAuthError, match="401"):
        hook.get_workflow("wf_deal_onboarding")


def test_403_without_declared_scopes_names_the_scope(make_hook, smartmca_emulator):
    hook = make_hook(key=READ_KEY)
    with pytest.raises(SmartMCAScopeError) as err:
        hook.trigger_workflow("wf_deal_onboarding", "deal", "d1")
    assert err.value.scope == "workflows:trigger" and "workflows:trigger" in str(err.value)
    assert smartmca_emulator.count(route="trigger") == 1  # sent once, not retried


def test_declared_scopes_fail_before_any_request(make_hook, smartmca_emulator):
    hook = make_hook(key=READ_KEY, extra={"scopes": "workflows:read"})
    before = len(smartmca_emulator.requests)
    with pytest.raises(SmartMCAScopeError, match=r"assign_underwriter needs scope 'underwriting:trigger'"):
        hook.assign_underwriter("app_1", {"underwriterId": "u1"})
    assert len(smartmca_emulator.requests) == before


def test_every_method_declares_its_scope():
    for name, endpoint in ENDPOINTS.items():
        assert getattr(SmartMCAHook, name).required_scope == endpoint.scope
    assert SmartMCAHook.iter_executions.required_scope == "workflows:read"


def test_test_connection_ok_and_failure(make_hook, smartmca_emulator):
    ok, message = make_hook().test_connection()
    assert ok and smartmca_emulator.base_url in message
    ok, message = make_hook(key="smca_nope_1234").test_connection()
    assert not ok and smartmca_emulator.base_url in message and "401" in message
    ok, message = make_hook(host="http://127.0.0.1:1").test_connection()
    assert not ok and "127.0.0.1:1" in message


def test_hook_attributes():
    assert SmartMCAHook.conn_name_attr == "smartmca_conn_id"
    assert SmartMCAHook.default_conn_name == "smartmca_default"
    assert SmartMCAHook.conn_type == "smartmca"
    assert SmartMCAHook.hook_name == "SmartMCA"
