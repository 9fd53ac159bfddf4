"""The one retry policy: one predicate, one backoff, one deadline that every layer spends from (issue 16)."""

from __future__ import annotations

import time

import pytest

from airflow_provider_smartmca.client.protocol import (
    CONTRACT_RETRIES,
    Deadline,
    Retry,
    spending,
    when_to_retry,
)
from airflow_provider_smartmca.errors import (
    SmartMCAAmbiguousTriggerError,
    SmartMCAAuthError,
    SmartMCABadRequestError,
    SmartMCAConnectionError,
    SmartMCAContractError,
    SmartMCAExecutionError,
    SmartMCAInvalidResponseError,
    SmartMCANotFoundError,
    SmartMCARateLimitError,
    SmartMCAServerError,
    SmartMCAValidationError,
)

NOW, LATER, NEVER = Retry.NOW, Retry.LATER, Retry.NEVER


def _contract() -> SmartMCAContractError:
    return SmartMCAContractError("x", endpoint="get_execution", field="status", present_keys=())


@pytest.mark.parametrize(
    ("exc", "read", "post"),
    [
        (SmartMCARateLimitError("429"), NOW, NOW),
        (SmartMCAConnectionError("refused", request_sent=False), NOW, NOW),
        (SmartMCAConnectionError("dropped", request_sent=True), NOW, LATER),
        (SmartMCAServerError("503", status=503), NOW, LATER),
        (SmartMCAServerError("501", status=501), LATER, LATER),
        (SmartMCAInvalidResponseError("html"), NOW, LATER),
        (SmartMCAExecutionError("failed"), LATER, LATER),
        (SmartMCAValidationError("f", "bad"), NEVER, NEVER),
        (SmartMCAAuthError("401"), NEVER, NEVER),
        (SmartMCANotFoundError("404"), NEVER, NEVER),
        (SmartMCABadRequestError("400"), NEVER, NEVER),
        (SmartMCAAmbiguousTriggerError("?", candidates=[]), NEVER, NEVER),
        (ValueError("not ours"), NEVER, NEVER),
    ],
)
def test_one_predicate(exc, read, post):
    assert when_to_retry(exc, idempotent=True, failures=1) is read
    assert when_to_retry(exc, idempotent=False, failures=1) is post


def test_a_contract_error_is_retried_a_couple_of_times_at_most():
    verdicts = [when_to_retry(_contract(), failures=n) for n in range(1, CONTRACT_RETRIES + 3)]
    assert verdicts == [NOW] * CONTRACT_RETRIES + [NEVER, NEVER]
    assert when_to_retry(_contract()) is NEVER  # after a call's own retries
    assert when_to_retry(_contract(), idempotent=False, failures=1) is NEVER


def test_an_inner_deadline_never_outlasts_its_callers():
    with spending(Deadline.after(0.2)) as outer:
        with spending(Deadline.after(600), patient=True) as inner:
            assert inner is outer
        with spending(Deadline.after(600), inherit=False) as fresh:
            assert fresh.remaining() > 500


def test_patiently_inside_a_deadline_spends_from_it(make_hook, smartmca_emulator):
    hook = make_hook(extra={"max_retries": 0})
    smartmca_emulator.add_fault("status", route="get_workflow", status=503, count=None)
    started = time.monotonic()
    # The last 503, or (on a loaded machine) the timeout of the request the deadline cut short.
    with spending(Deadline.after(0.5)), pytest.raises((SmartMCAServerError, SmartMCAConnectionError)):
        hook.patiently(hook.get_workflow, "wf_deal_onboarding", patience=600)
    assert time.monotonic() - started < 3.0  # 0.5 s, not the 600 s of its own patience
    # Patient: past max_retries (0), one backoff (>= retry_min_wait / 2 = 5 ms) apart.
    assert 2 <= smartmca_emulator.count(route="get_workflow") <= 0.5 / 0.005 + 1


def test_a_spent_deadline_sends_nothing(hook, smartmca_emulator):
    with spending(Deadline.after(0)), pytest.raises(SmartMCAConnectionError, match="budget") as err:
        hook.get_workflow("wf_deal_onboarding")
    assert err.value.request_sent is False
    assert smartmca_emulator.count(route="get_workflow") == 0


@pytest.mark.parametrize("patience", [0, -1, float("nan"), float("inf"), 10**400, True, "soon"])
def test_patience_must_be_a_positive_finite_number(hook, smartmca_emulator, patience):
    with pytest.raises(SmartMCAValidationError, match="patience"):
        hook.patiently(hook.get_workflow, "wf_deal_onboarding", patience=patience)
    assert smartmca_emulator.count(route="get_workflow") == 0


def test_a_request_the_deadline_cuts_short_names_the_deadline_not_the_timeout_setting(
    hook, smartmca_emulator
):
    """The 'timeout' setting (30 s) is not what ended a request the caller's 0.3 s deadline cut."""
    smartmca_emulator.add_fault("latency", route="get_workflow", latency=3, count=None)
    with spending(Deadline.after(0.3)), pytest.raises(SmartMCAConnectionError) as err:
        hook.get_workflow("wf_deal_onboarding")
    assert "deadline" in str(err.value) and "'timeout' setting" not in str(err.value)


def test_a_request_the_timeout_setting_ends_names_the_setting(make_hook, smartmca_emulator):
    hook = make_hook(extra={"timeout": 0.2, "max_retries": 0})
    smartmca_emulator.add_fault("latency", route="get_workflow", latency=3, count=None)
    with pytest.raises(SmartMCAConnectionError, match="'timeout' setting"):
        hook.get_workflow("wf_deal_onboarding")
