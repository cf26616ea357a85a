"""A run from start to finish: lease, plan, fetch-and-commit loop, and its row in `sync_runs`.

`backfill`, `sync` and `reconcile` differ only in their plan; the daemon will call these same
functions per account, which is why the engine and the client are passed in.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing, suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from sync.client import KaptureClient
from sync.commit import PageCommitter, RunTotals
from sync.db import database_problem, ensure_schema, writer
from sync.deletions import DeletionRules
from sync.errors import DatabaseUnavailable, LeaseHeld, ReadContradicted, SyncError
from sync.fetch import batches
from sync.guard import RunGuard
from sync.history import register_account
from sync.lock import AccountLock
from sync.new_fields import FieldWatch
from sync.paging import Event, PagingRules, WindowScanned, forget_honoured_limit
from sync.schedule import Schedule, Task, plan_backfill, plan_reconcile, plan_sync
from sync.settings import Settings, today_in
from sync.state import (
    Account,
    LedgerEntry,
    acquire_lease,
    finish_run,
    ledger,
    new_owner,
    record_refused_run,
    release_lease,
    restore_windows,
    start_run,
    watermark,
    window_rows,
)
from sync.stop import Stop, Stopped, Terminated
from sync.worker import Preparer

log = structlog.get_logger(__name__)


def utcnow() -> datetime:
    return datetime.now(tz=UTC)


@dataclass
class RunResult:
    run_id: int
    kind: str
    outcome: str
    totals: RunTotals
    seconds: float
    planned_windows: int
    details: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> str:
        t, load = self.totals, self.totals.load
        rate = t.records_fetched / self.seconds if self.seconds > 0 else 0.0
        return (
            f"{self.kind} {self.outcome}: {t.windows}/{self.planned_windows} windows, {t.pages} pages, "
            f"{t.requests} requests, {t.records_fetched} fetched, {load.inserted} inserted, "
            f"{load.updated} updated, {load.unchanged} unchanged, {t.rejected} rejected "
            f"in {self.seconds:.1f}s ({rate:,.0f} orders/s)"
        )


def schedule_of(settings: Settings) -> Schedule:
    return Schedule(
        size=settings.window,
        zone=settings.zone,
        lookback=timedelta(days=settings.lookback_days),
        overlap_windows=settings.overlap_windows,
        rescan_factor=settings.rescan_factor,
        horizon=timedelta(days=settings.rescan_horizon_days),
        floor_margin=settings.floor_margin,
    )


def rules_of(settings: Settings) -> PagingRules:
    return PagingRules(
        zone=settings.zone,
        date_format=settings.date_format,
        end_inclusive=settings.end_inclusive,
        page_size=settings.page_size,
        split_offset=settings.split_offset,
        min_slice=settings.min_slice,
        trust_short_pages=not settings.detect_deletions,
    )


Planner = Callable[[dict[datetime, LedgerEntry], datetime], list[Task]]
OnWindow = Callable[[Task, int], None]


def execute(
    kind: str,
    planner: Planner,
    engine: Engine,
    client: KaptureClient,
    settings: Settings,
    on_plan: Callable[[list[Task]], None] | None = None,
    on_window: OnWindow | None = None,
    clock: Callable[[], datetime] = utcnow,
    stop: Stop | None = None,
    on_finish: Callable[[RunResult], None] | None = None,
    record_refused: bool = True,
) -> RunResult:
    """Hold the account's lock (and its lease record) while the windows are fetched and committed page by page.

    `stop` (the daemon's; never set for a one-shot command) ends the run at the next page
    boundary as `interrupted`, raising `Stopped`. `on_finish` is handed the run's result whatever
    its outcome. `record_refused=False` leaves no `refused` row when another process holds the
    account (the daemon simply tries again at its next turn).
    """
    if stop is not None:
        stop.check()
    account = Account(settings.cm_id)
    ttl = timedelta(seconds=settings.lease_seconds)
    owner = new_owner()
    claim = AccountLock(engine, account)
    started = time.monotonic()
    try:
        ensure_schema(engine)
        now = clock()
        try:
            claim.acquire()
        except LeaseHeld as exc:
            if record_refused:
                record_refused_run(engine, account, kind, now, str(exc))
            raise
        acquire_lease(engine, account, owner, ttl, now)
    except DBAPIError as exc:
        claim.release()
        raise DatabaseUnavailable(database_problem(engine, exc)) from None
    except BaseException:
        claim.release()
        raise
    try:
        run_id = start_run(engine, account, kind, now, {"window": str(settings.window)})
        structlog.contextvars.bind_contextvars(run_id=run_id, cm_id=account.cm_id)
        tasks: list[Task] = []
        before: dict[datetime, dict[str, Any]] = {}  # the ledger rows of the planned windows, for the guard
        committer: PageCommitter | None = None
        outcome, error = "failed", None
        try:
            with writer(engine).begin() as conn:
                register_account(conn, settings, now)  # the zone and schedule the views show
            with engine.connect() as conn:
                tasks = planner(ledger(conn, account), now)
                before = window_rows(conn, account, [task.nominal.start for task in tasks])
                start_watermark = watermark(conn, account)
                fields = FieldWatch.load(conn, account)
            if on_plan:
                on_plan(tasks)
            log.info("run.start", kind=kind, run_id=run_id, cm_id=account.cm_id, windows=len(tasks))
            base_requests = client.stats.requests
            forget_honoured_limit(client, settings.page_size)
            committer = PageCommitter(
                engine,
                account,
                run_id,
                owner,
                ttl,
                clock,
                lambda: client.stats.requests - base_requests,
                start_watermark,
                settings.history,
                DeletionRules(settings.detect_deletions, settings.deletion_max_share),
                fields,
            )
            guard = RunGuard(client, rules_of(settings), stop)
            with Preparer(account.cm_id, engine.dialect.name, settings.processes) as preparer:  # type: ignore[arg-type]
                fetching = batches(
                    client,
                    tasks,
                    rules_of(settings),
                    stop,
                    workers=settings.concurrency,
                    max_rows=settings.commit_rows,
                    max_seconds=settings.commit_seconds,
                    preparer=preparer,
                )
                with closing(fetching):
                    for batch in fetching:
                        admitted: list[Event] = []
                        try:
                            for event in batch:
                                admitted.extend(guard.admit(event))
                        except ReadContradicted:  # what arrived before the contradiction commits, as it would alone
                            _commit(committer, admitted, stop, on_window, settings)
                            raise
                        _commit(committer, admitted, stop, on_window, settings)
            _commit(committer, guard.finish(), stop, on_window, settings)
            outcome = "success"
        except (KeyboardInterrupt, Terminated, Stopped):
            outcome, error = "interrupted", "stopped by a signal"
            raise
        except DBAPIError as exc:
            error = database_problem(engine, exc)
            raise DatabaseUnavailable(error) from None
        except ReadContradicted as exc:  # the guard: leave no window recorded read by this run
            error = str(exc)
            restore_windows(engine, account, [task.nominal.start for task in tasks], before)
            raise
        except SyncError as exc:
            error = str(exc)
            raise
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
            raise
        finally:
            totals = committer.totals if committer is not None else RunTotals()
            details = {
                "window": str(settings.window),
                "planned_windows": len(tasks),
                "reasons": _reasons(tasks),
                "changed_by_age": dict(totals.changed_by_age),
                "oldest_change_days": totals.oldest_change_days,
                "below_floor": totals.below_floor,
                "deleted": totals.deleted,
                "revived": totals.revived,
            }
            try:
                finish_run(engine, run_id, outcome, clock(), error, details)
            except DBAPIError:
                log.error("run.unrecorded", run_id=run_id, outcome=outcome)
            result = RunResult(run_id, kind, outcome, totals, time.monotonic() - started, len(tasks), details)
            if on_finish is not None:
                on_finish(result)
        log.info("run.finish", kind=kind, run_id=run_id, outcome=outcome, **totals.as_counters())
        return result
    finally:
        with suppress(DBAPIError):
            release_lease(engine, account, owner, clock())
        claim.release()
        structlog.contextvars.unbind_contextvars("run_id", "cm_id")


def _commit(
    committer: PageCommitter, events: list[Event], stop: Stop | None, on_window: OnWindow | None, settings: Settings
) -> None:
    """One transaction for a batch of events; then the windows it completed are reported."""
    if not events:
        return
    if stop is not None:
        stop.check()  # before the batch's transaction: it commits whole or not at all
    _counts, completed = committer.commit(events)
    ends = [event for event in events if isinstance(event, WindowScanned)]
    for event, done in zip(ends, completed, strict=True):
        log.debug(
            "window.scanned",
            window=event.task.window.label(settings.zone),
            reason=event.task.reason,
            orders=done.seen,
            changes=done.changes,
        )
        if on_window:
            on_window(event.task, done.seen)


def _reasons(tasks: list[Task]) -> dict[str, int]:
    return dict(Counter(task.reason for task in tasks))


def backfill(
    engine: Engine,
    client: KaptureClient,
    settings: Settings,
    first_day: date,
    last_day: date | None = None,
    refetch: bool = False,
    **hooks: Any,
) -> RunResult:
    schedule = schedule_of(settings)

    def planner(entries: dict[datetime, LedgerEntry], now: datetime) -> list[Task]:
        today = today_in(settings.zone, now)
        return plan_backfill(first_day, min(last_day or today, today), entries, schedule, now, refetch)

    return execute("backfill", planner, engine, client, settings, **hooks)


def sync(engine: Engine, client: KaptureClient, settings: Settings, **hooks: Any) -> RunResult:
    schedule = schedule_of(settings)

    def planner(entries: dict[datetime, LedgerEntry], now: datetime) -> list[Task]:
        return plan_sync(settings.default_start(today_in(settings.zone, now)), entries, schedule, now)

    return execute("sync", planner, engine, client, settings, **hooks)


def reconcile(
    engine: Engine, client: KaptureClient, settings: Settings, first_day: date | None = None, **hooks: Any
) -> RunResult:
    schedule = schedule_of(settings)

    def planner(entries: dict[datetime, LedgerEntry], now: datetime) -> list[Task]:
        known = [e.window.start.astimezone(settings.zone).date() for e in entries.values()]
        start = first_day or min(known, default=settings.default_start(today_in(settings.zone, now)))
        return plan_reconcile(start, entries, schedule, now)

    return execute("reconcile", planner, engine, client, settings, **hooks)
