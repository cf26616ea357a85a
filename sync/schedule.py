"""Which windows a run scans: the plan for `backfill`, `sync` and `reconcile`.

Pure functions of the ledger, the settings and the time, so the schedule can be tested, and
read, without a server or a database.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sync.state import LedgerEntry, Progress
from sync.windows import Window, local_midnight, window_starting, windows_between


@dataclass(frozen=True, slots=True)
class Task:
    """One window to scan in this run."""

    nominal: Window  # aligned bounds; the ledger's key
    end: datetime  # where this scan stops: the nominal end, or "now" for a window still open
    floor: datetime | None  # rows with lastModificationTime <= floor were stored by an earlier full scan
    reason: str  # new | resume | lookback | due | overlap | backfill | reconcile
    resume: Progress | None = None

    @property
    def window(self) -> Window:
        return Window(self.nominal.start, self.end)


@dataclass(frozen=True, slots=True)
class Schedule:
    """The knobs of incremental sync (see docs/how-sync-works.md)."""

    size: timedelta
    zone: ZoneInfo
    lookback: timedelta
    overlap_windows: int
    rescan_factor: float
    horizon: timedelta
    floor_margin: timedelta = timedelta(hours=1)  # allowance for uneven clocks and indexing delays at Kapture

    def floor(self, entry: LedgerEntry | None) -> datetime | None:
        """Below this, rows were stored by the window's last full scan and need no comparison."""
        if entry is None or entry.scan_floor is None:
            return None
        return entry.scan_floor - self.floor_margin


def _task(nominal: Window, now: datetime, reason: str, entry: LedgerEntry | None, floor: datetime | None) -> Task:
    """A read of `nominal`: resumed at its committed page where that is safe, else from the start.

    An interrupted read resumes only if the window was already closed when that read began: no
    order can have arrived in it since, and sorting by create date keeps the pages in place. A
    read that began while the window was open ended at its own "now": it is started over, so that
    orders created since are read too.
    """
    progress = entry.progress if entry is not None else None
    if progress is not None and reason in ("backfill", "resume") and progress.end >= nominal.end:
        return Task(nominal, progress.end, progress.floor, "resume", progress)
    return Task(nominal, min(nominal.end, now), floor, "new" if reason == "resume" else reason)


def _nominal(clamped: Window, schedule: Schedule) -> Window:
    return window_starting(clamped.start, schedule.size, schedule.zone)


def _entry(entries: Mapping[datetime, LedgerEntry], nominal: Window) -> LedgerEntry | None:
    """The ledger row of exactly this window; one of another width (the size setting changed) does not count."""
    entry = entries.get(nominal.start)
    return entry if entry is not None and entry.window.end == nominal.end else None


def plan_backfill(
    first_day: date,
    last_day: date,
    entries: Mapping[datetime, LedgerEntry],
    schedule: Schedule,
    now: datetime,
    refetch: bool = False,
) -> list[Task]:
    """Every window of the range that has not been fully scanned yet; a killed backfill resumes here."""
    until = min(local_midnight(last_day + timedelta(days=1), schedule.zone), now)
    tasks = []
    for clamped in windows_between(first_day, until, schedule.size, schedule.zone):
        nominal = _nominal(clamped, schedule)
        entry = _entry(entries, nominal)
        if entry is not None and entry.finished and not refetch and entry.progress is None:
            continue
        tasks.append(_task(nominal, now, "backfill", entry, None))
    return tasks


def plan_sync(
    start_day: date,
    entries: Mapping[datetime, LedgerEntry],
    schedule: Schedule,
    now: datetime,
) -> list[Task]:
    """New windows, the look-back, the overlap, and older windows that fell due.

    A window of the look-back whose read was interrupted is read again from its start, so that a
    completed `sync` holds every change made before it began; older ones resume (see `_task`).

    An older window is due when the time since its last full scan reaches `rescan_factor` times
    its age, so a window a month old is re-read about weekly and one a day old every run;
    beyond the horizon only `reconcile` reads it again.
    """
    earliest = min([start_day, *(e.window.start.astimezone(schedule.zone).date() for e in entries.values())])
    # Windows are kept complete from the start date, or from the newest window already in the ledger
    # if that is older: a pause longer than the start-date offset must not leave a gap.
    newest = max((e.window.start for e in entries.values()), default=None)
    first_scanned_from = local_midnight(start_day, schedule.zone)
    if newest is not None:
        first_scanned_from = min(first_scanned_from, newest)
    chosen: dict[datetime, Task] = {}
    finished_before_new: list[Window] = []
    for clamped in windows_between(earliest, now, schedule.size, schedule.zone):
        nominal = _nominal(clamped, schedule)
        entry = _entry(entries, nominal)
        age = now - nominal.end
        if entry is not None and entry.progress is not None and age >= schedule.lookback:
            chosen[nominal.start] = _task(nominal, now, "resume", entry, schedule.floor(entry))
        elif entry is None or not entry.finished:
            if entry is not None or nominal.start >= first_scanned_from:
                chosen[nominal.start] = _task(nominal, now, "new", entry, schedule.floor(entry))
        elif age < schedule.lookback:
            chosen[nominal.start] = _task(nominal, now, "lookback", entry, schedule.floor(entry))
        elif (
            age <= schedule.horizon
            and entry.last_scanned_at is not None
            and now - entry.last_scanned_at >= age * schedule.rescan_factor
        ):
            chosen[nominal.start] = _task(nominal, now, "due", entry, schedule.floor(entry))
        if entry is not None and entry.finished and not any(t.reason == "new" for t in chosen.values()):
            finished_before_new.append(nominal)
    for nominal in finished_before_new[-schedule.overlap_windows :] if schedule.overlap_windows else []:
        if nominal.start not in chosen:
            entry = _entry(entries, nominal)
            chosen[nominal.start] = _task(nominal, now, "overlap", entry, schedule.floor(entry))
    return [chosen[k] for k in sorted(chosen)]


def plan_reconcile(
    first_day: date, entries: Mapping[datetime, LedgerEntry], schedule: Schedule, now: datetime
) -> list[Task]:
    """Every window from `first_day` to now, compared row by row with no floor."""
    return [
        _task(_nominal(clamped, schedule), now, "reconcile", None, None)
        for clamped in windows_between(first_day, now, schedule.size, schedule.zone)
    ]
