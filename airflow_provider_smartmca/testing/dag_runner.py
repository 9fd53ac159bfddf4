"""Run a DAG file offline with ``dag.test()`` and read back what happened.

``dag.test()`` on Airflow 3.3 syncs the DAG bundles to the metadata database before it runs, so
a DAG file outside ``[core] dags_folder`` fails with "the dag is not serialized". :func:`run_dag`
puts the file where Airflow looks, migrates the database when it has to, runs the DAG and returns
a :class:`DagRunResult`.

Unless ``AIRFLOW_HOME`` or ``AIRFLOW_CONFIG`` is set, :func:`prepare_airflow_home` gives Airflow
a throwaway home, also when Airflow is already imported (it is then pointed there), and every
subprocess inherits it; a home set on purpose is used as it is.

Nothing here imports Airflow at import time.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["COPY_SUBFOLDER", "DagRunResult", "RunDagError", "migrate_db", "prepare_airflow_home", "run_dag"]

log = logging.getLogger(__name__)

#: Folder under ``[core] dags_folder`` that receives copies of DAG files from elsewhere. Only
#: run_dag writes there, so overwriting a copy never touches a file of the user's.
COPY_SUBFOLDER = "smartmca_run_dag"
#: Bound on ``airflow db migrate`` (a fresh SQLite database takes a few seconds).
MIGRATE_TIMEOUT = 600.0
# Databases (by SQLAlchemy URL) already known to be at the head revision in this process.
_MIGRATED: set[str] = set()


class RunDagError(Exception):
    """The DAG file cannot be run: missing, not importable, no such DAG, or no usable database."""


@dataclass(frozen=True)
class DagRunResult:
    """
    What one :func:`run_dag` run left in the metadata database.

    :param dag_id: the DAG that ran.
    :param run_id: its run.
    :param state: the run's final state: ``"success"`` or ``"failed"``.
    :param task_states: state by task, ``task_id`` or ``task_id[map_index]`` for mapped tasks.
    :param xcoms: return values (the ``return_value`` XCom) by the same task names; tasks that
        returned nothing are absent.
    :param dag_file: the file Airflow ran, under ``[core] dags_folder``.
    :param all_xcoms: every XCom of the run, by ``(task_id, key, map_index)``.
    """

    dag_id: str
    run_id: str
    state: str
    task_states: Mapping[str, str | None]
    xcoms: Mapping[str, Any]
    dag_file: Path
    all_xcoms: Mapping[tuple[str, str, int], Any] = field(default_factory=dict, repr=False)

    @property
    def succeeded(self) -> bool:
        """Whether the run ended in ``success``."""
        return self.state == "success"

    def xcom(self, task_id: str, key: str = "return_value", map_index: int = -1) -> Any:
        """
        One XCom value of this run, or None when the task pushed none under ``key``.

        :param task_id: the task.
        :param key: the XCom key (``return_value`` is the task's return value).
        :param map_index: the mapped task instance, ``-1`` for an unmapped task.
        """
        return self.all_xcoms.get((task_id, key, map_index))


def prepare_airflow_home() -> Path | None:
    """
    Give Airflow a throwaway ``AIRFLOW_HOME`` (with a ``dags`` folder) unless one is set on purpose.

    A home is set on purpose when ``AIRFLOW_HOME`` or ``AIRFLOW_CONFIG`` is in the environment;
    then this does nothing. Otherwise the throwaway home goes into the environment, so every
    subprocess (``airflow db migrate``) uses it. If Airflow is already imported, it read its
    default home (``~/airflow``) on import: its dags folder and metadata database are pointed at
    the throwaway home too, unless ``AIRFLOW__CORE__DAGS_FOLDER`` or
    ``AIRFLOW__DATABASE__SQL_ALCHEMY_CONN`` is set. The throwaway home is removed when the
    process exits.

    :returns: the home it created, or None when the configured one is kept.
    """
    if os.environ.get("AIRFLOW_HOME") or os.environ.get("AIRFLOW_CONFIG"):
        return None
    home = Path(tempfile.mkdtemp(prefix="smartmca-airflow-home-"))
    (home / "dags").mkdir()
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ.setdefault("AIRFLOW__CORE__DAGS_FOLDER", str(home / "dags"))
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    atexit.register(shutil.rmtree, home, ignore_errors=True)
    if "airflow.settings" in sys.modules:
        os.environ.setdefault("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", f"sqlite:///{home / 'airflow.db'}")
        from airflow import settings

        settings.configure_vars()  # the dags folder and database URL, read again from the environment
        settings.dispose_orm()
        settings.configure_orm()
    log.info("run_dag: using the throwaway AIRFLOW_HOME %s", home)
    return home


def _needs_migration() -> bool:
    from airflow.utils.db import check_migrations

    try:
        # One look (plus a second's pause when the heads differ); TimeoutError means "behind".
        check_migrations(timeout=0)
    except TimeoutError:
        return True
    return False


def migrate_db(timeout: float = MIGRATE_TIMEOUT) -> bool:
    """
    Run ``airflow db migrate`` when the metadata database is not at the head revision.

    The migration runs in a subprocess, as the CLI does, so it cannot disturb this process's
    logging or ORM setup. Checked once per database and process.

    :param timeout: seconds the migration may take.
    :returns: whether a migration ran.
    :raises RunDagError: the migration failed or timed out.
    """
    from airflow import settings

    url = str(settings.SQL_ALCHEMY_CONN)  # a cache key only: it may hold a password
    if url in _MIGRATED or not _needs_migration():
        _MIGRATED.add(url)
        return False
    command = [sys.executable, "-m", "airflow", "db", "migrate"]
    try:
        done = subprocess.run(
            command, env=os.environ.copy(), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise RunDagError(f"`airflow db migrate` did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise RunDagError(f"`airflow db migrate` failed (exit {done.returncode}):\n{tail}")
    _MIGRATED.add(url)
    return True


def _place(path: Path, dags_folder: Path) -> Path:
    """The file under ``dags_folder`` that Airflow will run: ``path`` itself, or a copy of it."""
    if path.is_relative_to(dags_folder):
        return path
    target = dags_folder / COPY_SUBFOLDER / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, target)
    return target


def _parse(dag_file: Path) -> dict[str, Any]:
    """The DAGs defined in ``dag_file``, by id; import errors become :class:`RunDagError`."""
    try:
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow < 3.1
        from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

    kwargs: dict[str, Any] = {"dag_folder": str(dag_file), "safe_mode": False}
    if "include_examples" in inspect.signature(DagBag.__init__).parameters:
        kwargs["include_examples"] = False
    bag = DagBag(**kwargs)
    if bag.import_errors:
        details = "\n".join(str(error).strip() for error in bag.import_errors.values())
        raise RunDagError(f"{dag_file} cannot be imported:\n{details}")
    here = dag_file.resolve()
    return {dag_id: dag for dag_id, dag in bag.dags.items() if Path(dag.fileloc).resolve() == here}


def _read_xcoms(dag_id: str, run_id: str) -> dict[tuple[str, str, int], Any]:
    from airflow.utils.session import create_session

    try:
        from airflow.models.xcom import XComModel
    except ImportError:  # Airflow 3.0 kept the old name
        from airflow.models.xcom import BaseXCom as XComModel  # type: ignore[attr-defined,no-redef]

    with create_session() as session:
        rows = session.query(XComModel).filter_by(dag_id=dag_id, run_id=run_id).all()
        return {(r.task_id, r.key, r.map_index): XComModel.deserialize_value(r) for r in rows}


def run_dag(
    dag_file: str | os.PathLike[str],
    *,
    dag_id: str | None = None,
    conf: Mapping[str, Any] | None = None,
    logical_date: datetime | None = None,
    migrate: bool = True,
) -> DagRunResult:
    """
    Run one DAG of ``dag_file`` with ``dag.test()``, offline, and return its outcome.

    The file is used in place when it is under ``[core] dags_folder``; otherwise it is copied to
    ``<dags_folder>/smartmca_run_dag/`` (modules next to it are not copied: a DAG that imports
    its own helpers must live under the dags folder). Connections come from the usual places,
    e.g. ``AIRFLOW_CONN_SMARTMCA_DEFAULT`` (the ``smartmca_connection`` fixture sets it).

    Like ``dag.test()``, this runs until every task has finished: bound long waits with the
    tasks' ``timeout`` or ``execution_timeout``.

    :param dag_file: path of the DAG file.
    :param dag_id: the DAG to run; needed only when the file defines several.
    :param conf: the run's ``conf``.
    :param logical_date: the run's logical date (default: now).
    :param migrate: run ``airflow db migrate`` first when the database needs it.
    :raises RunDagError: the file is missing or does not import, the DAG is not in it, or the
        database cannot be migrated.
    """
    path = Path(dag_file).expanduser().resolve()
    if not path.is_file() or path.suffix != ".py":
        raise RunDagError(f"dag_file {str(dag_file)!r} is not an existing .py file")
    prepare_airflow_home()
    from airflow import settings

    dags_folder = Path(settings.DAGS_FOLDER).expanduser().resolve()
    dags_folder.mkdir(parents=True, exist_ok=True)
    if migrate:
        migrate_db()
    target = _place(path, dags_folder)
    dags = _parse(target)
    if dag_id is None:
        if len(dags) != 1:
            found = ", ".join(sorted(dags)) or "none"
            raise RunDagError(f"{path} defines {len(dags)} DAGs ({found}): pass dag_id")
        dag_id = next(iter(dags))
    elif dag_id not in dags:
        raise RunDagError(f"{path} has no DAG {dag_id!r}; it defines: {', '.join(sorted(dags)) or 'none'}")
    test_kwargs: dict[str, Any] = {"run_conf": dict(conf) if conf is not None else None}
    if logical_date is not None:
        test_kwargs["logical_date"] = logical_date
    run = dags[dag_id].test(**test_kwargs)
    task_states: dict[str, str | None] = {}
    names: dict[tuple[str, int], str] = {}
    for ti in run.get_task_instances():
        name = ti.task_id if ti.map_index < 0 else f"{ti.task_id}[{ti.map_index}]"
        names[(ti.task_id, ti.map_index)] = name
        task_states[name] = None if ti.state is None else str(ti.state)
    all_xcoms = _read_xcoms(dag_id, run.run_id)
    returned = {
        names.get((task_id, index), task_id): value
        for (task_id, key, index), value in all_xcoms.items()
        if key == "return_value"
    }
    return DagRunResult(
        dag_id=dag_id,
        run_id=run.run_id,
        state=str(run.state),
        task_states=task_states,
        xcoms=returned,
        dag_file=target,
        all_xcoms=all_xcoms,
    )
