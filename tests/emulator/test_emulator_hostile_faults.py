"""Hostile per-request faults over real HTTP: trickle, huge body, echoed headers, 5xx after acting."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

import pytest
import requests
from emu_helpers import FULL, Api

from airflow_provider_smartmca.testing import FULL_KEY, Emulator, EmulatorConfigError

TRIGGER_BODY = {"workflowType": "wf_deal_onboarding", "entityType": "deal", "entityId": "d_h"}
KEY = FULL_KEY


def _raw(emu: Emulator, method: str, path: str, body: Any = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection(emu.host, emu.port, timeout=5)
    payload = json.dumps(body) if body is not None else None
    conn.request(method, "/api/public/v1" + path, payload, {**FULL, "Content-Type": "application/json"})
    return conn.getresponse()


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_trickle_sends_headers_then_the_real_body_slowly(api: Api, method: str) -> None:
    api.emu.add_fault("trickle", route="*", method=method, bytes_per_second=400)
    t0 = time.monotonic()
    if method == "POST":
        r = api.post("/workflows/trigger", json=TRIGGER_BODY, stream=True)
    else:
        r = api.get("/workflows/wf_deal_onboarding", stream=True)
    # The headers are in while the body still trickles: a request is logged when its response ends.
    assert api.emu.requests == []
    assert api.emu.executions_created() == (1 if method == "POST" else 0)  # the server has acted
    body = r.raw.read()
    took = time.monotonic() - t0
    assert len(body) == int(r.headers["Content-Length"]) > 100
    assert took >= (len(body) - 40) / 400  # first chunk goes at once, the rest at the rate
    data = json.loads(body)
    assert data["executionId" if method == "POST" else "id"]
    assert r.status_code == (202 if method == "POST" else 200)


def test_trickle_does_not_block_stop_or_a_client_that_gives_up(make_emulator: Any) -> None:
    emu = make_emulator()
    emu.add_fault("trickle", route="list_workflows", bytes_per_second=1, count=None)
    with pytest.raises((requests.ConnectionError, requests.Timeout)):  # read timeout mid-body
        requests.get(emu.api_url + "/workflows", headers=FULL, timeout=(2, 0.3)).content  # noqa: B018
    r = requests.get(emu.api_url + "/workflows", headers=FULL, timeout=5, stream=True)
    assert r.raw.read(1) == b"{"
    server_thread = emu._thread
    assert server_thread is not None
    emu.stop(timeout=30)  # the body needs minutes at 1 byte/s: the server ends without waiting for it
    assert not server_thread.is_alive()
    r.close()


@pytest.mark.parametrize("chunked", [False, True])
def test_huge_body_is_streamed_with_or_without_length(api: Api, chunked: bool) -> None:
    api.emu.add_fault("huge_body", route="get_execution", size=800_000_000, chunked=chunked)
    r = api.get("/workflows/executions/exec_x", stream=True)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    if chunked:
        assert "Content-Length" not in r.headers and r.headers["Transfer-Encoding"] == "chunked"
    else:
        assert r.headers["Content-Length"] == "800000000"
    start = r.raw.read(1_000_000)
    assert start.startswith(b'{"executionId":"exec_huge","status":"running"') and len(start) == 1_000_000
    r.close()
    assert api.get("/workflows/executions/exec_x").status_code == 404  # one-shot, nothing acted


def test_huge_body_small_size_is_exact_json(api: Api) -> None:
    api.emu.add_fault("huge_body", route="trigger", size=300_000, status=202)
    r = api.post("/workflows/trigger", json=TRIGGER_BODY)
    assert r.status_code == 202 and len(r.content) == 300_000
    assert r.json()["executionId"] == "exec_huge"
    assert api.emu.executions_created() == 0  # a gateway answered; the server never saw it


@pytest.mark.parametrize(("offset", "status"), [(270, 500), (60, 200)])
def test_echo_in_text_body_puts_the_header_at_offset(api: Api, offset: int, status: int) -> None:
    api.emu.add_fault("echo", route="get_execution", status=status, offset=offset)
    r = api.get("/workflows/executions/exec_1")
    assert r.status_code == status and r.headers["Content-Type"].startswith("text/plain")
    assert r.text.index(f"Authorization: Bearer {KEY}") == offset
    assert "Host: 127.0.0.1" in r.text


def test_echo_in_json_body_message(api: Api) -> None:
    api.emu.add_fault("echo", route="list_workflows", echo_in="json_body", status=400, offset=100)
    r = api.get("/workflows")
    assert r.status_code == 400
    assert r.json()["error"]["message"].index(f"Authorization: Bearer {KEY}") == 100


def test_echo_in_location_redirect(api: Api) -> None:
    api.emu.add_fault("echo", route="trigger", echo_in="location")
    r = api.post("/workflows/trigger", json=TRIGGER_BODY, allow_redirects=False)
    assert r.status_code == 302
    assert r.headers["Location"] == f"https://evil.example/?auth={KEY}"
    assert api.emu.executions_created() == 0


def test_echo_in_required_scope(api: Api) -> None:
    api.emu.add_fault("echo", route="change_status", echo_in="required_scope")
    r = api.post("/applications/app_1/change-status", json={"status": "approved"})
    assert r.status_code == 403
    err = r.json()["error"]
    assert err["requiredScope"] == KEY and KEY in err["message"]


def test_status_after_acts_then_answers_5xx(api: Api) -> None:
    api.emu.add_fault("status_after", route="trigger")
    r = api.post("/workflows/trigger", json=TRIGGER_BODY)
    assert r.status_code == 500 and r.json()["error"]["code"] == "internal_error"
    assert api.emu.executions_created() == 1
    (act,) = api.emu.actions()
    assert (act.route, act.status, act.fault, act.body) == ("trigger", 500, "status_after", TRIGGER_BODY)
    assert act.execution_id == api.emu.executions()[0]["executionId"]


def test_drop_mid_body_acts_then_cuts_the_response(api: Api) -> None:
    api.emu.add_fault("drop_mid_body", route="trigger")
    resp = _raw(api.emu, "POST", "/workflows/trigger", TRIGGER_BODY)
    assert resp.status == 202
    with pytest.raises(http.client.IncompleteRead):
        resp.read()
    assert api.emu.executions_created() == 1
    assert api.emu.actions()[0].status is None  # the connection was dropped


def test_retry_after_sent_verbatim(api: Api) -> None:
    api.emu.add_fault("status", route="list_workflows", status=429, retry_after="nan")
    r = api.get("/workflows")
    assert r.status_code == 429 and r.headers["Retry-After"] == "nan"


def test_new_faults_through_admin_api_and_config(make_emulator: Any) -> None:
    emu = make_emulator({"faults": [{"kind": "echo", "route": "list_workflows", "echoIn": "required_scope"}]})
    assert (
        requests.get(emu.api_url + "/workflows", headers=FULL, timeout=5).json()["error"]["requiredScope"]
        == KEY
    )
    emu.reset()  # config faults come back after a reset
    assert requests.get(emu.api_url + "/workflows", headers=FULL, timeout=5).status_code == 403
    admin = emu.base_url + "/_emulator/faults"
    r = requests.post(
        admin, json={"kind": "trickle", "route": "get_workflow", "bytesPerSecond": 5}, timeout=5
    )
    assert r.status_code == 201 and r.json()["bytesPerSecond"] == 5
    r = requests.post(admin, json={"kind": "huge_body", "size": 0}, timeout=5)
    assert r.status_code == 400 and r.json()["error"]["message"] == "size must be a positive integer (bytes)"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "status", "status": 500, "size": 10}, "size only applies to ['huge_body'] faults"),
        ({"kind": "trickle", "bytes_per_second": 0}, "bytes_per_second must be a positive number"),
        ({"kind": "echo", "echo_in": "cookie"}, "echo_in must be one of"),
        ({"kind": "echo", "echo_in": "location", "status": 500}, "echo_in 'location' needs a 3xx status"),
        ({"kind": "echo", "offset": -1}, "offset must be a non-negative integer"),
        ({"kind": "huge_body", "chunked": "yes"}, "chunked must be true or false"),
        ({"kind": "status_after", "status": 200}, "status_after faults need an integer 'status'"),
        ({"kind": "status", "status": 429, "retry_after": "a\nb"}, "retry_after must be"),
        ({"kind": "status", "status": 429, "retry_after": float("inf")}, "retry_after must be"),
    ],
)
def test_invalid_new_faults_name_the_field(api: Api, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        api.emu.add_fault(**spec)
    with pytest.raises(EmulatorConfigError, match=r"config: faults\[0\]: "):
        Emulator({"faults": [spec]})


def test_a_trickling_request_does_not_slow_the_others(api: Api) -> None:
    api.emu.add_fault("trickle", route="get_workflow", bytes_per_second=1)
    slow = requests.get(
        api.emu.api_url + "/workflows/wf_deal_onboarding", headers=FULL, timeout=5, stream=True
    )
    assert slow.raw.read(1) == b"{"
    assert api.get("/workflows").status_code == 200
    # Served while the trickle had minutes to go (a request is logged when its response ends).
    assert [rec.route for rec in api.emu.requests] == ["list_workflows"]
    slow.close()


@pytest.mark.parametrize(
    ("faults", "message"),
    [("echo", "config: faults must be a list"), (["echo"], r"config: faults\[0\] must be an object")],
)
def test_config_faults_must_be_a_list_of_objects(faults: Any, message: str) -> None:
    with pytest.raises(EmulatorConfigError, match=message):
        Emulator({"faults": faults})


def test_a_request_in_flight_at_reset_is_not_logged_after_it(make_emulator: Any) -> None:
    """A test must not see its predecessor's request, even one that ends after the reset."""
    emu = make_emulator()
    emu.add_fault("hold", route="list_workflows")
    answers: list[int] = []
    client = threading.Thread(
        target=lambda: answers.append(
            requests.get(emu.api_url + "/workflows", headers=FULL, timeout=10).status_code
        )
    )
    client.start()
    assert emu.wait_for_held(1)
    emu.reset()  # releases the held request, which then answers and ends
    client.join(10)
    assert answers == [200]
    assert emu.requests == []
    assert requests.get(emu.api_url + "/workflows", headers=FULL, timeout=5).status_code == 200
    assert [r.route for r in emu.requests] == ["list_workflows"]
