"""What the suite needs to know about the installed Airflow minor, in one place.

The suite runs on Airflow 3.0 to 3.3 (``make matrix``, scripts/matrix.py). Two kinds of
differences are handled here, so that no test file carries version checks of its own:

* ``dag.test()`` differs from a real worker before 3.3 in one way the operator tests rely on: a
  worker puts the exception into the ``on_failure_callback`` context (``task_runner.main``),
  the in-process runner that ``dag.test()`` uses does so only from 3.3. The session fixture
  below makes ``dag.test()`` do what the worker does.
* ``NEEDS``: tests of a feature a newer Airflow brings, or that an older Airflow's ``dag.test()``
  cannot run. Each is skipped below that version, with its reason in the test report; the older
  path has its own test where the provider behaves differently there.

Enabled from tests/conftest.py (``pytest_plugins``). Imports Airflow only once the session starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import version

import pytest

#: (major, minor) of the installed Airflow.
AIRFLOW_VERSION: tuple[int, int] = tuple(int(p) for p in version("apache-airflow").split(".")[:2])  # type: ignore[assignment]

#: Test node id (or the part before "[") -> (lowest Airflow it can run on, why).
NEEDS: dict[str, tuple[tuple[int, int], str]] = {
    "tests/operators/test_retries.py::test_application_retry_after_worker_death_sends_the_action_once": (
        (3, 3),
        "task_state_store (Airflow 3.3) carries the execution id across tries; before 3.3 an application "
        "action is found again only with lookup_workflow_type "
        "(test_inputs.py::test_previous_execution_found_without_task_state_store)",
    ),
    "tests/operators/test_retries.py::test_retry_after_death_mid_action_is_ambiguous_when_its_workflow_is_unknown": (
        (3, 3),
        "task_state_store (Airflow 3.3) records that try 1 sent the action; before 3.3 nothing tells try 2",
    ),
    "tests/triggers/test_sensor_modes.py::test_each_mode[reschedule]": (
        (3, 1),
        "Airflow 3.0's dag.test() hands the reschedule start date to the sensor as a string "
        "(TypeError in BaseSensorOperator.run_duration, any sensor)",
    ),
    "tests/provider/test_registration.py::test_the_ui_form_metadata_has_every_extra_field": (
        (3, 2),
        "before 3.2 Airflow reads no conn-fields from provider metadata: the form has no extra fields "
        "(test_providers_manager_builds_the_form checks that path)",
    ),
    "tests/operators/test_import_cost.py::test_operator_import_pulls_no_http_library_nor_emulator": (
        (3, 1),
        "Airflow 3.0 itself imports aiohttp when any operator is built "
        "(airflow.serialization -> airflow.api_fastapi -> svcs)",
    ),
}


@pytest.fixture(autouse=True, scope="session")
def _failure_callbacks_see_the_exception() -> Iterator[None]:
    """Before Airflow 3.3, give dag.test()'s failure callbacks ``context["exception"]``, as a worker does."""
    if AIRFLOW_VERSION >= (3, 3):
        yield
        return
    from airflow.sdk.execution_time import task_runner

    original = task_runner.finalize

    def finalize(ti, state, context, log, error=None):  # type: ignore[no-untyped-def]
        context["exception"] = error  # what task_runner.main() does before it calls finalize
        return original(ti, state, context, log, error)

    # dag.test() imports finalize from the module at each task run, so patching the module is enough.
    task_runner.finalize = finalize
    try:
        yield
    finally:
        task_runner.finalize = original


def unmet_need(nodeid: str) -> str | None:
    """Why the test ``nodeid`` cannot run on the installed Airflow (its :data:`NEEDS` entry), or None."""
    need = NEEDS.get(nodeid) or NEEDS.get(nodeid.split("[")[0])
    if need is None or need[0] <= AIRFLOW_VERSION:
        return None
    minimum, why = need
    return f"needs Airflow >= {minimum[0]}.{minimum[1]}: {why}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        reason = unmet_need(item.nodeid)
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
