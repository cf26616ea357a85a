"""The sync's memory in the database: watermark, lease, window ledger and run rows.

Every function takes a `Connection` already inside the caller's transaction, so a page's rows,
its ledger progress, the watermark and the run's counters commit together or not at all.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, case, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, RowMapping

from sync.db import writer
from sync.errors import LeaseHeld
from sync.lock import claim_is_held
from sync.models import SyncRun, SyncState, SyncWindow, UTCDateTime
from sync.windows import Window

state_t = cast(Table, SyncState.__table__)
windows_t = cast(Table, SyncWindow.__table__)
runs_t = cast(Table, SyncRun.__table__)

RUN_COUNTERS = ("windows", "pages", "requests", "records_fetched", "inserted", "updated", "unchanged", "rejected")


@dataclass(frozen=True, slots=True)
class Account:
    """Which rows a run owns: one Kapture account and one stream of it."""

    cm_id: int
    stream: str = "orders"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    window: Window  # nominal bounds (end not clamped)
    last_scanned_at: datetime | None
    scanned_end: datetime | None
    scan_floor: datetime | None
    progress: Progress | None

    @property
    def finished(self) -> bool:
        """Fully scanned after the window had closed, so no new order can still appear in it."""
        return self.scanned_end is not None and self.scanned_end >= self.window.end


@dataclass(frozen=True, slots=True)
class Progress:
    """Where an interrupted scan stopped: its fixed end, the slice being paged and the next offset."""

    started_at: datetime
    end: datetime
    floor: datetime | None  # rows at or below it are skipped by this scan
    watermark: datetime | None  # the account's watermark when this scan began
    slice: Window
    offset: int
    seen: int
    changes: int
    max_lmt: datetime | None


# --- lease -----------------------------------------------------------------------------------
# The lease columns are the readable record of who holds the account. Who may sync it is decided
# by `sync.lock.AccountLock`, which the holder's death releases; these functions run under it.


def new_owner() -> str:
    """The record a run writes into the lease: `host:pid` for people, and a token for this run alone."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _key(account: Account) -> Any:
    return (state_t.c.cm_id == account.cm_id) & (state_t.c.stream == account.stream)


def _ensure_state_row(conn: Connection, account: Account, now: datetime) -> None:
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    conn.execute(
        dialect_insert(state_t)
        .values(cm_id=account.cm_id, stream=account.stream, updated_at=now)
        .on_conflict_do_nothing(index_elements=[state_t.c.cm_id, state_t.c.stream])
    )


def acquire_lease(engine: Engine, account: Account, owner: str, ttl: timedelta, now: datetime) -> None:
    """Write this run into the account's lease; call only while holding the account's `AccountLock`.

    Unconditional: holding the lock proves whoever the record names is dead or done. It is the
    run's first write, so a run that lost its lock sees this before any of ours can interleave.
    """
    with writer(engine).begin() as conn:
        _ensure_state_row(conn, account, now)
        conn.execute(
            update(state_t).where(_key(account)).values(lease_owner=owner, lease_expires_at=now + ttl, updated_at=now)
        )


def renew_lease(conn: Connection, account: Account, owner: str, expires: datetime) -> None:
    """Extend our lease record; if our claim is gone, stop before this transaction commits anything."""
    renewed = conn.execute(
        update(state_t).where(_key(account), state_t.c.lease_owner == owner).values(lease_expires_at=expires)
    )
    if renewed.rowcount != 1:
        raise LeaseHeld(
            f"account {account.cm_id}: the lease record no longer names this run (another process took over); stopping"
        )
    if not claim_is_held(conn, account):
        raise LeaseHeld(
            f"account {account.cm_id}: this run lost its claim on the account (its lock's database session ended); "
            "stopping"
        )


def release_lease(engine: Engine, account: Account, owner: str, now: datetime) -> None:
    """Clear our record (not a successor's); the lock itself is released after this."""
    with writer(engine).begin() as conn:
        conn.execute(
            update(state_t)
            .where(_key(account), state_t.c.lease_owner == owner)
            .values(
                lease_owner=None, lease_expires_at=None, active_run_id=None, active_window_start=None, updated_at=now
            )
        )


# --- watermark -----------------------------------------------------------------------------


