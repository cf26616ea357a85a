"""The performance benchmark of issue 9: one command, both databases, default settings, dlt beside us.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/performance.py            # writes bench/results/performance.{json,md,png}

For each database (SQLite file, PostgreSQL at 127.0.0.1:5432) it starts the emulator (its own
process) and measures, each in a fresh child process whose CPU seconds and peak RSS are taken
from the kernel (`wait4`):

- a backfill of every size in `--sizes` (default 100,000 and 1,000,000 orders over 90 days);
- at the first size: a no-change `sync`, then a `sync` after 1% of the orders changed (edited in
  the look-back, where `sync` reads), then dlt loading the same orders into the same kind of
  database (a merge on `id`, its defaults otherwise), and the ratio;
- a backfill with 100 ms of latency per request (`--latency-orders`), against the ceiling of a
  one-request-at-a-time reader at the same page size: orders / (requests x 100 ms).

Every run uses the default settings (page size, concurrency, request budget, commit batching);
nothing is tuned for the benchmark. Results: a Markdown table, JSON, and a PNG of orders/s and
peak RSS against the number of orders.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

if sys.argv[1:2] == ["child"] and sys.argv[2:3] != ["dlt"]:
    # A kapture-sync child runs as a default install would. httpx imports `rich` for its own command
    # line whenever it is installed (+6 MiB); here it is, only because dlt (the bench extra) needs
    # it, and a default install of kapture-sync has none. Without it, the import fails as it would there.
    sys.modules["rich"] = None  # type: ignore[assignment]

import httpx  # noqa: E402
import orjson  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from emulator_throughput import ENDPOINT, start_emulator  # noqa: E402
from sync_throughput import empty_target  # noqa: E402

PG = "postgresql://postgres@127.0.0.1:5432/kapture_bench"
CM_ID = 1000298


# --- children: each measured run is its own process ---------------------------------------------


def child_sync(kind: str, database_url: str, base_url: str, days: int) -> dict[str, Any]:
    from sync.client import make_client, make_http_client
    from sync.db import make_engine
    from sync.logs import configure_logging
    from sync.memory import tune_malloc
    from sync.runs import backfill, sync
    from sync.settings import Settings, today_in

    tune_malloc()  # as `kapture-sync` does first thing
    configure_logging()
    settings = Settings(base_url=base_url, username="demo", password="demo", cm_id=CM_ID, database_url=database_url)
    engine = make_engine(settings.database_url)
    with make_http_client(settings) as http:
        client = make_client(settings, http)
        started = time.perf_counter()
        if kind == "backfill":
            result = backfill(engine, client, settings, today_in(settings.zone) - timedelta(days=days))
        else:
            result = sync(engine, client, settings)
        seconds = time.perf_counter() - started
    t = result.totals
    return {
        "seconds": seconds,
        "orders": t.records_fetched,
        "requests": t.requests,
        "inserted": t.load.inserted,
        "updated": t.load.updated,
        "unchanged": t.load.unchanged,
        "windows": result.planned_windows,
        "page_size": settings.page_size,
        "concurrency": settings.concurrency,
        "requests_per_second": settings.requests_per_second,
    }


def child_dlt(database_url: str, base_url: str, days: int, page_size: int) -> dict[str, Any]:
    """dlt 1.31 paging the same API the same way (one-day windows, limit/offset) into the same database."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    import dlt

    today = datetime.now(ZoneInfo("Asia/Kolkata")).date()
    served = 0

    @dlt.resource(name="orders", primary_key="id", write_disposition="merge")
    def orders():  # type: ignore[no-untyped-def]
        nonlocal served
        with httpx.Client(base_url=base_url, auth=("demo", "demo"), timeout=60) as client:
            for back in range(days, -1, -1):
                day = (today - timedelta(days=back)).isoformat()
                offset = 0
                while True:
                    body = {
                        "cmId": CM_ID,
                        "createStartDate": day,
                        "createEndDate": day,
                        "limit": str(page_size),
                        "offset": str(offset),
                    }
                    headers = {"Content-Type": "application/json"}
                    response = client.post(ENDPOINT, content=orjson.dumps(body), headers=headers)
                    page = orjson.loads(response.content)["order_details"]
                    if not page:
                        break
                    served += len(page)
                    offset += len(page)
                    yield page

    if database_url.startswith("sqlite"):
        destination = dlt.destinations.sqlalchemy(credentials=database_url)
    else:
        # dlt's own postgres destination (psycopg2, COPY-based); it insists on a password, which trust auth ignores
        destination = dlt.destinations.postgres(credentials=database_url.replace("postgres@", "postgres:unused@", 1))
    workdir = tempfile.mkdtemp(prefix="dlt-bench-")
    pipeline = dlt.pipeline(
        pipeline_name="kapture_bench", destination=destination, dataset_name="dlt_orders", pipelines_dir=workdir
    )
    started = time.perf_counter()
    pipeline.run(orders())
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "orders": served}


