"""aiohttp.web application: public API routes, auth and fault middleware."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from airflow_provider_smartmca.testing.admin import add_admin_routes
from airflow_provider_smartmca.testing.faults import Fault
from airflow_provider_smartmca.testing.runtime import EmulatorState, RequestRecord
from airflow_provider_smartmca.testing.state import EXECUTION_STATUSES

__all__ = ["API_PREFIX", "build_app", "error_response"]

API_PREFIX = "/api/public/v1"
STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("smartmca_state", EmulatorState)

READ, TRIGGER, UNDERWRITING = "workflows:read", "workflows:trigger", "underwriting:trigger"
ROUTE_SCOPES = {
    "list_workflows": READ,
    "get_workflow": READ,
    "trigger": TRIGGER,
    "list_executions": READ,
    "get_execution": READ,
    "change_status": TRIGGER,
    "advance_stage": TRIGGER,
    "assign_underwriter": UNDERWRITING,
}
ERROR_CODES = {
    400: "validation_error",
    401: "unauthorized",
    403: "insufficient_scope",
    404: "not_found",
    405: "method_not_allowed",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
}
SORT_FIELDS = ("startedAt", "completedAt", "status", "workflowId")
HTML_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    "</center><hr><center>nginx</center></body></html>\n"
)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """Compact JSON response with ``application/json`` content type."""
    return web.Response(
        body=json.dumps(data, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> web.Response:
    """``{"error": {"code", "message", ...extra}}`` with the code matching ``status``."""
    err: dict[str, Any] = {"code": ERROR_CODES.get(status, "error"), "message": message}
    err.update(extra)
    return json_response({"error": err}, status=status, headers=headers)


class ApiError(Exception):
    """Raised by handlers to produce an error response."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def _drop(request: web.Request) -> web.Response:
    # Closing the transport makes the client see a reset/EOF without a response.
    if request.transport is not None:
        request.transport.close()
    raise asyncio.CancelledError()


def _pre_fault(state: EmulatorState, fault: Fault, request: web.Request) -> web.Response | None:
    if fault.kind == "status":
        status = fault.status or 500
        headers: dict[str, str] | None = None
        if status == 429:
            headers = {
                "Retry-After": str(fault.retry_after),
                "X-RateLimit-Limit": str(state.config.rate_limit),
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(int(time.time()) + fault.retry_after),
            }
        messages = {
            429: "Rate limit exceeded, retry later",
            500: "Internal server error",
            502: "Bad gateway",
            503: "Service temporarily unavailable",
        }
        return error_response(status, messages.get(status, f"Injected error {status}"), headers=headers)
    if fault.kind == "html_error":
        return web.Response(text=HTML_PAGE, status=fault.status or 502, content_type="text/html")
    if fault.kind == "drop_before":
        return _drop(request)
    return None


def _auth(state: EmulatorState, request: web.Request, scope: str) -> tuple[str | None, web.Response | None]:
    header = request.headers.get("Authorization", "")
    if not header:
        return None, error_response(401, "Missing API key: send 'Authorization: Bearer <key>'")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None, error_response(401, "Malformed Authorization header, expected 'Bearer <key>'")
    key = state.keys.get(secret.strip())
    if key is None:
        return None, error_response(401, "Invalid API key")
    if key.key in state.revoked:
        return key.name, error_response(401, "API key has been revoked")
    if scope not in key.scopes:
        return key.name, error_response(403, f"Missing required scope: {scope}", requiredScope=scope)
    return key.name, None


