"""ExecutionEventTrigger: start DAGs when SmartMCA executions end (an ``AssetWatcher`` trigger).

The reference lets a client list executions filtered by ``status`` (and workflow, entity type),
sorted by ``startedAt``; nothing lists them by the time they *ended*. An execution that ends now
may have started an hour ago, deep in the list. So each poll reads three things, all on the
server's clock, never the triggerer's (the ``Date`` header, or the newest timestamp listed when
that is earlier: a ``Date`` ahead of the timestamps must not move the windows past them):

1. **the active lists** (``pending``, ``running``): which executions may end later. Their ids
   are the watermark's ``active`` set;
2. **the window** of each watched final status, newest started first, back to the previous
   poll (less a margin for late-visible rows): executions that started *and* ended between two
   polls, and tracked ones that just ended;
3. **one GET** for each tracked execution that left the active lists but was not in a window:
   it ended (or the list shifted under paging: then it is still active and stays tracked).

An execution fires when it reaches a watched status *after the watcher started*: history is not
backfilled. Delivery (see ``docs/guide/events.md``):

* **Nothing is lost** across polls, restarts and several triggerers: the watermark
  (:class:`WatermarkRecord`: the server time of the last poll, the ids still active then, and
  the ids already fired that a window can still list) is kept in Airflow's ``asset_state_store``
  (3.3+). Any final item in a window that has not fired yet fires; what was final at the first
  poll is recorded as already seen, so history is not backfilled.
* **At most once more per triggerer crash.** Airflow persists a yielded event after the
  generator moves on, so the watermark covering a poll's events is saved only at the start of
  the next poll: a crash in between repeats that one poll's events, never loses them.
* Where Airflow keeps no watcher state (before 3.3, or ``dag.test``) the watermark lives in
  memory; a (re)start looks back ``restart_lookback`` seconds (see the class docstring).

A storm, a 429 or a contract error only delays a poll: the watermark moves only after a whole
poll succeeded. Every request goes through the key's
:class:`~airflow_provider_smartmca.triggers.budget.RequestBudget`, shared with the execution waits.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.exceptions import AirflowException
from airflow.triggers.base import BaseEventTrigger, TriggerEvent

import airflow_provider_smartmca.triggers.execution as common
from airflow_provider_smartmca import errors
from airflow_provider_smartmca.client import contract, protocol
from airflow_provider_smartmca.client.contract import ACTIVE_STATUSES, SUCCESS_STATUS, Execution
from airflow_provider_smartmca.client.executions import fields_json
from airflow_provider_smartmca.client.listing import ListingWalk
from airflow_provider_smartmca.client.settings import check_number

if TYPE_CHECKING:
    from airflow_provider_smartmca.client.aio import AsyncClient
    from airflow_provider_smartmca.client.settings import ClientSettings
    from airflow_provider_smartmca.triggers.budget import RequestBudget

_OP = "ExecutionEventTrigger"
#: Final statuses a watcher may report.
WATCHABLE_STATUSES = (SUCCESS_STATUS, *sorted(contract.FAILED_STATUSES))
#: The ``asset_state_store`` key of the watermark.
STATE_KEY = "smartmca_execution_watermark"
#: The window reaches this far before the previous poll: rows that become visible late (a
#: replica behind, a transaction committed after our read) and the Date header's 1 s grain.
MARGIN = timedelta(seconds=120)
PAGE_LIMIT = 100
#: Pages per window and status: 5,000 executions that started and ended between two polls.
MAX_WINDOW_PAGES = 50
#: Pages per active status: 1,000 pending and 1,000 running executions tracked at most (the
#: watermark stays under Airflow's 64 KB state value limit).
MAX_ACTIVE_PAGES = 10
#: GETs per poll for executions that left the active lists; the rest wait for the next poll.
MAX_GETS = 200
#: Reads of a failing state store at start, before looking back instead.
LOAD_ATTEMPTS = 4
GONE = "gone"  # the reading of an execution that answers 404
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # a stamp for what has none: pruned first
_ACTIVE_CAPPED = (
    "match its filters; only the newest are tracked, and one of the others that ends may be missed. "
    "Narrow the filters."
)
_WINDOW_CAPPED = "started since its last poll; the oldest of them were not read and will not fire"
_EARLIEST = datetime.min.replace(tzinfo=UTC)
#: The event payload's keys (:func:`~airflow_provider_smartmca.client.executions.fields_json`).
_PAYLOAD = (
    "executionId",
    "workflowId",
    "workflowName",
    "entityType",
    "entityId",
    "status",
    "startedAt",
    "completedAt",
)


@dataclass(frozen=True)
class WatermarkRecord:
    """
    Where a watcher stands, on the server's clock; stored as JSON in ``asset_state_store``.

    :param since: the server's time at the start of the last complete poll (:meth:`_Poll.clock`);
        None while the server has listed nothing at all: then everything listed later is newer.
    :param active: executions pending or running then: they may still end and fire.
    :param fired: executions already fired whose start is still inside the window, by start time.
    """

    VERSION = 1

    since: datetime | None
    active: frozenset[str] = frozenset()
    fired: dict[str, datetime] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        since = None if self.since is None else self.since.isoformat()
        fired = {k: v.isoformat() for k, v in sorted(self.fired.items())}
        return {"version": self.VERSION, "since": since, "active": sorted(self.active), "fired": fired}

    @classmethod
    def from_json(cls, data: Any) -> WatermarkRecord:
        """
        Read a stored record.

        :raises ValueError: not a record of this version and shape (the caller looks back, loudly).
        """
        if not isinstance(data, dict) or data.get("version") != cls.VERSION:
            raise ValueError(f"not a version-{cls.VERSION} watermark")
        since, active, fired = data.get("since", 0), data.get("active"), data.get("fired")
        if not (
            isinstance(since, str | None) and isinstance(active, list) and isinstance(fired, dict)
        ) or not all(isinstance(x, str) for x in (*active, *fired.values())):
            raise ValueError(
                "malformed watermark: 'active' must be a list of ids, 'fired' an object of times"
            )
        fired = {k: contract.parse_timestamp(v) for k, v in fired.items()}  # ValueError: not a time
        return cls(None if since is None else contract.parse_timestamp(since), frozenset(active), fired)


class _WatermarkStore:
    """
    The watermark's home: Airflow's ``asset_state_store`` accessors when injected (3.3+), else memory.

    An asset may have several watchers (other filters), and they all get the asset's one state:
    each keeps its record under its own key (:attr:`ExecutionEventTrigger.state_key`). One
    watcher may also serve several assets (Airflow runs one trigger for identical kwargs): each
    asset gets the record, and on load the oldest wins, so no asset misses an execution. A save
    that fails is logged and the watcher carries on: it can only cause repeats after a restart.
    """

    def __init__(self, accessors: Any, key: str, log: Any) -> None:
        self.key, self.log = key, log
        # The public API reads a single asset's accessor directly; several need the mapping.
        by_name, by_uri = getattr(accessors, "_by_name", None), getattr(accessors, "_by_uri", None)
        self.targets: list[Any] = [] if accessors is None else [accessors]
        if isinstance(by_name, dict) and isinstance(by_uri, dict):
            self.targets = [*by_name.values(), *by_uri.values()]

    async def load(self, pause: float, lookback: float) -> tuple[WatermarkRecord | None, bool]:
        """
        The stored record, and whether this is the watcher's first start (nothing stored at all).

        A store that fails is read again, :data:`LOAD_ATTEMPTS` times at most, ``pause`` seconds
        apart at most. A record of another version, or a store that stays unreadable, gives
        ``(None, False)``: not a first start, so the watcher looks back ``lookback`` seconds
        instead of skipping what ended while it was down.
        """
        for attempt in range(LOAD_ATTEMPTS):
            try:
                values = [await target.aget(self.key) for target in self.targets]
                break
            except Exception as exc:
                self.log.warning("SmartMCA watcher: could not read its watermark (%s)", exc)
                if attempt + 1 < LOAD_ATTEMPTS:
                    await asyncio.sleep(min(pause, 2.0**attempt))
        else:
            msg = "SmartMCA watcher: its watermark is unreadable; looking back %g s instead"
            self.log.error(msg, lookback)
            return None, False
        values, records = [value for value in values if value is not None], []
        for value in values:
            try:
                records.append(WatermarkRecord.from_json(value))
            except ValueError as exc:
                self.log.warning("SmartMCA watcher: ignoring the stored watermark (%s); looking back", exc)
        return min(records, key=lambda r: r.since or _NEVER, default=None), not values

    async def save(self, record: WatermarkRecord) -> None:
        for target in self.targets:
            try:
                await target.aset(self.key, record.to_json())
            except Exception as exc:
                msg = "SmartMCA watcher: could not save its watermark (%s); a restart may repeat events"
                self.log.warning(msg, exc)


@dataclass(eq=False)
class _Poll:
    """One poll: the active lists, the windows, the GETs (module docstring). Raises on any list failure."""

    trigger: ExecutionEventTrigger
    client: AsyncClient
    settings: ClientSettings  # the watcher's own: the budget is shared by every connection with its key
    budget: RequestBudget
    now: datetime | None = None  # the server's Date at the first response
    listed: bool = False  # whether any list showed an item

    async def _send(self, name: str, **kwargs: Any) -> Any:
        request = protocol.build_request(self.settings, name, **kwargs)
        raw = await self.budget.send(self.client, request, timeout=self.settings.timeout)
        return protocol.parse_response(request, raw, self.settings)

    async def _page(self, status: str, page: int, order: str = "desc") -> contract.ExecutionPage:
        t = self.trigger
        query = protocol.list_executions_query(
            t.workflow_type, t.entity_type, status=status, page=page, limit=PAGE_LIMIT, sort_order=order
        )
        result: contract.ExecutionPage = await self._send("list_executions", query=query)
        self.now = self.now or result.server_time
        self.listed = self.listed or bool(result.items)
        stamps = (s for i in result.items for s in (i.started_at, i.completed_at) if s and s > _NEVER)
        t._newest = max(filter(None, (t._newest, *stamps)), default=None)
        return result

    async def _walk(self, status: str, walk: ListingWalk, capped: str) -> list[Execution]:
        """Read the ``status`` list as ``walk`` asks; return what it kept. ``capped`` is logged at its cap."""
        found: list[Execution] = []
        while (fetch := walk.next()) is not None:
            found += walk.feed(await self._page(status, fetch.page, fetch.order))
        if not walk.complete:
            count = walk.max_pages * PAGE_LIMIT
            self.trigger.log.error("SmartMCA watcher: more than %d %s executions " + capped, count, status)
        return found

    async def clock(self, since: datetime | None) -> datetime | None:
        """
        The poll's time on the clock of the timestamps: the earlier of the ``Date`` header and the
        newest timestamp listed so far (or ``since``, the last poll's time). None while nothing was
        listed at all: then everything listed later is newer.

        A timestamp is never ahead of the clock that wrote it, so a ``Date`` that runs ahead of
        the timestamps (another host's clock) cannot put a window after executions that started
        since; ``Date`` caps timestamps that run ahead of it.
        """
        t = self.trigger
        # A restart: the stored time was read off a timestamp (or Date).
        t._newest = max(filter(None, (t._newest, since)), default=None)
        if t._newest is None:
            for status in t.statuses:
                await self._page(status, 1)
        if t._newest is None:  # items without timestamps: only Date tells the time
            return self.now if self.listed else None
        return t._newest if self.now is None else min(self.now, t._newest)

    async def active(self) -> set[str]:
        """
        Ids of the executions listed as pending or running.

        A list of several pages is read twice: an execution ending on page 1 while page 2 is
        fetched moves page 2's first item onto page 1, so one pass can miss it; an execution
        missed by both passes would need two such endings at those two moments.
        """
        ids: set[str] = set()
        for status in sorted(ACTIVE_STATUSES):
            for _ in range(2):
                walk = ListingWalk(PAGE_LIMIT, MAX_ACTIVE_PAGES)
                listed = await self._walk(status, walk, _ACTIVE_CAPPED)
                ids.update(e.execution_id for e in listed if e.status in ACTIVE_STATUSES)
                if walk.pages == 1:
                    break
        return ids

    async def window(self, status: str, start: datetime | None) -> list[Execution]:
        """
        The executions in ``status`` that started at or after ``start`` (None: all), newest first,
        order checked.
        """
        t = self.trigger
        walk = ListingWalk(PAGE_LIMIT, MAX_WINDOW_PAGES, since=start, sorts=t._sorts)
        found = await self._walk(status, walk, _WINDOW_CAPPED)
        if walk.sorts is False and t._sorts is None:
            msg = "SmartMCA List Executions ignores sort_order: the watcher reads every page of each window"
            t.log.warning(msg)
        t._sorts = walk.sorts
        return found

    async def get(self, execution_id: str) -> Execution | None:
        """The execution's reading; None when it cannot be read now (it stays tracked)."""
        try:
            result: Execution = await self._send("get_execution", path_params={"execution_id": execution_id})
        except errors.SmartMCANotFoundError:
            self.trigger.log.warning("SmartMCA execution %s is gone (404); no longer tracked", execution_id)
            return Execution(execution_id=execution_id, status=GONE)
        except errors.SmartMCAAuthError:
            raise
        except errors.SmartMCAError as exc:
            msg = "SmartMCA watcher: reading %s failed (%s); trying next poll"
            self.trigger.log.warning(msg, execution_id, exc)
            return None
        return result


class ExecutionEventTrigger(BaseEventTrigger):
    """
    Fire one event for each SmartMCA execution that ends in one of ``statuses`` after the watcher started.

    For an ``AssetWatcher``: each event becomes an asset event whose ``extra["payload"]`` is
    ``{"executionId", "workflowId", "workflowName", "entityType", "entityId", "status",
    "startedAt", "completedAt"}``; a DAG scheduled on the asset reads it from
    ``triggering_asset_events``. De-duplicate on ``executionId``: a triggerer crash may repeat
    the last poll's events (see the module docstring and ``docs/guide/events.md``).

    Cost per poll: one page of each active status, one page of each watched status (two while
    the server has listed nothing yet), and one GET per tracked execution that ended; all through
    the key's shared request budget.

    :param conn_id: the Airflow connection id; resolved in the triggerer, never serialized.
    :param workflow_type: only executions of this workflow (its id), or None for all.
    :param entity_type: only executions on this entity type (``deal``, ``application``, ...), or None.
    :param statuses: the final statuses that fire: any of ``completed``, ``failed``, ``cancelled``.
    :param poll_interval: seconds between polls (> 0, a day at most), jittered by ±10 %.
    :param restart_lookback: seconds (30 days at most) looked back when the watcher starts **without** stored
        state (Airflow < 3.3, or no asset): executions that started and ended in that window
        fire. Restarts shorter than it lose nothing that started within it; its cost is repeats
        of what ended inside it. 0 disables it. With Airflow's state store it is not used.
    :param version: the kwargs' version (:attr:`KWARGS_VERSION`); set by ``serialize``.
    """

    KWARGS_VERSION = 1

    def __init__(
        self,
        conn_id: str = "smartmca_default",
        workflow_type: str | None = None,
        entity_type: str | None = None,
        statuses: Sequence[str] = (SUCCESS_STATUS,),
        poll_interval: float = 60.0,
        restart_lookback: float = 600.0,
        version: int = KWARGS_VERSION,
    ) -> None:
        super().__init__()
        self.conn_id = common.check_trigger_kwargs(_OP, version, self.KWARGS_VERSION, conn_id)
        if isinstance(statuses, str) or not statuses or any(s not in WATCHABLE_STATUSES for s in statuses):
            why = f"must be a non-empty list of {', '.join(WATCHABLE_STATUSES)}; got {statuses!r}"
            raise errors.SmartMCAValidationError("statuses", why, operation=_OP)
        self.workflow_type = common.optional_id("workflow_type", workflow_type, _OP)
        self.entity_type = common.optional_id("entity_type", entity_type, _OP)
        self.statuses = tuple(dict.fromkeys(statuses))
        self.poll_interval = check_number("poll_interval", poll_interval, operation=_OP)
        self.restart_lookback = check_number("restart_lookback", restart_lookback, operation=_OP)
        self._sorts: bool | None = None  # whether List Executions sorts as asked (probed once)
        self._newest: datetime | None = None  # the newest timestamp listed: never ahead of their clock
        self._polled_at: float | None = None  # time.monotonic() of the last complete poll
        self._clamped = False  # whether a reach back from the server's clock went before year 1
        json.dumps(self.serialize()[1], allow_nan=False)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Classpath and kwargs: plain JSON, no key. Equal kwargs make Airflow run one watcher."""
        names = ("conn_id", "workflow_type", "entity_type", "statuses", "poll_interval", "restart_lookback")
        return common.trigger_kwargs(self, names, statuses=list(self.statuses))

    @staticmethod
    def payload(execution: Execution) -> dict[str, Any]:
        """The event's payload (the asset event's ``extra["payload"]``): who, what, when; nothing else."""
        return fields_json(execution, _PAYLOAD)

    @property
    def state_key(self) -> str:
        """
        This watcher's key in the asset's state: one per filter set, so several watchers of one
        asset keep separate watermarks (the poll interval may change without losing it).
        """
        filters = json.dumps([self.conn_id, self.workflow_type, self.entity_type, sorted(self.statuses)])
        return f"{STATE_KEY}:{hashlib.sha256(filters.encode()).hexdigest()[:16]}"

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll forever; yield an event per execution that ended in a watched status."""
        from airflow_provider_smartmca.triggers.budget import incr
        from airflow_provider_smartmca.triggers.context import current

        shared = current()
        store = _WatermarkStore(getattr(self, "asset_state_store", None), self.state_key, self.log)
        record, first_start = await store.load(self.poll_interval, self.restart_lookback)
        # Only a durable store tells a first start from a restart: in memory, every start looks back.
        first_start = (first_start and bool(store.targets)) or self.restart_lookback == 0
        saved, failures = record, 0
        while True:
            if record is not None and record is not saved:  # its poll's events went to Airflow a poll ago
                await store.save(record)
                saved = record
            try:
                settings = await shared.settings(self.conn_id)
                async with shared.session(settings) as client:
                    poll = _Poll(self, client, settings, shared.budget(settings))
                    fired, record = await self._poll(poll, record, first_start)
                self._polled_at, failures = time.monotonic(), 0
            except (errors.SmartMCAError, AirflowException) as exc:
                # Nothing moved: the next poll reads the same window again. Never an end.
                failures += 1
                incr("watcher.failed_polls")
                msg = "SmartMCA watcher poll failed (%d in a row); events are delayed, not lost: %s"
                (self.log.warning if failures < 5 else self.log.error)(msg, failures, exc)
            else:
                incr("watcher.events", len(fired))
                for e in fired:
                    msg = "SmartMCA execution %s %s: event for the watched asset"
                    self.log.info(msg, e.execution_id, e.status)
                    yield TriggerEvent(self.payload(e))
            await asyncio.sleep(common.jittered(self.poll_interval))

    async def _poll(
        self, poll: _Poll, record: WatermarkRecord | None, first_start: bool
    ) -> tuple[list[Execution], WatermarkRecord]:
        """
        One poll from ``record``; returns the executions to fire and the new record.

        1. A first start has no history: what is final now (and was not active a moment ago) ended
           before the watcher started; it is recorded as fired, so that no later window reports it.
        2. A window's item that has not fired (``already``: fired, or history) ended after the
           watermark: final in a window, it is settled without a GET.
        3. A tracked execution that left the active lists and is in no window is read by GET.
        4. The new record keeps what the next window can still show, so that it is not fired again:
           by start time, and anything a window listed this time (an item without ``startedAt`` is
           in every window).

        :param record: the watermark, or None before the first complete poll of this run.
        :param first_start: with no record: True skips what ended before now (no backfill),
            False looks back ``restart_lookback`` seconds.
        """
        active_now = await poll.active()
        now = await poll.clock(None if record is None else record.since)
        if record is None and first_start:  # 1.
            final = await self._listed(poll, None if now is None else self._back(now, MARGIN))
            history = {k: v.started_at or now or _NEVER for k, v in final.items() if k not in active_now}
            return [], WatermarkRecord(since=now, active=frozenset(active_now), fired=history)
        if record is None:
            lookback = timedelta(seconds=self.restart_lookback)
            record = WatermarkRecord(since=None if now is None else self._back(now, lookback))
        since = self._since(record.since, now)
        listed = await self._listed(poll, None if since is None else self._back(since, MARGIN))  # 2.
        listed = {k: v for k, v in listed.items() if self._matches(v)}  # else a server ignoring a filter
        already = dict(record.fired)
        fired = {k: v for k, v in listed.items() if k not in already}
        gone = sorted(record.active - active_now - listed.keys())  # 3.
        later = await self._read_gone(poll, gone, already, fired)
        now = now or since  # 4.
        for execution_id, item in fired.items():
            already[execution_id] = item.started_at or now or _NEVER
        if now is not None:
            horizon = self._back(now, MARGIN + timedelta(seconds=self.poll_interval))
            already = {k: v for k, v in already.items() if v >= horizon or k in listed}
        return list(fired.values()), WatermarkRecord(now, frozenset(active_now | later), already)

    async def _listed(self, poll: _Poll, start: datetime | None) -> dict[str, Execution]:
        """The items of the watched statuses' windows from ``start``, by id (a server may list others)."""
        listed: dict[str, Execution] = {}
        for status in self.statuses:
            for item in await poll.window(status, start):
                if item.status == status:
                    listed.setdefault(item.execution_id, item)
        return listed

    def _since(self, since: datetime | None, now: datetime | None) -> datetime | None:
        """
        Where this poll's windows start: ``since``, unless the server's clock stepped back (beyond
        Date's grain): executions are then stamped before ``since``, so reach back from ``now`` by
        the time that really passed (a duration on this host's monotonic clock).
        """
        if now is None or since is None or now >= self._back(since, timedelta(seconds=1)):
            return since
        elapsed = time.monotonic() - self._polled_at if self._polled_at else self.poll_interval
        step, since = (since - now).total_seconds(), self._back(now, timedelta(seconds=elapsed))
        msg = "SmartMCA's clock stepped back %.0f s since the last poll; reading from %s"
        self.log.warning(msg, step, since.isoformat())
        return since

    async def _read_gone(
        self, poll: _Poll, gone: list[str], already: dict[str, datetime], fired: dict[str, Execution]
    ) -> set[str]:
        """
        GET the tracked executions of ``gone`` (at most :data:`MAX_GETS`); add to ``fired`` those
        that ended in a watched status; return those still to track.
        """
        later = set(gone[MAX_GETS:])
        readings = await asyncio.gather(*(poll.get(i) for i in gone[:MAX_GETS]))
        for execution_id, reading in zip(gone[:MAX_GETS], readings, strict=True):
            if reading is None or reading.status in ACTIVE_STATUSES:
                later.add(execution_id)  # unreadable now, or the list shifted under paging
            elif reading.status in self.statuses:
                if execution_id not in already and self._matches(reading):
                    fired[execution_id] = reading
            elif reading.status not in (*WATCHABLE_STATUSES, GONE):  # unknown: it may still end
                msg = "SmartMCA execution %s has unknown status %r; still tracked"
                self.log.warning(msg, execution_id, reading.status)
                later.add(execution_id)
        return later

    def _back(self, stamp: datetime, by: timedelta) -> datetime:
        """
        ``stamp - by``, or the earliest time when that is before year 1 (a server clock near year 1,
        a watermark stored there): a window then starts at the beginning, never an ``OverflowError``.
        Said once per watcher.
        """
        try:
            return stamp - by
        except OverflowError:
            if not self._clamped:
                self._clamped = True
                msg = "SmartMCA's clock reads %s: reaching back %s s from it goes before year 1; reading from the earliest time instead"
                self.log.warning(msg, stamp.isoformat(), by.total_seconds())
            return _EARLIEST

    def _matches(self, execution: Execution) -> bool:
        """Whether a GET's reading passes the filters (a stored watermark may predate a filter change)."""
        return (self.workflow_type is None or execution.workflow_id in (None, self.workflow_type)) and (
            self.entity_type is None or execution.entity_type in (None, self.entity_type)
        )

    async def cleanup(self) -> None:
        """Do nothing: a watcher moved to another triggerer must not disturb anything remote."""
