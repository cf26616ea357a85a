"""`/healthz` judged from the database: every account's last run succeeded, recently enough."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sync.metrics import Watched, health, stale_after
from sync.state import Account, finish_run, start_run

ACME = Account(1000298)
NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
INTERVAL = timedelta(minutes=15)


def _run(engine, outcome: str, finished: datetime, kind: str = "sync", error: str | None = None) -> None:
    run_id = start_run(engine, ACME, kind, finished - timedelta(seconds=30), {})
    finish_run(engine, run_id, outcome, finished, error)


def _check(engine, started: datetime = NOW - timedelta(hours=5)):
    return health([Watched("acme", ACME.cm_id, INTERVAL, engine)], NOW, started)


def test_health_follows_the_last_run_of_every_account(engine):
    ok, body = _check(engine, started=NOW - timedelta(minutes=1))
    assert ok and "starting" in body["accounts"]["acme"]["reason"]
    ok, body = _check(engine)
    assert not ok and "no successful run" in body["reason"]

    _run(engine, "success", NOW - timedelta(minutes=10))
    assert _check(engine)[0]
    _run(engine, "interrupted", NOW - timedelta(minutes=5))  # a restart decides nothing
    assert _check(engine)[0]

    _run(engine, "failed", NOW - timedelta(minutes=2), error="Kapture unreachable after 6 attempts: HTTP 503")
    ok, body = _check(engine)
    assert not ok and body["status"] == "unhealthy"
    assert body["reason"] == "acme: last sync failed 120s ago: Kapture unreachable after 6 attempts: HTTP 503"

    _run(engine, "success", NOW - timedelta(minutes=1), kind="reconcile")
    assert _check(engine)[0]


def test_an_account_with_no_success_for_a_few_intervals_is_unhealthy(engine):
    _run(engine, "success", NOW - stale_after(INTERVAL) - timedelta(seconds=1))
    ok, body = _check(engine)
    assert not ok and "no successful run for" in body["accounts"]["acme"]["reason"]
    _run(engine, "success", NOW - stale_after(INTERVAL) + timedelta(seconds=1))
    assert _check(engine)[0]


def test_an_unreachable_database_is_unhealthy_with_its_reason(tmp_path):
    from sync.db import make_engine

    broken = make_engine("postgresql://nobody@127.0.0.1:1/none")
    ok, body = health([Watched("acme", 1, INTERVAL, broken)], NOW, NOW)
    assert not ok and "database unreachable" in body["reason"]
