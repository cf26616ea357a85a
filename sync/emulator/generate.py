"""Seeded, deterministic generation of realistic Pull Order records.

Every field of `sync.fields.ORDER_FIELDS` is filled, in that order, so a field added to the shared
list reaches the emulator without touching this file (it gets a plausible value for its kind).
Only `random.Random` seeded from the config is used, so the same seed and the same "now" give
byte-identical records on every run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any, Final

from sync.emulator.config import EmulatorConfig
from sync.fields import ORDER_FIELDS

DAY_MS: Final = 86_400_000
FIRST_ORDER_ID: Final = 2_350_000_000
DELIVERY_STATUSES: Final = ("AP", "PN", "DL", "CN", "RT")
MALFORMED_KINDS: Final = ("missing_id", "null_dates", "numbers_as_strings", "extra_field")

# Remarks exercise JSON escaping and non-Latin scripts: Devanagari, Tamil, accents, emoji,
# quotes, backslashes, newlines and empty strings.
REMARKS: Final = (
    "",
    "",
    "testing",
    "डिलीवरी जल्द करें",
    "café ✓",
    "Call before delivery 📞",
    "Gift wrap 🎁 please",
    "கதவு அருகே வைக்கவும்",
    'Customer said "ASAP"',
    "Leave with security — flat 4B",
    "Paid via UPI ✅",
    "Line 1\nLine 2",
    "C:\\orders\\backup",
    "अर्जेंट 🚚✨",
    "N/A",
    "ঠিকানা পরিবর্তন হয়েছে",
)
EXTRA_FIELDS: Final = (("loyaltyTier", "gold"), ("couponCode", "DIWALI25"), ("sourceApp", "android"))
_STATUS_WEIGHTS: Final = (30, 20, 35, 10, 5)  # AP, PN, DL, CN, RT


def _money(cents: int) -> float | int:
    """Two-decimal amount as the API sends it: 0 stays an integer, others are floats (1499.5)."""
    return 0 if cents == 0 else cents / 100


class OrderFactory:
    """Builds and edits orders from one seeded RNG; owns the pools (employees, customers)."""

    def __init__(self, cm_id: int, seed: int, customer_count: int = 1000) -> None:
        self._cm_id = cm_id
        self._rng = rng = random.Random(seed)
        self._employees = [rng.randrange(200_000, 260_000) for _ in range(25)]
        self._customer_count = max(10, customer_count)

    @property
    def rng(self) -> random.Random:
        """The RNG, shared with callers that pick orders so one seed drives everything."""
        return self._rng

    def order(self, order_id: int, create_ms: int, modified_ms: int) -> dict[str, Any]:
        """One well-formed order; keys follow ORDER_FIELDS so pages look like the vendor's."""
        rng = self._rng
        status = rng.choices(DELIVERY_STATUSES, weights=_STATUS_WEIGHTS)[0]
        quantity = 0 if rng.random() < 0.1 else rng.randint(1, 12)
        unit_cents = rng.choice((0, rng.randint(99, 250_000), rng.randint(99, 9_999) * 100 + rng.choice((0, 50, 99))))
        value_cents = quantity * unit_cents
        discount_cents = 0 if rng.random() < 0.7 else value_cents * rng.choice((5, 10, 15)) // 100
        taxable = value_cents - discount_cents
        tax_cents = taxable * 18 // 100
        cess_cents = taxable // 100 if rng.random() < 0.2 else 0
        extra_cents = rng.choice((0, 0, 0, 4_900, 9_950, 1_275))
        commission_cents = taxable * 2 // 100 if rng.random() < 0.3 else 0
        retainer = rng.random() < 0.08
        assignee = rng.choice(self._employees)
        specific: dict[str, Any] = {
            "id": order_id,
            "cmId": self._cm_id,
            "customerId": 191_000_000 + rng.randrange(self._customer_count) * 97,
            "enquiryId": 24_000_000 + rng.randrange(5_000_000),
            "createDate": create_ms,
            "creatorId": rng.choice(self._employees),
            "productQuantity": quantity,
            "productValue": _money(value_cents),
            "discount": _money(discount_cents),
            "remarks": rng.choice(REMARKS),
            "deliveryStatus": status,
            "lastModificationTime": modified_ms,
            "unitId": rng.choice((0, 0, rng.randint(1, 400))),
            "blockId": rng.choice((0, 0, rng.randint(1, 40))),
            "zoneId": rng.choice((0, rng.randint(1, 12))),
            "basePrice": _money(unit_cents),
            "serviceTax": _money(tax_cents),
            "bookingAmount": _money(value_cents // 10 if rng.random() < 0.25 else 0),
            "retainerFrequency": rng.choice((1, 3, 6, 12)) if retainer else 0,
            "retainerAmount": _money(rng.randint(500, 50_000) * 100 if retainer else 0),
            "subOfficeId": rng.choice((0, 0, rng.randint(100, 140))),
            "retainerCreditPeriod": rng.choice((15, 30, 45)) if retainer else 0,
            "parentOrderId": order_id - rng.randint(1, 5_000) if rng.random() < 0.03 else 0,
            "assignedToId": assignee,
            "invoiceSent": status == "DL" or rng.random() < 0.1,
            "commissionAmount": _money(commission_cents),
            "totalSaleableArea": _money(rng.randint(40_000, 300_000) if rng.random() < 0.1 else 0),
            "builderInvoiceId": rng.randint(700_000, 799_999) if rng.random() < 0.05 else 0,
            "enquiryAssignedTo": assignee if rng.random() < 0.5 else 0,
            "sellingPrice": _money(taxable + tax_cents + cess_cents + extra_cents if quantity else 0),
            "cess": _money(cess_cents),
            "extraCharges": _money(extra_cents),
            "warrantyInDays": rng.choice((0, 0, 30, 90, 180, 365)),
            "parentCustomerId": 0 if rng.random() < 0.9 else 190_000_000 + rng.randrange(100_000),
            "checkedIn": rng.random() < 0.15,
            "includeInterest": rng.random() < 0.05,
            "channelId": rng.choice((0, 1, 2, 3, 7)),
            "deliveredOrderId": order_id if status == "DL" and rng.random() < 0.5 else 0,
            "commissionPaidAmount": _money(commission_cents if rng.random() < 0.5 else 0),
            "onwardCruiseId": 0,
            "returnCruiseId": 0,
            "approvedByEmployeeId": rng.choice(self._employees) if rng.random() < 0.2 else 0,
            "vatamount": _money(taxable * 5 // 100 if rng.random() < 0.1 else 0),
        }
        return {f.api: specific[f.api] if f.api in specific else self._by_kind(f.kind) for f in ORDER_FIELDS}

    def _by_kind(self, kind: str) -> Any:
        """A plausible value for a documented field this factory does not know by name."""
        rng = self._rng
        if kind in ("id", "int"):
            return rng.choice((0, rng.randint(1, 100_000)))
        if kind == "amount":
            return _money(rng.choice((0, rng.randint(1, 1_000_000))))
        if kind == "flag":
            return rng.random() < 0.5
        if kind == "timestamp":
            return None
        return rng.choice(REMARKS)

    def edited(self, record: dict[str, Any], modified_ms: int) -> dict[str, Any]:
        """A copy of `record` as an agent would change it: status, remarks, amounts, timestamp."""
        rng = self._rng
        new = dict(record)
        old_status = new.get("deliveryStatus")
        new["deliveryStatus"] = rng.choice([s for s in DELIVERY_STATUSES if s != old_status])
        new["remarks"] = rng.choice(REMARKS)
        if rng.random() < 0.5:
            new["discount"] = _money(rng.randint(0, 500) * 100 + rng.choice((0, 50, 75)))
        if rng.random() < 0.3:
            new["assignedToId"] = rng.choice(self._employees)
        if new["deliveryStatus"] == "DL":
            new["invoiceSent"] = True
        new["lastModificationTime"] = modified_ms
        return new


def malform(record: dict[str, Any], kind: str, rng: random.Random) -> dict[str, Any]:
    """A copy of `record` broken in the way `kind` names (see MALFORMED_KINDS)."""
    new = dict(record)
    if kind == "missing_id":
        del new["id"]
    elif kind == "null_dates":
        which = rng.choice(("createDate", "lastModificationTime", "both"))
        for key in ("createDate", "lastModificationTime"):
            if which in (key, "both"):
                new[key] = None
    elif kind == "numbers_as_strings":
        new["customerId"] = str(new["customerId"])
        new["productValue"] = f"{float(new['productValue']):.2f}"
        new["productQuantity"] = str(new["productQuantity"])
    elif kind == "extra_field":
        key, value = rng.choice(EXTRA_FIELDS)
        new[key] = value
    else:
        raise ValueError(f"unknown malformed kind {kind!r}; expected one of {', '.join(MALFORMED_KINDS)}")
    return new


def generate_orders(
    config: EmulatorConfig, now_ms: int, factory: OrderFactory
) -> Iterator[tuple[dict[str, Any], int, str | None]]:
    """The initial orders as (record as served, create time used for indexing, malformed kind).

    `factory` should be freshly built from the config's seed; it keeps its RNG afterwards so
    orders created later continue the same deterministic stream.

    Create times are spread over the last `config.days` days up to `now_ms`, a little denser
    towards now, in whole seconds; ids grow with create time. A malformed record keeps the
    create time it was generated with for indexing, so a null createDate still shows up in the
    date window it was created in (where a syncer can see and reject it).
    """
    rng = factory.rng
    bad_rng = random.Random(config.seed * 7_919 + 1)  # separate stream: malformed_rate leaves good data alone
    span = config.days * DAY_MS
    creates = sorted(
        max(now_ms - span, (now_ms - int(span * rng.random() ** 1.25)) // 1000 * 1000) for _ in range(config.orders)
    )
    order_id = FIRST_ORDER_ID
    for create_ms in creates:
        order_id += rng.randint(1, 7)
        modified_ms = create_ms if rng.random() < 0.55 else create_ms + int((now_ms - create_ms) * rng.random() ** 3)
        record = factory.order(order_id, create_ms, modified_ms)
        kind = None
        if config.malformed_rate > 0 and bad_rng.random() < config.malformed_rate:
            kind = bad_rng.choice(MALFORMED_KINDS)
            record = malform(record, kind, bad_rng)
        yield record, create_ms, kind
