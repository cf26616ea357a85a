"""Generated orders: every documented field, realistic values, determinism, create/edit, malformed."""

from __future__ import annotations

import time

import orjson
import pytest

from sync.emulator import MALFORMED_KINDS, Emulator, EmulatorConfig, OrderStore
from sync.emulator.generate import DAY_MS
from sync.fields import ORDER_FIELDS

NOW = 1_750_000_000_000  # 2025-06-15 ~20:36 IST
CM_ID = 1000298


def store(**settings) -> OrderStore:
    return OrderStore(EmulatorConfig(**{"orders": 600, "days": 30, "seed": 5, "now_ms": NOW, **settings}))


def test_every_documented_field_with_the_right_json_type():
    orders = store().truth()
    assert len(orders) == 600
    names = [f.api for f in ORDER_FIELDS]
    for order in orders:
        assert list(order) == names  # the vendor's field order, nothing missing, nothing extra
        for field in ORDER_FIELDS:
            value = order[field.api]
            if field.kind in ("id", "int", "timestamp"):
                assert type(value) is int and value >= 0, (field.api, value)
            elif field.kind == "amount":
                assert type(value) in (int, float) and value >= 0, (field.api, value)
                assert round(value, 2) == value, (field.api, value)
            elif field.kind == "flag":
                assert type(value) is bool, (field.api, value)
            else:
                assert type(value) is str, (field.api, value)


def test_values_look_like_real_orders():
    orders = store().truth()
    ids = [o["id"] for o in orders]
    assert min(ids) > 2_000_000_000 and len(set(ids)) == len(ids)
    assert {o["cmId"] for o in orders} == {CM_ID}
    assert all(o["customerId"] > 100_000_000 and o["enquiryId"] > 10_000_000 for o in orders)
    for order in orders:
        assert NOW - 30 * DAY_MS <= order["createDate"] <= order["lastModificationTime"] <= NOW
    assert sum(o["createDate"] == o["lastModificationTime"] for o in orders) > 100  # often unedited
    assert sum(o["createDate"] < o["lastModificationTime"] for o in orders) > 100  # often edited later
    # ids grow with create time, as Kapture's do
    by_create = sorted(orders, key=lambda o: (o["createDate"], o["id"]))
    assert [o["id"] for o in by_create] == sorted(ids)
    # recent days are at least as busy as old ones
    last_week = sum(o["createDate"] >= NOW - 7 * DAY_MS for o in orders)
    first_week = sum(o["createDate"] < NOW - 23 * DAY_MS for o in orders)
    assert last_week > first_week
    assert {o["deliveryStatus"] for o in orders} == {"AP", "DL", "CN", "PN", "RT"}
    remarks = {o["remarks"] for o in orders}
    assert "" in remarks and "डिलीवरी जल्द करें" in remarks and "café ✓" in remarks
    assert any(any(ord(ch) > 0xFFFF for ch in r) for r in remarks)  # emoji
    amounts = [o["productValue"] for o in orders]
    assert 0 in amounts and any(isinstance(a, float) and not a.is_integer() for a in amounts)
    assert {o["invoiceSent"] for o in orders} == {True, False}


def test_same_seed_and_now_give_byte_identical_orders():
    a, b = store(), store()
    assert orjson.dumps(a.truth()) == orjson.dumps(b.truth())
    assert a.query(limit=10_000) == b.query(limit=10_000)
    # and the same later stream of created orders
    assert a.create(3, at_ms=NOW + 1000) == b.create(3, at_ms=NOW + 1000)


def test_a_different_seed_or_now_gives_different_orders():
    base = orjson.dumps(store().truth())
    assert orjson.dumps(store(seed=6).truth()) != base
    assert orjson.dumps(store(now_ms=NOW + DAY_MS).truth()) != base


def test_default_now_is_the_real_clock():
    before = time.time_ns() // 1_000_000
    orders = OrderStore(EmulatorConfig(orders=200, days=3)).truth()
    after = time.time_ns() // 1_000_000
    assert max(o["lastModificationTime"] for o in orders) <= after
    assert min(o["createDate"] for o in orders) >= before - 3 * DAY_MS - 1000


def test_create_adds_orders_served_in_todays_window(emu):
    emulator, client = emu
    before = emulator.store.truth()
    created = emulator.store.create(3)
    assert len(created) == 3
    assert all(o["createDate"] == o["lastModificationTime"] for o in created)
    assert all(o["id"] > max(b["id"] for b in before) for o in created)
    truth = emulator.store.truth()
    assert len(truth) == len(before) + 3 and truth[-3:] == created
    served = client.pull(orderIds=",".join(str(o["id"]) for o in created))
    assert served == created
    assert emulator.store.get(created[0]["id"]) == created[0]
    assert emulator.store.get(1) is None


