"""TriggerWorkflowOperator: one SmartMCA workflow execution as one step of a DAG."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow_provider_smartmca.client.protocol import validate_id
from airflow_provider_smartmca.errors import SmartMCAValidationError
from airflow_provider_smartmca.operators.base import SmartMCAExecutionOperator, check_static_id

if TYPE_CHECKING:
    from airflow_provider_smartmca.client.contract import Accepted, Workflow
    from airflow_provider_smartmca.hooks.start_once import OnIntent, TaskStartRecord


#: The operator's ids, in the order of the trigger's arguments.
_IDS = ("workflow_type", "entity_type", "entity_id")


class TriggerWorkflowOperator(SmartMCAExecutionOperator):
    """
    Start a SmartMCA workflow for one entity, exactly once, and (by default) wait for it.

    The return value is the final execution (``GET /workflows/executions/{id}``), the same dict
    in sync and deferrable mode; with ``wait_for_completion=False`` it is the 202 response. A
    failed or cancelled execution fails the task with the failed nodes and their errors. The
    ``executionId`` is pushed to XCom under ``execution_id`` right after the 202.

    Needs the scopes ``workflows:read`` and ``workflows:trigger``.

    :param workflow_type: the workflow definition id, e.g. ``wf_deal_onboarding`` (templated).
    :param entity_type: ``deal``, ``application`` or ``merchant``; must match the workflow's
        ``entityType``, checked before anything is triggered (templated).
    :param entity_id: the entity's id (templated; works with ``.partial().expand(entity_id=...)``).

    See :class:`~airflow_provider_smartmca.operators.base.SmartMCAExecutionOperator` for
    ``smartmca_conn_id``, ``wait_for_completion``, ``deferrable``, ``poll_interval``, ``timeout``,
    ``failure_statuses``, ``on_retry`` and ``hook_params``.
    """

    template_fields: Sequence[str] = (*SmartMCAExecutionOperator.template_fields, *_IDS)
    operation = "trigger_workflow"

    def __init__(self, *, workflow_type: str, entity_type: str, entity_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.workflow_type = workflow_type
        self.entity_type = entity_type
        self.entity_id = entity_id
        for field in _IDS:
            check_static_id(field, getattr(self, field), self.operation)

    def check_rendered(self) -> None:
        """The ids too, not only in the hook: :meth:`before_start` reads the workflow before the POST."""
        super().check_rendered()
        for field in _IDS:
            validate_id(field, getattr(self, field), self.operation)

    @cached_property
    def workflow(self) -> Workflow:
        """The workflow definition, read once per task."""
        return self.hook.patiently(self.hook.get_workflow, self.workflow_type)

    def before_start(self) -> None:
        if self.workflow.entity_type != self.entity_type:
            raise SmartMCAValidationError(
                "entity_type",
                f"is {self.entity_type!r} but workflow {self.workflow_type!r} runs on entity type "
                f"{self.workflow.entity_type!r}; nothing was triggered",
                operation=self.operation,
            )

    def start_execution(self, record: TaskStartRecord, on_intent: OnIntent) -> Accepted:
        return self.hook.trigger_workflow(
            self.workflow_type, self.entity_type, self.entity_id, on_intent=on_intent
        )

    def lookup_filters(self) -> dict[str, str] | None:
        return {field: getattr(self, field) for field in _IDS}
