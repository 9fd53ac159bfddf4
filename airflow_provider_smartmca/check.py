"""``smartmca-check``: probe a SmartMCA tenant, read-only, for every assumption the provider depends on.

Run it once against the real tenant before going to production::

    smartmca-check                                   # the Airflow connection smartmca_default
    smartmca-check --conn-id smartmca_prod --json
    SMARTMCA_API_KEY=... smartmca-check --base-url https://api.smartmca.com

It sends GETs only: List Workflows, Get Workflow, List Executions (page 1 newest first and oldest
first, and page 2 when page 1 is full, whatever ``total`` says) and Get Execution, through the
provider's own client. Each answer is read twice: by the provider's parser, as a task would read
it, and field by field against :data:`~airflow_provider_smartmca.client.contract.SHAPES`, so the
table names every field that differs, not only the first. What GETs cannot show (the write scopes, the answers to POSTs,
error bodies) is reported as "cannot be checked", never as holding.

Only keys, JSON types and counts are printed, never a response's values, and never the key.
Exit status: 0 when nothing differs, 1 when an assumption does not hold, 2 when the probe could
not start (no connection, no key, a bad base URL).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from functools import partial
from typing import Any

from airflow_provider_smartmca.client import contract, protocol
from airflow_provider_smartmca.client.contract import Execution, ExecutionPage
from airflow_provider_smartmca.client.endpoints import ENDPOINTS, SCOPE_READ
from airflow_provider_smartmca.client.listing import ListingWalk, proves_sorting
from airflow_provider_smartmca.client.sync import SyncClient
from airflow_provider_smartmca.errors import (
    SmartMCAContractError,
    SmartMCAError,
    SmartMCAInvalidResponseError,
)

__all__ = ["DIFFERS", "HOLDS", "UNCHECKED", "Row", "main", "run_checks"]

HOLDS, DIFFERS, UNCHECKED = "holds", "differs", "cannot be checked"
DEFAULT_LIMIT = 5
#: Retries per probe call at most: a storm must not make a one-off check hang for minutes.
MAX_RETRIES = 2
_NO_POST = "a read-only probe sends no POST"


@dataclass(frozen=True)
class Row:
    """
    One assumption and what the probe saw.

    :param assumption: what the provider assumes, with its source (reference or assumed).
    :param verdict: :data:`HOLDS`, :data:`DIFFERS` or :data:`UNCHECKED`.
    :param seen: keys, JSON types and counts only, never a value.
    """

    assumption: str
    verdict: str
    seen: str = ""


@dataclass
class Answer:
    """
    One GET's answer.

    :param data: the decoded JSON (key redacted), when a 2xx JSON body came back.
    :param failure: why there is no usable answer (an HTTP error, no connection, not JSON), without
        server text.
    :param status: the HTTP status of that failure, when the server answered.
    :param broken: why the provider's parser refused the JSON (the contract differs).
    :param parsed: what the provider's parser made of it, when it accepted it.
    :param server: the server's clock from the ``Date`` header, or None.
    :param offset: the server's clock less this one, in seconds, when the ``Date`` header is readable.
    """

    endpoint: str
    data: Any = None
    failure: str | None = None
    status: int | None = None
    broken: str | None = None
    parsed: Any = None
    server: datetime | None = None
    offset: float | None = None

    def items(self, key: str = "data") -> list[Any]:
        """The list under ``key`` (the list envelope's items), or nothing."""
        data = self.data.get(key) if isinstance(self.data, dict) else None
        return data if isinstance(data, list) else []


def probe(client: SyncClient, name: str, **request: Any) -> Answer:
    """
    Send one GET with the client's retry policy; never raises a SmartMCA error. The clock offset
    compares the middle of the ``Date`` second (it is rounded down) with the middle of the exchange.
    """
    settings = client.settings

    def attempt(seconds: float | None) -> tuple[protocol.RawResponse, Any, str | None]:
        raw = client.send(prepared, timeout=seconds)
        try:
            return raw, protocol.parse_response(prepared, raw, settings), None  # exactly as a task reads it
        except SmartMCAContractError as exc:
            return raw, None, _contract_text(exc)  # not retried here: the field rows say what differs

    try:
        prepared = protocol.build_request(settings, name, **request)
        started = time.time()
        raw, parsed, broken = protocol.retrying(settings, prepared, attempt)
    except SmartMCAError as exc:
        return Answer(name, failure=_failure_text(exc), status=exc.status)
    data, server = protocol.load_json(raw.body, settings.api_key), contract.server_time(raw.headers)
    offset = None if server is None else server.timestamp() + 0.5 - (started + time.time()) / 2
    return Answer(name, data, broken=broken, parsed=parsed, server=server, offset=offset)


def _failure_text(exc: SmartMCAError) -> str:
    """What went wrong, without server text (it may hold values)."""
    if exc.status is None:
        return str(exc)  # a local error (scope not declared, connection refused): the provider's own words
    if isinstance(exc, SmartMCAInvalidResponseError):
        return f"HTTP {exc.status} with a body the provider cannot read as JSON (HTML? truncated? too big?)"
    return f"HTTP {exc.status} ({type(exc).__name__})"


def _contract_text(exc: SmartMCAContractError) -> str:
    return str(exc).removeprefix(f"{exc.endpoint}: ")


def _tally(text: str, errors: list[SmartMCAContractError], of: int, held: str, why_not: str) -> Row:
    """
    Differs when any of ``of`` broke the contract (how many, how the first did); else holds when
    ``held`` says what was seen; else cannot be checked, ``why_not``.
    """
    if errors:
        return Row(text, DIFFERS, f"{len(errors)} of {of}: {_contract_text(errors[0])}")
    return Row(text, HOLDS, held) if held else Row(text, UNCHECKED, why_not)


def _read_all(values: list[Any], read: Callable[..., Any], *args: Any) -> tuple[list[Any], list[Any]]:
    """``read(value, *args)`` for each value: what it returned, and the contract errors it raised."""
    got, errors = [], []
    for value in values:
        try:
            got.append(read(value, *args))
        except SmartMCAContractError as exc:
            errors.append(exc)
    return got, errors


# --- rows ---------------------------------------------------------------------------------------


def _endpoint_row(answer: Answer | None, name: str, why_not: str) -> Row:
    endpoint = ENDPOINTS[name]
    row = partial(Row, f"{name} ({endpoint.method} {endpoint.path}) answers, and the provider reads it")
    if answer is None:
        return row(UNCHECKED, why_not)
    if problem := answer.failure or answer.broken:
        return row(DIFFERS, problem)
    return row(HOLDS, "a 2xx JSON answer the provider's parser accepts")


def _field_rows(label: str, shape: str, objects: list[tuple[str, Any]], why_none: str) -> list[Row]:
    """
    Every field of ``shape`` over ``objects`` (path, JSON value), read with the provider's reader;
    with no objects, every row cannot be checked (``why_none``).
    """
    specs, endpoint, items = contract.SHAPES[shape], label.split()[0], label.endswith("]")
    readers, errors = _read_all(objects, lambda o: contract._Reader(endpoint, shape, o[1], o[0]))
    head = f"{label}: items are JSON objects" if items else f"{label}: a JSON object"
    rows = [_tally(head, errors, len(objects), f"{len(objects)} seen" if objects else "", why_none)]
    why = "absent or null in every object seen (optional)" if readers else "no object to read"
    for spec in specs:
        values, errors = _read_all(readers, contract._Reader.get, spec.name)
        present = sum(value is not None for value in values)
        held = f"{present} of {len(readers)} have it" if present else ""
        need = "required" if spec.required else "optional"
        text = f"{label}{'.' if items else ' '}{spec.name}: {spec.kind}, {need} ({spec.source})"
        rows.append(_tally(text, errors, len(readers), held, why if objects else why_none))
    if extra := sorted({str(k)[:40] for r in readers for k in r.data} - {spec.name for spec in specs}):
        shown = ", ".join(extra[:15]) + (f" and {len(extra) - 15} more" if len(extra) > 15 else "")
        rows.append(Row(f"{label}: other keys are ignored", HOLDS, f"also present: {shown}"))
    return rows


def _sorted_row(desc: Answer, asc: Answer) -> Row:
    row = partial(Row, "list_executions honours sort_by=startedAt, sort_order=asc|desc (assumed)")
    if asc.failure is not None:
        return row(DIFFERS, f"sort_order=asc: {asc.failure}")
    if not all(isinstance(a.parsed, ExecutionPage) for a in (desc, asc)):
        return row(UNCHECKED, "a page the provider cannot read (see its rows)")
    newest = [e.started_at for e in desc.parsed.items if e.started_at is not None]
    if len(newest) < 2 or sum(e.started_at is not None for e in asc.parsed.items) < 2:
        return row(UNCHECKED, "fewer than 2 executions with startedAt")
    if newest != sorted(newest, reverse=True):
        return row(DIFFERS, "sort_order=desc: page 1 is not newest first by startedAt")
    if not proves_sorting(asc.parsed.items, newest[0]):  # the walks' own proof
        return row(DIFFERS, "sort_order=asc page 1 is not oldest first and older than desc's")
    return row(HOLDS, f"desc and asc pages ordered by startedAt ({len(newest)} items)")


def _pagination_rows(desc: Answer, page2: Answer | None, limit: int) -> list[Row]:
    a_page = f"list_executions returns at most limit={limit} items per page (reference: page, limit)"
    a_total = "list_executions total counts every match, not only this page (assumed; a hint)"
    a_page2 = "list_executions honours page=2 (another page than page 1) (reference: page)"
    if not isinstance(desc.data, dict) or not isinstance(desc.data.get("data"), list):
        why = "List Executions gave no list of items (see its rows)"
        return [Row(a, UNCHECKED, why) for a in (a_page, a_total, a_page2)]
    n, total, row = len(desc.items()), desc.data.get("total"), partial(Row, a_total)
    more = len(page2.items()) if page2 is not None and page2.failure is None else 0
    if isinstance(total, bool) or not isinstance(total, int):
        total_row = row(UNCHECKED, "no integer total (see its row): the walk stops at a short page")
    elif total < n + more:  # walks read on to a short page; only the poller's estimate is low
        what = "counts only page 1" if total <= n else "is below pages 1 and 2"
        total_row = row(DIFFERS, f"total={total} {what} ({n} item(s), page 2 {more} more)")
    elif n != min(total, limit):
        total_row = row(DIFFERS, f"total={total} but page 1 holds {n} item(s) for limit={limit}")
    else:
        total_row = row(HOLDS, f"total={total}, {n} item(s) on page 1")
    page_row = Row(a_page, HOLDS if n <= limit else DIFFERS, f"{n} item(s) for limit={limit}")
    return [page_row, total_row, _page2_row(partial(Row, a_page2), desc, page2, n, limit)]


def _page2_row(row: Callable[[str, str], Row], desc: Answer, page2: Answer | None, n: int, limit: int) -> Row:
    if page2 is None:
        why = "is unreadable (see its rows)" if desc.parsed is None else f"is short ({n} of {limit})"
        return row(UNCHECKED, f"page 1 {why}: no second page probed")
    if page2.failure is not None:
        return row(DIFFERS, page2.failure)
    first, second = _ids(desc), _ids(page2)
    if not first or not second:
        return row(UNCHECKED, "no executionId to compare the pages by")
    if first & second:
        return row(DIFFERS, f"page 2 repeats {len(first & second)} item(s) of page 1")
    return row(HOLDS, f"page 2: {len(second)} other item(s)")


def _timestamp_row(executions: list[Any]) -> Row:
    row = partial(Row, "timestamps (startedAt, completedAt) are ISO 8601; without an offset, UTC (assumed)")
    names = [f.name for f in contract.SHAPES["execution"] if f.kind == contract.TIMESTAMP]
    stamps = [(k, ex[k]) for ex in executions if isinstance(ex, dict) for k in names if ex.get(k) is not None]
    for name, value in stamps:
        if not isinstance(value, str):
            return row(DIFFERS, f"{name} is {contract._kind_of(value)}, not an ISO 8601 string")
        if contract.timestamp_or_none(value) is None:
            return row(DIFFERS, f"{name} is a string that is not ISO 8601")
    formats = sorted({re.sub(r"[0-9]", "d", value) for _, value in stamps})  # the format, never the value
    if not formats:
        return row(UNCHECKED, "no timestamp seen")
    return row(HOLDS, "format(s): " + ", ".join(formats[:3]))


def _status_row(executions: list[Any]) -> Row:
    known = contract.EXECUTION_STATUSES
    row = partial(Row, f"execution status is one of {', '.join(known)} (reference: status filter)")
    seen = {ex["status"] for ex in executions if isinstance(ex, dict) and isinstance(ex.get("status"), str)}
    if not seen:
        why = "no string status to read (see the status rows)" if executions else "no execution listed"
        return row(UNCHECKED, why)
    if unknown := sorted(seen - set(known)):
        names = ", ".join(repr(s[:30]) for s in unknown[:5])
        fix = "a wait on it lasts until its timeout; list it in failure_statuses to fail fast"
        return row(DIFFERS, f"unknown status {names}: {fix}")
    return row(HOLDS, f"seen: {', '.join(sorted(seen))}")


def _watcher_rows(final: Answer) -> list[Row]:
    """What ExecutionEventTrigger relies on: the status filter, and completedAt on the Date header's clock."""
    filtered = partial(
        Row, "list_executions honours status=completed (reference: status filter; the event watcher)"
    )
    stamped = partial(
        Row, "a completed execution has completedAt, not after the server's Date (assumed; the event watcher)"
    )
    items = [ex for ex in final.items() if isinstance(ex, dict)]
    if final.failure is not None or final.data is None:
        return [filtered(UNCHECKED, "no usable answer"), stamped(UNCHECKED, "no usable answer")]
    if not items:
        return [filtered(UNCHECKED, "no completed execution listed"), stamped(UNCHECKED, "none listed")]
    others = sorted({str(ex.get("status"))[:30] for ex in items} - {"completed"})
    listed = f"other statuses listed: {', '.join(others)} (the watcher drops them; more pages)"
    rows = [filtered(DIFFERS, listed) if others else filtered(HOLDS, f"{len(items)} item(s), all completed")]
    ends = [
        contract.timestamp_or_none(ex.get("completedAt")) for ex in items if ex.get("status") == "completed"
    ]
    if None in ends:
        unread = f"{ends.count(None)} without a readable completedAt: startedAt decides instead"
        return [*rows, stamped(DIFFERS, unread)]
    if final.server is None:
        return [*rows, stamped(UNCHECKED, "no readable Date header")]
    if late := sum(t is not None and t.timestamp() > final.server.timestamp() + 1 for t in ends):
        return [*rows, stamped(DIFFERS, f"{late} completedAt after the Date header: clocks differ")]
    return [*rows, stamped(HOLDS, "every completedAt readable and not after Date")]


def _clock_row(answers: list[Answer], skew: float) -> Row:
    assumption = f"the server clock (Date header) is within clock_skew={skew:g} s of this one (assumed)"
    if (offset := next((a.offset for a in answers if a.offset is not None), None)) is None:
        return Row(assumption, UNCHECKED, "no readable Date header")
    text = f"server clock {offset:+.1f} s from this one"
    if abs(offset) <= skew + 1:
        return Row(assumption, HOLDS, text)
    fix = f"set the connection extra clock_skew above {abs(offset):.0f}, or fix a clock"
    return Row(assumption, DIFFERS, f"{text}: {fix}")


def _date_lead_row(answers: list[Answer], skew: float) -> Row:
    """
    How far ``Date`` runs ahead of the timestamps. A timestamp is never ahead of its own clock, so
    ``Date`` less the newest timestamp of the same answer bounds the lead from above.
    """
    row = partial(
        Row,
        f"the Date header runs ahead of the timestamps by at most clock_skew={skew:g} s "
        "(assumed by start-once's lookup window; the event watcher allows for it)",
    )
    leads = []
    for answer in answers:
        listed = answer.parsed.items if isinstance(answer.parsed, ExecutionPage) else [answer.parsed]
        stamps = [t for e in listed if isinstance(e, Execution) for t in (e.started_at, e.completed_at) if t]
        if answer.server is not None and stamps:  # Date is rounded down to the second: one more is its grain
            leads.append(answer.server.timestamp() + 1 - max(stamps).timestamp())
    if not leads:
        return row(UNCHECKED, "no Date header next to a readable timestamp")
    if (lead := min(leads)) <= skew:
        return row(HOLDS, f"Date at most {max(lead, 0):.0f} s after the newest timestamp")
    return row(
        DIFFERS,
        f"Date {lead:+.0f} s after the newest timestamp: it runs ahead of the timestamps' clock (or nothing "
        "started or ended in that time: check again just after an execution ends). A lost answer's "
        f"execution is then outside start-once's lookup window: set clock_skew above {lead:.0f}",
    )


def _scope_rows(answers: list[Answer], declared: frozenset[str] | None) -> list[Row]:
    row = partial(Row, f"the key holds {SCOPE_READ} (every GET endpoint)")
    if any(a.status == 401 for a in answers):
        read = row(DIFFERS, "HTTP 401: the key is refused (wrong, revoked or missing)")
    elif denied := sorted(a.endpoint for a in answers if a.status == 403):
        read = row(DIFFERS, f"HTTP 403 from {', '.join(denied)}")
    elif reached := sum(a.failure is None for a in answers):
        read = row(HOLDS, f"{reached} GET(s) answered 2xx")
    else:
        read = row(UNCHECKED, "no GET was answered")
    posts = [e for e in ENDPOINTS.values() if e.method == "POST"]  # the write scopes, with their POSTs
    scopes = {
        e.scope: ", ".join(p.path.rsplit("/", 1)[1] for p in posts if p.scope == e.scope) for e in posts
    }
    why = {scope: _NO_POST + _declared(scope, declared) for scope in scopes}
    return [read] + [Row(f"the key holds {s} (POST {what})", UNCHECKED, why[s]) for s, what in scopes.items()]


def _declared(scope: str, declared: frozenset[str] | None) -> str:
    """Whether the connection declares ``scope``, when it declares scopes at all."""
    if declared is None:
        return ""
    return f", {'declared' if scope in declared else 'NOT declared'} in the connection extra scopes"


#: What only a POST, an ended run or a failing call shows: (assumption, why it cannot be checked).
_UNCHECKABLE = {
    "application action bodies (status, reason, underwriterId) (assumed)": _NO_POST,
    "an application action's 2xx without executionId (or empty) means done, nothing to wait for (assumed)": _NO_POST,
    "completed is success; failed, cancelled are failures; others wait (assumed)": "needs an ended run",
    "error bodies {error: {message, requiredScope}}; 429 carries Retry-After (assumed)": "needs a failing call",
}


def _post_rows() -> list[Row]:
    """The POST answers' fields (no object row: no body is read) and :data:`_UNCHECKABLE`."""
    shapes = (("trigger_workflow 202", "trigger response"), ("application action 2xx", "action response"))
    fields = [row for label, shape in shapes for row in _field_rows(label, shape, [], _NO_POST)[1:]]
    return fields + [Row(assumption, UNCHECKED, why) for assumption, why in _UNCHECKABLE.items()]


# --- the probe ----------------------------------------------------------------------------------


def run_checks(client: SyncClient, limit: int = DEFAULT_LIMIT) -> list[Row]:
    """
    Probe the API behind ``client`` with GETs only and return one row per assumption.

    :param client: the provider's sync client, on the tenant's settings.
    :param limit: the page size of the List Executions probes (2 to 100).
    """
    settings = client.settings
    unknown = settings.unknown_extras_message()
    rows = [Row("the connection extras are all known", DIFFERS if unknown else HOLDS, unknown or "")]

    def executions(**query: Any) -> Answer:
        return probe(client, "list_executions", query=protocol.list_executions_query(limit=limit, **query))

    def detail(name: str, key: str, items: list[Any], field: str) -> Answer | None:
        """``name`` for the first item's ``field`` that can go into a URL path, when one can."""
        ids = [i[field] for i in items if isinstance(i, dict) and isinstance(i.get(field), str) and i[field]]
        return probe(client, name, path_params={key: ids[0]}) if ids else None

    workflows = probe(client, "list_workflows")
    workflow = detail("get_workflow", "workflow_id", workflows.items(), "id")
    desc, asc = executions(sort_order="desc"), executions(sort_order="asc")
    walk = ListingWalk(limit, 2)  # a full page 1 has a page 2, whatever total says
    if isinstance(desc.parsed, ExecutionPage):
        walk.feed(desc.parsed)
    fetch = walk.next() if walk.pages else None
    page2 = executions(page=fetch.page, sort_order=fetch.order) if fetch is not None else None
    execution = detail("get_execution", "execution_id", desc.items(), "executionId")
    final = executions(status="completed")
    answers = [a for a in (workflows, workflow, desc, asc, page2, execution, final) if a is not None]

    why_no_execution = "no usable executionId listed (see its row)" if desc.items() else "no execution listed"
    rows += [
        _endpoint_row(workflows, "list_workflows", ""),
        _endpoint_row(workflow, "get_workflow", "no workflow id listed"),
        _endpoint_row(desc, "list_executions", ""),
        _endpoint_row(execution, "get_execution", why_no_execution),
    ]
    rows += _scope_rows(answers, settings.scopes)
    listed = [item for a in (desc, asc, page2) if a is not None for item in a.items()]
    read = _body(execution)
    nodes = _indexed(execution.items("nodes"), "nodes") if execution is not None else []
    for label, shape, objects, why_none in (
        ("list_workflows envelope", "list envelope", _body(workflows), "no usable answer"),
        ("list_executions envelope", "execution list envelope", _body(desc), "no usable answer"),
        ("list_workflows data[]", "workflow", _indexed(workflows.items()), "no workflow listed"),
        ("get_workflow", "workflow", _body(workflow), "no workflow read"),
        ("list_executions data[]", "execution", _indexed(listed), "no execution listed"),
        ("get_execution", "execution", read, "no execution read"),
        ("get_execution nodes[]", "node", nodes, "no nodes read"),
    ):
        rows += _field_rows(label, shape, objects, why_none)

    executions_seen = listed + [value for _, value in read]
    rows += _pagination_rows(desc, page2, limit)
    rows += [
        _sorted_row(desc, asc),
        _timestamp_row(executions_seen),
        _status_row(executions_seen),
        _clock_row(answers, settings.clock_skew),
        _date_lead_row(answers, settings.clock_skew),
    ]
    return rows + _watcher_rows(final) + _post_rows()


def _indexed(items: list[Any], prefix: str = "data") -> list[tuple[str, Any]]:
    return [(f"{prefix}[{i}]", item) for i, item in enumerate(items)]


def _ids(answer: Answer) -> set[Any]:
    """The ``executionId`` of each listed item."""
    return {i.get("executionId") for i in answer.items() if isinstance(i, dict)} - {None}


def _body(answer: Answer | None) -> list[tuple[str, Any]]:
    return [("", answer.data)] if answer is not None and answer.failure is None else []


# --- the command --------------------------------------------------------------------------------


def render_table(rows: list[Row], target: str) -> str:
    """The rows as a plain-text table, with a one-line summary."""
    width = min(max(len(r.assumption) for r in rows), 100)
    lines = [f"smartmca-check: {target}", "", f"{'VERDICT':<17}  {'ASSUMPTION':<{width}}  SEEN"]
    lines += [f"{r.verdict:<17}  {r.assumption:<{width}}  {r.seen}".rstrip() for r in rows]
    return "\n".join([*lines, "", summary(rows)])


#: The cause of differing rows, by a pattern their SEEN matches (re.search), first match first.
_CAUSES = {
    r"^HTTP 401": "the API key is refused (HTTP 401): check the key (the connection's password) and that it is not revoked.",
    r"^HTTP 403": f"the API key lacks a scope (HTTP 403): every GET needs {SCOPE_READ}.",
    r"which the connection does not declare": f"the connection does not declare {SCOPE_READ} in its extra 'scopes': add it (the key needs it too).",
    r"the server did not receive it|the server may have received it": "the host cannot be reached or did not answer (refused, timed out, DNS, proxy): check the base URL and the network.",
    r"^HTTP 5": "the API answers server errors (HTTP 5xx), even after retries: try again later.",
}
#: The cause when no pattern of :data:`_CAUSES` matches.
_CONTRACT_CAUSE = (
    "the API answers differently from what the provider assumes. Each 'differs' row names the "
    "endpoint and the field; tasks fail on them (SmartMCAContractError) until they agree."
)


def summary(rows: list[Row]) -> str:
    """One line: how many rows hold, differ, cannot be checked, and the cause of what differs."""
    count = {v: sum(r.verdict == v for r in rows) for v in (HOLDS, DIFFERS, UNCHECKED)}
    head = f"{count[HOLDS]} hold, {count[DIFFERS]} differ, {count[UNCHECKED]} cannot be checked"
    if not count[DIFFERS]:
        return f"{head}: every assumption a read-only probe can check holds."
    seen = [r.seen for r in rows if r.verdict == DIFFERS]
    for pattern, cause in _CAUSES.items():
        if any(re.search(pattern, text) for text in seen):
            return f"{head}: {cause}"
    return f"{head}: {_CONTRACT_CAUSE}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="smartmca-check",
        description="Check, read-only, that a SmartMCA tenant answers as the Airflow provider assumes.",
    )
    add = p.add_argument
    add("--conn-id", default="smartmca_default", help="Airflow connection id (default smartmca_default)")
    add("--base-url", help="probe this base URL instead of a connection; the key comes from --key-env")
    add(
        "--key-env",
        default="SMARTMCA_API_KEY",
        help="environment variable holding the API key, with --base-url (default SMARTMCA_API_KEY)",
    )
    add("--limit", type=int, default=DEFAULT_LIMIT, help="List Executions page size, 2 to 100 (default 5)")
    add("--json", action="store_true", help="print JSON instead of a table")
    return p


