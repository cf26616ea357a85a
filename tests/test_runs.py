"""Backfill, sync and reconcile end to end: real HTTP to the emulator, real SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select

from sync.errors import KaptureRejected, LeaseHeld
from sync.models import Order, SyncState, SyncWindow
from sync.runs import backfill, reconcile, sync
from sync.state import Account, acquire_lease
from sync.windows import from_ms, to_ms
from tests.conftest import settings_for
from tests.helpers import assert_equals_truth, rejected, runs, storable, stored

FIRST = date.today() - timedelta(days=45)


def test_backfill_stores_every_order_once_equal_to_what_was_served(emulator, engine: Engine, database_url, connect):
    emu, serving = emulator
    settings = settings_for(serving.url, database_url)
    result = backfill(engine, connect(settings), settings, FIRST)

    truth = emu.store.truth()
    assert_equals_truth(engine, truth)
    assert result.outcome == "success"
    assert result.totals.load.inserted == len(truth)
    [run] = runs(engine)
    assert (run.kind, run.outcome, run.inserted, run.records_fetched) == ("backfill", "success", len(truth), len(truth))
    assert run.pages >= len(truth) // settings.page_size
    with engine.connect() as conn:
        watermark = conn.execute(select(SyncState.watermark)).scalar_one()
        finished = conn.execute(select(SyncWindow).where(SyncWindow.last_scanned_at.is_not(None))).all()
    assert watermark == max(from_ms(r["lastModificationTime"]) for r in truth)
    assert len(finished) == result.planned_windows


def test_sync_finds_new_and_edited_orders_and_leaves_unchanged_rows_alone(
    emulator, engine: Engine, database_url, connect
):
    emu, serving = emulator
    settings = settings_for(serving.url, database_url, lookback_days=7)
    client = connect(settings)
    backfill(engine, client, settings, FIRST)
    before = stored(engine)

    created = emu.store.create(4)
    edited = emu.store.edit(n=5)
    result = sync(engine, client, settings)

    assert (result.totals.load.inserted, result.totals.load.updated) == (4, 5)
    assert_equals_truth(engine, emu.store.truth())
    after = stored(engine)
    touched = {r["id"] for r in created + edited}
    untouched = [i for i in before if i not in touched]
    assert all(after[i].synced_at == before[i].synced_at for i in untouched), "an unchanged row was rewritten"
    assert all(after[r["id"]].synced_at > before[r["id"]].synced_at for r in edited)

    again = sync(engine, client, settings)
    assert (again.totals.load.inserted, again.totals.load.updated) == (0, 0)


def test_an_old_edit_is_missed_by_sync_and_found_by_reconcile(start_emulator, engine: Engine, database_url, connect):
    emu, serving = start_emulator(orders=400, days=40)
    settings = settings_for(serving.url, database_url, lookback_days=3, rescan_horizon_days=10)
    client = connect(settings)
    backfill(engine, client, settings, FIRST)
    now_ms = emu.store.now_ms()
    old = next(r for r in emu.store.truth() if storable(r) and now_ms - r["createDate"] > 25 * 86_400_000)
    emu.store.edit(ids=[old["id"]])

    missed = sync(engine, client, settings)
    assert missed.totals.load.updated == 0
    assert stored(engine)[old["id"]].last_modification_time == from_ms(old["lastModificationTime"])

    found = reconcile(engine, client, settings)
    assert found.totals.load.updated == 1
    assert found.totals.oldest_change_days is not None and found.totals.oldest_change_days >= 25
    assert sum(found.totals.changed_by_age.values()) == 1
    assert_equals_truth(engine, emu.store.truth())
    assert runs(engine)[-1].details["changed_by_age"] == dict(found.totals.changed_by_age)


def test_silent_limit_cap_and_newest_first_drift_lose_nothing(emulator, engine: Engine, database_url, connect):
    emu, serving = emulator
    emu.faults.limit_cap = 7
    emu.faults.newest_first = True
    emu.faults.latency_ms = 2
    settings = settings_for(serving.url, database_url, page_size=50)
    existing = {r["id"] for r in emu.store.truth()}
    stop = threading.Event()

    def arrive() -> None:  # orders keep arriving in today's window while it is paged newest-first
        while not stop.wait(0.01):
            emu.store.create(1)

    arrivals = threading.Thread(target=arrive)
    arrivals.start()
    try:
        result = backfill(engine, connect(settings), settings, FIRST)
    finally:
        stop.set()
        arrivals.join()
    assert existing <= set(stored(engine)), "an order that existed before the scan was skipped"
    assert result.totals.records_fetched >= len(existing)
    sync(engine, connect(settings), settings)
    assert_equals_truth(engine, emu.store.truth())


def test_malformed_records_are_rejected_with_a_reason_and_never_sink_the_page(
    start_emulator, engine: Engine, database_url, connect
):
    emu, serving = start_emulator(malformed_rate=0.05)
    settings = settings_for(serving.url, database_url)
    result = backfill(engine, connect(settings), settings, FIRST)
    truth = emu.store.truth()
    bad = [r for r in truth if not storable(r)]
    assert bad, "the emulator should have served malformed records"
    assert_equals_truth(engine, truth)
    assert result.totals.rejected == len(bad)
    stored_rejects = rejected(engine)
    assert len(stored_rejects) == len(bad)
    assert {tuple(sorted(r.raw.items())) for r in stored_rejects} == {tuple(sorted(r.items())) for r in bad}
    assert all(("id: missing" in r.reason) or ("null" in r.reason) for r in stored_rejects)
    assert any("loyaltyTier" in o.raw or "couponCode" in o.raw or "sourceApp" in o.raw for o in stored(engine).values())

    reconcile(engine, connect(settings), settings)
    again = rejected(engine)
    assert len(again) == len(bad), "a bad record seen twice must be kept once"
    assert all(r.seen_count == 2 for r in again)


def test_transient_faults_are_retried_and_the_result_is_complete(emulator, engine: Engine, database_url, connect):
    emu, serving = emulator
    emu.faults.retry_after_seconds = 1
    emu.faults.slow_seconds = 1.5
    for kind in ("503", "500", "429", "truncate", "bad_json", "disconnect", "timeout", "502"):
        emu.faults.push(kind)
    settings = settings_for(serving.url, database_url, timeout=0.5, max_attempts=10)
    client = connect(settings)
    result = backfill(engine, client, settings, FIRST)
    assert result.outcome == "success"
    assert_equals_truth(engine, emu.store.truth())
    assert client.stats.retries == 8
    assert sum(emu.stats()["faults"].values()) == 8


def test_a_failed_body_about_the_request_stops_the_run_and_writes_nothing(
    emulator, engine: Engine, database_url, connect
):
    emu, serving = emulator
    emu.faults.push("refused_body")
    settings = settings_for(serving.url, database_url)
    with pytest.raises(KaptureRejected, match="Invalid request"):
        backfill(engine, connect(settings), settings, FIRST)
    assert stored(engine) == {}
    [run] = runs(engine)
    assert run.outcome == "failed" and "Invalid request" in run.error


def test_a_second_process_cannot_sync_the_same_account_at_once(emulator, engine: Engine, database_url, connect):
    """The lock refuses the run; the lease record names the holder, however old it looks."""
    from sync.lock import AccountLock

    emu, serving = emulator
    settings = settings_for(serving.url, database_url)
    account = Account(settings.cm_id)
    with AccountLock(engine, account):
        long_ago = datetime.now(UTC) - timedelta(days=1)
        acquire_lease(engine, account, "otherhost:1:abc", timedelta(minutes=5), long_ago)
        with pytest.raises(LeaseHeld, match="otherhost:1"):
            sync(engine, connect(settings), settings)
    assert stored(engine) == {}
    [refused] = runs(engine)
    assert (refused.kind, refused.outcome) == ("sync", "refused") and "otherhost" in refused.error


def test_a_deep_window_is_split_when_datetime_bounds_allow(start_emulator, engine: Engine, connect, database_url):
    emu, serving = start_emulator(orders=900, days=2)
    settings = settings_for(serving.url, database_url, date_format="datetime", split_offset=120, page_size=40)
    result = backfill(engine, connect(settings), settings, FIRST)
    assert_equals_truth(engine, emu.store.truth())
    with engine.connect() as conn:
        windows = conn.execute(select(SyncWindow.order_count)).scalars().all()
    assert sum(windows) == 900
    assert max(windows) > 120, "the test needs a window deeper than the split offset"
    assert result.totals.records_fetched >= 900
    offsets = [int(r["offset"]) for r in emu.pull_log()["requests"]]
    assert max(offsets) < 120 + 40, "a deep window was paged to deep offsets instead of being split"


@pytest.mark.parametrize("method,end_inclusive", [("GET", True), ("POST", False)])
def test_get_with_body_and_exclusive_end_dates_work(
    start_emulator, engine: Engine, connect, method, end_inclusive, database_url
):
    emu, serving = start_emulator(end_inclusive=end_inclusive)
    settings = settings_for(serving.url, database_url, http_method=method, end_inclusive=end_inclusive)
    backfill(engine, connect(settings), settings, FIRST)
    assert_equals_truth(engine, emu.store.truth())
    assert set(emu.stats()["methods"]) == {method}, "the configured HTTP method was not the one sent"
    with engine.connect() as conn:
        assert conn.execute(select(Order.cm_id).distinct()).scalars().all() == [1000298]


def test_an_order_stamped_in_the_future_does_not_hide_later_changes(serve, engine: Engine, database_url, connect):
    """A fast clock at Kapture raises the watermark past now; windows must not be floored at it."""
    zone = ZoneInfo("Asia/Kolkata")
    served: dict[int, dict] = {}

    def answer(body: dict) -> list[dict]:
        low = datetime.combine(date.fromisoformat(body["createStartDate"]), datetime.min.time(), zone)
        high = datetime.combine(
            date.fromisoformat(body["createEndDate"]) + timedelta(days=1), datetime.min.time(), zone
        )
        rows = sorted(
            (r for r in served.values() if to_ms(low) <= r["createDate"] < to_ms(high)), key=lambda r: r["id"]
        )
        return rows[int(body["offset"]) :][: int(body["limit"])]

    t0 = datetime(2024, 5, 3, 6, 0, tzinfo=UTC)

    def order(order_id: int, created: datetime, modified: datetime, remarks: str = "") -> None:
        served[order_id] = {
            "id": order_id,
            "cmId": 1000298,
            "createDate": to_ms(created),
            "lastModificationTime": to_ms(modified),
            "remarks": remarks,
        }

    order(1, t0 - timedelta(days=1), t0 - timedelta(days=1), "v1")
    order(2, t0 - timedelta(days=2), t0 + timedelta(hours=5, minutes=30), "stamped as if IST were UTC")
    settings = settings_for(serve(answer), database_url, start_date=date(2024, 5, 1))
    client = connect(settings)
    for minutes in (0, 15):
        sync(engine, client, settings, clock=lambda m=minutes: t0 + timedelta(minutes=m))
    order(3, t0 + timedelta(minutes=20), t0 + timedelta(minutes=20))
    order(1, t0 - timedelta(days=1), t0 + timedelta(minutes=21), "v2")
    result = sync(engine, client, settings, clock=lambda: t0 + timedelta(minutes=30))
    assert (result.totals.load.inserted, result.totals.load.updated) == (1, 1)
    assert stored(engine)[1].remarks == "v2" and 3 in stored(engine)
    with engine.connect() as conn:
        floors = conn.execute(select(SyncWindow.scan_floor).where(SyncWindow.scan_floor.is_not(None))).scalars().all()
    assert floors and all(floor <= t0 + timedelta(minutes=30) for floor in floors), "no window floored in the future"


def test_records_no_column_can_hold_are_rejected_and_the_good_ones_beside_them_stored(
    serve, engine: Engine, database_url, connect
):
    now = datetime.now(UTC)
    base = {
        "cmId": 1000298,
        "createDate": to_ms(now - timedelta(days=1)),
        "lastModificationTime": to_ms(now - timedelta(days=1)),
    }
    page = [
        {**base, "id": 1, "remarks": "good"},
        {**base, "id": 2, "productQuantity": 3_000_000_000},
        {**base, "id": 3, "remarks": "nul \x00 inside"},
        {**base, "id": 2**63},
        {**base, "id": 5, "extra": {"deep": "\x00"}},
        {**base, "id": 6, "remarks": "also good"},
    ]
    url = serve(lambda body: page[int(body["offset"]) :][: int(body["limit"])])  # whatever the window asked
    settings = settings_for(url, database_url)
    day = (now - timedelta(days=1)).astimezone(ZoneInfo("Asia/Kolkata")).date()
    result = backfill(engine, connect(settings), settings, day, day)  # the one window they belong to
    assert result.outcome == "success"
    assert sorted(stored(engine)) == [1, 6]
    reasons = sorted(r.reason for r in rejected(engine))
    assert len(reasons) == 4 and any("NUL" in r for r in reasons) and any("out of range" in r for r in reasons)
    assert any(r.raw.get("remarks") == "nul \\u0000 inside" for r in rejected(engine))


def test_a_read_that_could_not_prove_its_end_leaves_no_floor(serve, engine: Engine, database_url, connect):
    """Orders arriving throughout today's window: its read ends unproven, so later reads compare every row."""
    now = datetime.now(UTC)
    requests = {"count": 0}

    def arriving(body: dict) -> list[dict]:
        requests["count"] += 1
        listing = [
            {"id": 10_000 + i, "cmId": 1000298, "createDate": to_ms(now), "lastModificationTime": to_ms(now)}
            for i in range(20 + 5 * requests["count"])
        ]
        return listing[::-1][int(body["offset"]) :][: int(body["limit"])]

    today = now.astimezone(ZoneInfo("Asia/Kolkata")).date()  # the account's today, not this machine's (UTC)
    settings = settings_for(serve(arriving), database_url, page_size=10, start_date=today)
    client = connect(settings)
    sync(engine, client, settings)
    sync(engine, client, settings)
    with engine.connect() as conn:
        floors = conn.execute(select(SyncWindow.scan_floor)).scalars().all()
        watermark = conn.execute(select(SyncState.watermark)).scalar_one()
    assert watermark is not None, "the second read began with a watermark it could have used as a floor"
    assert floors and all(f is None for f in floors)


def test_a_cap_brought_in_between_runs_of_one_process_loses_nothing(
    start_emulator, engine: Engine, database_url, connect
):
    # One process, as the daemon is: the first run sees limit 50 honoured (full pages of 50); then
    # Kapture starts capping it at 20. A short page must not be trusted on the strength of the
    # earlier run: the next run pages each window to its empty page again.
    emu, serving = start_emulator(orders=400, days=4, seed=17)
    settings = settings_for(serving.url, database_url, page_size=50)
    client = connect(settings)
    backfill(engine, client, settings, date.today() - timedelta(days=5))
    assert_equals_truth(engine, emu.store.truth())
    emu.faults.limit_cap = 20
    emu.store.create(60)
    emu.store.edit(n=30)
    sync(engine, client, settings)
    assert_equals_truth(engine, emu.store.truth())


def test_deletion_detection_turns_off_trusting_short_pages():
    from sync.runs import rules_of

    url = "http://127.0.0.1:9"  # settings only: nothing is requested
    assert rules_of(settings_for(url)).trust_short_pages is True
    assert rules_of(settings_for(url, detect_deletions=True)).trust_short_pages is False
