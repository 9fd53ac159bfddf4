"""The response contract: every field the provider reads from a SmartMCA response, in one place.

The public reference fixes the trigger's 202 body and the workflow shapes; it leaves the rest
open (Get Execution's fields, List Executions' envelope and items, the application endpoints'
answers). Each field below says which: ``REFERENCE`` or ``ASSUMED``. ``smartmca-check`` probes a
real tenant against this table, and adapting to the real API, once it is known, is a change to
this file only.

A 2xx whose body is JSON of the wrong shape (a missing required field, a wrong type, a non-object
where an object belongs) raises :class:`~airflow_provider_smartmca.errors.SmartMCAContractError`,
naming the endpoint and the field and listing the keys that *were* present (never their values).
Everything else in the provider reads the typed objects built here, never raw dicts.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Generic, TypeVar, overload

from airflow_provider_smartmca.errors import SmartMCAContractError

#: The largest integer field a response may hold (what a JSON number exactly holds everywhere).
MAX_INTEGER = 2**53
REFERENCE, ASSUMED = "reference", "assumed"

STRING, INTEGER, TIMESTAMP = "string", "integer", "timestamp"
LIST, OBJECT, NODE_ERROR = "list", "object", "node error"


@dataclass(frozen=True)
class Field:
    """
    One field the provider reads.

    :param name: the JSON key.
    :param kind: what it must be: string, integer, timestamp (ISO 8601 string), list or object.
    :param required: whether a response without it (or with null) breaks the contract.
    :param source: ``reference`` when the public reference shows it, else ``assumed``.
    """

    name: str
    kind: str
    required: bool
    source: str


def _shape(source: str, spec: str) -> tuple[Field, ...]:
    """The fields of ``spec``, ``"name: kind"`` items separated by commas; ``!`` ends a required kind."""
    items = (item.split(":") for item in spec.split(","))
    return tuple(Field(n.strip(), k.strip(" !"), k.endswith("!"), source) for n, k in items)


#: Every field read, per response shape. ``docs/api-contract.md`` and ``smartmca-check`` follow it.
#: The reference shows List Workflows' envelope ``{"data": [...], "total": n}`` and no List Executions
#: response: the same envelope is assumed.
SHAPES: dict[str, tuple[Field, ...]] = {
    "workflow": _shape(REFERENCE, "id: string!, entityType: string!, name: string"),
    "list envelope": _shape(REFERENCE, "data: list!, total: integer"),
    "execution list envelope": _shape(ASSUMED, "data: list!, total: integer"),
    "trigger response": _shape(REFERENCE, "executionId: string!, workflowId: string, status: string"),
    "action response": _shape(ASSUMED, "executionId: string, workflowId: string"),
    "execution": _shape(
        ASSUMED,
        "executionId: string!, status: string!, workflowId: string, workflowName: string, entityType: string,"
        "entityId: string, startedAt: timestamp, completedAt: timestamp, nodeCount: integer,"
        "currentNode: string, nodes: list",
    ),
    "node": _shape(ASSUMED, "name: string, id: string, status: string, error: node error"),
}

_FIELDS = {shape: {f.name: f for f in fields} for shape, fields in SHAPES.items()}
#: The typed objects' attribute of each field: ``entityType`` is ``entity_type``.
ATTRIBUTES = {f.name: re.sub("([A-Z])", r"_\1", f.name).lower() for fs in SHAPES.values() for f in fs}

#: Statuses the reference lists (List Executions' ``status`` filter); only ``completed`` is success.
EXECUTION_STATUSES = ("pending", "running", "completed", "failed", "cancelled")
ACTIVE_STATUSES = frozenset({"pending", "running"})
FAILED_STATUSES = frozenset({"failed", "cancelled"})
SUCCESS_STATUS = "completed"


def parse_timestamp(value: str) -> datetime:
    """Parse an ISO 8601 timestamp (``Z`` allowed) into an aware datetime; naive means UTC.

    :raises ValueError: the text is not ISO 8601.
    """
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def timestamp_or_none(value: Any) -> datetime | None:
    """``value`` read by :func:`parse_timestamp`, or None when it is no ISO 8601 string."""
    try:
        return parse_timestamp(value) if isinstance(value, str) else None
    except ValueError:
        return None


def http_date(value: str | None) -> datetime | None:
    """An HTTP date (RFC 9110) as an aware datetime (naive means UTC), or None when absent or bad."""
    try:
        when = parsedate_to_datetime(value or "")
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def server_time(headers: Mapping[str, str]) -> datetime | None:
    """The server's clock from the response's ``Date`` header, or None when absent or bad."""
    return http_date(headers.get("date"))


class _Reader:
    """Reads one JSON object against a shape, failing with the endpoint, the field path and the keys seen."""

    def __init__(self, endpoint: str, shape: str, data: Any, where: str = "") -> None:
        self.endpoint, self.where, self.data, self.fields = endpoint, where, data, _FIELDS[shape]
        if not isinstance(data, dict):
            text = f"expected a JSON object{' at ' + where if where else ''} ({shape}), got {_kind_of(data)}"
            raise _error(endpoint, where or "(body)", text)

    def fail(self, name: str, problem: str) -> SmartMCAContractError:
        path = f"{self.where}.{name}" if self.where else name
        keys = tuple(sorted(str(k)[:60] for k in self.data)[:30])
        listed = ", ".join(keys) or "(none)"
        return _error(self.endpoint, path, f"response field {path!r} {problem}; keys present: {listed}", keys)

    def get(self, name: str) -> Any:
        """
        The field ``name``, checked against its kind (a timestamp is parsed). The contract error is
        raised outside any ``except``, so no ValueError (quoting the value) is its context.
        """
        spec = self.fields[name]
        if (value := self.data.get(name)) is None:
            if spec.required:
                raise self.fail(name, "is missing")
            return None
        accepts, rule = _KINDS[spec.kind]
        if not accepts(value):
            got = "one out of range" if spec.kind == INTEGER and type(value) is int else _kind_of(value)
            raise self.fail(name, f"{rule}, got {got}")
        if spec.kind != TIMESTAMP:
            return value
        if (parsed := timestamp_or_none(value)) is None:
            raise self.fail(name, "is not an ISO 8601 timestamp")
        return parsed

    def read_all(self) -> dict[str, Any]:
        """Every field of the shape, in its order, keyed by its attribute (``entityType``: ``entity_type``)."""
        return {ATTRIBUTES[name]: self.get(name) for name in self.fields}


def _error(endpoint: str, path: str, text: str, keys: tuple[str, ...] = ()) -> SmartMCAContractError:
    """The contract error at ``path``; ``keys`` are the keys present, never their values."""
    return SmartMCAContractError(f"{endpoint}: {text}", endpoint=endpoint, field=path, present_keys=keys)


#: What each kind of field accepts, and the rule a wrong value breaks. An integer is an int, not a
#: bool, and bounded: a count no float can hold (valid JSON) must not overflow what divides it.
_KINDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    STRING: (lambda v: isinstance(v, str) and v != "", "must be a non-empty string"),
    INTEGER: (lambda v: type(v) is int and 0 <= v <= MAX_INTEGER, "must be an integer from 0 to 2**53"),
    TIMESTAMP: (lambda v: isinstance(v, str), "must be an ISO 8601 timestamp string"),
    LIST: (lambda v: isinstance(v, list), "must be a list"),
    OBJECT: (lambda v: isinstance(v, dict), "must be an object"),
    NODE_ERROR: (lambda v: isinstance(v, (str, dict)), "must be a string or an object"),
}


#: JSON types by name, in the order they are tested (a bool is an int too).
_KIND_NAMES = {type(None): "null", bool: "a boolean", int: "a number", float: "a number", str: "a string"}


def _kind_of(value: Any) -> str:
    """A value's JSON type, never the value itself (it may hold anything, the key included)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "a non-finite number"
    if value == "":
        return "an empty string"
    names = {**_KIND_NAMES, list: "a list", dict: "an object"}
    return next((name for kind, name in names.items() if isinstance(value, kind)), type(value).__name__)


