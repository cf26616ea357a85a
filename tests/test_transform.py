"""From a served record to a row: lenient where the meaning is plain, a reason where it is not."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.fields import ORDER_FIELDS
from sync.transform import RAW_JSON, Rejection, record_key, to_row

NOW = datetime(2026, 11, 29, tzinfo=UTC)
GOOD = {
    "id": 23518265,
    "cmId": 1000298,
    "customerId": 191696570,
    "createDate": 1715149492000,
    "lastModificationTime": 1715149493000,
    "productValue": 1499.5,
    "discount": 0,
    "remarks": "café ✓",
    "invoiceSent": False,
    "productQuantity": 2,
    "deliveryStatus": "AP",
}


def test_a_documented_record_maps_to_typed_columns_and_keeps_its_raw_form():
    row = to_row(GOOD, 1000298, NOW)
    assert not isinstance(row, Rejection)
    assert row["create_date"] == datetime(2024, 5, 8, 6, 24, 52, tzinfo=UTC)
    assert row["product_value"] == Decimal("1499.5") and row["discount"] == Decimal(0)
    assert (row["invoice_sent"], row["remarks"], row["customer_id"]) == (False, "café ✓", 191696570)
    assert row["raw"] is GOOD and row["synced_at"] == NOW
    assert set(row) == {f.column for f in ORDER_FIELDS} | {"raw", "fingerprint", "synced_at", RAW_JSON}
    assert orjson.loads(row[RAW_JSON]) == GOOD


def test_numbers_sent_as_strings_are_read_and_unknown_fields_kept():
    record = {**GOOD, "id": "23518265", "productValue": "1499.50", "invoiceSent": "true", "loyaltyTier": "gold"}
    row = to_row(record, 1000298, NOW)
    assert not isinstance(row, Rejection)
    assert (row["id"], row["product_value"], row["invoice_sent"]) == (23518265, Decimal("1499.50"), True)
    assert row["raw"]["loyaltyTier"] == "gold"


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"id": None}, "id: null"),
        ({"createDate": None}, "createDate: null"),
        ({"lastModificationTime": "yesterday"}, "lastModificationTime: expected an integer"),
        ({"createDate": 12}, "createDate: not an epoch-millisecond time"),
        ({"productValue": "lots"}, "productValue: expected a number"),
        ({"invoiceSent": "maybe"}, "invoiceSent: expected true or false"),
        ({"customerId": 1.5}, "customerId: expected an integer"),
        ({"cmId": 7}, "cmId: 7 is not this account"),
        ({"remarks": {"nested": 1}}, "remarks: expected text"),
    ],
)
def test_a_record_that_cannot_be_stored_becomes_a_rejection_naming_the_field(change, reason):
    result = to_row({**GOOD, **change}, 1000298, NOW)
    assert isinstance(result, Rejection)
    assert reason in result.reason
    assert result.raw == {**GOOD, **change}


def test_a_missing_id_is_said_to_be_missing_and_the_payload_fingerprinted():
    record = {k: v for k, v in GOOD.items() if k != "id"}
    result = to_row(record, 1000298, NOW)
    assert isinstance(result, Rejection) and "id: missing" in result.reason and result.order_id is None
    assert result.fingerprint == to_row(dict(record), 1000298, NOW).fingerprint
    assert record_key(record) == result.fingerprint and record_key(GOOD) == 23518265


def test_a_non_object_record_is_rejected():
    result = to_row(["not", "a", "record"], 1000298, NOW)
    assert isinstance(result, Rejection) and "not an object" in result.reason


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"productQuantity": 3_000_000_000}, "productQuantity: 3000000000 is out of range"),
        ({"customerId": 2**63}, "customerId: 9223372036854775808 is out of range"),
        ({"remarks": "a\x00b"}, "remarks: contains a NUL character"),
        ({"loyalty": {"tier": "g\x00ld"}}, "loyalty: contains a NUL character"),
    ],
)
def test_values_no_database_column_can_hold_are_rejected_before_the_database_sees_them(change, reason):
    result = to_row({**GOOD, **change}, 1000298, NOW)
    assert isinstance(result, Rejection) and reason in result.reason


@pytest.mark.parametrize("amount", [2**63, -(10**16), 1e300, "1E+200000", "1e-400"])
def test_amounts_no_column_can_hold_exactly_are_rejected(amount):
    result = to_row({**GOOD, "productValue": amount}, 1000298, NOW)
    assert isinstance(result, Rejection) and "productValue" in result.reason


@pytest.mark.parametrize(
    ("amount", "why"),
    [
        ("99999999999999.99", "more than 15 significant digits"),
        (99999999999999.99, "more than 15 significant digits"),
        ("1.0000000000000001", "below 10^-8"),
        (1e-9, "below 10^-8"),
        ("1e-9", "below 10^-8"),
        (0.30000000000000004, "below 10^-8"),
    ],
)
def test_an_amount_no_target_can_hold_exactly_is_rejected_with_its_reason(amount, why):
    row = to_row({**GOOD, "discount": amount}, 1000298, NOW)
    assert isinstance(row, Rejection) and row.reason.startswith("discount: ") and why in row.reason


@pytest.mark.parametrize("amount", ["0.00000001", 0.00000001, "999999999999999", 123456789012.345, "1E+3", 0.1, "-0"])
def test_amounts_within_fifteen_digits_and_ten_to_the_minus_eight_are_kept(amount):
    row = to_row({**GOOD, "discount": amount}, 1000298, NOW)
    assert not isinstance(row, Rejection), row


def _edge_cases() -> list[Any]:
    """Records on each side of every check the fast path makes, each differing from GOOD in one field."""
    changes: list[dict[str, Any]] = [
        {"id": True},
        {"id": "23518265"},
        {"id": 2**63},
        {"id": -(2**63)},
        {"cmId": 1000299},
        {"cmId": "1000298"},
        {"cmId": None},
        {"customerId": 2**63 - 1},
        {"customerId": 1.0},
        {"productQuantity": 2**31},
        {"productQuantity": -(2**31)},
        {"createDate": 631_152_000_000 - 1},
        {"createDate": 7_258_118_400_000},
        {"createDate": 7_258_118_400_001},
        {"createDate": "1715149492000"},
        {"lastModificationTime": None},
        {"productValue": 1e-9},
        {"productValue": 0.1 + 0.2},
        {"productValue": 123456789012345.6},
        {"productValue": 10**15},
        {"productValue": 10**15 - 1},
        {"productValue": -0.0},
        {"productValue": 9999999999999.99},
        {"productValue": 1e13},
        {"productValue": math.nextafter(0.01, 1)},
        {"productValue": 0.005},
        {"productValue": "12.50"},
        {"productValue": True},
        {"discount": float(10**15)},
        {"remarks": 5},
        {"remarks": "nul \x00 inside"},
        {"invoiceSent": 1},
        {"invoiceSent": "yes"},
        {"extra\x00key": 1},
    ]
    records: list[Any] = [{**GOOD, **change} for change in changes]
    records += [{k: v for k, v in GOOD.items() if k != "createDate"}, [GOOD], "text", None]
    return records


def test_the_fast_path_maps_every_record_exactly_as_the_full_one(start_emulator):
    from sync.transform import _to_row_in_full, _typed_columns

    emulator, _ = start_emulator(orders=2000, days=5, malformed_rate=0.1, seed=41)
    records = [*emulator.store.truth(), *_edge_cases()]
    for record in records:
        assert to_row(record, 1000298, NOW) == _to_row_in_full(record, 1000298, NOW), record
    fast = sum(type(r) is dict and _typed_columns(r, 1000298) is not None for r in records)
    assert fast > 1500, "well-typed records take the fast path"


def _doubles_away(amount: float, steps: int, towards: float) -> float:
    for _ in range(steps):
        amount = math.nextafter(amount, towards)
    return amount


_CENTS = st.integers(-(10**15), 10**15).map(lambda cents: cents / 100)
_FLOAT_AMOUNTS = st.one_of(
    _CENTS,
    st.builds(_doubles_away, _CENTS, st.integers(1, 3), st.sampled_from([-math.inf, math.inf])),  # just off a cent
    st.integers(-(10**12), 10**12).map(lambda mills: mills / 1000),
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e16, max_value=1e16),
)


@given(amount=_FLOAT_AMOUNTS)
def test_the_fast_path_keeps_or_refuses_every_float_amount_as_the_full_one_does(amount):
    """The fast path proves a float is whole cents with a multiplication and a division instead of
    `_amount`'s formatting; it must never keep a float the full check refuses, nor the reverse."""
    from sync.transform import _to_row_in_full

    record = {**GOOD, "productValue": amount}
    assert to_row(record, 1000298, NOW) == _to_row_in_full(record, 1000298, NOW)
