"""The key never leaks from hostile server text: not whole, not in part (issue 9, finding 3).

"In part" is defined as: no run of ``PART`` consecutive characters of the key (the whole key when
it is shorter) appears in any message, exception field, returned record or trigger event built
from what a server sent. Redaction runs before any shortening, so a cut can never leave such a
run behind; the properties below put the key at every offset around each cut.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import pickle
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from airflow_provider_smartmca.client import executions, protocol
from airflow_provider_smartmca.client.protocol import (
    RawResponse,
    build_request,
    error_for_status,
    parse_response,
    redact,
)
from airflow_provider_smartmca.client.settings import ClientSettings
from airflow_provider_smartmca.errors import SmartMCAError, SmartMCAInvalidResponseError, SmartMCAScopeError
from airflow_provider_smartmca.hooks import SmartMCAHook
from airflow_provider_smartmca.testing import FULL_KEY
from airflow_provider_smartmca.testing.server import Emulator
from airflow_provider_smartmca.triggers import ExecutionTrigger

KEY = "smca_live_Q7xK2pW9mZ4tR8vB1nC6yH3jL5dF0gSa"
SETTINGS = ClientSettings(base_url="https://api.example.test", api_key=KEY)
FILLER = "x" * 2000
PART = 8  # the guarantee: no 8 consecutive characters of the key survive


def leaked_parts(text: str, key: str = KEY) -> list[str]:
    """Every run of ``PART`` characters of ``key`` (the whole key if shorter) found in ``text``."""
    n = min(PART, len(key))
    return [key[i : i + n] for i in range(len(key) - n + 1) if key[i : i + n] in text]


def exception_chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and every exception reachable from it through ``__context__`` and ``__cause__``."""
    found: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is not None and not any(current is seen for seen in found):
            found.append(current)
            todo += [current.__context__, current.__cause__]
    return found


def error_texts(exc: SmartMCAError) -> list[str]:
    """
    Everything of an exception a log line, an event, a UI, an error reporter walking its chain
    (``__context__`` and ``__cause__``, shown or suppressed) or a pickle could show.
    """
    fields = [pickle.dumps(exc).decode("latin-1")]
    for each in exception_chain(exc):
        fields += [
            str(each),
            repr(each),
            repr(each.args),
            repr(vars(each)),
            repr(getattr(each, "object", "")),
        ]
    return fields


def request(name: str = "get_workflow") -> object:
    params = {"get_workflow": {"workflow_id": "wf_1"}, "list_workflows": {}}[name]
    return build_request(SETTINGS, name, path_params=params)


# --- the one redaction function ------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(
    key=st.text(min_size=1, max_size=50),
    before=st.text(max_size=350),
    after=st.text(max_size=60),
    start=st.integers(0, 50),
    stop=st.integers(0, 50),
    limit=st.none() | st.integers(0, 400),
)
@example(key="ab*cdefghij", before="", after="", start=0, stop=50, limit=None)
@example(key="********", before="*", after="*", start=0, stop=50, limit=None)
def test_redact_leaves_no_part_of_any_key(key, before, after, start, stop, limit):
    text = before + key + after + key[start:stop] + before
    out = redact(text, key, limit=limit)
    assert leaked_parts(out, key) == []
    if limit is not None:
        assert len(out) <= limit


@settings(max_examples=300, deadline=None)
@given(offset=st.integers(0, 400), limit=st.integers(1, 400))
def test_redact_before_cutting_at_every_offset(offset, limit):
    out = redact(FILLER[:offset] + "Bearer " + KEY + FILLER, KEY, limit=limit)
    assert leaked_parts(out) == [] and len(out) <= limit


def test_redact_keeps_text_without_the_key_and_masks_it():
    assert redact("nothing secret here", KEY) == "nothing secret here"
    assert redact(f"a {KEY} b {KEY[:20]} c {KEY[25:]}", KEY) == "a *** b *** c ***"
    assert redact("anything", None) == "anything" and redact("anything", "") == "anything"
    assert redact("x" * 500, KEY, limit=300) == "x" * 300


def test_load_json_redacts_every_string_and_object_key():
    data = {"a": [KEY, {"n": 1, KEY[:10] + "xyz": f"..{KEY[3:30]}.."}], "ok": True, "none": None}
    out = protocol.load_json(json.dumps(data).encode(), KEY)
    assert leaked_parts(repr(out)) == []
    assert out["ok"] is True and out["none"] is None and out["a"][1]["n"] == 1
    # Escapes spell the key without the raw text holding it: \u0051 is "Q", \/ is "/".
    escaped = ('["' + KEY[:10] + "\\u0051" + KEY[11:] + '"]').encode()
    assert leaked_parts(repr(protocol.load_json(escaped, KEY))) == []
    slash_key = "abc/defghijk/lmnop"
    assert leaked_parts(repr(protocol.load_json(b'["abc\\/defghijk\\/lmnop"]', slash_key)), slash_key) == []
    clean = {"executionId": "exec_1", "nodes": [{"name": "a"}]}
    assert protocol.load_json(json.dumps(clean).encode(), KEY) == clean
    with pytest.raises(ValueError):
        protocol.load_json(b"[" * 100_000 + b"]" * 100_000, KEY)


