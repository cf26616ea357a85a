"""Fields Kapture adds later: kept in `raw` like everything served, and noticed once.

A field its documentation does not list is recorded in `sync_fields` the first time a run sees it
(in the page's transaction), logged once, and listed by `status`, so an analyst learns that
`raw->>'loyaltyTier'` exists without reading JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, cast

import structlog
from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from sync.fields import DOCUMENTED
from sync.models import SyncField
from sync.state import Account

log = structlog.get_logger(__name__)
fields_t = cast(Table, SyncField.__table__)


class FieldWatch:
    """The fields an account is known to serve; `note` records any other."""

    def __init__(self, account: Account, recorded: Iterable[str] = ()) -> None:
        self.account = account
        self.known = DOCUMENTED | set(recorded)

    @classmethod
    def load(cls, conn: Connection, account: Account) -> FieldWatch:
        return cls(account, recorded_fields(conn, account))

    def note(self, conn: Connection, found: Mapping[str, Any], run_id: int, now: datetime) -> list[str]:
        """Record the fields of a page (`sync.fields.undocumented`: name -> first order id) not seen before."""
        first = {name: order_id for name, order_id in found.items() if name not in self.known}
        if not first:
            return []
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        conn.execute(
            insert(fields_t).on_conflict_do_nothing(),
            [
                {
                    "cm_id": self.account.cm_id,
                    "stream": self.account.stream,
                    "field": name[:255],
                    "first_seen_at": now,
                    "first_order_id": order_id if type(order_id) is int and abs(order_id) < 2**63 else None,
                    "run_id": run_id,
                }
                for name, order_id in first.items()
            ],
        )
        for name, order_id in first.items():
            log.info("field.new", field=name, order_id=order_id, hint="kept in orders.raw; listed by status")
        self.known = self.known | set(first)
        return sorted(first)


def recorded_fields(conn: Connection, account: Account) -> list[str]:
    return list(
        conn.execute(
            select(fields_t.c.field).where(fields_t.c.cm_id == account.cm_id, fields_t.c.stream == account.stream)
        ).scalars()
    )


def field_rows(conn: Connection, account: Account) -> list[Any]:
    """The undocumented fields seen for the account, oldest first, for `status`."""
    return list(
        conn.execute(
            select(fields_t.c.field, fields_t.c.first_seen_at, fields_t.c.first_order_id)
            .where(fields_t.c.cm_id == account.cm_id, fields_t.c.stream == account.stream)
            .order_by(fields_t.c.first_seen_at, fields_t.c.field)
        )
    )
