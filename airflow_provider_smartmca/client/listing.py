"""One walk through List Executions, without I/O: which page to read next, and what the pages mean.

Every paging loop of the provider (``SmartMCAHook.iter_executions``, start-once's ``walk``, the
event watcher, the poller, ``smartmca-check``) asks a :class:`ListingWalk` for the page to fetch,
fetches it its own way (sync or async, patiently or not) and feeds it back. The rules live here:

* **Only a short page is the last.** A page with fewer than ``limit`` items ends the walk.
  ``total`` is a hint for the cost of a walk (:attr:`ListingWalk.pages_expected`), never a
  reason to stop after a full page: a server whose ``total`` counts only the page answered would
  hide every later page.
* **No item twice.** Pages shift under a walk (an execution that starts pushes the others down,
  one that ends pulls them up); an id already fed is skipped.
* **A cap.** At most ``max_pages`` pages; a walk that stops there says so (``complete`` False).
* **The order is proved, not trusted.** With ``since``, items started before it are left out, and
  a page holding one ends the walk early, but only on a server shown to sort by ``startedAt`` as
  asked: its first page oldest first (one extra request, asked for by :meth:`ListingWalk.next`)
  must be in order and start strictly before the newest start walked. A server that ignores
  ``sort_order`` answers both orders alike, which passes only if every timestamp is equal: equal
  timestamps look newest first in any order, so they prove nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from airflow_provider_smartmca.client.contract import Execution, ExecutionPage


@dataclass(frozen=True)
class Fetch:
    """The page a walk wants next: page ``page``, sorted by ``startedAt`` in ``order`` (when sorted)."""

    page: int
    order: str = "desc"


def proves_sorting(oldest_first: Iterable[Execution], newest: datetime | None) -> bool:
    """
    Whether page 1 asked oldest first proves that the server sorts by ``startedAt`` as asked: it is
    oldest first, and starts strictly before ``newest`` (the newest start seen newest first).
    """
    stamps = [e.started_at for e in oldest_first if e.started_at is not None]
    return newest is not None and bool(stamps) and stamps == sorted(stamps) and stamps[0] < newest


class ListingWalk:
    """
    One walk, newest first, through a List Executions query: ask :meth:`next`, fetch, :meth:`feed`.

    :param limit: the page size asked for.
    :param max_pages: pages walked at most (the sort probe not counted).
    :param since: leave out what started before this (server's clock); None keeps everything.
        An item without ``startedAt`` (not started yet) is always kept.
    :param skew: with no ``since``, start the window ``skew`` seconds before the first page's
        ``Date`` header (without that header, nothing is left out).
    :param sorts: whether the server is known to sort as asked (a prior proof); None: prove it
        when it would end the walk early.
    :ivar pages: pages of the walk read so far (the sort probe not counted).
    :ivar clock: the server's clock at the first page (its ``Date`` header), or None.
    :ivar total: the last ``total`` read: a hint, never trusted to end the walk.
    :ivar complete: whether the walk ended at its last page or its sorted end (False: the cap, or
        not done).
    """

    def __init__(
        self,
        limit: int,
        max_pages: int,
        *,
        since: datetime | None = None,
        skew: float | None = None,
        sorts: bool | None = None,
    ) -> None:
        self.limit, self.max_pages, self.since, self.skew, self.sorts = limit, max_pages, since, skew, sorts
        self.pages = 0
        self.clock: datetime | None = None
        self.total: int | None = None
        self.complete = False
        self.done = max_pages < 1
        self._seen: set[str] = set()
        self._ordered, self._proving = True, False
        self._previous: datetime | None = None
        self._newest: datetime | None = None

    def next(self) -> Fetch | None:
        """The page to fetch now, or None when the walk is over."""
        if self.done:
            return None
        return Fetch(1, "asc") if self._proving else Fetch(self.pages + 1)

    def feed(self, page: ExecutionPage) -> list[Execution]:
        """Take the page :meth:`next` asked for; return its items not fed before and not before ``since``."""
        if self._proving:
            self._proving, self.sorts = False, proves_sorting(page.items, self._newest)
            if self.sorts:
                self._end(complete=True)
            self._cap()
            return []
        self.pages += 1
        if self.pages == 1:
            self.clock = page.server_time
            if self.since is None and self.skew is not None and self.clock is not None:
                self.since = self.clock - timedelta(seconds=self.skew)
        self.total = page.total
        new, older = self._take(page.items)
        if len(page.items) < self.limit:
            self._end(complete=True)
        elif self._ordered and older and self.sorts is not False:
            # Newest first and past ``since``: the rest is older, on a server proved to sort.
            self._proving = not self.sorts
            if self.sorts:
                self._end(complete=True)
        self._cap()
        return new

    def _take(self, items: Iterable[Execution]) -> tuple[list[Execution], bool]:
        """The items not seen before and not before ``since``; whether one was before it."""
        new, older = [], False
        for item in items:
            if item.execution_id in self._seen:
                continue
            self._seen.add(item.execution_id)
            if (started := item.started_at) is not None:
                self._ordered = self._ordered and (self._previous is None or started <= self._previous)
                self._previous = started
                self._newest = started if self._newest is None else max(self._newest, started)
            if self.since is None or started is None or started >= self.since:
                new.append(item)
            else:
                older = True
        return new, older

    def _cap(self) -> None:
        if not self.done and not self._proving and self.pages >= self.max_pages:
            self._end(complete=False)

    @property
    def pages_expected(self) -> int:
        """Pages the walk is expected to take in all: those read, then at least one more, or ``total``'s guess."""
        if self.done:
            return self.pages
        guess = -(-self.total // self.limit) if self.total is not None and self.total > 0 else 0
        return max(self.pages + 1, guess)

    def _end(self, *, complete: bool) -> None:
        self.done, self.complete = True, complete
