"""Issue 9, findings 1 and 2: start-once against a skewed clock, an ignored sort order and a
concurrent client.

Each test judges the emulator's own record (the executions it created, the POSTs that reached a
handler), not the shape of what the hook returns, so that it also runs against the code before
the start-once rewrite (commit 9392d04), where it fails: see :func:`_start` and
:func:`_retry_after_death`, the two places where the old and the new API differ.

A worker's death mid-POST is simulated as the operators see it: the intent given to the
intent callback is kept (an operator keeps it in ``task_state_store``), the callback raises
(the process is gone), and the POST the dead worker had put on the wire is sent directly with
the same key, so the server acts and its 202 reaches nobody. A new hook then resolves the intent.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
import requests

from airflow_provider_smartmca.errors import SmartMCAAmbiguousTriggerError, SmartMCAError
from airflow_provider_smartmca.hooks import smartmca as hook_module
from airflow_provider_smartmca.testing import FULL_KEY

# The start-once rewrite moved the logic into hooks/start_once.py and the intent callback into an
# argument; before it, the hook had a ``post_intent_listener`` attribute and returned dicts.
NEW_API = hasattr(hook_module, "start_once")
TRIGGER_BODY = {"workflowType": "wf_deal_onboarding", "entityType": "deal"}


class WorkerDied(Exception):
    """The worker's process is gone (raised from the intent callback, after the intent was kept)."""


def _start(
    hook: Any, operation: str, *args: Any, on_intent: Any = None, workflow_type: str | None = None
) -> Any:
    """Call a start-once hook method with an intent callback, on either API."""
    method = getattr(hook, operation)
    if NEW_API:
        kwargs: dict[str, Any] = {"on_intent": on_intent}
        if workflow_type is not None:
            kwargs["workflow_type"] = workflow_type
        return method(*args, **kwargs)
    hook.post_intent_listener = on_intent
    if operation == "trigger_workflow":
        return method(*args)
    application_id, payload = args
    return method(application_id, **(payload or {}))


def _retry_after_death(hook: Any, intent: Any, resend: Any) -> Any:
    """What the next try does with the intent a dead worker left behind (the operators' logic)."""
    if NEW_API:
        from airflow_provider_smartmca.hooks import start_once

        # The record goes through JSON, as task_state_store keeps it.
        stored = start_once.StartIntent.from_json(_json_round_trip(dataclasses.asdict(intent)))
        return start_once.recover(hook, stored, "the previous try died with its request in flight")
    from airflow_provider_smartmca.hooks.exactly_once import executions_started_by

    found = hook.patiently(executions_started_by, hook, _json_round_trip(intent))
    if not found:  # 9392d04's operators: "started no execution; sending it now"
        return resend()
    if len(found) > 1:
        raise SmartMCAAmbiguousTriggerError("several candidates", candidates=found)
    return {**found[0], "recovered": True}


def _json_round_trip(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value))


def _execution_id(result: Any) -> str | None:
    return result.get("executionId") if isinstance(result, dict) else result.execution_id


def _recovered(result: Any) -> bool:
    return bool(result.get("recovered")) if isinstance(result, dict) else bool(result.recovered)


def _post_directly(emu: Any, path: str, body: dict[str, Any]) -> None:
    """The request a dead worker had sent: it reaches the server, its answer reaches nobody."""
    response = requests.post(
        emu.api_url + path, json=body, headers={"Authorization": f"Bearer {FULL_KEY}"}, timeout=10
    )
    assert response.status_code == 202, response.text


def _outcome(call: Any) -> Any:
    """The result of ``call``, or the SmartMCA error it raised."""
    try:
        return call()
    except SmartMCAError as exc:
        return exc


def _die_after_keeping(intents: list[Any]) -> Any:
    def on_intent(intent: Any) -> None:
        if intent is not None:
            intents.append(intent)
            raise WorkerDied

    return on_intent


def _age_executions(emu: Any, seconds: float) -> None:
    """Make every execution so far look ``seconds`` older (test set-up: the API cannot backdate)."""
    for execution in emu.state.store.all():
        execution.created_at -= seconds


# --- finding 1: a duplicate after a worker dies mid-POST -----------------------------------------


@pytest.mark.parametrize("offset", [-60, -600, 600])
def test_death_mid_post_with_a_skewed_server_clock_starts_once(make_hook, smartmca_emulator, offset):
    """The server's clock is ``offset`` s off the worker's, more than clock_skew (30 s)."""
    emu = smartmca_emulator
    emu.configure(clock_offset_seconds=offset)
    intents: list[Any] = []
    entity = f"d_skew_{abs(offset)}_{'behind' if offset < 0 else 'ahead'}"
    with pytest.raises(WorkerDied):
        _start(
            make_hook(),
            "trigger_workflow",
            "wf_deal_onboarding",
            "deal",
            entity,
            on_intent=_die_after_keeping(intents),
        )
    _post_directly(emu, "/workflows/trigger", {**TRIGGER_BODY, "entityId": entity})
    [lost] = emu.actions()

    retry = make_hook()
    result = _retry_after_death(
        retry, intents[0], lambda: retry.trigger_workflow("wf_deal_onboarding", "deal", entity)
    )

    assert len(emu.executions(entity_id=entity)) == 1, "the retry started a second execution"
    assert _execution_id(result) == lost.execution_id and _recovered(result)


