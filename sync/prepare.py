"""Records made ready to write: mapping, canonical JSON, fingerprint, the row's values as the driver takes them.

Mapping a record (`to_row`: every field checked, the canonical JSON and its SHA-256, each value
put into the form the database takes) is the biggest share of the work per order, so it is done
where a page is read (`sync.read`), on another core when there is a worker (`sync.worker`). What
comes out is compact: one tuple per record (`Prepared`), with the row's values already as the
driver takes them, plain values that `marshal` carries, because unpickling one object per value
would cost the writer's core about as much as mapping did.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

from sync.fields import ORDER_COLUMNS, ORDER_FIELDS
from sync.transform import RAW_JSON, BadValue, Rejection, canonical_json, compile_fast_path, digest, to_row
from sync.windows import to_ms

Dialect = Literal["sqlite", "postgresql"]
# id, lastModificationTime (epoch ms), fingerprint, createDate (epoch ms), and the row: on SQLite its
# values in the loader's column order with `synced_at` (the last) left for the writer to fill in, on
# PostgreSQL its line of COPY text up to `synced_at` (`copy_line`).
Prepared = tuple[int, int, str, int, list[Any] | bytes]

_TIMES = tuple(i for i, f in enumerate(ORDER_FIELDS) if f.kind == "timestamp")
_AMOUNTS = tuple(i for i, f in enumerate(ORDER_FIELDS) if f.kind == "amount")
_PLACEHOLDER = datetime(1970, 1, 1, tzinfo=UTC)


def sqlite_time(moment: datetime) -> str:
    """The text SQLAlchemy's SQLite DATETIME stores (naive UTC, microseconds), so reads and compares agree."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(" ", "microseconds")


def postgresql_time(moment: datetime) -> str:
    """A timestamp as COPY's text form reads it, zone included."""
    return moment.astimezone(UTC).isoformat(" ", "microseconds")


_EPOCH_DAY = date(1970, 1, 1)


@lru_cache(maxsize=1024)
def _day_text(days: int) -> str:
    return (_EPOCH_DAY + timedelta(days=days)).isoformat()


def sqlite_ms(epoch_ms: int) -> str:
    """`sqlite_time` of an epoch-ms time (>= 0) without making a datetime: half the cost, twice an order."""
    days, rest = divmod(epoch_ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{_day_text(days)} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}000"


def postgresql_ms(epoch_ms: int) -> str:
    """`postgresql_time` of an epoch-ms time (>= 0), without making a datetime."""
    return sqlite_ms(epoch_ms) + "+00:00"


def values_of(row: dict[str, Any], dialect: Dialect) -> list[Any]:
    """A mapped row's values in the loader's column order, as plain values `marshal` can carry.

    Times become text in the form each database stores or parses; amounts that are `Decimal`
    become a float on SQLite (its NUMERIC keeps a double, see models.Amount) and text on
    PostgreSQL (read by NUMERIC exactly). The last value, `synced_at`, is left as None.
    """
    values = [row[c] for c in ORDER_COLUMNS]
    to_text = sqlite_time if dialect == "sqlite" else postgresql_time
    for i in _TIMES:
        if values[i] is not None:
            values[i] = to_text(values[i])
    for i in _AMOUNTS:
        if type(values[i]) is Decimal:
            values[i] = float(values[i]) if dialect == "sqlite" else str(values[i])
    values.append(row[RAW_JSON].decode())
    values.append(row["fingerprint"])
    values.append(None)
    return values


# COPY's text format: these characters are written escaped, exactly as psycopg's own formatter does.
_COPY_SPECIAL = re.compile("[\b\t\n\v\f\r\\\\]")
_COPY_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r", "\\": "\\\\"}


def copy_text(value: str) -> str:
    """A text value as COPY's text format reads it back unchanged."""
    if _COPY_SPECIAL.search(value) is None:
        return value
    return _COPY_SPECIAL.sub(lambda found: _COPY_ESCAPES[found.group()], value)


_NULL = repr("\\N")


def _copy_expression(kind: str, v: str, time_text: str) -> str:
    """The COPY text of a column's value `v` (an expression), per kind; times by the function `time_text`.

    One rule for both ways a line is made: `copy_line` from a mapped row (times as datetimes,
    `postgresql_time`), `_copy_values` from the served record (epoch ms, `postgresql_ms`).
    """
    if kind == "timestamp":
        return f"{_NULL} if {v} is None else {time_text}({v})"
    if kind == "text":
        return f"{_NULL} if {v} is None else copy_text({v})"
    if kind == "flag":
        return f"{_NULL} if {v} is None else ('t' if {v} else 'f')"
    return f"{_NULL} if {v} is None else str({v})"  # ids, integers, amounts (int, float, Decimal): shortest exact text


