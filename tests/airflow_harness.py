"""Run DAG source with the shipped runner: the source is written under the dags folder with a
unique DAG id, then run by :func:`airflow_provider_smartmca.testing.run_dag` (``dag.test()``)."""

from __future__ import annotations

import os
import textwrap
import uuid
from pathlib import Path

import pytest

from airflow_provider_smartmca.testing.dag_runner import DagRunResult
from airflow_provider_smartmca.testing.dag_runner import run_dag as run_dag_path

# The name the suite has always used for a run's outcome.
DagResult = DagRunResult


def run_dag_file(source: str, dag_id: str | None = None) -> DagRunResult:
    """
    Write ``source`` as a DAG file and run its DAG.

    ``{dag_id}`` in the source is replaced by a unique id so runs never collide.
    """
    dag_id = dag_id or f"t_{uuid.uuid4().hex[:10]}"
    path = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py"
    path.write_text(textwrap.dedent(source).replace("{dag_id}", dag_id))
    return run_dag_path(path, dag_id=dag_id)


@pytest.fixture
def run_dag():
    """The :func:`run_dag_file` function, as a fixture."""
    return run_dag_file
