"""The database's own share of a backfill: prepared rows written exactly as the writer writes them, nothing else.

    .venv/bin/python bench/db_floor.py                       # both databases, 100,000 orders, 3 runs each
    .venv/bin/python bench/db_floor.py --database sqlite --orders 100000 --repeat 5

The emulator's orders are made ready in advance by `sync.prepare.prepare` (what the worker
process does), then written in batches, one transaction each, by the writer's own calls
(`load.stored_versions`, `load.upsert_prepared`): no HTTP, no worker, no other thread. Whatever
this reaches bounds a backfill on this machine with the same schema, since a backfill does this
and more on the same cores. Variants:

- as shipped: history on, the analysts' indexes, 5,000 rows a commit (`KAPTURE_SYNC_COMMIT_ROWS`);
- as shipped, 1,000 rows a commit (about a page a commit, as a backfill often commits);
- history off (`KAPTURE_SYNC_HISTORY=false`): no `order_versions` copy;
- history off and no secondary indexes: about what a bare loader writes.

Prints, per variant, the median of `--repeat` runs: rows/s, wall and this process's CPU in µs a
row, and on PostgreSQL the CPU of the server process that did the writing (read from /proc, so
only for a server on this machine).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from cpu_split import URLS, process_cpu  # noqa: E402
from sqlalchemy import Engine, inspect, text  # noqa: E402
from sync_throughput import empty_target  # noqa: E402

from sync.db import ensure_schema, make_engine, writer  # noqa: E402
from sync.emulator import Emulator, EmulatorConfig  # noqa: E402
from sync.load import stored_versions, upsert_prepared  # noqa: E402
from sync.prepare import Prepared, prepare  # noqa: E402

CM_ID = 1000298


@dataclass(frozen=True)
class Variant:
    name: str
    batch: int
    history: bool
    indexes: bool


VARIANTS = (
    Variant("as shipped, 5,000 rows a commit", 5000, True, True),
    Variant("as shipped, 1,000 rows a commit", 1000, True, True),
    Variant("history off", 5000, False, True),
    Variant("history off, no secondary indexes", 5000, False, False),
)


def fresh_engine(url: str, variant: Variant) -> Engine:
    """An empty target at the newest schema, without the secondary indexes when the variant says so."""
    empty_target(url)  # SQLite: the files removed; PostgreSQL: the database created if missing, its schema emptied
    engine = make_engine(url)
    ensure_schema(engine)
    if not variant.indexes:
        with engine.begin() as conn:
            for table in ("orders", "order_versions"):
                for index in inspect(conn).get_indexes(table):
                    conn.execute(text(f"DROP INDEX {index['name']}"))
    return engine


def server_cpu(conn: Any) -> tuple[int, float] | None:
    """The PostgreSQL backend behind `conn` and its CPU seconds so far; None elsewhere or off this machine."""
    if conn.dialect.name != "postgresql":
        return None
    pid = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
    try:
        return pid, process_cpu(pid)
    except OSError:
        return None


def write_all(engine: Engine, rows: list[Prepared], variant: Variant) -> tuple[float, float, float | None]:
    """Wall seconds, this process's CPU seconds and the server's CPU seconds (or None) to write `rows`."""
    backends: dict[int, float] = {}
    measurable = True
    started, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(rows), variant.batch):
        page = rows[start : start + variant.batch]
        with writer(engine).begin() as conn:
            seen = server_cpu(conn)
            if seen is None:
                measurable = False
            else:
                backends.setdefault(*seen)
            stored = stored_versions(conn, CM_ID, [row[0] for row in page])
            upsert_prepared(conn, CM_ID, page, stored, datetime.now(UTC), variant.history)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    server = None
    if measurable and backends:
        server = sum(process_cpu(pid) - before for pid, before in backends.items())
    return wall, cpu, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=[*sorted(URLS), "both"], default="both")
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    records = Emulator(EmulatorConfig(orders=args.orders, days=args.days, seed=7)).store.truth()
    databases = sorted(URLS) if args.database == "both" else [args.database]
    print(f"{len(records):,} emulator orders, {args.repeat} runs a variant (median); µs are per row")
    for database in databases:
        url = URLS[database]
        dialect = make_engine(url).dialect.name
        rows = [row for row in prepare(records, CM_ID, dialect) if isinstance(row, tuple)]
        print(f"\n{database} ({url}), {len(rows):,} rows")
        server = "server CPU µs" if dialect == "postgresql" else ""
        print(f"| variant | rows/s | wall µs | this process CPU µs | {server} |")
        print("| --- | --- | --- | --- | --- |")
        for variant in VARIANTS:
            runs = []
            for _ in range(args.repeat):
                engine = fresh_engine(url, variant)
                runs.append(write_all(engine, rows, variant))
                engine.dispose()
            wall = statistics.median(run[0] for run in runs)
            cpu = statistics.median(run[1] for run in runs)
            servers = [run[2] for run in runs if run[2] is not None]
            server = f"{statistics.median(servers) / len(rows) * 1e6:.1f}" if servers else ""
            print(
                f"| {variant.name} | {len(rows) / wall:,.0f} | {wall / len(rows) * 1e6:.1f} "
                f"| {cpu / len(rows) * 1e6:.1f} | {server} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
