"""Paging one window through the API: limit/offset until an empty page, safely.

Offsets advance by what was actually served, so a server that silently caps `limit` cannot end
the scan early; records are de-duplicated by key, so newest-first drift repeats rows rather than
doubling them; a page with nothing new stops the run instead of looping; a window too deep to
page is read again as halves when the date format can express them. Once a server has been seen
to serve a full page at the `limit` asked for, a shorter page with new rows ends a slice as an
empty page would, saving that last request per slice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, TypeVar
from zoneinfo import ZoneInfo

import structlog

from sync.client import KaptureClient
from sync.errors import KaptureRejected, PagingError
from sync.judge import Page, judge
from sync.read import PageReader, ReadPage, read_page
from sync.schedule import Task
from sync.stop import Stop
from sync.transform import storable_ids
from sync.windows import DateFormat, Window, can_split, halve, next_slice, request_bounds

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class PagingRules:
    zone: ZoneInfo
    date_format: DateFormat
    end_inclusive: bool
    page_size: int
    split_offset: int
    min_slice: timedelta
    max_pages: int = 100_000
    max_stale_pages: int = 3  # the same page served again this many times: offset is ignored
    max_drift_pages: int = 30  # full pages of rows already read, pushed back by arrivals, before giving up
    # A short page may end a slice once a full page was seen in this run (see `scan_window`); off
    # when deletions are detected, which need every end shown by an empty page.
    trust_short_pages: bool = True


FALLBACK_PAGE_SIZE = 100  # the `limit` of Kapture's own examples: asked for when a larger one is refused
_accepted: dict[tuple[str, int, int], int] = {}  # (base URL, cm_id, limit configured) -> limit to ask for
# (base URL, cm_id, limit configured) -> a limit this server was seen to honour: it served a page
# of exactly that many records when asked for that many. Forgotten when a run starts
# (`forget_honoured_limit`), so a cap Kapture brings in between runs, even in a long-lived daemon,
# is met by paging to the empty page until a full page shows the limit honoured again.
_honoured: dict[tuple[str, int, int], int] = {}
_accepted_lock = threading.Lock()  # guards `_accepted` and `_honoured`
_ABOUT_LIMIT = ("limit", "page size", "pagesize", "max")  # a refusal that may be about `limit`


def _limit_key(client: KaptureClient, page_size: int) -> tuple[str, int, int]:
    return (str(getattr(client.http, "base_url", "")), client.cm_id, page_size)


def page_limit(client: KaptureClient, page_size: int) -> int:
    """The `limit` to ask this account for: `page_size`, or the fallback once it was refused."""
    with _accepted_lock:
        return _accepted.get(_limit_key(client, page_size), page_size)


def limit_honoured(client: KaptureClient, page_size: int, limit: int) -> bool:
    """Whether this server has served a full page when asked for `limit` (so it does not cap below it)."""
    with _accepted_lock:
        return _honoured.get(_limit_key(client, page_size)) == limit


def forget_honoured_limit(client: KaptureClient, page_size: int) -> None:
    """Start a run trusting no short page: the limit must be seen honoured again, in this run."""
    with _accepted_lock:
        _honoured.pop(_limit_key(client, page_size), None)


def _note_served(client: KaptureClient, page_size: int, limit: int, served: int) -> None:
    """Remember that `limit` is honoured when a page came back with exactly `limit` records."""
    if served != limit:
        return
    key = _limit_key(client, page_size)
    with _accepted_lock:
        first = _honoured.get(key) != limit
        _honoured[key] = limit
    if first:
        log.debug("kapture.limit_honoured", limit=limit)


class _Served(Protocol):
    @property
    def records(self) -> list[Any]: ...


P = TypeVar("P", bound=_Served)


def pull_page(client: KaptureClient, filters: Mapping[str, str], offset: int, page_size: int) -> Page:
    """The page of `pull_page_with_limit`, for callers that do not need the limit sent."""
    return pull_page_with_limit(client, filters, offset, page_size, judge)[0]


def pull_page_with_limit(
    client: KaptureClient,
    filters: Mapping[str, str],
    offset: int,
    page_size: int,
    read: Callable[[int, Mapping[str, str], bytes], P],
) -> tuple[P, int]:
    """One page at `page_size`, read by `read` (`judge.judge`, `read.read_page`), and the `limit` really
    sent for it (`page_size`, or `FALLBACK_PAGE_SIZE`).

    A server that refuses that `limit` is asked again with 100, and that is remembered.

    Kapture documents no maximum `limit`. A server that caps it silently is handled by paging (offsets
    advance by rows served); one that refuses it outright gets `FALLBACK_PAGE_SIZE` instead, for the
    rest of this process (every window, every later run of the daemon), with a warning in the log.
    Only a refusal whose message could be about the limit (it names `limit`, a page size or a
    maximum) is tried again; one that the smaller limit does not cure is raised as it came.
    """
    limit = page_limit(client, page_size)
    try:
        page = client.pull_as(read, filters, offset, limit)
    except KaptureRejected as refused:
        if limit <= FALLBACK_PAGE_SIZE or not any(word in str(refused).lower() for word in _ABOUT_LIMIT):
            raise
        try:
            page = client.pull_as(read, filters, offset, FALLBACK_PAGE_SIZE)
        except KaptureRejected:
            raise refused from None
        with _accepted_lock:
            first = _accepted.get(_limit_key(client, page_size)) is None
            _accepted[_limit_key(client, page_size)] = FALLBACK_PAGE_SIZE
        if first:
            log.warning(
                "kapture.limit_refused",
                limit=limit,
                error=str(refused),
                using=FALLBACK_PAGE_SIZE,
                hint=f"Kapture refused limit={limit}; every request of this process now asks for "
                f"{FALLBACK_PAGE_SIZE} (set KAPTURE_PAGE_SIZE={FALLBACK_PAGE_SIZE} to make it the setting)",
            )
        limit = FALLBACK_PAGE_SIZE
    _note_served(client, page_size, limit, len(page.records))
    return page, limit


@dataclass(frozen=True, slots=True)
class PageFetched:
    task: Task
    slice: Window
    next_offset: int  # where this slice resumes after the page is committed
    # Records new to this read, or served again in a newer version. A record mapped where the page
    # was read (`prepared`) holds None here: the writer needs only what `prepared` keeps.
    records: list[Any]
    served: int  # records in the page as served, repeats included
    new: int  # orders not served before in this read
    ids: list[int]  # the ids `records` could be stored under, read before any record was let go
    undocumented: dict[str, Any]  # fields the documentation does not list -> first order id (sync.fields)
    prepared: Mapping[int, Any] | None = None  # records already mapped, by position (sync.read.read_page)


@dataclass(frozen=True, slots=True)
class WindowScanned:
    task: Task
    proven: bool = True  # False when the end was inferred, not shown by an empty page


Event = PageFetched | WindowScanned


def scan_window(
    client: KaptureClient,
    task: Task,
    rules: PagingRules,
    stop: Stop | None = None,
    read: PageReader = read_page,
) -> Iterator[Event]:
    """Yield each page of one window, then `WindowScanned` once the end of every slice is reached.

    A set `stop` raises `Stopped` before the next request. Each answer is read by `read`: by default
    here, its records kept as served; `sync.worker.Preparer.reader` maps them too, on another core.
    """
    window = task.window
    if task.resume is not None:
        piece, offset = task.resume.slice, task.resume.offset
    else:
        piece, offset = window, 0
    emitted: dict[int | str, int] = {}  # key -> stamp of the newest version handed on in this read
    in_piece: set[int | str] = set()
    pages = stale = drifted = short_stale = widest = 0
    last_keys: list[int | str] = []
    proven = True
    warned_deep = False
    while True:
        if offset >= rules.split_offset:
            if can_split(piece, rules.date_format, rules.min_slice, rules.zone):
                piece, offset, in_piece, widest = halve(piece, rules.zone), 0, set(), 0
                log.info("window.split", window=window.label(rules.zone), slice=piece.label(rules.zone))
                continue
            if not warned_deep:
                log.warning(
                    "window.deep",
                    window=window.label(rules.zone),
                    offset=offset,
                    hint="set KAPTURE_DATE_FORMAT=datetime so deep windows can be split",
                )
                warned_deep = True
        if stop is not None:
            stop.check()
        start, end = request_bounds(piece, rules.zone, rules.date_format, rules.end_inclusive)
        filters = {"createStartDate": start, "createEndDate": end}
        page, sent = pull_page_with_limit(client, filters, offset, rules.page_size, read)
        pages += 1
        if pages > rules.max_pages:
            raise PagingError(f"window {window.label(rules.zone)} exceeded {rules.max_pages} pages; stopping")
        keys = page.keys
        widest = max(widest, len(keys))
        repeated, last_keys = keys == last_keys, keys
        ended = not keys
        last_page = False  # a short page with new rows from a server seen to honour `limit`: the slice ends after it
        if any(k not in in_piece for k in keys):
            stale = drifted = short_stale = 0
            # A server seen to serve a full page at this `limit` does not cap below it, so fewer rows
            # than asked for means the slice's listing ended inside this page. Rows not yet read are
            # at or past the offset asked for (arrivals only push rows later), so none lies beyond:
            # the empty page that would follow proves nothing more. Until a full page is seen (a
            # server that caps silently never shows one) only an empty page ends the slice.
            # A short page of rows all read already is not ended here but left to `short_stale`
            # below, as before: drift at the tail looks like that, and so would a cap that came in
            # after the full page was seen (a varying cap); reading past it costs one request in
            # that rare case, while ending on it could skip rows that a capped page left unread.
            last_page = rules.trust_short_pages and len(keys) < sent and limit_honoured(client, rules.page_size, sent)
        elif len(keys) < widest:
            # Orders arriving mid-scan (date-only bounds cannot exclude them) push already-read rows
            # onto later pages, so the tail of such a window may never come back empty. A short page
            # with nothing new is read past once more; a second one in a row ends the slice, and
            # the read is marked unproven so that nothing below it is skipped later (see commit.py).
            short_stale += 1
            if short_stale >= 2:
                ended, proven = True, False
                log.info("window.unproven_end", window=window.label(rules.zone), offset=offset)
        elif keys:
            # A full page of rows already read. The very page served before: the server ignores
            # offset, and paging on would loop. Other rows already read: orders arriving at the front
            # (newest-first, an open window) pushed them here, and paging on catches up, within a bound.
            if repeated:
                stale += 1
            else:
                drifted += 1
            if stale >= rules.max_stale_pages:
                raise PagingError(
                    f"Kapture served the same {len(keys)} records for {stale + 1} offsets in a row, up to offset "
                    f"{offset} of window {window.label(rules.zone)}: it is ignoring offset"
                )
            if drifted >= rules.max_drift_pages:
                raise PagingError(
                    f"Kapture served only records it had already served, {drifted} full pages in a row, up to "
                    f"offset {offset} of window {window.label(rules.zone)}: orders arrive faster than they can be "
                    "paged (KAPTURE_DATE_FORMAT=datetime lets windows end at a fixed time)"
                )
        if not ended:
            in_piece.update(keys)
            chosen: dict[int | str, int] = {}  # key -> position in the page of the version handed on
            new = 0
            for position, (key, version) in enumerate(zip(keys, page.versions, strict=True)):
                previous = emitted.get(key)
                if previous is None:
                    new += 1
                elif version <= previous:
                    # Served again in the same or an older version: nothing to hand on. A repeat under a
                    # newer stamp (an edit saved while the window was being paged) is handed on again so
                    # that the newest version is the one stored. Same-stamp edits are left to reconcile.
                    continue
                emitted[key] = version
                chosen[key] = position
            served = len(page.records)
            offset += served
            handed = [_handed_on(task, piece, offset, page, chosen, served, new)]
            # Nothing of the page is held by this frame while it waits at the yield, so the records
            # the writer has committed are let go at once: the page is the largest thing a fetching
            # thread holds.
            del page, chosen
            yield handed.pop()
            ended = last_page  # its rows are handed on first, then the slice ends as on an empty page
        if ended:
            if piece.end >= window.end:
                yield WindowScanned(task, proven)
                return
            piece, offset, in_piece, widest, short_stale = _following(piece, window, rules.zone), 0, set(), 0, 0


def _following(piece: Window, window: Window, zone: ZoneInfo) -> Window:
    """The slice after `piece`, as wide in wall time, clipped to the window (see `next_slice`).

    Slices are asked for as wall-clock ranges, so no slice may end inside a repeated hour.
    """
    return next_slice(piece, window, zone)


def _handed_on(
    task: Task, piece: Window, offset: int, page: ReadPage, chosen: dict[int | str, int], served: int, new: int
) -> PageFetched:
    """The page's chosen records (key -> position) as the writer takes them, renumbered in order."""
    positions = list(chosen.values())
    found: dict[str, Any] = {}
    for i in positions:
        for name, order_id in page.undocumented.get(i, {}).items():
            found.setdefault(name, order_id)
    return PageFetched(
        task,
        piece,
        offset,
        [page.records[i] for i in positions],
        served,
        new,
        storable_ids(chosen),
        found,
        {n: ready for n, i in enumerate(positions) if (ready := page.prepared[i]) is not None},
    )


def scan_all(client: KaptureClient, tasks: list[Task], rules: PagingRules, stop: Stop | None = None) -> Iterator[Event]:
    for task in tasks:
        yield from scan_window(client, task, rules, stop)
