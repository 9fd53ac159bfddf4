"""Execution lifecycle, node detail, list/sort/pagination of executions."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from emu_helpers import Api

from airflow_provider_smartmca.testing.pytest_plugin import FAST_CONFIG

ISO_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
TERMINAL = ("completed", "failed", "cancelled", "paused")
NODE_FIELDS = {"id", "name", "status", "startedAt", "completedAt", "result", "error"}


def _seen_statuses(api: Api, exec_id: str, rounds: int = 1000) -> tuple[list[str], dict[str, Any]]:
    """Read the execution, stepping the emulator's clock 5 ms a read, until it ends."""
    seen: list[str] = []
    for _ in range(rounds):
        body = api.get(f"/workflows/executions/{exec_id}").json()
        if not seen or seen[-1] != body["status"]:
            seen.append(body["status"])
        if body["status"] in TERMINAL:
            return seen, body
        api.emu.advance(0.005)
    raise AssertionError(f"not terminal, saw {seen}")


def test_completed_lifecycle_with_node_detail(make_emulator: Any) -> None:
    api = Api(make_emulator(FAST_CONFIG, clock="manual"))
    t = api.trigger("wf_merchant_kyc", "merchant", "m_1")
    first = api.get(f"/workflows/executions/{t['executionId']}").json()
    assert first["status"] == "pending"
    assert first["completedAt"] is None and first["currentNode"] is None
    for key in ("executionId", "workflowId", "workflowName", "entityType", "entityId"):
        assert first[key] == t[key]
    assert ISO_MS.fullmatch(first["startedAt"])
    assert first["nodeCount"] == len(first["nodes"]) == 5
    assert all(set(n) == NODE_FIELDS and n["status"] == "pending" for n in first["nodes"])
    seen, last = _seen_statuses(api, t["executionId"])
    assert seen == ["pending", "running", "completed"]
    assert ISO_MS.fullmatch(last["completedAt"]) and last["completedAt"] > last["startedAt"]
    assert last["currentNode"] is None
    assert [n["status"] for n in last["nodes"]] == ["completed"] * 5
    assert [n["id"] for n in last["nodes"]] == [f"node_{i}" for i in range(1, 6)]
    assert all(n["result"] is not None and n["error"] is None for n in last["nodes"])
    assert last["nodes"][0]["name"] == "Identity Check"


def test_running_reports_current_node(make_emulator: Any) -> None:
    emu = make_emulator({"durations": {"pending_seconds": 0.0, "node_seconds": 0.3}}, clock="manual")
    api = Api(emu)
    t = api.trigger("wf_deal_onboarding", "deal")
    body = api.get(f"/workflows/executions/{t['executionId']}").json()
    assert body["status"] == "running"
    assert body["currentNode"] == "Validate Deal"
    assert body["nodes"][0]["status"] == "running" and body["nodes"][0]["completedAt"] is None
    assert body["nodes"][1]["status"] == "pending"


def test_failed_with_object_error(api: Api) -> None:
    t = api.trigger("wf_deal_compliance_fail", "deal")
    seen, last = _seen_statuses(api, t["executionId"])
    assert seen[-1] == "failed" and "running" in seen
    assert [n["status"] for n in last["nodes"]] == ["completed", "completed", "failed", "skipped", "skipped"]
    assert last["nodes"][2]["error"] == {
        "code": "COMPLIANCE_CHECK_FAILED",
        "message": "OFAC screening returned a potential match",
    }
    assert last["completedAt"] is not None


def test_paused_with_string_error(api: Api) -> None:
    t = api.trigger("wf_deal_paused", "deal")
    _, last = _seen_statuses(api, t["executionId"])
    assert last["status"] == "paused"
    assert last["completedAt"] is None
    assert last["nodes"][1]["status"] == "failed"
    assert last["nodes"][1]["error"] == "Bank verification provider timed out"


def test_cancelled(api: Api) -> None:
    t = api.trigger("wf_merchant_cancelled", "merchant")
    _, last = _seen_statuses(api, t["executionId"])
    assert last["status"] == "cancelled"
    assert [n["status"] for n in last["nodes"]] == ["completed", "cancelled", "skipped", "skipped"]


def test_outcome_overrides_and_cancel_at_start(make_emulator: Any) -> None:
    emu = make_emulator(
        {
            "durations": {"pending_seconds": 0.02, "node_seconds": 0.01},
            "workflows": [
                {"id": "wf_merchant_kyc", "outcome": "cancel"},
                {"id": "wf_deal_onboarding", "outcome": {"fail_at_node": 1}, "node_seconds": 0.0},
            ],
        }
    )
    api = Api(emu)
    _, last = _seen_statuses(api, api.trigger("wf_merchant_kyc", "merchant")["executionId"])
    assert last["status"] == "cancelled"
    assert {n["status"] for n in last["nodes"]} == {"skipped"}
    _, last = _seen_statuses(api, api.trigger("wf_deal_onboarding", "deal")["executionId"])
    assert last["status"] == "failed" and last["nodes"][0]["status"] == "failed"
    assert last["nodes"][0]["error"] == "Validate Deal failed"  # default error string


def test_fail_probability_is_deterministic(make_emulator: Any) -> None:
    cfg = {
        "durations": {"pending_seconds": 0.0, "node_seconds": 0.0},
        "workflows": [{"id": "wf_merchant_kyc", "outcome": {"fail_probability": 0.5, "seed": 7}}],
    }
    runs = []
    for _ in range(2):
        api = Api(make_emulator(cfg))
        ids = [api.trigger("wf_merchant_kyc", "merchant", f"m{i}")["executionId"] for i in range(20)]
        runs.append([api.wait_status(i, TERMINAL)["status"] for i in ids])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {"completed", "failed"}


