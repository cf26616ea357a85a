"""The daemon's settings: [[accounts]] in the config file, interval and cron, one-line errors (exit 2)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sync.cli import main
from sync.errors import SettingsError
from sync.settings import load_accounts, load_settings

SINGLE = {
    "KAPTURE_BASE_URL": "http://127.0.0.1:9",
    "KAPTURE_USERNAME": "env-user",
    "KAPTURE_PASSWORD": "env-password-xyz",
    "KAPTURE_CM_ID": "42",
}


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "k.toml"
    path.write_text(body)
    return path


TWO = """
[sync]
database_url = "sqlite:///x.db"
page_size = 50
interval = "5m"

[[accounts]]
name = "acme"
base_url = "http://127.0.0.1:1"
cm_id = 11
username = "u"
password_env = "ACME_PW"
timezone = "UTC"

[[accounts]]
base_url = "http://127.0.0.1:2"
cm_id = 12
secrets_file = "beta.toml"
page_size = 500
interval = "30s"
"""


def test_without_accounts_the_single_account_environment_works_unchanged(monkeypatch):
    for name, value in SINGLE.items():
        monkeypatch.setenv(name, value)
    [account] = load_accounts()
    assert (account.cm_id, account.username, account.label) == (42, "env-user", "42")
    assert account.interval == timedelta(minutes=15) and account.reconcile_cron == "0 2 * * *"
    assert account.metrics_port is None


def test_each_account_takes_its_own_keys_and_credentials_and_shares_the_rest(monkeypatch, tmp_path):
    for name, value in {**SINGLE, "KAPTURE_AUTH_TOKEN": "ZW52OnRva2Vu", "KAPTURE_PAGE_SIZE": "77"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ACME_PW", "acme-secret")
    (tmp_path / "beta.toml").write_text('username = "b"\npassword = "beta-secret"\n')
    acme, beta = load_accounts(config=_config(tmp_path, TWO))
    # identity from the table only: the single-account variables (cm_id 42, a token) are not used
    assert (acme.label, acme.cm_id, acme.username, acme.auth_token) == ("acme", 11, "u", None)
    assert acme.password is not None and acme.password.get_secret_value() == "acme-secret"
    assert (beta.label, beta.cm_id, beta.username) == ("12", 12, "b")
    assert beta.password is not None and beta.password.get_secret_value() == "beta-secret"
    # other keys: the account's table > environment > the file's top level > default
    assert (acme.page_size, beta.page_size) == (77, 500)
    assert (acme.timezone, beta.timezone) == ("UTC", "Asia/Kolkata")
    assert (acme.interval, beta.interval) == (timedelta(minutes=5), timedelta(seconds=30))
    assert acme.database_url == beta.database_url == "sqlite:///x.db"
    # a flag beats everything
    assert {a.page_size for a in load_accounts({"page_size": 9}, config=_config(tmp_path, TWO))} == {9}
    # one-shot commands pick one account by name or cm_id
    assert load_settings({"account": "acme"}, config=_config(tmp_path, TWO)).cm_id == 11
    assert load_settings({"account": "12"}, config=_config(tmp_path, TWO)).cm_id == 12


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (TWO, "bad setting: accounts[1] (acme): password_env names the variable 'ACME_PW', which is not set"),
        (
            TWO.replace('password_env = "ACME_PW"', 'password = "p"\ndatabase_url = "sqlite:///y.db"'),
            "bad setting: accounts[1] (acme): database_url is shared by all accounts: set it at the top level",
        ),
        (
            TWO.replace('password_env = "ACME_PW"', 'password = "p"').replace("cm_id = 12", "cm_id = 11"),
            "bad setting: accounts: two accounts share the cm_id 11",
        ),
        (
            TWO.replace('password_env = "ACME_PW"', 'password = "p"').replace("cm_id = 11", "cm_id = -1"),
            "bad setting: accounts[1] (acme): cm_id Input should be greater than 0 (got -1)",
        ),
        (
            TWO.replace('password_env = "ACME_PW"', ""),
            "bad setting: accounts[1] (acme): set KAPTURE_USERNAME and KAPTURE_PASSWORD, or KAPTURE_AUTH_TOKEN",
        ),
    ],
)
def test_a_bad_account_is_named_in_one_line(tmp_path, body, message):
    (tmp_path / "beta.toml").write_text('username = "b"\npassword = "beta-secret"\n')
    with pytest.raises(SettingsError) as caught:
        load_accounts(config=_config(tmp_path, body))
    assert str(caught.value) == message


def test_a_secrets_file_holds_only_credentials_and_its_values_are_never_echoed(tmp_path, monkeypatch):
    monkeypatch.setenv("ACME_PW", "x")
    (tmp_path / "beta.toml").write_text('password = "hunter2-beta"\ncm_id = 5\n')
    with pytest.raises(SettingsError) as caught:
        load_accounts(config=_config(tmp_path, TWO))
    assert "may hold only username, password and auth_token, not cm_id" in str(caught.value)
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"KAPTURE_SYNC_INTERVAL": "0.5"}, "KAPTURE_SYNC_INTERVAL must be at least 1 second"),
        ({"KAPTURE_SYNC_INTERVAL": "soon"}, "KAPTURE_SYNC_INTERVAL not a duration: 'soon'"),
        ({"KAPTURE_SYNC_RECONCILE_CRON": "0 2 * *"}, "KAPTURE_SYNC_RECONCILE_CRON not a cron expression"),
        ({"KAPTURE_SYNC_RECONCILE_CRON": "0 25 * * *"}, "KAPTURE_SYNC_RECONCILE_CRON not a cron expression"),
        ({"KAPTURE_SYNC_METRICS_PORT": "70000"}, "KAPTURE_SYNC_METRICS_PORT Input should be less than or equal"),
    ],
)
def test_a_bad_interval_cron_or_port_stops_the_daemon_with_exit_2_naming_it(monkeypatch, capsys, env, expected):
    for name, value in {**SINGLE, **env}.items():
        monkeypatch.setenv(name, value)
    assert main(["daemon"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"kapture-sync: bad setting: {expected}"), line
    assert "env-password-xyz" not in line


def test_interval_reads_seconds_or_durations_and_cron_may_be_off(monkeypatch):
    for name, value in SINGLE.items():
        monkeypatch.setenv(name, value)
    assert load_settings({"interval": "900"}).interval == timedelta(minutes=15)
    assert load_settings({"interval": "15m"}).interval == timedelta(minutes=15)
    assert load_settings({"interval": "1"}).interval == timedelta(seconds=1)
    assert load_settings({"reconcile_cron": "OFF"}).reconcile_cron == "off"
    assert load_settings({"reconcile_cron": "30  3 * * 1-5"}).reconcile_cron == "30 3 * * 1-5"
