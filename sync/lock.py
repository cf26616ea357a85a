"""The account claim: one run per account, released by the OS or the database when its holder dies.

A lease row alone cannot tell a dead holder from a live one: a SIGKILLed process lingers as a
zombie (`kill(pid, 0)` succeeds) until something reaps it, pids are reused, and a container
restarted on a new hostname cannot judge the old one. So the claim is a lock that its owner's
death releases without anyone having to guess:

- PostgreSQL: a session-level advisory lock, held by a connection of its own for the whole run.
  The server drops it when that session ends, whichever machine the process ran on.
- SQLite: `flock` on a file beside the database file. The kernel drops it when the last
  descriptor closes, which a killed process (zombie or not) has already done.
- In-memory SQLite: nothing outside this process can see the database, so nothing is locked.

`sync_state.lease_owner` stays as the readable record of who holds the account (for `status` and
the exit-8 message); it no longer decides anything.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from sqlalchemy import select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from sync.db import sqlite_file
from sync.errors import DatabaseUnavailable, LeaseHeld
from sync.models import SyncState

if TYPE_CHECKING:
    from sync.state import Account

# On the lock's own connection: no idle timeout may end the session (and with it the claim), and a
# machine that vanishes without closing its socket is noticed within about a minute.
_LOCK_SESSION_SETTINGS = text(
    "SELECT set_config(name, value, false) FROM (VALUES "
    "('idle_session_timeout', '0'), ('idle_in_transaction_session_timeout', '0'), "
    "('tcp_keepalives_idle', '30'), ('tcp_keepalives_interval', '10'), ('tcp_keepalives_count', '3')"
    ") AS wanted(name, value) WHERE name IN (SELECT name FROM pg_settings)"
)

_ADVISORY_GRANTED = text(
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted "
    "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
    "AND classid::bigint = :classid AND objid::bigint = :objid AND objsubid = 1)"
)


def advisory_key(account: Account) -> int:
    """A stable signed 64-bit key for the account, namespaced so other applications' keys don't collide."""
    digest = hashlib.sha256(f"kapture-sync:{account.cm_id}:{account.stream}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _pg_locks_ids(key: int) -> dict[str, int]:
    """How `pg_locks` shows a bigint advisory key: high and low 32 bits as unsigned oids."""
    unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
    return {"classid": unsigned >> 32, "objid": unsigned & 0xFFFF_FFFF}


def lock_file(engine: Engine, account: Account) -> Path | None:
    """The file a SQLite database's claim is taken on; None for PostgreSQL and in-memory databases."""
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return None
    database = sqlite_file(url)
    if database is None:
        return None
    return database.with_name(f"{database.name}.{account.cm_id}.{account.stream}.lock")


def claim_is_held(conn: Connection, account: Account) -> bool:
    """Inside a page's transaction: whether the account's advisory lock is still held by anyone.

    On PostgreSQL the lock's connection can die (server restart, `pg_terminate_backend`) while the
    run goes on. If nobody holds the lock, this run's claim is gone and the page must not commit.
    If another process holds it, that process wrote itself into the lease before touching
    anything else, so the lease check beside this one refuses the page (or the page commits
    before that process's first write: still one run after the other). On SQLite the claim is a
    descriptor of this process and cannot be lost while it runs: always True.
    """
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.execute(_ADVISORY_GRANTED, _pg_locks_ids(advisory_key(account))).scalar())


def held_message(account: Account, holder: str | None, expires: datetime | None) -> str:
    """The exit-8 line: who holds the account, as its lease record says (host:pid, not the run token)."""
    if not holder:
        return f"account {account.cm_id} is being synced by another process (it has not recorded itself yet)"
    until = f" until {expires:%Y-%m-%d %H:%M:%S} UTC" if expires else ""
    return f"account {account.cm_id} is being synced by another process ({holder.rsplit(':', 1)[0]}){until}"


class AccountLock:
    """Holds one account for one run; `acquire` raises `LeaseHeld` naming the holder when it is taken.

    Use as a context manager, or call `acquire` and `release` (which is idempotent).
    """

    def __init__(self, engine: Engine, account: Account) -> None:
        self.engine = engine
        self.account = account
        self.path = lock_file(engine, account)
        self._conn: Connection | None = None
        self._fd: int | None = None
        self._held = False

    @property
    def held(self) -> bool:
        return self._held

    def acquire(self) -> None:
        if self._held:
            raise RuntimeError(f"account {self.account.cm_id} is already locked by this AccountLock")
        if self.engine.dialect.name == "postgresql":
            taken = self._lock_postgres()
        elif self.path is not None:
            taken = self._lock_file(self.path)
        else:
            taken = True
        if not taken:
            raise LeaseHeld(self._holder())
        self._held = True

    def release(self) -> None:
        """Give the account back; the connection is closed, never returned to the pool still locked."""
        self._held = False
        if self._conn is not None:
            conn, self._conn = self._conn, None
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": advisory_key(self.account)})
            except DBAPIError:
                pass  # the session is gone, and the lock with it
            finally:
                conn.invalidate()  # end the session itself: nothing it held can outlive this run
                conn.close()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the descriptor drops the flock; the file stays, so no one locks a stale inode

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def _lock_postgres(self) -> bool:
        conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        try:
            conn.execute(_LOCK_SESSION_SETTINGS)
            taken = bool(
                conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": advisory_key(self.account)}).scalar()
            )
        except BaseException:
            conn.invalidate()
            conn.close()
            raise
        if not taken:
            conn.close()  # holds nothing: may go back to the pool
            return False
        self._conn = conn
        return True

    def _lock_file(self, path: Path) -> bool:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise DatabaseUnavailable(f"cannot open the account's lock file {path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except OSError as exc:
            os.close(fd)
            raise DatabaseUnavailable(f"cannot lock the account's lock file {path}: {exc.strerror}") from None
        self._fd = fd
        return True

    def _holder(self) -> str:
        """Who holds the account, from its lease record; a record being written may not be there yet."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(SyncState.lease_owner, SyncState.lease_expires_at).where(
                    SyncState.cm_id == self.account.cm_id, SyncState.stream == self.account.stream
                )
            ).first()
        holder, expires = (row[0], row[1]) if row else (None, None)
        return held_message(self.account, holder, expires)