def _copy_line_source() -> str:
    """Source of `copy_line`: one expression per column, generated from ORDER_FIELDS like transform's fast path.

    Straight-line code costs about what psycopg's compiled formatter does (5 µs a row), and it runs
    in the worker, so the writer's core only joins finished lines.
    """
    parts = [_copy_expression(f.kind, f"row[{f.column!r}]", "postgresql_time") for f in ORDER_FIELDS]
    parts.append(f"copy_text(row[{RAW_JSON!r}].decode())")
    parts.append("row['fingerprint']")
    body = ",\n        ".join(parts)
    return f"def copy_line(row):\n    return ('\\t'.join((\n        {body},\n    )) + '\\t').encode()\n"


_copy_namespace: dict[str, Any] = {"copy_text": copy_text, "postgresql_time": postgresql_time}
exec(compile(_copy_line_source(), "<sync.prepare copy_line>", "exec"), _copy_namespace)  # noqa: S102 (our own source)
copy_line: Callable[[dict[str, Any]], bytes] = _copy_namespace["copy_line"]
copy_line.__doc__ = """A mapped row as one line of COPY text without its last column, `synced_at`, and newline.

The writer ends every line with the same `<synced_at>\\n`, so a page's lines are written with one join.
"""


# The common case (every value already of its column's type) goes from the served record straight to
# the driver's form with `to_row`'s own checks (`transform.fast_path_source`): no row dict, no datetime,
# the raw JSON kept as bytes. It must give exactly what `values_of` and `copy_line` give for the mapped
# row (tests/test_prepare.py holds it to that); everything else takes that general path.
_sqlite_values = compile_fast_path(
    "_sqlite_values",
    {"id": "v", "int": "v", "amount": "v", "text": "v", "flag": "v"}
    | {"timestamp": "None if v is None else sqlite_ms(v)"},
    {"sqlite_ms": sqlite_ms},
)
_copy_values = compile_fast_path(
    "_copy_values",
    {f.kind: _copy_expression(f.kind, "v", "postgresql_ms") for f in ORDER_FIELDS},
    {"postgresql_ms": postgresql_ms, "copy_text": copy_text},
)


def _fast(record: Any, cm_id: int, copy: bool) -> Prepared | None:
    """`record` prepared on the common path, or None when it needs the general one (`to_row`)."""
    if type(record) is not dict:
        return None
    values = _copy_values(record, cm_id) if copy else _sqlite_values(record, cm_id)
    if values is None:
        return None
    try:
        raw_json = canonical_json(record)
    except BadValue:  # not writable as served: the general path words the rejection
        return None
    if b"\\u0000" in raw_json:
        return None
    fingerprint = digest(raw_json)
    if copy:
        # JSON text holds no raw control character, so of COPY's special characters only `\` can occur.
        row: list[Any] | bytes = b"\t".join(
            ("\t".join(values).encode(), raw_json.replace(b"\\", b"\\\\"), fingerprint.encode(), b"")
        )
    else:
        values += (raw_json.decode(), fingerprint, None)
        row = values
    return record["id"], record["lastModificationTime"], fingerprint, record["createDate"], row


def prepare(records: list[Any], cm_id: int, dialect: Dialect) -> list[Prepared | Rejection]:
    """Map each record, in order: its `Prepared` tuple, or the `Rejection` saying why it cannot be stored.

    For PostgreSQL the row is a line of COPY text (`copy_line`), for SQLite its value list (`values_of`).
    """
    return prepare_noting(records, cm_id, dialect)[0]


def prepare_noting(records: list[Any], cm_id: int, dialect: Dialect) -> tuple[list[Prepared | Rejection], list[int]]:
    """`prepare`, and the positions of the records that took the general path (`to_row`).

    Only a record on the common path has had the type of every documented value checked; on the
    general path a value can be kept as parsed (a float as text, a rejected record's payload),
    which `read.read_page` must know about.
    """
    out: list[Prepared | Rejection] = []
    general: list[int] = []
    copy = dialect == "postgresql"
    for position, record in enumerate(records):
        ready = _fast(record, cm_id, copy)
        if ready is not None:
            out.append(ready)
            continue
        general.append(position)
        row = to_row(record, cm_id, _PLACEHOLDER)
        if isinstance(row, Rejection):
            out.append(row)
            continue
        out.append(
            (
                row["id"],
                to_ms(row["last_modification_time"]),
                row["fingerprint"],
                to_ms(row["create_date"]),
                copy_line(row) if copy else values_of(row, dialect),
            )
        )
    return out, general
