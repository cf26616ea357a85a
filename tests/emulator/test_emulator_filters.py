"""Date, id and paging filters over HTTP, including the exact day boundaries in Asia/Kolkata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from sync.emulator import EmulatorConfig

CM_ID = 1000298


def local_ms(
    y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0, ms: int = 0, zone: str = "Asia/Kolkata"
) -> int:
    moment = datetime(y, mo, d, h, mi, s, ms * 1000, tzinfo=ZoneInfo(zone))
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


# Orders placed on and around 2020-03-15 (IST), far from the generated ones (the last 20 days).
BOUNDARY_TIMES = {
    "14th last ms": local_ms(2020, 3, 14, 23, 59, 59, 999),
    "15th midnight": local_ms(2020, 3, 15),
    "15th 11:59:59.999": local_ms(2020, 3, 15, 11, 59, 59, 999),
    "15th noon": local_ms(2020, 3, 15, 12),
    "15th noon .999": local_ms(2020, 3, 15, 12, 0, 0, 999),
    "15th 12:00:01": local_ms(2020, 3, 15, 12, 0, 1),
    "15th last ms": local_ms(2020, 3, 15, 23, 59, 59, 999),
    "16th midnight": local_ms(2020, 3, 16),
}


def place(emulator) -> dict[int, str]:
    """Create one order at each boundary time; id -> label."""
    return {emulator.store.create(1, at_ms=at)[0]["id"]: label for label, at in BOUNDARY_TIMES.items()}


def labels(client, placed: dict[int, str], **filters) -> set[str]:
    return {placed[i] for i in client.pull_ids(**filters, limit=1000)}


def test_boundary_times_are_what_the_test_thinks():
    # 2020-03-15 00:00 IST is 2020-03-14 18:30 UTC
    assert BOUNDARY_TIMES["15th midnight"] == int(datetime(2020, 3, 14, 18, 30, tzinfo=UTC).timestamp()) * 1000


def test_date_only_window_is_the_whole_day_in_kolkata_when_end_is_inclusive(emu):
    emulator, client = emu
    placed = place(emulator)
    assert labels(client, placed, createStartDate="2020-03-15", createEndDate="2020-03-15") == {
        "15th midnight",
        "15th 11:59:59.999",
        "15th noon",
        "15th noon .999",
        "15th 12:00:01",
        "15th last ms",
    }
    assert labels(client, placed, createStartDate="2020-03-16", createEndDate="2020-03-16") == {"16th midnight"}
    assert labels(client, placed, createStartDate="2020-03-14", createEndDate="2020-03-14") == {"14th last ms"}


def test_datetime_bounds_when_end_is_inclusive(emu):
    emulator, client = emu
    placed = place(emulator)
    # start is inclusive to the millisecond; an inclusive datetime end covers its whole second
    assert labels(client, placed, createStartDate="2020-03-15 12:00:00", createEndDate="2020-03-15 12:00:00") == {
        "15th noon",
        "15th noon .999",
    }
    assert labels(client, placed, createStartDate="2020-03-15 00:00:00", createEndDate="2020-03-15 11:59:59") == {
        "15th midnight",
        "15th 11:59:59.999",
    }
    # mixing formats
    assert labels(client, placed, createStartDate="2020-03-15 12:00:01", createEndDate="2020-03-15") == {
        "15th 12:00:01",
        "15th last ms",
    }


def test_end_exclusive_mode_excludes_the_instant_named(serve):
    emulator, client = serve(EmulatorConfig(orders=50, days=5, end_inclusive=False))
    placed = place(emulator)
    assert labels(client, placed, createStartDate="2020-03-15", createEndDate="2020-03-15") == set()
    assert labels(client, placed, createStartDate="2020-03-15", createEndDate="2020-03-16") == {
        "15th midnight",
        "15th 11:59:59.999",
        "15th noon",
        "15th noon .999",
        "15th 12:00:01",
        "15th last ms",
    }
    assert labels(client, placed, createStartDate="2020-03-15 00:00:00", createEndDate="2020-03-15 12:00:00") == {
        "15th midnight",
        "15th 11:59:59.999",
    }


def test_open_ended_ranges(emu):
    emulator, client = emu
    placed = place(emulator)
    assert labels(client, placed, createEndDate="2020-03-14") == {"14th last ms"}
    assert labels(client, placed, createStartDate="2020-03-16", createEndDate="2020-03-31") == {"16th midnight"}
    assert len(client.pull(createStartDate="2020-03-16", limit=10_000)) == 401  # 400 generated + 16th midnight


def test_dates_are_read_in_the_configured_zone(serve):
    emulator, client = serve(EmulatorConfig(orders=20, days=5, timezone="UTC"))
    placed = place(emulator)
    # 00:00 IST on the 15th is 18:30 UTC on the 14th
    assert labels(client, placed, createStartDate="2020-03-14", createEndDate="2020-03-14") == {
        "14th last ms",
        "15th midnight",
    }
    assert labels(client, placed, createStartDate="2020-03-15", createEndDate="2020-03-15") == {
        "15th 11:59:59.999",
        "15th noon",
        "15th noon .999",
        "15th 12:00:01",
        "15th last ms",
        "16th midnight",
    }


def test_customer_and_order_id_filters(emu):
    emulator, client = emu
    truth = emulator.store.truth()
    by_customer: dict[int, list[int]] = {}
    for order in truth:
        by_customer.setdefault(order["customerId"], []).append(order["id"])
    customer, their_ids = max(by_customer.items(), key=lambda item: len(item[1]))
    assert len(their_ids) >= 2  # the pool is small enough for repeat customers
    assert sorted(client.pull_ids(customerIds=str(customer), limit=1000)) == sorted(their_ids)
    assert sorted(client.pull_ids(customerIds=customer, limit=1000)) == sorted(their_ids)

    wanted = [truth[3]["id"], truth[100]["id"], truth[250]["id"]]
    assert client.pull_ids(orderIds=f"{wanted[2]}, {wanted[0]},{wanted[1]}") == wanted  # oldest first
    assert client.pull_ids(orderIds=[wanted[1]]) == [wanted[1]]
    assert client.pull_ids(orderIds=str(wanted[0])) == [wanted[0]]
    assert client.pull_ids(orderIds="1,2,3") == []
    # filters combine
    other = next(o for o in truth if o["customerId"] != customer)
    assert client.pull_ids(orderIds=f"{their_ids[0]},{other['id']}", customerIds=str(customer)) == [their_ids[0]]
    created = datetime.fromtimestamp(other["createDate"] / 1000, ZoneInfo("Asia/Kolkata")).date()
    day = created.isoformat()
    assert client.pull_ids(orderIds=str(other["id"]), createStartDate=day, createEndDate=day) == [other["id"]]
    before = (created - timedelta(days=1)).isoformat()
    assert client.pull_ids(orderIds=str(other["id"]), createStartDate=before, createEndDate=before) == []


@pytest.mark.parametrize(
    ("limit", "offset", "expected"),
    [
        ("10", "0", (0, 10)),
        (10, 0, (0, 10)),
        ("25", "390", (390, 400)),
        (25, 390, (390, 400)),
        ("", "", (0, 100)),  # "" means the default limit 100 and offset 0
        (None, None, (0, 100)),  # absent likewise
        ("5", "", (0, 5)),
        ("", 395, (395, 400)),
        (1000, 0, (0, 400)),
        ("3", "1000", (400, 400)),
        (" 4 ", " 2 ", (2, 6)),
    ],
)
def test_limit_and_offset_as_strings_numbers_or_empty(emu, limit, offset, expected):
    emulator, client = emu
    all_ids = [o["id"] for o in sorted(emulator.store.truth(), key=lambda o: (o["createDate"], o["id"]))]
    fields = {"createStartDate": "2000-01-01"}
    if limit is not None:
        fields["limit"] = limit
    if offset is not None:
        fields["offset"] = offset
    assert client.pull_ids(**fields) == all_ids[expected[0] : expected[1]]


def test_default_limit_is_configurable(serve):
    _, client = serve(EmulatorConfig(orders=60, default_limit=25))
    assert len(client.pull(createStartDate="2000-01-01")) == 25


def test_paging_every_day_window_yields_the_truth_exactly_once(serve):
    emulator, client = serve(EmulatorConfig(orders=1500, days=12, seed=3, malformed_rate=0.02))
    today = datetime.now(ZoneInfo("Asia/Kolkata")).date()
    seen: list[dict] = []
    requests = 0
    day = today - timedelta(days=13)
    while day <= today:
        offset = 0
        while True:
            page = client.pull(
                createStartDate=day.isoformat(), createEndDate=day.isoformat(), limit="97", offset=str(offset)
            )
            requests += 1
            seen.extend(page)
            offset += len(page)
            if len(page) < 97:
                break
        day += timedelta(days=1)
    truth = emulator.store.truth()
    key = lambda order: (order.get("id") is None, order.get("id") or 0, repr(order))  # noqa: E731
    assert sorted(seen, key=key) == sorted(truth, key=key)
    ids = [o["id"] for o in seen if "id" in o]
    assert len(ids) == len(set(ids))
    assert emulator.stats()["pull_requests"] == requests


def test_the_repeated_hour_of_a_fall_back_night_is_read_as_wall_clock_time(serve):
    """On 2025-11-02 New York reads 01:00-01:59 twice (05:00-07:00 UTC): a range over it serves both passes."""
    emulator, client = serve(EmulatorConfig(orders=20, days=5, timezone="America/New_York"))
    utc_ms = lambda h, mi=0, s=0, ms=0: local_ms(2025, 11, 2, h, mi, s, ms, zone="UTC")  # noqa: E731
    times = {
        "00:59:59.999 EDT": utc_ms(4, 59, 59, 999),
        "01:00 EDT": utc_ms(5),
        "01:30 EDT": utc_ms(5, 30),
        "01:00 EST": utc_ms(6),
        "01:59:59.999 EST": utc_ms(6, 59, 59, 999),
        "02:00 EST": utc_ms(7),
    }
    placed = {emulator.store.create(1, at_ms=at)[0]["id"]: label for label, at in times.items()}
    both_passes = {"01:00 EDT", "01:30 EDT", "01:00 EST", "01:59:59.999 EST"}
    day = "2025-11-02"
    # an inclusive end at a repeated wall time ends with its later pass; a start begins with the earlier
    assert labels(client, placed, createStartDate=f"{day} 01:00:00", createEndDate=f"{day} 01:59:59") == both_passes
    assert labels(client, placed, createStartDate=f"{day} 00:00:00", createEndDate=f"{day} 00:59:59") == {
        "00:59:59.999 EDT"
    }
    assert labels(client, placed, createStartDate=f"{day} 02:00:00", createEndDate=f"{day} 02:00:00") == {"02:00 EST"}
    # part of the repeated hour is served as one span, from its earlier start to its later end: a
    # superset of both passes of that part (kapture-sync never cuts a window inside the repeat)
    assert labels(client, placed, createStartDate=f"{day} 01:00:00", createEndDate=f"{day} 01:29:59") == {
        "01:00 EDT",
        "01:30 EDT",
        "01:00 EST",
    }


def test_the_repeated_hour_with_an_exclusive_end(serve):
    emulator, client = serve(EmulatorConfig(orders=20, days=5, timezone="America/New_York", end_inclusive=False))
    at = {"00:30 EDT": local_ms(2025, 11, 2, 4, 30, zone="UTC"), "01:30 EST": local_ms(2025, 11, 2, 6, 30, zone="UTC")}
    placed = {emulator.store.create(1, at_ms=ms)[0]["id"]: label for label, ms in at.items()}
    day = "2025-11-02"
    # an end at the first repeated wall time stops before the repeat; one after it takes both passes
    assert labels(client, placed, createStartDate=f"{day} 00:00:00", createEndDate=f"{day} 01:00:00") == {"00:30 EDT"}
    assert labels(client, placed, createStartDate=f"{day} 01:00:00", createEndDate=f"{day} 02:00:00") == {"01:30 EST"}
