"""The run guard against real emulators in every mode that makes a setting wrong, on both databases:
a wrong zone, end rule or format stops the run (exit 2) and leaves no window recorded read."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from sync.errors import ReadContradicted
from sync.guard import requested_span, widened_end
from sync.models import SyncWindow
from sync.runs import backfill, rules_of
from sync.stop import Stop, Stopped
from sync.windows import request_bounds, to_ms
from tests.conftest import settings_for
from tests.helpers import assert_equals_truth, runs, stored
from tests.test_cli import account_env, one_line, run_cli

IST = ZoneInfo("Asia/Kolkata")
TODAY = datetime.now(IST).date()
FIRST = TODAY - timedelta(days=14)  # the emulator's orders span the last 10 days: the first windows are empty


@pytest.fixture(autouse=True)
def _today_when_the_test_starts() -> None:
    """The account's today as the test's emulator will see it, not as it was when the module was
    collected: a suite crossing midnight in Kolkata (18:30 UTC) in between expected one empty day
    fewer than the emulator then had (seen in CI at 18:29 UTC)."""
    global TODAY, FIRST
    TODAY = datetime.now(IST).date()
    FIRST = TODAY - timedelta(days=14)


def ledger_rows(engine: Engine) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(select(SyncWindow.__table__).order_by("window_start")).mappings()]


def finished(engine: Engine) -> list[dict[str, Any]]:
    return [row for row in ledger_rows(engine) if row["last_scanned_at"] is not None]


# (emulator config, client settings, the guard that must fire)
WRONG = {
    "exclusive end read as inclusive": ({"end_inclusive": False}, {}, "came back empty"),
    "inclusive end read as exclusive": ({}, {"end_inclusive": False}, "outside what was asked for"),
    "dates read in UTC, client in India": ({"timezone": "UTC"}, {}, "outside what was asked for"),
    "UTC, datetime bounds": ({"timezone": "UTC"}, {"date_format": "datetime"}, "outside what was asked for"),
    "exclusive end, datetime bounds read as inclusive": (
        {"end_inclusive": False},
        {"date_format": "datetime", "window": "6h"},
        None,  # loses only orders in the last second of a window: check's job, see the next test
    ),
}


@pytest.mark.parametrize("mode", list(WRONG))
def test_a_wrong_date_setting_stops_the_run_and_leaves_no_window_read(
    start_emulator, engine: Engine, database_url, connect, mode
):
    server, client_settings, message = WRONG[mode]
    emu, serving = start_emulator(**server)
    settings = settings_for(serving.url, database_url, **client_settings)
    if message is None:
        result = backfill(engine, connect(settings), settings, FIRST)
        assert result.outcome == "success"
        return
    with pytest.raises(ReadContradicted, match=message) as raised:
        backfill(engine, connect(settings), settings, FIRST)
    assert "KAPTURE_TIMEZONE" in str(raised.value) and "KAPTURE_END_INCLUSIVE" in str(raised.value)
    assert finished(engine) == [], "a window was recorded read on the strength of a wrong read"
    assert all(row["progress_started_at"] is None for row in ledger_rows(engine)), "a wrong read left a resume point"
    assert [(r.outcome, r.error) for r in runs(engine)] == [("failed", str(raised.value))]
    # The right setting, afterwards, reads everything without --refetch.
    fixed = {"end_inclusive": server.get("end_inclusive", True), "timezone": server.get("timezone", "Asia/Kolkata")}
    right = settings_for(serving.url, database_url, **{**client_settings, **fixed})
    assert backfill(engine, connect(right), right, FIRST).outcome == "success"
    assert_equals_truth(engine, emu.store.truth())


def test_a_right_setting_pays_one_request_for_its_empty_windows_and_none_without_them(
    start_emulator, engine: Engine, database_url, connect
):
    emu, serving = start_emulator(end_inclusive=False)
    settings = settings_for(serving.url, database_url, end_inclusive=False)
    result = backfill(engine, connect(settings), settings, FIRST)
    assert result.outcome == "success"
    assert_equals_truth(engine, emu.store.truth())
    asked = [(r["createStartDate"], r["createEndDate"]) for r in emu.pull_log()["requests"]]
    windows = {(row["window_start"].astimezone(IST).date()) for row in finished(engine)}
    assert len(windows) == 15 and result.totals.windows == 15
    wide = [pair for pair in asked if date.fromisoformat(pair[1]) - date.fromisoformat(pair[0]) > timedelta(days=1)]
    # Which days are empty depends on the hour: the emulator's orders span the last 10 days up to
    # its "now", so the oldest day holding any is 9 or 10 days back (4 or 5 empty days before it).
    served_days = {datetime.fromtimestamp(r["createDate"] / 1000, IST).date() for r in emu.store.truth()}
    empty = [day for day in (FIRST + timedelta(days=n) for n in range(15)) if day not in served_days]
    assert len(empty) >= 4, empty
    # from the first empty day to one day past the last one's exclusive end (`widened_end`)
    assert wide == [(empty[0].isoformat(), (empty[-1] + timedelta(days=2)).isoformat())], "one request, empty days"
    assert result.totals.requests == len(asked)

    seq = emu.pull_log()["last_seq"]
    busy = TODAY - timedelta(days=4)  # to yesterday: four days that all served orders
    again = backfill(engine, connect(settings), settings, busy, TODAY - timedelta(days=1), refetch=True)
    assert again.outcome == "success" and again.totals.windows == 4
    assert all(
        date.fromisoformat(r["createEndDate"]) - date.fromisoformat(r["createStartDate"]) == timedelta(days=1)
        for r in emu.pull_log(seq)["requests"]
    ), "a run whose windows all served orders sent a guard request"


def test_windows_read_before_the_contradiction_are_put_back_as_they_were(
    start_emulator, engine: Engine, database_url, connect
):
    """A zone mismatch can show only in a later window: the ones completed before it are undone too."""
    emu, serving = start_emulator(orders=0, timezone="UTC")
    first, second = TODAY - timedelta(days=5), TODAY - timedelta(days=4)
    inside = emu.store.create(1, at_ms=to_ms(datetime.combine(first, datetime.min.time(), IST) + timedelta(hours=12)))
    # 02:00 IST the day after `second` is 20:30 UTC on `second`: served for `second`, outside it in IST.
    outside = emu.store.create(1, at_ms=to_ms(datetime.combine(second, datetime.min.time(), IST) + timedelta(hours=26)))
    right = settings_for(serving.url, database_url, timezone="UTC")
    backfill(engine, connect(right), right, first - timedelta(days=1), first - timedelta(days=1))
    earlier = ledger_rows(engine)
    assert len(earlier) == 1

    settings = settings_for(serving.url, database_url)
    with pytest.raises(ReadContradicted, match=f"order {outside[0]['id']} created"):
        backfill(engine, connect(settings), settings, first - timedelta(days=1), second, refetch=True)
    assert ledger_rows(engine) == earlier, "the run's windows were not put back as they were before it"
    # The page holding the contradiction never commits; the page before it may have, or may have been
    # in the same transaction (several pages commit together): either way no window is recorded read.
    assert set(stored(engine)) <= {inside[0]["id"]}, "the page holding the contradiction was committed"


def test_the_command_line_names_the_settings_in_one_line_and_exits_2(emulator, start_emulator, tmp_path):
    _, serving = start_emulator(end_inclusive=False)
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    done = run_cli("backfill", "--from", FIRST.isoformat(), env=account_env(serving.url, database_url), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    line = one_line(done.stderr)
    assert line.startswith("kapture-sync: bad setting:") and "KAPTURE_END_INCLUSIVE (true)" in line
    assert "no window of this run was recorded as read" in line


def test_a_stop_during_the_guards_wider_request_ends_the_run_within_seconds_as_interrupted(
    start_emulator, engine: Engine, database_url, connect
):
    """The daemon's stop is honoured in the guard's extra request too, not only in the paging: a request
    the server holds (here 20 s) is abandoned, the run recorded `interrupted`, its lock released."""
    emu, serving = start_emulator(orders=0)  # every window empty: the guard asks once more, wider
    emu.faults.slow_seconds = 20
    settings = settings_for(serving.url, database_url, timeout=60)
    client = connect(settings)
    stop = Stop()
    plan: list[Any] = []
    first, last = TODAY - timedelta(days=4), TODAY - timedelta(days=2)
    pull_as = client.pull_as

    def pull_held_when_wide(read: Any, filters: dict[str, str], offset: int, limit: int) -> Any:
        tasks = sorted(task.window for task in plan[0])
        rules = rules_of(settings)
        start = request_bounds(tasks[0], rules.zone, rules.date_format, rules.end_inclusive)[0]
        end = widened_end(request_bounds(tasks[-1], rules.zone, rules.date_format, rules.end_inclusive)[1])
        if filters == {"createStartDate": start, "createEndDate": end}:  # the guard's wider request
            emu.faults.push("timeout", 1)  # held by the server for slow_seconds
            threading.Timer(0.5, stop.set, args=("received SIGTERM",)).start()
        return pull_as(read, filters, offset, limit)

    client.pull_as = pull_held_when_wide  # type: ignore[method-assign]
    began = time.monotonic()
    with pytest.raises(Stopped):
        backfill(engine, client, settings, first, last, stop=stop, on_plan=plan.append)
    took = time.monotonic() - began
    assert emu.faults.injected().get("timeout") == 1, "the guard's request was never made"
    assert took < 3, f"took {took:.1f}s to stop inside the guard's request"
    [run] = runs(engine)
    assert run.outcome == "interrupted" and run.finished_at is not None, run
    assert not finished(engine), "no empty window is recorded read without the guard's confirmation"


# -- Windows that are not empty though their last read served nothing; a server limiting a request's span ---

CLOSED_DAY = date(2025, 3, 10)  # pinned, long closed: every read of it ends at its end and may resume


def _noon_ms(day: date) -> int:
    return to_ms(datetime.combine(day, datetime.min.time(), IST) + timedelta(hours=12))


def test_a_resumed_window_whose_earlier_pages_served_orders_is_recorded_read_though_its_resumed_read_came_back_empty(
    start_emulator, engine: Engine, database_url, connect
):
    """A backfill interrupted right after a window's one full page resumes at the empty page after it: the
    window is not empty (its orders were served and stored before the interruption), so the resumed run
    asks no wider request, succeeds and records the window read, where holding it as empty would have
    found those orders and stopped the run as a bad setting."""
    emu, serving = start_emulator(orders=0, days=1, now_ms=_noon_ms(CLOSED_DAY) + 60 * 24 * 3_600_000)
    emu.store.create(10, at_ms=_noon_ms(CLOSED_DAY))
    # One page per transaction, one fetching thread: the full page commits before the interruption.
    settings = settings_for(serving.url, database_url, page_size=10, commit_rows=1, concurrency=1)
    client = connect(settings)
    pull_as = client.pull_as

    def interrupted_after_the_first_page(read: Any, filters: dict[str, str], offset: int, limit: int) -> Any:
        if offset > 0:
            raise Stopped("received SIGTERM")
        return pull_as(read, filters, offset, limit)

    client.pull_as = interrupted_after_the_first_page  # type: ignore[method-assign]
    with pytest.raises(Stopped):
        backfill(engine, client, settings, CLOSED_DAY, CLOSED_DAY)
    [row] = ledger_rows(engine)
    assert (row["progress_offset"], row["progress_seen"], row["last_scanned_at"]) == (10, 10, None)

    since = emu.pull_log()["last_seq"]
    result = backfill(engine, connect(settings), settings, CLOSED_DAY, CLOSED_DAY)
    assert result.outcome == "success" and result.totals.windows == 1
    asked = [(r["createStartDate"], r["createEndDate"], int(r["offset"])) for r in emu.pull_log(since)["requests"]]
    day = CLOSED_DAY.isoformat()
    assert asked == [(day, day, 10)], "the resumed read was taken for an empty window and checked again"
    [row] = finished(engine)
    assert row["progress_started_at"] is None
    assert [r.outcome for r in runs(engine)] == ["interrupted", "success"]
    assert_equals_truth(engine, emu.store.truth())


def test_a_server_refusing_the_guards_wide_request_is_asked_for_the_last_empty_window_alone_and_a_wrong_end_rule_stops(
    serve, engine: Engine, database_url, connect
):
    """An exclusive end read as inclusive, on a server that refuses any request spanning more than two
    days: every one-day window comes back empty, the request over all three is refused, and the last day
    asked alone (its end one day later) serves its order: the run stops as a bad setting, no window read."""
    days = [CLOSED_DAY + timedelta(days=n) for n in range(3)]
    held = [{"id": 500 + n, "createDate": _noon_ms(d), "lastModificationTime": _noon_ms(d)} for n, d in enumerate(days)]
    asked: list[tuple[str, str]] = []

    def exclusive_end_spanning_at_most_two_days(body: dict) -> list[dict] | bytes:
        start, end = body["createStartDate"], body["createEndDate"]
        asked.append((start, end))
        if date.fromisoformat(end) - date.fromisoformat(start) > timedelta(days=2):
            return b'{"status": "failed", "message": "the date range must be at most 2 days"}'
        if int(body["offset"]) > 0:
            return []
        first, last = date.fromisoformat(start), date.fromisoformat(end)
        return [r for r in held if first <= datetime.fromtimestamp(r["createDate"] / 1000, IST).date() < last]

    settings = settings_for(serve(exclusive_end_spanning_at_most_two_days), database_url)
    with pytest.raises(ReadContradicted, match="came back empty") as raised:
        backfill(engine, connect(settings), settings, days[0], days[-1])
    assert f"served order {held[-1]['id']} created" in str(raised.value)
    after = (days[-1] + timedelta(days=1)).isoformat()
    wide, alone = (days[0].isoformat(), after), (days[-1].isoformat(), after)
    assert asked[-2:] == [wide, alone], "the refused wide request was not followed by the last window alone"
    assert sorted(set(asked[:-2])) == [(d.isoformat(), d.isoformat()) for d in days]
    assert finished(engine) == [], "an empty window was recorded read on the strength of a wrong end rule"
    assert [(r.outcome, r.error) for r in runs(engine)] == [("failed", str(raised.value))]


NEW_YORK = ZoneInfo("America/New_York")
HOUR_MS = 3_600_000


@pytest.mark.parametrize(
    ("start", "end", "end_inclusive", "first_utc", "hours"),
    [
        pytest.param(
            "2025-03-09", "2025-03-09", True, datetime(2025, 3, 9, 5, tzinfo=UTC), 23, id="spring day, inclusive"
        ),
        pytest.param(
            "2025-03-09", "2025-03-10", False, datetime(2025, 3, 9, 5, tzinfo=UTC), 23, id="spring day, exclusive"
        ),
        pytest.param(
            "2025-11-02", "2025-11-02", True, datetime(2025, 11, 2, 4, tzinfo=UTC), 25, id="fall day, inclusive"
        ),
        pytest.param(
            "2025-11-02", "2025-11-03", False, datetime(2025, 11, 2, 4, tzinfo=UTC), 25, id="fall day, exclusive"
        ),
        pytest.param(
            "2025-03-08", "2025-03-09", True, datetime(2025, 3, 8, 5, tzinfo=UTC), 47, id="two days, inclusive"
        ),
        pytest.param(
            "2025-11-01", "2025-11-03", False, datetime(2025, 11, 1, 4, tzinfo=UTC), 49, id="two days, exclusive"
        ),
        pytest.param(  # the repeated wall hour, asked for in seconds: both of its passes
            "2025-11-02 01:00:00",
            "2025-11-02 01:59:59",
            True,
            datetime(2025, 11, 2, 5, tzinfo=UTC),
            2,
            id="repeated hour, inclusive",
        ),
        pytest.param(
            "2025-11-02 01:00:00",
            "2025-11-02 02:00:00",
            False,
            datetime(2025, 11, 2, 5, tzinfo=UTC),
            2,
            id="repeated hour, exclusive",
        ),
        pytest.param(  # 01:00 to 04:00 wall across the hour that never happens: two real hours
            "2025-03-09 01:00:00",
            "2025-03-09 03:59:59",
            True,
            datetime(2025, 3, 9, 6, tzinfo=UTC),
            2,
            id="skipped hour, inclusive",
        ),
    ],
)
def test_the_span_a_request_asks_for_on_a_daylight_saving_day_is_its_real_length(
    start: str, end: str, end_inclusive: bool, first_utc: datetime, hours: int
) -> None:
    """The guard judges each order against this span: a 23-hour day taken as 24 would let through an
    order of the next day's first hour, a 25-hour day taken as 24 would stop a right run at 23:30."""
    low, high = requested_span(start, end, NEW_YORK, end_inclusive)
    assert low == to_ms(first_utc)
    assert (high - low) / HOUR_MS == hours
