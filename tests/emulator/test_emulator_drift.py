"""Contract drift over real HTTP: each name answers in another shape, and the server still acts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
import requests
from emu_helpers import FULL, Api

TRIGGER_BODY = {"workflowType": "wf_merchant_kyc", "entityType": "merchant", "entityId": "m_d"}
ACTIONS = [
    ("/applications/app_d/change-status", {"status": "approved"}),
    ("/applications/app_d/advance-stage", None),
    ("/applications/app_d/assign-underwriter", {}),
]


def _trigger(api: Api) -> requests.Response:
    r = api.post("/workflows/trigger", json=TRIGGER_BODY)
    assert r.status_code == 202
    return r


def _exec_id(api: Api) -> str:
    return str(api.emu.executions()[-1]["executionId"])


def test_rename_fields(api: Api) -> None:
    api.emu.configure(drift=["rename_fields"])
    trig = _trigger(api).json()
    assert "executionId" not in trig and "status" not in trig
    assert trig["id"] == _exec_id(api) and trig["state"] == "pending"
    got = api.get(f"/workflows/executions/{trig['id']}").json()
    assert got["id"] == trig["id"] and "state" in got and "status" not in got
    item = api.get("/workflows/executions").json()["data"][0]
    assert item["id"] == trig["id"] and "state" in item and "executionId" not in item


def test_list_envelope(api: Api) -> None:
    _trigger(api)
    api.emu.configure(drift=["list_envelope"])
    body = api.get("/workflows/executions").json()
    assert set(body) == {"items", "count", "page", "limit"} and body["count"] == 1
    assert body["items"][0]["executionId"] == _exec_id(api)
    assert api.get("/workflows").json()["count"] == 9


def test_total_counts_page(api: Api) -> None:
    for entity in ("m_t1", "m_t2", "m_t3"):
        api.post("/workflows/trigger", json={**TRIGGER_BODY, "entityId": entity})
    api.emu.configure(drift=["total_counts_page"])
    first = api.get("/workflows/executions", params={"limit": 2}).json()
    assert (len(first["data"]), first["total"]) == (2, 2)
    second = api.get("/workflows/executions", params={"limit": 2, "page": 2}).json()
    assert (len(second["data"]), second["total"]) == (1, 1)  # more matches than either total says
    assert api.get("/workflows", params={}).json()["total"] == len(api.get("/workflows").json()["data"])


def test_list_items_without_id_and_not_objects(api: Api) -> None:
    _trigger(api)
    api.emu.configure(drift=["list_items_without_id"])
    (item,) = api.get("/workflows/executions").json()["data"]
    assert "executionId" not in item and item["workflowId"] == "wf_merchant_kyc"
    api.emu.configure(drift=["list_items_not_objects"])
    assert api.get("/workflows/executions").json()["data"] == [_exec_id(api)]
    assert api.get("/workflows").json()["data"][0] == "wf_deal_onboarding"


@pytest.mark.parametrize(
    ("drift", "status", "body"), [("action_204", 204, b""), ("action_no_execution", 200, b'{"ok":true}')]
)
def test_application_actions_still_act(api: Api, drift: str, status: int, body: bytes) -> None:
    api.emu.configure(drift=[drift])
    for path, payload in ACTIONS:
        r = api.post(path, json=payload)
        assert (r.status_code, r.content) == (status, body)
    assert api.emu.executions_created(entity_id="app_d") == 3
    assert [a.execution_id is not None for a in api.emu.actions()] == [True] * 3
    assert api.post("/applications/app_d/change-status", json={}).status_code == 400  # errors unchanged
    assert _trigger(api).json()["executionId"]  # the trigger keeps its shape


def test_unknown_status_pauses_forever(make_emulator: Any) -> None:
    api = Api(make_emulator(clock="manual"))
    api.emu.configure(drift=["unknown_status"])
    ex = _trigger(api).json()["executionId"]
    assert api.get(f"/workflows/executions/{ex}").json()["status"] == "pending"
    api.emu.advance(3600)  # long past the end
    body = api.get(f"/workflows/executions/{ex}").json()
    assert body["status"] == "paused" and body["completedAt"] is None
    api.emu.advance(30 * 86400)
    assert api.get(f"/workflows/executions/{ex}").json()["status"] == "paused"
    assert api.get("/workflows/executions").json()["data"][0]["status"] == "paused"
    assert api.emu.executions()[0]["status"] == "completed"  # the emulator's own record is canonical


def test_bad_timestamps_are_epoch_milliseconds(api: Api) -> None:
    api.emu.configure(drift=["bad_timestamps"], clock_offset_seconds=-60)
    ex = _trigger(api).json()["executionId"]
    body = api.wait_status(ex, ("completed",))
    assert isinstance(body["startedAt"], int) and isinstance(body["completedAt"], int)
    assert all(isinstance(n["startedAt"], int) for n in body["nodes"])
    real = datetime.fromisoformat(api.emu.executions()[0]["startedAt"].replace("Z", "+00:00")).timestamp()
    assert abs(body["startedAt"] / 1000 - (real - 60)) < 1  # on the offset server clock
    params: dict[str, Any] = {"sort_by": "completedAt"}
    assert isinstance(api.get("/workflows/executions", params=params).json()["data"][0]["startedAt"], int)


def test_status_as_list_and_nodes_as_number(make_emulator: Any) -> None:
    api = Api(make_emulator(clock="manual"))  # pending until the clock moves
    api.emu.configure(drift=["status_as_list", "nodes_as_number"])
    ex = _trigger(api).json()["executionId"]
    body = api.get(f"/workflows/executions/{ex}").json()
    assert body["status"] == ["pending"] and body["nodes"] == 5
    assert api.get("/workflows/executions").json()["data"][0]["status"] == "pending"  # list items unchanged


def test_drift_leaves_errors_and_faults_alone(api: Api) -> None:
    api.emu.configure(drift=["rename_fields", "list_envelope"])
    r = api.get("/workflows/executions/exec_missing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    api.emu.add_fault("malformed_json", route="get_execution")
    ex = _trigger(api).json()["id"]
    assert api.get(f"/workflows/executions/{ex}").text.startswith('{"')


def test_drift_through_admin_api(api: Api) -> None:
    url = api.emu.base_url + "/_emulator/behaviour"
    assert requests.post(url, json={"drift": ["action_204"]}, timeout=5).json()["drift"] == ["action_204"]
    r = requests.post(api.emu.api_url + "/applications/a/advance-stage", headers=FULL, timeout=5)
    assert r.status_code == 204
    assert requests.post(url, json={"drift": []}, timeout=5).json()["drift"] == []


def test_no_timestamps_drops_the_executions_times_only(api: Api) -> None:
    api.emu.configure(drift=["no_timestamps"])
    ex = _trigger(api).json()["executionId"]
    body = api.wait_status(ex, ("completed",))
    assert "startedAt" not in body and "completedAt" not in body and body["status"] == "completed"
    assert all(n["startedAt"] and n["completedAt"] for n in body["nodes"])  # the nodes keep theirs
    (item,) = api.get("/workflows/executions", params={"sort_by": "completedAt"}).json()["data"]
    assert "startedAt" not in item and "completedAt" not in item and item["executionId"] == ex
    assert api.emu.executions()[0]["completedAt"]  # the emulator's own record is canonical


def test_no_completed_at_keeps_started_at(api: Api) -> None:
    api.emu.configure(drift=["no_completed_at"])
    ex = _trigger(api).json()["executionId"]
    body = api.wait_status(ex, ("completed",))
    assert "completedAt" not in body and body["startedAt"].endswith("Z")
    (item,) = api.get("/workflows/executions").json()["data"]
    assert "completedAt" not in item and item["startedAt"] == body["startedAt"]
