"""Window arithmetic and the request bounds that ask the API for exactly one window."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync import paging
from sync.emulator.request import _date_bound
from sync.guard import requested_span
from sync.paging import PageFetched, PagingRules, _following, scan_window
from sync.schedule import Task
from sync.windows import (
    DAY,
    DateFormat,
    Window,
    aligned_start,
    can_split,
    from_ms,
    halve,
    local_midnight,
    request_bounds,
    to_ms,
    window_starting,
    windows_between,
)
from tests.conftest import settings_for

IST = ZoneInfo("Asia/Kolkata")
NOW = datetime(2026, 11, 29, 10, 0, 30, tzinfo=UTC)  # 15:30:30 in Kolkata


def test_day_windows_follow_the_accounts_midnight_and_the_last_is_clamped_to_now():
    windows = list(windows_between(date(2026, 11, 27), NOW, DAY, IST))
    assert [w.label(IST) for w in windows[:2]] == ["2026-11-27", "2026-11-28"]
    assert windows[0].start == datetime(2026, 11, 26, 18, 30, tzinfo=UTC)
    assert windows[-1] == Window(datetime(2026, 11, 28, 18, 30, tzinfo=UTC), NOW)
    assert all(a.end == b.start for a, b in zip(windows, windows[1:], strict=False))


def test_sub_day_windows_tile_the_day():
    windows = list(windows_between(date(2026, 11, 29), NOW, timedelta(hours=6), IST))
    assert [w.start.astimezone(IST).hour for w in windows] == [0, 6, 12]
    assert windows[-1].end == NOW
    assert aligned_start(NOW, timedelta(hours=6), IST) == windows[-1].start


@pytest.mark.parametrize(
    "fmt,inclusive,expected",
    [
        ("date", True, ("2026-11-27", "2026-11-27")),
        ("date", False, ("2026-11-27", "2026-11-28")),
        ("datetime", True, ("2026-11-27 00:00:00", "2026-11-27 23:59:59")),
        ("datetime", False, ("2026-11-27 00:00:00", "2026-11-28 00:00:00")),
    ],
)
def test_request_bounds_for_a_whole_day(fmt, inclusive, expected):
    window = next(windows_between(date(2026, 11, 27), NOW, DAY, IST))
    assert request_bounds(window, IST, fmt, inclusive) == expected


def test_an_open_window_asks_for_today_or_up_to_now():
    today = list(windows_between(date(2026, 11, 29), NOW, DAY, IST))[0]
    assert request_bounds(today, IST, "date", True) == ("2026-11-29", "2026-11-29")
    assert request_bounds(today, IST, "datetime", True) == ("2026-11-29 00:00:00", "2026-11-29 15:30:29")
    assert request_bounds(today, IST, "datetime", False) == ("2026-11-29 00:00:00", "2026-11-29 15:30:30")


def test_halving_keeps_whole_seconds_and_never_empties():
    window = Window(NOW, NOW + timedelta(seconds=3))
    first = halve(window, IST)
    assert first.start == NOW and first.end == NOW + timedelta(seconds=1)
    one_second = Window(NOW, NOW + timedelta(seconds=1))
    assert not can_split(one_second, "datetime", timedelta(0), IST)
    with pytest.raises(ValueError):
        halve(one_second, IST)


def test_epoch_milliseconds_round_trip_exactly():
    for ms in (0, 1715149492000, 1715149492001, 7_258_118_399_999):
        assert to_ms(from_ms(ms)) == ms


def test_windows_refuse_naive_or_empty_bounds():
    with pytest.raises(ValueError):
        Window(datetime(2026, 1, 1), datetime(2026, 1, 2))
    with pytest.raises(ValueError):
        Window(NOW, NOW)


def test_sub_day_windows_stay_on_the_local_grid_across_daylight_saving():
    new_york = ZoneInfo("America/New_York")
    until = datetime(2025, 3, 12, 12, tzinfo=UTC)
    from_before = list(windows_between(date(2025, 3, 8), until, timedelta(hours=6), new_york))
    from_after = list(windows_between(date(2025, 3, 11), until, timedelta(hours=6), new_york))
    assert from_after == [w for w in from_before if w.start >= from_after[0].start]
    after_change = [w for w in from_before if w.start.astimezone(new_york).date() > date(2025, 3, 9)]
    assert {w.start.astimezone(new_york).hour for w in after_change} == {0, 6, 12, 18}
    assert aligned_start(until, timedelta(hours=6), new_york) == from_before[-1].start


# --- Daylight saving: windows are wall-clock intervals -------------------------------------------

NEW_YORK = ZoneInfo("America/New_York")
ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # 30-minute change
    "America/Santiago",  # changes at midnight: one day starts at 01:00, another has 23:00 twice
    "Asia/Kolkata",
    "UTC",
    "Asia/Kathmandu",  # +05:45, no change
]
MINUTE = timedelta(minutes=1)
SUB_DAY = [timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 120, 180, 240, 360, 480, 720, 1440)]
WHOLE_DAYS = [timedelta(days=d) for d in (1, 2, 7)]
YEAR = 2025
END_RULES = [True, False]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def dst_days(zone: ZoneInfo, year: int = YEAR) -> list[date]:
    """The local days of `year` on which the zone's UTC offset changes."""
    days = [date(year, 1, 1) + k * DAY for k in range(365)]
    return [d for d in days if local_midnight(d + DAY, zone) - local_midnight(d, zone) != DAY]


