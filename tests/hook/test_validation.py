"""Bad input is refused before any request, naming the field; ids are encoded safely (property tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import unquote, urlsplit

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_smartmca.client.protocol import build_request, validate_id
from airflow_provider_smartmca.client.settings import ClientSettings
from airflow_provider_smartmca.errors import SmartMCAValidationError

SETTINGS = ClientSettings(base_url="https://api.example.test", api_key="smca_secret_key")
BAD_IDS = [
    "",
    "   ",
    " padded",
    "a/b",
    "..",
    "a..b",
    "x?y=1",
    "x#frag",
    "50%",
    "tab\there",
    "nl\nx",
    "nul\x00",
    "\u202eevil",
]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize(
    ("method", "args", "field"),
    [
        ("get_workflow", (), "workflow_id"),
        ("get_execution", (), "execution_id"),
        ("change_application_status", (), "application_id"),
        ("advance_application_stage", (), "application_id"),
        ("assign_underwriter", (), "application_id"),
    ],
)
def test_bad_path_ids_refused_before_any_request(hook, smartmca_emulator, bad, method, args, field):
    with pytest.raises(SmartMCAValidationError) as err:
        getattr(hook, method)(bad, *args)
    assert err.value.field == field and field in str(err.value)
    assert smartmca_emulator.requests == []


@pytest.mark.parametrize("field", ["workflow_type", "entity_type", "entity_id"])
def test_find_executions_since_names_itself_for_a_bad_filter(hook, smartmca_emulator, field):
    since = datetime.now(UTC) - timedelta(hours=1)
    with pytest.raises(SmartMCAValidationError) as err:
        hook.find_executions_since(since, **{field: "a/b"})
    assert err.value.field == field and err.value.operation == "find_executions_since"
    assert smartmca_emulator.requests == []


@pytest.mark.parametrize("field", ["workflow_type", "entity_type", "entity_id"])
@pytest.mark.parametrize("bad", ["", " ", "a/b", "../x", "q?", "%2f"])
def test_bad_trigger_arguments(hook, smartmca_emulator, field, bad):
    args = {"workflow_type": "wf_deal_onboarding", "entity_type": "deal", "entity_id": "d1", field: bad}
    with pytest.raises(SmartMCAValidationError, match=field):
        hook.trigger_workflow(**args)
    assert smartmca_emulator.requests == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 101}, "limit"),
        ({"limit": True}, "limit"),
        ({"page": 0}, "page"),
        ({"page": "2"}, "page"),
        ({"sort_order": "up"}, "sort_order"),
        ({"status": "paused"}, "status"),
        ({"status": "COMPLETED"}, "status"),
        ({"entity_id": "a/b"}, "entity_id"),
    ],
)
def test_bad_list_arguments(hook, smartmca_emulator, kwargs, field):
    with pytest.raises(SmartMCAValidationError) as err:
        hook.list_executions(**kwargs)
    assert err.value.field == field
    with pytest.raises(SmartMCAValidationError):
        next(hook.iter_executions(**kwargs)) if "page" not in kwargs else hook.list_executions(**kwargs)
    assert smartmca_emulator.requests == []


@pytest.mark.parametrize(
    "payload",
    [
        {"status": "ok", "when": object()},
        {"score": float("nan")},
        {"score": float("inf")},
        ["not", "a", "dict"],
    ],
)
def test_non_json_body_refused(hook, smartmca_emulator, payload):
    with pytest.raises(SmartMCAValidationError, match="payload"):
        hook.change_application_status("app_1", payload)
    assert smartmca_emulator.requests == []


def test_payload_keys_never_collide_with_hook_parameters(hook, smartmca_emulator):
    """A body may hold any key, even one named like a hook parameter."""
    result = hook.change_application_status("app_1", {"status": "ok", "application_id": "x", "self": 1})
    assert result.execution_id and smartmca_emulator.count(route="change_status") == 1


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_valid_ids_round_trip_to_one_path_segment(value):
    try:
        validate_id("execution_id", value)
    except SmartMCAValidationError:
        return
    request = build_request(SETTINGS, "get_execution", path_params={"execution_id": value})
    path = urlsplit(request.url).path
    prefix = "/api/public/v1/workflows/executions/"
    assert path.startswith(prefix)
    segment = path[len(prefix) :]
    assert "/" not in segment and "?" not in segment and "#" not in segment
    assert unquote(segment) == value


@settings(max_examples=300, deadline=None)
@given(
    st.text(max_size=20),
    st.sampled_from(["/", "..", "?", "#", "%", "\x00", "\x1f", "\x7f"]),
    st.text(max_size=20),
)
def test_ids_with_forbidden_tokens_are_always_refused(left, token, right):
    with pytest.raises(SmartMCAValidationError):
        validate_id("workflow_id", left + token + right)
