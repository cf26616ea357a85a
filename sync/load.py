"""Writing a page of rows: compare with what is stored, then write only what changed, in bulk.

One read per page fetches the stored `(id, last_modification_time, fingerprint)` of the page's ids;
each served row is then classed exactly as inserted, updated or unchanged:

- missing from `orders`: inserted (a row deleted by hand, or never stored, comes back);
- a later stamp than stored: updated;
- the same stamp but different content (fingerprint): updated, since Kapture can save a change
  without moving `lastModificationTime` (two saves in one millisecond, a field it does not stamp);
- an earlier stamp: unchanged; an older version never overwrites a newer one.

`reconcile` also compares every typed column with what the current code derives, so rows written
under older parsing rules are rewritten. The write itself goes through each driver's bulk path
(PostgreSQL: rows new to `orders` COPY straight into it, changed ones COPY into a staging table
merged by one `INSERT ... SELECT ... ON CONFLICT`; SQLite: one `executemany`), and the
`ON CONFLICT ... WHERE` repeats the "never older" rule in SQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, NamedTuple, cast

import orjson
from sqlalchemy import Insert, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from sync.driver import driver_cursor, run
from sync.fields import ORDER_COLUMNS
from sync.history import record_versions
from sync.models import Order, RejectedRecord
from sync.prepare import Prepared, postgresql_time, sqlite_time, values_of
from sync.transform import Rejection
from sync.windows import Window, to_ms

orders = cast(Table, Order.__table__)
rejected = cast(Table, RejectedRecord.__table__)
_UPDATED_COLUMNS = tuple(c for c in (*ORDER_COLUMNS, "raw", "fingerprint", "synced_at") if c not in ("cm_id", "id"))


@dataclass(slots=True)
class LoadCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def add(self, other: LoadCounts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged

    def count(self, verdict: str) -> None:
        if verdict == "inserted":
            self.inserted += 1
        elif verdict == "updated":
            self.updated += 1
        else:
            self.unchanged += 1


class Stored(NamedTuple):
    """What the database holds of one order, enough to decide whether a served version is news."""

    modified_ms: int
    fingerprint: str | None


def _verdict(have: Stored | None, served_ms: int, fingerprint: str) -> str:
    """What a served version is to the stored one: "inserted", "updated", "same" (this very version) or "older"."""
    if have is None:
        return "inserted"
    if served_ms > have.modified_ms or (served_ms == have.modified_ms and fingerprint != have.fingerprint):
        return "updated"
    return "same" if served_ms == have.modified_ms else "older"


_WRITTEN = ("inserted", "updated")


def _insert_for(dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise ValueError(f"unsupported database dialect {dialect!r}")


# The upsert is written out once, as SQL, for both engines: a page is written through the driver's
# bulk path (COPY, executemany), never through per-row SQLAlchemy parameter processing. Which rows
# to write is decided in Python from the stored versions; the WHERE only forbids going back.
_COLUMNS = (*ORDER_COLUMNS, "raw", "fingerprint", "synced_at")
_ON_CONFLICT = (
    "ON CONFLICT (cm_id, id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _UPDATED_COLUMNS)
    + " WHERE orders.last_modification_time <= excluded.last_modification_time"
)

_STAGE = "kapture_orders_stage"
_CREATE_STAGE = f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (LIKE orders INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
_COPY_STAGE = f"COPY {_STAGE} ({', '.join(_COLUMNS)}) FROM STDIN"
_COPY_ORDERS = f"COPY orders ({', '.join(_COLUMNS)}) FROM STDIN"
_MERGE_STAGE = f"INSERT INTO orders ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} FROM {_STAGE} {_ON_CONFLICT}"
_SQLITE_UPSERT = (
    f"INSERT INTO orders ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)}) {_ON_CONFLICT}"
)
# One parameter for the whole id list on both engines: no statement whose text grows with the page.
# On PostgreSQL the ids are a semi-join on the whole primary key: planned as one index probe per id
# even while the table's statistics still describe it before a large backfill. (`cm_id = %s AND
# id = ANY(%s)` was then planned as a scan of the account's every row: 85 ms instead of 4 ms a
# page of 1,000 ids at 100,000 orders, growing with the table.)
_STORED_POSTGRESQL = (
    "SELECT id, last_modification_time, fingerprint FROM orders "
    "WHERE (cm_id, id) IN (SELECT %s::bigint, page.id FROM unnest(%s::bigint[]) AS page(id))"
)
_STORED_SQLITE = (
    "SELECT id, last_modification_time, fingerprint FROM orders "
    "WHERE cm_id = ? AND id IN (SELECT value FROM json_each(?))"
)
_ID_CHUNK = 1000  # ids per typed read: SQLite allows 32,766 parameters a statement, and big IN lists plan badly
_STORED_COLUMNS = (
    select(orders.c.id, *(orders.c[c] for c in ORDER_COLUMNS if c not in ("cm_id", "id")))
    .where(orders.c.cm_id == bindparam("cm_id"))
    .where(orders.c.id.in_(bindparam("ids", expanding=True)))
)


def stored_versions(conn: Connection, cm_id: int, ids: Sequence[int]) -> dict[int, Stored]:
    """The stored stamp and fingerprint of each of `ids` that is in `orders`: one indexed read."""
    if not ids:
        return {}
    if conn.dialect.name == "postgresql":
        found = run(conn, _STORED_POSTGRESQL, (cm_id, list(ids)))
        return {order_id: Stored(to_ms(modified), fp) for order_id, modified, fp in found}
    if conn.dialect.name == "sqlite":
        found = run(conn, _STORED_SQLITE, (cm_id, orjson.dumps(list(ids)).decode()))
        return {order_id: Stored(_sqlite_ms(modified), fp) for order_id, modified, fp in found}
    raise ValueError(f"unsupported database dialect {conn.dialect.name!r}")


def upsert_orders(
    conn: Connection,
    cm_id: int,
    rows: Sequence[dict[str, Any]],
    stored: Mapping[int, Stored] | None = None,
    rederive: bool = False,
    history: bool = True,
) -> tuple[LoadCounts, list[dict[str, Any]]]:
    """Write the new and changed rows of one page (unique by id); return the counts and those rows.

    `stored` is the page's `stored_versions` when the caller has read them already; `rederive`
    also rewrites rows whose stored columns differ from what the current code derives; `history`
    records each written row in `order_versions` too, in the same transaction.
    """
    if not rows:
        return LoadCounts(), []
    if stored is None:
        stored = stored_versions(conn, cm_id, [r["id"] for r in rows])
    counts = LoadCounts()
    changed: list[dict[str, Any]] = []
    same: list[dict[str, Any]] = []
    for row in rows:
        news = _verdict(stored.get(row["id"]), to_ms(row["last_modification_time"]), row["fingerprint"])
        if news == "same" and rederive:
            same.append(row)
            continue
        counts.count(news)
        if news in _WRITTEN:
            changed.append(row)
    if same:
        stale = _derived_differently(conn, cm_id, same)
        counts.updated += len(stale)
        counts.unchanged += len(same) - len(stale)
        changed.extend(stale)
    if changed:
        dialect = conn.dialect.name
        values = [values_of(row, dialect) for row in changed]  # type: ignore[arg-type]
        for value, row in zip(values, changed, strict=True):
            value[-1] = sqlite_time(row["synced_at"]) if dialect == "sqlite" else row["synced_at"]
        _store(conn, cm_id, values, [row["id"] for row in changed], history)
    return counts, changed


def upsert_prepared(
    conn: Connection,
    cm_id: int,
    rows: Sequence[Prepared],
    stored: Mapping[int, Stored],
    synced_at: datetime,
    history: bool = True,
) -> tuple[LoadCounts, list[Prepared]]:
    """`upsert_orders` for rows made ready by `sync.prepare` (unique by id): the same rules, no mapping left to do.

    This is the writer's path for every page but `reconcile`'s: its values only need `synced_at`.
    """
    counts = LoadCounts()
    changed: list[Prepared] = []
    for row in rows:
        news = _verdict(stored.get(row[0]), row[1], row[2])
        counts.count(news)
        if news in _WRITTEN:
            changed.append(row)
    if not changed:
        return counts, changed
    if conn.dialect.name == "postgresql":
        end = f"{postgresql_time(synced_at)}\n".encode()
        fresh = [row[4] for row in changed if row[0] not in stored]
        again = [row[4] for row in changed if row[0] in stored]
        copy_lines(conn, fresh, again, end)  # type: ignore[arg-type]
        if history:
            record_versions(conn, cm_id, [row[0] for row in changed])
    else:
        synced = sqlite_time(synced_at)
        values = [row[4] for row in changed]
        for value in values:
            value[-1] = synced  # type: ignore[index]
        _store(conn, cm_id, values, [row[0] for row in changed], history)  # type: ignore[arg-type]
    return counts, changed


def copy_lines(conn: Connection, fresh: list[bytes], again: list[bytes], end: bytes) -> None:
    """Write PostgreSQL rows given as COPY lines (`sync.prepare.copy_line`), each finished by `end`.

    Rows not in `orders` (`fresh`: the page's read of stored versions found none, in this same
    transaction, under the account's lock) are copied straight into it: no staging table, no
    merge. Changed rows (`again`) go through the staging table and the `ON CONFLICT` merge, whose
    WHERE still refuses an older version.
    """
    with driver_cursor(conn, _COPY_ORDERS if fresh else _COPY_STAGE) as cursor:
        if fresh:
            with cursor.copy(_COPY_ORDERS) as copy:
                copy.write(end.join(fresh) + end)
        if again:
            _merge_staged(cursor, lambda copy: copy.write(end.join(again) + end))


def _merge_staged(cursor: Any, fill: Callable[[Any], None]) -> None:
    """Rows into the staging table (`fill` writes them into its COPY), then one `ON CONFLICT` merge."""
    cursor.execute(_CREATE_STAGE)
    with cursor.copy(_COPY_STAGE) as copy:
        fill(copy)
    cursor.execute(_MERGE_STAGE)
    cursor.execute(f"TRUNCATE {_STAGE}")


def _store(conn: Connection, cm_id: int, values: Sequence[Sequence[Any]], ids: list[int], history: bool) -> None:
    """Upsert the rows, then copy them into `order_versions` when history is kept: both upserts end here."""
    write_values(conn, values)
    if history:
        record_versions(conn, cm_id, ids)


def write_values(conn: Connection, values: Sequence[Sequence[Any]]) -> None:
    """Upsert rows given as value lists in `_COLUMNS` order (`sync.prepare.values_of`), in bulk."""
    if conn.dialect.name == "postgresql":

        def fill(copy: Any) -> None:
            for row in values:
                copy.write_row(row)

        with driver_cursor(conn, _COPY_STAGE) as cursor:  # psycopg 3, inside the page's transaction
            _merge_staged(cursor, fill)
    elif conn.dialect.name == "sqlite":
        run(conn, _SQLITE_UPSERT, values, many=True)
    else:
        raise ValueError(f"unsupported database dialect {conn.dialect.name!r}")


def _comparable(value: Any) -> Any:
    """Amounts arrive as int, float or Decimal and come back as Decimal: compare them as decimals."""
    if type(value) is float:
        return Decimal(repr(value))
    if type(value) is int:
        return Decimal(value)
    return value


def _derived_differently(conn: Connection, cm_id: int, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows whose stored typed columns differ from what `to_row` derives today (parsing rules changed)."""
    ids = [row["id"] for row in rows]
    found = {
        r["id"]: r
        for i in range(0, len(ids), _ID_CHUNK)
        for r in conn.execute(_STORED_COLUMNS, {"cm_id": cm_id, "ids": ids[i : i + _ID_CHUNK]}).mappings()
    }
    columns = [c for c in ORDER_COLUMNS if c not in ("cm_id", "id")]
    return [
        row
        for row in rows
        if row["id"] in found and any(_comparable(row[c]) != _comparable(found[row["id"]][c]) for c in columns)
    ]


def _sqlite_ms(text: str) -> int:
    return to_ms(datetime.fromisoformat(text).replace(tzinfo=UTC))


@cache
def _rejection_upsert(dialect: str) -> Insert:
    stmt = _insert_for(dialect)(rejected)
    return stmt.on_conflict_do_update(
        index_elements=[rejected.c.cm_id, rejected.c.fingerprint],
        set_={
            "last_seen_at": stmt.excluded.last_seen_at,
            "seen_count": rejected.c.seen_count + 1,
            "run_id": stmt.excluded.run_id,
            "reason": stmt.excluded.reason,
        },
    )


def _storable(raw: Any) -> Any:
    """The payload with NUL characters spelt out as `\\u0000`, the one thing JSONB refuses."""
    if isinstance(raw, str):
        return raw.replace("\x00", "\\u0000")
    if isinstance(raw, list):
        return [_storable(v) for v in raw]
    if isinstance(raw, dict):
        return {_storable(k): _storable(v) for k, v in raw.items()}
    return raw


def record_rejections(
    conn: Connection,
    cm_id: int,
    stream: str,
    rejections: Iterable[Rejection],
    window: Window,
    run_id: int,
    seen_at: datetime,
) -> int:
    """Keep every record that could not be stored, once per distinct payload, with why and where."""
    rows = [
        {
            "cm_id": cm_id,
            "stream": stream,
            "order_id": r.order_id,
            "reason": r.reason,
            "raw": _storable(r.raw),
            "fingerprint": r.fingerprint,
            "window_start": window.start,
            "window_end": window.end,
            "first_seen_at": seen_at,
            "last_seen_at": seen_at,
            "seen_count": 1,
            "run_id": run_id,
        }
        for r in rejections
    ]
    if rows:
        conn.execute(_rejection_upsert(conn.dialect.name), rows)
    return len(rows)
