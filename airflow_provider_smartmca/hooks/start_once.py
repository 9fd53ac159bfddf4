"""Start once: a POST that starts an execution is sent at most once, and a lost answer is recovered
only when the server's own history proves which execution the POST started.

The rules, in one place:

1. **Before the POST**, list the entity's executions (the *snapshot*) and note the server's clock
   from the ``Date`` header. The snapshot and the POST's shape form a :class:`StartIntent`, given to
   ``on_intent`` just before sending, so an operator can store it durably: a retry after a worker
   died mid-POST resolves the intent instead of sending again.
2. **The POST is re-sent only when the server surely never received it**: connect refused,
   connect timeout, or a 429 (the one retry predicate, :func:`~.protocol.when_to_retry`).
3. **Any other unknown outcome** (a 5xx, a read timeout, a dropped or unreadable answer, a 202
   without ``executionId``) is looked up, never re-sent. An execution is adopted only when it is
   of the right workflow and not in the snapshot, and there is exactly one such. Executions are
   told apart by the snapshot's ids, never by the worker's clock; the only time window is on the
   server's clock (snapshot ``Date`` less ``clock_skew``), to bound the walk.
4. **List pages are walked without trusting the server's order, nor its ``total``**, up to
   :data:`MAX_PAGES` (:class:`~airflow_provider_smartmca.client.listing.ListingWalk`); the walk
   stops early only while the pages really are newest first, as proved by the server answering
   oldest first when asked. Hitting the cap is ambiguous.
5. **Anything else is ambiguous** (:class:`~airflow_provider_smartmca.errors.SmartMCAAmbiguousTriggerError`):
   no snapshot, no candidate, several, or an action whose workflow is not known (another client may
   act on the same application). An application action may succeed without starting any execution,
   so finding nothing proves nothing; for a trigger it is ambiguous too, since the server may still
   be processing the request.
6. **A start has a time budget** (:class:`StartBudget`), from the connection's settings: the
   snapshot, the POST and the lookup each spend from a :class:`~.protocol.Deadline` of their own.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from airflow_provider_smartmca.client.contract import Accepted, Execution, ExecutionPage
from airflow_provider_smartmca.client.endpoints import ENDPOINTS
from airflow_provider_smartmca.client.listing import ListingWalk
from airflow_provider_smartmca.client.protocol import Deadline, build_request, id_problem, spending
from airflow_provider_smartmca.errors import (
    SmartMCAAmbiguousTriggerError,
    SmartMCAAuthError,
    SmartMCAConnectionError,
    SmartMCAContractError,
    SmartMCAError,
    SmartMCAInvalidResponseError,
    SmartMCAScopeError,
    SmartMCAServerError,
)

if TYPE_CHECKING:
    from airflow_provider_smartmca.client.settings import ClientSettings
    from airflow_provider_smartmca.client.sync import SyncClient

T = TypeVar("T")


class StartHook(Protocol):
    """What start-once needs from :class:`~airflow_provider_smartmca.hooks.smartmca.SmartMCAHook`."""

    @property
    def settings(self) -> ClientSettings: ...
    @property
    def client(self) -> SyncClient: ...
    @property
    def log(self) -> Any: ...
    def patiently(self, read: Callable[..., T], *args: Any, patience: float = ..., **kwargs: Any) -> T: ...
    def list_executions(self, *args: Any, **kwargs: Any) -> ExecutionPage: ...


#: Version of :class:`StartIntent` and :class:`TaskStartRecord` as stored; bump on any change of shape.
RECORD_VERSION = 1
#: Pages of 100 executions walked at most, per snapshot or lookup.
MAX_PAGES = 10
PAGE_SIZE = 100


@dataclass(frozen=True)
class StartBudget:
    """
    The longest a start may take, in seconds, from the connection's settings. Each phase spends
    from its own :class:`~airflow_provider_smartmca.client.protocol.Deadline`: every request's
    timeout is cut to what is left, no backoff sleeps past it, and retries stop there::

        attempt  = timeout + min(connect_timeout, timeout)       # one request; a new connection's
                                                                 # connect comes on top of timeout
        call     = (max_retries + 1) * attempt
                   + max_retries * max(retry_max_wait, retry_after_cap)
        snapshot = (MAX_PAGES + 1) * call                        # the pages and the sort probe
        post     = call
        lookup   = (MAX_PAGES + 1) * call

    The longest a task can take before it sends its POST is ``before_post = snapshot``: an
    operator's own reads before it (a previous try's execution, the workflow check) spend from
    the same deadline. The longest before it fails is ``total = snapshot + post + lookup``. Within
    the snapshot and the lookup, reads ride out a storm (:meth:`~.SmartMCAHook.patiently`) until
    the phase's deadline; the POST is retried only when surely not received, ``max_retries`` times.
    Waiting for the execution comes after, bounded by the wait's own ``timeout``.

    With the defaults (``timeout`` 30, ``connect_timeout`` 10, ``max_retries`` 5,
    ``retry_max_wait`` 30, ``retry_after_cap`` 60): call 540 s, before_post 5,940 s (99 min),
    total 12,420 s (3 h 27 min).
    """

    snapshot: float
    post: float
    lookup: float

    @classmethod
    def of(cls, settings: ClientSettings) -> StartBudget:
        """The budget of a start with these settings."""
        attempt = settings.timeout + min(settings.connect_timeout, settings.timeout)
        retries = settings.max_retries
        call = (retries + 1) * attempt + retries * max(settings.retry_max_wait, settings.retry_after_cap)
        walk = (MAX_PAGES + 1) * call
        return cls(snapshot=walk, post=call, lookup=walk)

    @property
    def before_post(self) -> float:
        """The longest a start takes before its POST is sent."""
        return self.snapshot

    @property
    def total(self) -> float:
        """The longest a start takes before it returns or fails."""
        return self.snapshot + self.post + self.lookup


@dataclass(frozen=True)
class StartRequest:
    """
    A POST that starts an execution, and how to recognise what it starts.

    :param operation: the endpoint name (``trigger_workflow`` or an application action).
    :param body: the JSON body.
    :param entity_type: the entity the execution runs on.
    :param entity_id: the entity's id.
    :param workflow_type: the workflow the POST starts, when known (always for a trigger; for an
        action, ``lookup_workflow_type`` or the workflow of this task's earlier 202).
    :param application_id: the path id of an application action.
    """

    operation: str
    body: dict[str, Any]
    entity_type: str
    entity_id: str
    workflow_type: str | None = None
    application_id: str | None = None


@dataclass(frozen=True)
class StartIntent:
    """
    What a POST about to be sent may start, recorded before sending (durably, by operators).

    :param known_ids: ids of the entity's executions in the snapshot, or None when there is none.
    :param window_start: ISO time on the *server's* clock before which nothing can be the POST's.
    """

    operation: str
    entity_type: str
    entity_id: str
    workflow_type: str | None
    known_ids: tuple[str, ...] | None
    window_start: str | None
    version: int = RECORD_VERSION

    @classmethod
    def from_json(cls, data: Any) -> StartIntent:
        """Read a stored intent; one of another version or shape is refused (see :func:`_stored`)."""
        fields = _stored(data, "start intent", _INTENT_SHAPE)
        known = fields["known_ids"]
        return cls(**{**fields, "known_ids": None if known is None else tuple(known)})


def _is_id(value: Any) -> bool:
    return id_problem(value) is None


def _is_time(value: Any) -> bool:
    with suppress(TypeError, ValueError):
        return bool(datetime.fromisoformat(value))
    return False


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


# What a stored record must hold: every field, each passing its check (and ``version``).
_INTENT_SHAPE: dict[str, Callable[[Any], bool]] = {
    "operation": lambda value: isinstance(value, str) and value in ENDPOINTS,
    "entity_type": _is_id,
    "entity_id": _is_id,
    "workflow_type": _optional(_is_id),
    # Ids the server listed, only compared: any string (a strange one must not cost a recovery).
    "known_ids": _optional(lambda value: isinstance(value, list) and all(isinstance(i, str) for i in value)),
    "window_start": _optional(_is_time),
}
_RECORD_SHAPE: dict[str, Callable[[Any], bool]] = {
    "intent": _optional(lambda value: isinstance(value, dict)),  # then read by StartIntent.from_json
    "execution_id": _optional(_is_id),
    "workflow_id": _optional(lambda value: isinstance(value, str)),
    "response": _optional(lambda value: isinstance(value, dict)),
}


def _stored(data: Any, what: str, shape: dict[str, Callable[[Any], bool]]) -> dict[str, Any]:
    """
    The fields of a ``what`` read from ``task_state_store``: of this version, with exactly
    ``shape``'s fields, each passing its check.

    :raises SmartMCAAmbiguousTriggerError: anything else. An earlier try may have sent its POST,
        and a record that cannot be trusted cannot tell: the task fails, and is not retried.
    """
    version = data.get("version") if isinstance(data, dict) else None
    if type(version) is not int or version != RECORD_VERSION:
        problem = "of another version"
    else:
        fields = {k: v for k, v in data.items() if k != "version"}
        wrong = [name for name, check in shape.items() if name not in fields or not check(fields[name])]
        wrong += [str(name)[:40] for name in fields if name not in shape]
        if not wrong:
            return fields
        problem = f"fields missing, unknown or of the wrong kind: {', '.join(sorted(wrong)[:10])}"
    raise SmartMCAAmbiguousTriggerError(
        f"task_state_store holds a SmartMCA {what} this provider version cannot read ({problem}); an "
        "earlier try may have started an execution. Check SmartMCA before clearing this task.",
        candidates=[],
    )


#: Called with the intent before a POST, and with None once it surely did nothing.
OnIntent = Callable[[StartIntent | None], None]


# --- walking the server's history ----------------------------------------------------------------


def walk(
    hook: StartHook, filters: dict[str, str], since: datetime | None = None, skew: float | None = None
) -> tuple[list[Execution], bool, datetime | None]:
    """
    The executions matching ``filters`` started at or after ``since`` (an execution not started
    yet counts), walking pages newest first by the rules of
    :class:`~airflow_provider_smartmca.client.listing.ListingWalk` (a short page is the last; the
    order is proved before it ends the walk), each page read patiently.

    :param since: a time on the server's clock, or None.
    :param skew: with no ``since``, start the window ``skew`` seconds before the server's clock at
        the first page (its ``Date`` header); without that header, nothing is left out.
    :return: the executions, whether the walk saw everything it needed (False: the page cap was
        hit), and the server's clock at the first page.
    """
    walk = ListingWalk(PAGE_SIZE, MAX_PAGES, since=since, skew=skew)
    found: list[Execution] = []
    while (fetch := walk.next()) is not None:
        query: dict[str, Any] = dict(filters, page=fetch.page, limit=PAGE_SIZE)
        query.update(sort_by="startedAt", sort_order=fetch.order)
        found += walk.feed(hook.patiently(hook.list_executions, **query))
    return found, walk.complete, walk.clock


def _filters(intent: StartIntent | StartRequest) -> dict[str, str]:
    """The entity's executions, of the workflow when known."""
    names = ("entity_type", "entity_id", "workflow_type")
    return {name: getattr(intent, name) for name in names if getattr(intent, name)}


def take_snapshot(hook: StartHook, request: StartRequest) -> StartIntent:
    """
    List the entity's recent executions before the POST. Without the read scope there is no
    snapshot (then any unknown outcome is ambiguous); a transient failure is ridden out patiently,
    within the start's budget, and then raised, so that nothing is sent without a snapshot that
    could have been had.
    """
    skew = hook.settings.clock_skew
    try:
        executions, complete, clock = walk(hook, _filters(request), skew=skew)
        why = f"the entity has more than {MAX_PAGES * PAGE_SIZE} recent executions"
    except (SmartMCAScopeError, SmartMCAAuthError) as exc:
        executions, complete, clock, why = [], False, None, f"cannot list executions before it ({exc})"
    if not complete:
        hook.log.warning("%s: %s; if its answer is lost, it cannot be recovered", request.operation, why)
    known = tuple(sorted(e.execution_id for e in executions)) if complete else None
    window_start = (clock - timedelta(seconds=skew)).isoformat() if clock and complete else None
    return StartIntent(
        request.operation, request.entity_type, request.entity_id, request.workflow_type, known, window_start
    )


def recover(hook: StartHook, intent: StartIntent, cause: str) -> Accepted:
    """
    Find the execution a POST with an unknown outcome started, or raise.

    Its reads spend from the caller's deadline (:func:`start_once`: the lookup's budget; an
    operator: its budget before the POST).

    :param cause: why the outcome is unknown, for the messages.
    :raises SmartMCAAmbiguousTriggerError: the server's history cannot prove which execution it is.
    """

    def ambiguous(reason: str, candidates: list[Execution]) -> SmartMCAAmbiguousTriggerError:
        listed = ", ".join(f"{c.execution_id} ({c.workflow_id}, {c.status})" for c in candidates) or "none"
        return SmartMCAAmbiguousTriggerError(
            f"{cause}. The {intent.operation} request for {intent.entity_type} {intent.entity_id} may or may not "
            f"have taken effect, and {reason} (candidates: {listed}). Check SmartMCA before clearing this "
            "task; it is not retried, so that nothing is done twice.",
            candidates=[c.raw for c in candidates],
            operation=intent.operation,
        )

    if intent.known_ids is None:
        raise ambiguous("there was no snapshot of the executions before it to tell a new one by", [])
    since = datetime.fromisoformat(intent.window_start) if intent.window_start else None
    try:
        executions, complete, _ = walk(hook, _filters(intent), since)
    except SmartMCAError as exc:
        raise ambiguous(f"the lookup failed too ({exc})", []) from exc
    known = set(intent.known_ids)
    new = [e for e in executions if e.execution_id not in known]
    if not complete:
        raise ambiguous(f"the lookup hit its cap of {MAX_PAGES * PAGE_SIZE} executions", new)
    if intent.workflow_type is None:
        raise ambiguous(
            "the workflow this action starts is not known, so an execution started by another client "
            "cannot be told apart (set lookup_workflow_type)",
            new,
        )
    mine = [e for e in new if e.workflow_id in (None, intent.workflow_type)]
    if len(mine) != 1:
        raise ambiguous(f"{len(mine)} new execution(s) of {intent.workflow_type} were found", mine)
    found = mine[0]
    hook.log.warning("%s; execution %s was started by the request, using it", cause, found.execution_id)
    return Accepted(found.execution_id, found.workflow_id, found.raw, recovered=True)


def start_once(hook: StartHook, request: StartRequest, on_intent: OnIntent | None = None) -> Accepted:
    """
    Send a POST that starts an execution, at most once; on an unknown outcome, :func:`recover`.

    :param on_intent: called with the :class:`StartIntent` just before the POST is sent, and with
        None when the server surely did not act on it (so a later try may send it again).
    """
    tell = on_intent or (lambda intent: None)
    path_params = {"application_id": request.application_id} if request.application_id else None
    # Checked before any GET: the scope, the path id.
    build_request(hook.settings, request.operation, path_params=path_params, body=request.body)
    budget = StartBudget.of(hook.settings)
    with spending(Deadline.after(budget.snapshot)):  # an operator's deadline, when shorter
        intent = take_snapshot(hook, request)
    tell(intent)
    try:
        with spending(Deadline.after(budget.post), inherit=False):
            return hook.client.call(request.operation, path_params=path_params, body=request.body)
    except (SmartMCAConnectionError, SmartMCAServerError, SmartMCAInvalidResponseError) as exc:
        if isinstance(exc, SmartMCAConnectionError) and not exc.request_sent:
            tell(None)  # it surely did nothing
            raise
        if isinstance(exc, SmartMCAContractError) and request.operation != "trigger_workflow":
            raise  # a 2xx to an action: it was done, and its answer is not what we expect
        with spending(Deadline.after(budget.lookup), inherit=False):
            return recover(hook, intent, str(exc))
    except SmartMCAError:
        tell(None)  # a 4xx or a 429: the server refused it, nothing was done
        raise


# --- what a task keeps across tries ---------------------------------------------------------------


@dataclass(frozen=True)
class TaskStartRecord:
    """
    What one task keeps in ``task_state_store`` (Airflow >= 3.3) across tries, under one key.

    :param intent: a POST about to be sent, or sent, whose answer is not recorded yet: a try that
        finds it resolves it with :func:`recover` instead of sending again.
    :param execution_id: the execution this task started.
    :param workflow_id: that execution's workflow: tells a later action which workflow it starts.
    :param response: the answer to the POST, returned again by a retry that reattaches.
    """

    intent: StartIntent | None = None
    execution_id: str | None = None
    workflow_id: str | None = None
    response: dict[str, Any] | None = None
    version: int = RECORD_VERSION

    @classmethod
    def answered(cls, accepted: Accepted, workflow_id: str | None = None) -> TaskStartRecord:
        """The record of a POST answered or recovered; ``workflow_id`` when the answer names none."""
        return cls(
            execution_id=accepted.execution_id,
            workflow_id=accepted.workflow_id or workflow_id,
            response=accepted.raw,
        )


class TaskStartStore:
    """
    The one owner of this provider's ``task_state_store`` key. Without a store (Airflow < 3.3,
    or outside a task) nothing is kept, and :attr:`durable` is False.

    Airflow's ``ResumableJobMixin`` keeps one external id with the same retry semantics; it is not
    used because it has no room for the pre-POST intent, nor for deferrable waits.

    :param store: ``context["task_state_store"]``, or None.
    """

    KEY = "smartmca_start"

    def __init__(self, store: Any) -> None:
        self._store = store

    @property
    def durable(self) -> bool:
        """Whether records survive the try (a ``task_state_store`` exists)."""
        return self._store is not None

    def load(self) -> TaskStartRecord:
        """The record of earlier tries (empty when none); one of another version or shape is refused."""
        data = self._store.get(self.KEY) if self._store is not None else None
        if data is None:
            return TaskStartRecord()
        fields = _stored(data, "start record", _RECORD_SHAPE)
        if fields["intent"] is not None:
            fields["intent"] = StartIntent.from_json(fields["intent"])
        return TaskStartRecord(**fields)

    def save(self, record: TaskStartRecord) -> None:
        """Keep ``record`` durably, through JSON: the store takes JSON values only (a no-op without one)."""
        if self._store is not None:
            self._store.set(self.KEY, json.loads(json.dumps(asdict(record))))
