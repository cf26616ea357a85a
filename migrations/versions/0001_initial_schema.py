"""Initial schema: orders, sync_state, sync_windows, sync_runs and rejected_records.

Revision ID: 0001
Revises:
Create Date: 2026-11-29 09:58:39.681255
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Raw records: JSONB on PostgreSQL so analysts can index and query them, JSON elsewhere.
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("cm_id", sa.BigInteger(), nullable=False),
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("enquiry_id", sa.BigInteger(), nullable=True),
        sa.Column("create_date", sa.DateTime(timezone=True), nullable=False),
        sa.Column("creator_id", sa.BigInteger(), nullable=True),
        sa.Column("product_quantity", sa.Integer(), nullable=True),
        sa.Column("product_value", sa.Numeric(), nullable=True),
        sa.Column("discount", sa.Numeric(), nullable=True),
        sa.Column("remarks", sa.Text(), nullable=True),
        sa.Column("delivery_status", sa.Text(), nullable=True),
        sa.Column("last_modification_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unit_id", sa.BigInteger(), nullable=True),
        sa.Column("block_id", sa.BigInteger(), nullable=True),
        sa.Column("zone_id", sa.BigInteger(), nullable=True),
        sa.Column("base_price", sa.Numeric(), nullable=True),
        sa.Column("service_tax", sa.Numeric(), nullable=True),
        sa.Column("booking_amount", sa.Numeric(), nullable=True),
        sa.Column("retainer_frequency", sa.Integer(), nullable=True),
        sa.Column("retainer_amount", sa.Numeric(), nullable=True),
        sa.Column("sub_office_id", sa.BigInteger(), nullable=True),
        sa.Column("retainer_credit_period", sa.Integer(), nullable=True),
        sa.Column("parent_order_id", sa.BigInteger(), nullable=True),
        sa.Column("assigned_to_id", sa.BigInteger(), nullable=True),
        sa.Column("invoice_sent", sa.Boolean(), nullable=True),
        sa.Column("commission_amount", sa.Numeric(), nullable=True),
        sa.Column("total_saleable_area", sa.Numeric(), nullable=True),
        sa.Column("builder_invoice_id", sa.BigInteger(), nullable=True),
        sa.Column("enquiry_assigned_to", sa.BigInteger(), nullable=True),
        sa.Column("selling_price", sa.Numeric(), nullable=True),
        sa.Column("cess", sa.Numeric(), nullable=True),
        sa.Column("extra_charges", sa.Numeric(), nullable=True),
        sa.Column("warranty_in_days", sa.Integer(), nullable=True),
        sa.Column("parent_customer_id", sa.BigInteger(), nullable=True),
        sa.Column("checked_in", sa.Boolean(), nullable=True),
        sa.Column("include_interest", sa.Boolean(), nullable=True),
        sa.Column("channel_id", sa.BigInteger(), nullable=True),
        sa.Column("delivered_order_id", sa.BigInteger(), nullable=True),
        sa.Column("commission_paid_amount", sa.Numeric(), nullable=True),
        sa.Column("onward_cruise_id", sa.BigInteger(), nullable=True),
        sa.Column("return_cruise_id", sa.BigInteger(), nullable=True),
        sa.Column("approved_by_employee_id", sa.BigInteger(), nullable=True),
        sa.Column("vatamount", sa.Numeric(), nullable=True),
        sa.Column("raw", JSON_DOCUMENT, nullable=False),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cm_id", "id", name=op.f("pk_orders")),
    )
    op.create_index(op.f("ix_orders_cm_id_create_date"), "orders", ["cm_id", "create_date"], unique=False)
    op.create_index(
        op.f("ix_orders_cm_id_last_modification_time"), "orders", ["cm_id", "last_modification_time"], unique=False
    )
    op.create_index(op.f("ix_orders_customer_id"), "orders", ["customer_id"], unique=False)
    op.create_index(op.f("ix_orders_delivery_status"), "orders", ["delivery_status"], unique=False)
    op.create_table(
        "rejected_records",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cm_id", sa.BigInteger(), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raw", JSON_DOCUMENT, nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seen_count", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rejected_records")),
        sa.UniqueConstraint("cm_id", "fingerprint", name=op.f("uq_rejected_records_cm_id_fingerprint")),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("cm_id", sa.BigInteger(), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("windows", sa.Integer(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("records_fetched", sa.Integer(), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("details", JSON_DOCUMENT, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    op.create_index(
        op.f("ix_sync_runs_cm_id_stream_started_at"), "sync_runs", ["cm_id", "stream", "started_at"], unique=False
    )
    op.create_table(
        "sync_state",
        sa.Column("cm_id", sa.BigInteger(), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("watermark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("active_run_id", sa.Integer(), nullable=True),
        sa.Column("active_window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=255), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("cm_id", "stream", name=op.f("pk_sync_state")),
    )
    op.create_table(
        "sync_windows",
        sa.Column("cm_id", sa.BigInteger(), nullable=False),
        sa.Column("stream", sa.String(length=64), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_scanned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scanned_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scan_floor", sa.DateTime(timezone=True), nullable=True),
        sa.Column("order_count", sa.Integer(), nullable=True),
        sa.Column("max_last_modification_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("changes_found", sa.Integer(), nullable=True),
        sa.Column("scans", sa.Integer(), nullable=False),
        sa.Column("progress_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress_floor", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress_watermark", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress_slice_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress_slice_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress_offset", sa.Integer(), nullable=True),
        sa.Column("progress_seen", sa.Integer(), nullable=True),
        sa.Column("progress_changes", sa.Integer(), nullable=True),
        sa.Column("progress_max_lmt", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("cm_id", "stream", "window_start", name=op.f("pk_sync_windows")),
    )


def downgrade() -> None:
    op.drop_table("sync_windows")
    op.drop_table("sync_state")
    op.drop_index(op.f("ix_sync_runs_cm_id_stream_started_at"), table_name="sync_runs")
    op.drop_table("sync_runs")
    op.drop_table("rejected_records")
    op.drop_index(op.f("ix_orders_delivery_status"), table_name="orders")
    op.drop_index(op.f("ix_orders_customer_id"), table_name="orders")
    op.drop_index(op.f("ix_orders_cm_id_last_modification_time"), table_name="orders")
    op.drop_index(op.f("ix_orders_cm_id_create_date"), table_name="orders")
    op.drop_table("orders")