def strings_in(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings_in(v)


UTF8_TEXT = st.characters(codec="utf-8")


@settings(max_examples=400, deadline=None)
@given(
    key=st.text(UTF8_TEXT, min_size=1, max_size=40),
    echoes=st.lists(
        st.tuples(
            st.text(UTF8_TEXT, max_size=8),
            st.integers(0, 40),
            st.integers(0, 40),
            st.text(UTF8_TEXT, max_size=8),
        ),
        max_size=4,
    ),
    ensure_ascii=st.booleans(),
)
@example(key="abc/defghijk", echoes=[("", 0, 40, "")], ensure_ascii=True)
def test_load_json_leaves_no_part_of_any_key(key, echoes, ensure_ascii):
    strings = [before + key[i:j] + after for before, i, j, after in echoes]
    body = json.dumps({"items": strings, key: [key], "n": 1}, ensure_ascii=ensure_ascii)
    if "/" in key:
        body = body.replace("/", "\\/")  # as PHP writes JSON
    for text in strings_in(protocol.load_json(body.encode(), key)):
        assert leaked_parts(text, key) == []


# --- error responses: every field copied into an exception -------------------------------------


@settings(max_examples=200, deadline=None)
@given(offset=st.integers(0, 400), status=st.sampled_from([400, 404, 409, 500, 502, 503]))
def test_text_error_body_echoing_the_key_at_any_offset(offset, status):
    body = (FILLER[:offset] + f"Authorization: Bearer {KEY}\r\n" + FILLER[:500]).encode()
    raw = RawResponse(status, {"content-type": "text/plain"}, body)
    exc = error_for_status(request(), raw, SETTINGS)
    for text in error_texts(exc):
        assert leaked_parts(text) == []
    assert len(exc.server_message or "") <= 300


@settings(max_examples=100, deadline=None)
@given(offset=st.integers(0, 400))
def test_json_error_message_echoing_the_key_at_any_offset(offset):
    message = FILLER[:offset] + KEY + FILLER[:400]
    raw = RawResponse(
        500, {"content-type": "application/json"}, f'{{"error": {{"message": "{message}"}}}}'.encode()
    )
    exc = error_for_status(request(), raw, SETTINGS)
    for text in error_texts(exc):
        assert leaked_parts(text) == []
    assert len(exc.server_message or "") <= 300


@pytest.mark.parametrize("scope", [f"Bearer {KEY}", KEY[:12], "x" * 290 + KEY, KEY * 3])
def test_403_required_scope_echoing_the_key(scope):
    body = {"error": {"message": "forbidden", "requiredScope": scope}}
    raw = RawResponse(403, {"content-type": "application/json"}, json.dumps(body).encode())
    exc = error_for_status(request(), raw, SETTINGS)
    assert isinstance(exc, SmartMCAScopeError)
    for text in [*error_texts(exc), exc.scope]:
        assert leaked_parts(text) == []
    assert len(exc.scope) <= 100


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@pytest.mark.parametrize("location", [f"https://evil.test/?k={KEY}", f"https://x.test/{'a' * 300}{KEY}"])
def test_redirect_location_echoing_the_key(status, location):
    raw = RawResponse(status, {"location": location}, b"")
    exc = error_for_status(request(), raw, SETTINGS)
    for text in error_texts(exc):
        assert leaked_parts(text) == []
    assert "unexpected redirect to https://" in str(exc)


# --- successful responses: what the server sends becomes XCom, events and messages --------------


@settings(max_examples=150, deadline=None)
@given(offset=st.integers(0, 120))
def test_non_json_2xx_echoing_the_key_at_any_offset(offset):
    raw = RawResponse(200, {"content-type": "text/plain"}, (FILLER[:offset] + KEY + FILLER[:50]).encode())
    with pytest.raises(SmartMCAInvalidResponseError) as err:
        parse_response(request("list_workflows"), raw, SETTINGS)
    for text in error_texts(err.value):
        assert leaked_parts(text) == []


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(("Authorization: Bearer " + KEY + FILLER).encode(), id="text"),
        pytest.param(('{"executionId": "' + KEY + '", "status": ').encode(), id="json-cut-short"),
        pytest.param(b"\xff" + KEY.encode() + b"\xfe", id="not-utf-8"),
        pytest.param(b"[" * 100_000 + KEY.encode(), id="nested-too-deeply"),
    ],
)
def test_an_unreadable_2xx_error_holds_no_library_exception_nor_server_text(body):
    raw = RawResponse(200, {"content-type": "application/json"}, body)
    with pytest.raises(SmartMCAInvalidResponseError) as err:
        parse_response(request("list_workflows"), raw, SETTINGS)
    chain = exception_chain(err.value)
    assert all(isinstance(each, SmartMCAError) for each in chain), [type(e).__name__ for e in chain]
    assert err.value.__context__ is None and err.value.__cause__ is None
    for text in error_texts(err.value):
        assert leaked_parts(text) == []


