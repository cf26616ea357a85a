"""A page's write: every served order ends up stored, the floor saves work but never rows, newest wins."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, delete, select, update

from sync.commit import age_bucket
from sync.db import writer
from sync.guard import requested_span
from sync.models import Order, SyncWindow
from sync.runs import backfill, reconcile, sync
from sync.transform import TOO_DEEP
from sync.windows import from_ms, to_ms
from tests.conftest import settings_for
from tests.helpers import assert_equals_truth, rejected, runs, storable, stored


def _two_days_ago_at_noon() -> tuple[date, int]:
    """A closed day in the account's zone, and its noon in epoch ms: a one-day backfill reads it."""
    zone = ZoneInfo("Asia/Kolkata")
    day = datetime.now(zone).date() - timedelta(days=2)
    return day, int(datetime.combine(day, time(12), tzinfo=zone).timestamp()) * 1000


def _paged(served: list[Any]) -> Callable[[dict], list]:
    """The `serve` fixture's answer: `served` paged by the request's offset and limit."""

    def answer(body: dict) -> list:
        offset = int(body["offset"])
        return served[offset : offset + int(body["limit"])]

    return answer


FIRST = date.today() - timedelta(days=12)
DAY_MS = 86_400_000


def _synced_with_floors(emu, engine: Engine, settings, client) -> None:
    """Backfill, then one sync: the look-back windows now carry a floor from that sync's reads."""
    backfill(engine, client, settings, FIRST)
    sync(engine, client, settings)


def test_rows_deleted_by_hand_come_back_with_the_next_sync_although_a_floor_covers_them(
    start_emulator, engine: Engine, database_url, connect
):
    emu, serving = start_emulator(orders=900, days=10)
    settings = settings_for(serving.url, database_url, lookback_days=7)
    client = connect(settings)
    _synced_with_floors(emu, engine, settings, client)
    now_ms = emu.store.now_ms()
    recent = [r["id"] for r in emu.store.truth() if storable(r) and now_ms - r["createDate"] < 5 * DAY_MS]
    lost = recent[::7]
    with writer(engine).begin() as conn:
        conn.execute(delete(Order).where(Order.id.in_(lost)))

    result = sync(engine, client, settings)

    assert result.totals.below_floor > 0, "the floor was not in effect: this test would prove nothing"
    assert result.totals.load.inserted == len(lost)
    assert_equals_truth(engine, emu.store.truth())


def test_a_no_change_sync_checks_rows_below_the_floor_by_stamp_only_and_writes_nothing(
    start_emulator, engine: Engine, database_url, connect
):
    emu, serving = start_emulator(orders=900, days=10)
    settings = settings_for(serving.url, database_url, lookback_days=7)
    client = connect(settings)
    _synced_with_floors(emu, engine, settings, client)
    before = stored(engine)

    result = sync(engine, client, settings)

    load = result.totals.load
    assert (load.inserted, load.updated) == (0, 0)
    assert result.totals.below_floor >= 0.9 * load.unchanged, "rows below the floor should skip mapping"
    assert 0 < result.totals.below_floor <= load.unchanged, "rows checked below the floor are counted unchanged"
    assert runs(engine)[-1].details["below_floor"] == result.totals.below_floor
    after = stored(engine)
    assert all(after[i].synced_at == before[i].synced_at for i in before), "an unchanged row was rewritten"


def test_an_older_copy_restored_below_the_floor_is_brought_forward(
    start_emulator, engine: Engine, database_url, connect
):
    emu, serving = start_emulator(orders=600, days=10)
    settings = settings_for(serving.url, database_url, lookback_days=7)
    client = connect(settings)
    _synced_with_floors(emu, engine, settings, client)
    now_ms = emu.store.now_ms()
    victim = next(r for r in emu.store.truth() if storable(r) and now_ms - r["createDate"] < 3 * DAY_MS)
    stale = stored(engine)[victim["id"]].last_modification_time - timedelta(days=1)
    with writer(engine).begin() as conn:  # as a restore from an older backup would leave it
        conn.execute(update(Order).where(Order.id == victim["id"]).values(last_modification_time=stale))

    result = sync(engine, client, settings)

    assert result.totals.load.updated == 1
    assert_equals_truth(engine, emu.store.truth())


