"""JSON text read and written exactly: orjson where it can, Python's json where orjson would change a value.

orjson reads an integer beyond 64 bits as the nearest float (`123456789012345678901234567890`
becomes `1.2345678901234568e+29`) and refuses to write one. A field holding such a number, one
the documentation does not list, would reach `raw` changed, with nothing to say so. A page that
holds one is read again with Python's json, which keeps it exact (`inexact`, `loads_exact`), and
such values are written by Python's json too (`dumps_sorted`, `dumps`). Nesting stays within
what orjson writes (254 levels), so that everything stored can be read back by every tool.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

MAX_DEPTH = 254  # levels of objects and lists orjson writes
_HUGE = float(2**63)  # any float this large read from a page may have been an integer beyond 64 bits


class Unwritable(ValueError):
    """A value nested more than MAX_DEPTH levels deep."""


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
    """What orjson would write, for a value orjson cannot write (an integer beyond 64 bits)."""
    if _deeper_than(value, MAX_DEPTH):
        raise Unwritable(f"nested more than {MAX_DEPTH} levels deep")
    return json.dumps(value, sort_keys=sort_keys, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


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
