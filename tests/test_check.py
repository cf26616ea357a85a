"""`kapture-sync check` as a user meets it: the findings, exit 2 on a contradicted setting, and
`--write-config` writing the right values so that check agrees and a backfill reads every order."""

from __future__ import annotations

from datetime import date, timedelta

from sync.db import make_engine
from tests.helpers import assert_equals_truth
from tests.test_cli import account_env, one_line, run_cli


def test_check_exits_2_naming_the_contradicted_setting_and_write_config_fixes_it(
    start_emulator, database_url, tmp_path
):
    emu, serving = start_emulator(end_inclusive=False)
    config = tmp_path / "config" / "kapture-sync.toml"
    config.parent.mkdir()
    config.write_text('# ours\n[kapture]\npassword = "demo"  # secret\n[sync]\nlookback_days = 3\n')
    env = {k: v for k, v in account_env(serving.url, database_url).items() if k != "KAPTURE_PASSWORD"}

    found = run_cli("check", env=env, cwd=tmp_path)
    assert found.returncode == 2, found.stderr
    assert "KAPTURE_END_INCLUSIVE=false (is true)" in one_line(found.stderr)
    assert "end bound  datetime: exclusive; date: exclusive  <- KAPTURE_END_INCLUSIVE is true" in found.stdout

    written = run_cli("check", "--write-config", env=env, cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert "wrote end_inclusive = false to config/kapture-sync.toml" in written.stdout
    text = config.read_text()
    assert text.startswith('# ours\n[kapture]\npassword = "demo"  # secret\n') and "lookback_days = 3" in text
    assert "end_inclusive = false" in text

    agreed = run_cli("check", env=env, cwd=tmp_path)
    assert agreed.returncode == 0
    assert agreed.stdout.splitlines()[-1] == "every setting agrees with what the account does"
    done = run_cli("backfill", "--from", (date.today() - timedelta(days=12)).isoformat(), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    engine = make_engine(database_url)
    assert_equals_truth(engine, emu.store.truth())
    engine.dispose()


def test_a_setting_the_environment_overrides_is_named_after_writing(start_emulator, tmp_path):
    _, serving = start_emulator(timezone="UTC")
    env = account_env(serving.url, f"sqlite:///{tmp_path / 'k.db'}", KAPTURE_TIMEZONE="Asia/Kolkata")
    done = run_cli("check", "--write-config", env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert "KAPTURE_TIMEZONE=UTC (is Asia/Kolkata) still, from the environment" in one_line(done.stderr)
    assert 'timezone = "UTC"' in (tmp_path / "config" / "kapture-sync.toml").read_text()


def test_a_configured_zone_the_account_rules_out_is_exit_2_not_agreement(start_emulator, tmp_path):
    _, serving = start_emulator(timezone="America/New_York")
    found = run_cli("check", env=account_env(serving.url, f"sqlite:///{tmp_path / 'k.db'}"), cwd=tmp_path)
    assert found.returncode == 2, found.stdout
    assert "KAPTURE_TIMEZONE (not Asia/Kolkata)" in one_line(found.stderr)
    assert "every setting agrees" not in found.stdout


def test_what_check_could_not_learn_is_said_instead_of_agreement(start_emulator, tmp_path):
    _, serving = start_emulator(orders=0)
    found = run_cli("check", env=account_env(serving.url, f"sqlite:///{tmp_path / 'k.db'}"), cwd=tmp_path)
    assert found.returncode == 0, found.stderr
    last = found.stdout.splitlines()[-1]
    assert last.startswith("no setting contradicted, but not known: KAPTURE_TIMEZONE, KAPTURE_END_INCLUSIVE"), last


def test_write_config_creates_the_file_named_by_config_when_it_is_missing(start_emulator, database_url, tmp_path):
    """The README's "created if missing" held only for the default path: `--config new.toml` failed
    with "config file new.toml does not exist" before anything was learnt."""
    emu, serving = start_emulator(end_inclusive=False)
    env = account_env(serving.url, database_url)
    written = run_cli("check", "--write-config", "--config", "new.toml", env=env, cwd=tmp_path)
    assert written.returncode == 0, written.stderr
    assert "end_inclusive = false" in (tmp_path / "new.toml").read_text()

    agreeing = start_emulator()[1]  # nothing to write: no empty file is left behind
    quiet = run_cli(
        "check", "--write-config", "--config", "other.toml", env=account_env(agreeing.url, database_url), cwd=tmp_path
    )
    assert quiet.returncode == 0, quiet.stderr
    assert not (tmp_path / "other.toml").exists()
