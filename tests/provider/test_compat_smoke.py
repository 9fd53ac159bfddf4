"""Import-and-register smoke tests: what must hold on every Airflow 3 minor the provider claims.

They are cheap, so they run everywhere: in ``make test`` (Airflow 3.3) and in every cell of
``make matrix`` (scripts/matrix.py), where they are all that runs on Airflow 3.1 and 3.2. Each test
takes its Airflow names where that version keeps them, the way a user's DAG file would.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import subprocess
import textwrap
import time
from pathlib import Path

import pytest

from tests.provider.airflow_cli import AIRFLOW, json_out

#: Every module a user or Airflow imports: DAG files, the providers manager, the triggerer, tests.
PUBLIC_MODULES = [
    "airflow_provider_smartmca",
    "airflow_provider_smartmca.get_provider_info",
    "airflow_provider_smartmca.hooks",
    "airflow_provider_smartmca.operators",
    "airflow_provider_smartmca.sensors",
    "airflow_provider_smartmca.triggers",
    "airflow_provider_smartmca.testing",
    "airflow_provider_smartmca.testing.pytest_plugin",
]

DAG_FILE = """
from datetime import datetime

from airflow.sdk import DAG

from airflow_provider_smartmca.operators import (
    AdvanceApplicationStageOperator,
    AssignUnderwriterOperator,
    ChangeApplicationStatusOperator,
    TriggerWorkflowOperator,
)
from airflow_provider_smartmca.sensors import ExecutionSensor

with DAG("smoke_every_operator", schedule=None, start_date=datetime(2026, 1, 1), catchup=False) as dag:
    start = TriggerWorkflowOperator(
        task_id="start", workflow_type="wf_deal_onboarding", entity_type="deal", entity_id="deal_1",
        wait_for_completion=False,
    )
    ExecutionSensor(task_id="wait", execution_id="{{ ti.xcom_pull('start', key='execution_id') }}")
    ExecutionSensor(task_id="wait_deferred", execution_id="exec_1", deferrable=True)
    ChangeApplicationStatusOperator(task_id="status", application_id="app_1", status="approved")
    AdvanceApplicationStageOperator(task_id="stage", application_id="app_1")
    AssignUnderwriterOperator(task_id="assign", application_id="app_1", underwriter_id="uw_1", deferrable=True)
"""


WATCHED_DAG_FILE = """
from datetime import datetime

from airflow.sdk import DAG, Asset, AssetWatcher, task

from airflow_provider_smartmca.triggers import ExecutionEventTrigger

onboarded = Asset(
    name="smoke_onboarded",
    uri="smartmca://workflows/wf_deal_onboarding/completed",
    watchers=[AssetWatcher(name="smoke_watcher", trigger=ExecutionEventTrigger(workflow_type="wf_deal_onboarding"))],
)

with DAG("smoke_watched", schedule=[onboarded], start_date=datetime(2026, 1, 1), catchup=False) as dag:

    @task
    def fund():
        pass

    fund()