def test_a_contract_error_on_a_timestamp_echoing_the_key_keeps_no_library_exception():
    get = build_request(SETTINGS, "get_execution", path_params={"execution_id": "exec_1"})
    body = {"executionId": "exec_1", "status": "running", "startedAt": "Bearer " + KEY}
    raw = RawResponse(200, {"content-type": "application/json"}, json.dumps(body).encode())
    with pytest.raises(SmartMCAError, match="startedAt") as err:
        parse_response(get, raw, SETTINGS)
    assert exception_chain(err.value) == [err.value]
    for text in error_texts(err.value):
        assert leaked_parts(text) == []


def test_json_2xx_echoing_the_key_is_redacted_in_the_parsed_record():
    body = (
        '{"data": [{"id": "wf_1", "entityType": "deal", "name": "Bearer '
        + KEY
        + '", "note": "'
        + KEY[5:25]
        + '",'
        ' "escaped": "' + KEY[:10] + "\\u0051" + KEY[11:] + '"}]}'
    )
    raw = RawResponse(200, {"content-type": "application/json"}, body.encode())
    parsed = parse_response(request("list_workflows"), raw, SETTINGS)
    assert leaked_parts(repr(dataclasses.asdict(parsed))) == []  # asdict: ``raw`` too (kept for XCom)
    assert "wf_1" in repr(parsed)


def test_redirect_location_with_the_key_percent_encoded():
    key = "smca_live_Ab+/cD==ef/gh+ij/kl"
    settings_ = ClientSettings(base_url="https://api.example.test", api_key=key)
    get = build_request(settings_, "get_workflow", path_params={"workflow_id": "wf_1"})
    raw = RawResponse(302, {"location": "https://evil.test/?auth=" + quote(key, safe="")}, b"")
    exc = error_for_status(get, raw, settings_)
    for text in error_texts(exc):
        assert leaked_parts(text, key) == [] and leaked_parts(text, quote(key, safe="")) == []


# --- against the emulator: it echoes the request's Authorization header ----------------------------

EMU_KEY = FULL_KEY  # the key make_hook and the trigger's connection send
ECHOES = [
    pytest.param({"echo_in": "body"}, id="500-text-key-at-270"),
    pytest.param({"echo_in": "json_body"}, id="500-json-error-message"),
    # The echoed line is "Authorization: Bearer <key>": at 270 the key straddles the 300-character
    # cut of an error message, at 48 the 80-character cut of a non-JSON 2xx snippet.
    pytest.param({"echo_in": "body", "status": 200, "offset": 48}, id="200-not-json-key-at-48"),
    pytest.param({"echo_in": "location"}, id="302-location"),
    pytest.param({"echo_in": "required_scope"}, id="403-required-scope"),
]


def assert_clean(texts: list[str]) -> None:
    for text in texts:
        assert leaked_parts(text, EMU_KEY) == [], text


@pytest.mark.parametrize("echo", ECHOES)
def test_sync_hook_never_shows_an_echoed_key(make_hook, smartmca_emulator, caplog, echo):
    caplog.set_level(logging.DEBUG)
    hook = make_hook(extra={"max_retries": 1})
    smartmca_emulator.add_fault("echo", route="get_workflow", count=2, **echo)
    with pytest.raises(SmartMCAError) as err:
        hook.get_workflow("wf_deal_onboarding")
    assert smartmca_emulator.requests[-1].fault == "echo"
    assert_clean([*error_texts(err.value), caplog.text, *(r.getMessage() for r in caplog.records)])