def test_clock_starts_on_first_get(make_emulator: Any) -> None:
    emu = make_emulator({"durations": {"pending_seconds": 0.1, "node_seconds": 0.01,
                                       "clock_starts_on_first_get": True}}, clock="manual")  # fmt: skip
    api = Api(emu)
    t = api.trigger("wf_merchant_kyc", "merchant")
    emu.advance(3600)  # longer than the whole lifecycle, but nobody polled yet
    started = emu.now()
    assert api.get(f"/workflows/executions/{t['executionId']}").json()["status"] == "pending"
    seen, _ = _seen_statuses(api, t["executionId"])
    assert seen == ["pending", "running", "completed"]
    assert emu.now() - started >= 0.1 + 5 * 0.01  # it took the whole lifecycle after the first GET


def _seed_executions(api: Api) -> list[dict[str, Any]]:
    made = []
    for i, (wf, et) in enumerate(
        [("wf_deal_onboarding", "deal"), ("wf_merchant_kyc", "merchant"), ("wf_deal_onboarding", "deal")] * 3
    ):
        made.append(api.trigger(wf, et, f"ent_{i % 2}"))
        time.sleep(0.002)  # distinct millisecond timestamps
    return made


def test_list_executions_pagination_and_total(api: Api) -> None:
    made = _seed_executions(api)
    body = api.get("/workflows/executions", params={"limit": 4}).json()
    assert set(body) == {"data", "total", "page", "limit"}
    assert (body["total"], body["page"], body["limit"], len(body["data"])) == (9, 1, 4, 4)
    assert "nodes" not in body["data"][0] and "currentNode" in body["data"][0]
    # default: startedAt desc -> newest first
    assert [e["executionId"] for e in body["data"]] == [m["executionId"] for m in reversed(made)][:4]
    page3 = api.get("/workflows/executions", params={"limit": 4, "page": 3}).json()
    assert [e["executionId"] for e in page3["data"]] == [made[0]["executionId"]]
    assert api.get("/workflows/executions", params={"page": 9}).json()["data"] == []
    assert api.get("/workflows/executions").json()["limit"] == 20


def test_list_executions_filters(make_emulator: Any) -> None:
    api = Api(make_emulator({"durations": {"pending_seconds": 30}}))  # all stay pending
    _seed_executions(api)
    body = api.get("/workflows/executions", params={"workflow_type": "wf_merchant_kyc"}).json()
    assert body["total"] == 3 and {e["workflowId"] for e in body["data"]} == {"wf_merchant_kyc"}
    body = api.get("/workflows/executions", params={"entity_type": "deal", "entity_id": "ent_0"}).json()
    assert body["total"] == 4
    assert all(e["entityId"] == "ent_0" and e["entityType"] == "deal" for e in body["data"])
    assert api.get("/workflows/executions", params={"status": "pending"}).json()["total"] == 9
    assert api.get("/workflows/executions", params={"status": "completed"}).json()["total"] == 0


def test_list_executions_sorting(api: Api) -> None:
    made = _seed_executions(api)
    asc = api.get("/workflows/executions", params={"sort_order": "asc"}).json()["data"]
    assert [e["executionId"] for e in asc] == [m["executionId"] for m in made]
    by_wf = api.get("/workflows/executions", params={"sort_by": "workflowId", "sort_order": "asc"}).json()[
        "data"
    ]
    assert [e["workflowId"] for e in by_wf] == sorted(e["workflowId"] for e in by_wf)
    by_status = api.get("/workflows/executions", params={"sort_by": "status"}).json()["data"]
    assert [e["status"] for e in by_status] == sorted((e["status"] for e in by_status), reverse=True)


def test_sort_by_completed_at_puts_unfinished_last_in_asc(make_emulator: Any) -> None:
    cfg = {
        "durations": {"pending_seconds": 30},
        "workflows": [{"id": "wf_app_advance_stage", "pending_seconds": 0, "node_seconds": 0}],
    }
    api = Api(make_emulator(cfg))
    slow = api.trigger("wf_deal_onboarding", "deal")["executionId"]
    done = [api.trigger("wf_app_advance_stage", "application", f"a{i}")["executionId"] for i in range(2)]
    asc = api.get("/workflows/executions", params={"sort_by": "completedAt", "sort_order": "asc"}).json()[
        "data"
    ]
    assert [e["executionId"] for e in asc][-1] == slow
    assert asc[0]["completedAt"] <= asc[1]["completedAt"]
    assert {e["executionId"] for e in asc[:2]} == set(done)
    desc = api.get("/workflows/executions", params={"sort_by": "completedAt"}).json()["data"]
    assert desc[0]["executionId"] == slow and desc[0]["completedAt"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "paused"}, "status"),
        ({"status": "bogus"}, "status"),
        ({"limit": "101"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"page": "0"}, "page"),
        ({"page": "1.5"}, "page"),
        ({"sort_by": "name"}, "sort_by"),
        ({"sort_order": "up"}, "sort_order"),
    ],
)
def test_list_executions_validation(api: Api, params: dict[str, str], field: str) -> None:
    r = api.get("/workflows/executions", params=params)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "validation_error" and field in err["message"]


def test_limit_100_allowed(api: Api) -> None:
    assert api.get("/workflows/executions", params={"limit": "100"}).json()["limit"] == 100
