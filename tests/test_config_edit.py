"""Writing what `check` found into the TOML config file: other keys, comments and secrets untouched."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from sync.config_edit import write_settings
from sync.errors import SettingsError
from sync.settings import read_config_file

EXAMPLE = Path(__file__).parent.parent / "config" / "kapture-sync.example.toml"


def test_a_new_file_is_created_with_the_values(tmp_path):
    path = tmp_path / "config" / "kapture-sync.toml"
    write_settings(path, {"end_inclusive": False, "timezone": "UTC"})
    assert read_config_file(path) == {"end_inclusive": False, "timezone": "UTC"}


def test_existing_keys_are_replaced_in_place_keeping_comments_and_every_other_line(tmp_path):
    path = tmp_path / "k.toml"
    original = (
        "# mine\n"
        'base_url = "https://acme.kapturecrm.com"\n'
        "[kapture]\n"
        'password = "s3cret"   # do not print\n'
        'date_format = "date"   # was guessed\n'
        "page_size = 100\n"
        "[sync]\n"
        'database_url = "sqlite:///x.db"\n'
        'timezone = "Asia/Kolkata"\n'
    )
    path.write_text(original)
    write_settings(path, {"date_format": "datetime", "timezone": "UTC", "end_inclusive": False})
    text = path.read_text()
    assert 'date_format = "datetime"   # was guessed\n' in text
    assert 'timezone = "UTC"\n' in text and 'password = "s3cret"   # do not print\n' in text
    added = "end_inclusive = false  # found by kapture-sync check\n"
    assert text.index(added) < text.index("[sync]"), "a new key belongs in [kapture]"
    untouched = [line for line in original.splitlines() if "date_format" not in line and "timezone" not in line]
    assert all(line in text.splitlines() for line in untouched)
    assert read_config_file(path)["password"] == "s3cret" and read_config_file(path)["database_url"] == "sqlite:///x.db"


def test_top_level_keys_go_before_the_first_table_when_there_is_no_kapture_table(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text("cm_id = 7\n[sync]\nlookback_days = 3\n")
    write_settings(path, {"http_method": "GET"})
    data = tomllib.loads(path.read_text())
    assert data["http_method"] == "GET" and data["sync"] == {"lookback_days": 3}


def test_the_commented_example_gets_real_lines_and_stays_valid(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text(EXAMPLE.read_text())
    write_settings(path, {"end_inclusive": False, "window": "1d", "page_size": 30})
    assert {k: read_config_file(path)[k] for k in ("end_inclusive", "window", "page_size")} == {
        "end_inclusive": False,
        "window": "1d",
        "page_size": 30,
    }


def test_secrets_are_never_written_and_a_broken_file_is_left_alone(tmp_path):
    path = tmp_path / "k.toml"
    with pytest.raises(ValueError, match="password"):
        write_settings(path, {"password": "x"})
    assert not path.exists()
    path.write_text("[kapture\n")
    with pytest.raises(SettingsError, match="not valid TOML"):
        write_settings(path, {"timezone": "UTC"})
    assert path.read_text() == "[kapture\n"


def test_a_file_listing_accounts_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "k.toml"
    original = (
        '[[accounts]]\nname = "acme"\ncm_id = 1\n\n[[accounts]]\nname = "beta"\ncm_id = 2\nend_inclusive = true\n'
    )
    path.write_text(original)
    with pytest.raises(SettingsError, match=r"\[\[accounts\]\].*set end_inclusive = false in the checked account"):
        write_settings(path, {"end_inclusive": False})
    assert path.read_text() == original
