"""From one JSON record to one `orders` row, or a reason it cannot be stored.

Lenient where the meaning is unambiguous (Kapture sends numbers as strings in places), strict
where guessing would store a wrong value: such a record becomes a `Rejection`, never an exception
that could sink the good records of its page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sync import jsontext
from sync.fields import ORDER_FIELDS
from sync.windows import from_ms

# Epoch-ms outside 1990..2200 is not a Kapture timestamp; storing it would only mislead.
EARLIEST_MS, LATEST_MS = 631_152_000_000, 7_258_118_400_000
_INT32 = 2**31
_INT64 = 2**63
_TRUE = {"true", "1", "yes", "y"}
_FALSE = {"false", "0", "no", "n"}


# The row key holding `raw` already serialised (bytes), so the loader need not serialise it again.
# It is the canonical form (keys sorted), so the same content always gives the same fingerprint.
RAW_JSON = "raw_json"


class BadValue(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Rejection:
    reason: str
    raw: Any
    order_id: int | None
    fingerprint: str


# A page is parsed with up to 1,024 levels of nesting, but written back as JSON with at most 254
# (`jsontext.MAX_DEPTH`). Kapture's orders are flat: a record nested deeper cannot be kept exactly, so
# it is rejected, and kept in `rejected_records` cut at CUT_DEPTH levels, each deeper part replaced by
# TOO_DEEP, so that every tool reading it back can (SQLite's JSON functions stop at 1,000 levels,
# Python's json at about as many).
CUT_DEPTH = 200
TOO_DEEP = "[kapture-sync: nested too deeply, cut here]"


def canonical_json(raw: Any) -> bytes:
    """The payload as JSON with its keys sorted: equal content, equal bytes, whatever the key order served.

    Raises BadValue for a payload that cannot be written back (nested too deeply, or holding a
    `jsontext.Unreadable` from a salvaged page).
    """
    try:
        return jsontext.dumps_sorted(raw)
    except jsontext.Unwritable as exc:
        raise BadValue(str(exc)) from None


def cut(raw: Any, depth: int = CUT_DEPTH) -> Any:
    """The payload with every object or list `depth` levels down replaced by TOO_DEEP."""
    if isinstance(raw, dict):
        return TOO_DEEP if depth <= 0 else {key: cut(value, depth - 1) for key, value in raw.items()}
    if isinstance(raw, list):
        return TOO_DEEP if depth <= 0 else [cut(value, depth - 1) for value in raw]
    return raw


def _kept(raw: Any) -> tuple[Any, bytes, str | None]:
    """What a record is kept as, its canonical JSON, and why it could not be kept as served (None: it was)."""
    try:
        return raw, canonical_json(raw), None
    except BadValue as exc:
        kept = jsontext.stand_ins(cut(raw))  # cut first: both recurse, cut only 200 levels deep
        return kept, canonical_json(kept), f"record: {exc}"


def digest(canonical: bytes) -> str:
    return hashlib.sha256(canonical).hexdigest()


def fingerprint(raw: Any) -> str:
    """Stable identity of a payload's content: one bad record is stored once, and a change saved
    under an unchanged `lastModificationTime` is still told apart from the stored version."""
    return digest(_kept(raw)[1])


def _integer(value: Any) -> int | None:
    if value is None:
        return None
    kind = type(value)
    if kind is int:
        return value
    if kind is float and value.is_integer():
        return int(value)
    if kind is str:
        text = value.strip()
        if text == "":
            return None
        try:
            return int(text)
        except ValueError:
            try:
                number = Decimal(text)
            except InvalidOperation:
                raise BadValue(f"expected an integer, got {value!r}") from None
            if number == number.to_integral_value():
                return int(number)
    raise BadValue(f"expected an integer, got {value!r}")


def epoch_ms(value: Any) -> int | None:
    """A time as `to_row` reads it (an integer, a whole float, digits as text), in epoch ms; None
    where it reads none or rejects the value (out of 1990..2200, not a number)."""
    try:
        number = _integer(value)
    except BadValue:
        return None
    return number if number is not None and EARLIEST_MS <= number <= LATEST_MS else None


def _timestamp(value: Any) -> datetime | None:
    if value is None:
        return None
    number = _integer(value)
    if number is None:
        return None
    if not EARLIEST_MS <= number <= LATEST_MS:
        raise BadValue(f"not an epoch-millisecond time: {value!r}")
    return from_ms(number)


# Every amount is stored exactly on both targets or rejected: SQLite's NUMERIC keeps a double, which
# holds any decimal of up to 15 significant digits exactly (read back by its shortest repr, see
# models.Amount), so that is the bound on both databases, together with no digit below 10^-8.
AMOUNT_DIGITS = 15
AMOUNT_PLACES = 8


def _exact_amount(number: Decimal, value: Any) -> Decimal:
    if not number.is_finite():
        raise BadValue(f"expected a number, got {value!r}")
    sign, digits, exponent = number.normalize().as_tuple()
    if number != 0 and isinstance(exponent, int) and exponent < -AMOUNT_PLACES:
        raise BadValue(f"{value!r} has digits below 10^-{AMOUNT_PLACES}, which would be rounded away")
    if number != 0 and len(digits) > AMOUNT_DIGITS:
        raise BadValue(f"{value!r} has more than {AMOUNT_DIGITS} significant digits, which SQLite cannot hold exactly")
    return number


def _amount(value: Any) -> Any:
    """An amount read exactly: text as a Decimal, a JSON number as it is once proven exact.

    A JSON float is the nearest double to the digits Kapture sent; it is kept when its shortest
    form has at most 15 significant digits and nothing below 10^-8, the same rule as for text.
    """
    kind = type(value)
    if kind is float:
        if value != 0 and (round(value, AMOUNT_PLACES) != value or float(f"{value:.{AMOUNT_DIGITS}g}") != value):
            _exact_amount(Decimal(repr(value)), value)  # raises, with the reason
        return value
    if kind is str:
        text = value.strip()
        if text == "":
            return None
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise BadValue(f"expected a number, got {value!r}") from None
        return _exact_amount(number, value)
    raise BadValue(f"expected a number, got {value!r}")


def _text(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    if type(value) in (int, float, bool):
        return str(value)
    raise BadValue(f"expected text, got {type(value).__name__}")


def _flag(value: Any) -> bool | None:
    if value is None or type(value) is bool:
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if type(value) is str and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise BadValue(f"expected true or false, got {value!r}")


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def _nul_field(record: dict[str, Any]) -> str | None:
    """The first field holding a NUL character: PostgreSQL can store it in neither text nor JSONB."""
    return next((str(key) for key, value in record.items() if _has_nul(key) or _has_nul(value)), None)


_CONVERT: dict[str, Callable[[Any], Any]] = {
    "id": _integer,
    "int": _integer,
    "timestamp": _timestamp,
    "amount": _amount,
    "text": _text,
    "flag": _flag,
}
# Values already of the column's type pass through untouched: the common case, kept cheap because
# it runs for every field of every order. JSON numbers are always finite (orjson refuses NaN);
# integer amounts are exact (their range is checked below), floats are checked by `_amount`, and
# both reach NUMERIC exactly (shortest repr).
_AS_IS: dict[str, tuple[type, ...]] = {
    "id": (int,),
    "int": (int,),
    "timestamp": (),
    "amount": (int,),
    "text": (str,),
    "flag": (bool,),
}
# Numeric columns and the magnitude each can hold exactly: BIGINT, INTEGER, and for amounts what
# SQLite's double keeps to the cent (PostgreSQL's NUMERIC would hold more; both must agree).
_AMOUNT_LIMIT = 10**15
# A float that is the double nearest to a whole number of cents under 10^13 (at most 15 digits, none
# below 10^-2) passes `_amount`'s test for certain; proving it so takes a multiplication and a division
# (~0.2 µs) where the test formats and parses the number (~0.8 µs), for the five amounts of an order.
_CENTS_LIMIT = 10**13
_LIMITS = {"id": _INT64, "int": _INT32, "amount": _AMOUNT_LIMIT}
_RANGES: tuple[tuple[str, str, int], ...] = tuple(
    (f.api, f.column, _LIMITS[f.kind]) for f in ORDER_FIELDS if f.kind in _LIMITS
)
_PLAN: tuple[tuple[str, str, tuple[type, ...], Callable[[Any], Any]], ...] = tuple(
    (f.api, f.column, _AS_IS[f.kind], _CONVERT[f.kind]) for f in ORDER_FIELDS
)
_REQUIRED: tuple[tuple[str, str], ...] = (
    ("id", "id"),
    ("createDate", "create_date"),
    ("lastModificationTime", "last_modification_time"),
)


def fast_path_source(name: str, render: Mapping[str, str]) -> str:
    """Source of `name(record, cm_id)`: one straight-line check per documented field, generated from ORDER_FIELDS.

    It is `to_row`'s common case (every value already of its column's type and in range) without
    the per-field loop, which cost three quarters of the mapping time (about 27 of 37 µs an order).
    It returns the columns' values in ORDER_FIELDS order, each written by `render[kind]`, an
    expression of the served value `v` (None when absent; `cm_id` for the account's column), so the
    same checks also give the values in the form a database takes (`sync.prepare`). Anything else
    returns None and takes the general path, which alone words rejections.
    """
    bounds = {"id": _INT64, "int": _INT32}
    required = {api for api, _column in _REQUIRED}
    lines = [f"def {name}(record, cm_id):", "    get = record.get"]
    for i, f in enumerate(ORDER_FIELDS):
        lines.append(f"    v = get({f.api!r})")
        when = "" if f.api in required else "v is not None and "
        if f.kind in bounds:
            bound = bounds[f.kind]
            lines.append(f"    if {when}(type(v) is not int or not {-bound} <= v < {bound}):")
            lines.append("        return None")
        elif f.kind == "timestamp":
            lines.append(f"    if {when}(type(v) is not int or not {EARLIEST_MS} <= v <= {LATEST_MS}):")
            lines.append("        return None")
        elif f.kind == "amount":
            lines += [
                "    if v is not None:",
                "        if type(v) is float:",
                f"            if not ({-_CENTS_LIMIT} < v < {_CENTS_LIMIT} and round(v * 100) / 100 == v)"
                f" and v != 0 and (round(v, {AMOUNT_PLACES}) != v or float(f'{{v:.{AMOUNT_DIGITS}g}}') != v):",
                "                return None",
                "        elif type(v) is not int:",
                "            return None",
                f"        if not {-_AMOUNT_LIMIT} <= v < {_AMOUNT_LIMIT}:",
                "            return None",
            ]
        else:
            expected = "str" if f.kind == "text" else "bool"
            lines.append(f"    if v is not None and type(v) is not {expected}:")
            lines.append("        return None")
        if f.api == "cmId":
            lines.append("    if v is not None and v != cm_id:")
            lines.append("        return None")
            lines.append("    v = cm_id")
        lines.append(f"    c{i} = {render[f.kind]}")
    lines.append(f"    return [{', '.join(f'c{i}' for i in range(len(ORDER_FIELDS)))}]")
    return "\n".join(lines) + "\n"


def compile_fast_path(name: str, render: Mapping[str, str], helpers: Mapping[str, Any]) -> Callable[..., Any]:
    """`fast_path_source` compiled, with the functions its `render` expressions call."""
    namespace = dict(helpers)
    exec(compile(fast_path_source(name, render), f"<{name}>", "exec"), namespace)  # noqa: S102 (our own source)
    return namespace[name]  # type: ignore[no-any-return]


_AS_SERVED = {kind: "v" for kind in _CONVERT} | {"timestamp": "None if v is None else from_ms(v)"}
_typed_values: Callable[[dict[str, Any], int], list[Any] | None] = compile_fast_path(
    "_typed_values", _AS_SERVED, {"from_ms": from_ms}
)
_COLUMN_NAMES = tuple(f.column for f in ORDER_FIELDS)


def _typed_columns(record: dict[str, Any], cm_id: int) -> dict[str, Any] | None:
    values = _typed_values(record, cm_id)
    return None if values is None else dict(zip(_COLUMN_NAMES, values, strict=True))


def to_row(record: Any, cm_id: int, synced_at: datetime) -> dict[str, Any] | Rejection:
    """Map one record; `raw` keeps it exactly as received so an undocumented field is never lost."""
    if type(record) is dict and (row := _typed_columns(record, cm_id)) is not None:
        with suppress(BadValue):  # not writable as served: the full path words the rejection
            raw_json = canonical_json(record)
            if b"\\u0000" not in raw_json:
                return _completed(row, record, raw_json, cm_id, synced_at)
    return _to_row_in_full(record, cm_id, synced_at)


def _completed(
    row: dict[str, Any], record: dict[str, Any], raw_json: bytes, cm_id: int, synced_at: datetime
) -> dict[str, Any]:
    """A row of typed columns given what every stored row also carries: account, raw form, fingerprint, sync time."""
    row["cm_id"] = cm_id
    row["raw"] = record
    row[RAW_JSON] = raw_json
    row["fingerprint"] = digest(raw_json)
    row["synced_at"] = synced_at
    return row


def _to_row_in_full(record: Any, cm_id: int, synced_at: datetime) -> dict[str, Any] | Rejection:
    """`to_row` for any record: each field converted or its problem named (any problem makes a `Rejection`)."""
    if not isinstance(record, dict):
        kept, raw_json, _ = _kept(record)
        return Rejection(f"record is a {type(record).__name__}, not an object", kept, None, digest(raw_json))
    row: dict[str, Any] = {}
    problems: list[str] = []
    get = record.get
    for api, column, as_is, convert in _PLAN:
        value = get(api)
        if value is None or type(value) in as_is:
            row[column] = value
            continue
        try:
            row[column] = convert(value)
        except BadValue as exc:
            problems.append(f"{api}: {exc}")
    for api, column in _REQUIRED:
        if row.get(column) is None and not any(p.startswith(f"{api}:") for p in problems):
            problems.append(f"{api}: missing" if api not in record else f"{api}: null")
    order_id = row.get("id") if type(row.get("id")) is int and -_INT64 <= row["id"] < _INT64 else None
    if row.get("cm_id") is not None and row["cm_id"] != cm_id:
        problems.append(f"cmId: {row['cm_id']} is not this account ({cm_id})")
    for api, column, bound in _RANGES:
        value = row.get(column)
        if value is not None and not -bound <= value < bound:
            problems.append(f"{api}: {value} is out of range for its column")
    kept, raw_json, unwritable = _kept(record)
    if unwritable is not None:
        problems.append(unwritable)
    nul = _nul_field(kept) if b"\\u0000" in raw_json else None  # the byte search is the cheap filter
    if nul is not None:
        problems.append(f"{nul}: contains a NUL character, which the database cannot store")
    if problems:
        return Rejection("; ".join(problems), kept, order_id, digest(raw_json))
    return _completed(row, record, raw_json, cm_id, synced_at)


def stamp(record: Any) -> tuple[int, int] | None:
    """`(id, lastModificationTime)` of a well-typed record, cheaply, without mapping the rest.

    Lets a page's rows below a window's floor be checked against the database by id and stamp
    alone; anything unusual returns None and goes through `to_row`.
    """
    if type(record) is not dict:
        return None
    order_id, modified = record.get("id"), record.get("lastModificationTime")
    if type(order_id) is int and type(modified) is int and -_INT64 <= order_id < _INT64:
        return order_id, modified
    return None


def record_key(record: Any) -> int | str:
    """The de-duplication key of a served record: its id, or its fingerprint when it has none."""
    if isinstance(record, dict):
        try:
            value = _integer(record.get("id"))
        except BadValue:
            value = None
        if value is not None:
            return value
    return fingerprint(record)


def storable_ids(keys: Iterable[int | str]) -> list[int]:
    """The de-duplication keys (`record_key`) that are ids `to_row` could store a record under."""
    return [key for key in keys if type(key) is int and -_INT64 <= key < _INT64]
