"""Fault injection through the Python API."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

import pytest
import requests
from emu_helpers import FULL, Api

from airflow_provider_smartmca.testing import Emulator, EmulatorConfigError

TRIGGER_BODY = {"workflowType": "wf_deal_onboarding", "entityType": "deal", "entityId": "d_f"}


def _raw_post(emu: Emulator, path: str, body: dict[str, Any]) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=5)
    conn.request(
        "POST", "/api/public/v1" + path, json.dumps(body), {**FULL, "Content-Type": "application/json"}
    )
    return conn.getresponse()


def test_429_with_retry_after_then_recovers(api: Api) -> None:
    api.emu.add_fault("status", route="get_execution", status=429, retry_after=7, count=2)
    ex = api.trigger("wf_deal_onboarding", "deal")["executionId"]
    for _ in range(2):
        r = api.get(f"/workflows/executions/{ex}")
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "7"
        assert r.headers["X-RateLimit-Limit"] == "100"
        assert r.headers["X-RateLimit-Remaining"] == "0"
        assert int(r.headers["X-RateLimit-Reset"]) >= int(time.time()) + 6
        assert r.json()["error"]["code"] == "rate_limited"
    assert api.get(f"/workflows/executions/{ex}").status_code == 200
    assert api.emu.count(route="get_execution", status=429) == 2


@pytest.mark.parametrize(("status", "code"), [(500, "internal_error"), (502, "bad_gateway"),
                                              (503, "service_unavailable")])  # fmt: skip
def test_5xx_before_processing(api: Api, status: int, code: str) -> None:
    api.emu.add_fault(kind="status", route="trigger", status=status)
    r = api.post("/workflows/trigger", json=TRIGGER_BODY)
    assert r.status_code == status
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json()["error"]["code"] == code
    assert api.emu.executions_created() == 0  # nothing happened server side
    assert api.post("/workflows/trigger", json=TRIGGER_BODY).status_code == 202  # count defaults to 1


def test_fault_matches_method_and_path_glob(api: Api) -> None:
    api.emu.add_fault("status", route="/workflows/*", method="GET", status=503, count=5)
    assert api.post("/workflows/trigger", json=TRIGGER_BODY).status_code == 202
    assert api.get("/workflows/wf_deal_onboarding").status_code == 503
    assert api.get("/workflows").status_code == 200  # glob needs something after /workflows/
    assert api.emu.clear_faults() == 1
    assert api.get("/workflows/wf_deal_onboarding").status_code == 200


def _page(api: Api, query: str) -> int:
    return api.get("/workflows/executions?" + query).status_code


def test_fault_matches_query_parameters(api: Api) -> None:
    api.emu.add_fault("status", route="list_executions", status=503, query={"status": "running", "page": 2})
    assert _page(api, "status=running") == 200  # page left out: no match, whatever the server defaults
    assert _page(api, "status=running&page=1") == 200
    assert _page(api, "status=pending&page=2") == 200
    assert _page(api, "page=2&limit=5&status=running") == 503  # other parameters may be there too
    assert _page(api, "status=running&page=2") == 200  # count 1: retired
    assert [r.status for r in api.emu.requests][-2:] == [503, 200]


def test_a_hold_on_one_page_lets_the_other_pages_through(api: Api) -> None:
    api.emu.add_fault("hold", route="list_executions", query={"page": "2"})
    result: dict[str, Any] = {}

    def call() -> None:
        result["r"] = requests.get(api.emu.api_url + "/workflows/executions?page=2", headers=FULL, timeout=10)

    held = threading.Thread(target=call)
    held.start()
    assert api.emu.wait_for_held(1, timeout=5)
    assert _page(api, "page=1") == _page(api, "page=3") == 200 and "r" not in result
    assert api.emu.release_held() == 1
    held.join(5)
    assert result["r"].status_code == 200


def test_query_faults_through_admin_api_and_config(make_emulator: Any) -> None:
    emu = make_emulator({"faults": [{"kind": "status", "status": 500, "query": {"page": 3}}]})
    url = emu.api_url + "/workflows/executions"
    assert requests.get(url + "?page=3", headers=FULL, timeout=5).status_code == 500
    admin = emu.base_url + "/_emulator/faults"
    r = requests.post(
        admin, json={"kind": "latency", "latency": 0.2, "query": {"status": "pending"}}, timeout=5
    )
    assert r.status_code == 201 and r.json()["query"] == {"status": "pending"}
    assert requests.get(admin, timeout=5).json()["data"][0]["query"] == {"status": "pending"}
    r = requests.post(admin, json={"kind": "status", "status": 500, "query": "page=2"}, timeout=5)
    assert r.status_code == 400
    assert r.json()["error"]["message"].startswith("query must be an object of parameter names to values")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("page=2", "query must be an object of parameter names to values"),
        ({"page": 2.5}, "query.page must be a string (or an integer)"),
        ({"page": None}, "query.page must be a string (or an integer)"),
        ({"page": True}, "query.page must be a string (or an integer)"),
        ({"": "x"}, "query must be an object of parameter names to values"),
    ],
)
def test_invalid_query_names_the_field(query: Any, message: str) -> None:
    emu = Emulator()
    with pytest.raises(ValueError) as exc:
        emu.add_fault("status", status=500, query=query)
    assert str(exc.value).startswith(message)
    with pytest.raises(EmulatorConfigError) as cfg_exc:
        Emulator({"faults": [{"kind": "status", "status": 500, "query": query}]})
    assert str(cfg_exc.value).startswith("config: faults[0]: " + message)


def test_probability_fault_is_seeded(make_emulator: Any) -> None:
    patterns = []
    for _ in range(2):
        emu = make_emulator()
        emu.add_fault("status", route="list_workflows", status=500, probability=0.3, seed=1)
        api = Api(emu)
        patterns.append([api.get("/workflows").status_code for _ in range(30)])
    assert patterns[0] == patterns[1]
    assert set(patterns[0]) == {200, 500}


def test_latency(api: Api) -> None:
    api.emu.add_fault("latency", route="list_workflows", latency=0.3)
    t0 = time.monotonic()
    assert api.get("/workflows").status_code == 200
    assert time.monotonic() - t0 >= 0.3
    assert api.get("/workflows").status_code == 200
    assert [rec.fault for rec in api.emu.requests] == ["latency", None]  # one request delayed, not two


def test_drop_before_creates_nothing(api: Api) -> None:
    api.emu.add_fault("drop_before", route="trigger")
    with pytest.raises(requests.ConnectionError):
        api.post("/workflows/trigger", json=TRIGGER_BODY)
    assert api.emu.executions_created() == 0
    assert api.emu.count(route="trigger", status=None) == 1
    assert api.post("/workflows/trigger", json=TRIGGER_BODY).status_code == 202


def test_drop_after_creates_execution_without_response(api: Api) -> None:
    api.emu.add_fault("drop_after", route="trigger")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        _raw_post(api.emu, "/workflows/trigger", TRIGGER_BODY)
    assert api.emu.executions_created("wf_deal_onboarding", "d_f") == 1
    assert api.get("/workflows/executions", params={"entity_id": "d_f"}).json()["total"] == 1


def test_malformed_json(api: Api) -> None:
    api.emu.add_fault("malformed_json", route="get_workflow")
    r = api.get("/workflows/wf_deal_onboarding")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(r.text)
    assert api.get("/workflows/wf_deal_onboarding").json()["id"] == "wf_deal_onboarding"


def test_html_error_page(api: Api) -> None:
    api.emu.add_fault("html_error", route="*")
    r = api.get("/workflows")
    assert r.status_code == 502
    assert r.headers["Content-Type"].startswith("text/html")
    assert "<html>" in r.text


def test_hold_then_release(api: Api) -> None:
    api.emu.add_fault("hold", route="trigger")
    result: dict[str, Any] = {}

    def call() -> None:
        result["r"] = requests.post(
            api.emu.api_url + "/workflows/trigger", json=TRIGGER_BODY, headers=FULL, timeout=10
        )

    th = threading.Thread(target=call)
    th.start()
    assert api.emu.wait_for_held(1, timeout=5)
    assert api.emu.executions_created() == 1  # processed before being held
    assert "r" not in result
    assert api.emu.release_held() == 1
    th.join(5)
    assert result["r"].status_code == 202
    assert result["r"].json()["executionId"].startswith("exec_")
    assert api.emu.held == 0


def test_hold_timeout_responds(api: Api) -> None:
    api.emu.add_fault("hold", route="list_workflows", hold_timeout=0.2)
    t0 = time.monotonic()
    assert api.get("/workflows").status_code == 200
    assert time.monotonic() - t0 >= 0.2


def test_invalid_fault_rejected(api: Api) -> None:
    with pytest.raises(ValueError):
        api.emu.add_fault("explode")
    with pytest.raises(ValueError):
        api.emu.add_fault("status", status=200)
    with pytest.raises(ValueError):
        api.emu.add_fault("status", route="nope", status=500)
