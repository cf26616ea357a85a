"""`kapture-sync daemon` as a real subprocess against the emulator, on SQLite and PostgreSQL.

Each test starts the daemon with a one-second interval and watches what it writes to the
database, its logs, `/healthz` and `/metrics`.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from sync import daemon as daemon_module
from sync.client import make_client, make_http_client
from sync.commit import RunTotals
from sync.db import make_engine
from sync.errors import LeaseHeld
from sync.models import SyncRun, SyncState
from sync.runs import RunResult
from sync.settings import Settings
from tests.conftest import settings_for
from tests.daemon_helpers import (
    PASSWORD,
    Daemon,
    account_env,
    all_runs,
    assert_no_overlap,
    base_env,
    free_port,
    wait_for,
)
from tests.helpers import assert_equals_truth, truth_differences

OTHER_CM_ID = 2000001


@pytest.fixture
def db(database_url):
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def in_step(engine, emu, cm_id: int = 1000298) -> bool:
    return not truth_differences(engine, emu.store.truth(), cm_id=cm_id)


def metrics(daemon: Daemon) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, text = daemon.get("/metrics")
    assert status == 200, text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def health(daemon: Daemon) -> tuple[int, dict]:
    status, body = daemon.get("/healthz")
    return status, json.loads(body) if body else {}


def test_daemon_syncs_repeatedly_rides_out_an_outage_reports_it_and_stops_cleanly(
    start_emulator, db, database_url, tmp_path: Path
):
    port = free_port()  # served again after the outage: not a port another process may take meanwhile
    emu, serving = start_emulator(port=port, orders=300, days=5, seed=21, password=PASSWORD)
    env = account_env(serving.url, database_url, KAPTURE_SYNC_METRICS_PORT=free_port())
    with Daemon(env, tmp_path) as daemon:
        wait_for(lambda: in_step(db, emu), 30, "the first sync", daemon)
        wait_for(lambda: sum(r.outcome == "success" for r in all_runs(db)) >= 2, 15, "a second run", daemon)

        # New and edited orders, old ones included, are picked up by the following runs.
        emu.store.create(7)
        emu.store.edit(n=5)
        emu.store.edit(n=2, old=True)
        wait_for(lambda: in_step(db, emu), 20, "the new and edited orders", daemon)
        # the rows are committed before the run that wrote them finishes and is counted
        inserted = dict(account="1000298", kind="sync", change="inserted")
        counted = lambda: (sample(metrics(daemon), "kapture_sync_rows_total", **inserted) or 0) >= 307  # noqa: E731
        wait_for(counted, 20, "the count", daemon)
        assert health(daemon)[0] == 200
        samples = metrics(daemon)
        assert sample(samples, "kapture_sync_runs_total", account="1000298", kind="sync", outcome="success") >= 2
        assert sample(samples, "kapture_sync_orders_fetched_total", account="1000298", kind="sync") >= 300
        assert sample(samples, "kapture_sync_rows_total", account="1000298", kind="sync", change="inserted") >= 307
        assert sample(samples, "kapture_sync_rows_total", account="1000298", kind="sync", change="updated") >= 7
        assert sample(samples, "kapture_sync_rows_total", account="1000298", kind="sync", change="unchanged") > 0
        assert sample(samples, "kapture_sync_seconds_since_last_success", account="1000298") < 10
        assert sample(samples, "kapture_sync_watermark_lag_seconds", account="1000298") is not None
        assert sample(samples, "kapture_sync_run_duration_seconds_count", account="1000298", kind="sync") >= 2

        # Kapture goes away: runs fail and are recorded, /healthz says why, the daemon stays up.
        serving.stop()
        status, body = wait_for(
            lambda: (h := health(daemon))[0] == 503 and h, 30, "/healthz to report the outage", daemon
        )
        assert "last sync failed" in body["reason"] and "Kapture unreachable" in body["reason"], body
        assert body["accounts"]["1000298"]["ok"] is False
        failed = [r for r in all_runs(db) if r.outcome == "failed"]
        assert failed and all(r.finished_at and "unreachable" in r.error for r in failed)
        wait_for(
            lambda: sample(metrics(daemon), "kapture_sync_consecutive_failures", account="1000298") >= 2,
            30,
            "a second failure (backing off)",
            daemon,
        )
        emu.store.create(3)  # arrive while the daemon cannot see them

        # ... and comes back: the daemon recovers by itself.
        serving = emu.serve(host="127.0.0.1", port=port)
        wait_for(lambda: in_step(db, emu), 30, "recovery after the outage", daemon)
        wait_for(lambda: health(daemon)[0] == 200, 15, "/healthz back to 200", daemon)
        # /healthz reads the run's row, committed inside the run; the gauge is set when the run returns.
        wait_for(
            lambda: sample(metrics(daemon), "kapture_sync_consecutive_failures", account="1000298") == 0,
            10,
            "the failure count back to 0",
            daemon,
        )
        samples = metrics(daemon)
        assert sample(samples, "kapture_sync_runs_total", account="1000298", kind="sync", outcome="failed") >= 2

        code, took = daemon.terminate()
        assert code == 0, daemon.output()
        assert took < 10
    serving.stop()

    assert_equals_truth(db, emu.store.truth())
    assert_no_overlap(db)
    assert not [r for r in all_runs(db) if r.outcome in ("running", "refused")]
    events = daemon.events()  # every line is JSON
    in_runs = [e for e in events if "run_id" in e]
    assert in_runs and all(e.get("account") == "1000298" for e in in_runs)
    assert all("run_id" in e for e in events if e["event"] in ("run.start", "run.finish", "kapture.retry"))
    assert any(e["event"] == "account.backoff" for e in events)
    assert any(e["event"] == "account.recovered" for e in events)
    assert PASSWORD not in daemon.output()


def test_sigterm_during_a_slow_request_exits_0_within_10s_and_records_the_run_interrupted(
    start_emulator, db, database_url, tmp_path: Path
):
    emu, serving = start_emulator(orders=1200, days=20, seed=22, password=PASSWORD)
    emu.faults.latency_ms = 30
    emu.faults.slow_seconds = 60  # a request held far longer than the 10 s allowed to stop
    env = account_env(serving.url, database_url, KAPTURE_PAGE_SIZE=20, KAPTURE_TIMEOUT=120, KAPTURE_SYNC_INTERVAL="1h")
    with Daemon(env, tmp_path) as daemon:
        busy = select(SyncRun.id).where(SyncRun.outcome == "running", SyncRun.pages >= 3)
        wait_for(lambda: db.connect().execute(busy).first(), 30, "a run with committed pages", daemon)
        emu.faults.push("timeout", 1)
        wait_for(lambda: emu.faults.injected().get("timeout"), 10, "the daemon to be inside the slow request", daemon)
        code, took = daemon.terminate(timeout=20)
    assert code == 0, daemon.output()
    assert took < 10, f"took {took:.1f}s to stop"
    [run] = all_runs(db)
    assert run.outcome == "interrupted" and run.finished_at is not None and run.pages >= 3, run
    with db.connect() as conn:
        assert conn.execute(select(SyncState.lease_owner)).scalar() is None

    # The account is free at once, and the next run completes what the interrupted one began.
    emu.faults.latency_ms = 0
    emu.faults.clear()
    done = subprocess.run(
        [sys.executable, "-m", "sync", "sync"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert_equals_truth(db, emu.store.truth())
    assert_no_overlap(db)
    assert PASSWORD not in daemon.output() + done.stdout + done.stderr


def test_a_manual_backfill_during_a_daemon_run_exits_8_naming_the_daemon_and_no_runs_overlap(
    start_emulator, tmp_path: Path
):
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    engine = make_engine(database_url)
    emu, serving = start_emulator(orders=1200, days=20, seed=23, password=PASSWORD)
    # One request at a time, 100 ms each: the daemon's run lasts seconds, and the backfill below
    # (a new Python process, slow to start on a busy machine) asks for the account well within it.
    emu.faults.latency_ms = 100
    env = account_env(serving.url, database_url, KAPTURE_PAGE_SIZE=20, KAPTURE_SYNC_CONCURRENCY=1)
    backfill = [sys.executable, "-m", "sync", "backfill", "--from", (date.today() - timedelta(days=20)).isoformat()]
    with Daemon(env, tmp_path) as daemon:
        busy = select(SyncRun.id).where(SyncRun.outcome == "running", SyncRun.pages >= 1)
        wait_for(lambda: engine.connect().execute(busy).first(), 30, "a daemon run in progress", daemon)
        refused = subprocess.run(backfill, env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert daemon.proc.poll() is None
        assert refused.returncode == 8, refused.stderr
        [line] = refused.stderr.strip().splitlines()
        assert f"is being synced by another process ({socket.gethostname()}:{daemon.pid})" in line

        # A backfill that does get the account makes the daemon skip its turns until it is done.
        emu.faults.latency_ms = 5
        outcomes = []
        deadline = time.monotonic() + 60  # it lands in a gap between 1 s runs: about one try in two
        while 0 not in outcomes and time.monotonic() < deadline:
            done = subprocess.run(backfill, env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
            outcomes.append(done.returncode)
            assert done.returncode in (0, 8), done.stderr
        assert 0 in outcomes, "the backfill never found the account free between daemon runs"
        time.sleep(1.5)
        code, _ = daemon.terminate()
        assert code == 0
    assert_no_overlap(engine)
    daemon_refusals = [r for r in all_runs(engine) if r.outcome == "refused" and r.kind == "sync"]
    assert not daemon_refusals, "the daemon leaves no refused rows: it simply tries again"
    assert_equals_truth(engine, emu.store.truth())
    engine.dispose()


def _two_account_config(folder: Path, first_url: str, second_url: str, database_url: str) -> Path:
    (folder / "beta-secrets.toml").write_text(f'username = "demo"\npassword = "{PASSWORD}-beta"\n')
    config = folder / "accounts.toml"
    config.write_text(
        f"""