def watermark(conn: Connection, account: Account) -> datetime | None:
    return conn.execute(select(state_t.c.watermark).where(_key(account))).scalar()


def advance_watermark(
    conn: Connection, account: Account, seen: datetime | None, run_id: int, window_start: datetime, now: datetime
) -> None:
    """Raise the watermark to the greatest `lastModificationTime` committed; it never goes back.

    One UPDATE, compared in SQL: this runs with every page.
    """
    values: dict[str, Any] = {"active_run_id": run_id, "active_window_start": window_start, "updated_at": now}
    if seen is not None:
        current = state_t.c.watermark
        later = literal(seen, UTCDateTime())
        values["watermark"] = case((current.is_(None) | (current < later), later), else_=current)
    conn.execute(update(state_t).where(_key(account)).values(**values))


# --- window ledger -------------------------------------------------------------------------


def ledger(conn: Connection, account: Account) -> dict[datetime, LedgerEntry]:
    rows = conn.execute(
        select(windows_t).where(windows_t.c.cm_id == account.cm_id, windows_t.c.stream == account.stream)
    ).mappings()
    entries = {}
    for r in rows:
        progress = None
        if r["progress_started_at"] is not None:
            progress = Progress(
                started_at=r["progress_started_at"],
                end=r["progress_end"],
                floor=r["progress_floor"],
                watermark=r["progress_watermark"],
                slice=Window(r["progress_slice_start"], r["progress_slice_end"]),
                offset=r["progress_offset"] or 0,
                seen=r["progress_seen"] or 0,
                changes=r["progress_changes"] or 0,
                max_lmt=r["progress_max_lmt"],
            )
        entries[r["window_start"]] = LedgerEntry(
            window=Window(r["window_start"], r["window_end"]),
            last_scanned_at=r["last_scanned_at"],
            scanned_end=r["scanned_end"],
            scan_floor=r["scan_floor"],
            progress=progress,
        )
    return entries


def _window_key(account: Account, start: datetime) -> Any:
    return (
        (windows_t.c.cm_id == account.cm_id)
        & (windows_t.c.stream == account.stream)
        & (windows_t.c.window_start == start)
    )


_PROGRESS_COLUMNS = tuple(c.name for c in windows_t.c if c.name.startswith("progress_"))


def _progress_values(progress: Progress | None) -> dict[str, Any]:
    """The `progress_*` columns for a scan in progress, or all NULL once it is finished."""
    if progress is None:
        return dict.fromkeys(_PROGRESS_COLUMNS)
    return {
        "progress_started_at": progress.started_at,
        "progress_end": progress.end,
        "progress_floor": progress.floor,
        "progress_watermark": progress.watermark,
        "progress_slice_start": progress.slice.start,
        "progress_slice_end": progress.slice.end,
        "progress_offset": progress.offset,
        "progress_seen": progress.seen,
        "progress_changes": progress.changes,
        "progress_max_lmt": progress.max_lmt,
    }


def _write_window(
    conn: Connection, account: Account, nominal: Window, values: dict[str, Any], scans_if_new: int
) -> None:
    """Update the window's ledger row, or create it on the window's first page."""
    values = {"window_end": nominal.end, **values}
    done = conn.execute(update(windows_t).where(_window_key(account, nominal.start)).values(**values))
    if done.rowcount == 0:
        values["scans"] = scans_if_new
        conn.execute(
            insert(windows_t).values(cm_id=account.cm_id, stream=account.stream, window_start=nominal.start, **values)
        )


def save_progress(conn: Connection, account: Account, nominal: Window, progress: Progress) -> None:
    """Record how far a window's scan got, in the same transaction as the page it describes."""
    _write_window(conn, account, nominal, _progress_values(progress), scans_if_new=0)


def finish_window(conn: Connection, account: Account, nominal: Window, progress: Progress, now: datetime) -> None:
    """Mark a complete scan: the ledger now vouches for this window up to `progress.end`."""
    values = {
        "last_scanned_at": now,
        "scanned_end": progress.end,
        "scan_floor": progress.watermark,
        "order_count": progress.seen,
        "max_last_modification_time": progress.max_lmt,
        "changes_found": progress.changes,
        "scans": windows_t.c.scans + 1,
        **_progress_values(None),
    }
    _write_window(conn, account, nominal, values, scans_if_new=1)