def test_a_change_saved_under_the_same_stamp_is_stored_by_reconcile_and_counted(
    start_emulator, engine: Engine, database_url, connect
):
    emu, serving = start_emulator(orders=600, days=10)
    settings = settings_for(serving.url, database_url, lookback_days=7)
    client = connect(settings)
    _synced_with_floors(emu, engine, settings, client)
    edited = emu.store.edit(n=6, keep_stamp=True)
    held = stored(engine)
    assert all(to_ms(held[r["id"]].last_modification_time) == r["lastModificationTime"] for r in edited), (
        "the edits keep the stamp the database holds"
    )

    sync(engine, client, settings)
    found = reconcile(engine, client, settings)

    assert found.totals.load.updated >= 1
    assert sum(found.totals.changed_by_age.values()) == found.totals.load.updated
    assert_equals_truth(engine, emu.store.truth())
    again = reconcile(engine, client, settings)
    assert (again.totals.load.inserted, again.totals.load.updated) == (0, 0)


def test_reconcile_rewrites_rows_whose_columns_differ_from_what_their_raw_gives_today(
    emulator, engine: Engine, database_url, connect
):
    emu, serving = emulator
    settings = settings_for(serving.url, database_url)
    client = connect(settings)
    backfill(engine, client, settings, FIRST)
    victims = [r["id"] for r in emu.store.truth() if storable(r)][:5]
    with writer(engine).begin() as conn:  # columns as an older version of the parsing rules wrote them
        conn.execute(update(Order).where(Order.id.in_(victims)).values(delivery_status="??", product_quantity=-1))

    untouched = sync(engine, client, settings)
    found = reconcile(engine, client, settings)

    assert untouched.totals.load.updated == 0
    assert found.totals.load.updated == len(victims)
    rows = stored(engine)
    truth = {r["id"]: r for r in emu.store.truth() if storable(r)}
    for order_id in victims:
        assert rows[order_id].delivery_status == truth[order_id].get("deliveryStatus")
        assert rows[order_id].product_quantity == truth[order_id].get("productQuantity")


def test_an_order_edited_while_its_window_is_paged_is_stored_in_its_newest_version(
    serve, engine: Engine, database_url, connect
):
    """Newest-first with rows shifting: an order arrives at the top after the first page, pushing the
    page's last row onto the next page, and that row was edited meanwhile: it comes back newer."""
    day, noon = _two_days_ago_at_noon()
    base = [{"id": 100 - i, "createDate": noon - i * 1000, "lastModificationTime": noon} for i in range(30)]
    edited = {**base[9], "lastModificationTime": noon + 5000, "deliveryStatus": "DL"}
    arrived = {"id": 101, "createDate": noon + 1000, "lastModificationTime": noon + 1000}

    def answer(body: dict) -> list[dict]:
        offset = int(body["offset"])
        rows = base if offset == 0 else [arrived, *base[:9], edited, *base[10:]]
        return rows[offset : offset + 10]

    settings = settings_for(serve(answer), database_url, page_size=10)
    result = backfill(engine, connect(settings), settings, day, day)

    row = stored(engine)[edited["id"]]
    assert row.delivery_status == "DL" and row.raw == edited, "the first version served was kept, not the newest"
    assert set(stored(engine)) == {r["id"] for r in base}  # `arrived` sits above the offsets read: next read
    assert (result.totals.load.inserted, result.totals.load.updated) == (len(base), 1)


@pytest.mark.parametrize("good", [5, 300], ids=["mapped in the writer's thread", "mapped in the worker"])
def test_a_null_or_a_list_among_the_records_is_rejected_and_the_rest_stored(serve, engine, database_url, connect, good):
    """A page's records are let go once mapped, their places set to None: a record that was served
    as `null` is not one of those, and must be rejected like any other malformed record."""
    day, noon = _two_days_ago_at_noon()
    orders = [{"id": i, "createDate": noon + i, "lastModificationTime": noon + i} for i in range(1, good + 1)]
    served = [None, orders[0], ["a", "list"], *orders[1:]]

    settings = settings_for(serve(_paged(served)), database_url)
    result = backfill(engine, connect(settings), settings, day, day)

    assert result.outcome == "success"
    assert set(stored(engine)) == {o["id"] for o in orders}
    reasons = sorted(r.reason for r in rejected(engine))
    assert reasons == ["record is a NoneType, not an object", "record is a list, not an object"]


def _nested(depth: int) -> Any:
    value: Any = "bottom"
    for _ in range(depth):
        value = {"in": value}
    return value


