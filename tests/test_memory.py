"""Memory the process does not need: glibc's arenas beyond two, big buffers kept, a driver or Alembic unused."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from sync.memory import tune_malloc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_malloc_is_tuned_on_glibc_and_a_users_settings_are_left_alone(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert tune_malloc() == {"arenas": True, "mmap_threshold": True}
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert tune_malloc() == {"arenas": False, "mmap_threshold": True}
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert tune_malloc() == {"arenas": False, "mmap_threshold": False}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_command_line_tunes_it_before_it_starts_any_thread(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    code = (
        "import sync.memory as m, sync.cli as c; called = []; "
        "tune = c.tune_malloc; c.tune_malloc = lambda: called.append(tune()); "
        "c.main(['--version']); print(called)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[{'arenas': True, 'mmap_threshold': True}]")


def _imported_by(args: list[str], env: dict[str, str], cwd: Path) -> set[str]:
    """The modules `kapture-sync <args>` imported, as `python -X importtime` reports them; it must succeed."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sync", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


def test_a_sqlite_run_loads_neither_the_postgresql_driver_nor_alembic_once_at_head(emulator, tmp_path):
    """psycopg and libpq would cost a SQLite user about 10 MB of memory, Alembic 7 MB, for nothing."""
    _emu, serving = emulator
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPTURE_")}
    env.update(
        KAPTURE_BASE_URL=serving.url,
        KAPTURE_USERNAME="demo",
        KAPTURE_PASSWORD="demo",
        KAPTURE_CM_ID="1000298",
        KAPTURE_SYNC_DATABASE_URL=f"sqlite:///{tmp_path / 'k.db'}",
    )
    since = (date.today() - timedelta(days=10)).isoformat()
    imported = _imported_by(["backfill", "--from", since], env, tmp_path)
    assert "sqlite3" in imported and "sync.load" in imported, "the import log was read"
    assert not {name for name in imported if name.split(".")[0] in ("psycopg", "psycopg_binary")}
    assert "alembic" in imported, "the first run creates the schema with Alembic"

    imported = _imported_by(["sync"], env, tmp_path)
    assert "sync.load" in imported and "alembic" not in imported, "a database at head is checked without Alembic"
