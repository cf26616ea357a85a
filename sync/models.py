"""The tables: `orders` for analysts, plus the sync's own memory (state, window ledger, runs, rejects).

Typed SQLAlchemy 2.0 models are the single source of the schema; Alembic's `env.py` reads this
metadata, and a test proves the migration and these models agree on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend: TIMESTAMPTZ on PostgreSQL, naive UTC text on SQLite."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Amount(TypeDecorator[Decimal]):
    """NUMERIC everywhere; on SQLite, whose NUMERIC keeps a double, read back by its shortest repr.

    SQLite turns `1234567.89` into the nearest double; `Decimal(repr(double))` gives the same
    `1234567.89` back for every amount of up to 15 significant digits, where SQLAlchemy's default
    fixed 10-digit scale would show `1234567.8899999999`.
    """

    impl = Numeric
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Numeric(asdecimal=False))
        return dialect.type_descriptor(Numeric(asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name == "sqlite":
            return float(value)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None or isinstance(value, Decimal):
            return value
        return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


JSONDocument = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


_COLUMN_TYPES: dict[str, Any] = {
    "id": BigInteger,
    "timestamp": UTCDateTime,
    "int": Integer,
    "amount": Amount,
    "text": Text,
    "flag": Boolean,
}


class Order(Base):
    """One row per order and account, equal to the last version Kapture served."""

    __tablename__ = "orders"

    cm_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    enquiry_id: Mapped[int | None] = mapped_column(BigInteger)
    create_date: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    creator_id: Mapped[int | None] = mapped_column(BigInteger)
    product_quantity: Mapped[int | None] = mapped_column(Integer)
    product_value: Mapped[Decimal | None] = mapped_column(Amount)
    discount: Mapped[Decimal | None] = mapped_column(Amount)
    remarks: Mapped[str | None] = mapped_column(Text)
    delivery_status: Mapped[str | None] = mapped_column(Text)
    last_modification_time: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    unit_id: Mapped[int | None] = mapped_column(BigInteger)
    block_id: Mapped[int | None] = mapped_column(BigInteger)
    zone_id: Mapped[int | None] = mapped_column(BigInteger)
    base_price: Mapped[Decimal | None] = mapped_column(Amount)
    service_tax: Mapped[Decimal | None] = mapped_column(Amount)
    booking_amount: Mapped[Decimal | None] = mapped_column(Amount)
    retainer_frequency: Mapped[int | None] = mapped_column(Integer)
    retainer_amount: Mapped[Decimal | None] = mapped_column(Amount)
    sub_office_id: Mapped[int | None] = mapped_column(BigInteger)
    retainer_credit_period: Mapped[int | None] = mapped_column(Integer)
    parent_order_id: Mapped[int | None] = mapped_column(BigInteger)
    assigned_to_id: Mapped[int | None] = mapped_column(BigInteger)
    invoice_sent: Mapped[bool | None] = mapped_column(Boolean)
    commission_amount: Mapped[Decimal | None] = mapped_column(Amount)
    total_saleable_area: Mapped[Decimal | None] = mapped_column(Amount)
    builder_invoice_id: Mapped[int | None] = mapped_column(BigInteger)
    enquiry_assigned_to: Mapped[int | None] = mapped_column(BigInteger)
    selling_price: Mapped[Decimal | None] = mapped_column(Amount)
    cess: Mapped[Decimal | None] = mapped_column(Amount)
    extra_charges: Mapped[Decimal | None] = mapped_column(Amount)
    warranty_in_days: Mapped[int | None] = mapped_column(Integer)
    parent_customer_id: Mapped[int | None] = mapped_column(BigInteger)
    checked_in: Mapped[bool | None] = mapped_column(Boolean)
    include_interest: Mapped[bool | None] = mapped_column(Boolean)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    delivered_order_id: Mapped[int | None] = mapped_column(BigInteger)
    commission_paid_amount: Mapped[Decimal | None] = mapped_column(Amount)
    onward_cruise_id: Mapped[int | None] = mapped_column(BigInteger)
    return_cruise_id: Mapped[int | None] = mapped_column(BigInteger)
    approved_by_employee_id: Mapped[int | None] = mapped_column(BigInteger)
    vatamount: Mapped[Decimal | None] = mapped_column(Amount)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONDocument, nullable=False)
    # SHA-256 of `raw` with sorted keys: tells a change saved under an unchanged
    # `lastModificationTime` from the stored version (NULL only for rows written by hand).
    fingerprint: Mapped[str | None] = mapped_column(String(64))
    synced_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # When a read of the order's window, stable in count, stopped serving it (opt-in; never removed).
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index(None, "cm_id", "create_date"),
        Index(None, "cm_id", "last_modification_time"),
        Index(None, "customer_id"),
        Index(None, "delivery_status"),
    )


class SyncState(Base):
    """Per account and stream: the watermark, and the lease that keeps two runs apart."""

    __tablename__ = "sync_state"

    cm_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    watermark: Mapped[datetime | None] = mapped_column(UTCDateTime)
    active_run_id: Mapped[int | None] = mapped_column(Integer)
    active_window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    lease_owner: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class SyncWindow(Base):
    """The window ledger: one row per create-date window, its last full scan and any scan in progress."""

    __tablename__ = "sync_windows"

    cm_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    # The last complete scan.
    last_scanned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scanned_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The account's watermark when the last complete scan began: every version modified up to then
    # was served by that scan, so later scans need not compare rows at or below it.
    scan_floor: Mapped[datetime | None] = mapped_column(UTCDateTime)
    order_count: Mapped[int | None] = mapped_column(Integer)
    max_last_modification_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    changes_found: Mapped[int | None] = mapped_column(Integer)
    scans: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # A scan in progress: where a killed run resumes.
    progress_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress_floor: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress_watermark: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress_slice_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress_slice_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    progress_offset: Mapped[int | None] = mapped_column(Integer)
    progress_seen: Mapped[int | None] = mapped_column(Integer)
    progress_changes: Mapped[int | None] = mapped_column(Integer)
    progress_max_lmt: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SyncRun(Base):
    """One row per run, written when it starts and updated with every committed page."""

    __tablename__ = "sync_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cm_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    stream: Mapped[str] = mapped_column(String(64), nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    windows: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    pages: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    requests: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    records_fetched: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    inserted: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    updated: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    unchanged: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    rejected: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)

    __table_args__ = (Index(None, "cm_id", "stream", "started_at"),)


class RejectedRecord(Base):
    """A served record that could not be stored, kept with its payload and reason, once per payload."""

    __tablename__ = "rejected_records"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cm_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    stream: Mapped[str] = mapped_column(String(64), nullable=False)
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(Text, nullable=False)
    raw: Mapped[Any] = mapped_column(JSONDocument, nullable=False)
    fingerprint: Mapped[str] = mapped_column(String(64), nullable=False)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    window_end: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    seen_count: Mapped[int] = mapped_column(Integer, nullable=False, default=1)
    run_id: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (UniqueConstraint("cm_id", "fingerprint"),)


# --- for analysts (issue 10): history, and what the views need to know -------------------------


class OrderVersion(Base):
    """Every distinct version of an order that a read saw, written in the page's transaction."""

    __tablename__ = "order_versions"

    cm_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    last_modification_time: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    create_date: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    delivery_status: Mapped[str | None] = mapped_column(Text)
    product_quantity: Mapped[int | None] = mapped_column(Integer)
    product_value: Mapped[Decimal | None] = mapped_column(Amount)
    discount: Mapped[Decimal | None] = mapped_column(Amount)
    selling_price: Mapped[Decimal | None] = mapped_column(Amount)
    assigned_to_id: Mapped[int | None] = mapped_column(BigInteger)
    invoice_sent: Mapped[bool | None] = mapped_column(Boolean)
    raw: Mapped[dict[str, Any]] = mapped_column(JSONDocument, nullable=False)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (Index(None, "cm_id", "last_modification_time"),)


