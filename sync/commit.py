"""One page, one transaction: rows, rejects, ledger progress, watermark, run counters and lease.

Because all of these commit together, a run killed at any instant leaves the database exactly at
a page boundary: the resumed run re-reads at most one page and can neither lose nor double a row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from sync.db import writer
from sync.load import LoadCounts, record_rejections, upsert_orders
from sync.paging import PageFetched, WindowScanned
from sync.schedule import Task
from sync.state import Account, Progress, add_to_run, advance_watermark, finish_window, renew_lease, save_progress
from sync.transform import Rejection, to_row

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
    totals: RunTotals = field(default_factory=RunTotals)
    _open: dict[datetime, Progress] = field(default_factory=dict)
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

    def page(self, event: PageFetched) -> LoadCounts:
        now = self.clock()
        task = event.task
        progress = self._progress(task, now)
        rows: list[dict[str, Any]] = []
        rejections: list[Rejection] = []
        for record in event.records:
            mapped = to_row(record, self.account.cm_id, now)
            (rejections if isinstance(mapped, Rejection) else rows).append(mapped)  # type: ignore[arg-type]
        floor = task.floor
        candidates = rows if floor is None else [r for r in rows if r["last_modification_time"] > floor]
        page_max = max((r["last_modification_time"] for r in rows), default=None)
        requests = self.requests_so_far() - self._requests_reported
        with writer(self.engine).begin() as conn:
            counts, changed = upsert_orders(conn, self.account.cm_id, candidates)
            counts.unchanged += len(rows) - len(candidates)
            record_rejections(conn, self.account.cm_id, self.account.stream, rejections, task.window, self.run_id, now)
            progress = replace(
                progress,
                slice=event.slice,
                offset=event.next_offset,
                seen=progress.seen + len(event.records),
                changes=progress.changes + counts.inserted + counts.updated,
                max_lmt=max(filter(None, (progress.max_lmt, page_max)), default=None),
            )
            save_progress(conn, self.account, task.nominal, progress)
            advance_watermark(conn, self.account, page_max, self.run_id, task.nominal.start, now)
            page_counts = {
                "pages": 1,
                "requests": requests,
                "records_fetched": event.served,
                "inserted": counts.inserted,
                "updated": counts.updated,
                "unchanged": counts.unchanged,
                "rejected": len(rejections),
            }
            add_to_run(conn, self.run_id, page_counts)
            renew_lease(conn, self.account, self.lease_owner, now + self.lease_ttl)
        self._open[task.nominal.start] = progress
        self._requests_reported += requests
        self._tally(page_counts, counts, changed, now)
        return counts

    def window_done(self, event: WindowScanned) -> Progress:
        now = self.clock()
        progress = self._progress(event.task, now)
        if not event.proven:  # rows may have been pushed past this read: the next read compares them all
            progress = replace(progress, watermark=None)
        requests = self.requests_so_far() - self._requests_reported
        with writer(self.engine).begin() as conn:
            finish_window(conn, self.account, event.task.nominal, progress, now)
            add_to_run(conn, self.run_id, {"windows": 1, "requests": requests})
            renew_lease(conn, self.account, self.lease_owner, now + self.lease_ttl)
        self._requests_reported += requests
        self.totals.windows += 1
        self.totals.requests += requests
        del self._open[event.task.nominal.start]
        return progress

    def _tally(
        self, page_counts: dict[str, int], counts: LoadCounts, changed: list[dict[str, Any]], now: datetime
    ) -> None:
        t = self.totals
        t.pages += 1
        t.requests += page_counts["requests"]
        t.records_fetched += page_counts["records_fetched"]
        t.rejected += page_counts["rejected"]
        t.load.add(counts)
        for row in changed:
            days = max(0, (now - row["create_date"]).days)
            t.changed_by_age[age_bucket(days)] += 1
            t.oldest_change_days = max(days, t.oldest_change_days or 0)
