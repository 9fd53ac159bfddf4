"""Sensors. Importing this package imports neither requests, aiohttp nor the emulator."""

from __future__ import annotations

from airflow_provider_smartmca.sensors.execution import ExecutionSensor

__all__ = ["ExecutionSensor"]
