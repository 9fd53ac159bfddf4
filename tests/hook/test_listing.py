"""ListingWalk, the one paging rule, without I/O: each decision fed page by page."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from airflow_provider_smartmca.client.contract import Execution, ExecutionPage
from airflow_provider_smartmca.client.listing import Fetch, ListingWalk

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def page(
    *ids_and_ages: tuple[str, int], total: int | None = None, clock: datetime | None = None
) -> ExecutionPage:
    """A page of executions started ``age`` seconds before T0."""
    items = tuple(
        Execution(execution_id=i, status="completed", started_at=T0 - timedelta(seconds=age))
        for i, age in ids_and_ages
    )
    return ExecutionPage(items=items, total=total, server_time=clock)


def test_a_full_page_is_never_the_last_whatever_total_says() -> None:
    walk = ListingWalk(2, 10)
    assert walk.next() == Fetch(1)
    assert [e.execution_id for e in walk.feed(page(("a", 1), ("b", 2), total=2))] == ["a", "b"]
    assert walk.next() == Fetch(2) and walk.pages_expected == 2
    walk.feed(page(("c", 3), total=1))  # short: the last
    assert walk.next() is None and walk.complete and walk.pages == 2


def test_total_is_a_hint_for_the_cost_only() -> None:
    walk = ListingWalk(100, 50)
    walk.feed(page(*((f"x{i}", i) for i in range(100)), total=320))
    assert walk.pages_expected == 4 and walk.next() == Fetch(2)
    walk.feed(page(("y", 500), total=320))  # short, although total says two pages more
    assert walk.done and walk.pages_expected == 2


def test_a_shifted_page_gives_no_item_twice() -> None:
    walk = ListingWalk(2, 10)
    walk.feed(page(("a", 1), ("b", 2)))
    # One execution started meanwhile: b is pushed onto page 2.
    assert [e.execution_id for e in walk.feed(page(("b", 2), ("c", 3)))] == ["c"]


def test_the_cap_ends_the_walk_incomplete() -> None:
    walk = ListingWalk(1, 2)
    walk.feed(page(("a", 1)))
    walk.feed(page(("b", 2)))
    assert walk.next() is None and walk.done and not walk.complete


def test_an_older_item_ends_the_walk_only_once_the_order_is_proved() -> None:
    walk = ListingWalk(2, 10, since=T0 - timedelta(seconds=5))
    assert [e.execution_id for e in walk.feed(page(("a", 1), ("old", 9)))] == ["a"]
    assert walk.next() == Fetch(1, "asc")  # the proof: page 1, oldest first
    assert walk.feed(page(("oldest", 99), ("old", 9))) == []
    assert walk.sorts is True and walk.done and walk.complete


def test_a_server_ignoring_sort_order_is_read_to_the_end_and_probed_once() -> None:
    walk = ListingWalk(2, 10, since=T0 - timedelta(seconds=5))
    walk.feed(page(("a", 1), ("old", 9)))
    walk.feed(page(("a", 1), ("old", 9)))  # the same answer, oldest first asked: no proof
    assert walk.sorts is False and walk.next() == Fetch(2)
    walk.feed(page(("b", 2), ("older", 20)))
    assert walk.next() == Fetch(3)  # never probed again


def test_equal_timestamps_prove_nothing() -> None:
    walk = ListingWalk(2, 10, since=T0 - timedelta(seconds=5))
    walk.feed(page(("a", 9), ("b", 9)))
    assert walk.next() == Fetch(1, "asc")
    walk.feed(page(("a", 9), ("b", 9)))
    assert walk.sorts is False and not walk.done


def test_a_known_order_ends_the_walk_without_a_probe() -> None:
    walk = ListingWalk(2, 10, since=T0 - timedelta(seconds=5), sorts=True)
    walk.feed(page(("a", 1), ("old", 9)))
    assert walk.next() is None and walk.complete


def test_skew_starts_the_window_before_the_first_pages_date() -> None:
    walk = ListingWalk(3, 10, skew=30)
    found = walk.feed(page(("new", 10), ("edge", 30), ("old", 31), clock=T0))
    assert [e.execution_id for e in found] == ["new", "edge"]
    assert walk.clock == T0 and walk.since == T0 - timedelta(seconds=30)
