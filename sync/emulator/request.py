"""Reading a Pull Order request body into a query, with the API's validation messages.

Kept apart from the HTTP server so the rules (what counts as a filter, how dates are read in the
account's zone, which end bound is inclusive) are in one place and easy to read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import orjson

from sync.emulator.config import EmulatorConfig

# Keys that never count as a filter (the API needs "at least one filter besides cmId"):
# cmId, limit, offset, sortParam, viewId, and any key that is not a documented filter.
SUPPORTED_FILTERS: Final = ("createStartDate", "createEndDate", "customerIds", "orderIds")
# Filters the vendor documents that the emulator does not implement: rejected when non-empty,
# rather than silently ignored, so a client never mistakes an unfiltered page for a filtered one.
UNSUPPORTED_FILTERS: Final = frozenset(
    {
        "name",
        "phone",
        "email",
        "leadIdStr",
        "enquiryIds",
        "clientReferenceIds",
        "erpOrderId",
        "bookingStatus",
        "bookingSubStatus",
        "bookingStartDate",
        "bookingEndDate",
        "creatorIdStr",
        "assignIdStr",
        "zoneIdStr",
        "blockId",
        "unitId",
        "approvalDesignationIds",
        "agreementStartDate",
        "agreementEndDate",
        "erpInvoiceId",
        "generationStartDate",
        "generationEndDate",
        "nextFollowupStartDate",
        "nextFollowupEndDate",
        "lastFollowupStartDate",
        "lastFollowupEndDate",
        "expectedClosureStartDate",
        "expectedClosureEndDate",
        "statusStr",
        "subStatusStr",
        "creatorOrAssignedIdStr",
        "assignToIdsStr",
        "notAssignToIdsStr",
        "country",
        "city",
        "state",
        "leadPriorityStr",
        "secondarySourceId",
        "approvedIds",
        "pricingStatus",
    }
    | {f"attr{i}" for i in range(1, 16)}
)
KNOWN_FILTERS: Final = UNSUPPORTED_FILTERS | set(SUPPORTED_FILTERS)
CM_ID_MESSAGE: Final = "cmId is required and must be > 0"
DATE_PATTERNS: Final = {
    "both": "'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'",
    "date": "'YYYY-MM-DD'",
    "datetime": "'YYYY-MM-DD HH:MM:SS'",
}
_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATETIME_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", re.ASCII)
_DIGITS_RE: Final = re.compile(r"\d{1,30}", re.ASCII)
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_US: Final = timedelta(microseconds=1)


class RequestError(ValueError):
    """A request the API answers with a failed body; `message` is what the client reads."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class PullQuery:
    """A validated pull request: [start_ms, end_ms) on createDate, id filters, one page."""

    start_ms: int | None
    end_ms: int | None  # exclusive
    customer_ids: frozenset[int] | None
    order_ids: frozenset[int] | None
    limit: int
    offset: int


def _is_empty(value: Any) -> bool:
    return value is None or value == [] or value == {} or (isinstance(value, str) and not value.strip())


def _cm_id(value: Any) -> int:
    if isinstance(value, bool):
        raise RequestError(CM_ID_MESSAGE)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and _DIGITS_RE.fullmatch(value.strip()):
        value = int(value.strip())
    if not isinstance(value, int) or value <= 0:
        raise RequestError(CM_ID_MESSAGE)
    return value


def _count(name: str, value: Any, default: int, minimum: int) -> int:
    """`limit`/`offset` as a number or numeric string; "" or absent means the default."""
    if _is_empty(value):
        return default
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and _DIGITS_RE.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None or number < minimum:
        kind = "a positive integer" if minimum > 0 else "a non-negative integer"
        raise RequestError(f"{name} must be {kind}, got {value!r}"[:200])
    return number


