"""Order history and what the analysts' views need: order_versions, sync_accounts, zone offsets, status names.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:00:00

Every order already stored gets its current version as its first history row (`first_seen_at` is
its `synced_at`), in one INSERT ... SELECT inside the database, so memory stays flat.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from sync.zones import offset_rules

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
VERSION_COLUMNS = (
    "cm_id",
    "id",
    "last_modification_time",
    "fingerprint",
    "create_date",
    "customer_id",
    "delivery_status",
    "product_quantity",
    "product_value",
    "discount",
    "selling_price",
    "assigned_to_id",
    "invoice_sent",
    "raw",
)
# The codes the emulator generates and Kapture's sample shows ("AP"). Kapture documents no names:
# these are our reading, kept in a table so an account can correct or extend them.
DELIVERY_STATUSES = (
    ("AP", "approved"),
    ("PN", "pending"),
    ("DL", "delivered"),
    ("CN", "cancelled"),
    ("RT", "returned"),
)
DEFAULT_ZONE = "Asia/Kolkata"


def _utc_for(dialect: str, moment: datetime) -> datetime:
    """What the app's UTCDateTime stores: aware on PostgreSQL, naive UTC on SQLite."""
    return moment.astimezone(UTC).replace(tzinfo=None) if dialect == "sqlite" else moment


def upgrade() -> None:
    op.create_table(
        "order_versions",
        sa.Column("cm_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("last_modification_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("create_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("delivery_status", sa.Text(), nullable=True),
        sa.Column("product_quantity", sa.Integer(), nullable=True),
        sa.Column("product_value", sa.Numeric(), nullable=True),
        sa.Column("discount", sa.Numeric(), nullable=True),
        sa.Column("selling_price", sa.Numeric(), nullable=True),
        sa.Column("assigned_to_id", sa.BigInteger(), nullable=True),
        sa.Column("invoice_sent", sa.Boolean(), nullable=True),
        sa.Column("raw", JSON_DOCUMENT, nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cm_id", "id", "last_modification_time", "fingerprint", name=op.f("pk_order_versions")),
    )
    op.create_index(
        op.f("ix_order_versions_cm_id_last_modification_time"),
        "order_versions",
        ["cm_id", "last_modification_time"],
        unique=False,
    )
    op.create_table(
        "sync_accounts",
        sa.Column("cm_id", sa.BigInteger(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("lookback_days", sa.Integer(), nullable=True),
        sa.Column("rescan_factor", sa.Float(), nullable=True),
        sa.Column("rescan_horizon_days", sa.Integer(), nullable=True),
        sa.Column("window_seconds", sa.Integer(), nullable=True),
        sa.Column("history", sa.Boolean(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cm_id", name=op.f("pk_sync_accounts")),
    )
    zones = op.create_table(
        "sync_zone_offsets",
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("utc_offset_seconds", sa.Integer(), nullable=False),
        sa.Column("abbreviation", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("zone", "starts_at", name=op.f("pk_sync_zone_offsets")),
    )
    statuses = op.create_table(
        "delivery_statuses",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_delivery_statuses")),
    )
    dialect = op.get_bind().dialect.name
    op.bulk_insert(statuses, [{"code": code, "name": name} for code, name in DELIVERY_STATUSES])
    op.bulk_insert(
        zones,
        [
            {
                "zone": DEFAULT_ZONE,
                "starts_at": _utc_for(dialect, start),
                "utc_offset_seconds": offset,
                "abbreviation": abbr,
            }
            for start, offset, abbr in offset_rules(DEFAULT_ZONE)
        ],
    )
    columns = ", ".join(VERSION_COLUMNS)
    op.execute(
        f"INSERT INTO order_versions ({columns}, first_seen_at) "
        f"SELECT {columns}, synced_at FROM orders WHERE fingerprint IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("delivery_statuses")
    op.drop_table("sync_zone_offsets")
    op.drop_table("sync_accounts")
    op.drop_index(op.f("ix_order_versions_cm_id_last_modification_time"), table_name="order_versions")
    op.drop_table("order_versions")
