"""Window arithmetic and the request bounds that ask the API for exactly one window."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sync.windows import DAY, Window, aligned_start, from_ms, halve, request_bounds, to_ms, windows_between

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
    first = halve(window)
    assert first.start == NOW and first.end == NOW + timedelta(seconds=1)
    assert halve(Window(NOW, NOW + timedelta(seconds=1))).width == timedelta(seconds=1)


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
