"""Issue 19: the event-driven promise on the Celery stack (``CELERY_EVENTS`` in tests/e2e/conftest.py).

Its own module, so the Celery stack of tests/e2e/test_celery.py (module-scoped) is stopped
before this one starts: two Celery deployments never run at once.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Stack
from tests.e2e.test_scenarios import assert_watcher_survives_triggerer_kill

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1500)]


def test_c5_asset_watcher_triggerer_killed(celery_events: Stack) -> None:
    """The events guide's delivery promise on the Celery stack: the triggerer running the watcher
    is killed; no execution is lost, and only the last unsaved poll's events may repeat, once."""
    assert_watcher_survives_triggerer_kill(celery_events)
