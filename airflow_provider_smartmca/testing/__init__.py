"""Offline SmartMCA API emulator for tests, demos and benchmarks.

Nothing in the provider's runtime code imports this package.

Example::

    from airflow_provider_smartmca.testing import Emulator

    with Emulator() as emu:
        print(emu.base_url)  # http://127.0.0.1:<port>, no /api/public/v1 suffix
        emu.add_fault("status", route="get_execution", status=503, count=3)
        emu.configure(clock_offset_seconds=-60, drift=["action_204"])

Every fault and behaviour is listed in ``docs/emulator-faults.md``.
"""

from __future__ import annotations

from airflow_provider_smartmca.testing.behaviour import DRIFTS, LIST_ORDERS, Behaviour
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
from airflow_provider_smartmca.testing.runtime import RequestRecord
from airflow_provider_smartmca.testing.server import Emulator

__all__ = [
    "DRIFTS",
    "ECHO_MODES",
    "FAULT_KINDS",
    "LIST_ORDERS",
    "ROUTE_NAMES",
    "ApiKey",
    "Behaviour",
    "Emulator",
    "EmulatorConfig",
    "EmulatorConfigError",
    "EmulatorError",
    "Fault",
    "Outcome",
    "RequestRecord",
    "WorkflowDef",
    "load_config",
]
