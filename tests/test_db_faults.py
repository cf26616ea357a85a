"""Database faults (issue 11): the real CLI and daemon against real databases that fail under them.

- PostgreSQL restarted mid-run: a private throwaway cluster (`pg_createcluster`, on a free port,
  dropped at teardown), never the shared server on 5432;
- a connection killed by the server (`pg_terminate_backend`) mid-run, on the shared server;
- SQLite locked by an analyst's long write transaction (the run's wait is `?timeout=1` in the URL);
- SQLite's disk full: the CLI process gets a file-size limit (`RLIMIT_FSIZE`, SIGXFSZ ignored),
  so SQLite's writes fail with EFBIG, which it reports as "disk I/O error" (or "database or disk
  is full"), as a full disk does;
- SQLite's file read-only: `chattr +i` on the database file (as root, chmod would not stop writes).

Each run stops with one line and a non-zero exit (6), and the next run converges to Kapture's truth.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import text

from sync.db import make_engine
from tests.conftest import reset_postgres
from tests.daemon_helpers import Daemon, free_port, wait_for
from tests.daemon_helpers import account_env as daemon_env
from tests.helpers import assert_equals_truth, runs
from tests.test_cli import account_env, one_line

FIRST = (date.today() - timedelta(days=12)).isoformat()
SLOW = {"KAPTURE_PAGE_SIZE": "20"}  # with the emulator's latency, a run lasts long enough to hit mid-way


def cli(*args: str, env: dict[str, str], cwd: Path, fsize: int | None = None) -> subprocess.Popen[str]:
    def limit() -> None:
        if fsize is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG) instead
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    full = {k: v for k, v in os.environ.items() if not k.startswith("KAPTURE_")} | env
    return subprocess.Popen(
        [sys.executable, "-m", "sync", *args],
        env=full,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=limit,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 90) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def pages_committed(database_url: str) -> int:
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT coalesce(max(pages), 0) FROM sync_runs")).scalar() or 0)
    except Exception:
        return 0
    finally:
        engine.dispose()


def converges(emu, database_url: str, folder: Path) -> None:
    """The next run succeeds and the database equals Kapture's truth."""
    code, out, err = finish(cli("backfill", "--from", FIRST, env=account_env(emu[1].url, database_url), cwd=folder))
    assert code == 0, err
    engine = make_engine(database_url)
    try:
        assert_equals_truth(engine, emu[0].store.truth())
        assert runs(engine)[-1].outcome == "success"
    finally:
        engine.dispose()


@pytest.fixture
def slow_emulator(start_emulator):
    emu, serving = start_emulator(orders=400, days=12, seed=5)
    emu.faults.latency_ms = 15
    return emu, serving


# -- PostgreSQL ----------------------------------------------------------------------------------


