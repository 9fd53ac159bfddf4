"""The SmartMCA HTTP client: knows HTTP and the SmartMCA API, knows nothing of Airflow.

``protocol`` holds every decision; ``sync`` (requests, workers) and ``aio`` (aiohttp, triggerer)
only move bytes. Import the transports directly: this package imports neither requests nor aiohttp.
"""
