"""Shared test setup: a throwaway AIRFLOW_HOME with a migrated metadata DB, and the emulator fixtures.

AIRFLOW_HOME must be set before anything imports airflow, hence the module-level setup. Every
process gets its own home, so pytest-xdist workers (``-n 2``) never share a DB or a dags folder:
the first process migrates a DB once and keeps a pristine copy, which each worker it starts
copies (workers inherit ``_TEMPLATE_ENV`` from the process that starts them).
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

_TEMPLATE_ENV = "SMARTMCA_TEST_AIRFLOW_DB"

_HOME = Path(tempfile.mkdtemp(prefix="smartmca-airflow-home-"))
atexit.register(shutil.rmtree, _HOME, ignore_errors=True)
(_HOME / "dags").mkdir()
os.environ.update(
    AIRFLOW_HOME=str(_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(_HOME / "dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
    AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
)
os.environ.pop("AIRFLOW_CONN_SMARTMCA_DEFAULT", None)

_template = os.environ.get(_TEMPLATE_ENV)
if _template and Path(_template).is_file():
    shutil.copyfile(_template, _HOME / "airflow.db")
else:
    # One migration per test run (a few seconds), in a subprocess so this process's Airflow
    # settings are initialised against the migrated DB.
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=os.environ.copy(),
    )
    shutil.copyfile(_HOME / "airflow.db", _HOME / "airflow-migrated.db")
    os.environ[_TEMPLATE_ENV] = str(_HOME / "airflow-migrated.db")

# tests.airflow_versions: the differences between Airflow 3.0-3.3 that the suite handles (make matrix).
pytest_plugins = [
    "airflow_provider_smartmca.testing.pytest_plugin",
    "tests.airflow_harness",
    "tests.airflow_versions",
]

AIRFLOW_HOME = _HOME

#: Modules whose tests poll the emulator for real, most of them for seconds: ``slow`` as a whole
#: (``make test-fast`` skips them). Other modules mark their slow tests with ``@pytest.mark.slow``.
SLOW_MODULES = frozenset(
    {
        "tests/triggers/test_events.py",
        "tests/triggers/test_events_hostile.py",
        "tests/triggers/test_poller.py",
        "tests/hook/test_start_once_properties.py",
    }
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.relative_to(config.rootpath).as_posix() in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
