"""What PostgreSQL's server spends on the `order_versions` copy of a backfill's rows, per statement form.

    .venv/bin/python bench/history_copy.py                  # 100,000 orders, pages of 1,000, 3 rounds

`orders` is filled once with the emulator's orders (history off), then `order_versions` is
emptied and filled from it page by page, one transaction a page, as `sync.history` copies a
page's rows, in each of three forms, rounds alternating:

- `ON CONFLICT DO NOTHING`: what every page sends (`sync/history.py`);
- a plain `INSERT ... SELECT` under a savepoint: what commit 63cff54 sent for a page's orders new
  to `orders`, taken back (docs/performance.md says why);
- a plain `INSERT ... SELECT`: the same without the savepoint, for scale.

Prints the server backend's CPU (from /proc, so only for a server on this machine) and the wall
time, in µs an order.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from cpu_split import URLS, process_cpu  # noqa: E402
from db_floor import CM_ID, Variant, fresh_engine, write_all  # noqa: E402
from sqlalchemy import Engine, text  # noqa: E402

from sync.driver import driver  # noqa: E402
from sync.emulator import Emulator, EmulatorConfig  # noqa: E402
from sync.history import ON_CONFLICT, POSTGRESQL_COPY  # noqa: E402
from sync.prepare import prepare  # noqa: E402

PLAIN = POSTGRESQL_COPY.removesuffix(ON_CONFLICT)
FORMS = {
    "ON CONFLICT DO NOTHING": (None, POSTGRESQL_COPY, None),
    "plain, under a savepoint": ("SAVEPOINT copy", PLAIN, "RELEASE SAVEPOINT copy"),
    "plain": (None, PLAIN, None),
}


Form = tuple[str | None, str, str | None]  # before, the copy, after


def copy_all(engine: Engine, ids: list[int], page: int, form: Form) -> tuple[float, float]:
    """Server CPU and wall seconds to copy `ids` into an empty `order_versions`, a page a transaction."""
    before, statement, after = form
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE order_versions"))
    with engine.connect() as conn:
        raw = driver(conn)
        with raw.cursor() as cursor:
            pid = cursor.execute("SELECT pg_backend_pid()").fetchone()[0]
            raw.commit()
            cpu, wall = process_cpu(pid), time.perf_counter()
            for start in range(0, len(ids), page):
                if before:
                    cursor.execute(before)
                cursor.execute(statement, (CM_ID, ids[start : start + page]), prepare=False)
                if after:
                    cursor.execute(after)
                raw.commit()
            return process_cpu(pid) - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    records = Emulator(EmulatorConfig(orders=args.orders, days=90, seed=7)).store.truth()
    history_off = Variant("history off", 5000, False, True)
    engine = fresh_engine(URLS["postgresql"], history_off)
    rows = [row for row in prepare(records, CM_ID, "postgresql") if isinstance(row, tuple)]
    write_all(engine, rows, history_off)
    ids = [row[0] for row in rows]
    print(f"{len(ids):,} orders in `orders`, copied into `order_versions` {args.page:,} a transaction; µs an order")
    print("| form | " + " | ".join(f"round {n + 1} server CPU / wall" for n in range(args.rounds)) + " |")
    print("| --- |" + " --- |" * args.rounds)
    results: dict[str, list[str]] = {name: [] for name in FORMS}
    for _ in range(args.rounds):
        for name, form in FORMS.items():
            cpu, wall = copy_all(engine, ids, args.page, form)
            results[name].append(f"{cpu / len(ids) * 1e6:.1f} / {wall / len(ids) * 1e6:.1f}")
    for name, cells in results.items():
        print(f"| {name} | " + " | ".join(cells) + " |")
    engine.dispose()


if __name__ == "__main__":
    main()