def _id_list(name: str, value: Any) -> frozenset[int] | None:
    """`customerIds`/`orderIds`: "1,2,3" (the documented form), a number, or a list of them."""
    if _is_empty(value):
        return None
    items: list[Any]
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",") if part.strip()]
    elif isinstance(value, list):
        items = value
    else:
        items = [value]
    ids = set()
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool) and item >= 0:
            ids.add(item)
        elif isinstance(item, str) and _DIGITS_RE.fullmatch(item.strip()):
            ids.add(int(item.strip()))
        else:
            raise RequestError(f"{name} must be a comma-separated list of integer ids")
    if not ids:
        raise RequestError(f"{name} must be a comma-separated list of integer ids")
    return frozenset(ids)


def _date_bound(
    name: str, value: Any, zone: ZoneInfo, is_end: bool, end_inclusive: bool, formats: str = "both"
) -> int | None:
    """Epoch ms of a date filter read in the account's zone; an end bound comes back exclusive.

    `formats` says which shapes are accepted ("both", "date", "datetime"); the other is refused as
    unparsable, the way a server with one date pattern refuses the other.

    Start is inclusive. With `end_inclusive`, a date-only end covers that whole day and a
    datetime end that whole second; without it, the named instant itself is excluded.
    Bounds compare wall-clock values, as the API does: a start at a wall time that happens twice
    (the repeated hour of a fall-back night) is its first occurrence, and an end whose last
    included wall time happens twice is the end of that time's later occurrence, so
    `01:00:00..01:59:59` on the fall-back night serves both passes of the hour while `..00:59:59`
    stops before the first.
    """
    if _is_empty(value):
        return None
    text = value.strip() if isinstance(value, str) else None
    try:
        # The patterns fix the shape, so the (much faster) ISO parser reads exactly these forms.
        if text is not None and formats != "datetime" and _DATE_RE.fullmatch(text):
            local = datetime.fromisoformat(text)
            step = timedelta(days=1)
        elif text is not None and formats != "date" and _DATETIME_RE.fullmatch(text):
            local = datetime.fromisoformat(text)
            step = timedelta(seconds=1)
        else:
            raise ValueError
        if is_end and end_inclusive:
            local += step
        if is_end:
            last = local - _US  # the last wall time the (now exclusive) end still includes
            later, earlier = last.replace(tzinfo=zone, fold=1), last.replace(tzinfo=zone)
            if later.utcoffset() != earlier.utcoffset() and later - _EPOCH > earlier - _EPOCH:
                return (later - _EPOCH + _US) // _MS  # adding to `later` itself would drop its fold
        return (local.replace(tzinfo=zone) - _EPOCH) // _MS
    except (ValueError, OverflowError):
        shown = repr(value)[:60]
        raise RequestError(f"{name} {shown} is not a valid date: use {DATE_PATTERNS[formats]}") from None


def parse_pull_request(body: bytes, config: EmulatorConfig) -> PullQuery:
    """Validate a request body the way the API does; RequestError names the first problem."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestError("Invalid JSON body") from None
    if not isinstance(data, dict):
        raise RequestError("Invalid JSON body: expected an object")
    cm_id = _cm_id(data.get("cmId"))
    if cm_id != config.cm_id:
        raise RequestError(f"cmId {cm_id} is not this account")
    # Unknown keys are ignored, as a real server ignores properties it does not know, so they
    # cannot stand in for the filter the API requires.
    given = [key for key, value in data.items() if key in KNOWN_FILTERS and not _is_empty(value)]
    if not given:
        raise RequestError("At least one filter is required besides cmId")
    unsupported = sorted(k for k in given if k in UNSUPPORTED_FILTERS)
    if unsupported:
        raise RequestError(
            f"Filter {unsupported[0]} is not supported by the emulator; use {', '.join(SUPPORTED_FILTERS)}"
        )
    zone = ZoneInfo(config.timezone)
    return PullQuery(
        start_ms=_date_bound(
            "createStartDate", data.get("createStartDate"), zone, False, config.end_inclusive, config.date_formats
        ),
        end_ms=_date_bound(
            "createEndDate", data.get("createEndDate"), zone, True, config.end_inclusive, config.date_formats
        ),
        customer_ids=_id_list("customerIds", data.get("customerIds")),
        order_ids=_id_list("orderIds", data.get("orderIds")),
        limit=_count("limit", data.get("limit"), config.default_limit, 1),
        offset=_count("offset", data.get("offset"), 0, 0),
    )