def served(start: str, end: str, zone: ZoneInfo, end_inclusive: bool) -> tuple[datetime, datetime]:
    """The UTC range `[from, to)` a server comparing wall-clock values serves for these bounds."""
    first = _date_bound("createStartDate", start, zone, False, end_inclusive)
    last = _date_bound("createEndDate", end, zone, True, end_inclusive)
    assert first is not None and last is not None
    return from_ms(first), from_ms(last)


def parse(text: str, fmt: DateFormat) -> datetime:
    assert len(text) == (10 if fmt == "date" else 19), text
    return datetime.fromisoformat(text)


def assert_requests_tile(pieces: list[Window], zone: ZoneInfo, fmt: DateFormat, end_inclusive: bool) -> None:
    """Consecutive pieces tile in UTC; their requests are valid, abut in wall time and serve exactly them."""
    assert all(a.end == b.start for a, b in zip(pieces, pieces[1:], strict=False)), "gap or overlap in UTC"
    step = DAY if fmt == "date" else timedelta(seconds=1)
    previous_end: datetime | None = None
    for piece in pieces:
        start, end = request_bounds(piece, zone, fmt, end_inclusive)
        first, last = parse(start, fmt), parse(end, fmt)
        assert first <= last if end_inclusive else first < last, f"inverted request {start}..{end} for {piece}"
        if previous_end is not None:
            expected = previous_end + step if end_inclusive else previous_end
            assert first == expected, f"request {start}..{end} does not abut the previous one ({previous_end})"
        previous_end = last
        assert served(start, end, zone, end_inclusive) == (piece.start, piece.end), f"{start}..{end} for {piece}"


def split_all(window: Window, zone: ZoneInfo, min_width: timedelta, depth: int) -> Iterator[Window]:
    """Slices as paging makes them when every slice goes deep: halve, then `_following` to the end."""
    piece = window
    for _ in range(depth):
        if not can_split(piece, "datetime", min_width, zone):
            break
        piece = halve(piece, zone)
    yield piece
    while piece.end < window.end:
        piece = _following(piece, window, zone)
        yield piece


def holds_a_repeat(window: Window, zone: ZoneInfo) -> bool:
    start, end = window.start.astimezone(zone), (window.end - timedelta(microseconds=1)).astimezone(zone)
    offset_start, offset_end = start.utcoffset(), end.utcoffset()
    assert offset_start is not None and offset_end is not None
    return offset_end < offset_start


def near_a_change(window: Window, zone: ZoneInfo) -> bool:
    """True for windows within three hours of a change of offset (the ones worth splitting)."""
    margin = timedelta(hours=3)
    return (window.start - margin).astimezone(zone).utcoffset() != (window.end + margin).astimezone(zone).utcoffset()


def check_range(
    zone: ZoneInfo, first_day: date, days: int, size: timedelta, fmt: DateFormat, split: bool = True
) -> list[Window]:
    until = local_midnight(first_day + days * DAY, zone)
    windows = list(windows_between(first_day, until, size, zone))
    assert windows[0].start == local_midnight(first_day, zone) and windows[-1].end == until
    for window in windows:
        nominal = window_starting(window.start, size, zone)  # the last window may be clamped to `until`
        assert nominal == window or (window is windows[-1] and nominal.end > window.end)
        assert aligned_start(window.start, size, zone) == window.start
    for end_inclusive in END_RULES:
        assert_requests_tile(windows, zone, fmt, end_inclusive)
    if split and fmt == "datetime":
        min_width = max(size / 16, MINUTE)
        for window in [windows[0], *(w for w in windows[1:] if near_a_change(w, zone))]:
            if not can_split(window, fmt, min_width, zone):
                assert window.width / 2 < min_width or holds_a_repeat(window, zone), window
                continue
            for depth in (1, 3):
                pieces = list(split_all(window, zone, min_width, depth))
                assert pieces[0].start == window.start and pieces[-1].end == window.end
                for end_inclusive in END_RULES:
                    assert_requests_tile(pieces, zone, fmt, end_inclusive)
    return windows


