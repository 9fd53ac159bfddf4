"""Run real DAGs with ``dag.test()``: the DAG file is written under the dags folder (Airflow 3.3
syncs DAG bundles from there), imported, and run; results are read back from the metadata DB."""

from __future__ import annotations

import importlib.util
import os
import textwrap
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass
class DagResult:
    """Outcome of one ``dag.test()`` run."""

    state: str
    task_states: dict[str, str | None]  # task_id (or task_id[map_index]) -> state
    run_id: str
    dag_id: str

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """Read one XCom value of this run from the metadata DB."""
        from airflow.models.xcom import XComModel
        from airflow.utils.session import create_session

        with create_session() as session:
            row = (
                session.query(XComModel)
                .filter_by(
                    dag_id=self.dag_id, run_id=self.run_id, task_id=task_id, key=key, map_index=map_index
                )
                .one_or_none()
            )
            return None if row is None else XComModel.deserialize_value(row)


def run_dag_file(source: str, dag_id: str | None = None) -> DagResult:
    """
    Write ``source`` as a DAG file, import it and run its DAG with ``dag.test()``.

    The source must define one DAG bound to the module variable ``dag``; ``{dag_id}`` in the
    source is replaced by a unique id so runs never collide.
    """
    from airflow.sdk import DAG

    dag_id = dag_id or f"t_{uuid.uuid4().hex[:10]}"
    path = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"]) / f"{dag_id}.py"
    path.write_text(textwrap.dedent(source).replace("{dag_id}", dag_id))
    spec = importlib.util.spec_from_file_location(dag_id, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag
    assert isinstance(dag, DAG)
    dr = dag.test()
    states = {}
    for ti in dr.get_task_instances():
        name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        states[name] = ti.state
    return DagResult(state=dr.state, task_states=states, run_id=dr.run_id, dag_id=dag_id)


@pytest.fixture
def run_dag():
    """The :func:`run_dag_file` function, as a fixture."""
    return run_dag_file