@pytest.mark.parametrize("echo", ECHOES)
def test_async_client_never_shows_an_echoed_key(smartmca_emulator, echo):
    from airflow_provider_smartmca.client.aio import shared_session

    settings_ = ClientSettings(base_url=smartmca_emulator.base_url, api_key=EMU_KEY)
    smartmca_emulator.add_fault("echo", route="get_workflow", count=1, **echo)

    async def call() -> SmartMCAError:
        async with shared_session(settings_) as client:
            get = build_request(settings_, "get_workflow", path_params={"workflow_id": "wf_deal_onboarding"})
            with pytest.raises(SmartMCAError) as err:
                parse_response(get, await client.send(get), settings_)
            return err.value

    exc = asyncio.run(call())
    assert smartmca_emulator.requests[-1].fault == "echo"
    assert_clean(error_texts(exc))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(offset=st.integers(0, 420), status=st.sampled_from([200, 500]))
@example(offset=270, status=500)
@example(offset=265, status=500)
@example(offset=48, status=200)
@example(offset=44, status=200)
def test_echo_at_any_offset_through_the_hook(make_hook, smartmca_emulator, offset, status):
    hook = make_hook(extra={"max_retries": 0})
    smartmca_emulator.add_fault("echo", route="get_workflow", count=1, status=status, offset=offset)
    with pytest.raises(SmartMCAError) as err:
        hook.get_workflow("wf_deal_onboarding")
    assert_clean(error_texts(err.value))


def _first_event(trigger: ExecutionTrigger) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        agen = trigger.run()
        try:
            return (await asyncio.wait_for(agen.__anext__(), 20)).payload
        finally:
            await agen.aclose()

    return asyncio.run(run())


@pytest.mark.parametrize(
    ("echo", "expected"),
    [({"echo_in": "required_scope", "count": 1}, "error"), ({"echo_in": "body", "count": 2}, "success")],
)
def test_trigger_events_and_logs_never_show_an_echoed_key(
    make_hook, smartmca_emulator, caplog, echo, expected
):
    caplog.set_level(logging.DEBUG)
    started = make_hook().trigger_workflow("wf_deal_onboarding", "deal", "leak_trigger").execution_id
    smartmca_emulator.add_fault("echo", route="get_execution", **echo)
    trigger = ExecutionTrigger("smartmca_default", started, poll_interval=0.05, deadline=time.time() + 15)
    event = _first_event(trigger)
    assert event["status"] == expected
    assert smartmca_emulator.count(route="get_execution") >= 1
    assert_clean([json.dumps(event), repr(event), caplog.text])


# --- node errors and node names: server text that becomes failure messages, events and XCom -------

ECHO_WORKFLOW = {
    "id": "wf_echo",
    "name": f"Echo {EMU_KEY}",
    "entityType": "deal",
    # A server that shortens what it echoes: part of the key, never the whole of it.
    "nodes": [f"check Bearer {EMU_KEY[:11]}...", "second"],
    "outcome": {
        "fail_at_node": 1,
        "error": {"code": "E_AUTH", "message": f"rejected Authorization: Bearer {EMU_KEY}"},
    },
}


@pytest.fixture(scope="module")
def echo_emulator() -> Iterator[Emulator]:
    config = {"durations": {"pending_seconds": 0.05, "node_seconds": 0.02}, "workflows": [ECHO_WORKFLOW]}
    with Emulator(config) as emu:
        yield emu


@pytest.fixture
def echo_hook(echo_emulator, monkeypatch) -> SmartMCAHook:
    echo_emulator.reset()
    conn = {"conn_type": "smartmca", "host": echo_emulator.base_url, "password": EMU_KEY}
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", json.dumps(conn))
    return SmartMCAHook()


def test_node_errors_echoing_the_key_are_redacted_everywhere(echo_hook, caplog):
    caplog.set_level(logging.DEBUG)
    accepted = echo_hook.trigger_workflow("wf_echo", "deal", "leak_nodes")
    done = echo_hook.wait_for_execution(accepted.execution_id, poll_interval=0.05, deadline=time.time() + 15)
    assert done.status == "failed"
    with pytest.raises(SmartMCAError) as err:
        executions.final_result(done)
    texts = [
        repr(dataclasses.asdict(accepted)),
        repr(dataclasses.asdict(done)),  # ``raw`` included: what operators push to XCom
        executions.failure_message(done),
        json.dumps(executions.summary(done)),
        *error_texts(err.value),
        caplog.text,
    ]
    assert "rejected Authorization: Bearer ***" in executions.failure_message(done)
    assert_clean(texts)


def test_trigger_failure_event_with_node_errors_echoing_the_key(echo_hook, caplog):
    caplog.set_level(logging.DEBUG)
    started = echo_hook.trigger_workflow("wf_echo", "deal", "leak_event").execution_id
    event = _first_event(
        ExecutionTrigger("smartmca_default", started, poll_interval=0.05, deadline=time.time() + 15)
    )
    assert event["status"] == "failure"
    assert_clean([json.dumps(event), caplog.text])