@pytest.mark.parametrize("list_order", ["ignore_asc", "shuffle"])
def test_death_mid_post_with_a_list_that_ignores_sort_order_starts_once(
    make_hook, smartmca_emulator, list_order
):
    """The list answers oldest first (or shuffled), and the entity has one older execution."""
    emu = smartmca_emulator
    entity = f"d_order_{list_order}"
    make_hook().trigger_workflow("wf_deal_onboarding", "deal", entity)
    _age_executions(emu, 3600)  # an hour old: well outside any clock_skew window
    emu.configure(list_order=list_order, list_seed=1)
    intents: list[Any] = []
    with pytest.raises(WorkerDied):
        _start(
            make_hook(),
            "trigger_workflow",
            "wf_deal_onboarding",
            "deal",
            entity,
            on_intent=_die_after_keeping(intents),
        )
    _post_directly(emu, "/workflows/trigger", {**TRIGGER_BODY, "entityId": entity})
    lost = emu.actions()[-1]

    retry = make_hook()
    result = _retry_after_death(
        retry, intents[0], lambda: retry.trigger_workflow("wf_deal_onboarding", "deal", entity)
    )

    assert len(emu.executions(entity_id=entity)) == 2, "the retry started a second execution"
    assert _execution_id(result) == lost.execution_id and _recovered(result)


# --- finding 2: recovery adopts an execution that the POST did not start -------------------------


@pytest.mark.parametrize("workflow_type", [None, "wf_app_status_change"])
def test_status_change_lost_before_acting_does_not_adopt_another_clients_underwriter(
    make_hook, smartmca_emulator, workflow_type
):
    """A 500 before the server acts; meanwhile another client assigns an underwriter on the same
    application. Nothing proves the status change happened: the answer is ambiguous, never the
    underwriter workflow's execution as "recovered"."""
    emu = smartmca_emulator
    application = "app_concurrent"

    def another_client_acts(intent: Any) -> None:
        if intent is not None:  # after the snapshot, before the POST
            _post_directly(emu, f"/applications/{application}/assign-underwriter", {"underwriterId": "uw_7"})
            emu.add_fault("status", route="change_status", status=500, count=1)

    outcome = _outcome(
        lambda: _start(
            make_hook(),
            "change_application_status",
            application,
            {"status": "approved"},
            on_intent=another_client_acts,
            workflow_type=workflow_type,
        )
    )

    [underwriter] = emu.actions()  # the status change was refused before its handler: it never acted
    assert underwriter.route == "assign_underwriter"
    assert emu.count(route="change_status", method="POST") == 1
    assert isinstance(outcome, SmartMCAAmbiguousTriggerError), (
        f"returned {_execution_id(outcome)} (the underwriter's is {underwriter.execution_id}) for a status "
        "change that did not happen"
    )
    assert len(emu.executions(entity_id=application)) == 1


def test_failed_snapshot_then_5xx_before_acting_does_not_adopt_the_previous_execution(
    make_hook, smartmca_emulator
):
    """The pre-POST list fails once (503), the trigger gets a 500 before acting; the entity's
    previous execution, started moments before, must not come back as "recovered"."""
    emu = smartmca_emulator
    entity = "d_no_snapshot"
    hook = make_hook(extra={"max_retries": 0})
    previous = hook.trigger_workflow("wf_deal_onboarding", "deal", entity)
    emu.add_fault("status", route="list_executions", status=503, count=1)
    emu.add_fault("status", route="trigger", status=500, count=1)

    outcome = _outcome(lambda: hook.trigger_workflow("wf_deal_onboarding", "deal", entity))

    assert [a.execution_id for a in emu.actions()] == [_execution_id(previous)]  # the second never acted
    assert emu.count(route="trigger", method="POST") == 2
    assert isinstance(outcome, SmartMCAAmbiguousTriggerError), (
        f"returned the previous execution {_execution_id(outcome)} for a trigger that did not happen"
    )
    assert outcome.candidates == []


# --- found by the property test (test_start_once_properties.py) ----------------------------------


