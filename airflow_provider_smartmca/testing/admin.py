"""Admin HTTP API under ``/_emulator/`` (no auth, loopback clients only).

Lets a test control an emulator running in another process.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from airflow_provider_smartmca.testing.faults import parse_fault
from airflow_provider_smartmca.testing.runtime import EmulatorState

__all__ = ["add_admin_routes"]

Handler = Callable[[web.Request], Awaitable[web.Response]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json")


def _bad(message: str) -> web.Response:
    return _json({"error": {"code": "validation_error", "message": message}}, status=400)


async def _read_obj(request: web.Request) -> dict[str, Any] | None:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def add_admin_routes(app: web.Application, state: EmulatorState) -> None:
    """Register the ``/_emulator/*`` routes on ``app``."""

    async def health(request: web.Request) -> web.Response:
        return _json({"status": "ok"})

    async def add_fault(request: web.Request) -> web.Response:
        body = await _read_obj(request)
        if body is None:
            return _bad("body must be a JSON object")
        try:
            fault = parse_fault(body)
        except ValueError as exc:
            return _bad(str(exc))
        state.faults.add(fault)
        return _json(fault.to_dict(), status=201)

    async def get_behaviour(request: web.Request) -> web.Response:
        return _json(state.behaviour.to_dict())

    async def set_behaviour(request: web.Request) -> web.Response:
        body = await _read_obj(request)
        if body is None:
            return _bad("body must be a JSON object")
        try:
            return _json(state.configure(**body).to_dict())
        except ValueError as exc:
            return _bad(str(exc))

    async def actions(request: web.Request) -> web.Response:
        rows = [r.to_dict() for r in state.actions()]
        return _json({"data": rows, "total": len(rows)})

    async def list_faults(request: web.Request) -> web.Response:
        return _json({"data": [f.to_dict() for f in state.faults.list()]})

    async def clear_faults(request: web.Request) -> web.Response:
        return _json({"cleared": state.faults.clear()})

    async def requests_log(request: web.Request) -> web.Response:
        rows = [r.to_dict() for r in list(state.log)]
        return _json({"data": rows, "total": len(rows)})

    async def counters(request: web.Request) -> web.Response:
        rows = [
            {"method": m, "route": r, "status": s, "count": c}
            for (m, r, s), c in sorted(state.counters_snapshot().items(), key=lambda kv: str(kv[0]))
        ]
        return _json({"data": rows})

    async def executions(request: web.Request) -> web.Response:
        wt = request.query.get("workflow_type") or None
        eid = request.query.get("entity_id") or None
        now = state.clock.now()
        rows = [
            ex.view(now, with_nodes=False)
            for ex in state.store.all()
            if (wt is None or ex.workflow.id == wt) and (eid is None or ex.entity_id == eid)
        ]
        return _json({"data": rows, "created": len(rows)})

    async def revoke(request: web.Request) -> web.Response:
        body = await _read_obj(request)
        target = (body or {}).get("key") or (body or {}).get("name")
        if not isinstance(target, str) or not target:
            return _bad('body must be {"key": "<secret or key name>"}')
        if not state.revoke(target):
            return _json({"error": {"code": "not_found", "message": "No such key"}}, status=404)
        return _json({"revoked": True})

    async def release(request: web.Request) -> web.Response:
        return _json({"released": state.release_on_loop()})

    async def held(request: web.Request) -> web.Response:
        return _json({"held": state.held})

    async def get_clock(request: web.Request) -> web.Response:
        return _json(state.clock.to_dict())

    async def advance_clock(request: web.Request) -> web.Response:
        body = await _read_obj(request)
        if body is None or set(body) != {"advance"}:
            return _bad('body must be {"advance": <seconds>}')
        try:
            state.clock.advance(body["advance"])
        except ValueError as exc:
            return _bad(f"advance: {exc}")
        return _json(state.clock.to_dict())

    async def reset(request: web.Request) -> web.Response:
        state.release_on_loop()
        state.reset()
        return _json({"reset": True})

    # One table: the routes and the index at /_emulator/ cannot disagree.
    routes: list[tuple[str, str, Handler, str]] = [
        ("GET", "/_emulator/health", health, 'liveness: {"status": "ok"}'),
        ("POST", "/_emulator/faults", add_fault, "add a fault (JSON body: kind, route, options)"),
        ("GET", "/_emulator/faults", list_faults, "list the active faults"),
        ("DELETE", "/_emulator/faults", clear_faults, "remove every fault"),
        ("GET", "/_emulator/requests", requests_log, "the request log, oldest first"),
        ("GET", "/_emulator/counters", counters, "request counts by method, route and status"),
        ("GET", "/_emulator/actions", actions, "the POSTs that reached an action handler"),
        ("GET", "/_emulator/behaviour", get_behaviour, "the server-wide behaviours and drift"),
        ("POST", "/_emulator/behaviour", set_behaviour, "change behaviours (a partial update)"),
        ("GET", "/_emulator/executions", executions, "executions created (?workflow_type=&entity_id=)"),
        ("POST", "/_emulator/keys/revoke", revoke, 'revoke a key: {"key": "<secret or name>"}'),
        ("POST", "/_emulator/release", release, "release the requests a hold fault holds"),
        ("GET", "/_emulator/held", held, "how many requests are held"),
        ("GET", "/_emulator/clock", get_clock, "the server's clock: mode (real or manual) and now"),
        ("POST", "/_emulator/clock", advance_clock, 'move the clock forward: {"advance": <seconds>}'),
        ("POST", "/_emulator/reset", reset, "forget executions, faults, logs; restore behaviours"),
    ]
    listing = [{"method": m, "path": path, "description": what} for m, path, _, what in routes]

    async def index(request: web.Request) -> web.Response:
        return _json({"admin_api": "SmartMCA emulator (loopback clients only)", "endpoints": listing})

    r = app.router
    r.add_get("/_emulator/", index)
    r.add_get("/_emulator", index)
    for method, path, handler, _ in routes:
        if method == "GET":
            r.add_get(path, handler)  # and HEAD, as before
        else:
            r.add_route(method, path, handler)
