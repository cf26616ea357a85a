"""`kapture-sync demo`: the product in one command, against the emulator unless credentials are set.

Without an account it starts a local emulator, backfills its history into a fresh SQLite file,
lets new orders arrive and old ones change, runs an incremental sync and a reconcile, and shows
what the database holds. With KAPTURE_BASE_URL (or a config file naming `base_url`) it runs a real
`sync` instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from sqlalchemy import Engine, func, select, text

from sync.client import make_client, make_http_client
from sync.db import make_engine, redact
from sync.models import Order, RejectedRecord
from sync.runs import backfill, reconcile, sync
from sync.settings import Settings, config_path, load_settings, read_config_file, today_in

DEMO_DB = Path("data/demo.db")
OLD_EDIT_AGE_MS = 9 * 86_400_000
EXAMPLE_QUERY = """\
SELECT delivery_status, COUNT(*) AS orders, SUM(product_value) AS value
FROM orders
GROUP BY delivery_status
ORDER BY orders DESC"""


def _show_query(engine: Engine, echo: Callable[[str], None]) -> None:
    echo("\nan analyst's query:\n" + EXAMPLE_QUERY + "\n")
    with engine.connect() as conn:
        for status, orders, value in conn.execute(text(EXAMPLE_QUERY)):
            echo(f"  {status or '-':<6} {orders:>7,} {float(value or 0):>16,.2f}")


def run_demo(orders: int, days: int, database_url: str | None, echo: Callable[[str], None]) -> None:
    if _account_configured():
        _real(database_url, echo)
    else:
        _emulated(orders, days, database_url, echo)


def _account_configured() -> bool:
    """A Kapture account is set up when the environment or the config file names its URL."""
    return bool(os.environ.get("KAPTURE_BASE_URL")) or "base_url" in read_config_file(config_path(None))


def _real(database_url: str | None, echo: Callable[[str], None]) -> None:
    settings: Settings = load_settings({"database_url": database_url})
    echo(f"credentials found: syncing account {settings.cm_id} from {settings.base_url}")
    _sync_and_show(settings, echo)


def _emulated(orders: int, days: int, database_url: str | None, echo: Callable[[str], None]) -> None:
    from sync.emulator import Emulator, EmulatorConfig

    if database_url is None:
        DEMO_DB.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{DEMO_DB}{suffix}").unlink(missing_ok=True)
        database_url = f"sqlite:///{DEMO_DB}"
    emulator = Emulator(EmulatorConfig(orders=orders, days=days, malformed_rate=0.002))
    with emulator.serve(host="127.0.0.1", port=0) as serving:
        echo(
            f"no KAPTURE_BASE_URL: started the Kapture emulator at {serving.url} with {orders:,} orders "
            f"over {days} days"
        )
        settings = Settings(
            base_url=serving.url,
            username="demo",
            password="demo",
            cm_id=emulator.config.cm_id,
            database_url=database_url,
            page_size=500,
        )
        engine = make_engine(settings.database_url)
        with make_http_client(settings) as http:
            client = make_client(settings, http)
            first = today_in(settings.zone) - timedelta(days=days)
            echo("\n$ kapture-sync backfill --from " + first.isoformat())
            echo(backfill(engine, client, settings, first).summary())

            created = emulator.store.create(25)
            now_ms = emulator.store.now_ms()
            old_ids = [
                r["id"]
                for r in emulator.store.truth()
                if isinstance(r.get("id"), int)
                and isinstance(r.get("createDate"), int)
                and now_ms - r["createDate"] > OLD_EDIT_AGE_MS
            ][:3]
            edited = emulator.store.edit(n=40) + (emulator.store.edit(ids=old_ids) if old_ids else [])
            echo(
                f"\nmeanwhile in Kapture: {len(created)} new orders, {len(edited)} edited "
                f"({len(old_ids)} of them created over 9 days ago, outside the 7-day look-back)"
            )
            echo("$ kapture-sync sync")
            echo(sync(engine, client, settings).summary())
            echo("\n$ kapture-sync reconcile   # a full re-scan: what did the incremental run not see?")
            found = reconcile(engine, client, settings)
            echo(found.summary())
            echo(
                f"reconcile found {found.totals.load.inserted + found.totals.load.updated} change(s) the "
                f"incremental runs had not stored: {dict(found.totals.changed_by_age)}"
            )

        with engine.connect() as conn:
            stored = conn.execute(select(func.count()).select_from(Order)).scalar_one()
            rejected = conn.execute(select(func.count()).select_from(RejectedRecord)).scalar_one()
        echo(
            f"\nKapture serves {len(emulator.store.truth()):,} records; the database holds {stored:,} orders "
            f"and {rejected} rejected record(s) with their reasons in `rejected_records`."
        )
        _show_query(engine, echo)
        shown = redact(engine.url)
        echo(f"\ndatabase: {shown}  -  try `kapture-sync status --database-url {shown}`")
        engine.dispose()


def _sync_and_show(settings: Settings, echo: Callable[[str], None]) -> None:
    engine = make_engine(settings.database_url)
    with make_http_client(settings) as http:
        echo(sync(engine, make_client(settings, http), settings).summary())
    _show_query(engine, echo)
    engine.dispose()
