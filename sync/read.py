"""One answer's body read into what paging and the writer use: each record's key and stamp, and its row.

This is the work a page costs before it can be written, done in one place so that it can be done
on another core (`sync.worker`): the fetching threads then hold the interpreter's lock only for
HTTP, and the writer, which shares that lock, writes instead of waiting. Parsing a page's JSON,
reading its keys and mapping its records were measured at about 6 ms of the lock a page when done
in the fetching threads. `read_page` gives the same answer wherever it runs; a body that is not a
page (a failure, a truncated answer) is judged where it was received, so the client's retries and
messages are exactly those of `judge.judge`.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from sync import jsontext
from sync.errors import SyncError, TransientError
from sync.fields import undocumented
from sync.judge import Page, judge
from sync.prepare import Dialect, Prepared, prepare_noting
from sync.transform import Rejection, record_key, stamp


@dataclass(frozen=True, slots=True)
class Destination:
    """What a page's records are mapped for: the account, the database, and the window's floor.

    Records stamped at or below the floor (epoch ms) are left unmapped: they are almost always
    stored already and are confirmed by id and stamp alone (see commit.write_records).
    """

    cm_id: int
    dialect: Dialect
    floor_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ReadPage:
    """A page of the API as paging and the writer read it, in the order served.

    `keys` and `versions` (`transform.record_key`, the stamp of `transform.stamp`) are read off every
    record before any is let go; a record mapped for the writer (`prepared`) is let go, its place
    in `records` holding None, since the prepared form is all the writer needs and a parsed record
    is several times its size.
    """

    records: list[Any]
    keys: list[int | str]
    versions: list[int]
    prepared: list[Prepared | Rejection | None]  # None: not mapped (at or below the floor, or no destination)
    undocumented: dict[int, dict[str, Any]]  # position -> fields the documentation does not list -> order id
    note: str | None = None  # a "no data" message Kapture sent instead of a list


# What a window's paging reads each answer with (`KaptureClient.pull_as`): status, headers, body.
PageReader = Callable[[int, Mapping[str, str], bytes], ReadPage]


def read_page(status: int, headers: Mapping[str, str], body: bytes, to: Destination | None = None) -> ReadPage:
    """The answer judged (`judge.judge`: a failure raises), its records keyed, and mapped when `to` says for what.

    A number beyond 64 bits is read by orjson as the nearest float (`jsontext.inexact`). Where such a
    float may be kept as read (a field the documentation does not list, a record mapped off the
    common path or rejected, a record left unmapped for the writer, which may map it later) the page
    is read again keeping every integer exact, so that `raw` is what was served. A record on the
    common path had each documented value's type checked: none of them is such a float.
    """
    page = judge(status, headers, body)
    read, unchecked = _read(page, to)
    if any(jsontext.inexact(page.records[i]) for i in unchecked) or any(
        jsontext.inexact(page.records[i][name]) for i, extra in read.undocumented.items() for name in extra
    ):
        # Deeper than Python's json reads (or any other failure): orjson's reading stands.
        with suppress(ValueError, RecursionError, TransientError, SyncError):
            read = _read(judge(status, headers, body, loads=jsontext.loads_exact), to)[0]
    return read


def _read(page: Page, to: Destination | None) -> tuple[ReadPage, list[int]]:
    """The page read, and the positions of its records mapped off the common path or not at all."""
    records = page.records
    stamps = [stamp(record) for record in records]  # read once: for the floor and for `versions`
    prepared: list[Prepared | Rejection | None] = [None] * len(records)
    off_path: list[int] = []
    if to is not None:
        floor = to.floor_ms
        chosen = [i for i, key in enumerate(stamps) if floor is None or key is None or key[1] > floor]
        mapped, general = prepare_noting([records[i] for i in chosen], to.cm_id, to.dialect)
        for i, one in zip(chosen, mapped, strict=True):
            prepared[i] = one
        off_path = [chosen[j] for j in general]
    unchecked = [i for i, ready in enumerate(prepared) if ready is None] + off_path
    read = ReadPage(
        records=[None if type(ready) is tuple else record for record, ready in zip(records, prepared, strict=True)],
        keys=[record_key(record) for record in records],
        versions=[-1 if key is None else key[1] for key in stamps],  # -1: not a plain number
        prepared=prepared,
        undocumented={i: found for i, record in enumerate(records) if (found := undocumented((record,)))},
        note=page.note,
    )
    return read, unchecked


Packed = tuple[bytes, dict[int, Rejection]]


def pack(page: ReadPage) -> Packed:
    """The page as one `marshal` blob, the cheapest form to send back and load, its rejections apart (pickled).

    Parsed JSON is made of the types `marshal` carries (dict, list, str, int, float, bool, None).
    """
    rejected = {i: p for i, p in enumerate(page.prepared) if isinstance(p, Rejection)}
    prepared = [None if isinstance(p, Rejection) else p for p in page.prepared]
    blob = marshal.dumps((page.records, page.keys, page.versions, prepared, page.undocumented, page.note))
    return blob, rejected


def unpack(blob: bytes, rejected: dict[int, Rejection]) -> ReadPage:
    records, keys, versions, prepared, found, note = marshal.loads(blob)
    for i, rejection in rejected.items():
        prepared[i] = rejection
    return ReadPage(records, keys, versions, prepared, found, note)