"""


def _airflow_version() -> tuple[int, ...]:
    from airflow import __version__

    return tuple(int(part) for part in __version__.split(".")[:2])


@pytest.mark.parametrize("module", PUBLIC_MODULES)
def test_public_module_imports(module):
    importlib.import_module(module)


def test_classes_derive_from_this_airflows_bases():
    """common-compat hands out each base class from where this Airflow keeps it."""
    from airflow.providers.common.compat.sdk import BaseHook, BaseOperator, BaseSensorOperator
    from airflow.triggers.base import BaseEventTrigger, BaseTrigger

    from airflow_provider_smartmca.hooks import SmartMCAHook
    from airflow_provider_smartmca.operators import TriggerWorkflowOperator
    from airflow_provider_smartmca.sensors import ExecutionSensor
    from airflow_provider_smartmca.triggers import ExecutionEventTrigger, ExecutionTrigger

    assert issubclass(ExecutionEventTrigger, BaseEventTrigger)
    assert issubclass(SmartMCAHook, BaseHook)
    assert issubclass(TriggerWorkflowOperator, BaseOperator)
    assert issubclass(ExecutionSensor, BaseSensorOperator)
    assert issubclass(ExecutionTrigger, BaseTrigger)


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_airflow_providers_hooks_lists_the_hook():
    """The CLI imports the hook class; on a bad import it prints 'Error when importing hook!'."""
    proc = subprocess.run(
        [AIRFLOW, "providers", "hooks", "--output", "json"],
        capture_output=True,
        text=True,
        timeout=150,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json_out(proc.stdout)
    assert isinstance(rows, list)
    [row] = [r for r in rows if r.get("connection_type") == "smartmca"]
    assert "Error" not in json.dumps(row), row
    assert row["class"] == "airflow_provider_smartmca.hooks.smartmca.SmartMCAHook"
    assert row["package_name"] == "airflow-provider-smartmca"


def _dagbag(folder: Path):
    try:  # Airflow >= 3.2
        from airflow.dag_processing.dagbag import DagBag
    except ImportError:  # Airflow 3.0, 3.1
        from airflow.models.dagbag import DagBag
    return DagBag(dag_folder=str(folder))


def test_dag_with_every_operator_and_the_sensor_parses_and_serializes(tmp_path):
    """Parse as the dag-processor does, then serialize and deserialize as the scheduler does."""
    (tmp_path / "smoke_dag.py").write_text(textwrap.dedent(DAG_FILE))
    bag = _dagbag(tmp_path)
    assert bag.import_errors == {}
    dag = bag.dags["smoke_every_operator"]
    assert sorted(dag.task_dict) == ["assign", "stage", "start", "status", "wait", "wait_deferred"]

    from airflow.serialization import serialized_objects

    # DagSerialization from Airflow 3.2; SerializedDAG did both jobs before.
    serializer = getattr(serialized_objects, "DagSerialization", None) or serialized_objects.SerializedDAG
    back = serializer.from_dict(json.loads(json.dumps(serializer.to_dict(dag))))
    # The extra link survives only if Airflow knows the class (provider info "extra-links").
    start = back.task_dict["start"]
    assert "SmartMCA execution" in {link.name for link in start.operator_extra_links}
    assert back.task_dict["wait_deferred"].task_type == "ExecutionSensor"


def test_dag_scheduled_on_a_watched_asset_parses_and_serializes(tmp_path):
    """An asset watched by ExecutionEventTrigger: parsed, serialized and deserialized by this Airflow."""
    (tmp_path / "smoke_watched.py").write_text(textwrap.dedent(WATCHED_DAG_FILE))
    bag = _dagbag(tmp_path)
    assert bag.import_errors == {}
    dag = bag.dags["smoke_watched"]

    from airflow.serialization import serialized_objects

    serializer = getattr(serialized_objects, "DagSerialization", None) or serialized_objects.SerializedDAG
    text = json.dumps(serializer.to_dict(dag))
    assert "airflow_provider_smartmca.triggers.events.ExecutionEventTrigger" in text
    serializer.from_dict(json.loads(text))


@pytest.mark.timeout(120)
def test_watcher_runs_through_this_airflows_async_connection_api(smartmca_connection, smartmca_emulator):
    """Rebuilt from its kwargs and run as the triggerer runs a watcher (no state store before 3.3):
    an execution that ends after its first poll gives one event."""
    from airflow_provider_smartmca.hooks import SmartMCAHook
    from airflow_provider_smartmca.triggers import ExecutionEventTrigger

    kwargs = ExecutionEventTrigger(
        conn_id=smartmca_connection, workflow_type="wf_deal_onboarding", poll_interval=0.2, restart_lookback=0
    ).serialize()[1]
    watcher = ExecutionEventTrigger(**json.loads(json.dumps(kwargs)))

    async def first_event():
        agen = watcher.run()
        try:
            first = asyncio.ensure_future(agen.__anext__())
            await asyncio.sleep(0.6)  # the watcher's first poll: no backfill from here on
            hook = SmartMCAHook(smartmca_connection)
            try:
                started = await asyncio.to_thread(
                    hook.trigger_workflow, "wf_deal_onboarding", "deal", "deal_w"
                )
            finally:
                hook.close()
            return started.execution_id, (await asyncio.wait_for(first, 60)).payload
        finally:
            await agen.aclose()

    execution_id, event = asyncio.run(first_event())
    assert event["executionId"] == execution_id and event["status"] == "completed", event


@pytest.mark.timeout(120)
def test_trigger_runs_through_this_airflows_async_connection_api(smartmca_connection, smartmca_emulator):
    """Serialized, rebuilt and run as the triggerer does: the connection comes through
    common-compat's get_async_connection, whose implementation differs per Airflow minor."""
    from airflow_provider_smartmca.hooks import SmartMCAHook
    from airflow_provider_smartmca.triggers import ExecutionTrigger

    hook = SmartMCAHook(smartmca_connection)
    try:
        execution_id = hook.trigger_workflow("wf_deal_onboarding", "deal", "deal_smoke").execution_id
    finally:
        hook.close()
    trigger = ExecutionTrigger(
        conn_id=smartmca_connection, execution_id=execution_id, poll_interval=0.05, deadline=time.time() + 60
    )
    classpath, kwargs = trigger.serialize()
    module, _, name = classpath.rpartition(".")
    rebuilt = getattr(importlib.import_module(module), name)(**json.loads(json.dumps(kwargs)))

    async def first_event():
        agen = rebuilt.run()
        try:
            return (await asyncio.wait_for(agen.__anext__(), 60)).payload
        finally:
            await agen.aclose()

    event = asyncio.run(first_event())
    assert event["status"] == "success", event
    assert event["execution_id"] == execution_id


def test_version_gates_match_this_airflow():
    """Names the provider reads conditionally: where each lives on this Airflow (documents the gates)."""
    import airflow.sdk
    import airflow.sdk.log

    version = _airflow_version()
    assert hasattr(airflow.sdk, "conf") == (version >= (3, 2))
    assert hasattr(airflow.sdk, "BaseHook") == (version >= (3, 1))
    # Async masking (used by the trigger) from 3.3; the sync fallback before.
    assert hasattr(airflow.sdk.log, "amask_secret") == (version >= (3, 3))
