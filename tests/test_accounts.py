"""The daemon's settings: [[accounts]] in the config file, interval and cron, one-line errors (exit 2)."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, timedelta
from pathlib import Path

import pytest

from sync.cli import main
from sync.db import make_engine
from sync.errors import SettingsError
from sync.runs import backfill
from sync.settings import load_accounts, load_settings
from tests.conftest import settings_for

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


def test_status_and_export_are_limited_to_the_account_named_and_db_upgrade_refuses_it(
    start_emulator, connect, tmp_path: Path, monkeypatch, capsysbinary
):
    """`--account beta` used to be dropped by the database-only commands: `export` gave every client's orders."""
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    engine = make_engine(database_url)
    urls = {}
    for name, cm_id in (("acme", 11), ("beta", 12)):
        _, serving = start_emulator(orders=40, days=3, cm_id=cm_id, seed=cm_id)
        settings = settings_for(serving.url, database_url, cm_id=cm_id)
        assert backfill(engine, connect(settings), settings, date.today() - timedelta(days=4)).outcome == "success"
        urls[name] = serving.url
    engine.dispose()
    config = _config(
        tmp_path,
        f"""
[sync]
database_url = "{database_url}"

[[accounts]]
name = "acme"
base_url = "{urls["acme"]}"
cm_id = 11
username = "demo"
password_env = "ACME_PW"

[[accounts]]
name = "beta"
base_url = "{urls["beta"]}"
cm_id = 12
username = "demo"
password_env = "BETA_PW"
timezone = "UTC"
""",
    )
    monkeypatch.setenv("ACME_PW", "demo")
    monkeypatch.setenv("BETA_PW", "demo")

    def cm_ids_exported(*flags: str) -> set[str]:
        assert main(["export", "--config", str(config), *flags]) == 0
        return {row["cm_id"] for row in csv.DictReader(io.StringIO(capsysbinary.readouterr().out.decode()))}

    assert cm_ids_exported() == {"11", "12"}
    assert cm_ids_exported("--account", "beta") == {"12"}
    assert cm_ids_exported("--account", "11") == {"11"}

    assert main(["status", "--config", str(config), "--account", "beta", "--format", "json"]) == 0
    shown = json.loads(capsysbinary.readouterr().out)
    assert [a["cm_id"] for a in shown["accounts"]] == [12]
    assert main(["status", "--config", str(config), "--account", "beta"]) == 0
    text = capsysbinary.readouterr().out.decode()
    assert "account 12 " in text and "account 11 " not in text, text
    assert "IST" not in text, "times are shown in beta's zone (UTC), not the default Asia/Kolkata"

    assert main(["export", "--config", str(config), "--account", "gamma"]) == 2
    assert "--account gamma is not among the accounts (acme, beta)" in capsysbinary.readouterr().err.decode()
    assert main(["db", "upgrade", "--config", str(config), "--account", "beta"]) == 2
    err = capsysbinary.readouterr().err.decode().strip()
    refused = "--account does not apply to `db upgrade`: every account shares one database"
    assert err == f"kapture-sync: bad setting: {refused}"
