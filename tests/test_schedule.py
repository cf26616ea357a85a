"""The incremental schedule: new windows, look-back, decaying re-scans, horizon, overlap, resume."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from sync.schedule import Schedule, plan_backfill, plan_reconcile, plan_sync
from sync.state import LedgerEntry, Progress
from sync.windows import DAY, Window, windows_between

IST = ZoneInfo("Asia/Kolkata")
NOW = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)
TODAY = date(2026, 11, 29)
SCHEDULE = Schedule(
    size=DAY, zone=IST, lookback=timedelta(days=7), overlap_windows=1, rescan_factor=0.25, horizon=timedelta(days=90)
)


def ledger(first: date, last: date, scanned_at: datetime, open_last: bool = True) -> dict[datetime, LedgerEntry]:
    """A ledger in which every window from `first` to `last` was fully scanned at `scanned_at`."""
    entries = {}
    for clamped in windows_between(first, min(NOW, windows_end(last)), DAY, IST):
        nominal = Window(clamped.start, clamped.start + DAY)
        end = clamped.end if open_last else nominal.end
        entries[nominal.start] = LedgerEntry(nominal, scanned_at, end, None, None)
    return entries


def windows_end(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=IST).astimezone(UTC)


def reasons(tasks) -> dict[str, str]:
    return {t.nominal.label(IST): t.reason for t in tasks}


def test_first_sync_reads_every_window_from_the_start_date():
    tasks = plan_sync(TODAY - timedelta(days=30), {}, SCHEDULE, NOW)
    assert len(tasks) == 31 and {t.reason for t in tasks} == {"new"}
    assert tasks[-1].end == NOW and tasks[0].floor is None


def test_later_syncs_read_todays_window_the_look_back_and_windows_that_fell_due():
    entries = ledger(TODAY - timedelta(days=120), TODAY, NOW - timedelta(days=3))
    plan = reasons(plan_sync(TODAY - timedelta(days=30), entries, SCHEDULE, NOW))
    assert plan["2026-11-29"] == "new"
    assert all(plan[(TODAY - timedelta(days=d)).isoformat()] == "lookback" for d in range(1, 7))
    # Scanned 3 days ago: due when 3 days >= 0.25 * age, i.e. for windows up to 12 days old.
    assert plan[(TODAY - timedelta(days=10)).isoformat()] == "due"
    assert (TODAY - timedelta(days=20)).isoformat() not in plan
    # Beyond the 90-day horizon only reconcile reads a window again.
    assert (TODAY - timedelta(days=100)).isoformat() not in plan


def test_a_long_idle_account_rescans_old_windows_until_the_horizon():
    entries = ledger(TODAY - timedelta(days=120), TODAY, NOW - timedelta(days=40))
    plan = reasons(plan_sync(TODAY - timedelta(days=30), entries, SCHEDULE, NOW))
    assert plan[(TODAY - timedelta(days=89)).isoformat()] == "due"
    assert (TODAY - timedelta(days=92)).isoformat() not in plan


def test_with_no_look_back_the_newest_finished_window_still_overlaps():
    schedule = Schedule(DAY, IST, timedelta(0), 1, 0.25, timedelta(days=90))
    entries = ledger(TODAY - timedelta(days=5), TODAY - timedelta(days=1), NOW - timedelta(hours=1), open_last=False)
    plan = reasons(plan_sync(TODAY - timedelta(days=5), entries, schedule, NOW))
    assert plan[(TODAY - timedelta(days=1)).isoformat()] == "overlap"
    assert list(plan.values()).count("new") == 1


def test_a_scan_in_progress_is_resumed_where_it_stopped():
    nominal = Window(windows_end(TODAY - timedelta(days=3)), windows_end(TODAY - timedelta(days=2)))
    progress = Progress(NOW - timedelta(hours=1), nominal.end, None, None, nominal, 400, 400, 400, None)
    entries = {nominal.start: LedgerEntry(nominal, None, None, None, progress)}
    [task] = [
        t
        for t in plan_backfill(TODAY - timedelta(days=3), TODAY - timedelta(days=2), entries, SCHEDULE, NOW)
        if t.nominal == nominal
    ]
    assert task.reason == "resume" and task.resume is progress
    reconcile = [t for t in plan_reconcile(TODAY - timedelta(days=3), entries, SCHEDULE, NOW) if t.nominal == nominal]
    assert reconcile[0].resume is None, "reconcile reads everything again"


def test_backfill_skips_finished_windows_unless_asked_to_refetch():
    entries = ledger(TODAY - timedelta(days=10), TODAY - timedelta(days=5), NOW, open_last=False)
    tasks = plan_backfill(TODAY - timedelta(days=10), TODAY - timedelta(days=1), entries, SCHEDULE, NOW)
    assert [t.nominal.label(IST) for t in tasks] == [(TODAY - timedelta(days=d)).isoformat() for d in range(4, 0, -1)]
    assert (
        len(plan_backfill(TODAY - timedelta(days=10), TODAY - timedelta(days=1), entries, SCHEDULE, NOW, refetch=True))
        == 10
    )


def test_a_pause_longer_than_the_start_offset_leaves_no_gap():
    """Ledger up to 60 days ago, start date 30 days ago: the 30 days between are still read."""
    entries = ledger(TODAY - timedelta(days=90), TODAY - timedelta(days=60), NOW - timedelta(days=60), open_last=False)
    plan = reasons(plan_sync(TODAY - timedelta(days=30), entries, SCHEDULE, NOW))
    assert all(plan.get((TODAY - timedelta(days=d)).isoformat()) == "new" for d in range(0, 60))


def test_ledger_rows_of_another_width_do_not_count_as_read():
    """After KAPTURE_SYNC_WINDOW changes from 1d to 2d, a one-day row does not vouch for two days."""
    two_days = Schedule(2 * DAY, IST, timedelta(days=7), 1, 0.25, timedelta(days=90))
    first = TODAY - timedelta(days=10)
    entries = ledger(first, first, NOW, open_last=False)
    tasks = plan_backfill(first, first + timedelta(days=1), entries, two_days, NOW)
    assert [(t.nominal.start, t.nominal.end) for t in tasks] == [
        (windows_end(first - timedelta(days=1)), windows_end(first + timedelta(days=1)))
    ]


def _interrupted(day_offset: int, read_end: datetime | None = None, finished: bool = False) -> dict:
    nominal = Window(
        windows_end(TODAY - timedelta(days=day_offset)), windows_end(TODAY - timedelta(days=day_offset - 1))
    )
    progress = Progress(NOW - timedelta(hours=1), read_end or nominal.end, None, None, nominal, 400, 400, 400, None)
    scanned = (NOW - timedelta(days=2), nominal.end, NOW - timedelta(days=3)) if finished else (None, None, None)
    return {nominal.start: LedgerEntry(nominal, *scanned, progress)}


def test_an_interrupted_read_of_a_look_back_window_is_read_again_from_its_start_by_sync():
    entries = _interrupted(3, finished=True)
    [task] = [t for t in plan_sync(TODAY - timedelta(days=5), entries, SCHEDULE, NOW) if t.nominal.start in entries]
    assert task.resume is None and task.reason == "lookback"
    assert task.floor == NOW - timedelta(days=3) - SCHEDULE.floor_margin, "the last complete read's floor applies"


def test_an_interrupted_read_of_an_older_closed_window_resumes_at_its_committed_page():
    entries = _interrupted(20)
    [task] = [t for t in plan_sync(TODAY - timedelta(days=25), entries, SCHEDULE, NOW) if t.nominal.start in entries]
    assert task.reason == "resume" and task.resume is not None and task.resume.offset == 400


def test_a_read_that_began_while_its_window_was_open_starts_over_with_the_new_end():
    nominal_end = windows_end(TODAY - timedelta(days=19))
    entries = _interrupted(20, read_end=nominal_end - timedelta(hours=5))
    [task] = [
        t
        for t in plan_backfill(TODAY - timedelta(days=20), TODAY, entries, SCHEDULE, NOW)
        if t.nominal.start in entries
    ]
    assert task.resume is None and task.end == nominal_end
