"""Contract drift: answer a 2xx in another shape than the provider assumes.

Applied to the handler's canonical response, so the server still acts exactly as
without drift (an execution is created or not); only what the client reads changes.
Timestamps (``bad_timestamps``) are rendered by :meth:`Behaviour.stamp` instead.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from airflow_provider_smartmca.testing.responses import json_response

__all__ = ["apply_drift"]

APP_ACTIONS = ("change_status", "advance_stage", "assign_underwriter")
LISTS = ("list_executions", "list_workflows")


def _execution(drift: frozenset[str], ex: dict[str, Any], detail: bool) -> dict[str, Any]:
    if "unknown_status" in drift and ex.get("status") != "pending":
        # Once out of pending, an execution reports "paused" forever and never completes.
        ex.update(status="paused", completedAt=None, currentNode=None)
    # The execution's own times only (absent, not null): its nodes keep theirs.
    if "no_timestamps" in drift:
        ex.pop("startedAt", None)
    if "no_timestamps" in drift or "no_completed_at" in drift:
        ex.pop("completedAt", None)
    if detail and "status_as_list" in drift:
        ex["status"] = [ex["status"]]
    if detail and "nodes_as_number" in drift and "nodes" in ex:
        ex["nodes"] = len(ex["nodes"])
    if "rename_fields" in drift:
        ex = {{"executionId": "id", "status": "state"}.get(k, k): v for k, v in ex.items()}
    return ex


def _items(drift: frozenset[str], route: str, items: list[dict[str, Any]]) -> list[Any]:
    if route == "list_executions":
        items = [_execution(drift, ex, detail=False) for ex in items]
        if "list_items_without_id" in drift:
            items = [{k: v for k, v in ex.items() if k not in ("executionId", "id")} for ex in items]
    if "list_items_not_objects" in drift:
        return [str(item.get("executionId") or item.get("id") or "") for item in items]
    return items


def apply_drift(drift: frozenset[str], route: str, resp: web.Response) -> web.Response:
    """Return ``resp`` (a 2xx of ``route``) reshaped by the ``drift`` names that concern it."""
    if route in APP_ACTIONS:
        if "action_204" in drift:
            return web.Response(status=204)
        if "action_no_execution" in drift:
            return json_response({"ok": True})
        return resp
    if route not in ("trigger", "get_execution", *LISTS) or not isinstance(resp.body, bytes):
        return resp
    data = json.loads(resp.body)
    if route in LISTS:
        items = _items(drift, route, data.pop("data"))
        if "total_counts_page" in drift:
            data["total"] = len(items)
        if "huge_total" in drift:
            data["total"] = 10**400  # valid JSON, beyond any float
        if "list_envelope" in drift:
            data = {"items": items, "count": data.pop("total"), **data}
        else:
            data["data"] = items
    else:
        data = _execution(drift, data, detail=route == "get_execution")
    return json_response(data, status=resp.status)