@pytest.mark.parametrize("good", [5, 300], ids=["mapped in the writer's thread", "mapped in the worker"])
def test_a_record_nested_too_deeply_to_write_back_is_rejected_and_the_rest_stored(
    serve, engine, database_url, connect, good, capfd
):
    """A page parses with up to 1,024 levels of nesting but JSON is written back with at most 254:
    such a record raised out of the mapping and ended the run (and, in the worker, turned it off)."""
    day, noon = _two_days_ago_at_noon()
    orders = [{"id": i, "createDate": noon + i, "lastModificationTime": noon + i} for i in range(1, good + 1)]
    deep = {"id": 9001, "createDate": noon, "lastModificationTime": noon, "note": _nested(300)}
    served = [deep, *orders, _nested(600)]

    settings = settings_for(serve(_paged(served)), database_url)
    result = backfill(engine, connect(settings), settings, day, day)

    assert result.outcome == "success"
    assert set(stored(engine)) == {o["id"] for o in orders}
    found = {r.order_id: r for r in rejected(engine)}
    assert set(found) == {9001, None}
    assert found[9001].reason.startswith("record: nested too deeply to be written back as JSON")
    assert "id: missing" in found[None].reason and "nested too deeply" in found[None].reason
    kept = found[9001].raw["note"]
    for _ in range(199):
        kept = kept["in"]
    assert kept == TOO_DEEP, "kept, cut where it was too deep to keep"
    assert "worker.lost" not in capfd.readouterr().err


# What a record's JSON text carries in place of a placeholder string: valid JSON text that is no
# valid Unicode, numbers no double holds, and bytes that are not UTF-8 (the last two not JSON at all).
_SPOILED = {
    b'"@surrogate@"': b'"emoji cut \\ud83d"',
    b'"@bytes@"': b'"bad \xff byte"',
    b'"@huge@"': b"1e999",
    b'"@nan@"': b"NaN",
    b'"@key@"': b'"k\xfe"',
}


@pytest.mark.parametrize("good", [5, 300], ids=["mapped in the writer's thread", "mapped in the worker"])
def test_a_record_whose_text_or_numbers_no_parser_reads_is_rejected_and_the_rest_stored(
    serve, engine, database_url, connect, good, capfd
):
    """orjson refuses a whole page for one lone surrogate escape, one byte that is not UTF-8, one
    1e999: the page was retried as "truncated or non-JSON", the run failed as Kapture unreachable,
    and so did every later run, with none of the good orders beside it stored."""
    day, noon = _two_days_ago_at_noon()
    orders = [{"id": i, "createDate": noon + i, "lastModificationTime": noon + i} for i in range(1, good + 1)]
    spoiled = [
        {"id": 9001, "createDate": noon, "lastModificationTime": noon, "remarks": "@surrogate@"},
        {"id": 9002, "createDate": noon, "lastModificationTime": noon, "remarks": "@bytes@"},
        {"id": 9003, "createDate": noon, "lastModificationTime": noon, "newField": "@huge@"},
        {"id": 9004, "createDate": noon, "lastModificationTime": noon, "discount": "@nan@"},
        {"id": 9005, "createDate": noon, "lastModificationTime": noon, "@key@": 1},
    ]
    paged = _paged([*spoiled[:2], *orders, *spoiled[2:]])

    def answer(body: dict) -> bytes:
        page = json.dumps({"success": "true", "order_details": paged(body)}).encode()
        for placeholder, text in _SPOILED.items():
            page = page.replace(placeholder, text)
        return page

    settings = settings_for(serve(answer), database_url)
    result = backfill(engine, connect(settings), settings, day, day)

    assert result.outcome == "success"
    assert set(stored(engine)) == {o["id"] for o in orders}
    found = {r.order_id: r for r in rejected(engine)}
    assert set(found) == {9001, 9002, 9003, 9004, 9005}
    assert "remarks: text that is not valid Unicode (emoji cut \\ud83d)" in found[9001].reason
    assert found[9001].raw["remarks"] == "emoji cut \\ud83d", "kept with the escape as text"
    assert "remarks: text that is not valid Unicode (bad \\udcff byte)" in found[9002].reason
    assert "newField: a number beyond what a double holds (1e999)" in found[9003].reason
    assert found[9003].raw["newField"] == "1e999"
    assert "discount: a number JSON does not have (NaN)" in found[9004].reason
    assert "its key is text that is not valid Unicode" in found[9005].reason
    assert found[9005].raw["k\\udcfe"] == "1"
    assert "worker.lost" not in capfd.readouterr().err


