"""Assertions shared by the tests: what the database holds, compared with what the emulator served."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from sync.models import Order, RejectedRecord, SyncRun
from sync.windows import from_ms


def storable(record: dict[str, Any]) -> bool:
    """What a user expects to land in `orders`: an integer id and both timestamps present."""
    identifier = record.get("id")
    has_id = isinstance(identifier, int) or (isinstance(identifier, str) and identifier.strip().isdigit())
    return has_id and record.get("createDate") is not None and record.get("lastModificationTime") is not None


def stored(engine: Engine, cm_id: int = 1000298) -> dict[int, Order]:
    with Session(engine) as session:
        rows = session.execute(select(Order).where(Order.cm_id == cm_id)).scalars().all()
        session.expunge_all()
    return {row.id: row for row in rows}


def assert_equals_truth(engine: Engine, truth: list[dict[str, Any]], cm_id: int = 1000298) -> None:
    """Every storable served order is there once, equal to the served version, and nothing else is."""
    expected = {int(r["id"]): r for r in truth if storable(r)}
    rows = stored(engine, cm_id)
    missing = sorted(set(expected) - set(rows))
    extra = sorted(set(rows) - set(expected))
    assert not missing, f"{len(missing)} orders missing, e.g. {missing[:5]}"
    assert not extra, f"{len(extra)} orders that were never served, e.g. {extra[:5]}"
    for order_id, record in expected.items():
        row = rows[order_id]
        assert row.raw == record, f"order {order_id}: stored raw differs from what was served"
        assert row.create_date == from_ms(int(record["createDate"]))
        assert row.last_modification_time == from_ms(int(record["lastModificationTime"]))
        if record.get("productValue") is not None:
            assert row.product_value == Decimal(str(record["productValue"]))
        if isinstance(record.get("invoiceSent"), bool):
            assert row.invoice_sent is record["invoiceSent"]


def runs(engine: Engine) -> list[SyncRun]:
    with Session(engine) as session:
        result = session.execute(select(SyncRun).order_by(SyncRun.id)).scalars().all()
        session.expunge_all()
    return list(result)


def rejected(engine: Engine) -> list[RejectedRecord]:
    with Session(engine) as session:
        result = session.execute(select(RejectedRecord).order_by(RejectedRecord.id)).scalars().all()
        session.expunge_all()
    return list(result)


@dataclass
class Differences:
    """How the database differs from what Kapture serves, by order id (empty lists: no difference)."""

    missing: list[int] = field(default_factory=list)  # served, storable, not in `orders`
    extra: list[int] = field(default_factory=list)  # in `orders`, never served
    stale: list[int] = field(default_factory=list)  # stored, but not the version served now
    doubled: list[int] = field(default_factory=list)  # stored more than once

    def __bool__(self) -> bool:
        return bool(self.missing or self.extra or self.stale or self.doubled)


def truth_differences(
    engine: Engine,
    truth: list[dict[str, Any]],
    required: Callable[[dict[str, Any]], bool] = lambda record: True,
    cm_id: int = 1000298,
) -> Differences:
    """What `assert_equals_truth` checks, counted instead of asserted, so a long walk can go on and
    report every violation. Only storable records for which `required(record)` holds must be
    present and equal; any stored id that was never served counts as extra."""
    expected = {int(r["id"]): r for r in truth if storable(r)}
    query = select(Order.id, Order.raw, Order.create_date, Order.last_modification_time).where(Order.cm_id == cm_id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    counts = Counter(row.id for row in rows)
    found = {row.id: row for row in rows}
    differences = Differences(
        extra=sorted(set(found) - set(expected)), doubled=sorted(i for i, n in counts.items() if n > 1)
    )
    for order_id, record in expected.items():
        if not required(record):
            continue
        row = found.get(order_id)
        if row is None:
            differences.missing.append(order_id)
        elif (
            row.raw != record
            or row.create_date != from_ms(int(record["createDate"]))
            or row.last_modification_time != from_ms(int(record["lastModificationTime"]))
        ):
            differences.stale.append(order_id)
    return differences
