"""Views for analysts, and the data dictionary as PostgreSQL comments.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 09:30:00

The same view names and columns on both databases; only the expressions for local time and
epoch seconds differ. PostgreSQL converts with `AT TIME ZONE` and its tz database; SQLite has no
zone database, so its views look up the offset in force in `sync_zone_offsets` (one row per
change of offset, DST included). Local times are `timestamp without time zone` on PostgreSQL and
ISO text (`YYYY-MM-DD HH:MM:SS.SSS`, days `YYYY-MM-DD`) on SQLite.

`DICTIONARY` is the meaning of every table, view and column: written as COMMENT ON on PostgreSQL
here, and rendered into docs/schema.md by `python -m sync.schema_doc`. A later revision that adds
or changes columns carries its own `DICTIONARY` with the new meanings.

A later migration that rebuilds `orders` (SQLite batch mode) must drop these views first and
create them again after (`drop_views()` / `create_views()`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_ZONE = "Asia/Kolkata"
# The orders columns shown as they are in `orders_current`, in `orders` order.
PLAIN_ORDER_COLUMNS = (
    "customer_id",
    "enquiry_id",
    "creator_id",
    "product_quantity",
    "product_value",
    "discount",
    "remarks",
    "unit_id",
    "block_id",
    "zone_id",
    "base_price",
    "service_tax",
    "booking_amount",
    "retainer_frequency",
    "retainer_amount",
    "sub_office_id",
    "retainer_credit_period",
    "parent_order_id",
    "assigned_to_id",
    "invoice_sent",
    "commission_amount",
    "total_saleable_area",
    "builder_invoice_id",
    "enquiry_assigned_to",
    "selling_price",
    "cess",
    "extra_charges",
    "warranty_in_days",
    "parent_customer_id",
    "checked_in",
    "include_interest",
    "channel_id",
    "delivered_order_id",
    "commission_paid_amount",
    "onward_cruise_id",
    "return_cruise_id",
    "approved_by_employee_id",
    "vatamount",
)


class Dialect:
    """The few expressions that differ between PostgreSQL and SQLite."""

    def __init__(self, name: str) -> None:
        self.name = name

    def zone(self, account: str) -> str:
        return f"COALESCE({account}.timezone, '{DEFAULT_ZONE}')"

    def _offset(self, moment: str, zone: str) -> str:
        return (
            f"(SELECT z.utc_offset_seconds FROM sync_zone_offsets z WHERE z.zone = {zone} "
            f"AND z.starts_at <= {moment} ORDER BY z.starts_at DESC LIMIT 1) || ' seconds'"
        )

    def local(self, moment: str, zone: str) -> str:
        if self.name == "postgresql":
            return f"({moment} AT TIME ZONE {zone})"
        return f"strftime('%Y-%m-%d %H:%M:%f', {moment}, {self._offset(moment, zone)})"

    def day(self, moment: str, zone: str) -> str:
        if self.name == "postgresql":
            return f"CAST({moment} AT TIME ZONE {zone} AS DATE)"
        return f"date({moment}, {self._offset(moment, zone)})"

    def epoch(self, moment: str) -> str:
        if self.name == "postgresql":
            return f"CAST(FLOOR(EXTRACT(EPOCH FROM {moment})) AS BIGINT)"
        return f"CAST(strftime('%s', {moment}) AS INTEGER)"

    @property
    def now_epoch(self) -> str:
        return self.epoch("now()") if self.name == "postgresql" else "CAST(strftime('%s', 'now') AS INTEGER)"

    def total(self, amount: str) -> str:
        """A sum of amounts; SQLite adds doubles, so round away the binary noise (amounts have <= 8 places)."""
        return f"SUM({amount})" if self.name == "postgresql" else f"ROUND(SUM({amount}), 8)"


def _orders_current(d: Dialect) -> str:
    tz = d.zone("acc")
    plain = ", ".join(f"o.{c}" for c in PLAIN_ORDER_COLUMNS)
    return f"""
SELECT o.cm_id, o.id, {tz} AS timezone,
       o.create_date, {d.local("o.create_date", tz)} AS create_date_local,
       {d.day("o.create_date", tz)} AS create_day_local,
       o.last_modification_time, {d.local("o.last_modification_time", tz)} AS last_modification_time_local,
       o.delivery_status, COALESCE(s.name, o.delivery_status) AS delivery_status_name,
       {plain}, o.raw, o.fingerprint, o.synced_at
