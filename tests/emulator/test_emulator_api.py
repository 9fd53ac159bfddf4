"""Public API endpoints: shapes, auth and validation."""

from __future__ import annotations

import re

import pytest
from emu_helpers import FULL, READ, TRIGGER, Api

from airflow_provider_smartmca.testing import FULL_KEY, READ_KEY

WORKFLOW_FIELDS = {
    "id", "name", "description", "icon", "category", "entityType", "triggerType", "status", "isActive", "version",
}  # fmt: skip


def test_list_workflows_shape_and_total(api: Api) -> None:
    r = api.get("/workflows")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    ids = [w["id"] for w in body["data"]]
    assert body["total"] == len(ids) == 9
    for wid in ("wf_deal_onboarding", "wf_app_underwriting", "wf_merchant_kyc", "wf_deal_compliance_fail",
                "wf_merchant_cancelled", "wf_deal_paused", "wf_app_status_change", "wf_app_advance_stage",
                "wf_app_assign_underwriter"):  # fmt: skip
        assert wid in ids
    assert "wf_legacy_deal_scoring" not in ids  # inactive workflows are not listed
    assert all(set(w) == WORKFLOW_FIELDS for w in body["data"])


def test_list_workflows_filters(api: Api) -> None:
    deals = api.get("/workflows", params={"entity_type": "deal"}).json()
    assert {w["entityType"] for w in deals["data"]} == {"deal"}
    assert deals["total"] == 3
    comp = api.get("/workflows", params={"category": "compliance", "entity_type": "merchant"}).json()
    assert sorted(w["id"] for w in comp["data"]) == ["wf_merchant_cancelled", "wf_merchant_kyc"]
    assert api.get("/workflows", params={"category": "nope"}).json() == {"data": [], "total": 0}


def test_get_workflow_detail_and_404(api: Api) -> None:
    body = api.get("/workflows/wf_deal_onboarding").json()
    assert set(body) == WORKFLOW_FIELDS | {"triggerConditions", "onFailure", "maxRetries", "nodeCount"}
    assert (body["name"], body["entityType"], body["category"], body["nodeCount"]) == (
        "Deal Onboarding", "deal", "onboarding", 8,
    )  # fmt: skip
    assert api.get("/workflows/wf_deal_paused").json()["onFailure"] == "pause"
    r = api.get("/workflows/wf_missing")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_trigger_response_is_exact(api: Api) -> None:
    r = api.post("/workflows/trigger", json={"workflowType": "wf_deal_onboarding", "entityType": "deal",
                                              "entityId": "deal_456"})  # fmt: skip
    assert r.status_code == 202
    body = r.json()
    assert set(body) == {
        "executionId",
        "workflowId",
        "workflowName",
        "entityType",
        "entityId",
        "status",
        "message",
    }
    assert re.fullmatch(r"exec_[0-9a-f]+", body["executionId"])
    assert body["workflowId"] == "wf_deal_onboarding"
    assert body["workflowName"] == "Deal Onboarding"
    assert (body["entityType"], body["entityId"], body["status"]) == ("deal", "deal_456", "pending")
    assert body["message"] == 'Workflow "Deal Onboarding" triggered'
    assert api.emu.executions_created("wf_deal_onboarding", "deal_456") == 1


@pytest.mark.parametrize("missing", ["workflowType", "entityType", "entityId"])
@pytest.mark.parametrize("bad", [None, "", 5])
def test_trigger_requires_each_field(api: Api, missing: str, bad: object) -> None:
    body: dict[str, object] = {"workflowType": "wf_deal_onboarding", "entityType": "deal", "entityId": "d"}
    if bad is None:
        del body[missing]
    else:
        body[missing] = bad
    r = api.post("/workflows/trigger", json=body)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "validation_error"
    assert missing in err["message"]
    assert api.emu.executions_created() == 0


def test_trigger_body_not_json(api: Api) -> None:
    assert api.post("/workflows/trigger", data="{nope").status_code == 400
    assert api.post("/workflows/trigger", json=[1, 2]).status_code == 400
    assert api.post("/workflows/trigger").status_code == 400


