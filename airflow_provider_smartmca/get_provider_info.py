"""Provider metadata read by Airflow through the ``apache_airflow_provider`` entry point.

The metadata is data, in ``provider_info.json`` next to this module (the role ``provider.yaml``
plays for Airflow's own providers). The Airflow 3 React UI builds the SmartMCA connection form
only from its ``conn-fields`` and ``ui-field-behaviour``; the hook's Python form methods are
deprecated since 3.2. Nothing of the provider is imported: Airflow calls this during provider
discovery in every component.
"""

from __future__ import annotations

import json
from importlib.resources import files
from typing import Any


def get_provider_info() -> dict[str, Any]:
    """Return the provider's metadata (``package-name`` must equal the distribution name)."""
    return json.loads(files(__package__).joinpath("provider_info.json").read_text(encoding="utf-8"))
