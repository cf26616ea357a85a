"""The upsert on SQLite and PostgreSQL: exact counts, no rewrite of unchanged rows, newest wins."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, delete, select

from sync.db import ensure_schema, make_engine, writer
from sync.load import stored_versions, upsert_orders, upsert_prepared
from sync.models import Order
from sync.prepare import prepare
from sync.transform import Rejection, to_row
from tests.conftest import reset_postgres
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


def test_a_change_saved_under_the_same_stamp_is_written_and_an_identical_one_is_not(engine: Engine):
    write(engine, [record(11, 1_790_000_000_000, 5.0)], T0)
    same_stamp = {**record(11, 1_790_000_000_000, 5.0), "loyaltyTier": "gold"}  # only `raw` differs
    counts, _ = write(engine, [same_stamp], T0 + timedelta(hours=1))
    assert (counts.updated, counts.unchanged) == (1, 0)
    assert stored(engine)[11].raw["loyaltyTier"] == "gold"

    counts, _ = write(engine, [dict(reversed(list(same_stamp.items())))], T0 + timedelta(hours=2))
    assert (counts.updated, counts.unchanged) == (0, 1), "the same content in another key order is no change"
    older = {**record(11, 1_789_999_000_000, 7.0), "loyaltyTier": "silver"}
    counts, _ = write(engine, [older], T0 + timedelta(hours=3))
    assert counts.unchanged == 1 and stored(engine)[11].raw["loyaltyTier"] == "gold"


def test_a_row_missing_from_the_table_is_inserted_whatever_its_stamp(engine: Engine):
    write(engine, [record(21, 1_790_000_000_000), record(22, 1_790_000_000_000)], T0)
    with writer(engine).begin() as conn:
        conn.execute(delete(Order).where(Order.id == 21))
    counts, _ = write(engine, [record(21, 1_790_000_000_000), record(22, 1_790_000_000_000)], T0)
    assert (counts.inserted, counts.unchanged) == (1, 1)
    assert set(stored(engine)) == {21, 22}


_AMOUNT_TEXTS = st.builds(
    lambda sign, digits, places: (
        f"{sign}{digits[: max(1, len(digits) - places)]}"
        + (f".{digits[max(1, len(digits) - places) :]}" if len(digits) > max(1, len(digits) - places) else "")
    ),
    st.sampled_from(["", "-"]),
    st.text("0123456789", min_size=1, max_size=19),
    st.integers(0, 12),
)
_AMOUNTS = st.one_of(
    _AMOUNT_TEXTS,
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e16, max_value=1e16),
    st.integers(-(10**16), 10**16),
    st.sampled_from(["99999999999999.99", "1.0000000000000001", 1e-9, "0.00000001", "1E+3", 0.1, 1234567.89]),
)


@pytest.fixture
def both_engines(postgres_url: str, tmp_path) -> Iterator[dict[str, Engine]]:
    reset_postgres(postgres_url)
    engines = {"sqlite": make_engine(f"sqlite:///{tmp_path / 'amounts.db'}"), "postgresql": make_engine(postgres_url)}
    for engine in engines.values():
        ensure_schema(engine)
    yield engines
    for engine in engines.values():
        engine.dispose()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amounts=st.lists(_AMOUNTS, min_size=1, max_size=40))
def test_every_amount_is_stored_exactly_on_both_databases_or_rejected_with_its_reason(both_engines, amounts):
    served = [{**record(100 + i, 1_790_000_000_000), "productValue": a} for i, a in enumerate(amounts)]
    mapped = [to_row(r, 1000298, T0) for r in served]
    for row in mapped:
        if isinstance(row, Rejection):
            assert row.reason.startswith("productValue: ") and row.order_id is not None
    good = [row for row in mapped if not isinstance(row, Rejection)]
    held = {}
    for name, engine in both_engines.items():
        with writer(engine).begin() as conn:
            conn.execute(delete(Order))
            upsert_orders(conn, 1000298, good)
        held[name] = {i: o.product_value for i, o in stored(engine).items()}
    assert held["sqlite"] == held["postgresql"], "SQLite and PostgreSQL hold different amounts"
    for amount, row in zip(amounts, mapped, strict=True):
        if isinstance(row, Rejection):
            continue
        exact = Decimal(repr(amount)) if isinstance(amount, float) else Decimal(str(amount).strip())
        assert held["postgresql"][row["id"]] == exact, f"{amount!r} was not stored exactly"


_TEXTS = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00")))
_SERVED = st.fixed_dictionaries(
    {
        "createDate": st.integers(1_700_000_000_000, 1_800_000_000_000),
        "lastModificationTime": st.integers(1_700_000_000_000, 1_800_000_000_000),
        "remarks": _TEXTS,
        "deliveryStatus": st.sampled_from(["New", "tab\there", "back\\slash", "line\r\nbreak", "\b\f\v", None]),
        "productValue": _AMOUNTS,
        "productQuantity": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
        "customerId": st.one_of(st.none(), st.integers(-(2**63), 2**63 - 1)),
        "invoiceSent": st.one_of(st.none(), st.booleans(), st.sampled_from(["yes", "0", 1])),
        "notDocumented": _TEXTS,
    }
)


def _columns(engine: Engine, cm_id: int) -> dict[int, tuple]:
    """Every stored column but the account, by id: what analysts read."""
    table = Order.__table__
    shown = [c for c in table.columns if c.name != "cm_id"]
    with engine.connect() as conn:
        return {row.id: tuple(row) for row in conn.execute(select(*shown).where(table.c.cm_id == cm_id))}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(served=st.lists(_SERVED, min_size=1, max_size=30))
def test_prepared_rows_are_stored_exactly_as_mapped_rows_are(both_engines, served):
    """The writer's path (rows prepared by the worker: value lists on SQLite, COPY lines on PostgreSQL,
    new rows copied straight into `orders`, changed ones merged) stores what mapping each record does."""
    first = [{"id": i, **r} for i, r in enumerate(served)]
    edited = [{**r, "lastModificationTime": r["lastModificationTime"] + 1, "remarks": "\\N\t"} for r in first[::2]]
    for name, engine in both_engines.items():
        with writer(engine).begin() as conn:
            conn.execute(delete(Order))
        for page, at in ((first, T0), (edited, T0 + timedelta(hours=1))):
            with writer(engine).begin() as conn:
                upsert_orders(conn, 1, [r for r in (to_row(x, 1, at) for x in page) if not isinstance(r, Rejection)])
                ready = [p for p in prepare(page, 2, name) if not isinstance(p, Rejection)]  # type: ignore[arg-type]
                upsert_prepared(conn, 2, ready, stored_versions(conn, 2, [p[0] for p in ready]), at)
        mapped, prepared = _columns(engine, 1), _columns(engine, 2)
        assert prepared == mapped, f"{name}: prepared rows differ from mapped ones"
        assert len(mapped) == sum(not isinstance(to_row(r, 1, T0), Rejection) for r in first)


def test_id_list_statements_are_planned_for_each_page_on_postgresql(both_engines):
    """psycopg prepares a statement after its fifth run, and the server may then keep a generic
    plan: one made while `orders` was empty (a first run, a run after TRUNCATE) scans the whole
    table for every page of a long-lived daemon's connection. No id-list statement the writer runs
    per page is left prepared on the server."""
    engine = both_engines["postgresql"]
    rows = [to_row(record(i, 1_790_000_000_000), 1000298, T0) for i in range(1, 4)]
    with writer(engine).begin() as conn:
        for _ in range(8):
            stored_versions(conn, 1000298, [1, 2, 3])
            upsert_orders(conn, 1000298, [r for r in rows if not isinstance(r, Rejection)])
            conn.execute(delete(Order))
        prepared = conn.exec_driver_sql("SELECT statement FROM pg_prepared_statements").scalars().all()
    assert not [s for s in prepared if "unnest" in s], prepared


def test_rows_keep_every_character_whatever_client_encoding_the_environment_asks_for(postgres_url, monkeypatch):
    """The worker's COPY lines are UTF-8 bytes: a session in another encoding (PGCLIENTENCODING, a
    role's or database's setting) would store `é` as `Ã©`. Every connection is made UTF-8."""
    monkeypatch.setenv("PGCLIENTENCODING", "WIN1252")
    reset_postgres(postgres_url)
    engine = make_engine(postgres_url)
    ensure_schema(engine)
    served = {**record(1, 1_790_000_000_000), "remarks": "café 日本 🚚", "deliveryStatus": "é"}
    with writer(engine).begin() as conn:
        ready = [p for p in prepare([served], 1000298, "postgresql") if not isinstance(p, Rejection)]
        upsert_prepared(conn, 1000298, ready, {}, T0)
    row = stored(engine)[1]
    engine.dispose()
    assert (row.remarks, row.delivery_status, row.raw["remarks"]) == ("café 日本 🚚", "é", "café 日本 🚚")