def test_edit_bumps_last_modification_time_and_changes_fields(emu):
    emulator, client = emu
    target = emulator.store.truth()[10]
    now = emulator.store.now_ms()
    emulator.store.edit(ids=[target["id"]])
    first = emulator.store.get(target["id"])
    assert first["lastModificationTime"] > target["lastModificationTime"]
    assert first["deliveryStatus"] != target["deliveryStatus"]
    assert first["createDate"] == target["createDate"] and first["id"] == target["id"]
    second = emulator.store.edit(ids=[target["id"]])[0]
    assert second["lastModificationTime"] > first["lastModificationTime"]
    assert client.pull(orderIds=str(target["id"])) == [second]
    assert now <= first["lastModificationTime"] <= emulator.store.now_ms()  # edits happen "now"
    with pytest.raises(KeyError):
        emulator.store.edit(ids=[target["id"], 12345])
    assert emulator.store.get(target["id"]) == second  # nothing edited when an id is unknown


def test_edit_picks_recent_orders_unless_asked_for_old_ones():
    s = store()
    week_ago = s.now_ms() - 7 * DAY_MS
    before = {o["id"]: o for o in s.truth()}
    recent = s.edit(n=20)
    old = s.edit(n=20, old=True)
    assert len(recent) == len(old) == 20
    assert all(o["createDate"] >= week_ago for o in recent)
    assert all(o["createDate"] < week_ago for o in old)
    for order in recent + old:
        assert order["lastModificationTime"] > before[order["id"]]["lastModificationTime"]
    changed = [o["id"] for o in s.truth() if o != before[o["id"]]]
    assert sorted(changed) == sorted(o["id"] for o in recent + old)


def test_edit_with_keep_stamp_changes_content_but_not_last_modification_time(emu):
    emulator, client = emu
    target = emulator.store.truth()[20]
    kept = emulator.store.edit(ids=[target["id"]], keep_stamp=True)[0]
    assert kept["lastModificationTime"] == target["lastModificationTime"]
    assert kept["deliveryStatus"] != target["deliveryStatus"]  # the content did change
    assert {k for k in kept if kept[k] != target[k]} <= {
        "deliveryStatus",
        "remarks",
        "discount",
        "assignedToId",
        "invoiceSent",
    }
    assert client.pull(orderIds=str(target["id"])) == [kept] == [emulator.store.get(target["id"])]
    picked = emulator.store.edit(n=5, old=True, keep_stamp=True)
    week_ago = emulator.store.now_ms() - 7 * DAY_MS
    assert len(picked) == 5 and all(o["createDate"] < week_ago for o in picked)
    before = {o["id"]: o for o in emulator.store.truth()}
    bumped = emulator.store.edit(ids=[target["id"]])[0]  # an ordinary edit still moves the stamp on
    assert bumped["lastModificationTime"] > before[target["id"]]["lastModificationTime"]


def test_keep_stamp_leaves_a_null_stamp_null():
    s = store(malformed_rate=1.0, orders=200)
    bad = next(o for o in s.truth() if "id" in o and o["lastModificationTime"] is None)
    edited = s.edit(ids=[bad["id"]], keep_stamp=True)[0]
    assert edited["lastModificationTime"] is None and edited["deliveryStatus"] != bad["deliveryStatus"]


def test_edit_moves_modification_time_forward_even_when_it_is_ahead_of_now():
    s = store()
    future = s.now_ms() + 3_600_000
    order = s.create(1, at_ms=future)[0]
    assert s.edit(ids=[order["id"]])[0]["lastModificationTime"] == future + 1


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_each_malformed_kind_is_served_in_its_window(emu, kind):
    emulator, client = emu
    bad = emulator.store.add_malformed(kind)
    if kind == "missing_id":
        assert "id" not in bad
    elif kind == "null_dates":
        assert bad["createDate"] is None or bad["lastModificationTime"] is None
    elif kind == "numbers_as_strings":
        assert isinstance(bad["customerId"], str) and int(bad["customerId"]) > 0
        assert isinstance(bad["productValue"], str) and len(bad["productValue"].split(".")[1]) == 2
    else:
        assert set(bad) - {f.api for f in ORDER_FIELDS}
    today = time.strftime("%Y-%m-%d", time.gmtime(emulator.store.now_ms() / 1000 + 5.5 * 3600))
    served = client.pull(createStartDate=today, createEndDate=today, limit=10_000)
    assert bad in served
    assert bad in emulator.store.truth()


def test_malformed_rate_breaks_about_that_share_of_generated_orders():
    orders = store(orders=2000, malformed_rate=0.1).truth()
    documented = {f.api for f in ORDER_FIELDS}
    broken = [
        o
        for o in orders
        if "id" not in o
        or o["createDate"] is None
        or o["lastModificationTime"] is None
        or isinstance(o["customerId"], str)
        or set(o) - documented
    ]
    assert 120 <= len(broken) <= 280
    # the well-formed remainder is unchanged by the malformed stream
    clean = {o["id"]: o for o in store(orders=2000).truth()}
    assert sum(o == clean.get(o.get("id")) for o in orders) == 2000 - len(broken)


def test_emulator_python_api_shape():
    emulator = Emulator(EmulatorConfig(orders=10, seed=9))
    assert Emulator.endpoint_path == "/ms/customer-search/order-search/api/v1/pull-internal"
    assert len(emulator.store.truth()) == 10
    stats = emulator.stats()
    assert {"requests", "pull_requests", "orders_served", "faults"} <= set(stats)
    with pytest.raises(ValueError):
        EmulatorConfig(cm_id=0)
    with pytest.raises(ValueError):
        EmulatorConfig(timezone="Not/AZone")