# --- typed objects ----------------------------------------------------------------------------

T = TypeVar("T")


class _Items(Generic[T]):
    """A response that iterates, indexes and sizes like its ``items``; empty is falsy."""

    items: tuple[T, ...]

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[T, ...]: ...
    def __getitem__(self, index: int | slice) -> T | tuple[T, ...]:
        return self.items[index]


@dataclass(frozen=True)
class Node:
    """One node of an execution: its name, status and error text (empty when none)."""

    name: str
    status: str | None
    error: str


@dataclass(frozen=True)
class Execution:
    """
    An execution, from Get Execution or one List Executions item.

    :param raw: the JSON object as received (the value operators return and push to XCom).
    """

    execution_id: str
    status: str
    workflow_id: str | None = None
    workflow_name: str | None = None
    entity_type: str | None = None
    entity_id: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    node_count: int | None = None
    current_node: str | None = None
    nodes: tuple[Node, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class ExecutionPage(_Items[Execution]):
    """
    One page of List Executions; it iterates, indexes and sizes like its ``items``. What pages
    mean together (the last page, the order) is
    :class:`~airflow_provider_smartmca.client.listing.ListingWalk`'s.

    ``len(page)`` counts this page's items, not ``total`` (every match); an empty page is falsy
    even when ``total`` says more pages exist.

    :param total: the server's count of matches: a hint, never trusted to end a walk.
    :param server_time: the server's clock when it answered (``Date`` header), or None.
    """

    items: tuple[Execution, ...]
    total: int | None
    server_time: datetime | None = None


@dataclass(frozen=True)
class Workflow:
    """A workflow definition. ``raw`` is the JSON object as received."""

    id: str
    entity_type: str
    name: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class WorkflowList(_Items[Workflow]):
    """
    List Workflows: the definitions and the reported total; it iterates, indexes and sizes like
    its ``items``.

    ``len()`` counts the definitions received, not ``total``; an empty list is falsy.
    """

    items: tuple[Workflow, ...]
    total: int | None


@dataclass(frozen=True)
class Accepted:
    """
    The answer to a POST: a trigger's 202, or an application action's 2xx.

    :param execution_id: the execution it started, or None when an action started none (then there
        is nothing to wait for).
    :param raw: the JSON object as received (``{}`` for an empty body).
    :param recovered: the answer was lost and the execution found by the start-once lookup
        (then ``raw`` is that execution, as listed).
    """

    execution_id: str | None
    workflow_id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    recovered: bool = False


# --- parsers ------------------------------------------------------------------------------------

#: A parser's response headers (every parser takes them; most ignore them).
_Headers = Mapping[str, str] | None


def _node(endpoint: str, data: Any, where: str) -> Node:
    """A node at ``where``; an error object reads as ``code: message`` (or whichever it has)."""
    r = _Reader(endpoint, "node", data, where)
    if isinstance(error := r.get("error"), dict):
        code, message = error.get("code"), error.get("message")
        text = f"{code}: {message}" if code and message else message or code
    else:
        text = error
    return Node(str(r.get("name") or r.get("id") or "?"), r.get("status"), str(text or ""))


def parse_execution(endpoint: str, data: Any, headers: _Headers = None, *, where: str = "") -> Execution:
    """Parse an execution object (Get Execution's body, or a List Executions item at ``where``)."""
    fields = _Reader(endpoint, "execution", data, where).read_all()
    at = f"{where}.nodes" if where else "nodes"
    fields["nodes"] = tuple(_node(endpoint, n, f"{at}[{i}]") for i, n in enumerate(fields["nodes"] or ()))
    return Execution(**fields, raw=data)


def _envelope(
    endpoint: str, data: Any, shape: str, parse_item: Callable[..., T]
) -> tuple[tuple[T, ...], int | None]:
    """The items of a list envelope, each parsed at ``data[i]``, and its ``total``."""
    r = _Reader(endpoint, shape, data)
    items = tuple(parse_item(endpoint, item, where=f"data[{i}]") for i, item in enumerate(r.get("data")))
    return items, r.get("total")


def parse_execution_page(endpoint: str, data: Any, headers: Mapping[str, str]) -> ExecutionPage:
    """Parse a List Executions page; the server's clock comes from the ``Date`` header."""
    items, total = _envelope(endpoint, data, "execution list envelope", parse_execution)
    return ExecutionPage(items, total, server_time(headers))


def parse_workflow(endpoint: str, data: Any, headers: _Headers = None, *, where: str = "") -> Workflow:
    """Parse a workflow definition."""
    return Workflow(**_Reader(endpoint, "workflow", data, where).read_all(), raw=data)


def parse_workflow_list(endpoint: str, data: Any, headers: _Headers = None) -> WorkflowList:
    """Parse List Workflows."""
    return WorkflowList(*_envelope(endpoint, data, "list envelope", parse_workflow))


def _accepted(endpoint: str, shape: str, data: Any) -> Accepted:
    r = _Reader(endpoint, shape, data)
    return Accepted(execution_id=r.get("executionId"), workflow_id=r.get("workflowId"), raw=data)


def parse_trigger_response(endpoint: str, data: Any, headers: _Headers = None) -> Accepted:
    """Parse the trigger's 202 (reference). Without ``executionId`` it breaks the contract."""
    return _accepted(endpoint, "trigger response", data)


def parse_action_response(endpoint: str, data: Any, headers: _Headers = None) -> Accepted:
    """
    Parse an application action's 2xx (assumed). An empty body, or one without ``executionId``,
    means the action was done and started nothing to wait for.
    """
    if data is None:
        return Accepted(execution_id=None, raw={})
    return _accepted(endpoint, "action response", data)
