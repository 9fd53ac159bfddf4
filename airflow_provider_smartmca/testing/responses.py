"""JSON and error response builders shared by the API routes, faults and drift."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

__all__ = ["ERROR_CODES", "error_response", "json_response"]

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
