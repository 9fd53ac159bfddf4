"""OpenLineage: the execution operators return a ``smartmca_execution`` run facet on complete and
on failure, in both modes, and the provider works without the OpenLineage provider installed.

The facets are read the way the OpenLineage listener reads them: from the task object that ran,
in its success or failure callback, through ``get_openlineage_facets_on_complete/_on_failure``.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from airflow_provider_smartmca.testing import FULL_KEY

#: task_id -> the OperatorLineage (or None) its callback read.
LINEAGE: dict[str, Any] = {}


def record_complete(context: Any) -> None:
    LINEAGE[context["ti"].task_id] = context["task"].get_openlineage_facets_on_complete(context["ti"])


def record_failure(context: Any) -> None:
    LINEAGE[context["ti"].task_id] = context["task"].get_openlineage_facets_on_failure(context["ti"])


DAG_SOURCE = """
from airflow.sdk import DAG
from airflow_provider_smartmca.operators import TriggerWorkflowOperator
from tests.operators.test_openlineage import record_complete, record_failure

with DAG("{dag_id}", schedule=None) as dag:
    for task_id, workflow, entity_type, deferrable in [
        ("sync_ok", "wf_deal_onboarding", "deal", False),
        ("deferred_ok", "wf_deal_onboarding", "deal", True),
        ("sync_failed", "wf_deal_compliance_fail", "deal", False),
        ("deferred_failed", "wf_deal_compliance_fail", "deal", True),
        ("never_started", "wf_deal_onboarding", "merchant", True),
    ]:
        TriggerWorkflowOperator(
            task_id=task_id,
            workflow_type=workflow,
            entity_type=entity_type,
            entity_id="deal_lineage",
            deferrable=deferrable,
            poll_interval=0.05,
            on_success_callback=record_complete,
            on_failure_callback=record_failure,
        )
"""

URL = "https://app.smartmca.test/executions/{execution_id}"


@pytest.fixture
def lineage_connection(smartmca_emulator, monkeypatch) -> None:
    import json

    conn = {
        "conn_type": "smartmca",
        "host": smartmca_emulator.base_url,
        "password": FULL_KEY,
        "extra": {"execution_url_template": URL, "retry_min_wait": 0.01, "retry_max_wait": 0.05},
    }
    monkeypatch.setenv("AIRFLOW_CONN_SMARTMCA_DEFAULT", json.dumps(conn))


def test_operators_return_an_execution_run_facet_on_complete_and_on_failure(
    lineage_connection: None, run_dag: Any
) -> None:
    pytest.importorskip("airflow.providers.openlineage", reason="the OpenLineage provider is not installed")
    from airflow.providers.openlineage.extractors import OperatorLineage
    from openlineage.client.facet_v2 import RunFacet

    LINEAGE.clear()
    result = run_dag(DAG_SOURCE)
    assert result.task_states == {
        "sync_ok": "success",
        "deferred_ok": "success",
        "sync_failed": "failed",
        "deferred_failed": "failed",
        "never_started": "failed",
    }
    assert set(LINEAGE) == set(result.task_states)
    facets = {}
    for task_id, lineage in LINEAGE.items():
        assert isinstance(lineage, OperatorLineage), task_id
        assert lineage.inputs == [] and lineage.outputs == []
        facet = lineage.run_facets["smartmca_execution"]
        assert isinstance(facet, RunFacet)
        facets[task_id] = facet
    for task_id in ("sync_ok", "deferred_ok", "sync_failed", "deferred_failed"):
        facet = facets[task_id]
        assert facet.executionId.startswith("exec_"), task_id
        assert facet.executionId == result.xcom(task_id, key="execution_id")
        assert facet.entityType == "deal" and facet.entityId == "deal_lineage"
        assert facet.url == URL.format(execution_id=facet.executionId)
        assert facet.message is None
    assert facets["sync_ok"].status == facets["deferred_ok"].status == "completed"
    assert facets["sync_ok"].workflowId == facets["deferred_ok"].workflowId == "wf_deal_onboarding"
    assert facets["sync_failed"].status == facets["deferred_failed"].status == "failed"
    assert facets["deferred_failed"].workflowId == "wf_deal_compliance_fail"
    never = facets["never_started"]
    assert never.executionId is None and never.status is None and never.url is None
    assert "before any SmartMCA execution was started" in never.message


def test_without_the_openlineage_provider_the_operators_run_and_return_no_lineage() -> None:
    """The cells without the OpenLineage provider: nothing imports it, the methods answer None."""
    import importlib.util

    if importlib.util.find_spec("openlineage") or importlib.util.find_spec("airflow.providers.openlineage"):
        pytest.skip("OpenLineage is installed here; the cells without it run this test")
    code = """
import sys
from airflow_provider_smartmca.operators import TriggerWorkflowOperator
op = TriggerWorkflowOperator(task_id="t", workflow_type="wf_x", entity_type="deal", entity_id="d")
assert op.get_openlineage_facets_on_complete(None) is None
assert op.get_openlineage_facets_on_failure(None) is None
print(sorted(m for m in sys.modules if "openlineage" in m))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