def test_a_connection_killed_by_postgresql_mid_run_stops_with_one_line_and_the_next_run_converges(
    slow_emulator, postgres_url, tmp_path
):
    reset_postgres(postgres_url)
    _, serving = slow_emulator
    proc = cli("backfill", "--from", FIRST, env=account_env(serving.url, postgres_url, **SLOW), cwd=tmp_path)
    wait_for(lambda: pages_committed(postgres_url) >= 3, 60, "three committed pages")
    database = postgres_url.rsplit("/", 1)[1]
    with psycopg.connect(postgres_url, autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()[0]
    assert killed >= 1
    code, _, err = finish(proc)
    # Whichever connection notices first: the page's (exit 6) or the account lock's (exit 8, claim lost).
    # psycopg words the same kill "terminating connection", "server closed the connection" or "connection is lost".
    cause = "database unreachable" if code == 6 else "lost its claim"
    assert code in (6, 8) and cause in one_line(err), err
    converges(slow_emulator, postgres_url, tmp_path)
    engine = make_engine(postgres_url)
    try:
        first = runs(engine)[0]
        assert first.outcome == "failed" and cause in (first.error or ""), (first.outcome, first.error)
    finally:
        engine.dispose()


def _pg(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=60)


@pytest.fixture
def private_postgres() -> Iterator[tuple[str, str]]:
    """A throwaway PostgreSQL cluster of our own on a free port: restarting it disturbs nobody."""
    if not shutil.which("pg_createcluster"):
        pytest.skip("pg_createcluster is not installed")
    version = sorted(os.listdir("/usr/lib/postgresql"))[-1]
    name, port = f"kfault{os.getpid()}", free_port()
    _pg("pg_createcluster", version, name, "-p", str(port), "--", "--auth=trust")
    try:
        _pg("pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start")
        yield version, f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(["pg_dropcluster", "--stop", version, name], capture_output=True, timeout=60)


def test_postgresql_restarted_mid_run_stops_the_run_with_one_line_and_the_next_run_converges(
    slow_emulator, private_postgres, tmp_path
):
    version, url = private_postgres
    name = f"kfault{os.getpid()}"
    _, serving = slow_emulator
    proc = cli("backfill", "--from", FIRST, env=account_env(serving.url, url, **SLOW), cwd=tmp_path)
    wait_for(lambda: pages_committed(url) >= 3, 60, "three committed pages")
    _pg("pg_ctlcluster", "--skip-systemctl-redirect", version, name, "restart", "-m", "fast")
    code, _, err = finish(proc)
    assert code == 6, err
    assert "database" in one_line(err)
    converges(slow_emulator, url, tmp_path)


def test_the_daemon_survives_a_postgresql_restart_reports_it_on_healthz_and_recovers(
    start_emulator, private_postgres, tmp_path
):
    version, url = private_postgres
    name = f"kfault{os.getpid()}"
    emu, serving = start_emulator(orders=200, days=5, seed=8, password="pw-db-fault")
    env = daemon_env(serving.url, url, KAPTURE_SYNC_METRICS_PORT=free_port(), KAPTURE_PASSWORD="pw-db-fault")
    with Daemon(env, tmp_path) as daemon:
        wait_for(lambda: daemon.get("/healthz")[0] == 200, 30, "a healthy first sync", daemon)
        _pg("pg_ctlcluster", "--skip-systemctl-redirect", version, name, "stop", "-m", "fast")
        status, body = wait_for(lambda: (h := daemon.get("/healthz"))[0] == 503 and h, 20, "503 while down", daemon)
        assert "database" in body, body
        emu.store.create(5)
        time.sleep(2)  # a few of the daemon's turns fail against the stopped server
        _pg("pg_ctlcluster", "--skip-systemctl-redirect", version, name, "start")
        wait_for(lambda: daemon.get("/healthz")[0] == 200, 30, "/healthz back to 200", daemon)
        engine = make_engine(url)
        try:
            wait_for(lambda: _in_step(engine, emu), 30, "the orders created while the database was down", daemon)
        finally:
            engine.dispose()
        code, _ = daemon.terminate()
        assert code == 0, daemon.output()


def _in_step(engine, emu) -> bool:
    try:
        assert_equals_truth(engine, emu.store.truth())
    except AssertionError:
        return False
    return True


# -- SQLite --------------------------------------------------------------------------------------


def test_sqlite_locked_by_an_analysts_transaction_stops_with_one_line_and_the_next_run_converges(
    slow_emulator, tmp_path
):
    _, serving = slow_emulator
    path = tmp_path / "k.db"
    url = f"sqlite:///{path}?timeout=1"
    code, _, err = finish(cli("db", "upgrade", env=account_env(serving.url, url), cwd=tmp_path))
    assert code == 0, err
    analyst = sqlite3.connect(path, isolation_level=None)
    analyst.execute("BEGIN IMMEDIATE")  # an analyst's long write transaction holds the database
    analyst.execute("CREATE TABLE IF NOT EXISTS scratch (x)")
    try:
        code, _, err = finish(cli("backfill", "--from", FIRST, env=account_env(serving.url, url), cwd=tmp_path))
    finally:
        analyst.rollback()
        analyst.close()
    assert code == 6, err
    assert "database could not write" in one_line(err) and "database is locked" in one_line(err)
    # ... and one taken in the middle of a run.
    proc = cli("backfill", "--from", FIRST, env=account_env(serving.url, url, **SLOW), cwd=tmp_path)
    wait_for(lambda: pages_committed(url) >= 3, 60, "three committed pages")
    analyst = sqlite3.connect(path, isolation_level=None)
    analyst.execute("BEGIN IMMEDIATE")
    try:
        code, _, err = finish(proc)
    finally:
        analyst.rollback()
        analyst.close()
    assert code == 6, err
    assert "database could not write" in one_line(err) and "database is locked" in one_line(err)
    converges(slow_emulator, url, tmp_path)


def test_sqlite_disk_full_stops_with_one_line_and_the_next_run_converges(slow_emulator, tmp_path):
    _, serving = slow_emulator
    url = f"sqlite:///{tmp_path / 'k.db'}"
    env = account_env(serving.url, url, **SLOW)
    # The schema alone is ~0.5 MB in 16 KiB pages (sync.db.SQLITE_PAGE_SIZE); 2.4 MB ends the run
    # after about 6 of its 20 pages.
    code, _, err = finish(cli("backfill", "--from", FIRST, env=env, cwd=tmp_path, fsize=2_400_000))
    assert code == 6, err
    # RLIMIT_FSIZE reaches SQLite as EFBIG: "disk I/O error" or, on the main file, "database or disk is full".
    line = one_line(err)
    assert "database could not write" in line and ("disk is full" in line or "disk I/O error" in line), line
    assert pages_committed(url) >= 1, "the limit is meant to hit mid-run, after some pages"
    converges(slow_emulator, url, tmp_path)


def test_sqlite_read_only_file_stops_with_one_line_and_the_next_run_converges(slow_emulator, tmp_path):
    _, serving = slow_emulator
    path = tmp_path / "k.db"
    url = f"sqlite:///{path}"
    code, _, err = finish(cli("db", "upgrade", env=account_env(serving.url, url), cwd=tmp_path))
    assert code == 0, err
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not supported on this file system")
    try:
        code, _, err = finish(cli("backfill", "--from", FIRST, env=account_env(serving.url, url), cwd=tmp_path))
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    assert code == 6, err
    assert "readonly database" in one_line(err) or "unable to open" in one_line(err)
    converges(slow_emulator, url, tmp_path)
