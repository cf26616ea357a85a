"""JSON text read and written exactly: orjson's speed, and Python's json where orjson would change a number."""

from __future__ import annotations

import pickle

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sync.jsontext import (
    MAX_DEPTH,
    Unreadable,
    Unwritable,
    dumps,
    dumps_sorted,
    inexact,
    loads_exact,
    loads_salvaged,
    stand_ins,
)

BIG = 123456789012345678901234567890


def test_a_page_read_by_orjson_shows_an_integer_beyond_64_bits_as_a_large_float():
    assert not inexact(orjson.loads(b'{"a": [18446744073709551615, -9223372036854775808, 1e18, 0.5]}'))
    assert inexact(orjson.loads(b'{"a": [{"b": 18446744073709551616}]}'))
    assert inexact(orjson.loads(b'{"a": -9223372036854775809}'))
    assert loads_exact(b'{"a": 123456789012345678901234567890}') == {"a": BIG}


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_reading_exactly_is_as_strict_as_orjson(constant):
    with pytest.raises(ValueError):
        orjson.loads(b'{"a": ' + constant + b"}")
    with pytest.raises(ValueError):
        loads_exact(b'{"a": ' + constant + b"}")


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@given(value=_JSON)
def test_what_orjson_writes_is_written_by_orjson(value):
    assert dumps_sorted(value) == orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    assert dumps(value) == orjson.dumps(value).decode()


@given(value=_JSON, big=st.integers(2**64, 2**200) | st.integers(-(2**200), -(2**63) - 1))
def test_a_value_holding_an_integer_beyond_64_bits_is_written_exactly_and_reads_back(value, big):
    whole = {"big": big, "rest": value}
    assert orjson.loads(dumps_sorted(whole).replace(str(big).encode(), b"0")) == {"big": 0, "rest": value}
    assert loads_exact(dumps_sorted(whole)) == whole == loads_exact(dumps(whole).encode())
    assert b"\n" not in dumps_sorted({"big": big, "text": "line\nbreak\ttab\x00"}), "control characters escaped"


def test_nesting_beyond_what_orjson_writes_is_refused_not_written():
    value: object = BIG
    for _ in range(MAX_DEPTH):
        value = [value]
    assert loads_exact(dumps_sorted(value)) == value
    with pytest.raises(Unwritable):
        dumps_sorted([value])


def test_a_salvaged_page_names_each_spoiled_value_and_keeps_the_rest_exact():
    body = b'{"a": ["ok", ["deep \\udc00"]], "b": -1e999, "c": Infinity, "\xfe": 12345678901234567890123}'
    value = loads_salvaged(body)
    assert value["a"][0] == "ok"
    assert value["a"][1][0] == Unreadable("deep \\udc00", "text that is not valid Unicode")
    assert value["b"] == Unreadable("-1e999", "a number beyond what a double holds")
    assert value["c"] == Unreadable("Infinity", "a number JSON does not have")
    assert value["\\udcfe"] == Unreadable("12345678901234567890123", "its key is text that is not valid Unicode")
    assert pickle.loads(pickle.dumps(value)) == value, "it crosses to and from the worker process"
    with pytest.raises(Unwritable, match="a: text that is not valid Unicode"):
        dumps_sorted(value)
    kept = stand_ins(value)
    assert orjson.loads(dumps_sorted(kept)) == kept, "what a rejected record is kept as can be written"


@pytest.mark.parametrize("body", [b'{"order_details": [{"id": 1', b"<html>busy</html>", b""])
def test_what_is_no_json_at_all_is_not_salvaged(body):
    with pytest.raises(ValueError):
        loads_salvaged(body)
