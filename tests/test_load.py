"""The upsert on SQLite and PostgreSQL: exact counts, no rewrite of unchanged rows, newest wins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import Engine

from sync.db import writer
from sync.load import upsert_orders
from sync.transform import to_row
from tests.helpers import stored

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def record(order_id: int, modified_ms: int, value: float = 10.25) -> dict:
    return {
        "id": order_id,
        "cmId": 1000298,
        "createDate": 1_790_000_000_000,
        "lastModificationTime": modified_ms,
        "productValue": value,
        "invoiceSent": True,
        "remarks": "हिंदी ✓",
    }


def write(engine: Engine, records: list[dict], synced_at: datetime):
    rows = [to_row(r, 1000298, synced_at) for r in records]
    with writer(engine).begin() as conn:
        counts, changed = upsert_orders(conn, 1000298, rows)
    return counts, changed


def test_counts_are_exact_and_only_changed_rows_are_written(engine: Engine):
    counts, _ = write(engine, [record(1, 1_790_000_000_000), record(2, 1_790_000_000_000)], T0)
    assert (counts.inserted, counts.updated, counts.unchanged) == (2, 0, 0)

    later = T0 + timedelta(hours=1)
    counts, changed = write(
        engine, [record(1, 1_790_000_000_000), record(2, 1_790_000_999_000, 99.5), record(3, 1_790_000_000_000)], later
    )
    assert (counts.inserted, counts.updated, counts.unchanged) == (1, 1, 1)
    assert sorted(r["id"] for r in changed) == [2, 3]
    rows = stored(engine)
    assert rows[1].synced_at == T0, "an unchanged row must keep its synced_at"
    assert rows[2].synced_at == later and rows[2].product_value == Decimal("99.5")
    assert rows[2].raw["productValue"] == 99.5


def test_an_older_version_never_overwrites_a_newer_one(engine: Engine):
    write(engine, [record(7, 1_790_000_500_000, 50.0)], T0)
    counts, _ = write(engine, [record(7, 1_790_000_000_000, 1.0)], T0 + timedelta(hours=1))
    assert counts.unchanged == 1
    row = stored(engine)[7]
    assert row.product_value == Decimal("50.0") and row.synced_at == T0


def test_types_round_trip_on_both_databases(engine: Engine):
    write(engine, [record(9, 1_790_000_000_123, 1234567.89)], T0)
    row = stored(engine)[9]
    assert row.last_modification_time == datetime(2026, 9, 21, 14, 13, 20, 123000, tzinfo=UTC)
    assert row.last_modification_time.tzinfo is not None
    assert row.product_value == Decimal("1234567.89")
    assert row.invoice_sent is True and row.remarks == "हिंदी ✓"
