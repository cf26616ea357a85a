"""One page, one transaction: rows, rejects, ledger progress, watermark, run counters and lease.

Because all of these commit together, a run killed at any instant leaves the database exactly at
a page boundary: the resumed run re-reads at most one page and can neither lose nor double a row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.engine import Connection

from sync.db import writer
from sync.deletions import DeletionRules, settle
from sync.load import LoadCounts, Stored, record_rejections, stored_versions, upsert_orders, upsert_prepared
from sync.new_fields import FieldWatch
from sync.paging import PageFetched, WindowScanned
from sync.prepare import Prepared, prepare
from sync.schedule import Task
from sync.state import Account, Progress, add_to_run, advance_watermark, finish_window, renew_lease, save_progress
from sync.transform import Rejection, stamp, to_row
from sync.windows import from_ms, to_ms

AGE_BUCKETS = ((7, "0-7 days"), (30, "8-30 days"), (90, "31-90 days"), (365, "91-365 days"))


def age_bucket(days: int) -> str:
    return next((label for limit, label in AGE_BUCKETS if days <= limit), "over 365 days")


def _no_later_than(watermark: datetime | None, now: datetime) -> datetime | None:
    """A watermark stamped in the future (a fast clock at Kapture) must not become a floor."""
    return None if watermark is None else min(watermark, now)


@dataclass
class RunTotals:
    """What a run did, as the user and `sync_runs` see it."""

    windows: int = 0
    pages: int = 0
    requests: int = 0
    records_fetched: int = 0
    load: LoadCounts = field(default_factory=LoadCounts)
    rejected: int = 0
    changed_by_age: Counter[str] = field(default_factory=Counter)
    oldest_change_days: int | None = None
    below_floor: int = 0  # rows checked by id and stamp only: the floor's saving
    deleted: int = 0  # orders marked deleted_at (opt-in)
    revived: int = 0  # orders marked deleted that were served again

    def as_counters(self) -> dict[str, int]:
        return {
            "windows": self.windows,
            "pages": self.pages,
            "requests": self.requests,
            "records_fetched": self.records_fetched,
            "inserted": self.load.inserted,
            "updated": self.load.updated,
            "unchanged": self.load.unchanged,
            "rejected": self.rejected,
        }


@dataclass(frozen=True, slots=True)
class Written:
    """What one page did to `orders` and `rejected_records`."""

    counts: LoadCounts
    changed_created: list[datetime]  # create dates of the rows inserted or updated, for the run's age tally
    rejected: int
    max_modified: datetime | None  # greatest stamp now stored from this page
    below_floor: int  # rows checked by id and stamp only


def write_records(
    conn: Connection,
    account: Account,
    records: list[Any],
    ids: list[int],
    task: Task,
    run_id: int,
    now: datetime,
    history: bool = True,
    prepared: Mapping[int, Prepared | Rejection] | None = None,
) -> Written:
    """Store a page's records inside the caller's transaction; every served order ends up stored or rejected.

    Below the window's floor a record was stored by the window's last complete read (see
    docs/how-sync-works.md), so it is checked against the database by id and stamp alone, without
    being mapped, and mapped only if it is missing there or older: the floor saves work, never rows.
    `prepared` holds records already mapped by position (`sync.read.read_page`, on another core),
    whose place in `records` may hold None; any other record is mapped here. `ids` are the ids the
    page's records could be stored under (`PageFetched.ids`).
    """
    floor_ms = None if task.floor is None else to_ms(task.floor)
    stored = stored_versions(conn, account.cm_id, ids)
    reconciling = task.reason == "reconcile"
    confirmed: list[int] = []
    mapped: list[Prepared | Rejection] = []
    unmapped: list[Any] = []
    for i, record in enumerate(records):
        if floor_ms is not None and (key := stamp(record)) is not None and key[1] <= floor_ms:
            have = stored.get(key[0])
            if have is not None and have.modified_ms >= key[1]:
                confirmed.append(key[1])
                continue
        ready = None if prepared is None or reconciling else prepared.get(i)
        if ready is None:
            unmapped.append(record)
        else:
            mapped.append(ready)
    if reconciling:
        counts, created_ms, stamps_ms, rejections = _rederive(conn, account.cm_id, unmapped, stored, now, history)
    else:
        mapped.extend(prepare(unmapped, account.cm_id, conn.dialect.name))  # type: ignore[arg-type]
        rows: list[Prepared] = [m for m in mapped if not isinstance(m, Rejection)]
        rejections = [m for m in mapped if isinstance(m, Rejection)]
        counts, changed = upsert_prepared(conn, account.cm_id, rows, stored, now, history)
        created_ms, stamps_ms = [row[3] for row in changed], [row[1] for row in rows]
    counts.unchanged += len(confirmed)
    record_rejections(conn, account.cm_id, account.stream, rejections, task.window, run_id, now)
    newest = max((*stamps_ms, *confirmed), default=None)
    return Written(
        counts,
        [from_ms(ms) for ms in created_ms],
        len(rejections),
        None if newest is None else from_ms(newest),
        len(confirmed),
    )


def _rederive(
    conn: Connection, cm_id: int, records: list[Any], stored: Mapping[int, Stored], now: datetime, history: bool
) -> tuple[LoadCounts, list[int], list[int], list[Rejection]]:
    """`reconcile`'s page, mapped here as dict rows so every typed column can be compared with what is stored.

    Returns the counts, the create and modification stamps (epoch ms) of the rows written and of
    all rows mapped, and the rejections.
    """
    rows: list[dict[str, Any]] = []
    rejections: list[Rejection] = []
    for record in records:
        row = to_row(record, cm_id, now)
        (rejections if isinstance(row, Rejection) else rows).append(row)  # type: ignore[arg-type]
    counts, changed = upsert_orders(conn, cm_id, rows, stored, rederive=True, history=history)
    created = [to_ms(r["create_date"]) for r in changed]
    return counts, created, [to_ms(r["last_modification_time"]) for r in rows], rejections


@dataclass
class PageCommitter:
    """Writes the events of one run; keeps each window's running tally between its pages."""

    engine: Engine
    account: Account
    run_id: int
    lease_owner: str
    lease_ttl: timedelta
    clock: Callable[[], datetime]
    requests_so_far: Callable[[], int]
    start_watermark: datetime | None = None
    history: bool = True  # also record each written version in `order_versions`
    deletions: DeletionRules = field(default_factory=DeletionRules)
    fields: FieldWatch | None = None  # notices fields Kapture adds later (see new_fields.py)
    totals: RunTotals = field(default_factory=RunTotals)
    _open: dict[datetime, Progress] = field(default_factory=dict)
    _served_ids: dict[datetime, set[int]] = field(default_factory=dict)  # per open window, for deletions
    _requests_reported: int = 0

    def _progress(self, task: Task, now: datetime) -> Progress:
        if task.nominal.start not in self._open:
            self._open[task.nominal.start] = task.resume or Progress(
                started_at=now,
                end=task.end,
                floor=task.floor,
                watermark=_no_later_than(self.start_watermark, now),
                slice=task.window,
                offset=0,
                seen=0,
                changes=0,
                max_lmt=None,
            )
        return self._open[task.nominal.start]

    def commit(self, events: list[PageFetched | WindowScanned]) -> tuple[LoadCounts, list[Progress]]:
        """Write a batch of events in one transaction, in their order; return the rows' counts and
        the final progress of each window the batch completed.

        Rows, rejects, the ledger progress of every window touched (or its completion), the
        watermark, the run's counters and the lease renewal commit together, so a kill at any
        instant leaves every window at a page boundary that holds exactly what was committed.
        """
        now = self.clock()
        requests = self.requests_so_far() - self._requests_reported
        batch_counts = LoadCounts()
        page_counts = dict.fromkeys(("pages", "records_fetched", "inserted", "updated", "unchanged", "rejected"), 0)
        page_counts["requests"] = requests
        page_counts["windows"] = 0
        progressed: dict[datetime, tuple[Task, Progress]] = {}
        completed: list[tuple[WindowScanned, Progress]] = []
        changed_created: list[datetime] = []
        below_floor = deleted = revived = 0
        max_modified: datetime | None = None
        last_window: datetime | None = None
        with writer(self.engine).begin() as conn:
            for event in events:
                task = event.task
                progress = progressed[task.nominal.start][1] if task.nominal.start in progressed else None
                progress = progress or self._progress(task, now)
                if isinstance(event, PageFetched):
                    written = write_records(
                        conn,
                        self.account,
                        event.records,
                        event.ids,
                        task,
                        self.run_id,
                        now,
                        self.history,
                        event.prepared,
                    )
                    if self.fields is not None:
                        self.fields.note(conn, event.undocumented, self.run_id, now)
                    if self.deletions.enabled:
                        self._served_ids.setdefault(task.nominal.start, set()).update(event.ids)
                    counts = written.counts
                    progress = replace(
                        progress,
                        slice=event.slice,
                        offset=event.next_offset,
                        seen=progress.seen + event.new,
                        changes=progress.changes + counts.inserted + counts.updated,
                        max_lmt=max(filter(None, (progress.max_lmt, written.max_modified)), default=None),
                    )
                    progressed[task.nominal.start] = (task, progress)
                    max_modified = max(filter(None, (max_modified, written.max_modified)), default=None)
                    last_window = task.nominal.start
                    batch_counts.add(counts)
                    page_counts["pages"] += 1
                    page_counts["records_fetched"] += event.served
                    page_counts["rejected"] += written.rejected
                    changed_created.extend(written.changed_created)
                    below_floor += written.below_floor
                else:
                    if not event.proven:  # rows may have been pushed past this read: the next read compares them all
                        progress = replace(progress, watermark=None)
                    progressed.pop(task.nominal.start, None)
                    served = self._served_ids.pop(task.nominal.start, set())
                    settled = settle(conn, self.account, task, served, progress.seen, event.proven, self.deletions, now)
                    deleted += settled.marked
                    revived += settled.revived
                    finish_window(conn, self.account, task.nominal, progress, now)
                    completed.append((event, progress))
                    page_counts["windows"] += 1
            for task, progress in progressed.values():
                save_progress(conn, self.account, task.nominal, progress)
            if last_window is not None:
                advance_watermark(conn, self.account, max_modified, self.run_id, last_window, now)
            page_counts["inserted"] = batch_counts.inserted
            page_counts["updated"] = batch_counts.updated
            page_counts["unchanged"] = batch_counts.unchanged
            add_to_run(conn, self.run_id, page_counts)
            renew_lease(conn, self.account, self.lease_owner, now + self.lease_ttl)
        for key, (_task, progress) in progressed.items():
            self._open[key] = progress
        for event, _progress in completed:
            self._open.pop(event.task.nominal.start, None)
        self._requests_reported += requests
        self.totals.below_floor += below_floor
        self.totals.deleted += deleted
        self.totals.revived += revived
        self.totals.windows += page_counts["windows"]
        self._tally(page_counts, batch_counts, changed_created, now)
        return batch_counts, [progress for _event, progress in completed]

    def _tally(
        self, page_counts: dict[str, int], counts: LoadCounts, changed_created: list[datetime], now: datetime
    ) -> None:
        t = self.totals
        t.pages += page_counts["pages"]
        t.requests += page_counts["requests"]
        t.records_fetched += page_counts["records_fetched"]
        t.rejected += page_counts["rejected"]
        t.load.add(counts)
        for created in changed_created:
            days = max(0, (now - created).days)
            t.changed_by_age[age_bucket(days)] += 1
            t.oldest_change_days = max(days, t.oldest_change_days or 0)
