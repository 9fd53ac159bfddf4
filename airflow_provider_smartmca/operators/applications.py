"""Application actions (change status, advance stage, assign underwriter) as DAG steps.

The reference gives these endpoints' paths and scopes only. The provider assumes (see
``docs/api-contract.md``) that an action answers 2xx, with the ``executionId`` of a workflow
it starts, or without one (or with no body) when it starts nothing to wait for. The operators
return that answer, or with ``wait_for_completion=True`` wait for the execution exactly as
:class:`~airflow_provider_smartmca.operators.workflows.TriggerWorkflowOperator` does, and apply
the same start-once rules on retry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_smartmca.errors import SmartMCAValidationError
from airflow_provider_smartmca.operators.base import SmartMCAExecutionOperator, check_static_id, is_templated

if TYPE_CHECKING:
    from airflow_provider_smartmca.client.contract import Accepted
    from airflow_provider_smartmca.hooks.start_once import OnIntent, TaskStartRecord


class _ApplicationActionOperator(SmartMCAExecutionOperator):
    """
    Shared part of the application operators.

    :param application_id: the application's id (templated).
    :param payload: the JSON body, any fields (templated). The operators' named arguments are
        conveniences merged over it; a named argument left as None adds nothing.
    :param lookup_workflow_type: the workflow the action starts, if known. It lets a lost answer
        be recovered (otherwise another client acting on the same application could not be told
        apart, and the task fails as ambiguous), and a retry find its execution before Airflow 3.3.

    A subclass lists in :attr:`named` the body fields its own arguments fill (attribute: field).
    """

    template_fields: Sequence[str] = (*SmartMCAExecutionOperator.template_fields, "application_id", "payload")
    named: ClassVar[dict[str, str]] = {}

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
        if lookup_workflow_type is not None:
            check_static_id("lookup_workflow_type", lookup_workflow_type, self.operation)
        if payload is not None and not isinstance(payload, dict) and not is_templated(payload):
            raise SmartMCAValidationError("payload", "must be a dict", operation=self.operation)

    def body(self) -> dict[str, Any]:
        """The JSON body: ``payload`` with the named fields that were given (not None) merged over it."""
        if self.payload is not None and not isinstance(self.payload, dict):
            problem = f"must render to a dict, got {type(self.payload).__name__}"
            raise SmartMCAValidationError("payload", problem, operation=self.operation)
        named = {field: getattr(self, name) for name, field in self.named.items()}
        return {**(self.payload or {}), **{k: v for k, v in named.items() if v is not None}}

    def start_execution(self, record: TaskStartRecord, on_intent: OnIntent) -> Accepted:
        send = getattr(self.hook, self.operation)  # the hook method of the same name
        workflow_type = self.lookup_workflow_type or record.workflow_id
        return send(self.application_id, self.body(), workflow_type=workflow_type, on_intent=on_intent)

    def lookup_filters(self) -> dict[str, str] | None:
        if not (workflow := self.lookup_workflow_type):
            return None
        return dict(workflow_type=workflow, entity_type="application", entity_id=self.application_id)


class ChangeApplicationStatusOperator(_ApplicationActionOperator):
    """
    Change an application's status (``POST /applications/{id}/change-status``). Needs ``workflows:trigger``
    (and ``workflows:read`` to wait).

    :param status: the new status, e.g. ``approved`` (templated); sent as ``status`` (assumed field name).
    :param reason: optional reason (templated); sent as ``reason`` (assumed field name).
    """

    template_fields: Sequence[str] = (*_ApplicationActionOperator.template_fields, "status", "reason")
    operation = "change_application_status"
    named = {"status": "status", "reason": "reason"}

    def __init__(self, *, status: str | None = None, reason: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.status = status
        self.reason = reason
        for name, value in (("status", status), ("reason", reason)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                problem = f"must be a non-empty string or None, got {value!r}"
                raise SmartMCAValidationError(name, problem, operation=self.operation)


class AdvanceApplicationStageOperator(_ApplicationActionOperator):
    """
    Advance an application to its next stage (``POST /applications/{id}/advance-stage``). Needs
    ``workflows:trigger`` (and ``workflows:read`` to wait).
    """

    operation = "advance_application_stage"


class AssignUnderwriterOperator(_ApplicationActionOperator):
    """
    Assign an underwriter to an application (``POST /applications/{id}/assign-underwriter``).
    Needs ``underwriting:trigger`` (and ``workflows:read`` to wait).

    :param underwriter_id: the underwriter (templated); sent as ``underwriterId`` (assumed field
        name). None lets SmartMCA pick one.
    """

    template_fields: Sequence[str] = (*_ApplicationActionOperator.template_fields, "underwriter_id")
    operation = "assign_underwriter"
    named = {"underwriter_id": "underwriterId"}

    def __init__(self, *, underwriter_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.underwriter_id = underwriter_id
