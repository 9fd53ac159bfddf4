"""A start keeps its time budget against a server that answers 503 for ever (issue 16, "How long can
a task hang?").

The budget is the promise, so the elapsed time is bounded here, with a generous margin; the request
counts are bounded too. Small extras keep it to a few seconds.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from airflow_provider_smartmca.errors import SmartMCAServerError

EXTRA = {
    "timeout": 0.2,
    "connect_timeout": 0.1,
    "max_retries": 1,
    "retry_min_wait": 0.2,
    "retry_max_wait": 0.2,
    "retry_after_cap": 0.2,
}
PAGES = 10 + 1  # the walk's page cap, plus the sort probe
MARGIN = 3.0  # seconds: CPU and scheduling on a loaded machine, not the provider's patience


def formula(extra: dict[str, float]) -> dict[str, float]:
    """The README's formulas, written out independently of the code."""
    attempt = extra["timeout"] + min(extra["connect_timeout"], extra["timeout"])
    retries = extra["max_retries"]
    call = (retries + 1) * attempt + retries * max(extra["retry_max_wait"], extra["retry_after_cap"])
    walk = PAGES * call
    return {"before_post": walk, "total": walk + call + walk}


def _run(target: Any, limit: float) -> tuple[BaseException | None, float, bool]:
    """Run ``target`` in a thread for at most ``limit`` seconds: (its error, elapsed, finished)."""
    box: list[BaseException | None] = [None]

    def body() -> None:
        try:
            target()
        except BaseException as exc:  # handed to the test
            box[0] = exc

    started = time.monotonic()
    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(limit)
    return box[0], time.monotonic() - started, not thread.is_alive()


@pytest.mark.slow
def test_start_against_503_for_ever_fails_within_its_budget(make_hook, smartmca_emulator):
    emu = smartmca_emulator
    hook = make_hook(extra=EXTRA)
    emu.add_fault("status", status=503, count=None)  # every request, for ever
    budget = formula(EXTRA)["before_post"]

    error, elapsed, finished = _run(
        lambda: hook.trigger_workflow("wf_deal_onboarding", "deal", "d_storm"), budget + MARGIN
    )

    assert finished, f"the start was still running after {budget + MARGIN:.1f} s (budget {budget:.1f} s)"
    assert isinstance(error, SmartMCAServerError), error
    assert "list_executions" in str(error) and "503" in str(error)
    assert elapsed <= budget + MARGIN
    assert emu.count(route="trigger", method="POST") == 0  # nothing is sent without a snapshot
    lists = emu.count(route="list_executions")
    # The snapshot rides the storm out (beyond max_retries), one backoff (>= retry_min_wait / 2) apart.
    assert EXTRA["max_retries"] + 1 < lists <= budget / (EXTRA["retry_min_wait"] / 2) + 1


def test_start_budget_states_the_formulas(make_hook, smartmca_emulator):
    from airflow_provider_smartmca.hooks.start_once import StartBudget

    budget = StartBudget.of(make_hook(extra=EXTRA).settings)
    expected = formula(EXTRA)
    assert budget.before_post == pytest.approx(expected["before_post"])
    assert budget.total == pytest.approx(expected["total"])


def test_the_readme_states_the_default_budget() -> None:
    """The README's figures for the default extras are the formula's (and StartBudget's)."""
    from pathlib import Path

    from airflow_provider_smartmca.client.settings import ClientSettings
    from airflow_provider_smartmca.hooks.start_once import StartBudget

    defaults = ClientSettings(base_url="https://api.smartmca.com", api_key="k")
    expected = formula({k: getattr(defaults, k) for k in EXTRA})
    budget = StartBudget.of(defaults)
    assert (budget.before_post, budget.total) == (expected["before_post"], expected["total"]) == (5940, 12420)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert "`11 \u00d7 call`" in readme and "`23 \u00d7 call`" in readme and "99 min and 3 h 27 min" in readme
