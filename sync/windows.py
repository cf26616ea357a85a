"""Create-date windows: how time is cut into the ranges the API is asked for.

Kapture filters by create date only, as wall-clock strings in its own zone and (by default) whole
days, so every window is aligned to the account's local wall clock and is turned into request
bounds here, in one place, according to the date-format and inclusivity settings.

Windows are UTC instants; requests are wall-clock strings. The two disagree only around a
daylight-saving change: on a fall-back night one wall hour happens twice (a *repeat*), on a
spring-forward night one never happens (a *gap*). Every window edge made here is a *clean cut*
(no repeat straddles it), so the wall strings of consecutive windows abut and never overlap.
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
_US = timedelta(microseconds=1)


def to_ms(moment: datetime) -> int:
    return (moment - EPOCH) // _MS


def from_ms(epoch_ms: int) -> datetime:
    return EPOCH + epoch_ms * _MS


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _utc(wall: datetime, zone: ZoneInfo, fold: int = 0) -> datetime:
    """The instant of a naive wall time; fold 0 is its first occurrence."""
    return wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


def _wall(moment: datetime, zone: ZoneInfo) -> datetime:
    """The naive wall-clock reading of an instant (what Kapture's strings compare)."""
    return moment.astimezone(zone).replace(tzinfo=None)


def _kind(wall: datetime, zone: ZoneInfo) -> int:
    """0 for an ordinary wall time, 1 for one that happens twice, -1 for one that never happens."""
    first = wall.replace(tzinfo=zone, fold=0).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert first is not None and second is not None
    return 0 if first == second else (1 if first > second else -1)


def _repeat_around(moment: datetime, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    """The repeat `(first instant, end instant)` that holds `moment` strictly inside, if any.

    A cut strictly inside a repeat would give both sides the same wall times, so callers move
    such a cut to one of the two ends returned here.
    """
    wall = _wall(moment, zone)
    if _kind(wall, zone) != 1:
        return None
    length = _utc(wall, zone, 1) - _utc(wall, zone, 0)
    # The repeated wall times are [first, first + length), and `wall` is one of them: find `first`.
    low, high = wall - length, wall  # low is not repeated, high is
    while high - low > _US:
        middle = low + (high - low) // 2
        low, high = (low, middle) if _kind(middle, zone) == 1 else (middle, high)
    first, end = _utc(high, zone, 0), _utc(high, zone, 1) + length
    return (first, end) if first < moment.astimezone(UTC) < end else None


def _grid_boundary(wall: datetime, zone: ZoneInfo) -> datetime | None:
    """The instant of a grid wall time, or None when it is no clean cut.

    A wall time that never happens collapses onto the next boundary (it is skipped); one that
    happens twice is taken at its first occurrence, and dropped when it lies inside the repeat
    (sizes shorter than the repeat), so the whole repeat stays in one window.
    """
    if _kind(wall, zone) == -1:
        return None
    moment = _utc(wall, zone)
    return None if _repeat_around(moment, zone) is not None else moment


def _grid_day(moment: datetime, zone: ZoneInfo) -> date:
    """The local day whose grid holds `moment` (its local date, unless midnight never happened yet)."""
    day = moment.astimezone(zone).date()
    return day - DAY if local_midnight(day, zone) > moment else day


def window_starting(start: datetime, size: timedelta, zone: ZoneInfo) -> Window:
    """The window of `size` that begins at `start`; whole-day sizes follow the local calendar.

    Sub-day windows lie on the local wall-clock grid (midnight + k * size, wall time) and restart
    at every local midnight, so a daylight-saving change lengthens or shortens the window that
    holds it instead of shifting every later window off the grid.
    """
    start = start.astimezone(UTC)
    day = _grid_day(start, zone)
    if size % DAY == timedelta(0):
        return Window(start, local_midnight(day + size, zone))
    midnight, day_end = datetime.combine(day, time(0)), local_midnight(day + DAY, zone)
    step = max((_wall(start, zone) - midnight) // size, -1) + 1
    while midnight + step * size < midnight + DAY:
        boundary = _grid_boundary(midnight + step * size, zone)
        if boundary is not None and start < boundary:
            return Window(start, min(boundary, day_end))
        step += 1
    return Window(start, day_end)


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
    moment = moment.astimezone(UTC)
    day = _grid_day(moment, zone)
    if size >= DAY:
        return local_midnight(day, zone)
    midnight = datetime.combine(day, time(0))
    step = min((_wall(moment, zone) - midnight) // size, DAY // size - 1)
    while step > 0:
        boundary = _grid_boundary(midnight + step * size, zone)
        if boundary is not None and boundary <= moment:
            return boundary
        step -= 1
    return local_midnight(day, zone)


def _wall_hull(window: Window, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The smallest wall-clock range `[first, end)` holding every instant of `window`.

    For a window whose edges are clean cuts (every window made here) that is simply the wall
    times of its edges. A window cut inside a repeat (clamped to "now" during the repeated hour,
    or left in the ledger by an older version) also holds wall times below its start or above
    its end, and a server comparing wall times would miss them if they were not asked for.
    """
    first, end = _wall(window.start, zone), _wall(window.end, zone)
    starts_in = _repeat_around(window.start, zone)
    if starts_in is not None and window.start.astimezone(zone).fold == 0:
        first = min(first, _wall(starts_in[0], zone))  # it reaches the repeat's second pass
    ends_in = _repeat_around(window.end, zone)
    if ends_in is not None and window.end.astimezone(zone).fold == 1:
        repeat_first, repeat_end = ends_in
        if window.start < repeat_end - (repeat_end - repeat_first) / 2:  # it holds part of the first pass
            first, end = min(first, _wall(repeat_first, zone)), _wall(repeat_end, zone)
    return first, end


def request_bounds(window: Window, zone: ZoneInfo, fmt: DateFormat, end_inclusive: bool) -> tuple[str, str]:
    """The `createStartDate`/`createEndDate` strings that ask for exactly `window`.

    Kapture reads them as wall-clock times in the account's zone, so they are the window's
    wall-clock range. With date-only bounds an open window (clamped to now) asks for the whole
    current day; the orders of today's remaining hours then simply arrive early and are stored
    like any other.
    """
    start, end = _wall_hull(window, zone)
    if fmt == "date":
        # The date of the window's last instant: where midnight never happens (a gap at midnight)
        # the end's own wall reading is 01:00 of the next day, which that day does not belong to.
        last_day = _wall(window.end - _US, zone).date()
        return start.date().isoformat(), (last_day if end_inclusive else last_day + DAY).isoformat()
    end_second = end.replace(microsecond=0)
    if end_second < end:
        end_second += timedelta(seconds=1)
    shown_end = end_second - timedelta(seconds=1) if end_inclusive else end_second
    return start.strftime("%Y-%m-%d %H:%M:%S"), shown_end.strftime("%Y-%m-%d %H:%M:%S")


def _clean_cut(window: Window, moment: datetime, zone: ZoneInfo) -> datetime | None:
    """`moment`, or the nearer end of the repeat it falls inside; None unless strictly inside `window`."""
    repeat = _repeat_around(moment, zone)
    candidates = [moment] if repeat is None else sorted(repeat, key=lambda edge: abs(edge - moment))
    return next((c for c in candidates if window.start < c < window.end), None)


def _middle(window: Window, zone: ZoneInfo) -> datetime | None:
    """Where `halve` cuts: the wall-time midpoint in whole seconds, moved out of any repeat.

    Outside a repeat, wall time runs with UTC (a gap only skips readings), so the elapsed
    midpoint is the wall-time midpoint. A window that is all one repeat has no clean cut.
    """
    middle = (window.start + window.width / 2).replace(microsecond=0)
    middle = max(middle, window.start + timedelta(seconds=1))
    return _clean_cut(window, middle, zone) if middle < window.end else None


def can_split(window: Window, fmt: DateFormat, min_width: timedelta, zone: ZoneInfo) -> bool:
    """Only datetime bounds can ask for less than a day, never below `min_width`, never inside a repeat."""
    return fmt == "datetime" and window.width / 2 >= min_width and _middle(window, zone) is not None


def halve(window: Window, zone: ZoneInfo) -> Window:
    """The first half of `window`, in whole seconds so the API can express it, ending at a clean cut."""
    middle = _middle(window, zone)
    if middle is None:
        raise ValueError(f"window {window.label(zone)} has no clean cut to split at")
    return Window(window.start, middle)


def next_slice(piece: Window, window: Window, zone: ZoneInfo) -> Window:
    """The slice after `piece`, as wide, clipped to `window`; an end inside a repeat moves past it.

    Moving forward keeps the whole repeat in one slice, so no two slices ask for the same wall time.
    """
    end = min(piece.end + piece.width, window.end)
    repeat = _repeat_around(end, zone) if end < window.end else None
    return Window(piece.end, min(repeat[1], window.end) if repeat is not None else end)
