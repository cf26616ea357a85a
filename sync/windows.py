"""Create-date windows: how time is cut into the ranges the API is asked for.

Kapture filters by create date only, in its own zone and (by default) whole days, so every
window is aligned to local midnight of the account's zone and is turned into request bounds
here, in one place, according to the date-format and inclusivity settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

DateFormat = Literal["date", "datetime"]
DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """A half-open create-date range `[start, end)` in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty window {self.start} .. {self.end}")

    @property
    def width(self) -> timedelta:
        return self.end - self.start

    def label(self, zone: ZoneInfo) -> str:
        start, end = self.start.astimezone(zone), self.end.astimezone(zone)
        if start.time() == time(0) and end.time() == time(0) and end - start == DAY:
            return start.date().isoformat()
        return f"{start:%Y-%m-%d %H:%M:%S}..{end:%Y-%m-%d %H:%M:%S}"


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(moment: datetime) -> int:
    return (moment - EPOCH) // _MS


def from_ms(epoch_ms: int) -> datetime:
    return EPOCH + epoch_ms * _MS


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def window_starting(start: datetime, size: timedelta, zone: ZoneInfo) -> Window:
    """The window of `size` that begins at `start`; whole-day sizes follow the local calendar.

    Sub-day windows restart at every local midnight, so a daylight-saving change shortens or
    lengthens the day's last window instead of shifting every later window off the grid.
    """
    local = start.astimezone(zone)
    if size % DAY == timedelta(0):
        return Window(start, local_midnight(local.date() + size, zone))
    return Window(start, min(start + size, local_midnight(local.date() + DAY, zone)))


def windows_between(first_day: date, until: datetime, size: timedelta, zone: ZoneInfo) -> Iterator[Window]:
    """Aligned windows from local midnight of `first_day` up to `until`; the last is clamped to it.

    Clamping fixes each window's end when the run starts, so orders created during the run
    cannot shift the pages of a window being read.
    """
    cursor = local_midnight(first_day, zone)
    while cursor < until:
        window = window_starting(cursor, size, zone)
        yield Window(window.start, min(window.end, until))
        cursor = window.end


def aligned_start(moment: datetime, size: timedelta, zone: ZoneInfo) -> datetime:
    """Start of the aligned window that holds `moment`."""
    local = moment.astimezone(zone)
    midnight = local_midnight(local.date(), zone)
    if size >= DAY:
        return midnight
    steps = (moment - midnight) // size
    return midnight + steps * size


def request_bounds(window: Window, zone: ZoneInfo, fmt: DateFormat, end_inclusive: bool) -> tuple[str, str]:
    """The `createStartDate`/`createEndDate` strings that ask for exactly `window`.

    With date-only bounds an open window (clamped to now) asks for the whole current day; the
    orders of today's remaining hours then simply arrive early and are stored like any other.
    """
    start = window.start.astimezone(zone)
    end = window.end.astimezone(zone)
    if fmt == "date":
        last_day = (end - timedelta(microseconds=1)).date()
        return start.date().isoformat(), (last_day if end_inclusive else last_day + DAY).isoformat()
    end_second = end.replace(microsecond=0)
    if end_second < end:
        end_second += timedelta(seconds=1)
    shown_end = end_second - timedelta(seconds=1) if end_inclusive else end_second
    return start.strftime("%Y-%m-%d %H:%M:%S"), shown_end.strftime("%Y-%m-%d %H:%M:%S")


def can_split(window: Window, fmt: DateFormat, min_width: timedelta) -> bool:
    """Only datetime bounds can ask for less than a day, and never below `min_width`."""
    return fmt == "datetime" and window.width / 2 >= min_width


def halve(window: Window) -> Window:
    """The first half of `window`, rounded to whole seconds so the API can express it."""
    middle = window.start + (window.width / 2)
    middle = middle.replace(microsecond=0)
    return Window(window.start, max(middle, window.start + timedelta(seconds=1)))
