"""Importing the operators (what every DAG file does at parse time) must stay cheap."""

from __future__ import annotations

import subprocess
import sys


def test_operator_import_pulls_no_http_library_nor_emulator():
    code = (
        "import sys\n"
        "import airflow_provider_smartmca.operators as ops\n"
        "ops.TriggerWorkflowOperator(task_id='t', workflow_type='wf', entity_type='deal', entity_id='d')\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('requests', 'aiohttp')"
        " or m.startswith('airflow_provider_smartmca.testing') or m.startswith('airflow_provider_smartmca.triggers'))\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
