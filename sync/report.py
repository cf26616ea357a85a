"""`kapture-sync status`: the watermark, the lag and the last runs, laid out for a person."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.engine import Connection, RowMapping

from sync.models import Order, RejectedRecord, SyncState
from sync.new_fields import field_rows
from sync.state import Account, recent_runs, window_summary


def humanize(delta: timedelta | None) -> str:
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            major, rest = divmod(seconds, size)
            minor = {"d": ("h", 3600), "h": ("m", 60), "m": ("s", 1)}[unit]
            return f"{major}{unit} {rest // minor[1]}{minor[0]}"
    return f"{seconds}s"


def _when(moment: datetime | None, zone: ZoneInfo) -> str:
    if moment is None:
        return "-"
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC ({moment.astimezone(zone):%H:%M} {zone.key})"


def _day(moment: datetime, zone: ZoneInfo) -> str:
    return f"{moment.astimezone(zone):%Y-%m-%d}"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _run_rows(runs: Sequence[RowMapping]) -> list[list[Any]]:
    rows = []
    for r in runs:
        took = humanize(r["finished_at"] - r["started_at"]) if r["finished_at"] else "running"
        error = (r["error"] or "")[:60]
        rows.append(
            [
                r["id"],
                r["kind"],
                f"{r['started_at']:%Y-%m-%d %H:%M:%S}",
                took,
                r["outcome"],
                r["windows"],
                r["records_fetched"],
                r["inserted"],
                r["updated"],
                r["unchanged"],
                r["rejected"],
                error,
            ]
        )
    return rows


def accounts(conn: Connection) -> list[Account]:
    rows = conn.execute(select(SyncState.cm_id, SyncState.stream).order_by(SyncState.cm_id)).all()
    return [Account(cm_id, stream) for cm_id, stream in rows]


def _new_field_lines(conn: Connection, account: Account, zone: ZoneInfo) -> list[str]:
    """Fields Kapture serves beyond its documentation, kept in `raw` (see new_fields.py)."""
    rows = field_rows(conn, account)
    if not rows:
        return []
    shown = ", ".join(f"{r.field} (since {_day(r.first_seen_at, zone)})" for r in rows)
    return [f"  new fields      {shown}: kept in orders.raw"]


def status_text(conn: Connection, account: Account, zone: ZoneInfo, now: datetime, runs: int = 10) -> str:
    state = (
        conn.execute(
            select(SyncState.__table__).where(SyncState.cm_id == account.cm_id, SyncState.stream == account.stream)
        )
        .mappings()
        .first()
    )
    stored = conn.execute(select(func.count()).select_from(Order).where(Order.cm_id == account.cm_id)).scalar()
    rejected = conn.execute(
        select(func.count()).select_from(RejectedRecord).where(RejectedRecord.cm_id == account.cm_id)
    ).scalar()
    windows = window_summary(conn, account)
    watermark = state["watermark"] if state else None
    lease = "free"
    if state and state["lease_owner"] and state["lease_expires_at"] and state["lease_expires_at"] > now:
        holder = state["lease_owner"].rsplit(":", 1)[0]
        lease = f"held by {holder} until {state['lease_expires_at']:%H:%M:%S} UTC"
    last_ok = next((r for r in recent_runs(conn, account, 50) if r["outcome"] == "success"), None)
    lines = [
        f"account {account.cm_id} ({account.stream})",
        f"  watermark       {_when(watermark, zone)}",
        f"  lag             {humanize(now - watermark) if watermark else '-'} behind the newest change stored",
        f"  last success    {_when(last_ok['finished_at'], zone) if last_ok else 'never'}"
        + (f", {humanize(now - last_ok['finished_at'])} ago" if last_ok else ""),
        f"  orders stored   {stored:,}   rejected records {rejected:,}",
        f"  windows         {windows['scanned']} scanned of {windows['windows']} in the ledger"
        + (
            f", created {_day(windows['first'], zone)} .. {_day(windows['last'] - timedelta(milliseconds=1), zone)}"
            if windows["first"]
            else ""
        )
        + (f", {windows['in_progress']} scan(s) in progress" if windows["in_progress"] else ""),
        f"  lease           {lease}",
        *_new_field_lines(conn, account, zone),
        "",
        table(
            [
                "run",
                "kind",
                "started (UTC)",
                "took",
                "outcome",
                "windows",
                "fetched",
                "inserted",
                "updated",
                "unchanged",
                "rejected",
                "error",
            ],
            _run_rows(recent_runs(conn, account, runs)),
        ),
    ]
    return "\n".join(lines)