WindowRows = dict[datetime, dict[str, Any]]


def window_rows(conn: Connection, account: Account, starts: Collection[datetime]) -> WindowRows:
    """The ledger rows of these windows as they are now, every column: what `restore_windows` puts back."""
    wanted = set(starts)
    rows = conn.execute(
        select(windows_t).where(windows_t.c.cm_id == account.cm_id, windows_t.c.stream == account.stream)
    ).mappings()
    return {r["window_start"]: dict(r) for r in rows if r["window_start"] in wanted}


def restore_windows(engine: Engine, account: Account, starts: Collection[datetime], saved: WindowRows) -> None:
    """Put these windows' ledger rows back as `saved` holds them (absent there: no row), in one
    transaction, undoing a run's completions and progress: a read found wrong vouches for nothing
    and resumes nowhere."""
    ordered = sorted(set(starts))
    rows = [saved[start] for start in ordered if start in saved]
    with writer(engine).begin() as conn:
        for first in range(0, len(ordered), 500):
            chunk = ordered[first : first + 500]
            conn.execute(
                delete(windows_t).where(
                    windows_t.c.cm_id == account.cm_id,
                    windows_t.c.stream == account.stream,
                    windows_t.c.window_start.in_(chunk),
                )
            )
        if rows:
            conn.execute(insert(windows_t), rows)


# --- runs ----------------------------------------------------------------------------------


def start_run(engine: Engine, account: Account, kind: str, now: datetime, details: Mapping[str, Any]) -> int:
    """Open the run's row, and close as interrupted any run of this account that died unfinished."""
    with writer(engine).begin() as conn:
        conn.execute(
            update(runs_t)
            .where(runs_t.c.cm_id == account.cm_id, runs_t.c.stream == account.stream, runs_t.c.outcome == "running")
            .values(outcome="interrupted", finished_at=now, error="the process ended before the run finished")
        )
        result = conn.execute(
            insert(runs_t).values(
                cm_id=account.cm_id,
                stream=account.stream,
                kind=kind,
                started_at=now,
                outcome="running",
                details=dict(details),
                **{c: 0 for c in RUN_COUNTERS},
            )
        )
        return int(cast(Any, result.inserted_primary_key)[0])


def record_refused_run(engine: Engine, account: Account, kind: str, now: datetime, error: str) -> None:
    """A run that could not start because another holds the account: recorded, and nothing else touched."""
    with writer(engine).begin() as conn:
        conn.execute(
            insert(runs_t).values(
                cm_id=account.cm_id,
                stream=account.stream,
                kind=kind,
                started_at=now,
                finished_at=now,
                outcome="refused",
                error=error,
                **{c: 0 for c in RUN_COUNTERS},
            )
        )


def add_to_run(conn: Connection, run_id: int, counts: Mapping[str, int]) -> None:
    values = {name: runs_t.c[name] + value for name, value in counts.items() if value}
    if values:
        conn.execute(update(runs_t).where(runs_t.c.id == run_id).values(**values))


def finish_run(
    engine: Engine,
    run_id: int,
    outcome: str,
    now: datetime,
    error: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    values: dict[str, Any] = {"outcome": outcome, "finished_at": now, "error": error}
    if details is not None:
        values["details"] = dict(details)
    with writer(engine).begin() as conn:
        conn.execute(update(runs_t).where(runs_t.c.id == run_id).values(**values))


def recent_runs(conn: Connection, account: Account, limit: int = 10) -> Sequence[RowMapping]:
    query = (
        select(runs_t)
        .where(runs_t.c.cm_id == account.cm_id, runs_t.c.stream == account.stream)
        .order_by(runs_t.c.id.desc())
        .limit(limit)
    )
    return conn.execute(query).mappings().all()


def window_summary(conn: Connection, account: Account) -> RowMapping:
    row = (
        conn.execute(
            select(
                func.count().label("windows"),
                func.count(windows_t.c.last_scanned_at).label("scanned"),
                func.min(windows_t.c.window_start).label("first"),
                func.max(windows_t.c.window_end).label("last"),
                func.count(windows_t.c.progress_started_at).label("in_progress"),
            ).where(windows_t.c.cm_id == account.cm_id, windows_t.c.stream == account.stream)
        )
        .mappings()
        .one()
    )
    return row
