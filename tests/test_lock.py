"""The account claim: the holder's death frees it at once, a live holder keeps it, one racer wins.

Every test runs on a SQLite file (flock beside it) and on PostgreSQL (a session advisory lock).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, select, text, update

from sync.db import ensure_schema, make_engine, writer
from sync.errors import LeaseHeld
from sync.lock import AccountLock, advisory_key, lock_file
from sync.models import SyncRun, SyncState
from sync.runs import backfill
from sync.state import Account, acquire_lease, renew_lease
from tests.conftest import settings_for
from tests.helpers import assert_equals_truth, runs

ACCOUNT = Account(1000298)
FIRST = (date.today() - timedelta(days=25)).isoformat()
OTHER_HOST = "another-machine"

# `python -m sync` on a machine with another name: proves no take-over is based on host or pid.
ELSEWHERE = (
    "import runpy, socket, sys; name = sys.argv.pop(1); socket.gethostname = lambda: name; "
    "runpy.run_module('sync', run_name='__main__', alter_sys=True)"
)


def _cli_backfill(url: str, database_url: str, hostname: str | None = None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPTURE_")}
    env.update(
        {
            "KAPTURE_BASE_URL": url,
            "KAPTURE_USERNAME": "demo",
            "KAPTURE_PASSWORD": "demo",
            "KAPTURE_CM_ID": str(ACCOUNT.cm_id),
            "KAPTURE_SYNC_DATABASE_URL": database_url,
            "KAPTURE_PAGE_SIZE": "40",
            "KAPTURE_SYNC_CONCURRENCY": "1",  # one window at a time: the holder holds the account for seconds
        }
    )
    command = [sys.executable, "-m", "sync"] if hostname is None else [sys.executable, "-c", ELSEWHERE, hostname]
    return subprocess.Popen(
        [*command, "backfill", "--from", FIRST], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _lease_owner(engine: Engine) -> str | None:
    try:
        with engine.connect() as conn:
            return conn.execute(select(SyncState.lease_owner)).scalar()
    except Exception:  # the holder may still be creating the schema
        return None


def _wait_until_holding(engine: Engine, holder: subprocess.Popen[str]) -> str:
    """The holder's lease record, once it is mid-run: its run row has committed pages."""
    busy = select(SyncRun.id).where(SyncRun.outcome == "running", SyncRun.pages > 0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert holder.poll() is None, f"the holder ended early: {holder.communicate()[1]}"
        owner = _lease_owner(engine)
        if owner and owner.split(":")[1] == str(holder.pid):
            with engine.connect() as conn:
                if conn.execute(busy).first():
                    return owner
        time.sleep(0.02)
    raise AssertionError("the holder never took the account")


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0]


@pytest.fixture
def slow_emulator(start_emulator):
    emu, serving = start_emulator(orders=2400, days=20, seed=5)
    emu.faults.latency_ms = 40
    return emu, serving


