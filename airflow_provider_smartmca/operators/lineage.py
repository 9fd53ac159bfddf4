"""OpenLineage for the execution operators: one custom run facet, ``smartmca_execution``.

Imported only by the operators' ``get_openlineage_facets_on_*`` methods, which the OpenLineage
provider calls when it is installed; nothing here imports OpenLineage at import time, and without
it the methods return None. The facet is built from what the task already holds (no request).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

#: The key of the facet in ``OperatorLineage.run_facets``.
FACET_NAME = "smartmca_execution"
NOT_STARTED = "the task failed before any SmartMCA execution was started"
NONE_STARTED = "the action answered without an executionId: no SmartMCA execution was started"


@cache
def facet_class() -> type:
    """The ``SmartMCAExecutionRunFacet`` class (an OpenLineage ``RunFacet``), defined on first use."""
    from attrs import define
    from openlineage.client.facet_v2 import RunFacet

    @define
    class SmartMCAExecutionRunFacet(RunFacet):  # type: ignore[misc]
        """
        The SmartMCA execution an Airflow task started or waited for.

        :param executionId: the execution, or None when none was started (``message`` says why).
        :param workflowId: its workflow definition.
        :param entityType: ``deal``, ``application`` or ``merchant``.
        :param entityId: the entity it ran on.
        :param status: its last status the task saw (``completed``, ``failed``, ...).
        :param url: the execution in the SmartMCA app (the connection's ``execution_url_template``).
        :param message: why there is no execution, when there is none.
        """

        executionId: str | None = None  # OpenLineage facets name fields in camelCase
        workflowId: str | None = None
        entityType: str | None = None
        entityId: str | None = None
        status: str | None = None
        url: str | None = None
        message: str | None = None

    return SmartMCAExecutionRunFacet


def operator_lineage(
    seen: Mapping[str, Any] | None, execution_id: str | None, url: str | None, *, failed: bool
) -> Any:
    """
    ``OperatorLineage`` holding the ``smartmca_execution`` run facet, or None without OpenLineage.

    :param seen: the execution's JSON as the task last saw it (a POST answer, the final execution,
        or the trigger event's summary), or None.
    :param execution_id: the execution the task started or waited for, or None.
    :param url: its link in the SmartMCA app, or None.
    :param failed: the task failed (a missing execution then means it failed before starting one).
    """
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage

        cls = facet_class()
    except ImportError:
        return None
    seen = seen or {}
    if not (execution_id := seen.get("executionId") or execution_id):
        facet = cls(message=NOT_STARTED if failed else NONE_STARTED)
    else:
        fields = {name: seen.get(name) for name in ("workflowId", "entityType", "entityId", "status")}
        facet = cls(executionId=execution_id, url=url, **fields)
    return OperatorLineage(run_facets={FACET_NAME: facet})
