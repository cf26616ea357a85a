"""Where a backfill's CPU goes on this machine: the sync process, its worker, the emulator.

    .venv/bin/python bench/cpu_split.py --database sqlite --orders 100000 2>/dev/null
    .venv/bin/python bench/cpu_split.py --database postgresql --orders 100000 2>/dev/null

One backfill at default settings (90 days) from the emulator in its own process. It prints the
wall time and orders/s, and the CPU seconds of the sync process (fetching threads and writer),
of its worker process(es) (`sync/worker.py`, counted once they have exited), and of the emulator
serving the requests (it serves from memory: about 2 us an order). With two cores,
orders / (total CPU / 2) bounds what any schedule of the same work could reach here;
PostgreSQL's own server processes come on top of that.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from emulator_throughput import start_emulator  # noqa: E402
from sync_throughput import empty_target  # noqa: E402

from sync.client import make_client, make_http_client  # noqa: E402
from sync.db import make_engine  # noqa: E402
from sync.logs import configure_logging  # noqa: E402
from sync.memory import tune_malloc  # noqa: E402
from sync.runs import backfill  # noqa: E402
from sync.settings import Settings, today_in  # noqa: E402

URLS = {
    "sqlite": "sqlite:////tmp/kapture-cpu-split.db",
    "postgresql": "postgresql://postgres@127.0.0.1:5432/kapture_bench",
}


def process_cpu(pid: int) -> float:
    """User + system seconds of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", choices=sorted(URLS), default="sqlite")
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    tune_malloc()
    configure_logging()  # JSON lines on stderr, as the CLI writes them
    emulator, base_url = start_emulator(args.orders, args.days, seed=7)
    try:
        database_url = URLS[args.database]
        empty_target(database_url)
        settings = Settings(
            base_url=base_url, username="demo", password="demo", cm_id=1000298, database_url=database_url
        )
        engine = make_engine(database_url)
        emulator_before = process_cpu(emulator.pid)
        own_before = time.process_time()
        started = time.perf_counter()
        with make_http_client(settings) as http:
            result = backfill(
                engine, make_client(settings, http), settings, today_in(settings.zone) - timedelta(days=args.days)
            )
        seconds = time.perf_counter() - started
        own = time.process_time() - own_before
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        worker = children.ru_utime + children.ru_stime
        served = process_cpu(emulator.pid) - emulator_before
    finally:
        emulator.kill()
    orders = result.totals.records_fetched
    total = own + worker + served
    rate = orders / seconds
    requests = result.totals.requests
    print(f"{args.database}: {orders:,} orders in {seconds:.2f}s = {rate:,.0f} orders/s, {requests} requests")
    print(f"CPU seconds: sync process {own:.1f}, worker {worker:.1f}, emulator {served:.1f}, total {total:.1f}")
    each = {name: cpu / orders * 1e6 for name, cpu in (("sync", own), ("worker", worker), ("emulator", served))}
    print("per order: " + ", ".join(f"{name} {us:.0f} us" for name, us in each.items()))
    print(f"two cores fully used could reach at most {orders / (total / 2):,.0f} orders/s with this work")


if __name__ == "__main__":
    main()