def _key_label(state: EmulatorState, request: web.Request) -> str | None:
    """Label of the presented key (for logs of requests that skip auth)."""
    secret = request.headers.get("Authorization", "").partition(" ")[2].strip()
    key = state.keys.get(secret)
    return key.name if key is not None else None


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Faults, auth, error mapping and request logging for the public API."""
    path = request.path
    if path.startswith("/_emulator"):
        if request.remote not in ("127.0.0.1", "::1", "::ffff:127.0.0.1", None):
            return error_response(403, "The emulator admin API only accepts loopback clients")
        return await handler(request)
    state = request.app[STATE_KEY]
    route = request.match_info.route.name or "unknown"
    method = request.method
    fault = state.faults.take(method, route, path)
    key_name: str | None = None
    status: int | None = None
    try:
        if fault is not None:
            if fault.kind == "latency":
                await asyncio.sleep(fault.latency)
            else:
                key_name = _key_label(state, request)
                pre = _pre_fault(state, fault, request)
                if pre is not None:
                    status = pre.status
                    return pre
        scope = ROUTE_SCOPES.get(route)
        if scope is not None:
            key_name, denied = _auth(state, request, scope)
            if denied is not None:
                status = denied.status
                return denied
        try:
            resp = await handler(request)
        except ApiError as exc:
            resp = error_response(exc.status, exc.message, **exc.extra)
        except web.HTTPException as exc:
            if exc.status == 405:
                resp = error_response(405, f"Method {method} not allowed on {path}")
            else:
                resp = error_response(
                    404 if exc.status == 404 else exc.status, f"No route for {method} {path}"
                )
        if fault is not None and fault.kind in ("drop_after", "malformed_json", "hold"):
            resp = await _post_fault(state, fault, request, resp)
        status = resp.status
        return resp
    finally:
        query = dict(request.query) if request.query_string else {}
        state.record(
            RequestRecord(
                time.time(), method, path, route, query, status, key_name, fault.kind if fault else None
            )
        )


async def _post_fault(
    state: EmulatorState, fault: Fault, request: web.Request, resp: web.StreamResponse
) -> web.StreamResponse:
    if fault.kind == "drop_after":
        return _drop(request)
    if fault.kind == "malformed_json":
        raw = resp.body if isinstance(resp, web.Response) else None
        body = bytes(raw) if isinstance(raw, (bytes, bytearray)) else b"{}"
        truncated = body[: max(1, len(body) // 2)]
        return web.Response(body=truncated, status=fault.status or 200, content_type="application/json")
    # hold: the request has been processed; wait for the test to release it.
    event = state.hold_event()
    state.held += 1
    try:
        await asyncio.wait_for(event.wait(), timeout=fault.hold_timeout)
    except asyncio.TimeoutError:
        pass
    finally:
        state.held -= 1
    return resp


async def _body(request: web.Request, required: bool) -> dict[str, Any]:
    raw = await request.read()
    if not raw.strip():
        if required:
            raise ApiError(400, "Request body must be a JSON object")
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise ApiError(400, "Request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return data


def _req_str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"{name} is required and must be a non-empty string", field=name)
    return value


async def list_workflows(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    et, cat = request.query.get("entity_type"), request.query.get("category")
    data = [
        wf.summary()
        for wf in state.config.workflows.values()
        if wf.isActive and (not et or wf.entityType == et) and (not cat or wf.category == cat)
    ]
    return json_response({"data": data, "total": len(data)})


async def get_workflow(request: web.Request) -> web.Response:
    wid = request.match_info["id"]
    wf = request.app[STATE_KEY].config.workflows.get(wid)
    if wf is None:
        raise ApiError(404, f"Workflow {wid} not found")
    return json_response(wf.detail())


async def trigger(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    body = await _body(request, required=True)
    wtype, etype, eid = (_req_str(body, f) for f in ("workflowType", "entityType", "entityId"))
    wf = state.config.workflows.get(wtype)
    if wf is None:
        raise ApiError(404, f"Workflow {wtype} not found")
    if not wf.isActive:
        raise ApiError(400, f"Workflow {wtype} is not active", field="workflowType")
    if etype != wf.entityType:
        raise ApiError(
            400,
            f'entityType "{etype}" does not match workflow {wf.id} entity type "{wf.entityType}"',
            field="entityType",
        )
    ex = state.store.create(wf, etype, eid)
    return json_response(
        {
            "executionId": ex.id,
            "workflowId": wf.id,
            "workflowName": wf.name,
            "entityType": etype,
            "entityId": eid,
            "status": "pending",
            "message": f'Workflow "{wf.name}" triggered',
        },
        status=202,
    )


def _int_param(request: web.Request, name: str, default: int, lo: int, hi: int | None) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer", field=name) from None
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f">= {lo}"
        raise ApiError(400, f"{name} must be {bound}", field=name)
    return value


async def list_executions(request: web.Request) -> web.Response:
    state, q = request.app[STATE_KEY], request.query
    status = q.get("status") or None
    if status is not None and status not in EXECUTION_STATUSES:
        raise ApiError(400, f"status must be one of {', '.join(EXECUTION_STATUSES)}", field="status")
    page = _int_param(request, "page", 1, 1, None)
    limit = _int_param(request, "limit", 20, 1, 100)
    sort_by = q.get("sort_by") or "startedAt"
    if sort_by not in SORT_FIELDS:
        raise ApiError(400, f"sort_by must be one of {', '.join(SORT_FIELDS)}", field="sort_by")
    order = q.get("sort_order") or "desc"
    if order not in ("asc", "desc"):
        raise ApiError(400, "sort_order must be asc or desc", field="sort_order")
    wt, et, eid = q.get("workflow_type"), q.get("entity_type"), q.get("entity_id")
    now = time.time()
    rows = []
    for ex in state.store.all():
        if (wt and ex.workflow.id != wt) or (et and ex.entity_type != et) or (eid and ex.entity_id != eid):
            continue
        view = ex.view(now, with_nodes=False)
        if status is None or view["status"] == status:
            rows.append(view)
    desc = order == "desc"
    if sort_by == "completedAt":
        # Unfinished executions (null) sort as "latest": last in asc, first in desc.
        rows.sort(key=lambda r: (r["completedAt"] is None, r["completedAt"] or ""), reverse=desc)
    elif sort_by != "startedAt":
        rows.sort(key=lambda r: r[sort_by], reverse=desc)
    elif desc:
        rows.reverse()  # creation order is startedAt order
    start = (page - 1) * limit
    return json_response(
        {"data": rows[start : start + limit], "total": len(rows), "page": page, "limit": limit}
    )


async def get_execution(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    eid = request.match_info["executionId"]
    ex = state.store.get(eid, first_get=True)
    if ex is None:
        raise ApiError(404, f"Execution {eid} not found")
    return json_response(ex.view(time.time(), with_nodes=True))


def _app_action(action: str, body_required: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        state = request.app[STATE_KEY]
        app_id = request.match_info["applicationId"]
        body = await _body(request, required=body_required)
        if action == "change-status":
            _req_str(body, "status")
            if body.get("reason") is not None and not isinstance(body["reason"], str):
                raise ApiError(400, "reason must be a string", field="reason")
        uw = body.get("underwriterId")
        if action == "assign-underwriter" and uw is not None and (not isinstance(uw, str) or not uw):
            raise ApiError(400, "underwriterId must be a non-empty string", field="underwriterId")
        wf = state.config.workflows[state.config.actions[action]]
        if not wf.isActive:
            raise ApiError(400, f"Workflow {wf.id} is not active")
        ex = state.store.create(wf, wf.entityType, app_id)
        return json_response(
            {
                "executionId": ex.id,
                "status": "pending",
                "applicationId": app_id,
                "action": action,
                "workflowId": wf.id,
            },
            status=202,
        )

    return handler


def build_app(state: EmulatorState) -> web.Application:
    """Create the aiohttp application bound to ``state``."""
    app = web.Application(middlewares=[api_middleware], client_max_size=1024**2)
    app[STATE_KEY] = state
    p = API_PREFIX
    r = app.router
    r.add_get(p + "/workflows", list_workflows, name="list_workflows")
    # Static paths must be registered before /workflows/{id} to win the match.
    r.add_post(p + "/workflows/trigger", trigger, name="trigger")
    r.add_get(p + "/workflows/executions", list_executions, name="list_executions")
    r.add_get(p + "/workflows/executions/{executionId}", get_execution, name="get_execution")
    r.add_get(p + "/workflows/{id}", get_workflow, name="get_workflow")
    r.add_post(
        p + "/applications/{applicationId}/change-status",
        _app_action("change-status", True),
        name="change_status",
    )
    r.add_post(
        p + "/applications/{applicationId}/advance-stage",
        _app_action("advance-stage", False),
        name="advance_stage",
    )
    r.add_post(
        p + "/applications/{applicationId}/assign-underwriter",
        _app_action("assign-underwriter", False),
        name="assign_underwriter",
    )
    add_admin_routes(app, state)
    return app
