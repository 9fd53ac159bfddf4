"""Emulator-wide behaviours over real HTTP: clock, Date header, list order and lag, trailing slashes, actions."""

from __future__ import annotations

import socket
import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import pytest
import requests
from emu_helpers import Api

from airflow_provider_smartmca.testing import FULL_KEY, Emulator, EmulatorConfigError


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _date(r: requests.Response) -> float:
    return parsedate_to_datetime(r.headers["Date"]).timestamp()


@pytest.mark.parametrize("offset", [-600.0, 3600.0])
def test_clock_offset_moves_date_header_and_every_timestamp(api: Api, offset: float) -> None:
    api.emu.configure(clock_offset_seconds=offset)
    ex = api.trigger("wf_merchant_kyc", "merchant", "m_clock")["executionId"]
    body = api.wait_status(ex, ("completed",))
    now = time.time()
    assert abs(_ts(body["startedAt"]) - (now + offset)) < 5
    assert abs(_ts(body["completedAt"]) - (now + offset)) < 5
    assert all(abs(_ts(n["completedAt"]) - (now + offset)) < 5 for n in body["nodes"])
    listed = api.get("/workflows/executions").json()["data"][0]
    assert listed["startedAt"] == body["startedAt"]
    # Every API response carries the server's Date: success, auth error, 404, faults, streams.
    api.emu.add_fault("status", route="list_workflows", status=429)
    api.emu.add_fault("trickle", route="get_workflow", bytes_per_second=100_000)
    responses = [
        api.get(f"/workflows/executions/{ex}"),
        api.get("/workflows"),
        api.get("/workflows", headers={}),
        api.get("/nope"),
        api.get("/workflows/wf_merchant_kyc"),
    ]
    assert [r.status_code for r in responses] == [200, 429, 401, 404, 200]
    for r in responses:
        assert r.headers["Date"].endswith(" GMT")
        assert abs(_date(r) - (time.time() + offset)) < 5
    assert int(responses[1].headers["X-RateLimit-Reset"]) > time.time() + offset - 5
    # The emulator's own record is on its clock, without the server's offset.
    assert abs(_ts(api.emu.executions()[0]["startedAt"]) - now) < 5


def test_date_offset_moves_the_date_header_alone(api: Api) -> None:
    api.emu.configure(clock_offset_seconds=-60, date_offset_seconds=300)
    ex = api.trigger("wf_merchant_kyc", "merchant", "m_date")["executionId"]
    r = api.get(f"/workflows/executions/{ex}")
    assert abs(_date(r) - (time.time() + 240)) < 5  # the server's clock, then 300 s more
    assert abs(_ts(r.json()["startedAt"]) - (time.time() - 60)) < 5  # the timestamps: the server's clock
    with pytest.raises(ValueError, match="date_offset_seconds must be a finite number"):
        api.emu.configure(date_offset_seconds=float("inf"))


def test_no_offset_dates_by_the_emulators_clock(api: Api) -> None:
    assert abs(_date(api.get("/workflows")) - time.time()) < 5
    api.emu.advance(600)
    assert abs(_date(api.get("/workflows")) - (time.time() + 600)) < 5


def _raw_headers(api: Api, path: str) -> list[str]:
    """The header lines exactly as they came over the socket (no client library in between)."""
    with socket.create_connection((api.emu.host, api.emu.port), timeout=5) as sock:
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {FULL_KEY}\r\n"
        sock.sendall((request + "Connection: close\r\n\r\n").encode())
        raw = b""
        while b"\r\n\r\n" not in raw and (chunk := sock.recv(4096)):
            raw += chunk
    return raw.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]


def test_date_header_off_sends_no_date_on_any_api_response(api: Api) -> None:
    api.emu.configure(date_header=False, clock_offset_seconds=-600)
    ex = api.trigger("wf_merchant_kyc", "merchant", "m_nodate")["executionId"]
    lines = _raw_headers(api, "/api/public/v1/workflows/executions")
    assert lines and not [h for h in lines if h.lower().startswith("date:")], lines
    # None on success, auth error, 404, a pre-handler fault, a stream, a post-handler fault.
    api.emu.add_fault("status", route="list_workflows", status=429)
    api.emu.add_fault("trickle", route="get_workflow", bytes_per_second=100_000)
    api.emu.add_fault("malformed_json", route="list_executions")
    responses = [
        api.get(f"/workflows/executions/{ex}"),
        api.get("/workflows"),
        api.get("/workflows", headers={}),
        api.get("/nope"),
        api.get("/workflows/wf_merchant_kyc"),
        api.get("/workflows/executions"),
    ]
    assert [r.status_code for r in responses] == [200, 429, 401, 404, 200, 200]
    assert [r.headers.get("Date") for r in responses] == [None] * 6
    # The clock still moves every timestamp the server writes, and X-RateLimit-Reset.
    assert abs(_ts(responses[0].json()["startedAt"]) - (time.time() - 600)) < 5
    assert int(responses[1].headers["X-RateLimit-Reset"]) < time.time() - 500
    # The admin API is the emulator's, not the server's: it keeps its Date.
    assert "Date" in requests.get(api.emu.base_url + "/_emulator/health", timeout=5).headers
    api.emu.configure(date_header=True)
    assert abs(_date(api.get("/workflows")) - (time.time() - 600)) < 5


