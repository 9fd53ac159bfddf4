"""Default API keys and workflow catalog served by the emulator.

Workflow ids are relied upon by the provider's own tests: do not rename them.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ALL_SCOPES",
    "DEFAULT_ACTIONS",
    "DEFAULT_KEYS",
    "DEFAULT_WORKFLOWS",
    "FULL_KEY",
    "READ_KEY",
    "TRIGGER_KEY",
]

ALL_SCOPES = ("workflows:read", "workflows:trigger", "underwriting:trigger")

#: The default keys: every scope, read only, and read and trigger (no underwriting).
FULL_KEY = "smca_test_full"
READ_KEY = "smca_test_read"
TRIGGER_KEY = "smca_test_trigger"

DEFAULT_KEYS: dict[str, dict[str, Any]] = {
    FULL_KEY: {"name": "full", "scopes": list(ALL_SCOPES)},
    READ_KEY: {"name": "read", "scopes": ["workflows:read"]},
    TRIGGER_KEY: {"name": "trigger", "scopes": ["workflows:read", "workflows:trigger"]},
}

DEFAULT_WORKFLOWS: list[dict[str, Any]] = [
    {
        "id": "wf_deal_onboarding",
        "name": "Deal Onboarding",
        "description": "Automated deal onboarding with compliance checks",
        "icon": "briefcase",
        "category": "onboarding",
        "entityType": "deal",
        "version": 3,
        "triggerConditions": {"events": ["deal.created"], "filters": {"amount": {"gte": 1000}}},
        "onFailure": "stop",
        "maxRetries": 3,
        "nodeCount": 8,
        "nodes": [
            "Validate Deal",
            "Fetch Merchant",
            "Credit Pull",
            "Bank Statement Analysis",
            "Compliance Check",
            "Pricing",
            "Generate Contract",
            "Notify ISO",
        ],
    },
    {
        "id": "wf_app_underwriting",
        "name": "Application Underwriting",
        "description": "Scores an application and routes it to an underwriter",
        "icon": "scale",
        "category": "underwriting",
        "entityType": "application",
        "version": 2,
        "maxRetries": 2,
        "nodeCount": 6,
        "nodes": ["Load Application", "Credit Pull", "Risk Score", "Stacking Check", "Decision", "Notify"],
    },
    {
        "id": "wf_merchant_kyc",
        "name": "Merchant KYC",
        "description": "Know-your-customer verification for merchants",
        "icon": "shield",
        "category": "compliance",
        "entityType": "merchant",
        "nodeCount": 5,
        "nodes": ["Identity Check", "Business Verification", "OFAC Screening", "UCC Search", "Finalize"],
    },
    {
        "id": "wf_deal_compliance_fail",
        "name": "Deal Compliance (always fails)",
        "description": "Compliance screening that fails at node 3",
        "icon": "alert",
        "category": "compliance",
        "entityType": "deal",
        "nodeCount": 5,
        "nodes": ["Validate Deal", "Fetch Merchant", "OFAC Screening", "Pricing", "Notify"],
        "outcome": {
            "fail_at_node": 3,
            "error": {
                "code": "COMPLIANCE_CHECK_FAILED",
                "message": "OFAC screening returned a potential match",
            },
        },
    },
    {
        "id": "wf_merchant_cancelled",
        "name": "Merchant Review (cancelled)",
        "description": "Merchant review that is cancelled by an operator at node 2",
        "icon": "store",
        "category": "compliance",
        "entityType": "merchant",
        "nodeCount": 4,
        "nodes": ["Load Merchant", "Manual Review", "Decision", "Notify"],
        "outcome": {"cancel_at_node": 2},
    },
    {
        "id": "wf_deal_paused",
        "name": "Deal Funding (pauses on failure)",
        "description": "Funding workflow whose failure policy pauses the execution",
        "icon": "pause",
        "category": "funding",
        "entityType": "deal",
        "onFailure": "pause",
        "maxRetries": 1,
        "nodeCount": 4,
        "nodes": ["Validate Deal", "Bank Verification", "Funding", "Notify"],
        "outcome": {"fail_at_node": 2, "error": "Bank verification provider timed out"},
    },
    {
        "id": "wf_app_status_change",
        "name": "Application Status Change",
        "description": "Runs when an application's status is changed through the API",
        "icon": "refresh",
        "category": "applications",
        "entityType": "application",
        "triggerType": "api",
        "nodeCount": 3,
        "nodes": ["Validate Transition", "Update Status", "Notify"],
    },
    {
        "id": "wf_app_advance_stage",
        "name": "Application Advance Stage",
        "description": "Moves an application to its next pipeline stage",
        "icon": "forward",
        "category": "applications",
        "entityType": "application",
        "triggerType": "api",
        "nodeCount": 3,
        "nodes": ["Check Requirements", "Advance Stage", "Notify"],
    },
    {
        "id": "wf_app_assign_underwriter",
        "name": "Application Assign Underwriter",
        "description": "Assigns an underwriter to an application",
        "icon": "user-check",
        "category": "underwriting",
        "entityType": "application",
        "triggerType": "api",
        "nodeCount": 2,
        "nodes": ["Pick Underwriter", "Assign"],
    },
    {
        "id": "wf_legacy_deal_scoring",
        "name": "Legacy Deal Scoring",
        "description": "Retired workflow kept to exercise the inactive-workflow rule",
        "icon": "archive",
        "category": "underwriting",
        "entityType": "deal",
        "status": "inactive",
        "isActive": False,
        "nodeCount": 2,
    },
]

DEFAULT_ACTIONS: dict[str, str] = {
    "change-status": "wf_app_status_change",
    "advance-stage": "wf_app_advance_stage",
    "assign-underwriter": "wf_app_assign_underwriter",
}