def test_a_create_date_no_window_holds_is_rejected_not_taken_for_a_wrong_date_setting(
    serve, engine, database_url, connect
):
    """The run guard read `createDate: 2700000000000000` (the year 87,000) as an order outside its
    window, and failing to print its date ended the run with an OverflowError (exit 70)."""
    day, noon = _two_days_ago_at_noon()
    orders = [{"id": i, "createDate": noon + i, "lastModificationTime": noon + i} for i in range(1, 6)]
    absurd = [
        {"id": 9001, "createDate": 2_700_000_000_000_000, "lastModificationTime": noon},
        {"id": 9002, "createDate": "2700000000000000", "lastModificationTime": noon},
    ]

    settings = settings_for(serve(_paged([*orders, *absurd])), database_url)
    result = backfill(engine, connect(settings), settings, day, day)

    assert result.outcome == "success"
    assert set(stored(engine)) == {o["id"] for o in orders}
    found = {r.order_id: r.reason for r in rejected(engine)}
    assert set(found) == {9001, 9002}
    assert all("createDate: not an epoch-millisecond time" in reason for reason in found.values())


@pytest.mark.parametrize("where", ["undocumented field", "rejected record"])
@pytest.mark.parametrize("good", [5, 300], ids=["mapped in the writer's thread", "mapped in the worker"])
def test_an_integer_beyond_64_bits_is_kept_exactly_in_raw(serve, engine, database_url, connect, good, where):
    """orjson reads such a number as the nearest float: a field Kapture adds holding one would reach
    `raw` changed (123456789012345678901234567890 as 1.2345678901234568e+29), with nothing to say so."""
    day, noon = _two_days_ago_at_noon()
    big, negative = 123456789012345678901234567890, -(2**64) - 1
    served = [{"id": i, "createDate": noon + i, "lastModificationTime": noon + i} for i in range(1, good + 1)]
    if where == "undocumented field":
        served[0] = {**served[0], "ref": big, "refs": [{"n": negative}]}
    else:
        served.append({"id": 9002, "createDate": noon, "lastModificationTime": noon, "customerId": big})

    settings = settings_for(serve(_paged(served)), database_url)
    result = backfill(engine, connect(settings), settings, day, day)

    assert result.outcome == "success" and len(stored(engine)) == good
    if where == "undocumented field":
        raw = stored(engine)[1].raw
        assert (raw["ref"], raw["refs"]) == (big, [{"n": negative}]) and type(raw["ref"]) is int
    else:
        [refused] = rejected(engine)
        assert refused.order_id == 9002 and refused.reason.startswith("customerId: ")
        assert refused.raw["customerId"] == big and type(refused.raw["customerId"]) is int


def test_a_rejected_record_below_the_floor_keeps_its_exact_payload_run_after_run(serve, engine, database_url, connect):
    """A record at or below a window's floor is left unmapped for the writer, which maps it again on
    every sync while it is not stored: it must be mapped from an exact reading too, or the same
    payload gets a second `rejected_records` row holding the float (found by review)."""
    day, noon = _two_days_ago_at_noon()
    big = 123456789012345678901234567890
    served = [{"id": i, "createDate": noon + i, "lastModificationTime": noon + 3 * 3600_000 + i} for i in range(1, 4)]
    served.append({"id": 9002, "createDate": noon, "lastModificationTime": noon, "customerId": big})

    def answer(body: dict) -> list:
        if not str(body["createStartDate"]).startswith(day.isoformat()):
            return []
        offset = int(body["offset"])
        return served[offset : offset + int(body["limit"])]

    settings = settings_for(serve(answer), database_url, lookback_days=4)
    client = connect(settings)
    backfill(engine, client, settings, day - timedelta(days=3), day)
    for _ in range(2):
        sync(engine, client, settings)
    [row] = rejected(engine)
    assert row.order_id == 9002 and row.raw["customerId"] == big and row.seen_count == 3


@pytest.mark.parametrize("alongside", [False, True], ids=["alone on its page", "beside a record read again"])
def test_an_integer_beyond_64_bits_in_a_text_field_is_stored_as_its_digits(
    serve, engine, database_url, connect, alongside
):
    """Text fields take numbers as their text: a float's text would be orjson's reading, not what was
    served, and would differ with the page's other records (found by review)."""
    day, noon = _two_days_ago_at_noon()
    big = 123456789012345678901234567890
    served = [{"id": 1, "createDate": noon, "lastModificationTime": noon, "remarks": big}]
    if alongside:
        served.append({"id": 2, "createDate": noon, "lastModificationTime": noon, "loyalty": big})

    settings = settings_for(serve(_paged(served)), database_url)
    backfill(engine, connect(settings), settings, day, day)
    row = stored(engine)[1]
    assert (row.remarks, row.raw["remarks"]) == (str(big), big)


