"""Offline SmartMCA API emulator for tests, demos and benchmarks.

Nothing in the provider's runtime code imports this package.

Example::

    from airflow_provider_smartmca.testing import Emulator

    with Emulator() as emu:
        print(emu.base_url)  # http://127.0.0.1:<port>, no /api/public/v1 suffix
        emu.add_fault("status", route="get_execution", status=503, count=3)
        emu.configure(clock_offset_seconds=-60, drift=["action_204"])

Every fault and behaviour is listed in ``docs/emulator-faults.md``, with :class:`Proxy`: a loopback
HTTP proxy (CONNECT and forwarding) that can drop a request after the server acted, or refuse a
CONNECT.

Run a DAG file offline (``dag.test()`` with the file placed under ``[core] dags_folder``)::

    from airflow_provider_smartmca.testing import run_dag

    result = run_dag("dags/onboard_deal.py")
    assert result.state == "success", result.task_states
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_smartmca.testing.behaviour import DRIFTS, LIST_ORDERS, Behaviour
from airflow_provider_smartmca.testing.catalog import FULL_KEY, READ_KEY, TRIGGER_KEY
from airflow_provider_smartmca.testing.config import (
    ApiKey,
    EmulatorConfig,
    EmulatorConfigError,
    EmulatorError,
    Outcome,
    WorkflowDef,
    load_config,
)
from airflow_provider_smartmca.testing.faults import ECHO_MODES, FAULT_KINDS, ROUTE_NAMES, Fault
from airflow_provider_smartmca.testing.proxy import Proxy
from airflow_provider_smartmca.testing.runtime import RequestRecord
from airflow_provider_smartmca.testing.server import Emulator

if TYPE_CHECKING:
    from airflow_provider_smartmca.testing.dag_runner import (
        DagRunResult,
        RunDagError,
        prepare_airflow_home,
        run_dag,
    )

# The DAG runner is imported on first use: it is only needed by tests that run DAGs.
_LAZY = {"DagRunResult", "RunDagError", "prepare_airflow_home", "run_dag"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from airflow_provider_smartmca.testing import dag_runner

        value = getattr(dag_runner, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # Lists the lazy names too, so help() and Sphinx autodoc see them.
    return sorted(set(globals()) | _LAZY)


__all__ = [
    "DRIFTS",
    "ECHO_MODES",
    "FAULT_KINDS",
    "FULL_KEY",
    "LIST_ORDERS",
    "READ_KEY",
    "ROUTE_NAMES",
    "TRIGGER_KEY",
    "ApiKey",
    "Behaviour",
    "DagRunResult",
    "Emulator",
    "EmulatorConfig",
    "EmulatorConfigError",
    "EmulatorError",
    "Fault",
    "Outcome",
    "Proxy",
    "RequestRecord",
    "RunDagError",
    "WorkflowDef",
    "load_config",
    "prepare_airflow_home",
    "run_dag",
]
