"""`kapture-sync export`: `orders_current` as CSV or Parquet, streamed in chunks so memory stays flat.

PostgreSQL streams through a server-side cursor (`yield_per`); SQLite is read in keyset chunks
(`(cm_id, id) > last ORDER BY cm_id, id LIMIT n`) inside one read transaction, so both see one
snapshot and neither holds more than one chunk. `--since`/`--until` select on `create_day_local`,
the create date in the account's zone. `raw` is not exported (it stays in the database).
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import IO, Any

from sqlalchemy import Boolean, Date, DateTime, bindparam, text
from sqlalchemy.engine import Connection, Engine

from sync.errors import SettingsError
from sync.models import Amount, UTCDateTime
from sync.schema_doc import columns_of

CHUNK = 10_000
COLUMNS: tuple[tuple[str, str], ...] = tuple((c, k) for c, k, _ in columns_of("orders_current") if c != "raw")
_SQL_TYPES: dict[str, Any] = {
    "timestamp (UTC)": UTCDateTime(),
    "timestamp (local)": DateTime(),
    "date (local)": Date(),
    "numeric": Amount(),
    "boolean": Boolean(),
}
Chunk = Sequence[Sequence[Any]]


def _query(filters: list[str], keyset: bool) -> Any:
    where = list(filters) + (["(cm_id > :last_cm_id OR (cm_id = :last_cm_id AND id > :last_id))"] if keyset else [])
    sql = f"SELECT {', '.join(c for c, _ in COLUMNS)} FROM orders_current"
    sql += (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY cm_id, id"
    sql += " LIMIT :chunk" if keyset else ""
    stmt = text(sql).bindparams(
        *(bindparam(name, type_=Date()) for name in ("since", "until") if f":{name}" in sql),
        *(bindparam(name, type_=UTCDateTime()) for name in ("low", "high") if f":{name}" in sql),
    )
    return stmt.columns(**{c: _SQL_TYPES[k] for c, k in COLUMNS if k in _SQL_TYPES})


def _filters(cm_id: int | None, since: date | None, until: date | None) -> tuple[list[str], dict[str, Any]]:
    """The WHERE terms; a coarse UTC range on `create_date` (no zone is 2 days off) lets the index serve it."""
    terms: list[str] = []
    params: dict[str, Any] = {}
    if cm_id is not None:
        terms.append("cm_id = :cm_id")
        params["cm_id"] = cm_id
    if since is not None:
        terms += ["create_day_local >= :since", "create_date >= :low"]
        params["since"] = since
        params["low"] = datetime.combine(since - timedelta(days=2), time(), UTC)
    if until is not None:
        terms += ["create_day_local <= :until", "create_date < :high"]
        params["until"] = until
        params["high"] = datetime.combine(until + timedelta(days=3), time(), UTC)
    return terms, params


def chunks(
    conn: Connection, cm_id: int | None = None, since: date | None = None, until: date | None = None, size: int = CHUNK
) -> Iterator[Chunk]:
    """The selected rows of `orders_current` (without `raw`), at most `size` at a time, ordered by account and id."""
    terms, params = _filters(cm_id, since, until)
    if conn.dialect.name == "postgresql":
        options = {"stream_results": True, "yield_per": size}  # for this statement only, not the connection
        result = conn.execute(_query(terms, False), params, execution_options=options)
        yield from result.partitions()
        return
    last: tuple[int, int] = (-(2**63), -(2**63))
    while True:
        rows = conn.execute(
            _query(terms, True), {**params, "last_cm_id": last[0], "last_id": last[1], "chunk": size}
        ).all()
        if rows:
            yield rows
        if len(rows) < size:
            return
        last = (rows[-1][0], rows[-1][1])


def count(conn: Connection, cm_id: int | None, since: date | None, until: date | None) -> int:
    terms, params = _filters(cm_id, since, until)
    sql = "SELECT COUNT(*) FROM orders_current" + (" WHERE " + " AND ".join(terms) if terms else "")
    stmt = text(sql).bindparams(
        *(bindparam(n, type_=Date()) for n in ("since", "until") if f":{n}" in sql),
        *(bindparam(n, type_=UTCDateTime()) for n in ("low", "high") if f":{n}" in sql),
    )
    return int(conn.execute(stmt, params).scalar_one())


def _csv_value(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


class CsvSink:
    def __init__(self, out: IO[bytes]) -> None:
        self._text = io.TextIOWrapper(out, encoding="utf-8", newline="", write_through=True)
        self._csv = csv.writer(self._text)
        self._csv.writerow([c for c, _ in COLUMNS])

    def write(self, rows: Chunk) -> None:
        self._csv.writerows([[_csv_value(v) for v in row] for row in rows])

    def close(self) -> None:
        self._text.flush()
        self._text.detach()


def arrow_schema() -> Any:
    import pyarrow as pa

    kinds = {
        "bigint": pa.int64(),
        "integer": pa.int32(),
        "float": pa.float64(),
        "numeric": pa.decimal128(38, 8),  # amounts: < 10^15, at most 8 decimal places (see transform.py)
        "boolean": pa.bool_(),
        "timestamp (UTC)": pa.timestamp("us", tz="UTC"),
        "timestamp (local)": pa.timestamp("us"),
        "date (local)": pa.date32(),
    }
    return pa.schema([(c, kinds.get(k, pa.string())) for c, k in COLUMNS])


class ParquetSink:
    def __init__(self, out: IO[bytes]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        self._pa = pa
        self._schema = arrow_schema()
        self._writer = pq.ParquetWriter(pa.PythonFile(out, mode="w"), self._schema)
        self._names = [c for c, _ in COLUMNS]

    def write(self, rows: Chunk) -> None:
        columns = list(zip(*rows, strict=True))
        arrays = [self._pa.array(list(col), type=field.type) for col, field in zip(columns, self._schema, strict=True)]
        self._writer.write_batch(self._pa.RecordBatch.from_arrays(arrays, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


def sink_for(fmt: str, out: IO[bytes]) -> CsvSink | ParquetSink:
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise SettingsError(
                "bad setting: --format parquet needs pyarrow: pip install 'kapture-sync[export]'"
            ) from None
        return ParquetSink(out)
    return CsvSink(out)


def export(
    engine: Engine,
    fmt: str,
    out: IO[bytes],
    cm_id: int | None = None,
    since: date | None = None,
    until: date | None = None,
    size: int = CHUNK,
    progress: Callable[[int | None], Any] | None = None,
) -> int:
    """Write the selection to `out`; returns the rows written. `progress(total)` gives a tqdm-like bar."""
    sink = sink_for(fmt, out)
    written = 0
    with engine.connect() as conn, conn.begin():
        bar = progress(count(conn, cm_id, since, until)) if progress else None
        for rows in chunks(conn, cm_id, since, until, size):
            sink.write(rows)
            written += len(rows)
            if bar is not None:
                bar.update(len(rows))
        sink.close()
        if bar is not None:
            bar.close()
    return written


def stdout() -> IO[bytes]:
    return sys.stdout.buffer
