"""JSON text read and written exactly: orjson where it can, Python's json where orjson would change a value.

orjson reads an integer beyond 64 bits as the nearest float (`123456789012345678901234567890`
becomes `1.2345678901234568e+29`) and refuses to write one. A field holding such a number, one
the documentation does not list, would reach `raw` changed, with nothing to say so. A page that
holds one is read again with Python's json, which keeps it exact (`inexact`, `loads_exact`), and
such values are written by Python's json too (`dumps_sorted`, `dumps`). Nesting stays within
what orjson writes (254 levels), so that everything stored can be read back by every tool.

A body neither parser reads strictly may still be a page whose other records are good: text
that is not valid Unicode (a lone `\ud83d` escape, bytes that are not UTF-8), or a number no
double holds (`1e999`, `NaN`). `loads_salvaged` reads it, each such value (or key) standing as an
`Unreadable`, which no JSON writer takes: its record is rejected with the reason, and kept with
the value's text in its place (`stand_ins`).
"""

from __future__ import annotations

import json
from typing import Any

import orjson

MAX_DEPTH = 254  # levels of objects and lists orjson writes
_HUGE = float(2**63)  # any float this large read from a page may have been an integer beyond 64 bits


class Unwritable(ValueError):
    """A value nested more than MAX_DEPTH levels deep, or holding an `Unreadable`; the message says which."""


class Unreadable:
    """A value (or key) of a salvaged page that JSON text cannot carry, standing in for it with its text.

    A plain class, not a dataclass: orjson writes dataclasses as objects, and this must be refused.
    """

    __slots__ = ("text", "reason")

    def __init__(self, text: str, reason: str) -> None:
        self.text = text
        self.reason = reason

    def __repr__(self) -> str:  # as a rejection's reason quotes a value: "expected a number, got 'NaN' (...)"
        return f"{self.text!r} ({self.reason})"

    def __eq__(self, other: object) -> bool:
        return type(other) is Unreadable and (other.text, other.reason) == (self.text, self.reason)

    def __hash__(self) -> int:
        return hash((self.text, self.reason))


_NOT_UNICODE = "text that is not valid Unicode"


def _checked_text(text: str) -> str | Unreadable:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return Unreadable(text.encode("utf-8", "backslashreplace").decode("ascii"), _NOT_UNICODE)
    return text


def _number(text: str) -> float | Unreadable:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        return Unreadable(text, "a number beyond what a double holds")
    return value


def _constant(text: str) -> Unreadable:
    return Unreadable(text, "a number JSON does not have")


def _checked(value: Any) -> Any:
    """Text checked in `value` and the lists it holds (its objects were checked as they were made)."""
    if type(value) is str:
        return _checked_text(value)
    if type(value) is list:
        return [_checked(item) for item in value]
    return value


def _pairs(pairs: list[tuple[str, Any]]) -> dict[Any, Any]:
    obj: dict[Any, Any] = {}
    for key, raw_value in pairs:
        checked = _checked_text(key)
        value = _checked(raw_value)
        if type(checked) is Unreadable:  # the key's text stands in for it; its value says why
            obj[checked.text] = Unreadable(dumps(stand_ins(value)), f"its key is {_NOT_UNICODE}")
        else:
            obj[key] = value
    return obj


def loads_salvaged(content: bytes) -> Any:
    """`content` read however its text or numbers are spoiled, each spoiled part an `Unreadable`;
    raises ValueError only for what is no JSON at all (a truncated body, an HTML page).

    For a body orjson refused: slow, and meant only for that. Integers stay exact.
    """
    text = content.decode("utf-8", "surrogateescape")  # a byte that is not UTF-8 becomes a lone surrogate
    return _checked(json.loads(text, parse_float=_number, parse_constant=_constant, object_pairs_hook=_pairs))


def stand_ins(value: Any) -> Any:
    """`value` with each `Unreadable` replaced by its text: what a rejected record is kept as."""
    if type(value) is Unreadable:
        return value.text
    if type(value) is dict:
        return {key: stand_ins(item) for key, item in value.items()}
    if type(value) is list:
        return [stand_ins(item) for item in value]
    return value


def unreadable_in(value: Any) -> str | None:
    """Each `Unreadable` in `value`, named by its top-level field, or None when it holds none."""
    found: list[str] = []
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        where, item = stack.pop()
        if type(item) is Unreadable:
            found.append(f"{where or 'record'}: {item.reason} ({item.text})")
        elif type(item) is dict:
            stack.extend((where or str(key), child) for key, child in reversed(item.items()))
        elif type(item) is list:
            stack.extend((where, child) for child in reversed(item))
    return "; ".join(found) or None


def inexact(value: Any) -> bool:
    """Whether `value` (parsed by orjson) holds a float so large it may have been served as an integer.

    Runs for every record a page leaves unmapped (all of them in a sync with nothing new): scalars
    are checked where they are met, only objects and lists wait on the stack.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is float:
            if not -_HUGE < item < _HUGE:
                return True
            continue
        if kind is not dict and kind is not list:
            continue
        for child in item.values() if kind is dict else item:
            kind = type(child)
            if kind is float:
                if not -_HUGE < child < _HUGE:
                    return True
            elif kind is dict or kind is list:
                stack.append(child)
    return False


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not JSON")


def loads_exact(content: bytes) -> Any:
    """`content` parsed keeping every integer exact; as strict as orjson (no NaN or Infinity)."""
    return json.loads(content, parse_constant=_refuse)


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is not dict and type(item) is not list:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in (item.values() if type(item) is dict else item))
    return False


def _python_json(value: Any, sort_keys: bool) -> bytes:
    """What orjson would write, for a value orjson cannot write (an integer beyond 64 bits); raises
    Unwritable for one nested too deeply or holding an `Unreadable`."""
    if _deeper_than(value, MAX_DEPTH):
        raise Unwritable(f"nested too deeply to be written back as JSON (nested more than {MAX_DEPTH} levels deep)")
    try:
        return json.dumps(
            value, sort_keys=sort_keys, ensure_ascii=False, separators=(",", ":"), allow_nan=False
        ).encode()
    except TypeError:  # an Unreadable: nothing else a page is read into is refused
        raise Unwritable(unreadable_in(value) or "holds a value JSON text cannot carry") from None


def dumps_sorted(value: Any) -> bytes:
    """`value` as JSON with its keys sorted; raises Unwritable when it is nested too deeply."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        return _python_json(value, sort_keys=True)


def dumps(value: Any) -> str:
    """`value` as JSON text, for a JSON column."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError:
        return _python_json(value, sort_keys=False).decode()
