"""`kapture-sync export`: CSV and Parquet round-trip, dates in the account's zone, and memory bounded by chunks."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest
from sqlalchemy import Engine, event, text

from sync.cli import main
from sync.db import make_engine
from sync.export import COLUMNS, chunks
from sync.runs import backfill
from tests.conftest import settings_for
from tests.daemon_helpers import base_env
from tests.helpers import stored

KOLKATA = ZoneInfo("Asia/Kolkata")


@pytest.fixture
def loaded(start_emulator, engine: Engine, database_url, connect):
    emu, serving = start_emulator(orders=300, days=10)
    settings = settings_for(serving.url, database_url)
    backfill(engine, connect(settings), settings, date.today() - timedelta(days=12))
    return stored(engine)


def test_csv_round_trips_with_a_header_and_local_dates(loaded, database_url, tmp_path: Path):
    path = tmp_path / "orders.csv"
    assert main(["export", "--database-url", database_url, "--output", str(path)]) == 0
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        rows = [dict(zip(header, r, strict=True)) for r in reader]
    assert header == [c for c, _ in COLUMNS] and "raw" not in header
    assert [int(r["id"]) for r in rows] == sorted(loaded)
    for row in rows:
        order = loaded[int(row["id"])]
        assert row["create_date"] == order.create_date.isoformat()
        local = order.create_date.astimezone(KOLKATA).replace(tzinfo=None)
        assert row["create_date_local"] == local.isoformat() and row["create_day_local"] == local.date().isoformat()
        assert Decimal(row["product_value"]) == order.product_value
        assert row["remarks"] == (order.remarks or "")
        assert row["invoice_sent"] == ("true" if order.invoice_sent else "false")


def test_parquet_round_trips_with_typed_columns(loaded, database_url, tmp_path: Path):
    path = tmp_path / "orders.parquet"
    assert main(["export", "--format", "parquet", "--database-url", database_url, "--output", str(path)]) == 0
    table = pq.read_table(path)
    assert table.column_names == [c for c, _ in COLUMNS]
    rows = table.to_pylist()
    assert [r["id"] for r in rows] == sorted(loaded)
    for row in rows:
        order = loaded[row["id"]]
        assert row["create_date"] == order.create_date
        assert row["create_day_local"] == order.create_date.astimezone(KOLKATA).date()
        assert row["product_value"] == order.product_value and row["remarks"] == order.remarks
        assert row["invoice_sent"] is order.invoice_sent and row["delivery_status"] == order.delivery_status


def test_since_and_until_select_create_days_in_the_accounts_zone(loaded, database_url, tmp_path: Path, capsysbinary):
    days = sorted({o.create_date.astimezone(KOLKATA).date() for o in loaded.values()})
    since, until = days[2], days[4]
    assert main(["export", "--database-url", database_url, "--since", str(since), "--until", str(until)]) == 0
    lines = list(csv.reader(io.StringIO(capsysbinary.readouterr().out.decode(), newline="")))
    expected = {i for i, o in loaded.items() if since <= o.create_date.astimezone(KOLKATA).date() <= until}
    assert {int(line[1]) for line in lines[1:]} == expected and expected


def test_rows_are_streamed_in_chunks_never_all_at_once(loaded, engine: Engine):
    """PostgreSQL: a server-side cursor is open while chunks arrive; SQLite: one bounded SELECT per chunk."""
    statements: list[str] = []

    def note(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", note)
    try:
        with engine.connect() as conn, conn.begin():
            sizes, open_cursors = [], []
            for part in chunks(conn, size=40):
                sizes.append(len(part))
                if conn.dialect.name == "postgresql":
                    declared = "SELECT count(*) FROM pg_cursors WHERE upper(statement) LIKE 'DECLARE%'"
                    open_cursors.append(conn.execute(text(declared)).scalar())
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert sum(sizes) == len(loaded) and max(sizes) == 40 and len(sizes) == -(-len(loaded) // 40)
    if engine.dialect.name == "postgresql":
        assert open_cursors and all(n == 1 for n in open_cursors), f"no server-side cursor: {open_cursors}"
    else:
        selects = [s for s in statements if "FROM orders_current" in s]
        assert len(selects) == len(sizes) + (len(loaded) % 40 == 0) and all("LIMIT" in s for s in selects)


def test_parquet_without_pyarrow_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    url = f"sqlite:///{tmp_path / 'k.db'}"
    assert main(["export", "--format", "parquet", "--database-url", url]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "kapture-sync[export]" in err


def test_a_reader_that_stops_early_ends_the_export_quietly_with_141(start_emulator, connect, tmp_path: Path):
    """`kapture-sync export | head`: no 'unexpected error', no traceback, the status a shell gives `cat big | head`."""
    database_url = f"sqlite:///{tmp_path / 'k.db'}"
    engine = make_engine(database_url)
    _, serving = start_emulator(orders=2000, days=5)
    settings = settings_for(serving.url, database_url)
    backfill(engine, connect(settings), settings, date.today() - timedelta(days=6))
    engine.dispose()
    export = subprocess.Popen(
        [sys.executable, "-m", "sync", "export", "--database-url", database_url],
        env=base_env(),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert export.stdout is not None and export.stderr is not None
    assert export.stdout.readline().startswith(b"cm_id,id,")  # read the header, then stop reading, like `head -1`
    export.stdout.close()
    code = export.wait(60)
    errors = export.stderr.read().decode()
    assert code == 141, errors
    assert "BrokenPipe" not in errors and "unexpected" not in errors and "Exception ignored" not in errors, errors


def test_an_export_that_fails_leaves_the_previous_file_as_it_was(loaded, database_url, tmp_path: Path):
    """The file was opened for writing before the first row was read: an export cut short by a signal
    or a database error left a truncated file in place of the previous one."""
    path = tmp_path / "orders.csv"
    path.write_text("the previous export\n")

    def fail(conn, cursor, statement, *args):  # type: ignore[no-untyped-def]
        if "orders_current" in statement:
            raise RuntimeError("the database went away mid-export")

    event.listen(Engine, "before_cursor_execute", fail)
    try:
        assert main(["export", "--database-url", database_url, "--output", str(path)]) == 70
    finally:
        event.remove(Engine, "before_cursor_execute", fail)
    assert path.read_text() == "the previous export\n"
    assert [name for name in os.listdir(tmp_path) if name.endswith(".part")] == []
    assert main(["export", "--database-url", database_url, "--output", str(path)]) == 0
    with path.open(newline="", encoding="utf-8") as handle:
        assert len(list(csv.reader(handle))) == len(loaded) + 1, "the next export replaces it whole"


def test_an_output_in_a_folder_that_does_not_exist_is_a_bad_argument(tmp_path: Path, capsys):
    url = f"sqlite:///{tmp_path / 'k.db'}"
    assert main(["export", "--database-url", url, "--output", str(tmp_path / "missing" / "orders.csv")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--output" in err and "No such file or directory" in err, err


def test_an_export_started_with_its_output_closed_is_a_bad_argument(tmp_path: Path):
    """`kapture-sync export >&-` (cron lines do this): one line asking for --output, exit 2, not an
    'unexpected error' about a missing attribute."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    done = subprocess.run(
        [sys.executable, "-m", "sync", "export", "--database-url", url],
        env=base_env(),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        preexec_fn=lambda: os.close(1),  # noqa: PLW1509 (the child closes its own stdout before Python starts)
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert "--output" in line and "standard output is closed" in line, line