def test_trigger_unknown_mismatch_inactive(api: Api) -> None:
    r = api.post("/workflows/trigger", json={"workflowType": "wf_x", "entityType": "deal", "entityId": "d"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = api.post("/workflows/trigger", json={"workflowType": "wf_deal_onboarding", "entityType": "merchant",
                                              "entityId": "d"})  # fmt: skip
    assert r.status_code == 400
    assert r.json()["error"]["message"] == (
        'entityType "merchant" does not match workflow wf_deal_onboarding entity type "deal"'
    )
    r = api.post("/workflows/trigger", json={"workflowType": "wf_legacy_deal_scoring", "entityType": "deal",
                                              "entityId": "d"})  # fmt: skip
    assert r.status_code == 400 and "not active" in r.json()["error"]["message"]
    assert api.emu.executions_created() == 0


def test_auth_401(api: Api) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Basic abc"},
        {"Authorization": "Bearer"},
    ):
        r = api.get("/workflows", headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "unauthorized"
    api.emu.revoke_key(READ_KEY)
    r = api.get("/workflows", headers=READ)
    assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
    assert READ_KEY not in api.emu.keys
    assert api.get("/workflows", headers=FULL).status_code == 200


def test_auth_403_names_scope(api: Api) -> None:
    r = api.post("/workflows/trigger", headers=READ, json={"workflowType": "wf_deal_onboarding",
                                                            "entityType": "deal", "entityId": "d"})  # fmt: skip
    assert r.status_code == 403
    err = r.json()["error"]
    assert err == {"code": "insufficient_scope", "message": "Missing required scope: workflows:trigger",
                   "requiredScope": "workflows:trigger"}  # fmt: skip
    r = api.post("/applications/app_1/assign-underwriter", headers=TRIGGER, json={})
    assert r.status_code == 403
    assert r.json()["error"]["requiredScope"] == "underwriting:trigger"
    assert api.emu.executions_created() == 0
    assert api.get("/workflows/executions", headers=READ).status_code == 200


def test_application_endpoints(api: Api) -> None:
    r = api.post("/applications/app_7/change-status", json={"status": "approved", "reason": "ok", "extra": 1})
    assert r.status_code == 202
    body = r.json()
    assert set(body) == {"executionId", "status", "applicationId", "action", "workflowId"}
    assert (body["status"], body["applicationId"], body["action"], body["workflowId"]) == (
        "pending", "app_7", "change-status", "wf_app_status_change",
    )  # fmt: skip
    r = api.post("/applications/app_7/advance-stage")  # body optional
    assert r.status_code == 202 and r.json()["workflowId"] == "wf_app_advance_stage"
    assert r.json()["action"] == "advance-stage"
    r = api.post("/applications/app_7/assign-underwriter", json={"underwriterId": "uw_1"})
    assert r.status_code == 202 and r.json()["action"] == "assign-underwriter"
    ex = api.get(f"/workflows/executions/{r.json()['executionId']}").json()
    assert (ex["workflowId"], ex["entityType"], ex["entityId"]) == (
        "wf_app_assign_underwriter",
        "application",
        "app_7",
    )
    assert api.emu.executions_created(entity_id="app_7") == 3


def test_application_validation(api: Api) -> None:
    assert api.post("/applications/a/change-status", json={}).status_code == 400
    r = api.post("/applications/a/change-status", json={"status": ""})
    assert r.status_code == 400 and "status" in r.json()["error"]["message"]
    assert api.post("/applications/a/change-status", json={"status": "x", "reason": 3}).status_code == 400
    assert api.post("/applications/a/assign-underwriter", json={"underwriterId": 3}).status_code == 400
    assert api.emu.executions_created() == 0


def test_unknown_route_and_method(api: Api) -> None:
    r = api.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    r = api.s.delete(api.emu.api_url + "/workflows/trigger", headers=FULL)
    assert r.status_code == 405 and r.json()["error"]["code"] == "method_not_allowed"


def test_get_execution_404(api: Api) -> None:
    r = api.get("/workflows/executions/exec_missing")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


def test_request_log_and_counters(api: Api) -> None:
    api.get("/workflows", params={"entity_type": "deal"})
    api.get("/workflows", headers={"Authorization": "Bearer bad"})
    log = api.emu.requests
    assert [(r.method, r.route, r.status, r.key) for r in log] == [
        ("GET", "list_workflows", 200, "full"),
        ("GET", "list_workflows", 401, None),
    ]
    assert log[0].query == {"entity_type": "deal"}
    assert all(FULL_KEY not in str(r.to_dict()) for r in log)  # never the secret
    assert api.emu.counters()[("GET", "list_workflows", 200)] == 1
    assert api.emu.count(route="list_workflows") == 2
