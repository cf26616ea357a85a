"""`kapture-sync daemon`: `sync` every interval and `reconcile` on a cron, per account, until SIGTERM/SIGINT.

A thin shell over `sync.runs`: APScheduler 3 (a `BackgroundScheduler` with a thread pool) decides
*when*; the runs are the same functions the one-shot commands call, each account with its own
engine, HTTP client and settings.

- **One run per account at a time.** Each job has `max_instances=1` and coalesces missed turns. An
  account's sync and reconcile share a mutex: a reconcile that falls due during the account's sync
  waits for it; a sync that falls due during a reconcile skips its turn.
- **Other processes** (a manual backfill, another daemon on another machine) are kept apart by the
  account lock of `sync.lock`: a run that finds the account held skips its turn (logged as
  `run.busy`, counted as outcome `busy`, no `sync_runs` row) and the account is tried again at
  its next turn. A claim lost after the run began is a failure (recorded `failed`, counted and
  backed off like one).
- **Failures** are logged and recorded by the run itself; the daemon goes on. The next sync of an
  account that keeps failing is pushed back: one interval after the first failure, then doubling,
  up to `KAPTURE_SYNC_FAILURE_BACKOFF_MAX`; the first success returns it to its interval.
- **Stop.** SIGTERM/SIGINT set a `Stop` that the running jobs honour at the next page boundary
  (see `sync.stop`): the page in flight commits whole or not at all, the run is recorded
  `interrupted` and its lock released, and the process exits 0. A second signal exits at once.
- **Schema.** Upgraded once at start (`sync.db.upgrade` queues processes starting together), not
  by every job.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any

import httpx
import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine

from sync import runs
from sync.client import KaptureClient, make_client, make_http_client
from sync.db import ensure_schema, make_engine, redact
from sync.errors import LeaseHeld, SettingsError, SyncError
from sync.metrics import DatabaseCollector, Metrics, ObservationServer, Watched, health
from sync.settings import Settings
from sync.stop import Stop, Stopped

log = structlog.get_logger(__name__)


def utcnow() -> datetime:
    return datetime.now(tz=UTC)


def backoff(interval: timedelta, failures: int, cap: timedelta) -> timedelta:
    """The gap before the next sync after `failures` failed runs in a row: interval, 2x, 4x, ... up to the cap."""
    if failures <= 0:
        return interval
    return min(interval * 2 ** min(failures - 1, 30), max(cap, interval))


@dataclass
class Account:
    """One account's share of the daemon: its settings, engine, client, mutex and failure count."""

    settings: Settings
    engine: Engine
    http: httpx.Client
    client: KaptureClient
    busy: threading.Lock = field(default_factory=threading.Lock)
    failures: int = 0

    @property
    def label(self) -> str:
        return self.settings.label


