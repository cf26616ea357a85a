"""Fault mixes (issue 11): the real CLI against the emulator failing 20% of pull requests, on both databases.

Every kind at once: 500, 502, 503, 429 with `Retry-After` in seconds and as an HTTP date, answers
held past the client's timeout, truncated bodies, cut JSON, "try again later" failed bodies with
HTTP 200, dropped connections, HTML pages and JSON lists. Runs must converge to Kapture's truth.
When retries run out, a run stops with one line (exit 4 or 5), is recorded failed, and every window
its ledger vouches for holds exactly Kapture's orders; the next run picks up.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import select

from sync.db import make_engine
from sync.models import SyncWindow
from sync.windows import from_ms
from tests.helpers import assert_equals_truth, runs, storable
from tests.test_cli import account_env, one_line, run_cli

MIX = ("500", "502", "503", "429", "429_date", "timeout", "truncate", "bad_json", "failed_body", "disconnect", "html",
       "list_body")  # fmt: skip
FIRST = (date.today() - timedelta(days=10)).isoformat()


def mix_env(url: str, database_url: str, **extra: str) -> dict[str, str]:
    values = {
        "KAPTURE_PAGE_SIZE": "25",
        "KAPTURE_TIMEOUT": "0.5",
        "KAPTURE_MAX_ATTEMPTS": "10",
        "KAPTURE_BACKOFF_BASE": "0.01",
        "KAPTURE_BACKOFF_MAX": "0.05",
    }
    env = account_env(url, database_url, **(values | extra))
    env["KAPTURE_SYNC_CONCURRENCY"] = "4"  # several windows fetched at once
    return env


def faulty(emu, rate: float) -> None:
    emu.faults.retry_after_seconds = 0
    emu.faults.slow_seconds = 0.7
    emu.faults.rates = {kind: rate / len(MIX) for kind in MIX}


def test_runs_converge_under_a_20_percent_mix_of_every_fault(start_emulator, database_url, tmp_path: Path):
    emu, serving = start_emulator(orders=500, days=10, seed=17)
    faulty(emu, 0.20)
    for kind in MIX[:6]:  # each kind at least once whatever the draws: half now, half before the sync
        emu.faults.push(kind)
    env = mix_env(serving.url, database_url)
    done = run_cli("backfill", "--from", FIRST, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    engine = make_engine(database_url)
    try:
        assert_equals_truth(engine, emu.store.truth())
        emu.store.create(12)
        emu.store.edit(n=15)
        emu.store.edit(n=4, old=True)
        for kind in MIX[6:]:
            emu.faults.push(kind)
        done = run_cli("sync", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        done = run_cli("reconcile", env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert_equals_truth(engine, emu.store.truth())
        assert all(run.outcome == "success" for run in runs(engine))
    finally:
        engine.dispose()
    injected = emu.faults.injected()
    assert set(injected) == set(MIX), f"every kind was injected at least once: {injected}"
    requests = emu.stats()["pull_requests"]
    print(f"\nfault mix: {sum(injected.values())} faults in {requests} pull requests, {len(emu.store.truth())} orders")
    assert sum(injected.values()) >= 0.12 * requests, (injected, requests)


def test_when_retries_run_out_the_run_stops_with_one_line_and_the_next_run_picks_up(
    start_emulator, database_url, tmp_path: Path
):
    emu, serving = start_emulator(orders=200, days=10, seed=19)
    faulty(emu, 0.4)  # 40% of requests fail and only 2 attempts: runs stop part-way
    env = mix_env(serving.url, database_url, KAPTURE_MAX_ATTEMPTS="2")
    engine = make_engine(database_url)
    try:
        stops = 0
        for _ in range(60):
            done = run_cli("backfill", "--from", FIRST, env=env, cwd=tmp_path)
            if done.returncode == 0:
                break
            stops += 1
            line = one_line(done.stderr)
            assert done.returncode in (4, 5), line
            assert "after 2 attempts" in line, line
            assert runs(engine)[-1].outcome == "failed" and runs(engine)[-1].error
            assert_ledger_vouches_only_for_what_it_read(engine, emu)
        assert done.returncode == 0 and stops >= 1, (stops, done.stderr[-2000:])
        assert_equals_truth(engine, emu.store.truth())
    finally:
        engine.dispose()


def assert_ledger_vouches_only_for_what_it_read(engine, emu) -> None:
    """Every window the ledger marks read completely holds exactly the orders Kapture has in it."""
    truth = [r for r in emu.store.truth() if storable(r)]
    with engine.connect() as conn:
        windows = conn.execute(select(SyncWindow.__table__).where(SyncWindow.scanned_end.is_not(None))).all()
        stored = {
            row.id: row.create_date
            for row in conn.execute(select(SyncWindow.metadata.tables["orders"].c.id,
                                           SyncWindow.metadata.tables["orders"].c.create_date)).all()
        }  # fmt: skip
    for window in windows:
        if window.scanned_end < window.window_end:
            continue  # read while still open (today's): vouches only up to scanned_end
        inside = {
            int(r["id"]) for r in truth if window.window_start <= from_ms(int(r["createDate"])) < window.window_end
        }
        missing = inside - set(stored)
        assert not missing, f"window {window.window_start} is marked read but lacks {sorted(missing)[:5]}"
