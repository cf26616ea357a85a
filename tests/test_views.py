"""The analysts' views: same names and columns on both databases, local times right across DST, sums exact."""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, inspect, text

from sync.db import writer
from sync.history import register_account
from sync.load import upsert_orders
from sync.runs import backfill, sync
from sync.schema_doc import columns_of, dictionary, is_view
from sync.transform import to_row
from sync.windows import to_ms
from tests.conftest import settings_for
from tests.helpers import stored

NEW_YORK = ZoneInfo("America/New_York")
# Fixed "now" for the emulator: its orders span the fall-back of 2026-11-01 in New York.
EMULATOR_NOW = datetime(2026, 11, 5, 12, tzinfo=UTC)


def as_local(value: Any) -> datetime:
    """A local time as either database returns it (SQLite: text)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def as_day(value: Any) -> date:
    return date.fromisoformat(value) if isinstance(value, str) else value


def as_decimal(value: Any) -> Decimal:
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def query(engine: Engine, sql: str, **params: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(sql), params).mappings()]


@pytest.fixture
def synced(start_emulator, engine: Engine, database_url, connect):
    emu, serving = start_emulator(orders=250, days=30, timezone="America/New_York", now_ms=to_ms(EMULATOR_NOW))
    settings = settings_for(serving.url, database_url, timezone="America/New_York", lookback_days=60)
    client = connect(settings)
    backfill(engine, client, settings, EMULATOR_NOW.date() - timedelta(days=32))
    before = {r["id"]: r for r in emu.store.truth()}
    edited = emu.store.edit(n=8)
    sync(engine, client, settings)
    return emu, before, edited


VIEWS = [name for name in dictionary() if is_view(name)]


def test_every_view_has_the_dictionary_columns_in_order_on_both_databases(engine: Engine):
    for view in VIEWS:
        with engine.connect() as conn:
            keys = list(conn.execute(text(f"SELECT * FROM {view} WHERE 1 = 0")).keys())
        assert keys == [c for c, _, _ in columns_of(view)], view


def test_orders_current_shows_local_times_across_dst_and_status_names(synced, engine: Engine):
    rows = query(engine, "SELECT * FROM orders_current")
    orders = stored(engine)
    assert sorted(r["id"] for r in rows) == sorted(orders)
    names = {"AP": "approved", "PN": "pending", "DL": "delivered", "CN": "cancelled", "RT": "returned"}
    offsets = set()
    for row in rows:
        order = orders[row["id"]]
        local = order.create_date.astimezone(NEW_YORK)
        offsets.add(local.utcoffset())
        assert as_local(row["create_date_local"]) == local.replace(tzinfo=None)
        assert as_day(row["create_day_local"]) == local.date()
        modified = order.last_modification_time.astimezone(NEW_YORK).replace(tzinfo=None)
        assert as_local(row["last_modification_time_local"]) == modified
        assert row["delivery_status_name"] == names[order.delivery_status]
        assert row["timezone"] == "America/New_York"
    assert offsets == {timedelta(hours=-4), timedelta(hours=-5)}, "the data must straddle the DST change"


def test_local_times_at_the_edges_of_both_dst_changes(engine: Engine, database_url):
    """Orders stamped each 15 minutes around both 2026 changes in New York, converted by each database."""
    now = datetime(2026, 11, 30, tzinfo=UTC)
    settings = settings_for("http://127.0.0.1:9", database_url, cm_id=77, timezone="America/New_York")
    instants = [
        start + timedelta(minutes=15 * i)
        for start in (datetime(2026, 3, 8, 5, tzinfo=UTC), datetime(2026, 11, 1, 4, tzinfo=UTC))
        for i in range(16)
    ]
    records = [{"id": i, "createDate": to_ms(t), "lastModificationTime": to_ms(t)} for i, t in enumerate(instants, 1)]
    with writer(engine).begin() as conn:
        register_account(conn, settings, now)
        upsert_orders(conn, 77, [to_row(r, 77, now) for r in records])
    rows = {r["id"]: r for r in query(engine, "SELECT id, create_date_local FROM orders_current WHERE cm_id = 77")}
    for i, moment in enumerate(instants, 1):
        assert as_local(rows[i]["create_date_local"]) == moment.astimezone(NEW_YORK).replace(tzinfo=None), moment


def test_daily_summaries_equal_what_the_orders_add_up_to(synced, engine: Engine):
    counts: Counter[tuple[date, str]] = Counter()
    values: dict[tuple[date, str], Decimal] = defaultdict(Decimal)
    for order in stored(engine).values():
        key = (order.create_date.astimezone(NEW_YORK).date(), order.delivery_status)
        counts[key] += 1
        values[key] += order.product_value or 0
    by_status = query(engine, "SELECT day, delivery_status, orders, product_value FROM orders_daily_status")
    assert {(as_day(r["day"]), r["delivery_status"]): r["orders"] for r in by_status} == dict(counts)
    for r in by_status:
        assert as_decimal(r["product_value"]) == values[(as_day(r["day"]), r["delivery_status"])]
    daily = {as_day(r["day"]): r for r in query(engine, "SELECT * FROM orders_daily")}
    for day in {d for d, _ in counts}:
        assert daily[day]["orders"] == sum(n for (d, _), n in counts.items() if d == day)
        assert as_decimal(daily[day]["product_value"]) == sum(v for (d, _), v in values.items() if d == day)


def test_status_changes_show_each_edit_with_the_status_before_and_after(synced, engine: Engine):
    emu, before, edited = synced
    rows = query(engine, "SELECT * FROM order_status_changes WHERE from_status IS NOT NULL")
    changes = {r["id"]: (r["from_status"], r["to_status"]) for r in rows}
    assert changes == {r["id"]: (before[r["id"]]["deliveryStatus"], r["deliveryStatus"]) for r in edited}
    firsts = query(engine, "SELECT COUNT(*) AS n FROM order_status_changes WHERE from_status IS NULL")
    assert firsts[0]["n"] == len(stored(engine)), "every order's first version seen is listed once"


def nearest_rank(ages: list[int], percent: int) -> int:
    ordered = sorted(ages)
    return next(age for rank, age in enumerate(ordered, 1) if 100 * rank >= percent * len(ordered))


def test_edit_age_figures_equal_those_computed_from_the_versions(synced, engine: Engine):
    versions = query(engine, "SELECT create_date, last_modification_time FROM order_versions")

    def epoch(value: Any) -> int:
        moment = datetime.fromisoformat(value).replace(tzinfo=UTC) if isinstance(value, str) else value
        return int(moment.timestamp() // 1)

    ages = [
        epoch(v["last_modification_time"]) - epoch(v["create_date"])
        for v in versions
        if epoch(v["last_modification_time"]) * 1000 + 999 >= 0
        and str(v["last_modification_time"]) > str(v["create_date"])
    ]
    [summary] = query(engine, "SELECT * FROM order_edit_age_summary")
    assert summary["edits"] == len(ages) > 20
    for p in (50, 90, 99):
        assert summary[f"p{p}_seconds"] == nearest_rank(ages, p)
    assert summary["max_seconds"] == max(ages)
    assert summary["lookback_days_for_p99"] == max(1, -(-nearest_rank(ages, 99) // 86400))
    assert summary["lookback_days"] == 60
    assert summary["edits_beyond_lookback"] == sum(a > 60 * 86400 for a in ages)
    histogram = query(engine, "SELECT edit_age_bucket, edits FROM order_edit_age_histogram")
    assert sum(r["edits"] for r in histogram) == len(ages)
    day = sum(3600 <= a < 86400 for a in ages)
    assert {r["edit_age_bucket"]: r["edits"] for r in histogram}.get("1h-1d", 0) == day


def test_freshness_views_describe_the_ledger(synced, engine: Engine):
    [fresh] = query(engine, "SELECT * FROM sync_freshness")
    windows = query(engine, "SELECT * FROM sync_window_coverage ORDER BY window_start")
    assert fresh["windows"] == len(windows) == fresh["windows_read"] > 30
    assert all(w["read_within"] == "hour" and 0 <= w["seconds_since_read"] < 3600 for w in windows)
    assert fresh["lookback_days"] == 60 and fresh["timezone"] == "America/New_York"
    assert fresh["lag_seconds"] >= 0


def test_postgresql_comments_and_view_types_are_the_dictionary(engine: Engine, database_url: str):
    if not database_url.startswith("postgresql"):
        pytest.skip("comments and declared types are PostgreSQL's")
    expected_types = {
        "bigint": "BIGINT",
        "integer": "INTEGER",
        "numeric": "NUMERIC",
        "text": "TEXT",
        "float": "DOUBLE PRECISION",
        "boolean": "BOOLEAN",
        "timestamp (UTC)": "TIMESTAMP WITH TIME ZONE",
        "timestamp (local)": "TIMESTAMP WITHOUT TIME ZONE",
        "date (local)": "DATE",
        "json (JSONB on PostgreSQL)": "JSONB",
    }
    inspector = inspect(engine)
    for name, (meaning, _) in dictionary().items():
        assert inspector.get_table_comment(name)["text"] == meaning, name
        reflected = {c["name"]: c for c in inspector.get_columns(name)}
        for column, kind, column_meaning in columns_of(name):
            assert reflected[column]["comment"] == column_meaning, (name, column)
            if is_view(name):
                pg = str(reflected[column]["type"].compile(dialect=engine.dialect)).upper()
                pg = "TEXT" if pg.startswith("VARCHAR") else pg
                pg = "TIMESTAMP WITH TIME ZONE" if pg == "TIMESTAMP" and reflected[column]["type"].timezone else pg
                want = "TEXT" if kind.startswith("varchar") else expected_types[kind]
                assert pg == want, (name, column, pg, kind)