def sizes_for(fmt: DateFormat) -> list[timedelta]:
    return WHOLE_DAYS if fmt == "date" else SUB_DAY + WHOLE_DAYS


def test_the_reported_fall_back_hour_is_asked_for_as_one_valid_wall_clock_hour():
    # issue 7, item 6: 05:00-06:00 UTC on 2025-11-02 was sent as 01:00:00 .. 00:59:59
    windows = list(windows_between(date(2025, 11, 2), utc(2025, 11, 2, 9), timedelta(hours=1), NEW_YORK))
    repeated = [w for w in windows if w.start == utc(2025, 11, 2, 5)]
    assert repeated == [Window(utc(2025, 11, 2, 5), utc(2025, 11, 2, 7))]  # 01:00..02:00 wall, both passes
    assert request_bounds(repeated[0], NEW_YORK, "datetime", True) == ("2025-11-02 01:00:00", "2025-11-02 01:59:59")
    assert request_bounds(repeated[0], NEW_YORK, "datetime", False) == ("2025-11-02 01:00:00", "2025-11-02 02:00:00")
    # the old window itself, if it is still in a ledger, is asked for as its whole wall hour
    old = Window(utc(2025, 11, 2, 5), utc(2025, 11, 2, 6))
    assert request_bounds(old, NEW_YORK, "datetime", True) == ("2025-11-02 01:00:00", "2025-11-02 01:59:59")
    assert [w.start.astimezone(NEW_YORK).hour for w in windows] == [0, 1, 2, 3]


def test_spring_forward_skips_the_hour_that_never_happens():
    windows = list(windows_between(date(2025, 3, 9), utc(2025, 3, 9, 9), timedelta(hours=1), NEW_YORK))
    assert [w.start.astimezone(NEW_YORK).hour for w in windows] == [0, 1, 3, 4]
    assert all(w.width == timedelta(hours=1) for w in windows)
    assert request_bounds(windows[1], NEW_YORK, "datetime", True) == ("2025-03-09 01:00:00", "2025-03-09 02:59:59")


def test_windows_shorter_than_the_repeat_keep_the_repeat_whole():
    windows = list(windows_between(date(2025, 11, 2), utc(2025, 11, 2, 8), timedelta(minutes=15), NEW_YORK))
    assert Window(utc(2025, 11, 2, 5), utc(2025, 11, 2, 7)) in windows
    assert not can_split(Window(utc(2025, 11, 2, 5), utc(2025, 11, 2, 7)), "datetime", MINUTE, NEW_YORK)


def test_a_window_clamped_inside_the_repeat_asks_for_every_wall_time_it_holds():
    day = next(windows_between(date(2025, 11, 2), utc(2025, 11, 2, 6, 30), DAY, NEW_YORK))
    assert request_bounds(day, NEW_YORK, "datetime", True) == ("2025-11-02 00:00:00", "2025-11-02 01:59:59")
    second_pass = Window(utc(2025, 11, 2, 6), utc(2025, 11, 2, 6, 30))
    assert request_bounds(second_pass, NEW_YORK, "datetime", True) == ("2025-11-02 01:00:00", "2025-11-02 01:29:59")


def test_a_deep_day_with_the_repeat_is_split_around_it_never_inside():
    day = Window(local_midnight(date(2025, 11, 2), NEW_YORK), local_midnight(date(2025, 11, 3), NEW_YORK))
    pieces = list(split_all(day, NEW_YORK, MINUTE, 4))
    assert Window(utc(2025, 11, 2, 5), utc(2025, 11, 2, 7)) in pieces or any(
        p.start <= utc(2025, 11, 2, 5) and p.end >= utc(2025, 11, 2, 7) for p in pieces
    )
    for end_inclusive in END_RULES:
        assert_requests_tile(pieces, NEW_YORK, "datetime", end_inclusive)


@pytest.mark.parametrize("name", ["America/New_York", "Europe/London", "Australia/Lord_Howe", "America/Santiago"])
def test_each_zone_changes_twice_a_year(name):
    assert len(dst_days(ZoneInfo(name))) == 2


@pytest.mark.parametrize("name", ZONES)
@pytest.mark.parametrize("fmt", ["date", "datetime"])
def test_every_size_tiles_and_asks_exactly_on_both_daylight_saving_days(name, fmt):
    zone = ZoneInfo(name)
    days = dst_days(zone) or [date(YEAR, 3, 30), date(YEAR, 11, 2)]
    for size in sizes_for(fmt):
        for day in days:
            # the day before through the day after, so windows that hold or touch the change are all seen
            # (the day of the change and its edges only, for the finest grids)
            if size < timedelta(hours=1):
                check_range(zone, day, 1, size, fmt)
            else:
                check_range(zone, day - DAY, 3, size, fmt)


