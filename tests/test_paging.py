"""Paging against servers that misbehave in ways the emulator is not built to: real HTTP on 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sync.errors import PagingError
from sync.paging import PageFetched, PagingRules, WindowScanned, scan_window
from sync.schedule import Task
from sync.windows import Window
from tests.conftest import settings_for

RULES = PagingRules(
    ZoneInfo("Asia/Kolkata"), "date", True, page_size=10, split_offset=10_000, min_slice=timedelta(minutes=1)
)
WINDOW = Window(datetime(2026, 11, 1, 18, 30, tzinfo=UTC), datetime(2026, 11, 2, 18, 30, tzinfo=UTC))
TASK = Task(WINDOW, WINDOW.end, None, "backfill")


def orders(ids: range) -> list[dict]:
    return [{"id": i, "createDate": 1_793_000_000_000, "lastModificationTime": 1_793_000_000_000} for i in ids]


def test_a_server_that_ignores_offset_stops_the_run_instead_of_looping(serve, connect):
    url = serve(lambda body: orders(range(10)))
    events = scan_window(connect(settings_for(url)), TASK, RULES)
    with pytest.raises(PagingError, match="ignoring offset"):
        list(events)


def test_a_capped_server_is_paged_to_the_empty_page(serve, connect):
    everything = orders(range(23))
    url = serve(lambda body: everything[int(body["offset"]) :][:4])  # asks for 10, silently gets 4
    events = list(scan_window(connect(settings_for(url)), TASK, RULES))
    pages = [e for e in events if isinstance(e, PageFetched)]
    assert [r["id"] for p in pages for r in p.records] == list(range(23))
    assert [p.next_offset for p in pages] == [4, 8, 12, 16, 20, 23]
    assert isinstance(events[-1], WindowScanned)


def test_rows_pushed_back_by_arrivals_are_not_doubled_and_the_tail_ends_the_window(serve, connect):
    served = {"count": 0}
    base = orders(range(100, 125))

    def newest_first_with_arrivals(body: dict) -> list[dict]:
        served["count"] += 1
        arrived = orders(range(1000, 1000 + 2 * served["count"]))[::-1]  # two new orders per request
        return (arrived + base)[int(body["offset"]) :][:10]

    url = serve(newest_first_with_arrivals)
    events = list(scan_window(connect(settings_for(url)), TASK, RULES))
    ids = [r["id"] for e in events if isinstance(e, PageFetched) for r in e.records]
    assert len(ids) == len(set(ids)), "a row was emitted twice"
    assert set(range(100, 125)) <= set(ids), "an order that existed before the scan was missed"
    assert isinstance(events[-1], WindowScanned) and events[-1].proven is False


def test_a_short_page_of_known_rows_is_read_past_so_a_varying_cap_loses_nothing(serve, connect):
    """Page 2 comes back short (a size cap) and all known (100 orders arrived in front of it)."""
    base = orders(range(1, 251))
    requests = {"count": 0}

    def shifting_and_capped(body: dict) -> list[dict]:
        requests["count"] += 1
        listing = (orders(range(1000, 1100)) if requests["count"] > 1 else []) + base
        cap = 60 if requests["count"] == 2 else 100
        return listing[int(body["offset"]) :][: min(cap, int(body["limit"]))]

    url = serve(shifting_and_capped)
    rules = PagingRules(ZoneInfo("Asia/Kolkata"), "date", True, 100, 10_000, timedelta(minutes=1))
    events = list(scan_window(connect(settings_for(url)), TASK, rules))
    ids = {r["id"] for e in events if isinstance(e, PageFetched) for r in e.records}
    assert set(range(1, 251)) <= ids, f"{len(set(range(1, 251)) - ids)} orders were never read"
    assert isinstance(events[-1], WindowScanned) and events[-1].proven is True


def test_full_pages_pushed_back_by_arrivals_are_paged_through_not_taken_for_an_ignored_offset(serve, connect):
    first, rest = orders(range(10)), orders(range(10, 20))

    def drifting(body: dict) -> list[dict]:
        step = int(body["offset"]) // 10
        if step == 0:
            return first
        if step <= 5:  # rows already read, pushed back by arrivals: another arrangement each time
            return first[step:] + first[:step]
        return rest if step == 6 else []

    events = list(scan_window(connect(settings_for(serve(drifting))), TASK, RULES))
    ids = [r["id"] for e in events if isinstance(e, PageFetched) for r in e.records]
    assert ids == list(range(20)) and isinstance(events[-1], WindowScanned)


def test_drift_that_never_lets_paging_catch_up_stops_the_run_with_a_hint(serve, connect):
    first = orders(range(10))
    url = serve(
        lambda body: (
            first
            if int(body["offset"]) == 0
            else first[1:] + first[:1]
            if int(body["offset"]) // 10 % 2
            else first[2:] + first[:2]
        )
    )
    with pytest.raises(PagingError, match="arrive faster than they can be paged"):
        list(scan_window(connect(settings_for(url)), TASK, RULES))