class Daemon:
    def __init__(self, accounts: list[Settings], stop: Stop | None = None) -> None:
        if not accounts:
            raise ValueError("no account to sync")
        self.stop = stop or Stop()
        self.settings = accounts
        self.accounts: list[Account] = []
        self.engines: dict[str, Engine] = {}
        self.metrics = Metrics()
        self.scheduler: BackgroundScheduler | None = None
        self.server: ObservationServer | None = None
        self.started = utcnow()

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        for settings in self.settings:
            if settings.database_url not in self.engines:
                engine = make_engine(settings.database_url)
                self.engines[settings.database_url] = engine
                ensure_schema(engine)
            http = make_http_client(settings)
            client = make_client(settings, http)
            client.sleep = self.stop.sleep  # retry back-off ends at once on a stop
            self.accounts.append(Account(settings, self.engines[settings.database_url], http, client))
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=2 * len(self.accounts) + 1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        now = utcnow()
        for account in self.accounts:
            s = account.settings
            kinds = ["sync"] if s.reconcile_cron == "off" else ["sync", "reconcile"]
            self.metrics.account(account.label, kinds)
            self.scheduler.add_job(
                self.run,
                IntervalTrigger(seconds=max(1, round(s.interval.total_seconds())), timezone=UTC),
                args=[account, "sync"],
                id=f"sync:{account.label}",
                name=f"sync {account.label}",
                next_run_time=now,
            )
            if s.reconcile_cron != "off":
                self.scheduler.add_job(
                    self.run,
                    CronTrigger.from_crontab(s.reconcile_cron, timezone=s.zone),
                    args=[account, "reconcile"],
                    id=f"reconcile:{account.label}",
                    name=f"reconcile {account.label}",
                )
        port = self.settings[0].metrics_port
        if port is not None:
            watched = [Watched(a.label, a.settings.cm_id, a.settings.interval, a.engine) for a in self.accounts]
            self.metrics.registry.register(DatabaseCollector(watched, utcnow, self.started))
            try:
                self.server = ObservationServer(
                    self.settings[0].metrics_host,
                    port,
                    self.metrics.registry,
                    lambda: health(watched, utcnow(), self.started),
                )
                self.server.start()
            except OSError as exc:  # the port taken, or a host this machine does not have
                reason = (exc.strerror or str(exc)).lower()
                raise SettingsError(f"bad setting: KAPTURE_SYNC_METRICS_PORT {port}: {reason}") from None
        self.scheduler.start()
        for account in self.accounts:
            s = account.settings
            log.info(
                "daemon.account",
                account=account.label,
                cm_id=s.cm_id,
                base_url=s.base_url,
                interval_s=s.interval.total_seconds(),
                reconcile_cron=s.reconcile_cron,
                timezone=s.timezone,
            )
        log.info(
            "daemon.started",
            pid=os.getpid(),
            accounts=[a.label for a in self.accounts],
            database=[redact(url) for url in self.engines],
            metrics_port=port,
        )

    def shutdown(self) -> None:
        """Stop scheduling, let running jobs end at their next page boundary, then close everything."""
        self.stop.set(self.stop.reason or "shutdown")
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        for account in self.accounts:
            account.http.close()
        if self.server is not None:
            self.server.stop()
        for engine in self.engines.values():
            engine.dispose()

    # --- one job --------------------------------------------------------------------------------

    def run(self, account: Account, kind: str) -> None:
        """One scheduled turn of an account; never raises (the scheduler would only log it)."""
        if self.stop.is_set():
            return
        with structlog.contextvars.bound_contextvars(account=account.label, kind=kind):
            if kind == "sync":
                if not account.busy.acquire(blocking=False):
                    log.info("run.skipped", reason="a reconcile of this account is running")
                    return
            else:
                while not account.busy.acquire(timeout=0.2):  # the account's sync finishes first
                    if self.stop.is_set():
                        return
            try:
                self._run(account, kind)
            finally:
                account.busy.release()

    def _run(self, account: Account, kind: str) -> None:
        finished: list[runs.RunResult] = []
        retries_before = account.client.stats.retries
        hooks: dict[str, Any] = {"stop": self.stop, "on_finish": finished.append, "record_refused": False}
        outcome = "failed"
        try:
            if kind == "sync":
                runs.sync(account.engine, account.client, account.settings, **hooks)
            else:
                runs.reconcile(account.engine, account.client, account.settings, **hooks)
            outcome = "success"
        except LeaseHeld as exc:
            if finished:  # the claim was lost after the run began: recorded failed, and backs off like one
                log.error("run.failed", error=str(exc), cause=exc.cause, exit_code=exc.exit_code)
            else:  # held by another process before the run began: try again next turn
                outcome = "busy"
                log.info("run.busy", reason=str(exc))
        except Stopped:
            outcome = "interrupted"
            log.info("run.interrupted", reason=self.stop.reason)
        except SyncError as exc:
            log.error("run.failed", error=str(exc), cause=exc.cause, exit_code=exc.exit_code)
        except Exception as exc:  # a bug must not end the daemon; its traceback goes to the log
            log.exception("run.failed", error=f"{type(exc).__name__}: {exc}")
        result = finished[-1] if finished else None
        self.metrics.run(account.label, kind, outcome, result, account.client.stats.retries - retries_before)
        if outcome == "failed":
            self._back_off(account)
        elif outcome == "success" and account.failures:
            log.info("account.recovered", after_failures=account.failures)
            account.failures = 0
        self.metrics.failures.labels(account.label).set(account.failures)

    def _back_off(self, account: Account) -> None:
        account.failures += 1
        s = account.settings
        gap = backoff(s.interval, account.failures, s.failure_backoff_max)
        next_run = utcnow() + gap
        if self.scheduler is not None and not self.stop.is_set():
            self.scheduler.modify_job(f"sync:{account.label}", next_run_time=next_run)
        log.warning("account.backoff", failures=account.failures, next_sync_in_s=gap.total_seconds())


def run_daemon(accounts: list[Settings]) -> int:
    """Run until SIGTERM/SIGINT; 0 after a clean stop. Must be called from the main thread."""
    stop = Stop()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():  # a second signal: the operator does not want to wait
            os.write(2, b"kapture-sync: stopping at once (second signal)\n")
            os._exit(130)
        stop.set(f"received {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    daemon = Daemon(accounts, stop)
    try:
        daemon.start()
        while not stop.wait(0.5):
            pass
        log.info("daemon.stopping", reason=stop.reason)
    finally:
        daemon.shutdown()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("daemon.stopped")
    return 0
