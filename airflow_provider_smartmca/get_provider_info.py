"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

The Airflow 3 React UI builds the SmartMCA connection form only from ``conn-fields`` and
``ui-field-behaviour`` here; the hook's Python form methods are deprecated since 3.2.
Nothing is imported: Airflow calls this during provider discovery in every component.
"""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata (``package-name`` must equal the distribution name)."""
    return {
        "package-name": "airflow-provider-smartmca",
        "name": "SmartMCA",
        "description": "Trigger and wait for SmartMCA workflows (deals, applications, merchants) from Airflow.",
        "integrations": [
            {
                "integration-name": "SmartMCA",
                "external-doc-url": "https://api.smartmca.com",
                "tags": ["service"],
            }
        ],
        "operators": [
            {
                "integration-name": "SmartMCA",
                "python-modules": [
                    "airflow_provider_smartmca.operators.workflows",
                    "airflow_provider_smartmca.operators.applications",
                ],
            }
        ],
        "sensors": [
            {
                "integration-name": "SmartMCA",
                "python-modules": ["airflow_provider_smartmca.sensors.execution"],
            }
        ],
        "hooks": [
            {"integration-name": "SmartMCA", "python-modules": ["airflow_provider_smartmca.hooks.smartmca"]}
        ],
        "triggers": [
            {
                "integration-name": "SmartMCA",
                "python-modules": ["airflow_provider_smartmca.triggers.execution"],
            }
        ],
        "extra-links": ["airflow_provider_smartmca.operators.links.SmartMCAExecutionLink"],
        "connection-types": [
            {
                "connection-type": "smartmca",
                "hook-class-name": "airflow_provider_smartmca.hooks.smartmca.SmartMCAHook",
                "hook-name": "SmartMCA",
                "ui-field-behaviour": {
                    "hidden-fields": ["login", "schema", "port"],
                    "relabeling": {"host": "Base URL", "password": "API key"},
                    "placeholders": {
                        "host": "https://api.smartmca.com",
                        "password": "smca_live_...",
                        "extra": '{"scopes": "workflows:read workflows:trigger"}',
                    },
                },
                "conn-fields": {
                    "scopes": {
                        "label": "Scopes",
                        "description": "Scopes of the API key, space or comma separated "
                        "(workflows:read workflows:trigger underwriting:trigger). "
                        "When set, a call needing a missing scope fails before any request.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "description": "Total seconds one HTTP request may take, body included.",
                        "schema": {"type": ["number", "null"], "default": 30, "minimum": 0.001},
                    },
                    "max_retries": {
                        "label": "Max retries",
                        "description": "Retries of a GET after a network error, 429 or 5xx; a POST is "
                        "re-sent only when the server surely did not act.",
                        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 0},
                    },
                    "verify_ssl": {
                        "label": "Verify SSL",
                        "description": "Verify the server's TLS certificate (off: not verified). A CA bundle path "
                        "goes in the extra 'verify_ssl' as text, or in REQUESTS_CA_BUNDLE.",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                },
            }
        ],
    }