def _listed(api: Api, **params: Any) -> tuple[list[str], int]:
    body = api.get("/workflows/executions", params=params).json()
    return [x["executionId"] for x in body["data"]], body["total"]


def test_list_lag_hides_new_executions_from_the_list_only(make_emulator: Any) -> None:
    api = Api(make_emulator(clock="manual"))  # no time passes but what the test advances
    old = api.trigger("wf_merchant_kyc", "merchant", "m_old")["executionId"]
    api.emu.configure(list_lag_seconds=60)
    assert _listed(api) == ([], 0)  # old is younger than 60 s too
    api.emu.advance(61)
    new = [api.trigger("wf_merchant_kyc", "merchant", f"m_new{i}")["executionId"] for i in range(3)]
    assert _listed(api) == ([old], 1)
    assert _listed(api, workflow_type="wf_merchant_kyc", limit=1) == ([old], 1)  # total: what it shows
    assert api.get(f"/workflows/executions/{new[0]}").json()["executionId"] == new[0]  # GET sees it
    assert len(api.emu.executions()) == 4  # the emulator's own record sees everything
    api.emu.advance(61)
    assert _listed(api, limit=2) == (new[::-1][:2], 4)
    assert _listed(api, limit=2, page=2) == ([new[0], old], 4)
    api.emu.configure(list_lag_seconds=0)
    api.trigger("wf_merchant_kyc", "merchant", "m_now")
    assert _listed(api)[1] == 5


def test_list_end_lag_lists_an_ended_execution_as_it_was_before_its_end(api: Api) -> None:
    ex = api.trigger("wf_merchant_kyc", "merchant", "m_end_lag")["executionId"]
    got = api.wait_status(ex, ("completed",))
    api.emu.configure(list_end_lag_seconds=1e9)  # a replica that never sees the end
    (row,) = api.get("/workflows/executions", params={"status": "running"}).json()["data"]
    assert (row["executionId"], row["status"], row["completedAt"]) == (ex, "running", None)
    assert row["currentNode"] == got["nodes"][-1]["name"]  # on its last node
    assert api.get("/workflows/executions", params={"status": "completed"}).json()["data"] == []
    assert api.get(f"/workflows/executions/{ex}").json()["status"] == "completed"  # GET says the end
    api.emu.configure(list_end_lag_seconds=0)
    assert api.get("/workflows/executions").json()["data"][0]["status"] == "completed"


def _ids(api: Api, order: str, page: int = 1, limit: int = 100) -> list[str]:
    params: dict[str, Any] = {"sort_order": order, "page": page, "limit": limit}
    return [x["executionId"] for x in api.get("/workflows/executions", params=params).json()["data"]]


def test_list_order_ignore_asc_and_shuffle(api: Api) -> None:
    created = [api.trigger("wf_merchant_kyc", "merchant", f"m{i}")["executionId"] for i in range(12)]
    assert _ids(api, "desc") == created[::-1]
    api.emu.configure(list_order="ignore_asc")
    assert _ids(api, "desc") == _ids(api, "asc") == created
    api.emu.configure(list_order="shuffle", list_seed=7)
    shuffled = _ids(api, "desc")
    assert sorted(shuffled) == sorted(created) and shuffled not in (created, created[::-1])
    paged = [x for page in (1, 2, 3) for x in _ids(api, "desc", page, 5)]
    assert paged == shuffled  # paging stays consistent with the order
    api.emu.configure(list_seed=8)
    assert _ids(api, "desc") != shuffled
    api.emu.configure(list_order="honour", drift=["unsorted_list"])
    assert api.emu.behaviour.effective_list_order == "shuffle"
    assert sorted(_ids(api, "asc")) == sorted(created) and _ids(api, "asc") != created


