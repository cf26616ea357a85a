"""Opt-in deletions: an order Kapture stops serving is marked, never removed, and revived if served again."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, insert

from sync.db import writer
from sync.deletions import DeletionRules, settle
from sync.load import upsert_orders
from sync.models import SyncWindow
from sync.runs import backfill, reconcile
from sync.schedule import Task
from sync.state import Account, Progress
from sync.transform import to_row
from sync.windows import Window, to_ms
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


# `settle` alone, on a window whose ten orders are stored and whose last complete read served ten:
# a read that serves eight of them marks the two missing only when it is complete and stable.
_START = datetime(2024, 5, 1, tzinfo=UTC)
_WINDOW = Window(_START, _START + timedelta(days=1))
_NOW = _START + timedelta(days=3)
_ACCOUNT = Account(1000298)
_RULES = DeletionRules(enabled=True, max_share=0.25)


def _stored_window(engine: Engine, previous_count: int = 8) -> list[int]:
    ids = list(range(1, 11))
    records = [
        {"id": i, "createDate": to_ms(_START) + i * 1000, "lastModificationTime": to_ms(_START) + i * 1000} for i in ids
    ]
    with writer(engine).begin() as conn:
        upsert_orders(conn, _ACCOUNT.cm_id, [to_row(r, _ACCOUNT.cm_id, _NOW) for r in records])
        conn.execute(
            insert(SyncWindow).values(
                cm_id=_ACCOUNT.cm_id,
                stream=_ACCOUNT.stream,
                window_start=_WINDOW.start,
                window_end=_WINDOW.end,
                last_scanned_at=_NOW - timedelta(days=1),
                order_count=previous_count,
                scans=1,
            )
        )
    return ids


def _settle(engine: Engine, task: Task, proven: bool = True) -> int:
    with writer(engine).begin() as conn:
        return settle(conn, _ACCOUNT, task, set(range(1, 9)), 8, proven, _RULES, _NOW).marked


def _resumed() -> Progress:
    return Progress(_NOW, _WINDOW.end, None, None, _WINDOW, 40, 40, 0, None)


def test_settle_marks_the_missing_orders_of_a_complete_stable_read(engine: Engine):
    _stored_window(engine)
    assert _settle(engine, Task(_WINDOW, _WINDOW.end, None, "reconcile")) == 2
    assert {i for i, o in stored(engine).items() if o.deleted_at is not None} == {9, 10}


@pytest.mark.parametrize(
    "task, proven, why",
    [
        (Task(_WINDOW, _WINDOW.end, None, "reconcile"), False, "its end was not proven (a short page trusted)"),
        (Task(_WINDOW, _WINDOW.end, None, "resume", _resumed()), True, "resumed mid-window, not read from its start"),
        (Task(_WINDOW, _WINDOW.end - timedelta(hours=1), None, "lookback"), True, "the window had not closed"),
    ],
    ids=["end not proven", "resumed", "window still open"],
)
def test_settle_marks_nothing_from_a_read_that_is_not_complete(engine: Engine, task, proven, why):
    _stored_window(engine)
    assert _settle(engine, task, proven) == 0, why
    assert all(o.deleted_at is None for o in stored(engine).values())


def test_settle_marks_nothing_while_the_count_served_still_changes(engine: Engine):
    _stored_window(engine, previous_count=10)  # the last complete read served ten: this one's eight is news
    assert _settle(engine, Task(_WINDOW, _WINDOW.end, None, "reconcile")) == 0
