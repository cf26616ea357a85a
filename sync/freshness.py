"""Freshness you can see: what `status` shows per account, read from the SQL views analysts can query too.

Every figure comes from `sync_freshness`, `sync_window_coverage`, `order_edit_age_histogram` and
`order_edit_age_summary`, so the terminal and SQL never disagree.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from sync.state import Account

# How long ago a window was last read completely -> its mark in the strip.
MARKS = {"hour": "█", "day": "▓", "week": "▒", "month": "░", "older": "·", "never": " "}
LEGEND = "█ <1h  ▓ <1d  ▒ <7d  ░ <30d  · older  ' ' never"
STRIP_WIDTH = 60


def _day(value: Any) -> str:
    return value if isinstance(value, str) else date.isoformat(value)


def _moment(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite: naive UTC text
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return str(value.astimezone(UTC).isoformat())


def _rows(conn: Connection, sql: str, account: Account) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(text(sql), {"cm_id": account.cm_id, "stream": account.stream}).mappings()]


def freshness(conn: Connection, account: Account) -> dict[str, Any]:
    """The account's freshness figures, JSON-ready (`status --format json` prints this)."""
    state = _rows(conn, "SELECT * FROM sync_freshness WHERE cm_id = :cm_id AND stream = :stream", account)
    coverage = _rows(
        conn,
        "SELECT window_start, window_end, window_day_local, last_scanned_at, seconds_since_read, read_within "
        "FROM sync_window_coverage WHERE cm_id = :cm_id AND stream = :stream ORDER BY window_start",
        account,
    )
    histogram = _rows(
        conn,
        "SELECT edit_age_bucket, edits FROM order_edit_age_histogram WHERE cm_id = :cm_id ORDER BY bucket_order",
        account,
    )
    summary = _rows(conn, "SELECT * FROM order_edit_age_summary WHERE cm_id = :cm_id", account)
    head = state[0] if state else {}
    return {
        "cm_id": account.cm_id,
        "stream": account.stream,
        "timezone": head.get("timezone"),
        "watermark": _moment(head.get("watermark")),
        "lag_seconds": head.get("lag_seconds"),
        "last_success_at": _moment(head.get("last_success_at")),
        "coverage": [
            {
                "window_start": _moment(w["window_start"]),
                "window_end": _moment(w["window_end"]),
                "day": _day(w["window_day_local"]),
                "last_read_at": _moment(w["last_scanned_at"]),
                "seconds_since_read": w["seconds_since_read"],
                "read_within": w["read_within"],
            }
            for w in coverage
        ],
        "edit_ages": {r["edit_age_bucket"]: r["edits"] for r in histogram},
        "edit_age_summary": {k: v for k, v in summary[0].items() if k != "cm_id"} if summary else None,
    }


def coverage_strip(coverage: list[dict[str, Any]], width: int = STRIP_WIDTH) -> list[str]:
    """One mark per window, oldest first, `width` to a line, each line labelled with its first day."""
    return [
        f"{coverage[i]['day']} {''.join(MARKS[w['read_within']] for w in coverage[i : i + width])}"
        for i in range(0, len(coverage), width)
    ]


def _days(seconds: int | None) -> str:
    return "-" if seconds is None else f"{seconds / 86400:.1f}d"


def freshness_text(figures: dict[str, Any]) -> list[str]:
    """The freshness part of `status` for a person."""
    coverage = figures["coverage"]
    lines = [f"  coverage        {len(coverage)} windows by last complete read, oldest first: {LEGEND}"]
    lines += [f"    {line}" for line in coverage_strip(coverage)] or ["    (no windows yet)"]
    ages = figures["edit_ages"]
    total = sum(ages.values())
    lines.append(f"  edit age        lastModificationTime - createDate over {total:,} versions seen after creation")
    for bucket, count in ages.items():
        lines.append(f"    {bucket:>8} {count:>8,} {100 * count / total:5.1f}% {'#' * round(30 * count / total)}")
    summary = figures["edit_age_summary"]
    if summary:
        needed, configured = summary["lookback_days_for_p99"], summary["lookback_days"]
        lines.append(
            f"  look-back       p50 {_days(summary['p50_seconds'])}, p90 {_days(summary['p90_seconds'])}, "
            f"p99 {_days(summary['p99_seconds'])}, max {_days(summary['max_seconds'])}: a look-back of {needed} "
            f"day(s) would have caught 99% of these edits on the first sync after them "
            f"(configured: {configured if configured is not None else '-'})"
        )
        lines.append(
            f"  beyond          {summary['edits_beyond_lookback']} edit(s) older than the look-back when made "
            f"(found by the decaying re-scan), {summary['edits_beyond_horizon']} beyond the "
            f"{summary['rescan_horizon_days']}-day horizon (only reconcile finds those)"
        )
    return lines
