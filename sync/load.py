"""Writing a page of rows: a set-based, dialect-aware upsert that never rewrites an unchanged row.

One query reads the stored `last_modification_time` of the page's keys, so each row is classed as
inserted, updated or unchanged exactly; only the first two are sent, as one executemany of
`INSERT ... ON CONFLICT (cm_id, id) DO UPDATE ... WHERE stored.last_modification_time <
excluded.last_modification_time`, the WHERE guarding against an older version ever winning.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Insert, bindparam, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from sync.models import ORDER_COLUMNS, Order, RejectedRecord
from sync.transform import Rejection
from sync.windows import Window

orders = Order.__table__
rejected = RejectedRecord.__table__
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


@cache
def _orders_upsert(dialect: str) -> Insert:
    stmt = _insert_for(dialect)(orders)
    return stmt.on_conflict_do_update(
        index_elements=[orders.c.cm_id, orders.c.id],
        set_={name: stmt.excluded[name] for name in _UPDATED_COLUMNS},
        where=orders.c.last_modification_time < stmt.excluded.last_modification_time,
    )


_STORED = (
    select(orders.c.id, orders.c.last_modification_time)
    .where(orders.c.cm_id == bindparam("cm_id"))
    .where(orders.c.id.in_(bindparam("ids", expanding=True)))
)


def upsert_orders(
    conn: Connection, cm_id: int, rows: Sequence[dict[str, Any]]
) -> tuple[LoadCounts, list[dict[str, Any]]]:
    """Write the new and changed rows of one page (unique by id); return the counts and those rows."""
    counts = LoadCounts()
    if not rows:
        return counts, []
    stored = dict(conn.execute(_STORED, {"cm_id": cm_id, "ids": [r["id"] for r in rows]}).tuples().all())
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
        conn.execute(_orders_upsert(conn.dialect.name), changed)
    return counts, changed


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
            "raw": r.raw,
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
