"""The process asks glibc for two malloc arenas, unless the user set MALLOC_ARENA_MAX."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sync.memory import limit_malloc_arenas


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_arenas_are_limited_on_glibc_and_a_users_setting_is_left_alone(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas() is True
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_command_line_limits_them_before_it_starts_any_thread(monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    code = (
        "import sync.memory as m, sync.cli as c; called = []; "
        "m_limit = c.limit_malloc_arenas; c.limit_malloc_arenas = lambda: called.append(m_limit()); "
        "c.main(['--version']); print(called)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().endswith("[True]")
