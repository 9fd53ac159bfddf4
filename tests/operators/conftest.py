"""Operator tests: one emulator with extra workflows for every outcome of the application actions."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_smartmca.testing.pytest_plugin import connection_json
from airflow_provider_smartmca.testing.server import Emulator

OPERATOR_TEST_CONFIG = {
    "durations": {"pending_seconds": 0.05, "node_seconds": 0.02},
    "workflows": [
        {
            "id": "wf_app_fail",
            "name": "Application action that fails",
            "entityType": "application",
            "nodes": ["Validate", "Credit Pull", "Notify"],
            "outcome": {"fail_at_node": 2, "error": {"code": "CREDIT_PULL_FAILED", "message": "bureau down"}},
        },
        {
            "id": "wf_app_cancel",
            "name": "Application action that is cancelled",
            "entityType": "application",
            "nodes": ["Validate", "Manual Review", "Notify"],
            "outcome": {"cancel_at_node": 2},
        },
        {
            "id": "wf_deal_slow",
            "name": "Deal workflow that stays pending for a second",
            "entityType": "deal",
            "nodes": ["Validate Deal", "Notify"],
            "pending_seconds": 1.0,
        },
        {
            "id": "wf_app_slow",
            "name": "Application action that never ends in time",
            "entityType": "application",
            "nodes": ["Wait"],
            "pending_seconds": 3600,
        },
    ],
}

# outcome -> (workflow for TriggerWorkflowOperator, entity type, workflow an application action starts)
OUTCOMES = {
    "completed": ("wf_deal_onboarding", "deal", None),
    "failed": ("wf_deal_compliance_fail", "deal", "wf_app_fail"),
    "cancelled": ("wf_merchant_cancelled", "merchant", "wf_app_cancel"),
    "timeout": ("wf_deal_paused", "deal", "wf_app_slow"),
}


@pytest.fixture(scope="session")
def smartmca_emulator_session() -> Iterator[Emulator]:
    """Overrides the plugin's: the same fast emulator plus the workflows above."""
    with Emulator(OPERATOR_TEST_CONFIG) as emu:
        yield emu


@pytest.fixture
def action_outcome(smartmca_emulator: Emulator) -> Iterator[object]:
    """Make every application action start the workflow of a given outcome (restored afterwards)."""
    actions = smartmca_emulator.state.config.actions
    saved = dict(actions)

    def set_outcome(outcome: str) -> None:
        workflow = OUTCOMES[outcome][2]
        for action in actions:
            actions[action] = workflow or saved[action]

    yield set_outcome
    actions.clear()
    actions.update(saved)


@pytest.fixture
def make_storm_connection(smartmca_emulator: Emulator, monkeypatch: pytest.MonkeyPatch):
    """A connection with no per-call retries and short backoff: only the patient reads save a task."""

    def make() -> str:
        conn = connection_json(smartmca_emulator, max_retries=0, retry_min_wait=0.01, retry_max_wait=0.05)
        monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", conn)
        return "smartmca_default"

    return make