def _window_row(engine: Engine) -> dict[str, Any]:
    """The one ledger row, as the `sync_window_coverage` view shows it to an analyst, with the
    table's own newest stamp beside it."""
    with engine.connect() as conn:
        [row] = conn.execute(
            select(SyncWindow.max_last_modification_time, SyncWindow.changes_found, SyncWindow.order_count)
        ).all()
        [seen] = conn.exec_driver_sql("SELECT changes_found, order_count FROM sync_window_coverage").all()
    return {"max_lmt": row[0], "changes": row[1], "orders": row[2], "view": (seen[0], seen[1])}


def test_a_windows_ledger_row_holds_the_newest_stamp_and_the_changes_of_its_whole_read_across_pages(
    serve, engine: Engine, database_url, connect
):
    """`max_last_modification_time` and `changes_found` describe the window's whole read, which here
    spans three pages, each committed alone: not the last page's, nor the last commit's."""
    day, noon = _two_days_ago_at_noon()
    served: list[dict[str, Any]] = [
        {"id": i, "createDate": noon + i, "lastModificationTime": noon + 3_600_000 - i} for i in range(1, 26)
    ]
    settings = settings_for(serve(_paged(served)), database_url, page_size=10, commit_rows=1)
    client = connect(settings)

    backfill(engine, client, settings, day, day)

    first = _window_row(engine)
    assert first["max_lmt"] == from_ms(noon + 3_600_000 - 1), "the newest stamp was on the first page"
    assert (first["changes"], first["orders"]) == (25, 25)
    assert first["view"] == (25, 25)

    edited = {12: noon + 7_200_000, 24: noon + 9_000_000, 3: noon + 5_000_000}  # on pages 2, 3 and 1
    for i, stamp in edited.items():
        served[i - 1] = {**served[i - 1], "lastModificationTime": stamp, "deliveryStatus": "DL"}
    again = backfill(engine, client, settings, day, day, refetch=True)

    second = _window_row(engine)
    assert (again.totals.load.updated, again.totals.load.inserted) == (3, 0)
    assert second["max_lmt"] == from_ms(noon + 9_000_000), "the newest stamp, served on the last page"
    assert (second["changes"], second["orders"]) == (3, 25), "changes_found counts this read's changes only"
    assert second["view"] == (3, 25)


@pytest.mark.parametrize(
    ("days", "bucket"),
    [
        (0, "0-7 days"),
        (7, "0-7 days"),
        (8, "8-30 days"),
        (30, "8-30 days"),
        (31, "31-90 days"),
        (90, "31-90 days"),
        (91, "91-365 days"),
        (365, "91-365 days"),
        (366, "over 365 days"),
    ],
)
def test_an_order_on_a_bucket_boundary_is_counted_in_the_bucket_its_label_names(days: int, bucket: str) -> None:
    """The labels are inclusive ranges of whole days: "0-7 days" holds an order exactly 7 days old."""
    assert age_bucket(days) == bucket


def test_the_runs_changes_by_age_count_orders_either_side_of_a_boundary_in_their_own_bucket(
    serve, engine: Engine, database_url, connect
):
    """What `reconcile` prints and `sync_runs.details.changed_by_age` keeps: an order created 7 days
    and 23 hours before the run is "0-7 days" old, one created 8 days before is "8-30 days"."""
    zone = ZoneInfo("Asia/Kolkata")
    now = datetime.now(UTC).replace(microsecond=0)
    ages = [
        timedelta(days=7, hours=23),
        timedelta(days=8, minutes=1),
        timedelta(days=30, hours=23),
        timedelta(days=31, minutes=1),
    ]
    served = [
        {"id": n, "createDate": to_ms(now - age), "lastModificationTime": to_ms(now) - 60_000}
        for n, age in enumerate(ages, start=1)
    ]

    def answer(body: dict) -> list[dict]:
        low, high = requested_span(body["createStartDate"], body["createEndDate"], zone, True)
        inside = [r for r in served if low <= r["createDate"] < high]
        return inside[int(body["offset"]) : int(body["offset"]) + int(body["limit"])]

    settings = settings_for(serve(answer), database_url)
    first = (now - timedelta(days=32)).astimezone(zone).date()
    result = backfill(engine, connect(settings), settings, first, clock=lambda: now)

    assert result.totals.load.inserted == 4
    details = runs(engine)[-1].details or {}
    assert details.get("changed_by_age") == {"0-7 days": 1, "8-30 days": 2, "31-90 days": 1}
    assert details.get("oldest_change_days") == 31
