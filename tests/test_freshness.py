"""`status` shows freshness per account, from the same SQL views analysts query: text strip and JSON."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import Engine, select, update

from sync.cli import main
from sync.db import writer
from sync.models import SyncWindow
from sync.runs import backfill, sync
from tests.conftest import settings_for

FIRST = date.today() - timedelta(days=20)


def test_status_shows_coverage_edit_ages_and_the_look_back_that_would_catch_99_percent(
    start_emulator, engine: Engine, database_url, connect, capsys
):
    emu, serving = start_emulator(orders=200, days=15)
    settings = settings_for(serving.url, database_url, lookback_days=3)
    client = connect(settings)
    backfill(engine, client, settings, FIRST)
    emu.store.edit(n=5)
    sync(engine, client, settings)
    with engine.connect() as conn:
        starts = conn.execute(select(SyncWindow.window_start).order_by(SyncWindow.window_start)).scalars().all()
    now = datetime.now(tz=UTC)
    with writer(engine).begin() as conn:  # the oldest windows read long ago, the second never completely
        conn.execute(
            update(SyncWindow)
            .where(SyncWindow.window_start == starts[0])
            .values(last_scanned_at=now - timedelta(days=40))
        )
        conn.execute(update(SyncWindow).where(SyncWindow.window_start == starts[1]).values(last_scanned_at=None))
        conn.execute(
            update(SyncWindow)
            .where(SyncWindow.window_start == starts[2])
            .values(last_scanned_at=now - timedelta(days=3))
        )

    assert main(["status", "--database-url", database_url, "--format", "json"]) == 0
    [account] = json.loads(capsys.readouterr().out)["accounts"]
    marks = [w["read_within"] for w in account["coverage"]]
    assert marks[:4] == ["older", "never", "week", "hour"] and len(marks) == len(starts)
    assert account["lag_seconds"] >= 0 and account["watermark"]
    summary = account["edit_age_summary"]
    assert summary["lookback_days"] == 3 and summary["lookback_days_for_p99"] >= 1
    assert sum(account["edit_ages"].values()) == summary["edits"] > 0

    assert main(["status", "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    strip = next(line for line in out.splitlines() if line.startswith("    " + account["coverage"][0]["day"]))
    assert strip.split(" ", 5)[-1].startswith("· ▒█")
    assert "would have caught 99% of these edits" in out and "(configured: 3)" in out
