"""Order history: every distinct version a read saw, written with the upsert, on both databases."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from alembic import command
from sqlalchemy import Engine, delete, select, text

from sync.db import alembic_config, make_engine, upgrade, writer
from sync.load import stored_versions, upsert_orders, upsert_prepared
from sync.models import Order, OrderVersion, SyncAccount, ZoneOffset
from sync.prepare import prepare
from sync.runs import backfill, reconcile, sync
from sync.transform import to_row
from tests.conftest import settings_for
from tests.helpers import stored

FIRST = date.today() - timedelta(days=45)


def versions(engine: Engine) -> dict[int, list[OrderVersion]]:
    with engine.connect() as conn:
        rows = conn.execute(select(OrderVersion).order_by(OrderVersion.id, OrderVersion.last_modification_time)).all()
    found: dict[int, list] = {}
    for row in rows:
        found.setdefault(row.id, []).append(row)
    return found


def test_every_version_a_read_saw_is_recorded_with_the_upsert(start_emulator, engine: Engine, database_url, connect):
    emu, serving = start_emulator(orders=300, days=12)
    settings = settings_for(serving.url, database_url, lookback_days=7)
    client = connect(settings)
    backfill(engine, client, settings, FIRST)
    before = {r["id"]: r for r in emu.store.truth()}
    first = versions(engine)
    assert set(first) == set(stored(engine)), "every stored order has its first version"
    assert all(len(v) == 1 for v in first.values())

    edited = emu.store.edit(n=6)
    sync(engine, client, settings)
    history = versions(engine)
    rows = stored(engine)
    for record in edited:
        old, new = history[record["id"]]
        assert old.delivery_status == before[record["id"]]["deliveryStatus"]
        assert new.delivery_status == record["deliveryStatus"] != old.delivery_status
        assert new.raw == record and new.fingerprint == rows[record["id"]].fingerprint
        assert new.first_seen_at == rows[record["id"]].synced_at
    untouched = set(history) - {r["id"] for r in edited}
    assert all(len(history[i]) == 1 for i in untouched), "an unchanged order gained a version"

    sync(engine, client, settings)  # nothing changed: nothing recorded
    assert sum(map(len, versions(engine).values())) == sum(map(len, history.values()))


def test_a_change_under_the_same_stamp_is_a_new_version(start_emulator, engine: Engine, database_url, connect):
    emu, serving = start_emulator(orders=120, days=5)
    settings = settings_for(serving.url, database_url)
    client = connect(settings)
    backfill(engine, client, settings, FIRST)
    [record] = emu.store.edit(n=1, keep_stamp=True)
    reconcile(engine, client, settings)
    old, new = sorted(versions(engine)[record["id"]], key=lambda v: v.first_seen_at)
    assert old.last_modification_time == new.last_modification_time
    assert old.fingerprint != new.fingerprint and new.raw == record


def test_history_can_be_turned_off(start_emulator, engine: Engine, database_url, connect):
    emu, serving = start_emulator(orders=60, days=3)
    settings = settings_for(serving.url, database_url, history=False)
    backfill(engine, connect(settings), settings, FIRST)
    assert len(stored(engine)) > 0 and versions(engine) == {}
    with engine.connect() as conn:
        account = conn.execute(select(SyncAccount)).one()
    assert (account.history, account.timezone, account.lookback_days) == (False, "Asia/Kolkata", 7)


def test_versions_commit_and_roll_back_with_the_rows(engine: Engine):
    now = datetime(2026, 11, 1, tzinfo=UTC)
    record = {"id": 9, "createDate": 1_790_000_000_000, "lastModificationTime": 1_790_000_000_000}
    with pytest.raises(RuntimeError), writer(engine).begin() as conn:
        upsert_orders(conn, 1000298, [to_row(record, 1000298, now)])
        raise RuntimeError("the page failed")
    assert versions(engine) == {} and stored(engine) == {}
    with writer(engine).begin() as conn:
        upsert_orders(conn, 1000298, [to_row(record, 1000298, now)])
    assert [v.first_seen_at for v in versions(engine)[9]] == [now]


def _served(order_id: int, modified_ms: int, status: str = "DL") -> dict:
    return {
        "id": order_id,
        "createDate": 1_790_000_000_000,
        "lastModificationTime": modified_ms,
        "deliveryStatus": status,
    }


def _write(engine: Engine, records: list[dict], synced: datetime, prepared: bool) -> None:
    """One page through the writer's path (`prepared`) or `reconcile`'s (mapped rows)."""
    with writer(engine).begin() as conn:
        have = stored_versions(conn, 1000298, [r["id"] for r in records])
        if prepared:
            rows = [r for r in prepare(records, 1000298, engine.dialect.name) if isinstance(r, tuple)]
            upsert_prepared(conn, 1000298, rows, have, synced)
        else:
            upsert_orders(conn, 1000298, [to_row(r, 1000298, synced) for r in records], have)


@pytest.mark.parametrize("prepared", [True, False], ids=["writer", "reconcile"])
def test_an_order_deleted_by_hand_comes_back_with_its_history_intact(engine: Engine, prepared: bool):
    """An order deleted from `orders` by hand, its versions kept, is new to `orders` but not to
    `order_versions`: its page must neither fail nor record the version twice, and the page's other
    rows (changed, new) are recorded as usual."""
    t1, t2 = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    _write(engine, [_served(1, 1_790_000_000_000), _served(2, 1_790_000_000_000)], t1, prepared)
    with writer(engine).begin() as conn:
        conn.execute(delete(Order).where(Order.id == 1))
    page = [_served(1, 1_790_000_000_000), _served(2, 1_790_000_500_000, "RTO"), _served(3, 1_790_000_000_000)]
    _write(engine, page, t2, prepared)
    history = {
        i: [(v.last_modification_time, v.delivery_status, v.first_seen_at) for v in vs]
        for i, vs in versions(engine).items()
    }
    stamp = datetime.fromtimestamp(1_790_000_000, UTC)
    later = datetime.fromtimestamp(1_790_000_500, UTC)
    assert history == {
        1: [(stamp, "DL", t1)],  # recorded once, when first seen
        2: [(stamp, "DL", t1), (later, "RTO", t2)],
        3: [(stamp, "DL", t2)],
    }
    assert set(stored(engine)) == {1, 2, 3}


def test_a_run_records_its_zone_and_the_offsets_sqlite_needs(start_emulator, engine: Engine, database_url, connect):
    emu, serving = start_emulator(orders=20, days=2, timezone="America/New_York")
    settings = settings_for(serving.url, database_url, timezone="America/New_York")
    backfill(engine, connect(settings), settings, FIRST)
    with engine.connect() as conn:
        zone = conn.execute(select(SyncAccount.timezone)).scalar_one()
        offsets = (
            conn.execute(
                select(ZoneOffset.utc_offset_seconds).where(ZoneOffset.zone == zone).order_by(ZoneOffset.starts_at)
            )
            .scalars()
            .all()
        )
    assert zone == "America/New_York"
    assert set(offsets) == {-18000, -14400} and len(offsets) > 200  # one row per DST change since 1970


def test_upgrading_gives_every_stored_order_its_current_version_as_first_history_row(database_url: str):
    engine = make_engine(database_url)
    try:
        with writer(engine).begin() as conn:
            command.upgrade(alembic_config(conn), "0002")
        synced = datetime(2026, 9, 21, 10, tzinfo=UTC)
        served = {"id": 5, "createDate": 1_790_000_000_000, "lastModificationTime": 1_790_000_500_000}
        row = to_row({**served, "deliveryStatus": "DL", "productValue": 12.5}, 1, synced)
        with writer(engine).begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO orders (cm_id, id, create_date, last_modification_time, delivery_status, "
                    "product_value, raw, fingerprint, synced_at) VALUES (1, 5, :c, :m, 'DL', 12.5, :raw, :fp, :s)"
                ),
                {
                    "c": row["create_date"],
                    "m": row["last_modification_time"],
                    "raw": orjson.dumps(row["raw"]).decode(),
                    "fp": row["fingerprint"],
                    "s": synced,
                },
            )
        upgrade(engine)
        [[version]] = versions(engine).values()
        assert (version.id, version.delivery_status, version.fingerprint) == (5, "DL", row["fingerprint"])
        assert version.first_seen_at == synced and version.last_modification_time == row["last_modification_time"]
    finally:
        engine.dispose()