def test_trailing_slash_list(api: Api) -> None:
    api.trigger("wf_merchant_kyc", "merchant", "m_slash")
    assert api.get("/workflows/executions/").status_code == 404
    assert api.post("/applications//change-status", json={"status": "x"}).status_code == 404
    api.emu.configure(trailing_slash_list=True)
    r = api.get("/workflows/executions/")
    assert r.status_code == 200 and r.json()["total"] == 1
    assert api.get("/workflows/").json()["total"] == 9
    assert api.get("/workflows/executions/", headers={}).status_code == 401  # still authenticated
    assert api.post("/applications//change-status", json={"status": "x"}).status_code == 404
    assert [x.route for x in api.emu.requests][-4:-2] == ["list_executions", "list_workflows"]


def test_actions_record_what_each_post_did(api: Api) -> None:
    api.emu.add_fault("status", route="advance_stage", status=503)
    ex = api.trigger("wf_merchant_kyc", "merchant", "m_act")["executionId"]
    assert api.post("/applications/app_1/advance-stage").status_code == 503  # never reached the handler
    assert api.post("/applications/app_1/change-status", json={}).status_code == 400  # reached, refused
    r = api.post("/applications/app_1/assign-underwriter", json={"underwriterId": "uw_1"})
    assert r.status_code == 202
    api.get("/workflows")
    acts = api.emu.actions()
    assert [(a.route, a.status, a.execution_id) for a in acts] == [
        ("trigger", 202, ex),
        ("change_status", 400, None),
        ("assign_underwriter", 202, r.json()["executionId"]),
    ]
    assert acts[2].body == {"underwriterId": "uw_1"} and acts[0].id < acts[1].id < acts[2].id
    admin = requests.get(api.emu.base_url + "/_emulator/actions", timeout=5).json()
    assert admin["total"] == 3
    assert admin["data"][0]["executionId"] == ex and admin["data"][0]["body"]["entityId"] == "m_act"


def test_behaviour_through_admin_api_config_and_reset(make_emulator: Any) -> None:
    emu = make_emulator({"clock_offset_seconds": -60, "drift": ["action_204"]})
    url = emu.base_url + "/_emulator/behaviour"
    assert requests.get(url, timeout=5).json() == {
        "clock_offset_seconds": -60.0,
        "date_offset_seconds": 0.0,
        "date_header": True,
        "list_order": "honour",
        "list_seed": 0,
        "list_lag_seconds": 0.0,
        "list_end_lag_seconds": 0.0,
        "trailing_slash_list": False,
        "drift": ["action_204"],
    }
    r = requests.post(url, json={"list_order": "ignore_asc", "trailing_slash_list": True}, timeout=5)
    assert r.status_code == 200 and r.json()["list_order"] == "ignore_asc"
    r = requests.post(url, json={"date_header": False, "list_lag_seconds": 2}, timeout=5)
    assert r.status_code == 200 and (r.json()["date_header"], r.json()["list_lag_seconds"]) == (False, 2.0)
    assert r.json()["clock_offset_seconds"] == -60.0  # a partial update
    r = requests.post(url, json={"list_order": "random"}, timeout=5)
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "list_order must be one of ['honour', 'ignore_asc', 'shuffle']"
    emu.reset()  # back to the config's behaviours
    assert emu.behaviour.list_order == "honour" and emu.behaviour.clock_offset_seconds == -60.0
    assert emu.behaviour.date_header is True and emu.behaviour.list_lag_seconds == 0.0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"clock_offset_seconds": "60"}, "clock_offset_seconds must be a finite number of seconds"),
        ({"clock_offset_seconds": float("nan")}, "clock_offset_seconds must be a finite number of seconds"),
        ({"list_seed": 1.5}, "list_seed must be an integer"),
        ({"trailing_slash_list": "yes"}, "trailing_slash_list must be true or false"),
        ({"date_header": "off"}, "date_header must be true or false"),
        ({"date_header": 0}, "date_header must be true or false"),
        ({"list_lag_seconds": -1}, "list_lag_seconds must be a non-negative finite number of seconds"),
        ({"list_lag_seconds": "3"}, "list_lag_seconds must be a non-negative finite number of seconds"),
        ({"list_lag_seconds": float("inf")}, "list_lag_seconds must be a non-negative"),
        ({"drift": ["no_timestamp"]}, "drift has unknown name(s) ['no_timestamp']"),
        ({"drift": "action_204"}, "drift must be a list of drift names"),
        ({"drift": ["action_205"]}, "drift has unknown name(s) ['action_205']"),
        ({"clock_skew": 1}, "unknown behaviour field(s) ['clock_skew']"),
    ],
)
def test_invalid_behaviour_names_the_field(options: dict[str, Any], message: str) -> None:
    emu = Emulator()
    with pytest.raises(ValueError) as exc:
        emu.configure(**options)
    assert str(exc.value).startswith(message)
    if "clock_skew" not in options:
        with pytest.raises(EmulatorConfigError) as cfg_exc:
            Emulator(options)
        assert str(cfg_exc.value).startswith("config: " + message)
