"""Lease and watermark rules, on both databases."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from sync.db import writer
from sync.errors import LeaseHeld
from sync.state import Account, acquire_lease, advance_watermark, release_lease, start_run, watermark

NOW = datetime(2026, 11, 29, 10, tzinfo=UTC)
ACCOUNT = Account(1000298)


def test_a_live_holder_keeps_the_lease_until_it_expires(engine: Engine):
    acquire_lease(engine, ACCOUNT, "otherhost:42:aa", timedelta(minutes=10), NOW)
    with pytest.raises(LeaseHeld, match="otherhost:42"):
        acquire_lease(engine, ACCOUNT, "me:1:bb", timedelta(minutes=10), NOW + timedelta(minutes=5))
    acquire_lease(engine, ACCOUNT, "me:1:bb", timedelta(minutes=10), NOW + timedelta(minutes=11))
    release_lease(engine, ACCOUNT, "me:1:bb", NOW)
    acquire_lease(engine, ACCOUNT, "third:7:cc", timedelta(minutes=10), NOW)


def test_a_lease_left_by_a_dead_process_on_this_host_is_taken_over_at_once(engine: Engine):
    import socket

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    owner = f"{socket.gethostname()}:{dead.stdout.strip()}:dd"
    acquire_lease(engine, ACCOUNT, owner, timedelta(hours=1), NOW)
    acquire_lease(engine, ACCOUNT, "me:1:bb", timedelta(minutes=10), NOW + timedelta(seconds=1))


def test_the_watermark_only_moves_forward(engine: Engine):
    acquire_lease(engine, ACCOUNT, "me:1:bb", timedelta(minutes=10), NOW)
    run_id = start_run(engine, ACCOUNT, "sync", NOW, {})
    with writer(engine).begin() as conn:
        advance_watermark(conn, ACCOUNT, NOW, run_id, NOW, NOW)
        advance_watermark(conn, ACCOUNT, NOW - timedelta(days=1), run_id, NOW, NOW)
        advance_watermark(conn, ACCOUNT, None, run_id, NOW, NOW)
    with engine.connect() as conn:
        assert watermark(conn, ACCOUNT) == NOW


def test_of_two_processes_racing_for_a_free_lease_exactly_one_wins(engine: Engine):
    import threading

    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def contend(name: str) -> None:
        barrier.wait()
        try:
            acquire_lease(engine, ACCOUNT, f"host-{name}:1:x", timedelta(minutes=10), NOW)
            outcomes.append("won")
        except LeaseHeld:
            outcomes.append("lost")

    threads = [threading.Thread(target=contend, args=(str(i),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost", "lost", "lost", "won"]
