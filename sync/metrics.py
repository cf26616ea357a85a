"""The daemon's `/healthz` and Prometheus `/metrics` (prometheus-client), on `KAPTURE_SYNC_METRICS_PORT`.

Counters (runs, orders, rows, requests, retries, durations) count what this process did. The
freshness figures (seconds since the last successful run, watermark lag) and `/healthz` are read
from the database at each request, so every daemon of a scaled-out deployment reports the same
truth about every account, whichever process ran it.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import DBAPIError

from sync.db import database_problem
from sync.models import SyncRun, SyncState
from sync.runs import RunResult

log = structlog.get_logger(__name__)

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600)


class Metrics:
    """What this process did, by account: registered in a registry of its own (not the global one)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "kapture_sync_runs",
            "Runs by account, kind and outcome (busy: another process held the account)",
            ["account", "kind", "outcome"],
            registry=r,
        )
        self.orders_fetched = Counter(
            "kapture_sync_orders_fetched", "Orders served by Kapture, repeats included", ["account", "kind"], registry=r
        )
        self.rows = Counter(
            "kapture_sync_rows",
            "Served orders by what the run did with them",
            ["account", "kind", "change"],
            registry=r,
        )
        self.requests = Counter("kapture_sync_requests", "Pull requests sent to Kapture", ["account"], registry=r)
        self.retries = Counter(
            "kapture_sync_retries", "Pull requests retried after a transient fault", ["account"], registry=r
        )
        self.duration = Histogram(
            "kapture_sync_run_duration_seconds",
            "Run duration",
            ["account", "kind"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.failures = Gauge(
            "kapture_sync_consecutive_failures",
            "Failed runs in a row (the back-off grows with it)",
            ["account"],
            registry=r,
        )

    def account(self, label: str, kinds: Sequence[str]) -> None:
        """Create an account's series at zero, so rates and alerts work before its first run."""
        for kind in kinds:
            for outcome in ("success", "failed", "interrupted", "busy"):
                self.runs.labels(label, kind, outcome)
            self.orders_fetched.labels(label, kind)
            for change in ("inserted", "updated", "unchanged", "rejected"):
                self.rows.labels(label, kind, change)
        self.requests.labels(label)
        self.retries.labels(label)
        self.failures.labels(label).set(0)

    def run(self, label: str, kind: str, outcome: str, result: RunResult | None, retries: int) -> None:
        self.runs.labels(label, kind, outcome).inc()
        self.retries.labels(label).inc(retries)
        if result is None:
            return
        totals = result.totals
        self.orders_fetched.labels(label, kind).inc(totals.records_fetched)
        for change, count in (
            ("inserted", totals.load.inserted),
            ("updated", totals.load.updated),
            ("unchanged", totals.load.unchanged),
            ("rejected", totals.rejected),
        ):
            self.rows.labels(label, kind, change).inc(count)
        self.requests.labels(label).inc(totals.requests)
        self.duration.labels(label, kind).observe(result.seconds)


@dataclass(frozen=True, slots=True)
class Watched:
    """An account as health and metrics see it."""

    label: str
    cm_id: int
    interval: timedelta
    engine: Engine


@dataclass(frozen=True, slots=True)
class AccountHealth:
    label: str
    ok: bool
    reason: str
    last_success: datetime | None
    last_outcome: str | None
    watermark: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "last_success": self.last_success.isoformat() if self.last_success else None,
            "last_outcome": self.last_outcome,
            "watermark": self.watermark.isoformat() if self.watermark else None,
        }


def stale_after(interval: timedelta) -> timedelta:
    """How long an account may go without a successful run, or a committed page, before it is unhealthy."""
    return 3 * interval + timedelta(seconds=60)


def account_health(account: Watched, now: datetime, started: datetime) -> AccountHealth:
    """Healthy while the account's last finished run succeeded and it succeeded (or a running run
    committed a page) within a few intervals; runs that were interrupted or refused decide nothing."""
    runs = SyncRun.__table__.c
    with account.engine.connect() as conn:
        last_success = conn.execute(
            select(func.max(runs.finished_at)).where(runs.cm_id == account.cm_id, runs.outcome == "success")
        ).scalar()
        last = conn.execute(
            select(runs.kind, runs.outcome, runs.finished_at, runs.error)
            .where(runs.cm_id == account.cm_id, runs.outcome.in_(("success", "failed")))
            .order_by(runs.id.desc())
            .limit(1)
        ).first()
        state = conn.execute(
            select(SyncState.watermark, SyncState.lease_owner, SyncState.updated_at).where(
                SyncState.cm_id == account.cm_id, SyncState.stream == "orders"
            )
        ).first()
    watermark = state.watermark if state else None
    progress = state.updated_at if state and state.lease_owner else None
    outcome = last.outcome if last else None
    limit = stale_after(account.interval)
    fresh = max(filter(None, (last_success, progress)), default=None)
    if last is not None and last.outcome == "failed":
        ago = int((now - last.finished_at).total_seconds())
        reason = f"last {last.kind} failed {ago}s ago: {last.error or 'no message'}"
        return AccountHealth(account.label, False, reason, last_success, outcome, watermark)
    if fresh is None:
        if now - started <= limit:
            return AccountHealth(account.label, True, "starting: no run has finished yet", None, outcome, watermark)
        reason = f"no successful run in the {int(limit.total_seconds())}s since the daemon started"
        return AccountHealth(account.label, False, reason, None, outcome, watermark)
    if now - fresh > limit:
        reason = f"no successful run for {int((now - fresh).total_seconds())}s (limit {int(limit.total_seconds())}s)"
        return AccountHealth(account.label, False, reason, last_success, outcome, watermark)
    return AccountHealth(account.label, True, "ok", last_success, outcome, watermark)


def health(accounts: Iterable[Watched], now: datetime, started: datetime) -> tuple[bool, dict[str, Any]]:
    """`/healthz`: (healthy, JSON body) over every account; a database that cannot be read is unhealthy."""
    report: dict[str, Any] = {}
    reasons = []
    for account in accounts:
        try:
            state = account_health(account, now, started)
        except DBAPIError as exc:
            problem = database_problem(account.engine, exc)
            report[account.label] = {"ok": False, "reason": problem}
            reasons.append(f"{account.label}: {problem}")
            continue
        report[account.label] = state.as_json()
        if not state.ok:
            reasons.append(f"{account.label}: {state.reason}")
    ok = not reasons
    return ok, {"status": "ok" if ok else "unhealthy", "reason": "; ".join(reasons) or "ok", "accounts": report}


class DatabaseCollector(Collector):
    """Freshness gauges read from the database at each scrape."""

    def __init__(self, accounts: Sequence[Watched], clock: Callable[[], datetime], started: datetime) -> None:
        self.accounts = accounts
        self.clock = clock
        self.started = started

    def collect(self) -> Iterable[GaugeMetricFamily]:
        now = self.clock()
        since = GaugeMetricFamily(
            "kapture_sync_seconds_since_last_success",
            "Seconds since the account's last successful run (any process)",
            labels=["account"],
        )
        lag = GaugeMetricFamily(
            "kapture_sync_watermark_lag_seconds",
            "Seconds between now and the greatest lastModificationTime stored",
            labels=["account"],
        )
        healthy = GaugeMetricFamily(
            "kapture_sync_healthy", "1 when /healthz counts the account healthy", labels=["account"]
        )
        up = GaugeMetricFamily(
            "kapture_sync_database_up", "1 when the database answered this scrape", labels=["account"]
        )
        for account in self.accounts:
            try:
                state = account_health(account, now, self.started)
            except DBAPIError:
                up.add_metric([account.label], 0)
                healthy.add_metric([account.label], 0)
                continue
            up.add_metric([account.label], 1)
            healthy.add_metric([account.label], 1 if state.ok else 0)
            if state.last_success is not None:
                since.add_metric([account.label], (now - state.last_success).total_seconds())
            if state.watermark is not None:
                lag.add_metric([account.label], (now - state.watermark).total_seconds())
        yield from (since, lag, healthy, up)


class ObservationServer:
    """`GET /metrics` and `GET /healthz` on a port, in threads of its own."""

    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, check: Callable[[], tuple[bool, dict[str, Any]]]
    ) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    try:
                        ok, body = check()
                    except Exception as exc:  # a health check must answer, whatever broke
                        ok, body = False, {"status": "unhealthy", "reason": f"{type(exc).__name__}: {exc}"}
                    self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
                else:
                    self._send(404, b'{"reason": "not found: try /healthz or /metrics"}', "application/json")

            def _send(self, status: int, payload: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass  # scrapes every few seconds would drown the log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="kapture-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