[sync]
database_url = "{database_url}"
interval = "1s"

[[accounts]]
name = "acme"
base_url = "{first_url}"
cm_id = 1000298
username = "demo"
password_env = "ACME_KAPTURE_PASSWORD"

[[accounts]]
name = "beta"
base_url = "{second_url}"
cm_id = {OTHER_CM_ID}
secrets_file = "beta-secrets.toml"
timezone = "UTC"
page_size = 50
"""
    )
    return config


def _quick(**extra: object) -> dict[str, str]:
    return base_env(
        KAPTURE_MAX_ATTEMPTS=2,
        KAPTURE_BACKOFF_BASE=0.05,
        KAPTURE_BACKOFF_MAX=0.2,
        KAPTURE_RETRY_MAX_SECONDS=3,
        KAPTURE_TIMEOUT=3,
        KAPTURE_SYNC_FAILURE_BACKOFF_MAX="2s",
        ACME_KAPTURE_PASSWORD=PASSWORD,
        **extra,
    )


def test_two_accounts_in_one_config_are_both_synced_and_one_failing_never_stops_the_other(
    start_emulator, tmp_path: Path
):
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    engine = make_engine(database_url)
    acme, acme_serving = start_emulator(orders=200, days=4, seed=24, password=PASSWORD)
    beta, beta_serving = start_emulator(
        orders=150, days=4, seed=25, cm_id=OTHER_CM_ID, password=f"{PASSWORD}-beta", timezone="UTC"
    )
    config = _two_account_config(tmp_path, acme_serving.url, beta_serving.url, database_url)
    env = _quick(KAPTURE_SYNC_METRICS_PORT=free_port(), KAPTURE_CM_ID="777", KAPTURE_BASE_URL="http://ignored:1")
    with Daemon(env, tmp_path, args=("--config", str(config))) as daemon:
        wait_for(lambda: in_step(engine, acme) and in_step(engine, beta, OTHER_CM_ID), 30, "both accounts", daemon)
        # Rows commit before their run ends: wait for beta's run to be recorded a success before taking it down.
        recorded = lambda outcome: any(r.cm_id == OTHER_CM_ID and r.outcome == outcome for r in all_runs(engine))  # noqa: E731
        wait_for(lambda: recorded("success"), 30, "a successful beta run recorded", daemon)
        beta_serving.stop()
        acme.store.create(4)
        beta.store.create(4)
        wait_for(lambda: in_step(engine, acme), 20, "acme while beta is down", daemon)
        status, body = wait_for(lambda: (h := health(daemon))[0] == 503 and h, 20, "503 naming beta", daemon)
        assert body["accounts"]["beta"]["ok"] is False and body["accounts"]["acme"]["ok"] is True, body
        assert "beta:" in body["reason"] and "acme:" not in body["reason"]
        wait_for(lambda: recorded("failed"), 30, "a failed beta run recorded", daemon)
        code, _ = daemon.terminate()
        assert code == 0
    assert_equals_truth(engine, acme.store.truth())
    kinds = {(r.cm_id, r.outcome) for r in all_runs(engine)}
    assert (OTHER_CM_ID, "success") in kinds and (OTHER_CM_ID, "failed") in kinds and (777, "success") not in kinds
    events = daemon.events()
    assert {e.get("account") for e in events if "run_id" in e} == {"acme", "beta"}
    assert PASSWORD not in daemon.output()
    engine.dispose()


def test_two_daemons_on_one_postgresql_share_the_accounts_and_never_sync_one_at_once(
    start_emulator, postgres_url, tmp_path: Path
):
    from tests.conftest import reset_postgres

    reset_postgres(postgres_url)
    engine = make_engine(postgres_url)
    acme, acme_serving = start_emulator(orders=400, days=6, seed=26, password=PASSWORD)
    beta, beta_serving = start_emulator(
        orders=300, days=6, seed=27, cm_id=OTHER_CM_ID, password=f"{PASSWORD}-beta", timezone="UTC"
    )
    acme.faults.latency_ms = beta.faults.latency_ms = 15  # runs long enough to collide
    config = _two_account_config(tmp_path, acme_serving.url, beta_serving.url, postgres_url)
    daemons = []
    for n in (1, 2):  # the second starts a little later: two turns a second between them
        daemons.append(
            Daemon(_quick(), tmp_path, name=f"daemon{n}", args=("--config", str(config), "--set", "page_size=40"))
        )
        time.sleep(0.4)
    first, second = daemons

    def started(daemon: Daemon, account: str) -> int:
        return sum(e["event"] == "run.start" and e.get("account") == account for e in daemon.events())

    try:
        wait_for(lambda: sum(r.outcome == "success" for r in all_runs(engine)) >= 4, 30, "several runs", first)
        wait_for(
            lambda: any(e["event"] == "run.busy" for d in daemons for e in d.events()),
            30,
            "the daemons to meet on an account",
            second,
        )
        # The first goes away: the second, which stood aside while it held an account, takes over.
        before = {account: started(second, account) for account in ("acme", "beta")}
        code, took = first.terminate()
        assert code == 0 and took < 10, first.output()
        wait_for(
            lambda: all(started(second, a) >= before[a] + 2 for a in before), 30, "the second to take over", second
        )
        code, took = second.terminate()
        assert code == 0 and took < 10, second.output()
    finally:
        for daemon in daemons:
            daemon.kill()
    assert_no_overlap(engine)
    assert not [r for r in all_runs(engine) if r.outcome in ("running", "refused", "failed")]
    assert in_step(engine, acme) and in_step(engine, beta, OTHER_CM_ID)
    # Both daemons are gone and their locks with them: a manual run takes the account at once.
    env = base_env(
        KAPTURE_BASE_URL=acme_serving.url,
        KAPTURE_USERNAME="demo",
        KAPTURE_PASSWORD=PASSWORD,
        KAPTURE_CM_ID=1000298,
        KAPTURE_SYNC_DATABASE_URL=postgres_url,
    )
    done = subprocess.run(
        [sys.executable, "-m", "sync", "sync"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    engine.dispose()


def test_a_metrics_port_in_use_is_one_bad_setting_line_and_exit_2(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = account_env(
            "http://127.0.0.1:9",
            f"sqlite:///{tmp_path / 'k.db'}",
            KAPTURE_SYNC_METRICS_PORT=port,
            KAPTURE_SYNC_METRICS_HOST="127.0.0.1",
        )
        done = subprocess.run(
            [sys.executable, "-m", "sync", "daemon"], env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path
        )
    assert done.returncode == 2, done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last == f"kapture-sync: bad setting: KAPTURE_SYNC_METRICS_PORT {port}: address already in use", last
    assert "unexpected" not in done.stderr


def _one_account(settings: Settings) -> tuple[daemon_module.Daemon, daemon_module.Account]:
    """A daemon, not started, holding one account (the scheduler stays off: jobs are called directly)."""
    daemon = daemon_module.Daemon([settings])
    http = make_http_client(settings)
    account = daemon_module.Account(settings, make_engine(settings.database_url), http, make_client(settings, http))
    daemon.accounts.append(account)
    daemon.metrics.account(account.label, ["sync"])
    return daemon, account


def test_a_claim_lost_after_the_run_began_counts_as_a_failure_and_backs_off(monkeypatch, tmp_path: Path):
    daemon, account = _one_account(settings_for("http://127.0.0.1:9", f"sqlite:///{tmp_path / 'k.db'}"))

    def runs_of(outcome: str) -> float | None:
        labels = {"account": account.label, "kind": "sync", "outcome": outcome}
        return daemon.metrics.registry.get_sample_value("kapture_sync_runs_total", labels)

    def claim_lost(engine, client, settings, *, on_finish, **hooks):  # as runs.execute does: recorded failed
        on_finish(RunResult(1, "sync", "failed", RunTotals(), 0.5, 3))
        raise LeaseHeld("the account's claim was lost to another process")

    def held_before(engine, client, settings, **hooks):  # the lock was never ours: no run began
        raise LeaseHeld("account 1000298 is busy: held by another process")

    try:
        monkeypatch.setattr(daemon_module.runs, "sync", claim_lost)
        daemon.run(account, "sync")
        assert (runs_of("failed"), runs_of("busy"), account.failures) == (1, 0, 1)

        monkeypatch.setattr(daemon_module.runs, "sync", held_before)
        daemon.run(account, "sync")
        assert (runs_of("failed"), runs_of("busy"), account.failures) == (1, 1, 1)
    finally:
        account.http.close()
        account.engine.dispose()


def test_a_reconcile_falling_due_during_a_sync_waits_for_it_then_runs(start_emulator, database_url, tmp_path: Path):
    """The cron's minute cannot be waited for here: the daemon runs in-process with its real scheduler,
    the emulator made slow, and the reconcile job is made due while the account's first sync runs."""
    emu, serving = start_emulator(orders=300, days=5, seed=26)
    emu.faults.latency_ms = 150
    settings = settings_for(serving.url, database_url, page_size=20, interval="1s")
    engine = make_engine(database_url)
    daemon = daemon_module.Daemon([settings])

    def running_sync() -> int | None:
        with engine.connect() as conn:
            return conn.execute(select(SyncRun.id).where(SyncRun.outcome == "running", SyncRun.kind == "sync")).scalar()

    def reconciled() -> bool:
        return any(r.kind == "reconcile" and r.outcome != "running" for r in all_runs(engine))

    try:
        daemon.start()
        sync_id = wait_for(running_sync, 20, "the first sync under way")
        assert daemon.scheduler is not None
        daemon.scheduler.modify_job(f"reconcile:{settings.label}", next_run_time=datetime.now(UTC))  # due now
        job = f"reconcile:{settings.label}"
        wait_for(  # dispatched: the job's next turn is the cron's again
            lambda: daemon.scheduler.get_job(job).next_run_time > datetime.now(UTC) + timedelta(minutes=1),
            5,
            "the reconcile's turn to be dispatched",
        )
        assert running_sync() == sync_id, "the sync ended before the reconcile fell due: nothing was tested"
        emu.faults.latency_ms = 0  # the rest may be quick
        wait_for(reconciled, 25, "the reconcile")
    finally:
        daemon.shutdown()
    every = all_runs(engine)
    [first] = [r for r in every if r.id == sync_id]
    [reconcile] = [r for r in every if r.kind == "reconcile"]
    assert first.outcome == "success" and reconcile.outcome == "success", [(r.kind, r.outcome, r.error) for r in every]
    assert reconcile.started_at >= first.finished_at, "the reconcile waited for the sync"
    assert_no_overlap(engine)
    assert not [r for r in every if r.outcome in ("failed", "refused")], every
    assert_equals_truth(engine, emu.store.truth())
    engine.dispose()


def _prepare_workers(parent: int) -> list[int]:
    """Pids of `python -m sync.worker` processes whose parent is `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent and b"sync.worker" in command:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def test_the_daemon_maps_big_pages_in_a_worker_and_sigterm_leaves_none_behind(
    start_emulator, db, database_url, tmp_path
):
    emu, serving = start_emulator(orders=2400, days=3, seed=27, password=PASSWORD)
    env = account_env(serving.url, database_url, KAPTURE_SYNC_METRICS_PORT=free_port())
    with Daemon(env, tmp_path) as daemon:
        wait_for(lambda: in_step(db, emu), 60, "the first sync, its pages mapped by the worker", daemon)
        emu.faults.latency_ms = 400  # keep the next run, and its worker, alive long enough to be seen
        emu.store.create(300)
        workers = wait_for(lambda: _prepare_workers(daemon.pid), 30, "a worker process of a run", daemon)
        code, seconds = daemon.terminate()
        assert code == 0 and seconds < 10
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in workers), "the worker outlived the daemon"
