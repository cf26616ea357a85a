"""Orders Kapture stopped serving: marked `deleted_at` (opt-in), never removed, revived if served again.

Kapture never reports a deletion. The only evidence is absence, and absence is also what a short
or faulty answer looks like, so an order is marked only when all of these hold: the feature is on
(`KAPTURE_SYNC_DETECT_DELETIONS`); the window was read completely, from its start, after it had
closed, its end proven (with the feature on, paging always goes on to the empty page); that read
served as many orders as the window's previous complete read (the answer is stable); and the
orders missing from it are at most `KAPTURE_SYNC_DELETION_MAX_SHARE` of those stored for the
window (a bad answer cannot wipe it).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import structlog
from sqlalchemy import Table, and_, select, update
from sqlalchemy.engine import Connection

from sync.models import Order, SyncWindow
from sync.schedule import Task
from sync.state import Account

log = structlog.get_logger(__name__)
orders = cast(Table, Order.__table__)
windows_t = cast(Table, SyncWindow.__table__)
_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class DeletionRules:
    enabled: bool = False
    max_share: float = 0.1


@dataclass(frozen=True, slots=True)
class Settled:
    marked: int = 0
    revived: int = 0


def _in_window(account: Account, task: Task) -> Any:
    return and_(
        orders.c.cm_id == account.cm_id,
        orders.c.create_date >= task.nominal.start,
        orders.c.create_date < task.nominal.end,
    )


def _previous_count(conn: Connection, account: Account, task: Task) -> int | None:
    """The order count of the window's last complete read; called before this read is recorded."""
    return conn.execute(
        select(windows_t.c.order_count).where(
            windows_t.c.cm_id == account.cm_id,
            windows_t.c.stream == account.stream,
            windows_t.c.window_start == task.nominal.start,
            windows_t.c.last_scanned_at.is_not(None),
        )
    ).scalar()


def _set_deleted(conn: Connection, account: Account, ids: list[int], value: datetime | None) -> None:
    for i in range(0, len(ids), _CHUNK):
        conn.execute(
            update(orders)
            .where(orders.c.cm_id == account.cm_id, orders.c.id.in_(ids[i : i + _CHUNK]))
            .values(deleted_at=value)
        )


def settle(
    conn: Connection,
    account: Account,
    task: Task,
    served_ids: Collection[int],
    served_count: int,
    proven: bool,
    rules: DeletionRules,
    now: datetime,
) -> Settled:
    """At the end of a window's read, inside its transaction: revive what was served, mark what is gone."""
    if not rules.enabled:
        return Settled()
    marked_before = conn.execute(
        select(orders.c.id).where(_in_window(account, task), orders.c.deleted_at.is_not(None))
    ).scalars()
    revived = [order_id for order_id in marked_before if order_id in served_ids]
    _set_deleted(conn, account, revived, None)
    complete = proven and task.resume is None and task.end >= task.nominal.end
    if not complete or _previous_count(conn, account, task) != served_count:
        return Settled(0, len(revived))
    stored = (
        conn.execute(select(orders.c.id).where(_in_window(account, task), orders.c.deleted_at.is_(None)))
        .scalars()
        .all()
    )
    gone = [order_id for order_id in stored if order_id not in served_ids]
    if not gone:
        return Settled(0, len(revived))
    if len(gone) > rules.max_share * len(stored):
        log.warning(
            "deletions.refused",
            window=task.nominal.start.isoformat(),
            missing=len(gone),
            stored=len(stored),
            hint="more than KAPTURE_SYNC_DELETION_MAX_SHARE of the window: nothing marked",
        )
        return Settled(0, len(revived))
    _set_deleted(conn, account, gone, now)
    log.info("deletions.marked", window=task.nominal.start.isoformat(), orders=len(gone))
    return Settled(len(gone), len(revived))
