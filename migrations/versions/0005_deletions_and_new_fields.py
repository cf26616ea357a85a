"""Orders may be marked deleted (opt-in), and undocumented fields Kapture serves are recorded.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 04:10:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DICTIONARY: dict[str, tuple[str, dict[str, str]]] = {
    "orders": (
        "",
        {
            "deleted_at": "when a complete read of the order's window, with the same count as the read before, "
            "no longer served it (KAPTURE_SYNC_DETECT_DELETIONS; never removed; cleared if it is served again)",
        },
    ),
    "sync_fields": (
        "fields Kapture serves that its documentation does not list, per account: kept in orders.raw, "
        "recorded here when first seen",
        {
            "cm_id": "Kapture account id",
            "stream": "the synced stream (orders)",
            "field": "the field's name as served",
            "first_seen_at": "when a run first stored a record carrying it (UTC)",
            "first_order_id": "the first order seen with it",
            "run_id": "the run that first saw it (sync_runs.id)",
        },
    ),
}


def upgrade() -> None:
    op.add_column("orders", sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "sync_fields",
        sa.Column("cm_id", sa.BigInteger(), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("field", sa.String(length=255), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_order_id", sa.BigInteger(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("cm_id", "stream", "field", name=op.f("pk_sync_fields")),
    )
    if op.get_bind().dialect.name == "postgresql":
        for name, (meaning, columns) in DICTIONARY.items():
            if meaning:
                op.execute(f"COMMENT ON TABLE {name} IS {_quote(meaning)}")
            for column, text in columns.items():
                op.execute(f"COMMENT ON COLUMN {name}.{column} IS {_quote(text)}")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def downgrade() -> None:
    op.drop_table("sync_fields")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("deleted_at")
