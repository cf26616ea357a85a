"""Rows made ready for the driver: the common path gives exactly what mapping a record and writing out its row gives."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.prepare import (
    _PLACEHOLDER,
    _fast,
    copy_line,
    postgresql_ms,
    postgresql_time,
    prepare,
    sqlite_ms,
    sqlite_time,
    values_of,
)
from sync.transform import EARLIEST_MS, LATEST_MS, Rejection, _to_row_in_full
from sync.windows import from_ms, to_ms
from tests.test_transform import GOOD, _edge_cases

CM_ID = 1000298


def _general(record: Any, dialect: str) -> Any:
    """What `prepare` gave before it had a common path: the full mapping, then the row written out."""
    row = _to_row_in_full(record, CM_ID, _PLACEHOLDER)
    if isinstance(row, Rejection):
        return row
    written = copy_line(row) if dialect == "postgresql" else values_of(row, "sqlite")  # type: ignore[arg-type]
    return row["id"], to_ms(row["last_modification_time"]), row["fingerprint"], to_ms(row["create_date"]), written


_AWKWARD_TEXT = [
    {"remarks": 'back\\slash "quoted" line\nbreak\ttab\r\x08\x0c\x0b end'},
    {"remarks": "\\N"},
    {"deliveryStatus": "\u2028 é 日本 🚚", "remarks": ""},
    {"new\\field": "a\\b", "another": {"nested": ["\t", "\\"]}},
]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_common_path_prepares_every_record_exactly_as_the_general_one(start_emulator, dialect):
    emulator, _ = start_emulator(orders=2000, days=5, malformed_rate=0.1, seed=43)
    records = [*emulator.store.truth(), *_edge_cases(), *({**GOOD, **text} for text in _AWKWARD_TEXT)]
    assert prepare(records, CM_ID, dialect) == [_general(r, dialect) for r in records]  # type: ignore[arg-type]
    common = sum(_fast(r, CM_ID, dialect == "postgresql") is not None for r in records)
    assert common > 1500, "well-typed records take the common path"


_TEXT = st.one_of(st.none(), st.text(st.characters(blacklist_categories=("Cs",))))


@given(
    served=st.fixed_dictionaries(
        {"remarks": _TEXT, "deliveryStatus": _TEXT},
        optional={"invoiceSent": st.one_of(st.none(), st.booleans()), "extra": _TEXT, "productValue": st.floats()},
    )
)
def test_any_text_is_written_out_as_the_general_path_writes_it(served):
    record = {**GOOD, **served}
    for dialect in ("sqlite", "postgresql"):
        assert prepare([record], CM_ID, dialect) == [_general(record, dialect)]  # type: ignore[arg-type]


@given(epoch_ms=st.integers(EARLIEST_MS, LATEST_MS))
def test_times_are_written_from_epoch_milliseconds_as_from_datetimes(epoch_ms):
    assert sqlite_ms(epoch_ms) == sqlite_time(from_ms(epoch_ms))
    assert postgresql_ms(epoch_ms) == postgresql_time(from_ms(epoch_ms))


def test_a_copy_line_keeps_the_raw_json_exactly_once_copy_reads_it_back():
    """COPY's text format reads `\\\\` as one backslash: the raw JSON's escapes must come back unchanged."""
    record = {**GOOD, **_AWKWARD_TEXT[0]}
    ready = prepare([record], CM_ID, "postgresql")[0]
    assert not isinstance(ready, Rejection) and isinstance(ready[4], bytes)
    fields = ready[4].split(b"\t")
    raw = fields[-3].replace(b"\\\\", b"\\")
    assert orjson.loads(raw) == record and b"\n" not in ready[4]
