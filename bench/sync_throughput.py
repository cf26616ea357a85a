"""End-to-end throughput of backfill and incremental sync: emulator (own process) -> HTTP -> database.

    .venv/bin/python bench/sync_throughput.py --orders 100000 --days 30 --page-size 1000 \
        --database-url sqlite:////tmp/bench.db

Prints orders/s, requests per run and peak RSS of the syncing process. The emulator runs in a
separate process so that it does not share this process's core; on PostgreSQL the target
database is created if missing and emptied first.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulator_throughput import start_emulator  # noqa: E402  (bench/ is on the path as the script's folder)

from sync.client import make_client, make_http_client  # noqa: E402
from sync.db import make_engine, normalize_url  # noqa: E402
from sync.logs import configure_logging  # noqa: E402
from sync.runs import backfill, sync  # noqa: E402
from sync.settings import Settings, today_in  # noqa: E402


def empty_target(url: str) -> None:
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        main = Path(str(parsed.database))
        # dlt's SQLite destination keeps each dataset in a database file of its own beside the main
        # one (`<name>__<dataset>.db`): left behind, the next load merges into the last run's rows.
        for path in [main, *main.parent.glob(f"{main.stem}__*")]:
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        import psycopg  # here, not at the top: a SQLite run must not carry the driver kapture-sync would not load

        admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (parsed.database,)).fetchone():
                conn.execute(f'CREATE DATABASE "{parsed.database}"')
        dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=50.0, help="KAPTURE_REQUESTS_PER_SECOND (0: unpaced)")
    parser.add_argument("--database-url", default="sqlite:////tmp/kapture-bench.db")
    args = parser.parse_args()
    configure_logging()

    empty_target(args.database_url)
    emulator, url = start_emulator(args.orders, args.days, seed=42)
    try:
        settings = Settings(
            base_url=url,
            username="demo",
            password="demo",
            cm_id=1000298,
            database_url=args.database_url,
            page_size=args.page_size,
            requests_per_second=args.rate,
        )
        engine = make_engine(settings.database_url)
        with make_http_client(settings) as http:
            client = make_client(settings, http)
            first = today_in(settings.zone) - timedelta(days=args.days)
            started = time.perf_counter()
            result = backfill(engine, client, settings, first)
            elapsed = time.perf_counter() - started
            print(
                f"backfill: {result.totals.records_fetched:,} orders in {elapsed:.2f}s = "
                f"{result.totals.records_fetched / elapsed:,.0f} orders/s, {result.totals.requests} requests, "
                f"{result.totals.load.inserted:,} inserted"
            )
            for label in ("first sync after the backfill", "second sync"):
                started = time.perf_counter()
                again = sync(engine, client, settings)
                elapsed = time.perf_counter() - started
                print(
                    f"{label} (nothing changed, {again.planned_windows} windows re-read): "
                    f"{again.totals.records_fetched:,} orders in {elapsed:.2f}s = "
                    f"{again.totals.records_fetched / max(elapsed, 1e-9):,.0f} orders/s, "
                    f"{again.totals.requests} requests, {again.totals.load.unchanged:,} unchanged"
                )
        engine.dispose()
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"peak RSS of the syncing process: {peak_mib:,.0f} MiB  (target {args.database_url.split(':')[0]}, "
            f"page size {args.page_size}, pid {os.getpid()})"
        )
    finally:
        emulator.terminate()
        emulator.wait(10)


if __name__ == "__main__":
    main()
