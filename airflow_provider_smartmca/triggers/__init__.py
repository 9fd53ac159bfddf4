"""Triggers (run in Airflow's triggerer). Importing this package does not import aiohttp."""

from __future__ import annotations

from airflow_provider_smartmca.triggers.events import ExecutionEventTrigger
from airflow_provider_smartmca.triggers.execution import ExecutionTrigger

__all__ = ["ExecutionEventTrigger", "ExecutionTrigger"]
