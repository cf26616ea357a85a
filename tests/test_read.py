"""Reading one answer: every record keyed and stamped, mapped above the floor and let go, the rest kept as served."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from sync.judge import judge
from sync.prepare import prepare
from sync.read import Destination, pack, read_page, unpack
from sync.transform import Rejection, fingerprint

BASE_MS = 1_795_152_848_000


def _records() -> list[Any]:
    good = [
        {"id": i, "cmId": 7, "createDate": BASE_MS + i, "lastModificationTime": BASE_MS + 1000 * i} for i in range(10)
    ]
    return [*good, {"id": "twelve", "lastModificationTime": BASE_MS}, None, {"lastModificationTime": BASE_MS}]


def _body(records: list[Any]) -> bytes:
    return orjson.dumps({"success": "true", "order_details": records})


def test_records_above_the_floor_are_mapped_and_let_go_those_at_or_below_it_are_kept_as_served():
    records = _records()
    floor = BASE_MS + 4000
    page = read_page(200, {}, _body(records), Destination(7, "sqlite", floor))
    above = [i for i in range(10) if records[i]["lastModificationTime"] > floor]
    assert above == [5, 6, 7, 8, 9]
    assert [i for i, p in enumerate(page.prepared) if type(p) is tuple] == above
    assert page.prepared[:5] == [None] * 5 and page.records[:5] == records[:5]
    assert [page.records[i] for i in above] == [None] * 5, "a mapped record is let go"
    assert [page.prepared[i] for i in above] == prepare([records[i] for i in above], 7, "sqlite")
    # Not plain numbers: mapped whatever the floor, and rejected with the record kept beside the reason.
    assert all(isinstance(p, Rejection) for p in page.prepared[10:]) and page.records[10:] == records[10:]
    assert page.keys == [*range(10), fingerprint(records[10]), fingerprint(None), fingerprint(records[12])]
    assert page.versions == [BASE_MS + 1000 * i for i in range(10)] + [-1, -1, -1]  # no id to stamp it by


def test_without_a_destination_every_record_is_kept_as_served_and_none_is_mapped():
    records = _records()
    page = read_page(200, {}, _body(records))
    assert page.records == records and page.prepared == [None] * len(records)
    assert page.records == judge(200, {}, _body(records)).records


def test_undocumented_fields_are_noted_by_position_with_the_order_serving_them():
    records = _records()
    records[3] = {**records[3], "loyaltyTier": "gold", "region": "north"}
    records[8] = {**records[8], "region": "south"}
    page = read_page(200, {}, _body(records), Destination(7, "postgresql"))
    assert page.undocumented == {3: {"loyaltyTier": 3, "region": 3}, 8: {"region": 8}}


def test_a_no_data_answer_is_an_empty_page_with_its_note():
    page = read_page(200, {}, b'{"success": "true", "order_details": "No data found"}', Destination(7, "sqlite"))
    assert page.records == page.keys == page.prepared == [] and page.note == "No data found"


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_page_packed_for_the_trip_back_from_the_worker_unpacks_equal(dialect):
    records = _records()
    records[2] = {**records[2], "loyaltyTier": "gold", "productValue": 12.5}
    page = read_page(200, {}, _body(records), Destination(7, dialect, BASE_MS + 4000))
    assert unpack(*pack(page)) == page
