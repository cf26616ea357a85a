"""Settings: precedence, validation messages that name the value, secrets never echoed."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sync.errors import SettingsError
from sync.settings import load_settings, parse_duration

ACCOUNT = {
    "KAPTURE_BASE_URL": "https://acme.kapturecrm.com/",
    "KAPTURE_USERNAME": "u",
    "KAPTURE_PASSWORD": "p4ss-SECRET",
    "KAPTURE_CM_ID": "1000298",
}


@pytest.fixture
def account_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for key, value in ACCOUNT.items():
        monkeypatch.setenv(key, value)
    return monkeypatch


def test_defaults_follow_the_contract(account_env):
    s = load_settings()
    assert s.base_url == "https://acme.kapturecrm.com"
    assert (s.timezone, s.database_url, s.lookback_days, s.window) == (
        "Asia/Kolkata",
        "sqlite:///data/kapture.db",
        7,
        timedelta(days=1),
    )
    assert s.authorization.get_secret_value() == "Basic dTpwNHNzLVNFQ1JFVA=="
    assert "p4ss-SECRET" not in repr(s) and "dTpw" not in repr(s)


def test_flag_beats_environment_beats_file_beats_default(account_env, tmp_path: Path):
    config = tmp_path / "k.toml"
    config.write_text("[sync]\nlookback_days = 3\npage_size = 250\n[kapture]\ncm_id = 5\n")
    account_env.delenv("KAPTURE_CM_ID")
    account_env.setenv("KAPTURE_SYNC_LOOKBACK_DAYS", "4")
    s = load_settings({"page_size": 500}, config)
    assert (s.page_size, s.lookback_days, s.cm_id, s.rescan_horizon_days) == (500, 4, 5, 90)


def test_config_file_from_the_environment_variable(account_env, tmp_path: Path):
    config = tmp_path / "k.toml"
    config.write_text('date_format = "datetime"\nwindow = "6h"\n')
    account_env.setenv("KAPTURE_SYNC_CONFIG", str(config))
    s = load_settings()
    assert (s.date_format, s.window) == ("datetime", timedelta(hours=6))


def test_each_bad_value_is_named_and_secrets_are_not_echoed(account_env):
    account_env.setenv("KAPTURE_CM_ID", "0")
    account_env.setenv("KAPTURE_TIMEZONE", "Mars/Olympus")
    account_env.setenv("KAPTURE_SYNC_LOOKBACK_DAYS", "-1")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    for name in ("KAPTURE_CM_ID", "KAPTURE_TIMEZONE", "KAPTURE_SYNC_LOOKBACK_DAYS"):
        assert name in message
    assert "p4ss-SECRET" not in message


def test_credentials_are_required_unless_a_token_is_given(account_env):
    account_env.delenv("KAPTURE_PASSWORD")
    with pytest.raises(SettingsError, match="KAPTURE_USERNAME and KAPTURE_PASSWORD, or KAPTURE_AUTH_TOKEN"):
        load_settings()
    account_env.setenv("KAPTURE_AUTH_TOKEN", "Basic abc=")
    assert load_settings().authorization.get_secret_value() == "Basic abc="


def test_windows_must_fit_the_date_format(account_env):
    account_env.setenv("KAPTURE_SYNC_WINDOW", "6h")
    with pytest.raises(SettingsError, match="whole days"):
        load_settings()
    account_env.setenv("KAPTURE_DATE_FORMAT", "datetime")
    account_env.setenv("KAPTURE_SYNC_WINDOW", "7h")
    with pytest.raises(SettingsError, match="divide 24h"):
        load_settings()


def test_a_missing_or_broken_config_file_is_a_bad_setting(account_env, tmp_path: Path):
    with pytest.raises(SettingsError, match="does not exist"):
        load_settings(config=tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("page_size = = 3")
    with pytest.raises(SettingsError, match="not valid TOML"):
        load_settings(config=broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("page_sise = 3")
    with pytest.raises(SettingsError, match="page_sise"):
        load_settings(config=unknown)


@pytest.mark.parametrize(
    "text,seconds", [("900", 900), ("90s", 90), ("15m", 900), ("6h", 21600), ("1d", 86400), ("1.5h", 5400)]
)
def test_durations(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_the_shipped_example_config_is_valid(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("KAPTURE_PASSWORD", "from-the-environment")
    example = Path(__file__).resolve().parents[1] / "config" / "kapture-sync.example.toml"
    s = load_settings(config=example)
    assert (s.cm_id, s.base_url, s.username) == (1000298, "https://acme.kapturecrm.com", "api-user")


def test_values_of_unknown_keys_and_urls_with_credentials_are_never_echoed(account_env, tmp_path: Path):
    with pytest.raises(SettingsError) as caught:
        load_settings({"pasword": "hunter2"})
    assert "pasword is not a setting" in str(caught.value) and "hunter2" not in str(caught.value)
    account_env.setenv("KAPTURE_BASE_URL", "https://user:hunter2@acme.kapturecrm.com")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "must not contain credentials" in str(caught.value) and "hunter2" not in str(caught.value)


def test_a_token_wrapped_by_base64_is_joined_and_a_broken_one_refused_without_echo(account_env):
    account_env.setenv("KAPTURE_AUTH_TOKEN", "Basic c2VjcmV0VE9L\nRU4xMjM0NTY3ODk=")
    assert load_settings().authorization.get_secret_value() == "Basic c2VjcmV0VE9LRU4xMjM0NTY3ODk="
    account_env.setenv("KAPTURE_AUTH_TOKEN", "not base64 at all: sécret")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    assert "KAPTURE_AUTH_TOKEN must be the base64 text" in str(caught.value) and "sécret" not in str(caught.value)
    account_env.delenv("KAPTURE_AUTH_TOKEN")
    account_env.setenv("KAPTURE_PASSWORD", "line\nbreak")
    with pytest.raises(SettingsError, match="KAPTURE_PASSWORD must not contain a line break"):
        load_settings()
