"""docs/queries.sql: each of the ten example queries runs unchanged on both databases with a checked answer."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, select, text

from sync.models import OrderVersion
from sync.runs import backfill, sync
from sync.windows import from_ms, to_ms
from tests.conftest import settings_for
from tests.helpers import stored

QUERIES = Path(__file__).resolve().parent.parent / "docs" / "queries.sql"
KOLKATA = ZoneInfo("Asia/Kolkata")
CM_ID = 1000298
NAMES = {"AP": "approved", "PN": "pending", "DL": "delivered", "CN": "cancelled", "RT": "returned"}


def queries() -> dict[str, str]:
    found = {}
    for block in re.split(r"^-- name: ", QUERIES.read_text(encoding="utf-8"), flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        found[name.strip()] = body
    return found


def test_there_are_ten_named_queries():
    assert len(queries()) == 10


def day_of(moment: datetime) -> str:
    return moment.astimezone(KOLKATA).date().isoformat()


def plain(value: Any) -> Any:
    """Values as comparable across drivers: dates as ISO text, amounts as Decimal, datetimes aware UTC."""
    if isinstance(value, float):
        return Decimal(repr(round(value, 8)))
    if isinstance(value, Decimal):
        return value.normalize()
    if isinstance(value, datetime):
        return value.astimezone(UTC)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, str) and re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", value):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value


@pytest.fixture
def answers(start_emulator, engine: Engine, database_url, connect):
    """Backfill, then two rounds of edits (some orders delivered, some changed after): run every query."""
    emu, serving = start_emulator(orders=300, days=10)
    settings = settings_for(serving.url, database_url, lookback_days=12)
    client = connect(settings)
    backfill(engine, client, settings, datetime.now(UTC).date() - timedelta(days=12))
    for _ in range(3):
        emu.store.edit(n=40)
        sync(engine, client, settings)
    since = (datetime.now(KOLKATA).date() - timedelta(days=7)).isoformat()
    with engine.connect() as conn:
        results = {
            name: [tuple(plain(v) for v in row) for row in conn.execute(text(sql), {"cm_id": CM_ID, "since": since})]
            for name, sql in queries().items()
        }
        versions = conn.execute(select(OrderVersion).where(OrderVersion.cm_id == CM_ID)).all()
    return results, stored(engine), versions, since


def test_each_query_answers_its_question(answers):
    results, orders, versions, since = answers
    by_order: dict[int, list[Any]] = defaultdict(list)
    for v in versions:
        by_order[v.id].append(v)
    for chain in by_order.values():
        chain.sort(key=lambda v: (v.last_modification_time, v.first_seen_at))

    days: dict[str, list[Any]] = defaultdict(list)
    for o in orders.values():
        days[day_of(o.create_date)].append(o)
    assert results["orders_per_day"] == [
        (d, len(os), len({o.customer_id for o in os}), sum(o.product_value for o in os).normalize())
        for d, os in sorted(days.items())
    ]

    changes = [
        (v.id, before.delivery_status, v.delivery_status, v.last_modification_time)
        for chain in by_order.values()
        for before, v in zip(chain, chain[1:], strict=False)
        if before.delivery_status != v.delivery_status and day_of(v.last_modification_time) >= since
    ]
    assert results["status_changes_since"] == sorted(changes, key=lambda c: (c[3], c[0])) and changes

    value: dict[int, Decimal] = defaultdict(Decimal)
    for o in orders.values():
        value[o.customer_id] += o.product_value
    count = Counter(o.customer_id for o in orders.values())
    top = sorted(value, key=lambda c: (-value[c], c))[:10]
    assert results["top_customers_by_value"] == [(c, count[c], value[c].normalize()) for c in top]

    after = sorted(
        i
        for i, chain in by_order.items()
        if any(
            v.delivery_status == "DL" and any(w.last_modification_time > v.last_modification_time for w in chain)
            for v in chain
        )
    )
    assert results["changed_after_delivery"] == [(i,) for i in after] and after

    delivered = {}
    for i, chain in by_order.items():
        for before, v in zip(chain, chain[1:], strict=False):
            if v.delivery_status == "DL" and before.delivery_status != "DL":
                age = int(v.last_modification_time.timestamp()) - int(v.create_date.timestamp())
                delivered[i] = min(age, delivered.get(i, age))
    assert results["time_to_delivery"] == sorted(delivered.items()) and delivered

    mix = Counter(NAMES[o.delivery_status] for o in orders.values())
    assert results["current_status_mix"] == sorted(mix.items())

    assert results["cancellations_per_day"] == [
        (d, sum(o.delivery_status == "CN" for o in os), len(os)) for d, os in sorted(days.items())
    ]

    edited = sorted(((i, len(c)) for i, c in by_order.items() if len(c) > 1), key=lambda x: (-x[1], x[0]))
    assert results["most_edited_orders"] == edited and edited

    open_orders = Counter(o.assigned_to_id for o in orders.values() if o.delivery_status in ("AP", "PN"))
    assert results["open_orders_per_assignee"] == sorted(open_orders.items(), key=lambda x: (-x[1], x[0]))

    [(watermark, lag, read, windows)] = results["how_fresh"]
    assert watermark == max(o.last_modification_time for o in orders.values())
    assert lag >= 0 and read == windows > 10
    assert from_ms(to_ms(watermark)) == watermark
