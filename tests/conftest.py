"""Shared test setup: a throwaway AIRFLOW_HOME with a migrated metadata DB, and the emulator fixtures.

AIRFLOW_HOME must be set before anything imports airflow, hence the module-level setup.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

_HOME = Path(tempfile.mkdtemp(prefix="smartmca-airflow-home-"))
(_HOME / "dags").mkdir()
os.environ.update(
    AIRFLOW_HOME=str(_HOME),
    AIRFLOW__CORE__DAGS_FOLDER=str(_HOME / "dags"),
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__UNIT_TEST_MODE="False",
    AIRFLOW__LOGGING__LOGGING_LEVEL="INFO",
)
os.environ.pop("AIRFLOW_CONN_SMARTMCA_DEFAULT", None)

# One migration per test session (a few seconds), in a subprocess so this process's
# Airflow settings are initialised against the migrated DB.
subprocess.run(
    [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
    check=True,
    stdout=subprocess.DEVNULL,
    env=os.environ.copy(),
)

# tests.airflow_versions: the differences between Airflow 3.0-3.3 that the suite handles (make matrix).
pytest_plugins = [
    "airflow_provider_smartmca.testing.pytest_plugin",
    "tests.airflow_harness",
    "tests.airflow_versions",
]

AIRFLOW_HOME = _HOME