@pytest.mark.parametrize("size", [timedelta(hours=6), DAY, 2 * DAY, 7 * DAY])
def test_a_whole_year_tiles_and_asks_exactly(size):
    check_range(NEW_YORK, date(YEAR, 1, 1), 365, size, "datetime", split=False)
    if size % DAY == timedelta(0):
        check_range(NEW_YORK, date(YEAR, 1, 1), 365, size, "date")


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(ZONES),
    day=st.integers(0, 364),
    fmt=st.sampled_from(["date", "datetime"]),
    data=st.data(),
)
def test_any_day_any_size_tiles_and_asks_exactly(name, day, fmt, data):
    size = data.draw(st.sampled_from(sizes_for(fmt)), label="size")
    check_range(ZoneInfo(name), date(YEAR, 1, 1) + day * DAY, 1 if size < timedelta(minutes=15) else 2, size, fmt)


@settings(max_examples=100, deadline=None)
@given(
    name=st.sampled_from(ZONES),
    size=st.sampled_from(SUB_DAY + WHOLE_DAYS),
    at=st.integers(0, 364 * 24 * 3600 * 10**6),
    end_inclusive=st.booleans(),
)
def test_a_window_clamped_to_any_now_is_asked_for_all_it_holds(name, size, at, end_inclusive):
    """`now` to the microsecond, as a run's clock gives it: the last fraction of a second is asked for too."""
    zone, now = ZoneInfo(name), utc(YEAR, 1, 2) + timedelta(microseconds=at)
    day = now.astimezone(zone).date()
    windows = list(windows_between(day, now, size, zone)) if now > local_midnight(day, zone) else []
    windows = windows or list(windows_between(day - DAY, now, size, zone))
    assert windows[-1].end == now
    assert_requests_tile(windows[-4:-1], zone, "datetime", end_inclusive)
    start, end = request_bounds(windows[-1], zone, "datetime", end_inclusive)
    first, last = served(start, end, zone, end_inclusive)
    assert first <= windows[-1].start and last >= windows[-1].end


def test_a_window_is_split_only_when_each_half_is_at_least_the_minimum_slice():
    """`min_slice` bounds how narrow a request may get: a half exactly that wide is allowed, one a
    second narrower is not, whatever the format would allow."""
    two_minutes = Window(NOW, NOW + 2 * MINUTE)
    assert can_split(two_minutes, "datetime", MINUTE, IST)
    assert not can_split(Window(NOW, NOW + 2 * MINUTE - timedelta(seconds=2)), "datetime", MINUTE, IST)
    assert not can_split(two_minutes, "datetime", MINUTE + timedelta(seconds=1), IST)
    day = next(windows_between(date(2026, 11, 27), NOW, DAY, IST))
    assert can_split(day, "datetime", timedelta(hours=12), IST)
    assert not can_split(day, "datetime", timedelta(hours=12, seconds=1), IST)


def test_a_deep_window_is_paged_by_offset_rather_than_asked_for_in_slices_below_the_minimum(
    serve, connect, monkeypatch: pytest.MonkeyPatch
):
    """45 orders created at one instant: past `split_offset` the day is halved once (12 h >= 7 h),
    then the half is read on by offset, since its halves (6 h) would be narrower than `min_slice`.
    Every order is still read, and no request asks for less than 7 hours."""
    monkeypatch.setattr(paging, "_accepted", {})  # what an earlier test's server on this port taught
    monkeypatch.setattr(paging, "_honoured", {})
    day = next(windows_between(date(2026, 11, 27), NOW, DAY, IST))
    created = to_ms(day.start) + 3_600_000
    served = [{"id": i, "createDate": created, "lastModificationTime": created} for i in range(1, 46)]
    spans: list[tuple[int, int]] = []

    def answer(body: dict) -> list[dict]:
        low, high = requested_span(body["createStartDate"], body["createEndDate"], IST, True)
        spans.append((low, high))
        inside = [r for r in served if low <= r["createDate"] < high]
        return inside[int(body["offset"]) : int(body["offset"]) + int(body["limit"])]

    rules = PagingRules(  # 8 pages are enough; slicing on to single seconds would take thousands
        IST, "datetime", True, page_size=10, split_offset=20, min_slice=timedelta(hours=7), max_pages=50
    )
    task = Task(day, day.end, None, "backfill")
    events = list(scan_window(connect(settings_for(serve(answer))), task, rules))

    pages = [e for e in events if isinstance(e, PageFetched)]
    assert sorted(r["id"] for p in pages for r in p.records) == [r["id"] for r in served]
    narrowest = min(high - low for low, high in spans)
    assert narrowest == 12 * 3_600_000, f"a request asked for {narrowest / 3_600_000:g} h, below the 7 h minimum"
    assert max(offset for offset in (p.next_offset for p in pages)) > rules.split_offset, "read on by offset"
