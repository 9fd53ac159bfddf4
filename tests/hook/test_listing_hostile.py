"""Paging walks against a server whose ``total`` counts only the page it answers (issue 16).

A full page whose ``total`` says "that was all" is not the last page: only a short page ends a
walk. Each test drives the provider over real HTTP against the emulator's ``total_counts_page``
drift, and fails on code that stops at ``page * limit >= total``.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_smartmca.errors import SmartMCAError
from airflow_provider_smartmca.hooks import start_once


def _batch(emu: Any, workflow_id: str, entity_type: str, entity_id: str, n: int) -> list[str]:
    """``n`` executions of one entity, one second apart, the newest an hour ago (set-up, not the API)."""
    workflow = emu.config.workflows[workflow_id]
    made = [emu.state.store.create(workflow, entity_type, entity_id) for _ in range(n)]
    for age, execution in enumerate(reversed(made)):
        execution.created_at -= 3600 + age
    return [e.id for e in made]


def _list_pages(emu: Any) -> list[str]:
    return [r.query.get("page", "1") for r in emu.requests if r.route == "list_executions"]


def test_iter_executions_reads_past_a_full_page_whose_total_says_stop(hook, smartmca_emulator):
    emu = smartmca_emulator
    ids = _batch(emu, "wf_deal_onboarding", "deal", "deal_many", 25)
    emu.configure(drift=["total_counts_page"])

    listed = [e.execution_id for e in hook.iter_executions(limit=10, entity_id="deal_many")]

    assert sorted(listed) == sorted(ids)  # every one, once
    assert _list_pages(emu) == ["1", "2", "3"]  # page 3 is short: the end


def test_start_once_walk_reads_past_a_full_page_whose_total_says_stop(hook, smartmca_emulator):
    emu = smartmca_emulator
    ids = _batch(emu, "wf_deal_onboarding", "deal", "deal_many", 150)
    emu.configure(drift=["total_counts_page"])

    found, complete, clock = start_once.walk(hook, {"entity_type": "deal", "entity_id": "deal_many"})

    assert complete and clock is not None
    assert sorted(e.execution_id for e in found) == sorted(ids)


def test_a_lost_answer_is_found_on_the_page_a_short_total_hid(make_hook, smartmca_emulator):
    """Oldest first whatever is asked, and a total that counts the page: the new execution is on page 2."""
    emu = smartmca_emulator
    entity = "app_many"
    _batch(emu, "wf_app_assign_underwriter", "application", entity, 120)
    emu.configure(list_order="ignore_asc", drift=["total_counts_page"])
    emu.add_fault("status_after", route="assign_underwriter", status=502)

    try:
        outcome: Any = make_hook().assign_underwriter(entity, {}, workflow_type="wf_app_assign_underwriter")
    except SmartMCAError as exc:
        outcome = exc

    [lost] = emu.actions()
    assert not isinstance(outcome, SmartMCAError), outcome
    assert outcome.execution_id == lost.execution_id and outcome.recovered
    assert len(emu.executions(entity_id=entity)) == 121  # one POST, no duplicate
