"""Database URLs as users write them, and the one-line failures when they are wrong."""

from __future__ import annotations

import pytest

from sync.db import normalize_url, redact
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
