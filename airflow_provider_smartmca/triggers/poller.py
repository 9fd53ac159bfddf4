"""ExecutionPoller: one poller per connection serves every ExecutionTrigger of a triggerer.

A wait that GETs its own execution every poll interval makes a thousand waits cost the
SmartMCA API a thousand requests a round. The waits of one event loop (in a triggerer: of the
process) that share a connection (base URL, key and settings) register with one poller
instead, which learns many executions' states per request from List Executions.

**Rounds.** Each wait asks for its next *reading* one poll interval after its previous one; the
poller serves every wait that is due (within ``JITTER`` of its interval) in one round, so waits
with the same interval settle into one round per interval. A newcomer joins its group's next
round when that comes within its first interval. Per group of waits sharing a workflow type
(the List Executions ``workflow_type`` filter), a round:

1. chooses, from the lists' length (last round's, or the first page's ``total``: an estimate
   only, since a full page always has a next one and only a short page is the last), whichever is
   cheaper: paging through the ``pending`` and ``running`` lists (``limit=100``), or one GET
   per awaited execution. One lone wait, or a tenant whose active executions far outnumber our
   waits, keeps one GET per execution per round. The choice is made again before every page,
   so a list that turns out long costs at most its first page; GET rounds look at the lists
   again every :data:`REPROBE_ROUNDS` rounds;
2. reads the lists (``pending`` is skipped when every awaited execution was last seen
   ``running``: an execution never goes back). A listed execution with an active status
   (pending, running) is still running: that is its reading;
3. GETs every awaited execution the lists did not show as active. **Absence from a list never
   ends a wait**: only a GET says how an execution ended. A list that changes between pages
   (an execution ending shifts the later pages) or ignores its filters only costs extra GETs.
   **Nor can a list hold a wait**: an execution listed the same (status and progress) for
   :data:`CONFIRM_ROUNDS` list rounds in a row is read with its own GET the next round, so a
   replica that keeps listing an ended execution as running delays its end by at most that.

Waits without a workflow type (kwargs from before it was passed, or an execution whose
``workflowId`` the server did not report) are not coalesced: an unfiltered list pages through
the whole tenant's active executions, and such waits drain with their deadlines. They poll
alone with their own GETs, through the same :class:`~airflow_provider_smartmca.triggers.budget.RequestBudget`.

**What each wait keeps.** Its reading (an Execution, or the error of its GET or of the list)
goes back to the trigger, which decides as for its own GET (:class:`~airflow_provider_smartmca.client.executions.ExecutionWatch`):
the same events, deadlines, backoff of transient errors, fail-closed statuses and 401 re-read.
A reading identical (status and progress) to the one the wait last judged "keep waiting" is not
handed over again: the wait would only ask for the next one, so its task is not woken for nothing.
A wait cancelled (task cleared, triggerer shutdown) only leaves; the others never notice.

**Failure.** A list answer that breaks the contract or is refused (400/403/404: a server that
does not support the filter) makes this poller serve by GETs for the rest of its life. If the
poller itself fails (an unexpected exception) or stalls (no progress for two request timeouts
and two intervals, outside a 429 pause), every wait it serves gets :class:`PollerUnavailable`
and polls alone from then on: a poller never kills or stalls a wait.

**Lifetime.** Pollers are kept by their event loop's
:class:`~airflow_provider_smartmca.triggers.context.TriggererContext`; the last wait to leave
stops its poller, which releases the shared HTTP session. Nothing crosses event loops or
outlives the waits.

**Requests.** Every request goes through the key's
:class:`~airflow_provider_smartmca.triggers.budget.RequestBudget`: a 429 pauses every wait on
the key once, and concurrency is bounded. Metrics (Airflow ``Stats``): ``smartmca.requests.<kind>``,
``smartmca.rate_limited``, ``smartmca.poller.waits_served.{list,get}`` (readings delivered),
``smartmca.poller.misses`` (listed as absent, still running), ``smartmca.poller.confirmations``
(listed unchanged, read by GET), ``smartmca.poller.fallbacks``
(waits that had to poll alone), ``smartmca.poller.lists_unusable``.

**Why not Airflow 3.3's shared streams** (``BaseEventTrigger.shared_stream_key``,
``airflow/triggers/shared_stream.py``): they serve only ``BaseEventTrigger`` subclasses, and fit
task waits poorly. The shared stream is opened with one trigger's kwargs, so it cannot know which
executions the other subscribers await; a stream that raises fails every subscriber, where one
broken poll must not end a thousand waits; and event triggers opt out of the triggerer's queue.
They also exist only from 3.3, and the provider supports every Airflow 3.x: a provider-level
poller per event loop works on all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_smartmca.client import protocol
from airflow_provider_smartmca.client.contract import ACTIVE_STATUSES, Execution
from airflow_provider_smartmca.client.executions import progress
from airflow_provider_smartmca.client.listing import ListingWalk
from airflow_provider_smartmca.errors import SmartMCAAuthError, SmartMCAError
from airflow_provider_smartmca.triggers.budget import incr

if TYPE_CHECKING:
    from airflow_provider_smartmca.client.aio import AsyncClient
    from airflow_provider_smartmca.client.settings import ClientSettings

log = logging.getLogger(__name__)

#: Items per list page (the API's maximum).
PAGE_LIMIT = 100
#: Pages read per status per round, at most; beyond, GETs serve the rest.
MAX_PAGES = 50
#: A group polled by GETs looks at the lists again after this many rounds.
REPROBE_ROUNDS = 10
#: A wait whose listed reading (status and progress) was the same for this many list rounds in
#: a row is read with its own GET the next round, so a list that never shows an end (a replica
#: behind) holds a wait at most this many rounds. Costs at most one GET per wait every
#: ``CONFIRM_ROUNDS + 1`` rounds on top of the lists, for waits whose execution does not move.
CONFIRM_ROUNDS = 10
#: A wait is served by a round that starts up to this fraction of its interval early.
JITTER = 0.1
#: Concurrent GETs of one round. A handful keep a server busy; each more costs a TLS connection
#: (CPU for its handshake, ~0.3 MB while it stays open in the pool).
GET_WORKERS = 8


class PollerUnavailable(Exception):
    """The shared poller cannot serve this wait (it failed or stalled): poll alone."""


@dataclass(eq=False, slots=True)
class Ticket:
    """
    One wait's registration with a poller. Made by :meth:`ExecutionPoller.join`; ended by :meth:`leave`.

    :param poller: the poller serving it.
    :param execution_id: the execution awaited.
    :param group: the wait's group (its workflow type).
    :param interval: the wait's poll interval, seconds.
    :param deadline: absolute epoch deadline, or None.
    """

    poller: ExecutionPoller
    execution_id: str
    group: _Group
    interval: float
    deadline: float | None
    base: float | None = None  # loop time of the round that gave the last reading
    due: float = math.inf  # loop time of the next reading asked for
    future: asyncio.Future[Any] | None = None
    timer: asyncio.TimerHandle | None = None
    last: tuple[str, str] | None = None  # (status, progress) last handed over, None after an error

    def __repr__(self) -> str:
        return f"Ticket({self.execution_id!r}, workflow_type={self.group.workflow_type!r})"

    async def read(self, after: float | None) -> Execution | None:
        """
        The next reading of the execution. A first reading joins the group's next round when that
        comes within the interval, else (like a lone wait's first poll) a random point of the first
        interval, so a thousand waits deferred together do not start at one instant in every triggerer.

        :param after: seconds after the previous reading's round (None for the first reading:
            the group's next round).
        :return: the execution as listed or read, or None when the wait's deadline passed.
        :raises SmartMCAError: the GET of this execution, or the list that should show it, failed.
        :raises PollerUnavailable: the poller failed or stalled; poll alone.
        """
        poller, loop = self.poller, self.poller.loop
        now = loop.time()
        if after is not None and self.base is not None:
            self.due = self.base + after
        elif (planned := self.group.next_round) is not None and now <= planned <= now + self.interval:
            self.due = planned  # the group's next round
        else:
            self.due = self.group.next_round = now + random.uniform(0, self.interval)
        self.future = future = loop.create_future()
        poller._check(self)  # fails at once if the poller has failed; else sets the wait's timer
        if self.due < poller._next_wake:
            poller._wake.set()
        try:
            reading = await future
        finally:
            if self.timer is not None:
                self.timer.cancel()
            self.future = self.timer = None
            self.due = math.inf
        if isinstance(reading, BaseException):
            raise reading.with_traceback(None)  # one error object serves several waits
        return reading  # type: ignore[no-any-return]

    async def leave(self) -> None:
        """
        Stop being served; the last wait to leave stops the poller and waits for it to release the
        HTTP session, so nothing is left open behind the waits. ``asyncio.wait`` neither raises the
        poller's end (its own failure was logged by ``_ended``) nor cancels it when this wait itself
        is cancelled.
        """
        poller, group = self.poller, self.group
        if self not in (same := group.tickets.get(self.execution_id, [])):
            return
        same.remove(self)
        poller.waits -= 1
        if not same:
            del group.tickets[self.execution_id]
            for table in (group.last_status, group.listed, group.gets):
                table.pop(self.execution_id, None)
            if not group.tickets:
                del poller._groups[group.workflow_type]
        if poller.waits:
            return
        poller._unregister()
        poller._task.cancel()
        await asyncio.wait([poller._task])


class _Group:
    """
    The waits of one poller that share a workflow type, what their rounds learned, and the round
    being served (a group has one round at a time).

    ``listed`` keeps each execution's last listed (status, progress), and for how many list rounds
    in a row. :meth:`begin` sets the round's: its due waits by execution id (``wanted``), its start
    (loop time), the executions read by GET whatever the lists say (``confirm``: listed the same
    for :data:`CONFIRM_ROUNDS` list rounds in a row), whether it pages through the lists
    (``listing``), and its metrics, ``smartmca.poller.<name>`` (``served``).
    """

    def __init__(self, workflow_type: str) -> None:
        self.workflow_type = workflow_type
        self.tickets: dict[str, list[Ticket]] = {}  # execution id -> its waits
        self.last_status: dict[str, str] = {}  # execution id -> status of its last reading
        self.listed: dict[str, tuple[tuple[str, str], int]] = {}
        self.gets: dict[str, protocol.PreparedRequest] = {}  # execution id -> its GET, built once
        self.pages: dict[str, int] = {}  # status -> pages of its list last time
        self.misses = 0  # last list round: awaited executions absent from the lists yet active
        self.get_rounds = 0  # GET rounds since the lists were last looked at
        self.next_round: float | None = None  # loop time of the group's next round, if planned

    def begin(self, wanted: dict[str, list[Ticket]], start: float, lists_usable: bool) -> None:
        """
        Start a round for the due waits ``wanted``: read by lists, or by one GET per execution,
        whichever is expected to cost fewer requests.
        """
        self.wanted, self.start = wanted, start
        self.next_round = start + min(t.interval for tickets in wanted.values() for t in tickets)
        self.confirm = {i for i in wanted if self.listed.get(i, ((), 0))[1] >= CONFIRM_ROUNDS}
        self.served = dict.fromkeys(("waits_served.list", "waits_served.get", "misses"), 0)
        self.served["confirmations"] = len(self.confirm)
        if self.get_rounds >= REPROBE_ROUNDS:
            self.pages.clear()  # look again: the tenant's active executions may have changed
            self.misses = 0
        ids = wanted.keys() - self.confirm
        self.listing = lists_usable and len(ids) > 1 and self.cheaper(ids, self.statuses(ids))
        self.get_rounds = 0 if self.listing else self.get_rounds + 1

    def deliver(self, execution_id: str, reading: Any, how: str) -> None:
        """
        Record a reading (``how``: listed, or read by ``get``; an execution or an error) and hand
        it to the round's waits on ``execution_id`` at once: a wait whose execution was listed, or
        read early in a round of many, does not wait for the rest of the round.

        An error changes no count: a list that fails now and then cannot reset what it held, and
        a confirming GET that fails is sent again the next round. A reading identical to the one a
        wait last judged "keep waiting" is not handed over: it would only ask again, one interval
        after this round, so its task is not woken for nothing.
        """
        seen = None
        if isinstance(reading, Execution):
            seen = (reading.status, progress(reading))
            self.last_status[execution_id] = reading.status
            before, rounds = self.listed.pop(execution_id, ((), 0))
            if how == "list":
                self.listed[execution_id] = (seen, rounds + 1 if before == seen else 1)
            elif self.listing and execution_id not in self.confirm and reading.status in ACTIVE_STATUSES:
                self.served["misses"] += 1  # absent from the lists, yet running
        for ticket in self.wanted[execution_id]:
            ticket.base = self.start
            if (future := ticket.future) is None or future.done():
                continue
            self.served[f"waits_served.{how}"] += 1
            if seen is not None and seen == ticket.last:  # nothing new: not woken (see the docstring)
                ticket.due = self.start + ticket.interval
                continue
            ticket.last = seen
            future.set_result(reading)

    def statuses(self, ids: Iterable[str]) -> tuple[str, ...]:
        """
        The lists that can show ``ids``; ``pending`` first: an execution moving on shows up in the
        next. An execution never goes back to pending: when every awaited one was last seen
        running, the pending list cannot show any of them.
        """
        running = all(self.last_status.get(i) == "running" for i in ids)
        return ("running",) if running else ("pending", "running")

    def cheaper(self, ids: Collection[str], statuses: tuple[str, ...], index: int = 0, page: int = 1) -> bool:
        """
        Whether the list pages left, from ``page`` of ``statuses[index]`` on, are expected to cost
        fewer requests than one GET per execution of ``ids``. A list not yet seen takes one page;
        the awaited executions it missed last time cost their GETs on top.
        """
        left = sum(self.pages.get(status, 1) for status in statuses[index:]) - page + 1
        return left + self.misses < len(ids)


class ExecutionPoller:
    """
    Serves every wait of one event loop on one connection (see the module docstring).

    Made by :meth:`~airflow_provider_smartmca.triggers.context.TriggererContext.poller`.

    :param context: the loop's :class:`~airflow_provider_smartmca.triggers.context.TriggererContext`
        (not imported: it imports this module): the request budget of the key, the shared HTTP session,
        and its registry of pollers, where this one is kept under ``key`` until it stops or fails.
    :param settings: the connection's client settings.
    """

    def __init__(self, context: Any, settings: ClientSettings, key: Any) -> None:
        self.settings, self.budget, self.key = settings, context.budget(settings), key
        self._session, self._registry = context.session, context.pollers
        self.loop = asyncio.get_running_loop()
        self.failure: BaseException | None = None
        self.lists_unusable: str | None = None  #: Why lists are unused (refused, drifted), or None.
        self._groups: dict[str, _Group] = {}
        self.waits = 0  #: How many waits are registered.
        self._wake = asyncio.Event()
        self._next_wake = math.inf
        self._progress = self.loop.time()
        self._task = self.loop.create_task(self._run())
        self._task.add_done_callback(self._ended)

    def __repr__(self) -> str:
        return f"ExecutionPoller(base_url={self.settings.base_url!r}, waits={self.waits})"

    def join(self, execution_id: str, workflow_type: str, interval: float, deadline: float | None) -> Ticket:
        """
        Register a wait; call its ticket's ``leave()`` when done, whatever happens.

        :param execution_id: the execution awaited.
        :param workflow_type: the execution's workflow type (the list filter that groups waits).
        :param interval: seconds between readings.
        :param deadline: absolute epoch deadline, or None.
        """
        group = self._groups.setdefault(workflow_type, _Group(workflow_type))
        ticket = Ticket(self, execution_id, group, interval, deadline)
        group.tickets.setdefault(execution_id, []).append(ticket)
        self.waits += 1
        return ticket

    def _check(self, ticket: Ticket) -> None:
        """
        Check a wait that asks for a reading (when it asks, then by its timer): its deadline
        passed (None), or the poller failed or stalled (fall back: no progress for two request
        timeouts and two intervals, outside a 429 pause); else set its timer for the next check.
        """
        if (future := ticket.future) is None or future.done():
            return
        now, grace = self.loop.time(), 2 * self.settings.timeout + 2 * ticket.interval
        left = math.inf if ticket.deadline is None else ticket.deadline - time.time()
        idle = now - max(self._progress, ticket.due)
        if left <= 0.01:
            future.set_result(None)
        elif self.failure is not None or (idle > grace and self.budget.pause_left() == 0):
            stalled = f"made no progress for {idle:.0f} s"
            why = stalled if self.failure is None else f"failed: {type(self.failure).__name__}"
            future.set_exception(PollerUnavailable(f"the shared poller {why}"))
        else:  # at the deadline, or when a stall would show
            when = min(max(ticket.due, now) + grace, now + left)
            ticket.timer = self.loop.call_at(when, self._check, ticket)

    def _pending(self) -> list[Ticket]:
        """The waits asking for a reading."""
        tickets = (t for group in self._groups.values() for same in group.tickets.values() for t in same)
        return [t for t in tickets if t.future is not None and not t.future.done()]

    def _unregister(self) -> None:
        if self._registry.get(self.key) is self:
            del self._registry[self.key]

    async def _run(self) -> None:
        async with self._session(self.settings) as client:
            while self.waits:
                self._wake.clear()
                self._next_wake = due = min((t.due for t in self._pending()), default=math.inf)
                delay = due - self.loop.time()
                with contextlib.suppress(TimeoutError):  # until the first wait is due, or an earlier one asks
                    if delay > 0:
                        await asyncio.wait_for(self._wake.wait(), None if delay == math.inf else delay)
                        continue
                await self._round(client)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """The poller's task ended: normal when its last wait left; otherwise a failure."""
        if task.cancelled() or (task.exception() is None and not self.waits):
            return
        self.failure = exc = task.exception() or RuntimeError("the shared poller stopped with waits left")
        msg = "The SmartMCA shared poller for %s failed; its %d wait(s) poll alone from now on"
        log.error(msg, self.settings.base_url, self.waits, exc_info=exc)
        self._unregister()  # new waits get a new poller
        for ticket in self._pending():
            self._check(ticket)

    async def _round(self, client: AsyncClient) -> None:
        start = self._progress = self.loop.time()
        wanted: dict[_Group, dict[str, list[Ticket]]] = {}
        for t in self._pending():
            if t.due <= start + JITTER * t.interval:
                wanted.setdefault(t.group, {}).setdefault(t.execution_id, []).append(t)
        await asyncio.gather(*(self._serve(client, group, due, start) for group, due in wanted.items()))

    async def _serve(
        self, client: AsyncClient, group: _Group, wanted: dict[str, list[Ticket]], start: float
    ) -> None:
        """One round of one group: lists, then GETs of what they did not settle; each wait gets its reading."""
        group.begin(wanted, start, self.lists_unusable is None)
        try:
            unseen = set(wanted)
            if group.listing:
                unseen = await self._list(client, group, wanted.keys() - group.confirm) | group.confirm
            await self._get_each(client, group, unseen)
            if group.listing:
                group.misses = group.served["misses"]  # what the next choice must count in
        finally:  # also when the last wait, served early in the round, stopped the poller
            for name, count in group.served.items():
                incr(f"poller.{name}", count)

    async def _send(
        self, client: AsyncClient, request: protocol.PreparedRequest, timeout: float | None
    ) -> Any:
        """One request through the key's budget; an answer is progress."""
        raw = await self.budget.send(client, request, timeout=timeout)
        self._progress = self.loop.time()
        return protocol.parse_response(request, raw, self.settings)

    async def _list(self, client: AsyncClient, group: _Group, unseen: set[str]) -> set[str]:
        """
        Page through the active lists, handing over what they show as active; return the rest.
        The choice of lists over GETs is made again before every page (the first as ``begin``
        made it): paging goes on only while it stays cheaper.
        """
        statuses = group.statuses(unseen)
        timeout = _time_left(t for tickets in group.wanted.values() for t in tickets)
        for index, status in enumerate(statuses):
            walk = ListingWalk(PAGE_LIMIT, MAX_PAGES)
            while unseen and (fetch := walk.next()) is not None:
                if not group.cheaper(unseen, statuses, index, fetch.page):
                    return unseen
                query = protocol.list_executions_query(
                    workflow_type=group.workflow_type, status=status, page=fetch.page, limit=PAGE_LIMIT
                )
                request = protocol.build_request(self.settings, "list_executions", query=query)
                try:
                    result = await self._send(client, request, timeout)
                except SmartMCAError as exc:
                    final = protocol.when_to_retry(exc) is protocol.Retry.NEVER
                    if isinstance(exc, SmartMCAAuthError) or not final:
                        for execution_id in unseen:  # transient, or 401: the waits it did not answer get it
                            group.deliver(execution_id, exc, "list")
                        return set()
                    if self.lists_unusable is None:  # refused or drifted: GETs from now on
                        self.lists_unusable = str(exc)
                        incr("poller.lists_unusable")
                        log.warning(
                            "SmartMCA List Executions cannot serve the waits (%s); each wait is read "
                            "with its own GET from now on",
                            exc,
                        )
                    return unseen
                for item in walk.feed(result):
                    if item.execution_id in unseen and item.status in ACTIVE_STATUSES:
                        unseen.discard(item.execution_id)
                        group.deliver(item.execution_id, item, "list")
                # total only estimates pages: a full page always has a next, a short one is the last.
                group.pages[status] = max(1, min(walk.pages_expected, MAX_PAGES))
                del result
        return unseen

    async def _get_each(self, client: AsyncClient, group: _Group, ids: set[str]) -> None:
        """GET each execution of ``ids``, a bounded number at once, and hand each reading over."""
        queue = iter(sorted(ids))

        async def worker() -> None:
            for execution_id in queue:
                if (request := group.gets.get(execution_id)) is None:
                    request = group.gets[execution_id] = protocol.build_request(
                        self.settings, "get_execution", path_params={"execution_id": execution_id}
                    )
                reading: Any
                try:
                    reading = await self._send(client, request, _time_left(group.wanted[execution_id]))
                except SmartMCAError as exc:
                    reading = exc
                group.deliver(execution_id, reading, "get")

        await asyncio.gather(*(worker() for _ in range(min(GET_WORKERS, len(ids)))))


def _time_left(tickets: Iterable[Ticket]) -> float | None:
    """The longest time any of ``tickets`` may still wait (None: one has no deadline)."""
    deadlines = [ticket.deadline for ticket in tickets]
    return None if None in deadlines else max(0.001, max(d or 0.0 for d in deadlines) - time.time())