@pytest.fixture
def db(database_url: str) -> Iterator[Engine]:
    """An engine on an empty database: the CLI under test creates the schema itself."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


def test_a_holder_killed_into_a_zombie_is_replaced_at_once(slow_emulator, db: Engine, database_url):
    emu, serving = slow_emulator
    victim = _cli_backfill(serving.url, database_url)
    try:
        _wait_until_holding(db, victim)
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _state(victim.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(victim.pid) == "Z", "the killed holder should linger unreaped"
        os.kill(victim.pid, 0)  # what the old pid check saw: a zombie still "exists"

        emu.faults.latency_ms = 0
        survivor = _cli_backfill(serving.url, database_url)
        _, err = survivor.communicate(timeout=120)
        assert survivor.returncode == 0, err
        assert _state(victim.pid) == "Z", "the survivor ran while the holder was still an unreaped zombie"
    finally:
        victim.kill()
        victim.communicate(timeout=10)  # reap
    assert_equals_truth(db, emu.store.truth())
    killed, resumed = runs(db)
    assert (killed.outcome, resumed.outcome) == ("interrupted", "success")
    assert _lease_owner(db) is None


@pytest.mark.parametrize("hostname", [None, OTHER_HOST], ids=["same-host", "other-host"])
def test_a_live_holder_is_refused_to_every_other_process(slow_emulator, db: Engine, database_url, hostname):
    emu, serving = slow_emulator
    holder = _cli_backfill(serving.url, database_url)
    try:
        owner = _wait_until_holding(db, holder)
        second = _cli_backfill(serving.url, database_url, hostname=hostname)
        _, err = second.communicate(timeout=60)
        assert holder.poll() is None, "the holder must still be running for this to prove anything"
    finally:
        holder.kill()
        holder.communicate(timeout=10)
    assert second.returncode == 8, err
    [line] = err.strip().splitlines()
    host_pid = owner.rsplit(":", 1)[0]
    assert line.startswith(f"kapture-sync: account {ACCOUNT.cm_id} is being synced by another process ({host_pid})")
    refused = [r for r in runs(db) if r.outcome == "refused"]
    assert len(refused) == 1 and host_pid in refused[0].error


def test_a_stale_record_naming_a_dead_local_process_does_not_free_a_held_account(engine: Engine):
    """Whatever the record says, only the lock decides: no pid or host guesses."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = f"{socket.gethostname()}:{dead.stdout.strip()}:dd"
    with AccountLock(engine, ACCOUNT):
        acquire_lease(engine, ACCOUNT, owner, timedelta(hours=1), datetime.now(UTC))
        with pytest.raises(LeaseHeld, match=f"another process \\({socket.gethostname()}:{dead.stdout.strip()}\\)"):
            AccountLock(engine, ACCOUNT).acquire()
    with AccountLock(engine, ACCOUNT):  # and a record left behind by a holder that is gone does not block
        pass


def _race(engine: Engine, racers: int) -> list[AccountLock]:
    """`racers` threads try to take the account at the same instant; the winners' locks are returned."""
    barrier = threading.Barrier(racers)
    won: list[AccountLock] = []

    def contend() -> None:
        lock = AccountLock(engine, ACCOUNT)
        barrier.wait()
        try:
            lock.acquire()
            won.append(lock)
        except LeaseHeld:
            pass

    threads = [threading.Thread(target=contend) for _ in range(racers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return won


def test_of_racers_for_a_free_account_exactly_one_wins_every_round(engine: Engine):
    for _ in range(25):
        won = _race(engine, racers=6)
        assert len(won) == 1
        won[0].release()


def test_a_released_claim_is_free_and_leaves_nothing_locked_behind(engine: Engine):
    lock = AccountLock(engine, ACCOUNT)
    lock.acquire()
    with pytest.raises(LeaseHeld):
        AccountLock(engine, ACCOUNT).acquire()
    lock.release()
    lock.release()  # idempotent
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:  # no pooled session still holds the key
            held = conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                )
            ).scalar()
        assert held == 0
    else:
        assert lock.path is not None and lock.path.exists()  # kept: unlinking it would let two runs lock two files
    with AccountLock(engine, ACCOUNT), pytest.raises(LeaseHeld):
        AccountLock(engine, Account(ACCOUNT.cm_id)).acquire()
    with AccountLock(engine, ACCOUNT), AccountLock(engine, Account(ACCOUNT.cm_id, "other-stream")):
        pass  # another stream, or another account, is a separate claim


def test_the_lock_file_sits_beside_a_sqlite_database(tmp_path: Path):
    on_disk = make_engine(f"sqlite:///{tmp_path / 'k.db'}")
    assert lock_file(on_disk, ACCOUNT) == tmp_path / "k.db.1000298.orders.lock"
    in_memory = make_engine("sqlite:///:memory:")
    assert lock_file(in_memory, ACCOUNT) is None
    with AccountLock(in_memory, ACCOUNT):  # nothing outside this process can see it: nothing to lock
        pass
    assert advisory_key(ACCOUNT) == advisory_key(Account(1000298, "orders")) != advisory_key(Account(1000299))
    assert -(2**63) <= advisory_key(ACCOUNT) < 2**63