FROM orders o
LEFT JOIN sync_accounts acc ON acc.cm_id = o.cm_id
LEFT JOIN delivery_statuses s ON s.code = o.delivery_status"""


def _orders_daily(d: Dialect) -> str:
    return f"""
SELECT cm_id, create_day_local AS day, timezone, COUNT(*) AS orders, COUNT(DISTINCT customer_id) AS customers,
       {d.total("product_value")} AS product_value, {d.total("selling_price")} AS selling_price
FROM orders_current
GROUP BY cm_id, create_day_local, timezone"""


def _orders_daily_status(d: Dialect) -> str:
    return f"""
SELECT cm_id, create_day_local AS day, timezone, delivery_status, delivery_status_name, COUNT(*) AS orders,
       {d.total("product_value")} AS product_value, {d.total("selling_price")} AS selling_price
FROM orders_current
GROUP BY cm_id, create_day_local, timezone, delivery_status, delivery_status_name"""


def _order_status_changes(d: Dialect) -> str:
    tz = d.zone("acc")
    order = "PARTITION BY v.cm_id, v.id ORDER BY v.last_modification_time, v.first_seen_at"
    return f"""
WITH seq AS (
    SELECT v.*, LAG(v.delivery_status) OVER ({order}) AS previous_status, ROW_NUMBER() OVER ({order}) AS version
    FROM order_versions v
)
SELECT seq.cm_id, seq.id, seq.customer_id, {tz} AS timezone, seq.create_date,
       seq.last_modification_time AS changed_at, {d.local("seq.last_modification_time", tz)} AS changed_at_local,
       {d.day("seq.last_modification_time", tz)} AS changed_day_local,
       seq.previous_status AS from_status, seq.delivery_status AS to_status,
       COALESCE(s.name, seq.delivery_status) AS to_status_name,
       {d.epoch("seq.last_modification_time")} - {d.epoch("seq.create_date")} AS order_age_seconds,
       seq.product_value, seq.first_seen_at
FROM seq
LEFT JOIN sync_accounts acc ON acc.cm_id = seq.cm_id
LEFT JOIN delivery_statuses s ON s.code = seq.delivery_status
WHERE seq.version = 1 OR COALESCE(seq.previous_status, '') <> COALESCE(seq.delivery_status, '')"""


def _sync_freshness(d: Dialect) -> str:
    tz = d.zone("acc")
    same = "w.cm_id = st.cm_id AND w.stream = st.stream"
    return f"""
SELECT st.cm_id, st.stream, {tz} AS timezone, st.watermark, {d.local("st.watermark", tz)} AS watermark_local,
       {d.now_epoch} - {d.epoch("st.watermark")} AS lag_seconds,
       (SELECT MAX(r.finished_at) FROM sync_runs r
        WHERE r.cm_id = st.cm_id AND r.stream = st.stream AND r.outcome = 'success') AS last_success_at,
       (SELECT COUNT(*) FROM sync_windows w WHERE {same}) AS windows,
       (SELECT COUNT(w.last_scanned_at) FROM sync_windows w WHERE {same}) AS windows_read,
       (SELECT MIN(w.last_scanned_at) FROM sync_windows w WHERE {same}) AS least_recent_read_at,
       acc.lookback_days, acc.rescan_factor, acc.rescan_horizon_days
FROM sync_state st
LEFT JOIN sync_accounts acc ON acc.cm_id = st.cm_id"""


def _read_within(seconds: str) -> str:
    return (
        f"CASE WHEN {seconds} IS NULL THEN 'never' WHEN {seconds} < 3600 THEN 'hour' "
        f"WHEN {seconds} < 86400 THEN 'day' WHEN {seconds} < 604800 THEN 'week' "
        f"WHEN {seconds} < 2592000 THEN 'month' ELSE 'older' END"
    )


def _sync_window_coverage(d: Dialect) -> str:
    tz = d.zone("acc")
    since = f"({d.now_epoch} - {d.epoch('w.last_scanned_at')})"
    return f"""
SELECT w.cm_id, w.stream, w.window_start, w.window_end, {d.day("w.window_start", tz)} AS window_day_local,
       w.last_scanned_at, {since} AS seconds_since_read, {_read_within(since)} AS read_within,
       w.scans, w.order_count, w.changes_found, w.progress_started_at
