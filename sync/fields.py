"""The documented Pull Order record: one entry per field, shared by the transform and the emulator.

Kept apart from everything else so that the emulator can generate records and the loader can map
them from the same list, and a field added here reaches both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["id", "timestamp", "int", "amount", "text", "flag"]


@dataclass(frozen=True, slots=True)
class Field:
    api: str  # name in the JSON record
    column: str  # snake_case column in `orders`
    kind: Kind


ORDER_FIELDS: tuple[Field, ...] = (
    Field("id", "id", "id"),
    Field("cmId", "cm_id", "id"),
    Field("customerId", "customer_id", "id"),
    Field("enquiryId", "enquiry_id", "id"),
    Field("createDate", "create_date", "timestamp"),
    Field("creatorId", "creator_id", "id"),
    Field("productQuantity", "product_quantity", "int"),
    Field("productValue", "product_value", "amount"),
    Field("discount", "discount", "amount"),
    Field("remarks", "remarks", "text"),
    Field("deliveryStatus", "delivery_status", "text"),
    Field("lastModificationTime", "last_modification_time", "timestamp"),
    Field("unitId", "unit_id", "id"),
    Field("blockId", "block_id", "id"),
    Field("zoneId", "zone_id", "id"),
    Field("basePrice", "base_price", "amount"),
    Field("serviceTax", "service_tax", "amount"),
    Field("bookingAmount", "booking_amount", "amount"),
    Field("retainerFrequency", "retainer_frequency", "int"),
    Field("retainerAmount", "retainer_amount", "amount"),
    Field("subOfficeId", "sub_office_id", "id"),
    Field("retainerCreditPeriod", "retainer_credit_period", "int"),
    Field("parentOrderId", "parent_order_id", "id"),
    Field("assignedToId", "assigned_to_id", "id"),
    Field("invoiceSent", "invoice_sent", "flag"),
    Field("commissionAmount", "commission_amount", "amount"),
    Field("totalSaleableArea", "total_saleable_area", "amount"),
    Field("builderInvoiceId", "builder_invoice_id", "id"),
    Field("enquiryAssignedTo", "enquiry_assigned_to", "id"),
    Field("sellingPrice", "selling_price", "amount"),
    Field("cess", "cess", "amount"),
    Field("extraCharges", "extra_charges", "amount"),
    Field("warrantyInDays", "warranty_in_days", "int"),
    Field("parentCustomerId", "parent_customer_id", "id"),
    Field("checkedIn", "checked_in", "flag"),
    Field("includeInterest", "include_interest", "flag"),
    Field("channelId", "channel_id", "id"),
    Field("deliveredOrderId", "delivered_order_id", "id"),
    Field("commissionPaidAmount", "commission_paid_amount", "amount"),
    Field("onwardCruiseId", "onward_cruise_id", "id"),
    Field("returnCruiseId", "return_cruise_id", "id"),
    Field("approvedByEmployeeId", "approved_by_employee_id", "id"),
    Field("vatamount", "vatamount", "amount"),
)

FIELDS_BY_API: dict[str, Field] = {f.api: f for f in ORDER_FIELDS}
ORDER_COLUMNS: tuple[str, ...] = tuple(f.column for f in ORDER_FIELDS)  # `orders`' typed columns, in this order
DOCUMENTED: frozenset[str] = frozenset(f.api for f in ORDER_FIELDS)


def undocumented(records: Iterable[Any]) -> dict[str, Any]:
    """Each field of `records` their documentation does not list, with the `id` of the first record serving it.

    Computed where a page is read, so the writer can notice new fields (sync/new_fields.py) after
    the records themselves were let go; cheap when there are none (one subset test a record).
    """
    found: dict[str, Any] = {}
    for record in records:
        if type(record) is dict and not record.keys() <= DOCUMENTED:
            for name in record.keys() - DOCUMENTED:
                found.setdefault(name, record.get("id"))
    return found
