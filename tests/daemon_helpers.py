"""Running `kapture-sync daemon` as a real subprocess, and what the tests ask of it."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from sync.models import SyncRun

PASSWORD = "pw-Zq81-never-printed"


def free_port() -> int:
    """A free port for a server a test starts later (or again): below the kernel's ephemeral range,
    so that no `bind(("", 0))` and no outgoing connection of another test process takes it meanwhile."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for port in random.sample(range(10_000, low), 200):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between 10000 and {low}")


def base_env(**values: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPTURE_")}
    env.update({k: str(v) for k, v in values.items()})
    return env


def account_env(url: str, database_url: str, cm_id: int = 1000298, **extra: Any) -> dict[str, str]:
    """One account from the environment, quick retries, a 1-second interval."""
    values: dict[str, Any] = {
        "KAPTURE_BASE_URL": url,
        "KAPTURE_USERNAME": "demo",
        "KAPTURE_PASSWORD": PASSWORD,
        "KAPTURE_CM_ID": cm_id,
        "KAPTURE_SYNC_DATABASE_URL": database_url,
        "KAPTURE_SYNC_INTERVAL": "1",
        "KAPTURE_MAX_ATTEMPTS": "2",
        "KAPTURE_BACKOFF_BASE": "0.05",
        "KAPTURE_BACKOFF_MAX": "0.2",
        "KAPTURE_RETRY_MAX_SECONDS": "3",
        "KAPTURE_TIMEOUT": "3",
        "KAPTURE_SYNC_FAILURE_BACKOFF_MAX": "2s",
    }
    values.update(extra)
    return base_env(**values)


class Daemon:
    """A `kapture-sync daemon` subprocess; its stdout and stderr go to files for reading at any time."""

    def __init__(self, env: dict[str, str], folder: Path, name: str = "daemon", args: tuple[str, ...] = ()) -> None:
        self.out = folder / f"{name}.out"
        self.err = folder / f"{name}.err"
        with self.out.open("w") as out, self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sync", "daemon", *args], env=env, stdout=out, stderr=err, cwd=folder
            )
        self.port = int(env["KAPTURE_SYNC_METRICS_PORT"]) if "KAPTURE_SYNC_METRICS_PORT" in env else None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def events(self) -> list[dict[str, Any]]:
        """Every stderr line, parsed as JSON (a line that is not JSON fails the test here)."""
        lines = [line for line in self.err.read_text().splitlines() if line.strip()]
        parsed = []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                raise AssertionError(f"a log line is not JSON: {line!r}") from None
        return parsed

    def get(self, path: str) -> tuple[int, str]:
        assert self.port is not None
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def terminate(self, timeout: float = 10.0) -> tuple[int, float]:
        """SIGTERM; (exit status, seconds it took)."""
        began = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        return code, time.monotonic() - began

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def wait_for(condition: Callable[[], Any], timeout: float, what: str, daemon: Daemon | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon is not None and daemon.proc.poll() is not None:
            raise AssertionError(f"the daemon exited ({daemon.proc.returncode}) waiting for {what}:\n{daemon.output()}")
        try:
            value = condition()
        except Exception:  # the schema may not exist yet, a server may be restarting
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}" + (f":\n{daemon.output()[-3000:]}" if daemon else ""))


def all_runs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(SyncRun.__table__).order_by(SyncRun.id)).all())


def assert_no_overlap(engine: Engine) -> None:
    """No two runs of one account were ever running at once (refused runs never started)."""
    by_account: dict[int, list[Any]] = {}
    for run in all_runs(engine):
        if run.outcome != "refused":
            by_account.setdefault(run.cm_id, []).append(run)
    for cm_id, runs in by_account.items():
        runs.sort(key=lambda r: r.started_at)
        for before, after in zip(runs, runs[1:], strict=False):
            assert before.finished_at is not None, f"account {cm_id}: run {before.id} never finished"
            assert before.finished_at <= after.started_at, (
                f"account {cm_id}: run {before.id} ({before.started_at}..{before.finished_at}) overlaps "
                f"run {after.id} (started {after.started_at})"
            )
