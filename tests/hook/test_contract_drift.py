"""The hook against a drifting emulator (issue 10): for every drift, a named, final error within
bounded time, or the documented success; never a raw Python exception, never a second POST.

Each test reads the emulator's own record (request counters, the executions it created), not the
provider's opinion of what it sent.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC
from typing import Any

import pytest

from airflow_provider_smartmca.client.contract import Accepted, Execution, ExecutionPage, WorkflowList
from airflow_provider_smartmca.client.executions import final_result
from airflow_provider_smartmca.client.protocol import CONTRACT_RETRIES
from airflow_provider_smartmca.errors import (
    SmartMCAAmbiguousTriggerError,
    SmartMCAContractError,
    SmartMCAExecutionError,
    SmartMCAExecutionTimeoutError,
)
from airflow_provider_smartmca.testing import DRIFTS, FULL_KEY

RAW = (KeyError, TypeError, AttributeError, ValueError, IndexError)
ATTEMPTS = 1 + CONTRACT_RETRIES  # a read whose answer breaks the contract is sent this many times

# drift -> the field each read names, or None when that read is unaffected.
READS: dict[str, dict[str, str | None]] = {
    "rename_fields": {"get_execution": "executionId", "list_executions": "data[0].executionId"},
    "list_envelope": {"list_executions": "data", "list_workflows": "data"},
    "list_items_without_id": {"list_executions": "data[0].executionId"},
    "list_items_not_objects": {"list_executions": "data[0]", "list_workflows": "data[0]"},
    "action_204": {},
    "action_no_execution": {},
    "unknown_status": {},
    "unsorted_list": {},
    "no_timestamps": {},  # both optional: nothing breaks, the watcher and the lookups fall back
    "no_completed_at": {},
    "total_counts_page": {},  # a hint only: no walk stops on it (tests/hook/test_listing_hostile.py)
    "bad_timestamps": {"get_execution": "startedAt", "list_executions": "data[0].startedAt"},
    "status_as_list": {"get_execution": "status"},
    "nodes_as_number": {"get_execution": "nodes"},
    "huge_total": {"list_executions": "total", "list_workflows": "total"},
}
# Drifts that break the pre-POST snapshot of an entity that already has an execution.
SNAPSHOT_BREAKERS = {d: f for d, reads in READS.items() if (f := reads.get("list_executions"))}
# Drifts under which Get Execution breaks the contract: a wait fails on them.
GET_BREAKERS = {d: f for d, reads in READS.items() if (f := reads.get("get_execution"))}


def test_every_drift_is_covered():
    assert set(READS) == set(DRIFTS)


def finished(hook, workflow: str = "wf_deal_onboarding", entity_id: str = "deal_1") -> str:
    """An execution of ``entity_id`` that has ended (so drifts on running executions do not matter)."""
    execution_id = hook.trigger_workflow(workflow, "deal", entity_id).execution_id
    assert hook.wait_for_execution(execution_id, poll_interval=0.02, deadline=time.time() + 10).status
    return execution_id


def posts(emu) -> int:
    """POSTs the emulator received (any route, any answer)."""
    return emu.count(method="POST")


def assert_named(exc: BaseException, endpoint: str, field: str) -> None:
    """A contract error, exactly, naming the endpoint and the field, with the keys (never values)."""
    assert type(exc) is SmartMCAContractError, type(exc)
    assert not isinstance(exc, RAW)
    assert exc.endpoint == endpoint and exc.field == field
    assert field in str(exc)
    assert FULL_KEY not in str(exc)


# --- reads --------------------------------------------------------------------------------------


@pytest.mark.parametrize("read", ["get_execution", "list_executions", "list_workflows"])
@pytest.mark.parametrize("drift", sorted(READS))
def test_each_read_under_each_drift(hook, smartmca_emulator, drift, read):
    """A read names the field after a few attempts, or is unaffected; nothing is POSTed."""
    execution_id = finished(hook)
    smartmca_emulator.configure(drift=[drift])
    before, sent = posts(smartmca_emulator), smartmca_emulator.count(route=read)
    call = {
        "get_execution": lambda: hook.get_execution(execution_id),
        "list_executions": lambda: hook.list_executions(entity_id="deal_1"),
        "list_workflows": hook.list_workflows,
    }[read]
    field = READS[drift].get(read)
    if field is None:
        assert isinstance(call(), (Execution, ExecutionPage, WorkflowList))
        assert smartmca_emulator.count(route=read) - sent == 1
    else:
        with pytest.raises(SmartMCAContractError) as err:
            call()
        assert_named(err.value, read, field)
        assert smartmca_emulator.count(route=read) - sent == ATTEMPTS  # a few times, not max_retries
    assert posts(smartmca_emulator) == before


def test_rename_fields_lists_the_keys_present_never_values(hook, smartmca_emulator):
    execution_id = finished(hook)
    smartmca_emulator.configure(drift=["rename_fields"])
    with pytest.raises(SmartMCAContractError) as err:
        hook.get_execution(execution_id)
    assert {"id", "state", "workflowId"} <= set(err.value.present_keys)
    assert "keys present:" in str(err.value) and "'id'" not in str(err.value)
    assert execution_id not in str(err.value) and "wf_deal_onboarding" not in str(err.value)


def test_iter_and_find_executions_fail_named_on_a_drifted_list(hook, smartmca_emulator):
    from datetime import datetime, timedelta

    finished(hook)
    smartmca_emulator.configure(drift=["list_items_without_id"])
    with pytest.raises(SmartMCAContractError) as err:
        list(hook.iter_executions(entity_id="deal_1"))
    assert_named(err.value, "list_executions", "data[0].executionId")
    with pytest.raises(SmartMCAContractError) as err:
        hook.find_executions_since(datetime.now(UTC) - timedelta(hours=1), entity_id="deal_1")
    assert_named(err.value, "list_executions", "data[0].executionId")


def test_patiently_does_not_ride_out_a_contract_error(hook, smartmca_emulator):
    """A drift is not a storm: ``patiently`` gives up at once, not after its patience."""
    execution_id = finished(hook)
    smartmca_emulator.configure(drift=["status_as_list"])
    gets = smartmca_emulator.count(route="get_execution")
    with pytest.raises(SmartMCAContractError) as err:
        hook.patiently(hook.get_execution, execution_id, patience=60)
    assert_named(err.value, "get_execution", "status")
    # The per-call contract attempts, once: a storm ridden out for 60 s would be many more reads.
    assert smartmca_emulator.count(route="get_execution", status=200) - gets == ATTEMPTS


# --- the worker's wait -----------------------------------------------------------------------------


@pytest.mark.parametrize("drift", sorted(GET_BREAKERS))
def test_wait_fails_named_after_a_few_polls(hook, smartmca_emulator, drift):
    execution_id = finished(hook)
    smartmca_emulator.configure(drift=[drift])
    before = posts(smartmca_emulator)
    gets = smartmca_emulator.count(route="get_execution")
    with pytest.raises(SmartMCAContractError) as err:
        hook.wait_for_execution(execution_id, poll_interval=0.05, deadline=time.time() + 60)
    assert_named(err.value, "get_execution", GET_BREAKERS[drift])
    # One attempt per poll (the wait is its own retry loop), a few polls: never the 60 s deadline's
    # worth (1200 polls).
    assert smartmca_emulator.count(route="get_execution") - gets == ATTEMPTS
    assert posts(smartmca_emulator) == before


@pytest.mark.parametrize("drift", sorted(set(READS) - set(GET_BREAKERS) - {"unknown_status"}))
def test_wait_is_unaffected_by_drifts_of_other_endpoints(hook, smartmca_emulator, drift):
    execution_id = hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_new").execution_id
    smartmca_emulator.configure(drift=[drift])
    execution = hook.wait_for_execution(execution_id, poll_interval=0.02, deadline=time.time() + 10)
    assert execution.status == "completed"
    assert posts(smartmca_emulator) == 1


@pytest.mark.slow
def test_unknown_status_is_logged_once_then_times_out_naming_it(hook, smartmca_emulator, capfd):
    smartmca_emulator.configure(drift=["unknown_status"])
    execution_id = hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_paused").execution_id
    start = time.monotonic()
    with pytest.raises(SmartMCAExecutionTimeoutError) as err:
        hook.wait_for_execution(execution_id, poll_interval=0.05, deadline=time.time() + 1.0)
    elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 10  # the deadline is the promise; the margin is for a loaded machine
    assert "'paused'" in str(err.value) and err.value.execution_status == "paused"
    assert "left running" not in str(err.value)  # a paused execution is not running
    out = "".join(capfd.readouterr())  # the hook logs through structlog, to the captured streams
    unknown = [line for line in out.splitlines() if "'paused'" in line and "does not know" in line]
    assert len(unknown) == 1, out
    assert smartmca_emulator.count(route="get_execution") > 5  # it did keep polling
    assert posts(smartmca_emulator) == 1


def test_unknown_status_listed_in_failure_statuses_fails_fast(hook, smartmca_emulator):
    smartmca_emulator.configure(drift=["unknown_status"])
    execution_id = hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_paused").execution_id
    execution = hook.wait_for_execution(
        execution_id, poll_interval=0.05, deadline=time.time() + 60, failure_statuses=["paused"]
    )
    assert execution.status == "paused"
    # Ends at the first read that says paused (the workflow takes 0.15 s): the deadline is 1200 polls.
    assert smartmca_emulator.count(route="get_execution") <= 10
    with pytest.raises(SmartMCAExecutionError, match="ended paused"):
        final_result(execution, ["paused"])
    assert posts(smartmca_emulator) == 1


# --- POSTs ----------------------------------------------------------------------------------------

ACTIONS = ("change_application_status", "advance_application_stage", "assign_underwriter")


@pytest.mark.parametrize("drift", sorted(SNAPSHOT_BREAKERS))
def test_a_snapshot_that_breaks_the_contract_stops_the_trigger_before_any_post(
    hook, smartmca_emulator, drift
):
    finished(hook)  # deal_1 has an execution: the snapshot lists it
    smartmca_emulator.configure(drift=[drift])
    before = posts(smartmca_emulator)
    with pytest.raises(SmartMCAContractError) as err:
        hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_1")
    assert_named(err.value, "list_executions", SNAPSHOT_BREAKERS[drift])
    assert posts(smartmca_emulator) == before
    assert smartmca_emulator.executions_created() == 1


@pytest.mark.parametrize("action", ACTIONS)
def test_a_snapshot_without_execution_ids_stops_an_action_before_any_post(hook, smartmca_emulator, action):
    first = getattr(hook, action)("app_1", {"status": "approved"} if action == ACTIONS[0] else None)
    assert first.execution_id
    smartmca_emulator.configure(drift=["list_items_without_id"])
    with pytest.raises(SmartMCAContractError) as err:
        getattr(hook, action)("app_1", {"status": "approved"} if action == ACTIONS[0] else None)
    assert_named(err.value, "list_executions", "data[0].executionId")
    assert posts(smartmca_emulator) == 1
    assert smartmca_emulator.executions_created() == 1


def test_a_trigger_202_without_execution_id_is_looked_up_never_resent(hook, smartmca_emulator):
    """rename_fields on a new entity: the POST is sent once; its 202 lacks executionId and the
    lookup (whose list is renamed too) cannot tell, so the outcome is ambiguous, named, final."""
    smartmca_emulator.configure(drift=["rename_fields"])
    with pytest.raises(SmartMCAAmbiguousTriggerError) as err:
        hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_new")
    assert type(err.value) is SmartMCAAmbiguousTriggerError
    assert "'executionId' is missing" in str(err.value)
    # The snapshot, then one lookup of a few contract attempts: final, not a patient retry loop.
    assert smartmca_emulator.count(route="list_executions") == 1 + ATTEMPTS
    assert posts(smartmca_emulator) == 1
    assert smartmca_emulator.executions_created() == 1


def test_a_trigger_202_without_execution_id_is_recovered_by_the_lookup(hook, smartmca_emulator):
    """Only the 202 drifts (the drift is switched off while it is held): the lookup finds the one
    new execution, and nothing is sent twice."""
    smartmca_emulator.add_fault("hold", route="trigger", hold_timeout=10)
    result: dict[str, Any] = {}

    def on_intent(intent: Any) -> None:
        if intent is not None:  # the snapshot is taken: from now on the server drifts
            smartmca_emulator.configure(drift=["rename_fields"])

    def run() -> None:
        try:
            result["accepted"] = hook.trigger_workflow(
                "wf_deal_onboarding", "deal", "deal_1", on_intent=on_intent
            )
        except BaseException as exc:  # reported by the assertion below
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    assert smartmca_emulator.wait_for_held(1, timeout=10)
    smartmca_emulator.configure(drift=[])  # the held 202 is already renamed; the lookup is not
    smartmca_emulator.release_held()
    thread.join(15)
    assert "error" not in result, result.get("error")
    accepted = result["accepted"]
    assert isinstance(accepted, Accepted) and accepted.recovered
    (created,) = smartmca_emulator.executions()
    assert accepted.execution_id == created["executionId"]
    assert posts(smartmca_emulator) == 1


@pytest.mark.parametrize("action", ACTIONS)
@pytest.mark.parametrize(("drift", "raw"), [("action_204", {}), ("action_no_execution", {"ok": True})])
def test_an_action_answered_without_execution_id_is_done_with_nothing_to_wait_for(
    hook, smartmca_emulator, drift, raw, action
):
    smartmca_emulator.configure(drift=[drift])
    accepted = getattr(hook, action)("app_1", {"status": "approved"} if action == ACTIONS[0] else None)
    assert accepted == Accepted(execution_id=None)
    assert accepted.raw == raw and not accepted.recovered
    assert posts(smartmca_emulator) == 1  # the server did act: never sent again


@pytest.mark.parametrize(
    "drift", ["unknown_status", "unsorted_list", "status_as_list", "nodes_as_number", "total_counts_page"]
)
def test_drifts_that_leave_the_list_and_202_readable_let_a_trigger_through(hook, smartmca_emulator, drift):
    finished(hook)
    smartmca_emulator.configure(drift=[drift])
    accepted = hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_1")
    assert accepted.execution_id and not accepted.recovered
    assert posts(smartmca_emulator) == 2


# --- test_connection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drift", "field"), [("list_envelope", "'data'"), ("list_items_not_objects", "data[0]")]
)
def test_test_connection_validates_the_shape_of_its_one_call(hook, smartmca_emulator, drift, field):
    smartmca_emulator.configure(drift=[drift])
    ok, message = hook.test_connection()
    assert ok is False
    assert field in message and "list_workflows" in message
    assert smartmca_emulator.count(route="list_workflows") == 1  # one cheap call, no retries
    assert FULL_KEY not in message


def test_test_connection_passes_on_a_drift_it_does_not_read(hook, smartmca_emulator):
    smartmca_emulator.configure(drift=["rename_fields"])  # workflows are not renamed
    ok, message = hook.test_connection()
    assert ok is True, message
