"""Lease record and watermark rules, on both databases (the claim itself: tests/test_lock.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, select, update

from sync.db import writer
from sync.errors import LeaseHeld
from sync.lock import AccountLock
from sync.models import SyncState
from sync.state import Account, acquire_lease, advance_watermark, release_lease, renew_lease, start_run, watermark

NOW = datetime(2026, 11, 29, 10, tzinfo=UTC)
ACCOUNT = Account(1000298)


def _record(engine: Engine) -> tuple[str | None, datetime | None]:
    with engine.connect() as conn:
        owner, expires = conn.execute(select(SyncState.lease_owner, SyncState.lease_expires_at)).one()
    return owner, expires


def test_the_lock_holder_writes_itself_over_any_lease_record(engine: Engine):
    """The record is for people; whoever it names is gone once the lock is ours, expired or not."""
    acquire_lease(engine, ACCOUNT, "otherhost:42:aa", timedelta(hours=1), NOW)
    with AccountLock(engine, ACCOUNT):
        acquire_lease(engine, ACCOUNT, "me:1:bb", timedelta(minutes=10), NOW + timedelta(minutes=5))
        assert _record(engine) == ("me:1:bb", NOW + timedelta(minutes=15))
        release_lease(engine, ACCOUNT, "me:1:bb", NOW + timedelta(minutes=6))
    assert _record(engine) == (None, None)


def test_renewal_refuses_a_page_once_the_record_names_another_run(engine: Engine):
    with AccountLock(engine, ACCOUNT):
        acquire_lease(engine, ACCOUNT, "me:1:bb", timedelta(minutes=10), NOW)
        with writer(engine).begin() as conn:
            renew_lease(conn, ACCOUNT, "me:1:bb", NOW + timedelta(minutes=20))
        assert _record(engine) == ("me:1:bb", NOW + timedelta(minutes=20))
        acquire_lease(engine, ACCOUNT, "next:2:cc", timedelta(minutes=10), NOW)  # a successor took over
        with pytest.raises(LeaseHeld, match="no longer names this run"), writer(engine).begin() as conn:
            conn.execute(update(SyncState).values(watermark=NOW))
            renew_lease(conn, ACCOUNT, "me:1:bb", NOW + timedelta(minutes=30))
        with engine.connect() as conn:
            assert watermark(conn, ACCOUNT) is None, "the refused page's transaction must not commit"
        release_lease(engine, ACCOUNT, "me:1:bb", NOW)  # ours is gone: the successor's record stays
        assert _record(engine)[0] == "next:2:cc"


def test_the_watermark_only_moves_forward(engine: Engine):
    acquire_lease(engine, ACCOUNT, "me:1:bb", timedelta(minutes=10), NOW)
    run_id = start_run(engine, ACCOUNT, "sync", NOW, {})
    with writer(engine).begin() as conn:
        advance_watermark(conn, ACCOUNT, NOW, run_id, NOW, NOW)
        advance_watermark(conn, ACCOUNT, NOW - timedelta(days=1), run_id, NOW, NOW)
        advance_watermark(conn, ACCOUNT, None, run_id, NOW, NOW)
    with engine.connect() as conn:
        assert watermark(conn, ACCOUNT) == NOW
    with writer(engine).begin() as conn:
        advance_watermark(conn, ACCOUNT, NOW + timedelta(hours=1), run_id, NOW, NOW)
    with engine.connect() as conn:
        assert watermark(conn, ACCOUNT) == NOW + timedelta(hours=1), "a later stamp moves it"
