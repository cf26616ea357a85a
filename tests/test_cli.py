"""The command line as a user meets it: real subprocesses, exit codes, one-line errors, no secrets."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from sync.db import head_revision, make_engine
from tests.helpers import assert_equals_truth, stored

FIRST = (date.today() - timedelta(days=45)).isoformat()
SECRET = "s3cr3t-PASSWORD-do-not-log"


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 120):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KAPTURE_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sync", *args],
        env=full_env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def account_env(url: str, database_url: str, password: str = "demo", **extra: str) -> dict[str, str]:
    env = {
        "KAPTURE_BASE_URL": url,
        "KAPTURE_USERNAME": "demo",
        "KAPTURE_PASSWORD": password,
        "KAPTURE_CM_ID": "1000298",
        "KAPTURE_SYNC_DATABASE_URL": database_url,
        "KAPTURE_BACKOFF_BASE": "0.01",
        "KAPTURE_BACKOFF_MAX": "0.05",
    }
    env.update(extra)
    return env


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip() and not line.lstrip().startswith("{")]
    assert len(lines) == 1, f"expected one line on stderr, got: {stderr!r}"
    assert "Traceback" not in stderr
    return lines[0]


def test_backfill_sync_and_status_from_the_command_line(emulator, database_url, tmp_path):
    emu, serving = emulator
    env = account_env(serving.url, database_url)
    done = run_cli("backfill", "--from", FIRST, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "backfill success" in done.stdout
    emu.store.create(3)
    synced = run_cli("sync", env=env, cwd=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert "3 inserted" in synced.stdout
    engine = make_engine(database_url)
    assert_equals_truth(engine, emu.store.truth())
    engine.dispose()

    status = run_cli("status", env={"KAPTURE_SYNC_DATABASE_URL": database_url}, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert "account 1000298" in status.stdout and "watermark" in status.stdout
    assert "backfill" in status.stdout and "sync" in status.stdout and "success" in status.stdout
    assert f"orders stored   {len(emu.store.truth()):,}" in status.stdout


def test_bad_settings_stop_with_one_line_naming_each_value(tmp_path):
    bad = run_cli(
        "sync",
        env={"KAPTURE_CM_ID": "-5", "KAPTURE_PASSWORD": SECRET, "KAPTURE_SYNC_WINDOW": "fortnight"},
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    line = one_line(bad.stderr)
    assert "KAPTURE_CM_ID" in line and "KAPTURE_BASE_URL is required" in line and "KAPTURE_SYNC_WINDOW" in line
    assert SECRET not in bad.stderr + bad.stdout


@pytest.mark.parametrize("failure_status", [200, 401])
def test_rejected_credentials_exit_non_zero_write_nothing_and_never_echo_the_secret(
    start_emulator, tmp_path, failure_status
):
    _, serving = start_emulator(auth_failure_status=failure_status)
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    done = run_cli(
        "backfill", "--from", FIRST, "--debug", env=account_env(serving.url, database_url, SECRET), cwd=tmp_path
    )
    assert done.returncode == 3
    assert "credentials rejected" in done.stderr.splitlines()[-1]
    assert SECRET not in done.stderr + done.stdout
    engine = make_engine(database_url)
    assert stored(engine) == {}
    engine.dispose()
    assert SECRET.encode() not in (tmp_path / "k.db").read_bytes()


def test_a_failed_body_with_http_200_exits_non_zero_naming_the_cause(emulator, tmp_path):
    """A "try again later" body is retried; when it outlasts the attempts the run stops with exit 4."""
    emu, serving = emulator
    emu.faults.push("failed_body", 3)
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    # one window at a time, so that the three faults meet the same request
    env = account_env(serving.url, database_url, KAPTURE_MAX_ATTEMPTS="3", KAPTURE_SYNC_CONCURRENCY="1")
    done = run_cli("backfill", "--from", FIRST, env=env, cwd=tmp_path)
    assert done.returncode == 4
    assert "Kapture refused the request after 3 attempts: Something went wrong. Please try again later." in one_line(
        done.stderr
    )
    engine = make_engine(database_url)
    assert stored(engine) == {}
    engine.dispose()


def test_unreachable_kapture_is_retried_then_named(tmp_path):
    env = account_env("http://127.0.0.1:9", f"sqlite:///{tmp_path / 'k.db'}", KAPTURE_MAX_ATTEMPTS="3")
    done = run_cli("sync", env=env, cwd=tmp_path)
    assert done.returncode == 5
    assert "Kapture unreachable after 3 attempts" in one_line(done.stderr)


def test_unreachable_database_is_named_without_its_password(emulator, tmp_path):
    _, serving = emulator
    env = account_env(serving.url, f"postgresql://postgres:{SECRET}@127.0.0.1:9/nowhere")
    done = run_cli("sync", env=env, cwd=tmp_path)
    assert done.returncode == 6
    line = one_line(done.stderr)
    assert "database unreachable" in line and "127.0.0.1:9/nowhere" in line
    assert SECRET not in done.stderr


def test_check_proves_settings_database_and_credentials(emulator, tmp_path):
    _, serving = emulator
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    ok = run_cli("check", env=account_env(serving.url, database_url), cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    lines = ok.stdout.splitlines()
    assert [line.split(" ")[0] for line in lines[:3]] == ["settings", "database", "kapture"]
    assert lines[-1] == "every setting agrees with what the account does"
    wrong = run_cli("check", env=account_env(serving.url, database_url, "wrong"), cwd=tmp_path)
    assert wrong.returncode == 3


def test_db_upgrade_creates_the_schema_at_head(database_url, tmp_path):
    done = run_cli("db", "upgrade", env={"KAPTURE_SYNC_DATABASE_URL": database_url}, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    tables = set(inspect(engine).get_table_names())
    assert {"orders", "sync_state", "sync_windows", "sync_runs", "rejected_records"} <= tables
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == head_revision()
    engine.dispose()


def test_flags_beat_environment_beat_config_file(emulator, tmp_path):
    _, serving = emulator
    config = tmp_path / "k.toml"
    config.write_text(
        f'[kapture]\nbase_url = "{serving.url}"\nusername = "demo"\npassword = "demo"\ncm_id = 77\n'
        f'[sync]\ndatabase_url = "sqlite:///{tmp_path / "file.db"}"\n'
    )
    env = {"KAPTURE_SYNC_CONFIG": str(config), "KAPTURE_CM_ID": "1000298"}
    done = run_cli("check", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "account 1000298" in done.stdout and "file.db" in done.stdout
    flagged = run_cli("check", "--cm-id", "5", env=env, cwd=tmp_path)
    assert flagged.returncode == 4 and "cmId 5" in flagged.stderr


def test_logs_are_json_lines_when_stderr_is_not_a_terminal(emulator, tmp_path):
    import json

    _, serving = emulator
    done = run_cli("sync", env=account_env(serving.url, f"sqlite:///{tmp_path / 'k.db'}"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert [e["event"] for e in events] == ["run.start", "run.finish"]
    assert events[1]["outcome"] == "success" and "timestamp" in events[1] and events[1]["level"] == "info"


def test_backfill_shows_a_progress_bar_with_rate_and_eta_in_a_terminal(emulator, tmp_path):
    import fcntl
    import pty
    import struct
    import termios

    _, serving = emulator
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPTURE_")}
    env.update(account_env(serving.url, f"sqlite:///{tmp_path / 'k.db'}"))
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    process = subprocess.Popen(
        [sys.executable, "-m", "sync", "backfill", "--from", FIRST],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=follower,
    )
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    process.wait(60)
    os.close(leader)
    text = screen.decode(errors="replace")
    assert process.returncode == 0
    assert "backfill: 100%" in text and "window/s" in text and "orders=" in text


def test_the_demo_runs_end_to_end_against_the_emulator(tmp_path):
    import re

    done = run_cli("demo", "--orders", "3000", cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "the demo's own output tells the story; logs only for warnings"
    assert "started the Kapture emulator" in done.stdout
    assert "backfill success" in done.stdout and "sync success" in done.stdout
    found = int(re.search(r"reconcile found (\d+) change", done.stdout).group(1))
    assert found >= 3, "the three edits outside the look-back are found by reconcile"
    numbers = re.search(r"serves ([\d,]+) records; the database holds ([\d,]+) orders and (\d+)", done.stdout)
    served, held, rejects = (int(n.replace(",", "")) for n in numbers.groups())
    assert held + rejects == served == 3025 and rejects > 0
    assert "GROUP BY delivery_status" in done.stdout
    engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'demo.db'}")
    assert len(stored(engine)) == held
    engine.dispose()


def test_dates_outside_what_kapture_can_hold_are_bad_settings(emulator, tmp_path):
    _, serving = emulator
    env = account_env(serving.url, f"sqlite:///{tmp_path / 'k.db'}")
    done = run_cli("backfill", "--from", "0001-01-01", env=env, cwd=tmp_path)
    assert done.returncode == 2 and "--from 0001-01-01 is outside" in one_line(done.stderr)
    future = run_cli("backfill", "--from", FIRST, "--to", "9999-12-31", env=env, cwd=tmp_path)
    assert future.returncode == 0, future.stderr
