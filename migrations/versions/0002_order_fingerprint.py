"""Orders gain a content fingerprint, so a change saved under an unchanged stamp is stored.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 03:00:00

Existing rows get the fingerprint of their stored `raw`, computed here the way kapture-sync
computes it (SHA-256 of the JSON with sorted keys), in batches so memory stays flat.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import orjson
import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 5000


def _fingerprint(raw: Any) -> str:
    if isinstance(raw, str):  # SQLite hands JSON back as text when read without its type
        raw = orjson.loads(raw)
    return hashlib.sha256(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS)).hexdigest()


def upgrade() -> None:
    op.add_column("orders", sa.Column("fingerprint", sa.String(length=64), nullable=True))
    bind = op.get_bind()
    orders = sa.table(
        "orders",
        sa.column("cm_id", sa.BigInteger()),
        sa.column("id", sa.BigInteger()),
        sa.column("raw", sa.JSON()),
        sa.column("fingerprint", sa.String()),
    )
    last: tuple[int, int] = (-(2**63), -(2**63))
    while True:
        rows = bind.execute(
            sa.select(orders.c.cm_id, orders.c.id, orders.c.raw)
            .where(sa.tuple_(orders.c.cm_id, orders.c.id) > sa.tuple_(sa.literal(last[0]), sa.literal(last[1])))
            .order_by(orders.c.cm_id, orders.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        bind.execute(
            orders.update()
            .where(orders.c.cm_id == sa.bindparam("k_cm_id"), orders.c.id == sa.bindparam("k_id"))
            .values(fingerprint=sa.bindparam("k_fingerprint")),
            [{"k_cm_id": r.cm_id, "k_id": r.id, "k_fingerprint": _fingerprint(r.raw)} for r in rows],
        )
        last = (rows[-1].cm_id, rows[-1].id)


def downgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("fingerprint")
