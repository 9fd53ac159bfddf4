"""An id reaches the server as exactly that id, or is refused before any request (issue 9, finding 7).

URL normalisation removes dot segments (requests/urllib3 and yarl alike), so ``get_execution(".")``
used to request ``/workflows/executions/``: the list. Against a server that answers that URL as
the list, a trigger took the list for the execution. Here the emulator answers it too
(``trailing_slash_list``), and every path the server received is read from its request log.
"""

from __future__ import annotations

import asyncio
import string
import time
from urllib.parse import unquote

import pytest
import requests
import yarl
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from airflow_provider_smartmca.client import protocol
from airflow_provider_smartmca.client.settings import ClientSettings
from airflow_provider_smartmca.errors import SmartMCANotFoundError, SmartMCAValidationError
from airflow_provider_smartmca.testing import FULL_KEY
from airflow_provider_smartmca.triggers import ExecutionTrigger

PREFIX = "/api/public/v1/workflows/executions/"
# Ids that URL normalisation (dot segments), a server (";" starts path parameters on Java
# servers) or Unicode compatibility folding (NFKC: fullwidth dot and solidus) turns into another path.
NORMALISED_AWAY = [
    ".",
    "\uff0e",
    "\u2025",
    "a\u2025b",
    "\uff0f",
    "a\uff0fb",
    "\uff05" + "2e",
    "a;b",
    ";",
    "x;jsessionid=1",
]
IDS = st.text(st.sampled_from(string.printable) | st.characters(codec="utf-8"), min_size=1, max_size=40)
HOSTILE = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def accepted(value: str) -> bool:
    try:
        protocol.validate_id("execution_id", value)
    except SmartMCAValidationError:
        return False
    return True


@pytest.mark.parametrize("bad", NORMALISED_AWAY)
def test_ids_that_normalise_to_another_path_are_refused(bad):
    with pytest.raises(SmartMCAValidationError, match="execution_id"):
        protocol.validate_id("execution_id", bad)


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(IDS)
@example(".")
def test_both_transports_keep_an_accepted_id_as_the_last_segment(value):
    """Offline: what requests/urllib3 and yarl (aiohttp) make of the URL the protocol builds."""
    assume(accepted(value))
    request = protocol.build_request(
        ClientSettings(base_url="https://api.example.test", api_key="smca_secret_key"),
        "get_execution",
        path_params={"execution_id": value},
    )
    sent_by_requests = requests.Request("GET", request.url).prepare().path_url
    sent_by_aiohttp = yarl.URL(request.url).raw_path
    for path in (sent_by_requests, sent_by_aiohttp):
        assert path.startswith(PREFIX)
        assert unquote(path[len(PREFIX) :]) == value


@pytest.mark.parametrize(
    ("method", "field"),
    [
        ("get_execution", "execution_id"),
        ("get_workflow", "workflow_id"),
        ("change_application_status", "application_id"),
        ("advance_application_stage", "application_id"),
        ("assign_underwriter", "application_id"),
    ],
)
@pytest.mark.parametrize("bad", [".", "\uff0e", "a;b"])
def test_hook_refuses_before_any_request(make_hook, smartmca_emulator, method, field, bad):
    smartmca_emulator.configure(trailing_slash_list=True)
    hook = make_hook()
    with pytest.raises(SmartMCAValidationError) as err:
        getattr(hook, method)(bad)
    assert err.value.field == field
    assert smartmca_emulator.requests == []


def test_the_trailing_slash_list_is_really_answered(make_hook, smartmca_emulator):
    """The emulator mode this file relies on: the list answers the empty-id URL."""
    smartmca_emulator.configure(trailing_slash_list=True)
    key = {"Authorization": f"Bearer {FULL_KEY}"}
    answer = requests.get(smartmca_emulator.api_url + "/workflows/executions/", headers=key, timeout=5)
    assert answer.status_code == 200 and "data" in answer.json()


@pytest.mark.parametrize("bad", [".", "\uff0e"])
def test_trigger_on_a_dot_id_fails_at_construction_never_reports_success(smartmca_emulator, bad):
    smartmca_emulator.configure(trailing_slash_list=True)
    with pytest.raises(SmartMCAValidationError, match="execution_id"):
        ExecutionTrigger(
            conn_id="smartmca_default", execution_id=bad, poll_interval=0.1, deadline=time.time() + 5
        )
    assert smartmca_emulator.requests == []


@HOSTILE
@given(IDS)
@example(".")
def test_server_receives_exactly_the_accepted_id_sync(make_hook, smartmca_emulator, value):
    assume(accepted(value))
    smartmca_emulator.configure(trailing_slash_list=True)
    hook = make_hook(extra={"max_retries": 0})
    with pytest.raises(SmartMCANotFoundError):
        hook.get_execution(value)
    received = smartmca_emulator.requests[-1].path
    assert received == PREFIX + value


@HOSTILE
@given(IDS)
@example(".")
def test_server_receives_exactly_the_accepted_id_async(smartmca_emulator, value):
    assume(accepted(value))
    smartmca_emulator.configure(trailing_slash_list=True)
    from airflow_provider_smartmca.client.aio import shared_session

    settings_ = ClientSettings(base_url=smartmca_emulator.base_url, api_key=FULL_KEY, verify_ssl=True)

    async def send() -> int:
        async with shared_session(settings_) as client:
            request = protocol.build_request(settings_, "get_execution", path_params={"execution_id": value})
            return (await client.send(request)).status

    assert asyncio.run(send()) == 404
    assert smartmca_emulator.requests[-1].path == PREFIX + value
