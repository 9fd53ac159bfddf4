"""SmartMCA operators. Importing this package is cheap: no HTTP library is imported until a task runs."""

from __future__ import annotations

from airflow_provider_smartmca.operators.applications import (
    AdvanceApplicationStageOperator,
    AssignUnderwriterOperator,
    ChangeApplicationStatusOperator,
)
from airflow_provider_smartmca.operators.links import SmartMCAExecutionLink
from airflow_provider_smartmca.operators.workflows import TriggerWorkflowOperator

__all__ = [
    "AdvanceApplicationStageOperator",
    "AssignUnderwriterOperator",
    "ChangeApplicationStatusOperator",
    "SmartMCAExecutionLink",
    "TriggerWorkflowOperator",
]
