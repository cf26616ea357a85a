"""Database URLs as users write them, the one-line failures when they are wrong, and the SQLite files made."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sync.db import SQLITE_PAGE_SIZE, ensure_schema, make_engine, normalize_url, redact
from sync.errors import SettingsError


def test_postgresql_urls_use_psycopg_3():
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///data/k.db").drivername == "sqlite"


def test_unsupported_or_broken_urls_are_bad_settings():
    with pytest.raises(SettingsError, match="supported are sqlite and postgresql"):
        normalize_url("mysql://u@h/db")
    with pytest.raises(SettingsError, match="not a database URL"):
        normalize_url("not a url")


def test_passwords_are_hidden_when_a_url_is_shown():
    assert "hunter2" not in redact("postgresql://u:hunter2@h/db")


def test_a_sqlite_file_kapture_sync_creates_has_large_pages_and_an_existing_one_keeps_its_own(tmp_path):
    """Large pages make a backfill ~15-25% faster and its file ~15% smaller (SQLITE_PAGE_SIZE); a file
    made before, or by someone else, is used as it is: SQLite cannot change it without a VACUUM."""
    created = tmp_path / "new.db"
    ensure_schema(make_engine(f"sqlite:///{created}"))
    with sqlite3.connect(created) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == SQLITE_PAGE_SIZE == 16384
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    existing = tmp_path / "old.db"
    with sqlite3.connect(existing) as conn:
        conn.execute("CREATE TABLE analysts_notes (note TEXT)")
        conn.execute("INSERT INTO analysts_notes VALUES ('kept')")
    ensure_schema(make_engine(f"sqlite:///{existing}"))
    with sqlite3.connect(existing) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 4096
        assert conn.execute("SELECT note FROM analysts_notes").fetchall() == [("kept",)]
        assert conn.execute("SELECT count(*) FROM orders").fetchone()[0] == 0


def test_a_sqlite_path_starting_with_a_tilde_is_in_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """`sqlite:///~/kapture.db` is the home folder's file, as a shell reads `~`: not a folder literally
    named `~` made in the current directory (which a later `rm -rf ~` would be a disaster to clean)."""
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    for url, name in (
        ("sqlite:///~/data/kapture.db", "kapture.db"),
        ("sqlite:///file:~/data/uri.db?uri=true", "uri.db"),
    ):
        engine = make_engine(url)
        try:
            ensure_schema(engine)
        finally:
            engine.dispose()
        assert (home / "data" / name).is_file(), url
    assert list(here.iterdir()) == []
