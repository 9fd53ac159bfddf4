"""SmartMCA hooks. Importing this module imports neither requests nor aiohttp."""

from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook

__all__ = ["SmartMCAHook"]
