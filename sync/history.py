"""Order history (`order_versions`) and the account row the analysts' views read (`sync_accounts`).

A page's new and changed rows are copied from `orders` into `order_versions` by one
`INSERT ... SELECT` in the page's own transaction, right after the upsert: the version recorded
is exactly the row written, nothing crosses the wire twice, and a version already recorded
(same id, stamp and fingerprint) is left alone (`ON CONFLICT DO NOTHING`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

import orjson
from sqlalchemy import Table, exists, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from sync.driver import run
from sync.models import OrderVersion, SyncAccount, ZoneOffset
from sync.settings import Settings
from sync.zones import offset_rules

accounts_t = cast(Table, SyncAccount.__table__)
zones_t = cast(Table, ZoneOffset.__table__)

# The columns an `order_versions` row copies from `orders`: the model's, but for when it was first seen.
VERSION_COLUMNS = tuple(c.name for c in cast(Table, OrderVersion.__table__).columns if c.name != "first_seen_at")
_COLUMNS = ", ".join(VERSION_COLUMNS)
_COPY = f"INSERT INTO order_versions ({_COLUMNS}, first_seen_at) SELECT {_COLUMNS}, synced_at FROM orders "
ON_CONFLICT = " ON CONFLICT (cm_id, id, last_modification_time, fingerprint) DO NOTHING"
POSTGRESQL_COPY = (
    _COPY + "WHERE (cm_id, id) IN (SELECT %s::bigint, page.id FROM unnest(%s::bigint[]) AS page(id))" + ON_CONFLICT
)
_SQLITE = _COPY + "WHERE cm_id = ? AND id IN (SELECT value FROM json_each(?))" + ON_CONFLICT


def record_versions(conn: Connection, cm_id: int, ids: Sequence[int]) -> None:
    """Copy the just-written rows of `ids` into `order_versions`: one statement per page."""
    if not ids:
        return
    if conn.dialect.name == "postgresql":
        run(conn, POSTGRESQL_COPY, (cm_id, list(ids)))  # never prepared: see sync.driver.run
    elif conn.dialect.name == "sqlite":
        run(conn, _SQLITE, (cm_id, orjson.dumps(list(ids)).decode()))
    else:
        raise ValueError(f"unsupported database dialect {conn.dialect.name!r}")


def _insert(conn: Connection) -> Any:
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def ensure_zone(conn: Connection, zone: str) -> None:
    """Write the zone's offset rules once, so SQLite's views can show local times in it."""
    if conn.execute(select(exists().where(zones_t.c.zone == zone))).scalar():
        return
    conn.execute(
        zones_t.insert(),
        [
            {"zone": zone, "starts_at": start, "utc_offset_seconds": offset, "abbreviation": abbr}
            for start, offset, abbr in offset_rules(zone)
        ],
    )


def register_account(conn: Connection, settings: Settings, now: datetime) -> None:
    """Record the account's zone and schedule, as every run does, for the views and `status`."""
    values = {
        "timezone": settings.timezone,
        "lookback_days": settings.lookback_days,
        "rescan_factor": settings.rescan_factor,
        "rescan_horizon_days": settings.rescan_horizon_days,
        "window_seconds": int(settings.window.total_seconds()),
        "history": settings.history,
        "updated_at": now,
    }
    stmt = _insert(conn)(accounts_t).values(cm_id=settings.cm_id, **values)
    conn.execute(stmt.on_conflict_do_update(index_elements=[accounts_t.c.cm_id], set_=values))
    ensure_zone(conn, settings.timezone)
