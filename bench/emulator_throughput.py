"""How fast the Kapture emulator serves orders, so it is never a benchmark's bottleneck.

Starts `kapture-sync emulator` in a subprocess (so its CPU time can be measured apart from the
client's), pages through every order by one-day create-date windows with one keep-alive
httpx.Client, checks every order arrived exactly once, and prints orders/s, requests, MB/s and
the emulator's CPU seconds.

    .venv/bin/python bench/emulator_throughput.py --orders 100000 --limit 1000
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import orjson

ENDPOINT = "/ms/customer-search/order-search/api/v1/pull-internal"


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc); None where unavailable."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def start_emulator(orders: int, days: int, seed: int) -> tuple[subprocess.Popen[str], str]:
    """The emulator process and its base URL (read from its first line of output)."""
    code = "from sync.emulator.cli import emulator_command; emulator_command()"
    args = [
        sys.executable,
        "-c",
        code,
        "--port",
        "0",
        "--orders",
        str(orders),
        "--days",
        str(days),
        "--seed",
        str(seed),
    ]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "listening on " not in line:
        process.kill()
        raise SystemExit(f"emulator did not start: {line!r}")
    return process, line.split("listening on ", 1)[1].split()[0]


def page_all(base_url: str, days: int, limit: int) -> tuple[int, int, int, set[int]]:
    """(orders, requests, bytes, ids) after paging every day window with offset paging."""
    today = datetime.now(ZoneInfo("Asia/Kolkata")).date()
    orders = requests = size = 0
    ids: set[int] = set()
    with httpx.Client(base_url=base_url, auth=("demo", "demo"), timeout=30) as client:
        day: date = today - timedelta(days=days)
        while day <= today:
            offset = 0
            while True:
                body = {
                    "cmId": 1000298,
                    "createStartDate": day.isoformat(),
                    "createEndDate": day.isoformat(),
                    "limit": str(limit),
                    "offset": str(offset),
                }
                response = client.post(
                    ENDPOINT, content=orjson.dumps(body), headers={"Content-Type": "application/json"}
                )
                response.raise_for_status()
                page = orjson.loads(response.content)["order_details"]
                requests += 1
                size += len(response.content)
                orders += len(page)
                ids.update(order["id"] for order in page)
                offset += len(page)
                if len(page) < limit:
                    break
            day += timedelta(days=1)
    return orders, requests, size, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    started = time.perf_counter()
    process, url = start_emulator(args.orders, args.days, args.seed)
    print(f"emulator with {args.orders} orders up in {time.perf_counter() - started:.1f}s at {url}")
    try:
        cpu_before = cpu_seconds(process.pid)
        started = time.perf_counter()
        orders, requests, size, ids = page_all(url, args.days, args.limit)
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(process.pid)
    finally:
        process.terminate()
        process.wait(10)
    if orders != args.orders or len(ids) != args.orders:
        raise SystemExit(f"FAILED: served {orders} orders ({len(ids)} distinct), expected {args.orders}")
    print(f"orders:     {orders} (each exactly once)")
    print(f"requests:   {requests} (limit {args.limit}, one-day windows)")
    print(f"wall:       {elapsed:.2f}s")
    print(
        f"throughput: {orders / elapsed:,.0f} orders/s, {requests / elapsed:,.0f} requests/s, "
        f"{size / elapsed / 1e6:.1f} MB/s ({size / 1e6:.1f} MB)"
    )
    if cpu_before is not None and cpu_after is not None:
        cpu = cpu_after - cpu_before
        print(f"emulator:   {cpu:.2f} CPU s -> {orders / max(cpu, 1e-9):,.0f} orders per CPU second")


if __name__ == "__main__":
    main()
