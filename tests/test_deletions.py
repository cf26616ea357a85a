"""Opt-in deletions: an order Kapture stops serving is marked, never removed, and revived if served again."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

from sync.runs import backfill, reconcile
from tests.conftest import settings_for
from tests.helpers import storable, stored

FIRST = date.today() - timedelta(days=12)
DAY_MS = 86_400_000
ZONE = ZoneInfo("Asia/Kolkata")  # settings_for's account zone, in which windows are days


def _old_orders(emu, n: int, days_ago: int = 5) -> list[int]:
    """Orders of one closed window, a whole day in the account's zone (as the sync reads them), so
    that the share of it a test deletes does not depend on the hour the test runs: a UTC day
    straddles two such windows, and the emulator's first day holds only what was created after
    this time of day (5 orders at 23:05 in Kolkata, 116 at 00:05)."""
    now_ms = emu.store.now_ms()
    old = [r for r in emu.store.truth() if storable(r) and days_ago * DAY_MS < now_ms - r["createDate"]]

    def local_day(record: dict) -> date:
        return datetime.fromtimestamp(record["createDate"] / 1000, ZONE).date()

    first_whole_day = sorted({local_day(r) for r in old})[1]
    return [r["id"] for r in old if local_day(r) == first_whole_day][:n]


def test_an_order_kapture_stops_serving_is_marked_after_two_stable_reads_and_revived_when_served(
    start_emulator, engine: Engine, database_url, connect
):
    emu, serving = start_emulator(orders=1500, days=10)
    settings = settings_for(serving.url, database_url, detect_deletions=True, deletion_max_share=0.2)
    client = connect(settings)
    backfill(engine, client, settings, FIRST)
    gone = emu.store.delete(_old_orders(emu, 2))

    first = reconcile(engine, client, settings)  # the count changed since the last read: not yet
    assert first.totals.deleted == 0
    assert all(stored(engine)[r["id"]].deleted_at is None for r in gone)

    second = reconcile(engine, client, settings)  # the same count twice: gone for real
    assert second.totals.deleted == 2
    rows = stored(engine)
    assert all(rows[r["id"]].deleted_at is not None for r in gone), "marked, and never removed"
    assert sum(1 for o in rows.values() if o.deleted_at is not None) == 2

    emu.store.restore(gone)
    back = reconcile(engine, client, settings)
    assert back.totals.revived == 2
    assert all(stored(engine)[r["id"]].deleted_at is None for r in gone)


def test_a_read_missing_more_than_the_allowed_share_marks_nothing(
    start_emulator, engine: Engine, database_url, connect
):
    emu, serving = start_emulator(orders=1500, days=10)
    settings = settings_for(serving.url, database_url, detect_deletions=True, deletion_max_share=0.2)
    client = connect(settings)
    backfill(engine, client, settings, FIRST)
    window = _old_orders(emu, 10_000)
    emu.store.delete(window[: len(window) // 2])  # a bad answer that loses half a window

    reconcile(engine, client, settings)
    again = reconcile(engine, client, settings)

    assert again.totals.deleted == 0
    assert all(o.deleted_at is None for o in stored(engine).values())


def test_deletions_are_off_by_default(start_emulator, engine: Engine, database_url, connect):
    """Only the switch differs from the test that marks them: the share missing is within the limit."""
    emu, serving = start_emulator(orders=1500, days=10)
    settings = settings_for(serving.url, database_url, deletion_max_share=0.2)
    assert settings.detect_deletions is False
    client = connect(settings)
    backfill(engine, client, settings, FIRST)
    gone = emu.store.delete(_old_orders(emu, 2))
    reconcile(engine, client, settings)
    reconcile(engine, client, settings)
    assert all(stored(engine)[r["id"]].deleted_at is None for r in gone)
