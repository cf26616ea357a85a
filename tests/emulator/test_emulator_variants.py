"""The API variants the emulator plays, so `check` and the run guard can be tested against each one:
one date format only, dates read in another zone, order by modification time, an ignored offset,
one HTTP method only."""

from __future__ import annotations

import pytest

from sync.emulator import EmulatorConfig
from tests.emulator.conftest import CM_ID, local_ms

WHOLE = {"createStartDate": "2000-01-01"}


@pytest.mark.parametrize(
    "formats,accepted,refused",
    [
        ("date", "2020-03-15", "2020-03-15 00:00:00"),
        ("datetime", "2020-03-15 00:00:00", "2020-03-15"),
    ],
)
def test_a_server_with_one_date_format_refuses_the_other_with_a_failed_body(serve, formats, accepted, refused):
    _, client = serve(EmulatorConfig(orders=50, days=5, seed=3, date_formats=formats))
    assert len(client.pull(createStartDate=accepted)) == 50
    answer = client.send({"cmId": CM_ID, "createStartDate": refused})
    assert answer.status_code == 200
    body = answer.json()
    assert body["status"] == "failed" and "is not a valid date" in body["message"]
    pattern = "'YYYY-MM-DD HH:MM:SS'" if formats == "datetime" else "'YYYY-MM-DD'"
    assert body["message"].endswith(f"use {pattern}")


def test_dates_read_in_utc_move_the_day_edges_by_the_zone_offset(serve):
    emulator, client = serve(EmulatorConfig(orders=0, days=5, seed=3, timezone="UTC"))
    early_ist = emulator.store.create(1, at_ms=local_ms(2020, 3, 15, 2, 0))[0]["id"]  # 14th 20:30 UTC
    late_ist = emulator.store.create(1, at_ms=local_ms(2020, 3, 15, 23, 0))[0]["id"]  # 15th 17:30 UTC
    assert client.pull_ids(createStartDate="2020-03-15", createEndDate="2020-03-15") == [late_ist]
    assert client.pull_ids(createStartDate="2020-03-14", createEndDate="2020-03-14") == [early_ist]


@pytest.mark.parametrize("newest_first", [False, True])
def test_order_by_modification_time_follows_the_stamp_and_an_edit_moves_the_order(emu, newest_first):
    emulator, client = emu
    emulator.faults.order_by = "lastModificationTime"
    emulator.faults.newest_first = newest_first
    page = client.pull(**WHOLE, limit=1000)
    keys = [(o["lastModificationTime"], o["id"]) for o in page]
    assert keys == sorted(keys, reverse=newest_first) and len(page) == len(emulator.store.truth())
    created = [o["createDate"] for o in page]
    assert created != sorted(created) and created != sorted(created, reverse=True)
    moved = page[-1 if newest_first else 0]["id"]
    emulator.store.edit(ids=[moved])
    after = client.pull_ids(**WHOLE, limit=1000)
    assert after[0 if newest_first else -1] == moved
    emulator.faults.clear()
    assert emulator.faults.order_by == "createDate"


def test_an_ignored_offset_serves_the_first_page_again(emu):
    emulator, client = emu
    first = client.pull_ids(**WHOLE, limit=10)
    assert client.pull_ids(**WHOLE, limit=10, offset=10) != first
    emulator.faults.ignore_offset = True
    assert client.pull_ids(**WHOLE, limit=10, offset=10) == first
    assert client.pull_ids(**WHOLE, limit=10, offset=500) == first


def test_the_control_endpoint_sets_order_and_offset_variants(emu):
    emulator, client = emu
    answer = client.http.put("/_emulator/faults", json={"order_by": "lastModificationTime", "ignore_offset": True})
    assert answer.status_code == 200
    assert emulator.faults.order_by == "lastModificationTime" and emulator.faults.ignore_offset is True
    assert client.http.put("/_emulator/faults", json={"order_by": "id"}).status_code == 400


@pytest.mark.parametrize("only", ["GET", "POST"])
def test_a_server_with_one_method_answers_the_other_with_405_and_a_failed_body(serve, only):
    _, client = serve(EmulatorConfig(orders=20, days=5, seed=3, methods=(only,)))
    other = "POST" if only == "GET" else "GET"
    assert client.send({"cmId": CM_ID, **WHOLE}, method=only).json()["success"] == "true"
    refused = client.send({"cmId": CM_ID, **WHOLE}, method=other)
    assert refused.status_code == 405 and refused.headers["Allow"] == only
    assert refused.json() == {"message": f"{other} not allowed; use {only}", "status": "failed"}


def test_bad_variant_settings_are_refused():
    with pytest.raises(ValueError, match="date_formats"):
        EmulatorConfig(date_formats="iso")
    with pytest.raises(ValueError, match="methods"):
        EmulatorConfig(methods=("PUT",))