class SyncAccount(Base):
    """Per account, what the views must know and the last run wrote: its zone and its schedule."""

    __tablename__ = "sync_accounts"

    cm_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False)
    lookback_days: Mapped[int | None] = mapped_column(Integer)
    rescan_factor: Mapped[float | None] = mapped_column(Float)
    rescan_horizon_days: Mapped[int | None] = mapped_column(Integer)
    window_seconds: Mapped[int | None] = mapped_column(Integer)
    history: Mapped[bool | None] = mapped_column(Boolean)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class ZoneOffset(Base):
    """A zone's UTC offset from `starts_at` until the next row: SQLite has no zone database of its own."""

    __tablename__ = "sync_zone_offsets"

    zone: Mapped[str] = mapped_column(String(64), primary_key=True)
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    utc_offset_seconds: Mapped[int] = mapped_column(Integer, nullable=False)
    abbreviation: Mapped[str | None] = mapped_column(String(16))


class DeliveryStatus(Base):
    """Readable names for `deliveryStatus` codes; editable, since Kapture documents none of them."""

    __tablename__ = "delivery_statuses"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(Text, nullable=False)


class SyncField(Base):
    """A field Kapture serves that is not documented, per account: when it first appeared, and where."""

    __tablename__ = "sync_fields"

    cm_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    stream: Mapped[str] = mapped_column(String(64), primary_key=True)
    field: Mapped[str] = mapped_column(String(255), primary_key=True)
    first_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    first_order_id: Mapped[int | None] = mapped_column(BigInteger)
    run_id: Mapped[int | None] = mapped_column(Integer)
