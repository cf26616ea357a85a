"""Paging against servers that misbehave in ways the emulator is not built to: real HTTP on 127.0.0.1."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sync import paging
from sync.errors import PagingError
from sync.judge import Page
from sync.paging import (
    FALLBACK_PAGE_SIZE,
    PageFetched,
    PagingRules,
    WindowScanned,
    pull_page,
    pull_page_with_limit,
    scan_window,
)
from sync.read import read_page
from sync.schedule import Task
from sync.windows import Window, to_ms
from tests.conftest import EmulatorFactory, settings_for

RULES = PagingRules(
    ZoneInfo("Asia/Kolkata"), "date", True, page_size=10, split_offset=10_000, min_slice=timedelta(minutes=1)
)
WINDOW = Window(datetime(2026, 11, 1, 18, 30, tzinfo=UTC), datetime(2026, 11, 2, 18, 30, tzinfo=UTC))
TASK = Task(WINDOW, WINDOW.end, None, "backfill")
WINDOW_DATE = "2026-11-02"  # WINDOW's day in Asia/Kolkata


HOUR_MS = 3_600_000
NEXT_DAY = Window(WINDOW.end, WINDOW.end + timedelta(days=1))


@pytest.fixture(autouse=True)
def _fresh_limit_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a process learns about a server's `limit` stays with the test that learned it (ports are reused)."""
    monkeypatch.setattr(paging, "_accepted", {})
    monkeypatch.setattr(paging, "_honoured", {})


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


@pytest.mark.parametrize(
    "existing,requests,proven",
    [
        # The tail page (offset 30 of 33) holds a row not read yet; the limit was seen honoured (full
        # pages of 10), so that short page shows where the listing ended: a proven end.
        (25, 4, True),
        # The tail pages (offset 30 of 32, then 32 of 34) hold only the two rows pushed off the page
        # before: no proof, read past once, then ended unproven (no floor for the next read).
        (24, 5, False),
    ],
)
def test_rows_pushed_back_by_arrivals_are_not_doubled_and_the_tail_ends_the_window(
    serve, connect, existing, requests, proven
):
    served = {"count": 0}
    base = orders(range(100, 100 + existing))

    def newest_first_with_arrivals(body: dict) -> list[dict]:
        served["count"] += 1
        arrived = orders(range(1000, 1000 + 2 * served["count"]))[::-1]  # two new orders per request
        return (arrived + base)[int(body["offset"]) :][:10]

    url = serve(newest_first_with_arrivals)
    events = list(scan_window(connect(settings_for(url)), TASK, RULES))
    ids = [r["id"] for e in events if isinstance(e, PageFetched) for r in e.records]
    assert len(ids) == len(set(ids)), "a row was emitted twice"
    assert set(range(100, 100 + existing)) <= set(ids), "an order that existed before the scan was missed"
    assert isinstance(events[-1], WindowScanned) and events[-1].proven is proven
    assert served["count"] == requests


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


# -- Ending a slice on a short page once the server was seen to honour `limit` -------------------------------


def _emulator_holding(start_emulator: EmulatorFactory, **created_at_ms: int) -> tuple:
    """An emulator holding no generated orders, then `n` orders created at each given instant (name: n_at)."""
    emu, serving = start_emulator(orders=0, days=1, now_ms=to_ms(NEXT_DAY.end) + 30 * 24 * HOUR_MS)
    for spec, at_ms in created_at_ms.items():
        emu.store.create(int(spec.split("_")[1]), at_ms=at_ms)
    return emu, serving


def _scan(emu, client, window: Window, rules: PagingRules = RULES) -> tuple[list, list[tuple[int, int]]]:
    """The events of one window and its requests as the emulator logged them: (offset, limit) each."""
    since = emu.pull_log()["last_seq"]
    events = list(scan_window(client, Task(window, window.end, None, "backfill"), rules))
    return events, [(int(r["offset"]), int(r["limit"])) for r in emu.pull_log(since)["requests"]]


def test_once_a_full_page_was_served_a_short_page_ends_the_window_without_an_empty_page(start_emulator, connect):
    emu, serving = _emulator_holding(
        start_emulator, n_5=to_ms(NEXT_DAY.start) + HOUR_MS, n_25=to_ms(WINDOW.start) + HOUR_MS
    )
    client = connect(settings_for(serving.url))
    small = {r["id"] for r in emu.store.truth() if r["createDate"] >= to_ms(NEXT_DAY.start)}
    large = {r["id"] for r in emu.store.truth()} - small
    assert (len(small), len(large)) == (5, 25)

    # No full page seen yet: a short page may be a silent cap, so it is read past to the empty page.
    events, asked = _scan(emu, client, NEXT_DAY)
    assert asked == [(0, 10), (5, 10)]
    assert [type(e) for e in events] == [PageFetched, WindowScanned]

    # The first page comes back full (limit honoured), so the short third page ends the window:
    # 3 requests where paging to an empty page took 4.
    requests_before = client.stats.requests
    events, asked = _scan(emu, client, WINDOW)
    assert asked == [(0, 10), (10, 10), (20, 10)]
    assert client.stats.requests - requests_before == 3
    pages = [e for e in events if isinstance(e, PageFetched)]
    assert [type(e) for e in events] == [PageFetched, PageFetched, PageFetched, WindowScanned]
    assert [(p.next_offset, p.served, p.new) for p in pages] == [(10, 10, 10), (20, 10, 10), (25, 5, 5)]
    assert {r["id"] for p in pages for r in p.records} == large
    assert events[-1].proven is True

    # Remembered for the process: the small window now costs its one page, not two requests.
    events, asked = _scan(emu, client, NEXT_DAY)
    assert asked == [(0, 10)]
    assert [type(e) for e in events] == [PageFetched, WindowScanned]
    assert {r["id"] for r in events[0].records} == small and events[-1].proven is True