# --- the parent ---------------------------------------------------------------------------------


def measured(args: list[str]) -> dict[str, Any]:
    """Run a child, return its JSON answer plus its CPU seconds and peak RSS (MiB) from wait4."""
    process = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "child", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    out = process.stdout.read()
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"child {args} failed with status {process.returncode}")
    answer = json.loads(out.strip().splitlines()[-1])
    answer["cpu_seconds"] = usage.ru_utime + usage.ru_stime
    answer["peak_rss_mib"] = usage.ru_maxrss / 1024
    answer["orders_per_second"] = answer["orders"] / answer["seconds"] if answer["seconds"] else 0.0
    return answer


def control(base_url: str, method: str, path: str, body: dict[str, Any]) -> Any:
    with httpx.Client(base_url=base_url, timeout=600) as client:
        response = client.request(method, f"/_emulator/{path}", content=orjson.dumps(body))
        response.raise_for_status()
        return response.json()


def fresh(db: str, label: str) -> str:
    """An empty target database; on PostgreSQL also a quiet server: the checkpoint that writing and
    dropping the previous measurement's rows (3 GB after the 1,000,000-order backfill) would start
    runs before this measurement, not during it (it cost a following 6-second run ~15%)."""
    url = f"sqlite:////tmp/kapture-bench-{label}.db" if db == "sqlite" else f"{PG}_{label}".replace("-", "_")
    empty_target(url)
    if db != "sqlite":
        import psycopg

        with psycopg.connect(PG.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
    return url


def line(label: str, r: dict[str, Any]) -> str:
    return (
        f"{label:<44} {r['orders']:>9,} orders {r['seconds']:>7.2f}s {r['orders_per_second']:>9,.0f}/s "
        f"cpu {r.get('cpu_seconds', 0):>6.1f}s rss {r.get('peak_rss_mib', 0):>5.0f} MiB"
    )


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    sizes = [int(s) for s in args.sizes.split(",")]
    results: dict[str, Any] = {"sizes": sizes, "days": args.days, "databases": {}}
    for db in args.databases.split(","):
        out: dict[str, Any] = {"backfill": {}}
        results["databases"][db] = out
        for n in sizes:
            emulator, base_url = start_emulator(n, args.days, seed=42)
            try:
                url = fresh(db, f"{db}-{n}")
                r = out["backfill"][str(n)] = measured(["backfill", url, base_url, str(args.days)])
                print(line(f"{db} backfill {n:,}", r), flush=True)
                if n != sizes[0]:
                    continue
                r = out["no_change_sync"] = measured(["sync", url, base_url, str(args.days)])
                print(line(f"{db} sync, nothing changed", r) + f" ({r['inserted'] + r['updated']} written)", flush=True)
                control(base_url, "POST", "edits", {"count": n // 100})
                r = out["changed_sync"] = measured(["sync", url, base_url, str(args.days)])
                print(line(f"{db} sync, 1% ({n // 100:,}) changed", r) + f" ({r['updated']} updated)", flush=True)
                if not args.no_dlt:
                    durl = fresh(db, f"{db}-dlt")
                    ours = out["backfill"][str(n)]
                    r = out["dlt"] = measured(["dlt", durl, base_url, str(args.days), str(ours["page_size"])])
                    r["ratio"] = ours["orders_per_second"] / r["orders_per_second"]
                    print(line(f"{db} dlt 1.31 load {n:,}", r) + f"  -> kapture-sync is {r['ratio']:.1f}x", flush=True)
            finally:
                emulator.terminate()
                emulator.wait(30)
        emulator, base_url = start_emulator(args.latency_orders, args.days, seed=42)
        try:
            control(base_url, "PUT", "faults", {"latency_ms": 100})
            url = fresh(db, f"{db}-latency")
            r = out["latency"] = measured(["backfill", url, base_url, str(args.days)])
            r["sequential_ceiling"] = r["orders"] / (r["requests"] * 0.1)
            r["ratio"] = r["orders_per_second"] / r["sequential_ceiling"]
            print(
                line(f"{db} backfill, 100 ms per request", r)
                + f"  ceiling {r['sequential_ceiling']:,.0f}/s -> {r['ratio']:.1f}x",
                flush=True,
            )
        finally:
            emulator.terminate()
            emulator.wait(30)
    return results


def table(results: dict[str, Any]) -> str:
    dbs = list(results["databases"])
    rows = ["| measurement | " + " | ".join(dbs) + " |", "| --- |" + " --- |" * len(dbs)]

    def cell(r: dict[str, Any] | None, extra: str = "") -> str:
        if not r:
            return "not run"
        return (
            f"{r['orders_per_second']:,.0f} orders/s ({r['orders']:,} in {r['seconds']:.1f} s), "
            f"{r['cpu_seconds']:.1f} CPU s, {r['peak_rss_mib']:.0f} MiB{extra}"
        )

    def row(label: str, pick: Any) -> None:
        rows.append(f"| {label} | " + " | ".join(pick(results["databases"][d]) for d in dbs) + " |")

    for n in results["sizes"]:
        row(f"backfill {n:,}", lambda out, n=n: cell(out["backfill"].get(str(n))))

    def quiet(out: dict[str, Any]) -> str:
        r = out["no_change_sync"]
        return cell(r, f", {r['requests']} requests, {r['inserted'] + r['updated']} rows written")

    row("sync, nothing changed", quiet)
    row("sync, 1% changed", lambda out: cell(out["changed_sync"], f", {out['changed_sync']['updated']:,} updated"))
    if all("dlt" in results["databases"][d] for d in dbs):
        row(
            f"dlt 1.31, same {results['sizes'][0]:,} orders",
            lambda out: cell(out["dlt"], f"; kapture-sync **{out['dlt']['ratio']:.1f}x** dlt"),
        )

    def slow(out: dict[str, Any]) -> str:
        r = out["latency"]
        ceiling = f"; one-request-at-a-time ceiling {r['sequential_ceiling']:,.0f}/s: **{r['ratio']:.1f}x**"
        return cell(r, f", {r['requests']} requests" + ceiling)

    row("backfill, 100 ms per request", slow)
    return "\n".join(rows) + "\n"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (rate_ax, rss_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for db, out in results["databases"].items():
        sizes = [int(n) for n in out["backfill"]]
        label = f"kapture-sync, {db}"
        rate_ax.plot(sizes, [out["backfill"][str(n)]["orders_per_second"] for n in sizes], "o-", label=label)
        rss_ax.plot(sizes, [out["backfill"][str(n)]["peak_rss_mib"] for n in sizes], "o-", label=label)
        if "dlt" in out:
            dlt_rate = [out["dlt"]["orders_per_second"]]
            rate_ax.plot([results["sizes"][0]], dlt_rate, "x", markersize=10, label=f"dlt 1.31, {db}")
    rate_ax.set(xscale="log", xlabel="orders backfilled", ylabel="orders per second")
    rate_ax.set_title("Backfill throughput (default settings)")
    rate_ax.set_ylim(bottom=0)
    rss_ax.axhline(150, color="grey", linestyle="--", linewidth=1, label="150 MB target")
    rss_ax.set(xscale="log", xlabel="orders backfilled", ylabel="peak RSS (MiB)")
    rss_ax.set_title("Peak memory of the syncing process")
    rss_ax.set_ylim(bottom=0)
    for ax in (rate_ax, rss_ax):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        kind, url, base_url, days = sys.argv[2:6]
        if kind == "dlt":
            answer = child_dlt(url, base_url, int(days), int(sys.argv[6]))
        else:
            answer = child_sync(kind, url, base_url, int(days))
        print(json.dumps(answer))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="orders per backfill, comma-separated")
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--latency-orders", type=int, default=100_000)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--no-dlt", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = run_all(args)
    results["machine"] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    (args.out / "performance.json").write_text(json.dumps(results, indent=2) + "\n")
    text = table(results)
    (args.out / "performance.md").write_text(text)
    plot(results, args.out / "performance.png")
    print()
    print(text)
    print(f"wrote {args.out / 'performance.json'}, {args.out / 'performance.md'}, {args.out / 'performance.png'}")


if __name__ == "__main__":
    main()