def _client(args: argparse.Namespace) -> tuple[SyncClient, str]:
    if args.base_url:
        from airflow_provider_smartmca.client.settings import settings_from_connection

        key = os.environ.get(args.key_env, "").strip()
        if not key:
            raise ValueError(f"environment variable {args.key_env} is not set (it must hold the API key)")
        settings = settings_from_connection(host=args.base_url, port=None, password=key, extra=None)
    else:
        from airflow_provider_smartmca.hooks.smartmca import SmartMCAHook

        settings = SmartMCAHook(args.conn_id).settings  # resolved as a task would, AIRFLOW_CONN_* included
    target = settings.base_url if args.base_url else f"{settings.base_url} (connection {args.conn_id})"
    return SyncClient(settings.with_overrides(max_retries=min(settings.max_retries, MAX_RETRIES))), target


@contextmanager
def _quiet() -> Iterator[None]:
    """
    Only errors from the provider's and Airflow's loggers meanwhile: the client's retry warnings
    would interleave with the table (failures are in the rows), and Airflow 3.0's BaseHook prints
    "Connection Retrieved" to stdout, which would break --json.
    """
    levels = {log: log.level for log in map(logging.getLogger, ("airflow_provider_smartmca", "airflow"))}
    for logger in levels:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in levels.items():
            logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """
    Run the check and print the table (or JSON).

    :param argv: the arguments (default ``sys.argv[1:]``).
    :return: 0 when nothing differs, 1 when an assumption does not hold, 2 when the probe could not start.
    """
    args = _parser().parse_args(argv)
    if not 2 <= args.limit <= 100:
        print("smartmca-check: --limit must be from 2 to 100", file=sys.stderr)
        return 2
    from airflow.exceptions import AirflowException

    with _quiet():
        try:
            client, target = _client(args)
        except (AirflowException, ValueError) as exc:  # no connection, no key, a bad setting
            print(f"smartmca-check: cannot start: {exc}", file=sys.stderr)
            return 2
        with closing(client):
            rows = run_checks(client, args.limit)
    differs = any(r.verdict == DIFFERS for r in rows)
    report = dict(target=target, ok=not differs, summary=summary(rows), rows=[asdict(r) for r in rows])
    print(json.dumps(report, indent=2) if args.json else render_table(rows, target))
    return 1 if differs else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
