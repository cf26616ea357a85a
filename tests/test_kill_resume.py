"""A backfill killed with SIGKILL mid-way resumes from the ledger: nothing lost, nothing doubled."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from sync.cli import _stopping
from sync.db import make_engine
from sync.models import SyncWindow
from sync.settings import today_in
from sync.stop import Terminated
from tests.helpers import assert_equals_truth, runs

FIRST = (date.today() - timedelta(days=25)).isoformat()


def _backfill(url: str, database_url: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPTURE_")}
    env.update(
        {
            "KAPTURE_BASE_URL": url,
            "KAPTURE_USERNAME": "demo",
            "KAPTURE_PASSWORD": "demo",
            "KAPTURE_CM_ID": "1000298",
            "KAPTURE_SYNC_DATABASE_URL": database_url,
            "KAPTURE_PAGE_SIZE": "40",
        }
    )
    return subprocess.Popen(
        [sys.executable, "-m", "sync", "backfill", "--from", FIRST],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkilled_backfill_resumes_without_refetching_finished_windows(start_emulator, database_url):
    emu, serving = start_emulator(orders=2400, days=20, seed=5)
    emu.faults.latency_ms = 25
    engine = make_engine(database_url)
    finished = select(func.count(), func.coalesce(func.sum(SyncWindow.order_count), 0)).where(
        SyncWindow.last_scanned_at.is_not(None)
    )

    victim = _backfill(serving.url, database_url)
    deadline = time.monotonic() + 60
    mid_window = select(func.count()).where(SyncWindow.progress_offset > 0)
    while time.monotonic() < deadline and victim.poll() is None:
        try:
            with engine.connect() as conn:
                if conn.execute(finished).one()[0] >= 8 and conn.execute(mid_window).scalar_one() >= 1:
                    break  # kill inside a window, after at least one of its pages is committed
        except Exception:  # the schema may not exist yet
            pass
        time.sleep(0.01)
    assert victim.poll() is None, "the backfill finished before it could be killed; slow the emulator down"
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)

    with engine.connect() as conn:
        windows_done, orders_done = conn.execute(finished).one()
        in_progress = conn.execute(select(func.count()).where(SyncWindow.progress_started_at.is_not(None))).scalar_one()
    assert windows_done >= 8 and orders_done > 0
    assert in_progress >= 1, "the kill should land inside a window, to prove a mid-window resume"
    emu.faults.latency_ms = 0
    served_before = emu.stats()["orders_served"]

    survivor = _backfill(serving.url, database_url)
    out, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err

    assert_equals_truth(engine, emu.store.truth())
    killed, resumed = runs(engine)
    assert killed.outcome == "interrupted" and killed.finished_at is not None
    assert resumed.outcome == "success"
    total_windows = (today_in(ZoneInfo("Asia/Kolkata")) - date.fromisoformat(FIRST)).days + 1
    assert resumed.details["planned_windows"] == total_windows - windows_done
    assert resumed.details["reasons"].get("resume", 0) == in_progress
    refetched = emu.stats()["orders_served"] - served_before
    assert refetched <= len(emu.store.truth()) - orders_done + 40, "finished windows were fetched again"
    engine.dispose()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_cleanly_records_the_run_as_interrupted_and_frees_the_account(start_emulator, tmp_path, sig):
    """The one line and nothing after it: no traceback from whatever the main thread was doing."""
    emu, serving = start_emulator(orders=1500, days=20, seed=6)
    emu.faults.latency_ms = 20
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    engine = make_engine(database_url)
    victim = _backfill(serving.url, database_url)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with engine.connect() as conn:
                if conn.execute(select(func.count()).where(SyncWindow.last_scanned_at.is_not(None))).scalar_one() >= 3:
                    break
        except Exception:  # the schema may not exist yet
            pass
        time.sleep(0.05)
    victim.send_signal(sig)
    _, err = victim.communicate(timeout=30)
    assert victim.returncode == 130
    assert [line for line in err.splitlines() if line and not line.startswith("{")] == ["kapture-sync: interrupted"]
    [run] = runs(engine)
    assert run.outcome == "interrupted" and run.finished_at is not None and run.windows >= 3

    emu.faults.latency_ms = 0
    again = _backfill(serving.url, database_url)
    _, err = again.communicate(timeout=120)
    assert again.returncode == 0, err
    assert_equals_truth(engine, emu.store.truth())
    engine.dispose()


@pytest.mark.parametrize(
    "second, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)], ids=["SIGINT", "SIGTERM"]
)
def test_the_first_signal_sets_the_runs_stop_and_a_second_raises_at_once(second, raised):
    """A one-shot run is stopped at a page boundary, unless the operator signals again."""
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    first: list[str] = []
    with pytest.raises(raised), _stopping() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler runs in this thread between two bytecodes, soon after the signal
        first.append(stop.reason)
        os.kill(os.getpid(), second)
        time.sleep(5)
    assert first == ["received SIGTERM"]
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_sigterm_to_a_command_that_is_no_run_leaves_the_one_line_alone(start_emulator, tmp_path):
    """click closes a terminal's `^C` echo with a blank line before the one line; a SIGTERM leaves none."""
    emu, serving = start_emulator(orders=100, days=3)
    emu.faults.latency_ms = 20_000  # `check` waits in its first request
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPTURE_")}
    env.update(
        {
            "KAPTURE_BASE_URL": serving.url,
            "KAPTURE_USERNAME": "demo",
            "KAPTURE_PASSWORD": "demo",
            "KAPTURE_CM_ID": "1000298",
            "KAPTURE_SYNC_DATABASE_URL": f"sqlite:///{tmp_path / 'k.db'}",
        }
    )
    check = subprocess.Popen(
        [sys.executable, "-m", "sync", "check"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert check.stdout is not None
    assert check.stdout.readline().startswith("settings ok")  # past start-up, about to ask Kapture
    time.sleep(0.5)
    check.send_signal(signal.SIGTERM)
    _, err = check.communicate(timeout=30)
    assert check.returncode == 130
    assert [line for line in err.splitlines() if not line.startswith("{")] == ["kapture-sync: interrupted"]
