"""aiohttp.web application: public API routes, auth and fault middleware."""

from __future__ import annotations

import json
import zlib
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from airflow_provider_smartmca.testing.admin import add_admin_routes
from airflow_provider_smartmca.testing.behaviour import Behaviour
from airflow_provider_smartmca.testing.drift import apply_drift
from airflow_provider_smartmca.testing.fault_responses import http_date, post_fault, pre_fault
from airflow_provider_smartmca.testing.faults import POST_KINDS
from airflow_provider_smartmca.testing.responses import error_response, json_response
from airflow_provider_smartmca.testing.runtime import EmulatorState, RequestRecord
from airflow_provider_smartmca.testing.state import EXECUTION_STATUSES

__all__ = ["API_PREFIX", "build_app", "error_response"]

API_PREFIX = "/api/public/v1"
STATE_KEY: web.AppKey[EmulatorState] = web.AppKey("smartmca_state", EmulatorState)
# What a handler did, read by the middleware for the request log.
# web.RequestKey exists from aiohttp 3.13; Airflow 3.0's pinned aiohttp (3.12) takes plain strings.
_RequestKey: Any = getattr(web, "RequestKey", None)
BODY_KEY: Any = _RequestKey("smartmca_body", dict) if _RequestKey else "smartmca_body"
EXECUTION_KEY: Any = _RequestKey("smartmca_execution_id", str) if _RequestKey else "smartmca_execution_id"

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
SORT_FIELDS = ("startedAt", "completedAt", "status", "workflowId")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """Raised by handlers to produce an error response."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


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


def _unrouted(behaviour: Behaviour, request: web.Request, handler: Handler) -> tuple[str, Handler]:
    """Route name and handler of a path no route matched (the handler answers 404)."""
    if behaviour.trailing_slash_list and request.method == "GET":
        # GET .../workflows/executions/ (an empty id) answered as the list, as many servers do.
        lists: dict[str, tuple[str, Handler]] = {
            "/workflows/": ("list_workflows", list_workflows),
            "/workflows/executions/": ("list_executions", list_executions),
        }
        found = lists.get(request.path.removeprefix(API_PREFIX))
        if found is not None:
            return found
    return "unknown", handler


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Faults, auth, drift, error mapping and request logging for the public API."""
    path = request.path
    if path.startswith("/_emulator"):
        if request.remote not in ("127.0.0.1", "::1", "::ffff:127.0.0.1", None):
            return error_response(403, "The emulator admin API only accepts loopback clients")
        return await handler(request)
    state = request.app[STATE_KEY]
    behaviour = state.behaviour
    route = request.match_info.route.name
    if route is None:
        route, handler = _unrouted(behaviour, request, handler)
    method = request.method
    rid = next(state.request_ids)
    epoch = state.epoch
    fault = state.faults.take(method, route, path, request.query)
    key_name: str | None = None
    status: int | None = None
    handled = False
    try:
        if fault is not None and fault.kind not in POST_KINDS:
            key_name = _key_label(state, request)
            pre = await pre_fault(state, fault, request)
            if pre is not None:
                status = pre.status
                return pre
        scope = ROUTE_SCOPES.get(route)
        if scope is not None:
            key_name, denied = _auth(state, request, scope)
            if denied is not None:
                status = denied.status
                return denied
        handled = True
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
        if behaviour.drift and 200 <= resp.status < 300 and isinstance(resp, web.Response):
            resp = apply_drift(behaviour.drift, route, resp)
        if fault is not None and fault.kind in POST_KINDS:
            resp = await post_fault(state, fault, request, resp)
        status = resp.status
        return resp
    finally:
        query = dict(request.query) if request.query_string else {}
        state.record(
            RequestRecord(
                state.clock.now(),
                method,
                path,
                route,
                query,
                status,
                key_name,
                fault.kind if fault else None,
                id=rid,
                handled=handled,
                body=request.get(BODY_KEY),
                execution_id=request.get(EXECUTION_KEY),
            ),
            epoch,
        )


async def _date_header(request: web.Request, response: web.StreamResponse) -> None:
    # aiohttp fills Date before this hook runs and writes the headers after it, so what this
    # hook leaves is what goes on the wire: the server's clock, or (date_header off) nothing.
    state = request.app[STATE_KEY]
    behaviour = state.behaviour
    if not behaviour.date_header and not request.path.startswith("/_emulator"):
        response.headers.popall("Date", None)
    else:
        response.headers["Date"] = http_date(behaviour.now(state.clock.now()) + behaviour.date_offset_seconds)


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
    body = request[BODY_KEY] = await _body(request, required=True)
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
    request[EXECUTION_KEY] = ex.id
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
    behaviour, now = state.behaviour, state.clock.now()
    # A lagging replica: what was created in the last list_lag_seconds is not there yet.
    visible_before = now - behaviour.list_lag_seconds
    rows = []
    for ex in state.store.all():
        if (wt and ex.workflow.id != wt) or (et and ex.entity_type != et) or (eid and ex.entity_id != eid):
            continue
        if behaviour.list_lag_seconds and ex.created_at > visible_before:
            continue
        at = now
        if behaviour.list_end_lag_seconds and ex.clock_start is not None:
            # A replica applying status updates late: an execution that ended is listed as it
            # was just before its end.
            end = ex.clock_start + ex.terminal_time()
            if end <= now < end + behaviour.list_end_lag_seconds:
                at = end - 0.001
        view = ex.view(at, with_nodes=False, stamp=behaviour.stamp)
        if status is None or view["status"] == status:
            rows.append(view)
    desc = order == "desc"
    list_order = behaviour.effective_list_order
    if list_order == "ignore_asc":
        pass  # creation (startedAt) order, whatever sort_by and sort_order say
    elif list_order == "shuffle":
        # Fixed per (seed, id), so pages stay consistent as long as the rows do.
        seed = str(behaviour.list_seed)
        rows.sort(key=lambda r: zlib.crc32(f"{seed}:{r['executionId']}".encode()))
    elif sort_by == "completedAt":
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
    return json_response(ex.view(state.clock.now(), with_nodes=True, stamp=state.behaviour.stamp))


def _app_action(action: str, body_required: bool) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        state = request.app[STATE_KEY]
        app_id = request.match_info["applicationId"]
        body = request[BODY_KEY] = await _body(request, required=body_required)
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
        request[EXECUTION_KEY] = ex.id
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
    app.on_response_prepare.append(_date_header)
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
