"""Writing a page of rows: a set-based, dialect-aware upsert that never rewrites an unchanged row.

The statement is `INSERT ... ON CONFLICT (cm_id, id) DO UPDATE ... WHERE stored.last_modification_time
< excluded.last_modification_time`: an unchanged or older version is never written. Each row is
also classed exactly as inserted, updated or unchanged:

- PostgreSQL: the page is COPYed into a session-local staging table, then one
  `INSERT ... SELECT ... ON CONFLICT ... RETURNING (xmax = 0)` tells inserts from updates; rows it
  does not return were unchanged. COPY avoids a 47,000-placeholder statement per page, and the
  upsert needs no read whose plan depends on fresh statistics.
- SQLite: one indexed read of the page's stored versions first (SQLite has no `xmax`), then only
  the new and changed rows are sent, in one `executemany`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, cast

import psycopg
from sqlalchemy import Insert, Table, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from sync.fields import ORDER_FIELDS
from sync.models import ORDER_COLUMNS, Order, RejectedRecord
from sync.transform import RAW_JSON, Rejection
from sync.windows import Window

orders = cast(Table, Order.__table__)
rejected = cast(Table, RejectedRecord.__table__)
_UPDATED_COLUMNS = tuple(c for c in (*ORDER_COLUMNS, "raw", "synced_at") if c not in ("cm_id", "id"))


@dataclass(slots=True)
class LoadCounts:
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0

    def add(self, other: LoadCounts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged


def _insert_for(dialect: str) -> Any:
    if dialect == "postgresql":
        return postgresql.insert
    if dialect == "sqlite":
        return sqlite.insert
    raise ValueError(f"unsupported database dialect {dialect!r}")


# The upsert is written out once, as SQL, for both engines: a page is written through the driver's
# bulk path (COPY, executemany), never through per-row SQLAlchemy parameter processing.
_COLUMNS = (*ORDER_COLUMNS, "raw", "synced_at")
_ON_CONFLICT = (
    "ON CONFLICT (cm_id, id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _UPDATED_COLUMNS)
    + " WHERE orders.last_modification_time < excluded.last_modification_time"
)

_STAGE = "kapture_orders_stage"
_CREATE_STAGE = f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGE} (LIKE orders INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
_COPY_STAGE = f"COPY {_STAGE} ({', '.join(_COLUMNS)}) FROM STDIN"
_MERGE_STAGE = (
    f"INSERT INTO orders ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} FROM {_STAGE} "
    f"{_ON_CONFLICT} RETURNING orders.id, (xmax = 0) AS inserted"
)
_SQLITE_UPSERT = (
    f"INSERT INTO orders ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' for _ in _COLUMNS)}) {_ON_CONFLICT}"
)

_STORED = (
    select(orders.c.id, orders.c.last_modification_time)
    .where(orders.c.cm_id == bindparam("cm_id"))
    .where(orders.c.id.in_(bindparam("ids", expanding=True)))
)


def _driver(conn: Connection) -> Any:
    """The DBAPI connection under `conn`, inside the same transaction, for the drivers' bulk paths."""
    driver = conn.connection.driver_connection
    if driver is None:
        raise RuntimeError("the connection is closed")
    return driver


def upsert_orders(
    conn: Connection, cm_id: int, rows: Sequence[dict[str, Any]]
) -> tuple[LoadCounts, list[dict[str, Any]]]:
    """Write the new and changed rows of one page (unique by id); return the counts and those rows."""
    if not rows:
        return LoadCounts(), []
    if conn.dialect.name == "postgresql":
        return _upsert_postgresql(conn, rows)
    if conn.dialect.name == "sqlite":
        return _upsert_sqlite(conn, cm_id, rows)
    raise ValueError(f"unsupported database dialect {conn.dialect.name!r}")


def _upsert_postgresql(conn: Connection, rows: Sequence[dict[str, Any]]) -> tuple[LoadCounts, list[dict[str, Any]]]:
    cursor = _driver(conn).cursor()  # psycopg 3, inside the page's transaction
    try:
        cursor.execute(_CREATE_STAGE)
        with cursor.copy(_COPY_STAGE) as copy:
            for row in rows:
                copy.write_row([*(row[c] for c in ORDER_COLUMNS), row[RAW_JSON].decode(), row["synced_at"]])
        cursor.execute(_MERGE_STAGE)
        written = cursor.fetchall()
        cursor.execute(f"TRUNCATE {_STAGE}")
    except psycopg.Error as exc:  # the raw cursor bypasses SQLAlchemy: give callers its usual exception
        raise DBAPIError.instance(_COPY_STAGE, None, exc, psycopg.Error, dialect=conn.dialect) from exc
    finally:
        cursor.close()
    inserted = sum(1 for _, is_new in written if is_new)
    counts = LoadCounts(inserted=inserted, updated=len(written) - inserted, unchanged=len(rows) - len(written))
    by_id = {row["id"]: row for row in rows}
    return counts, [by_id[order_id] for order_id, _ in written]


def _upsert_sqlite(
    conn: Connection, cm_id: int, rows: Sequence[dict[str, Any]]
) -> tuple[LoadCounts, list[dict[str, Any]]]:
    counts = LoadCounts()
    stored = dict(conn.execute(_STORED, {"cm_id": cm_id, "ids": [r["id"] for r in rows]}).all())
    changed = []
    for row in rows:
        previous = stored.get(row["id"])
        if previous is None:
            counts.inserted += 1
        elif previous < row["last_modification_time"]:
            counts.updated += 1
        else:
            counts.unchanged += 1
            continue
        changed.append(row)
    if changed:
        cursor = _driver(conn).cursor()  # sqlite3, inside the page's transaction
        try:
            cursor.executemany(_SQLITE_UPSERT, [_sqlite_values(row) for row in changed])
        except sqlite3.Error as exc:
            raise DBAPIError.instance(_SQLITE_UPSERT, None, exc, sqlite3.Error, dialect=conn.dialect) from exc
        finally:
            cursor.close()
    return counts, changed


_TIMES = tuple(i for i, f in enumerate(ORDER_FIELDS) if f.kind == "timestamp")
_AMOUNTS = tuple(i for i, f in enumerate(ORDER_FIELDS) if f.kind == "amount")


def _sqlite_time(moment: datetime) -> str:
    """The text SQLAlchemy's SQLite DATETIME stores (naive UTC, microseconds), so reads and compares agree."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _sqlite_values(row: dict[str, Any]) -> list[Any]:
    values = [row[c] for c in ORDER_COLUMNS]
    for i in _TIMES:
        values[i] = _sqlite_time(values[i])
    for i in _AMOUNTS:
        if type(values[i]) is Decimal:  # SQLite's NUMERIC keeps a double; see models.Amount
            values[i] = float(values[i])
    values.append(row[RAW_JSON].decode())
    values.append(_sqlite_time(row["synced_at"]))
    return values


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