FROM sync_windows w
LEFT JOIN sync_accounts acc ON acc.cm_id = w.cm_id"""


EDIT_AGE_BUCKETS = ((3600, "0-1h"), (86400, "1h-1d"), (604800, "1d-7d"), (2592000, "7d-30d"), (7776000, "30d-90d"))


def _order_edit_ages(d: Dialect) -> str:
    age = f"({d.epoch('v.last_modification_time')} - {d.epoch('v.create_date')})"
    label = " ".join(f"WHEN {age} < {limit} THEN '{name}'" for limit, name in EDIT_AGE_BUCKETS)
    rank = " ".join(f"WHEN {age} < {limit} THEN {i}" for i, (limit, _) in enumerate(EDIT_AGE_BUCKETS, 1))
    return f"""
SELECT v.cm_id, v.id, v.create_date, v.last_modification_time, v.first_seen_at, {age} AS edit_age_seconds,
       CASE {label} ELSE 'over 90d' END AS edit_age_bucket,
       CASE {rank} ELSE {len(EDIT_AGE_BUCKETS) + 1} END AS bucket_order
FROM order_versions v
WHERE v.last_modification_time > v.create_date"""


def _order_edit_age_histogram(d: Dialect) -> str:
    return """
SELECT cm_id, bucket_order, edit_age_bucket, COUNT(*) AS edits
FROM order_edit_ages
GROUP BY cm_id, bucket_order, edit_age_bucket"""


def _order_edit_age_summary(d: Dialect) -> str:
    def percentile(p: int) -> str:  # nearest rank: the smallest age with at least p% of edits at or below it
        return f"MIN(CASE WHEN 100 * rn >= {p} * n THEN edit_age_seconds END) AS p{p}_seconds"

    beyond = "SELECT COUNT(*) FROM order_edit_ages e WHERE e.cm_id = s.cm_id AND e.edit_age_seconds >"
    return f"""
WITH ranked AS (
    SELECT cm_id, edit_age_seconds,
           ROW_NUMBER() OVER (PARTITION BY cm_id ORDER BY edit_age_seconds) AS rn,
           COUNT(*) OVER (PARTITION BY cm_id) AS n
    FROM order_edit_ages
), stats AS (
    SELECT cm_id, COUNT(*) AS edits, {percentile(50)}, {percentile(90)}, {percentile(99)},
           MAX(edit_age_seconds) AS max_seconds
    FROM ranked
    GROUP BY cm_id
)
SELECT s.cm_id, s.edits, s.p50_seconds, s.p90_seconds, s.p99_seconds, s.max_seconds,
       CASE WHEN s.p99_seconds < 86400 THEN 1 ELSE (s.p99_seconds + 86399) / 86400 END AS lookback_days_for_p99,
       acc.lookback_days, acc.rescan_horizon_days,
       ({beyond} acc.lookback_days * 86400) AS edits_beyond_lookback,
       ({beyond} acc.rescan_horizon_days * 86400) AS edits_beyond_horizon
