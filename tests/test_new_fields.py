"""Fields Kapture adds later: kept in raw, recorded once per account, logged once, listed by status."""

from __future__ import annotations

import json
from datetime import date, timedelta

from tests.test_cli import account_env, run_cli

FIRST = date.today() - timedelta(days=12)


def test_undocumented_fields_are_recorded_once_and_listed_by_status(start_emulator, database_url, tmp_path):
    emu, serving = start_emulator(orders=800, days=10, malformed_rate=0.1)
    env = account_env(serving.url, database_url)
    done = run_cli("backfill", "--from", FIRST.isoformat(), env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    served = {k for r in emu.store.truth() if isinstance(r, dict) for k in r} - {"id"}
    extras = {"loyaltyTier", "couponCode", "sourceApp"} & served
    assert extras, "the emulator should serve fields Kapture does not document"
    logged = [json.loads(line) for line in done.stderr.splitlines() if '"field.new"' in line]
    assert sorted(e["field"] for e in logged) == sorted(extras), "each new field is logged exactly once"

    again = run_cli("sync", env=env, cwd=tmp_path)
    assert again.returncode == 0 and '"field.new"' not in again.stderr, "a field already recorded is not logged again"
    status = run_cli("status", env=env, cwd=tmp_path)
    line = next(line for line in status.stdout.splitlines() if line.strip().startswith("new fields"))
    assert all(name in line for name in extras) and "kept in orders.raw" in line