def test_a_short_page_of_a_split_window_moves_on_to_the_following_slice(start_emulator, connect):
    """20 orders: 13 in the day's first half, 7 in its second; a split at offset 20 reads them as halves."""
    emu, serving = _emulator_holding(
        start_emulator, n_13=to_ms(WINDOW.start) + HOUR_MS, n_7=to_ms(WINDOW.start) + 18 * HOUR_MS
    )
    rules = PagingRules(ZoneInfo("Asia/Kolkata"), "datetime", True, 10, split_offset=20, min_slice=timedelta(hours=1))
    events, asked = _scan(emu, connect(settings_for(serving.url)), WINDOW, rules)
    # whole day: 10, 10 (offset 20: split); first half: 10, 3 (short: next slice); second half: 7 (short: done)
    assert [offset for offset, _ in asked] == [0, 10, 0, 10, 0]
    pages = [e for e in events if isinstance(e, PageFetched)]
    assert [p.served for p in pages] == [10, 10, 10, 3, 7]
    assert [type(e) for e in events] == [PageFetched] * 5 + [WindowScanned] and events[-1].proven is True
    assert sorted(r["id"] for p in pages for r in p.records) == sorted(r["id"] for r in emu.store.truth())


def test_a_silently_capped_limit_is_still_paged_to_the_empty_page(start_emulator, connect):
    emu, serving = _emulator_holding(start_emulator, n_23=to_ms(WINDOW.start) + HOUR_MS)
    emu.faults.limit_cap = 4  # asks for 10, silently gets 4: never a full page, so never a short one trusted
    client = connect(settings_for(serving.url))
    for _ in range(2):  # and a second read has learned nothing that would end it early
        events, asked = _scan(emu, client, WINDOW)
        assert asked == [(offset, 10) for offset in (0, 4, 8, 12, 16, 20, 23)]
        pages = [e for e in events if isinstance(e, PageFetched)]
        assert [p.served for p in pages] == [4, 4, 4, 4, 4, 3]
        assert sorted(r["id"] for p in pages for r in p.records) == sorted(r["id"] for r in emu.store.truth())
        assert isinstance(events[-1], WindowScanned) and events[-1].proven is True


def test_a_refused_limit_falls_back_and_the_page_says_which_limit_was_sent(start_emulator, connect):
    emu, serving = _emulator_holding(start_emulator, n_250=to_ms(WINDOW.start) + HOUR_MS)
    emu.faults.limit_max = FALLBACK_PAGE_SIZE
    client = connect(settings_for(serving.url))
    rules = PagingRules(ZoneInfo("Asia/Kolkata"), "date", True, 1000, 10_000, timedelta(minutes=1))
    events, asked = _scan(emu, client, WINDOW, rules)
    # 1000 refused, asked again at 100 (a full page: honoured), so the short page at 200 ends the window
    assert asked == [(0, 1000), (0, 100), (100, 100), (200, 100)]
    pages = [e for e in events if isinstance(e, PageFetched)]
    assert [p.served for p in pages] == [100, 100, 50] and isinstance(events[-1], WindowScanned)
    assert sorted(r["id"] for p in pages for r in p.records) == sorted(r["id"] for r in emu.store.truth())

    filters = {"createStartDate": WINDOW_DATE, "createEndDate": WINDOW_DATE}
    page, sent = pull_page_with_limit(client, filters, 200, 1000, read_page)
    assert sent == FALLBACK_PAGE_SIZE and len(page.records) == 50 and len(page.keys) == 50
    assert isinstance(pull_page(client, filters, 0, 1000), Page)  # the old shape, for callers that need no limit
    assert {int(r["limit"]) for r in emu.pull_log(emu.pull_log()["last_seq"] - 2)["requests"]} == {FALLBACK_PAGE_SIZE}


def test_a_page_with_new_rows_starts_the_count_of_repeated_drifted_and_short_known_pages_afresh(serve, connect):
    """Each misbehaviour once, each time followed by a page of new rows, then again: a page served twice,
    a full page of rows already read in another arrangement, a short page of rows already read. Two in a
    row would stop the run or end the window unproven; apart, the window is read to its end, proven."""
    rows = orders(range(65))
    script = {  # offset asked for -> rows served (limit 10; offsets advance by rows served)
        0: rows[0:10],
        10: rows[0:10],  # the same page again: an ignored offset, once
        20: rows[10:20],
        30: rows[10:20],  # again, after new rows: not the second in a row
        40: rows[20:30],
        50: rows[20:30][::-1],  # rows already read, pushed back (drift), once
        60: rows[30:40],
        70: rows[30:40][::-1],
        80: rows[40:50],
        90: rows[45:50],  # a short page of rows already read, once
        95: rows[50:60],
        105: rows[55:60],
        110: rows[60:65],  # short, new, the limit seen honoured: the end
    }
    asked: list[int] = []

    def misbehaving_once_at_a_time(body: dict) -> list[dict]:
        asked.append(int(body["offset"]))
        return script[int(body["offset"])]

    rules = PagingRules(
        ZoneInfo("Asia/Kolkata"), "date", True, 10, 10_000, timedelta(minutes=1), max_stale_pages=2, max_drift_pages=2
    )
    events = list(scan_window(connect(settings_for(serve(misbehaving_once_at_a_time))), TASK, rules))
    ids = [r["id"] for e in events if isinstance(e, PageFetched) for r in e.records]
    assert ids == list(range(65)), "an order was missed or handed on twice"
    assert asked == list(script)
    assert isinstance(events[-1], WindowScanned) and events[-1].proven is True
