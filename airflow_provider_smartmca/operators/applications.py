"""Application actions (change status, advance stage, assign underwriter) as DAG steps.

Each action answers 202 with the ``executionId`` of the workflow it starts. The operators
return that response, or with ``wait_for_completion=True`` wait for the execution exactly as
:class:`~airflow_provider_smartmca.operators.workflows.TriggerWorkflowOperator` does, and
apply the same exactly-once rules on retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_smartmca.errors import SmartMCAValidationError
from airflow_provider_smartmca.operators.base import SmartMCAExecutionOperator, check_static_id, is_templated

if TYPE_CHECKING:
    from airflow.sdk import Context


class _ApplicationActionOperator(SmartMCAExecutionOperator):
    """
    Shared part of the application operators.

    :param application_id: the application's id (templated).
    :param payload: extra JSON fields merged into the request body, so a field the provider does
        not name is never out of reach; the named arguments win over the same key here (templated).
    :param lookup_workflow_type: optional; the workflow id the action starts. Used only on Airflow
        < 3.3 (no ``task_state_store``) to find this task's execution again on retry.
    """

    template_fields: Sequence[str] = ("application_id", "payload")
    #: The hook method that sends the action.
    hook_method: ClassVar[str] = ""

    def __init__(
        self,
        *,
        application_id: str,
        payload: dict[str, Any] | None = None,
        lookup_workflow_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.application_id = application_id
        self.payload = payload
        self.lookup_workflow_type = lookup_workflow_type
        check_static_id("application_id", application_id, self.operation)
        if payload is not None and not isinstance(payload, dict) and not is_templated(payload):
            raise SmartMCAValidationError("payload", "must be a dict", operation=self.operation)

    def named_fields(self) -> dict[str, Any]:
        """The body fields this operator names (None values are left out)."""
        return {}

    def validate_rendered(self) -> None:
        from airflow_provider_smartmca.client.protocol import validate_id

        validate_id("application_id", self.application_id, self.operation)
        if self.payload is not None and not isinstance(self.payload, dict):
            raise SmartMCAValidationError(
                "payload",
                f"must render to a dict, got {type(self.payload).__name__}",
                operation=self.operation,
            )

    def body(self) -> dict[str, Any]:
        """The JSON body: ``payload`` merged with the named fields."""
        named = {k: v for k, v in self.named_fields().items() if v is not None}
        return {**(self.payload or {}), **named}

    def start_execution(self, context: Context) -> dict[str, Any]:
        return getattr(self.hook, self.hook_method)(self.application_id, **self.body())

    def lookup_filters(self) -> dict[str, str] | None:
        if not self.lookup_workflow_type:
            return None
        return {
            "workflow_type": self.lookup_workflow_type,
            "entity_type": "application",
            "entity_id": self.application_id,
        }


class ChangeApplicationStatusOperator(_ApplicationActionOperator):
    """
    Change an application's status (``POST /applications/{id}/change-status``). Needs ``workflows:trigger``
    (and ``workflows:read`` to wait).

    :param status: the new status, e.g. ``approved`` (templated).
    :param reason: optional reason recorded with the change (templated).
    """

    template_fields: Sequence[str] = ("application_id", "status", "reason", "payload")
    operation = "change_application_status"
    hook_method = "change_application_status"

    def __init__(self, *, status: str, reason: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.status = status
        self.reason = reason
        if status is None or (isinstance(status, str) and not status.strip()):
            raise SmartMCAValidationError(
                "status", "is required and must not be empty", operation=self.operation
            )

    def validate_rendered(self) -> None:
        super().validate_rendered()
        if not isinstance(self.status, str) or not self.status.strip():
            raise SmartMCAValidationError(
                "status", f"must render to a non-empty string, got {self.status!r}", operation=self.operation
            )
        if self.reason is not None and not isinstance(self.reason, str):
            raise SmartMCAValidationError("reason", "must be a string", operation=self.operation)

    def named_fields(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason}


class AdvanceApplicationStageOperator(_ApplicationActionOperator):
    """
    Advance an application to its next stage (``POST /applications/{id}/advance-stage``). Needs
    ``workflows:trigger`` (and ``workflows:read`` to wait).
    """

    operation = "advance_application_stage"
    hook_method = "advance_application_stage"


class AssignUnderwriterOperator(_ApplicationActionOperator):
    """
    Assign an underwriter to an application (``POST /applications/{id}/assign-underwriter``).
    Needs ``underwriting:trigger`` (and ``workflows:read`` to wait).

    :param underwriter_id: the underwriter; None lets SmartMCA pick one (templated).
    """

    template_fields: Sequence[str] = ("application_id", "underwriter_id", "payload")
    operation = "assign_underwriter"
    hook_method = "assign_underwriter"

    def __init__(self, *, underwriter_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.underwriter_id = underwriter_id
        if isinstance(underwriter_id, str) and not is_templated(underwriter_id):
            from airflow_provider_smartmca.client.protocol import validate_id

            validate_id("underwriter_id", underwriter_id, self.operation)

    def validate_rendered(self) -> None:
        super().validate_rendered()
        if self.underwriter_id is not None:
            from airflow_provider_smartmca.client.protocol import validate_id

            validate_id("underwriter_id", self.underwriter_id, self.operation)

    def named_fields(self) -> dict[str, Any]:
        return {"underwriterId": self.underwriter_id}