def test_lost_answer_found_past_a_full_page_of_equally_stamped_older_executions(make_hook, smartmca_emulator):
    """A server that ignores sort_order (oldest first), and a full first page of older executions that share one
    ``startedAt`` (a batch, or a server stamping whole seconds): equal timestamps look newest first,
    so the walk stopped at page 1 and never saw the execution the lost POST started. The answer
    was "ambiguous" (no second POST, but a task failed that could have been recovered)."""
    emu = smartmca_emulator
    entity = "app_batch"
    workflow = emu.config.workflows["wf_app_assign_underwriter"]
    batch = [emu.state.store.create(workflow, "application", entity) for _ in range(120)]
    for execution in batch:
        execution.created_at = batch[0].created_at - 3600  # an hour ago, all at one instant
    emu.configure(list_order="ignore_asc")
    emu.add_fault("status_after", route="assign_underwriter", status=502)

    outcome = _outcome(
        lambda: _start(
            make_hook(), "assign_underwriter", entity, {}, workflow_type="wf_app_assign_underwriter"
        )
    )

    [lost] = emu.actions()
    assert not isinstance(outcome, SmartMCAError), outcome
    assert _execution_id(outcome) == lost.execution_id and _recovered(outcome)
    assert len(emu.executions(entity_id=entity)) == 121


# --- a stored record of the right version but the wrong shape -------------------------------------

_INTENT = {
    "operation": "trigger_workflow",
    "entity_type": "deal",
    "entity_id": "deal_shape",
    "workflow_type": "wf_deal_onboarding",
    "known_ids": ["exec_known"],
    "window_start": "2026-01-01T00:00:00+00:00",
    "version": 1,
}
_RECORD = {"intent": _INTENT, "execution_id": None, "workflow_id": None, "response": None, "version": 1}


def _without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}


MISSHAPEN = {
    "intent without entity_type": {**_RECORD, "intent": _without(_INTENT, "entity_type")},
    "intent with an unknown field": {**_RECORD, "intent": {**_INTENT, "extra": 1}},
    "intent entity_id null": {**_RECORD, "intent": {**_INTENT, "entity_id": None}},
    "intent entity_id a path": {**_RECORD, "intent": {**_INTENT, "entity_id": "../deal"}},
    "known_ids a number": {**_RECORD, "intent": {**_INTENT, "known_ids": 5}},
    "known_ids a string": {**_RECORD, "intent": {**_INTENT, "known_ids": "exec_known"}},
    "known_ids of numbers": {**_RECORD, "intent": {**_INTENT, "known_ids": [1, 2]}},
    "window_start not a time": {**_RECORD, "intent": {**_INTENT, "window_start": "yesterday"}},
    "window_start a number": {**_RECORD, "intent": {**_INTENT, "window_start": 5}},
    "intent version true": {**_RECORD, "intent": {**_INTENT, "version": True}},
    "intent a list": {**_RECORD, "intent": [1]},
    "execution_id a number": {**_without(_RECORD, "intent"), "execution_id": 5},
    "execution_id a path": {**_without(_RECORD, "intent"), "execution_id": "../x"},
    "workflow_id a list": {**_RECORD, "workflow_id": ["wf"]},
    "response a string": {**_without(_RECORD, "intent"), "response": "done"},
    "record with an unknown field": {**_RECORD, "more": 1},
    "record version true": {**_RECORD, "version": True},
    "record a list": [1],
}


class _JsonStore:
    """``task_state_store`` as the task runner gives it: JSON values."""

    def __init__(self, value: Any) -> None:
        self.value = json.loads(json.dumps(value))

    def get(self, key: str) -> Any:
        return self.value

    def set(self, key: str, value: Any) -> None:
        raise AssertionError("nothing may be written over a record that cannot be read")


@pytest.mark.parametrize("record", MISSHAPEN.values(), ids=MISSHAPEN.keys())
def test_a_misshapen_start_record_fails_the_task_clearly_without_any_request(
    make_hook, smartmca_emulator, record
):
    from airflow.providers.common.compat.sdk import AirflowFailException

    from airflow_provider_smartmca.hooks.start_once import TaskStartStore
    from airflow_provider_smartmca.operators import TriggerWorkflowOperator

    make_hook()  # the connection
    with pytest.raises(SmartMCAAmbiguousTriggerError, match="task_state_store"):
        TaskStartStore(_JsonStore(record)).load()
    op = TriggerWorkflowOperator(
        task_id="t", workflow_type="wf_deal_onboarding", entity_type="deal", entity_id="deal_shape"
    )
    with pytest.raises(AirflowFailException) as info:  # final: Airflow does not retry it blindly
        op.execute({"task_state_store": _JsonStore(record), "ti": None})
    assert isinstance(info.value.__cause__, SmartMCAAmbiguousTriggerError)
    assert smartmca_emulator.count() == 0 and smartmca_emulator.actions() == []


def test_a_well_shaped_start_record_is_read() -> None:
    from airflow_provider_smartmca.hooks.start_once import TaskStartStore

    record = TaskStartStore(_JsonStore(_RECORD)).load()
    assert record.intent is not None and record.intent.known_ids == ("exec_known",)