FROM stats s
LEFT JOIN sync_accounts acc ON acc.cm_id = s.cm_id"""


# In creation order (later views read earlier ones).
VIEWS: tuple[tuple[str, Callable[[Dialect], str]], ...] = (
    ("orders_current", _orders_current),
    ("orders_daily", _orders_daily),
    ("orders_daily_status", _orders_daily_status),
    ("order_status_changes", _order_status_changes),
    ("sync_freshness", _sync_freshness),
    ("sync_window_coverage", _sync_window_coverage),
    ("order_edit_ages", _order_edit_ages),
    ("order_edit_age_histogram", _order_edit_age_histogram),
    ("order_edit_age_summary", _order_edit_age_summary),
)


def create_views() -> None:
    dialect = Dialect(op.get_bind().dialect.name)
    for name, body in VIEWS:
        op.execute(f"CREATE VIEW {name} AS {body(dialect)}")


def drop_views() -> None:
    for name, _ in reversed(VIEWS):
        op.execute(f"DROP VIEW IF EXISTS {name}")


# --- the data dictionary ---------------------------------------------------------------------------
# Kapture documents only `cmId` and the customer id; every other field's meaning below is read from its
# name and the vendor's sample, and says so by naming the API field it comes from.
_ORDER_FIELDS = {
    "cm_id": "Kapture account id (`cmId`)",
    "id": "Kapture order id (`id`)",
    "customer_id": "Kapture customer id (`customerId`)",
    "enquiry_id": "enquiry (lead) the order came from (`enquiryId`)",
    "create_date": "when the order was created, UTC (`createDate`, epoch ms)",
    "creator_id": "employee who created the order (`creatorId`)",
    "product_quantity": "quantity ordered (`productQuantity`)",
    "product_value": "order value before discount and tax (`productValue`)",
    "discount": "discount amount (`discount`)",
    "remarks": "free-text remarks (`remarks`)",
    "delivery_status": "delivery status code: AP, PN, DL, CN, RT, ... (`deliveryStatus`); names in `delivery_statuses`",
    "last_modification_time": "when Kapture last changed the order, UTC (`lastModificationTime`, epoch ms)",
    "unit_id": "`unitId` as served",
    "block_id": "`blockId` as served",
    "zone_id": "`zoneId` as served (a Kapture zone id, not a time zone)",
    "base_price": "unit price (`basePrice`)",
    "service_tax": "tax amount (`serviceTax`)",
    "booking_amount": "booking amount (`bookingAmount`)",
    "retainer_frequency": "`retainerFrequency` as served",
    "retainer_amount": "`retainerAmount` as served",
    "sub_office_id": "`subOfficeId` as served",
    "retainer_credit_period": "`retainerCreditPeriod` as served",
    "parent_order_id": "parent order id, 0 when none (`parentOrderId`)",
    "assigned_to_id": "employee the order is assigned to (`assignedToId`)",
    "invoice_sent": "whether the invoice was sent (`invoiceSent`)",
    "commission_amount": "`commissionAmount` as served",
    "total_saleable_area": "`totalSaleableArea` as served",
    "builder_invoice_id": "`builderInvoiceId` as served",
    "enquiry_assigned_to": "employee the enquiry is assigned to (`enquiryAssignedTo`)",
    "selling_price": "total charged (`sellingPrice`)",
    "cess": "cess amount (`cess`)",
    "extra_charges": "extra charges (`extraCharges`)",
    "warranty_in_days": "`warrantyInDays` as served",
    "parent_customer_id": "`parentCustomerId` as served",
    "checked_in": "`checkedIn` as served",
    "include_interest": "`includeInterest` as served",
    "channel_id": "sales channel id (`channelId`)",
    "delivered_order_id": "`deliveredOrderId` as served",
    "commission_paid_amount": "`commissionPaidAmount` as served",
    "onward_cruise_id": "`onwardCruiseId` as served",
    "return_cruise_id": "`returnCruiseId` as served",
    "approved_by_employee_id": "employee who approved the order (`approvedByEmployeeId`)",
    "vatamount": "VAT amount (`vatamount`)",
    "raw": "the record exactly as served, keys sorted (JSONB on PostgreSQL); undocumented fields included",
    "fingerprint": "SHA-256 of `raw` as JSON with sorted keys: tells a change saved under an unchanged stamp",
    "synced_at": "when kapture-sync last wrote this row, UTC",
}
_STATE = {
    "cm_id": "Kapture account id",
    "stream": "what is synced of the account (`orders`)",
}
_WINDOW_PROGRESS = "of the read in progress (NULL when none): where a killed run resumes"
_V = "timestamp (local)"
_D = "date (local)"
_TZ = ("text", "the account's IANA zone (`sync_accounts.timezone`, else Asia/Kolkata)")

# name -> (meaning, {column: meaning}) for tables; for views {column: (type, meaning)}, where a None type
# or meaning is that of the same column of `orders`.
DICTIONARY: dict[str, tuple[str, dict[str, object]]] = {
    "orders": ("one row per order and account: the last version Kapture served", dict(_ORDER_FIELDS)),
    "order_versions": (
        "every distinct version of an order that a read saw (id, stamp and content), written in the same "
        "transaction as `orders`; edits made between two reads of a window collapse into one version",
        {
            **{c: _ORDER_FIELDS[c] for c in ("cm_id", "id", "create_date", "customer_id", "delivery_status")},
            "last_modification_time": "the version's `lastModificationTime`, UTC",
            "fingerprint": "SHA-256 of the version's `raw`: two versions may share a stamp, never a fingerprint",
            **{
                c: _ORDER_FIELDS[c]
                for c in ("product_quantity", "product_value", "discount", "selling_price", "assigned_to_id")
            },
            "invoice_sent": _ORDER_FIELDS["invoice_sent"],
            "raw": "the version exactly as served",
            "first_seen_at": "when a read first stored this version, UTC",
        },
    ),
    "rejected_records": (
        "each distinct served payload that could not be stored, with the reason",
        {
            "id": "row id",
            "cm_id": "Kapture account id",
            "stream": _STATE["stream"],
            "order_id": "the record's order id, when it had a usable one",
            "reason": "why it was rejected, field by field (e.g. `id: missing; createDate: null`)",
            "raw": "the payload as served (NUL characters spelt `\\u0000`)",
            "fingerprint": "SHA-256 of the payload: one row per distinct payload",
            "window_start": "start of the create-date window it was served in, UTC",
            "window_end": "end of that window, UTC",
            "first_seen_at": "first time it was served, UTC",
            "last_seen_at": "last time it was served, UTC",
            "seen_count": "how many reads served it",
            "run_id": "the last run that saw it (`sync_runs.id`)",
        },
    ),
    "sync_runs": (
        "one row per run of backfill, sync or reconcile",
        {
            "id": "run id",
            "cm_id": "Kapture account id",
            "stream": _STATE["stream"],
            "kind": "backfill, sync or reconcile",
            "started_at": "start, UTC",
            "finished_at": "end, UTC (NULL while running)",
            "outcome": "running, success, failed, interrupted or refused (another process held the account)",
            "windows": "windows read completely",
            "pages": "pages committed",
            "requests": "HTTP requests sent, retries included",
            "records_fetched": "records served",
            "inserted": "orders stored for the first time",
            "updated": "orders stored in a newer or different version",
            "unchanged": "orders served as already stored",
            "rejected": "records that could not be stored",
            "error": "one line naming the cause of a failure",
            "details": "JSON: planned windows by reason, changes by order age, rows checked below the floor",
        },
    ),
    "sync_state": (
        "per account and stream: the watermark and the record of the run holding the account",
        {
            **_STATE,
            "watermark": "greatest `lastModificationTime` committed, UTC",
            "active_run_id": "run that last committed a page",
            "active_window_start": "window that run was reading",
            "lease_owner": "`host:pid:token` of the run holding the account (a record; the lock decides)",
            "lease_expires_at": "until when `status` shows that holder without a page renewing it",
            "updated_at": "last change of this row, UTC",
        },
    ),
    "sync_windows": (
        "the window ledger: one row per create-date window, its last complete read and any read in progress",
        {
            **_STATE,
            "window_start": "window start (local midnight or grid point of the account's zone), UTC",
            "window_end": "window end, UTC",
            "last_scanned_at": "when the window was last read completely, UTC",
            "scanned_end": "the fixed end of that read (a window read while open ends at that run's start)",
            "scan_floor": "watermark when that read began: versions at or below it were served by it",
            "order_count": "orders that read served",
            "max_last_modification_time": "greatest stamp that read served",
            "changes_found": "orders that read inserted or updated",
            "scans": "complete reads so far",
            "progress_started_at": f"start {_WINDOW_PROGRESS}",
            "progress_end": f"fixed end {_WINDOW_PROGRESS}",
            "progress_floor": f"floor {_WINDOW_PROGRESS}",
            "progress_watermark": f"watermark at the start {_WINDOW_PROGRESS}",
            "progress_slice_start": f"slice start {_WINDOW_PROGRESS}",
            "progress_slice_end": f"slice end {_WINDOW_PROGRESS}",
            "progress_offset": f"next offset {_WINDOW_PROGRESS}",
            "progress_seen": f"orders seen {_WINDOW_PROGRESS}",
            "progress_changes": f"changes found {_WINDOW_PROGRESS}",
            "progress_max_lmt": f"greatest stamp {_WINDOW_PROGRESS}",
        },
    ),
    "sync_accounts": (
        "per account, written by every run: the zone the views show local times in, and the schedule in force",
        {
            "cm_id": "Kapture account id",
            "timezone": "IANA zone of the account (`KAPTURE_TIMEZONE`)",
            "lookback_days": "`KAPTURE_SYNC_LOOKBACK_DAYS` of the last run",
            "rescan_factor": "`KAPTURE_SYNC_RESCAN_FACTOR` of the last run",
            "rescan_horizon_days": "`KAPTURE_SYNC_RESCAN_HORIZON_DAYS` of the last run",
            "window_seconds": "`KAPTURE_SYNC_WINDOW` of the last run, in seconds",
            "history": "whether the last run recorded `order_versions` (`KAPTURE_SYNC_HISTORY`)",
            "updated_at": "when the last run wrote this row, UTC",
        },
    ),
    "sync_zone_offsets": (
        "each zone's UTC offset from `starts_at` until the next row (1970-2100, from Python's zoneinfo): "
        "how SQLite's views turn UTC into local time across daylight-saving changes",
        {
            "zone": "IANA zone",
            "starts_at": "first instant of this offset, UTC",
            "utc_offset_seconds": "local time minus UTC, seconds",
            "abbreviation": "the zone's abbreviation then (IST, EDT, ...)",
        },
    ),
    "delivery_statuses": (
        "readable names for `deliveryStatus` codes. Kapture documents none: these are the codes its sample and "
        "the emulator use, named by us; UPDATE or INSERT rows to correct or extend them",
        {"code": "the code as served (`AP`)", "name": "its readable name (`approved`)"},
    ),
    "alembic_version": ("the schema's migration revision (Alembic)", {"version_num": "current revision"}),
    # --- views ---
    "orders_current": (
        "view: one row per order, `orders` with local times in the account's zone and status names",
        {
            "cm_id": (None, None),
            "id": (None, None),
            "timezone": _TZ,
            "create_date": (None, None),
            "create_date_local": (_V, "`create_date` in the account's zone"),
            "create_day_local": (_D, "the local calendar day of `create_date`"),
            "last_modification_time": (None, None),
            "last_modification_time_local": (_V, "`last_modification_time` in the account's zone"),
            "delivery_status": (None, None),
            "delivery_status_name": ("text", "readable name from `delivery_statuses`, else the code"),
            **{c: (None, None) for c in PLAIN_ORDER_COLUMNS},
            "raw": (None, None),
            "fingerprint": (None, None),
            "synced_at": (None, None),
        },
    ),
    "orders_daily": (
        "view: per account and local create day, orders created that day (in their current state)",
        {
            "cm_id": (None, None),
            "day": (_D, "local calendar day of creation"),
            "timezone": _TZ,
            "orders": ("bigint", "orders created that day"),
            "customers": ("bigint", "distinct customers among them"),
            "product_value": ("numeric", "sum of their `product_value`"),
            "selling_price": ("numeric", "sum of their `selling_price`"),
        },
    ),
    "orders_daily_status": (
        "view: `orders_daily` split by current delivery status",
        {
            "cm_id": (None, None),
            "day": (_D, "local calendar day of creation"),
            "timezone": _TZ,
            "delivery_status": (None, None),
            "delivery_status_name": ("text", "readable name from `delivery_statuses`, else the code"),
            "orders": ("bigint", "orders created that day now in this status"),
            "product_value": ("numeric", "sum of their `product_value`"),
            "selling_price": ("numeric", "sum of their `selling_price`"),
        },
    ),
    "order_status_changes": (
        "view: from `order_versions`, each order's first version seen and every later version whose status "
        "differs from the one before (versions in stamp order)",
        {
            "cm_id": (None, None),
            "id": (None, None),
            "customer_id": (None, None),
            "timezone": _TZ,
            "create_date": (None, None),
            "changed_at": ("timestamp (UTC)", "the version's `last_modification_time`"),
            "changed_at_local": (_V, "`changed_at` in the account's zone"),
            "changed_day_local": (_D, "local calendar day of `changed_at`"),
            "from_status": ("text", "status of the version before (NULL for the first version seen)"),
            "to_status": ("text", "status of this version"),
            "to_status_name": ("text", "readable name of `to_status`"),
            "order_age_seconds": ("bigint", "seconds from `create_date` to `changed_at`"),
            "product_value": (None, None),
            "first_seen_at": ("timestamp (UTC)", "when a read first stored this version"),
        },
    ),
    "sync_freshness": (
        "view: per account and stream, how fresh the data is",
        {
            "cm_id": (None, None),
            "stream": ("text", _STATE["stream"]),
            "timezone": _TZ,
            "watermark": ("timestamp (UTC)", "greatest `lastModificationTime` committed"),
            "watermark_local": (_V, "`watermark` in the account's zone"),
            "lag_seconds": ("bigint", "seconds from the watermark to now (the database's clock)"),
            "last_success_at": ("timestamp (UTC)", "end of the last successful run"),
            "windows": ("bigint", "windows in the ledger"),
            "windows_read": ("bigint", "windows read completely at least once"),
            "least_recent_read_at": ("timestamp (UTC)", "the oldest last complete read among them"),
            "lookback_days": ("integer", "configured look-back of the last run"),
            "rescan_factor": ("float", "configured rescan factor of the last run"),
            "rescan_horizon_days": ("integer", "configured rescan horizon of the last run"),
        },
    ),
    "sync_window_coverage": (
        "view: one row per window of the ledger, by how long ago it was last read completely",
        {
            "cm_id": (None, None),
            "stream": ("text", _STATE["stream"]),
            "window_start": ("timestamp (UTC)", "window start"),
            "window_end": ("timestamp (UTC)", "window end"),
            "window_day_local": (_D, "local calendar day the window starts on"),
            "last_scanned_at": ("timestamp (UTC)", "last complete read (NULL: never)"),
            "seconds_since_read": ("bigint", "seconds since then"),
            "read_within": ("text", "hour, day, week, month, older or never"),
            "scans": ("integer", "complete reads so far"),
            "order_count": ("integer", "orders the last complete read served"),
            "changes_found": ("integer", "changes that read stored"),
            "progress_started_at": ("timestamp (UTC)", "start of a read in progress, if any"),
        },
    ),
    "order_edit_ages": (
        "view: each version in `order_versions` stamped after its order's creation, with its edit age "
        "(`lastModificationTime - createDate`)",
        {
            "cm_id": (None, None),
            "id": (None, None),
            "create_date": (None, None),
            "last_modification_time": ("timestamp (UTC)", "the version's stamp"),
            "first_seen_at": ("timestamp (UTC)", "when a read first stored this version"),
            "edit_age_seconds": ("bigint", "seconds from creation to this version's stamp"),
            "edit_age_bucket": ("text", "0-1h, 1h-1d, 1d-7d, 7d-30d, 30d-90d or over 90d"),
            "bucket_order": ("integer", "1..6, to sort the buckets"),
        },
    ),
    "order_edit_age_histogram": (
        "view: per account, versions by edit-age bucket: the distribution `status` draws",
        {
            "cm_id": (None, None),
            "bucket_order": ("integer", "1..6, to sort the buckets"),
            "edit_age_bucket": ("text", "0-1h, 1h-1d, 1d-7d, 7d-30d, 30d-90d or over 90d"),
            "edits": ("bigint", "versions in the bucket"),
        },
    ),
    "order_edit_age_summary": (
        "view: per account, edit-age percentiles (nearest rank) and the look-back that would have caught "
        "99% of the observed edits on the first sync after them, next to the configured one",
        {
            "cm_id": (None, None),
            "edits": ("bigint", "versions stamped after creation"),
            "p50_seconds": ("bigint", "median edit age"),
            "p90_seconds": ("bigint", "90th percentile"),
            "p99_seconds": ("bigint", "99th percentile"),
            "max_seconds": ("bigint", "oldest edit age seen"),
            "lookback_days_for_p99": ("bigint", "look-back in days that covers p99 (ceil, at least 1)"),
            "lookback_days": ("integer", "configured look-back of the last run"),
            "rescan_horizon_days": ("integer", "configured rescan horizon of the last run"),
            "edits_beyond_lookback": ("bigint", "edits older than the configured look-back when made"),
            "edits_beyond_horizon": ("bigint", "edits older than the horizon: only `reconcile` finds such"),
        },
    ),
}


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _view_column_meaning(column: str, meaning: object) -> str:
    kind_meaning = meaning if isinstance(meaning, tuple) else (None, meaning)
    return str(kind_meaning[1] or _ORDER_FIELDS[column])


def comment_statements() -> list[str]:
    """COMMENT ON every table, view and column the dictionary describes (PostgreSQL only)."""
    statements = []
    for name, (meaning, columns) in DICTIONARY.items():
        kind = "VIEW" if any(name == view for view, _ in VIEWS) else "TABLE"
        statements.append(f"COMMENT ON {kind} {name} IS {_quote(meaning)}")
        for column, column_meaning in columns.items():
            text = _view_column_meaning(column, column_meaning) if kind == "VIEW" else str(column_meaning)
            statements.append(f"COMMENT ON COLUMN {name}.{column} IS {_quote(text)}")
    return statements


def upgrade() -> None:
    create_views()
    if op.get_bind().dialect.name == "postgresql":
        for statement in comment_statements():
            op.execute(statement)


def downgrade() -> None:
    drop_views()