def _terminate_lock_session(database_url: str) -> None:
    """What a server restart or `pg_terminate_backend` does to the run's lock connection."""
    unsigned = advisory_key(ACCOUNT) & 0xFFFF_FFFF_FFFF_FFFF
    with psycopg.connect(database_url, autocommit=True) as admin:
        [pid] = admin.execute(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND classid::bigint = %s "
            "AND objid::bigint = %s AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            (unsigned >> 32, unsigned & 0xFFFF_FFFF),
        ).fetchone()
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


def _clear_lease_record(engine: Engine) -> None:
    """What a successor's unconditional write (or an operator) does to this run's lease record."""
    with writer(engine).begin() as conn:
        conn.execute(update(SyncState).values(lease_owner="elsewhere:1:ff"))


@pytest.mark.parametrize("how", ["lock-session-ended", "record-taken"])
def test_a_claim_lost_mid_run_stops_the_run_before_its_next_page(emulator, engine: Engine, database_url, connect, how):
    if how == "lock-session-ended" and engine.dialect.name != "postgresql":
        pytest.skip("a SQLite claim is a descriptor of this process: it cannot end while the run lives")
    emu, serving = emulator
    settings = settings_for(serving.url, database_url)
    seen: dict[str, int] = {}

    def lose_the_claim(task: object, orders: int) -> None:
        if seen:
            return
        if how == "lock-session-ended":
            _terminate_lock_session(database_url)
        else:
            _clear_lease_record(engine)
        [run] = runs(engine)
        seen.update(pages=run.pages, windows=run.windows)

    with pytest.raises(LeaseHeld, match="stopping"):
        backfill(engine, connect(settings), settings, date.today() - timedelta(days=45), on_window=lose_the_claim)
    [run] = runs(engine)
    assert (run.pages, run.windows) == (seen["pages"], seen["windows"]), "a page committed after the claim was lost"
    assert run.outcome == "failed" and "stopping" in run.error


def test_renewal_checks_the_lock_inside_the_page_transaction(engine: Engine):
    now = datetime.now(UTC)
    with AccountLock(engine, ACCOUNT):
        acquire_lease(engine, ACCOUNT, "me:1:aa", timedelta(minutes=10), now)
        with writer(engine).begin() as conn:
            renew_lease(conn, ACCOUNT, "me:1:aa", now + timedelta(minutes=10))
    if engine.dialect.name == "postgresql":  # the record is still ours, but no one holds the lock
        with pytest.raises(LeaseHeld, match="lost its claim"), writer(engine).begin() as conn:
            renew_lease(conn, ACCOUNT, "me:1:aa", now + timedelta(minutes=10))


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///file:{data}/k.db?uri=true",
        "sqlite:///file:{data}/k.db?mode=rwc&uri=yes",
        "sqlite:///file://{data}/k.db?uri=1",
        "sqlite:///{data}/k.db?mode=memory",  # without uri=true SQLite's options are ignored: a file
    ],
)
def test_a_sqlite_uri_url_makes_no_file_colon_folder_and_locks_beside_its_file(url, tmp_path: Path, monkeypatch):
    """`sqlite:///file:<path>?uri=true` names <path>: runs started from different folders must take
    the same claim, and nothing named `file:` may appear in the folder a run was started from."""
    started_in = tmp_path / "cwd"
    started_in.mkdir()
    monkeypatch.chdir(started_in)
    engine = make_engine(url.format(data=tmp_path / "data"))
    ensure_schema(engine)
    engine.dispose()
    assert (tmp_path / "data" / "k.db").is_file()
    assert list(started_in.iterdir()) == []
    assert lock_file(engine, ACCOUNT) == tmp_path / "data" / "k.db.1000298.orders.lock"


def test_an_in_memory_sqlite_uri_has_no_lock_file():
    assert lock_file(make_engine("sqlite:///file:memdb?mode=memory&uri=true"), ACCOUNT) is None
    assert lock_file(make_engine("sqlite:///file::memory:?cache=shared&uri=true"), ACCOUNT) is None
