"""The run guard: a read that cannot be right stops the run before the ledger vouches for it.

Kapture documents neither its date format, nor its end rule, nor the zone it reads dates in, so
each is a setting; a wrong one fails silently (an exclusive end read as inclusive turns every
one-day window into an empty one). Two checks catch what a wrong setting does to the answers:

* **Served outside the window.** Every record's `createDate` must lie inside the range the
  request asked for, as the settings read it. One that does not (a wrong zone, or an end read as
  exclusive that is inclusive) stops the run before its page commits. Costs no request.
* **Empty, yet a wider request finds orders.** Windows that served nothing are held back from
  the ledger until the end of the run, then one request over their range, its end one day (or
  second) later, must serve nothing inside them. Under a wrong end rule it serves exactly their
  orders. Costs one request, only in runs where some window came back empty.

Either way the run stops with exit status 2 (`ReadContradicted`) naming the settings to check,
and `runs.execute` puts the ledger rows of its windows back as they were: no window of the run is
recorded read. Paging itself is in `paging.py`; this module only judges what it yields.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from sync.client import KaptureClient
from sync.errors import KaptureRejected, ReadContradicted
from sync.judge import Page
from sync.paging import Event, PageFetched, PagingRules, WindowScanned, pull_page
from sync.prefetch import prefetched
from sync.schedule import Task
from sync.stop import Stop
from sync.transform import epoch_ms
from sync.windows import DAY, Window, from_ms, request_bounds, to_ms

log = structlog.get_logger(__name__)

SECOND = timedelta(seconds=1)


def created_ms(record: Any) -> int | None:
    """A record's `createDate` in epoch ms as the transform reads it, or None when it is missing or
    unreadable, the year 87,000 included (that record is rejected; it says nothing about the window)."""
    return epoch_ms(record.get("createDate")) if isinstance(record, dict) else None


def created_of(records: list[Any], prepared: Mapping[int, Any] | None = None) -> Iterator[tuple[Any, int | None]]:
    """(id, createDate in epoch ms) of each record; a record mapped and let go (see read.ReadPage)
    is read from its prepared row, which holds both. A place holding None is not always such a
    record: Kapture may serve `null` itself, whose prepared form is a `Rejection`."""
    for i, record in enumerate(records):
        ready = None if prepared is None else prepared.get(i)
        if type(ready) is tuple:
            yield ready[0], ready[3]
        else:
            yield (record.get("id") if isinstance(record, dict) else None), created_ms(record)


def _instant(wall: datetime, zone: ZoneInfo, latest: bool) -> datetime:
    """The earliest (or latest) instant a wall time names: a repeated hour has two, a skipped one none."""
    moments = [wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)]
    return max(moments) if latest else min(moments)


def requested_span(start: str, end: str, zone: ZoneInfo, end_inclusive: bool) -> tuple[int, int]:
    """`[first, last)` in epoch ms of what `createStartDate`/`createEndDate` ask for under the settings,
    taken widely around a daylight-saving change so that only a real contradiction lies outside."""
    step = DAY if len(end.strip()) == 10 else SECOND
    last = datetime.fromisoformat(end.strip()) + (step if end_inclusive else timedelta(0))
    first = _instant(datetime.fromisoformat(start.strip()), zone, latest=False)
    return to_ms(first), to_ms(_instant(last, zone, latest=True))


def widened_end(end: str) -> str:
    """`createEndDate` one unit later (a day, or a second), the same shape."""
    text = end.strip()
    if len(text) == 10:
        return (datetime.fromisoformat(text) + DAY).date().isoformat()
    return (datetime.fromisoformat(text) + SECOND).strftime("%Y-%m-%d %H:%M:%S")


def _settings_named(rules: PagingRules) -> str:
    return (
        f"check KAPTURE_TIMEZONE ({rules.zone}), KAPTURE_END_INCLUSIVE ({str(rules.end_inclusive).lower()}) and "
        f"KAPTURE_DATE_FORMAT ({rules.date_format}), e.g. with `kapture-sync check`; no window of this run was "
        "recorded as read"
    )


def _when(epoch_ms: int, zone: ZoneInfo) -> str:
    return from_ms(epoch_ms).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


@dataclass
class RunGuard:
    """Watches one run's events: `admit` passes each on (or holds an empty window back), `finish` releases the held."""

    client: KaptureClient
    rules: PagingRules
    stop: Stop | None = None  # the daemon's: a stop ends the wider request at once, without waiting for it
    _served: set[datetime] = field(default_factory=set)  # windows that served a record in this run
    _held: list[WindowScanned] = field(default_factory=list)  # empty windows awaiting the wider request

    def admit(self, event: Event) -> list[Event]:
        """The events to commit now: a page once checked, a window's end unless it came back empty.

        Windows fetched at once interleave their events; each window's own events arrive in order,
        so a window's end is judged after all of its pages."""
        if isinstance(event, PageFetched):
            self._check_page(event)
            self._served.add(event.task.nominal.start)
            return [event]
        if self._came_back_empty(event.task):
            self._held.append(event)
            return []
        return [event]

    def finish(self) -> list[Event]:
        """The empty windows held back, once one wider request has confirmed them (else it raises)."""
        if self._held:
            self._confirm_empty([held.task for held in self._held])
        return list(self._held)

    def _came_back_empty(self, task: Task) -> bool:
        resumed_with_orders = task.resume is not None and task.resume.seen > 0
        return task.nominal.start not in self._served and not resumed_with_orders

    def _check_page(self, event: PageFetched) -> None:
        start, end = request_bounds(event.slice, self.rules.zone, self.rules.date_format, self.rules.end_inclusive)
        self._inside(created_of(event.records, event.prepared), start, end)

    def _inside(self, created: Iterable[tuple[Any, int | None]], start: str, end: str) -> None:
        """Stop at the first record (id, createDate in epoch ms) the request did not ask for."""
        low, high = requested_span(start, end, self.rules.zone, self.rules.end_inclusive)
        for order_id, created_at in created:
            if created_at is not None and not low <= created_at < high:
                raise ReadContradicted(
                    f"bad setting: Kapture served order {order_id} created "
                    f"{_when(created_at, self.rules.zone)} for createStartDate={start!r} createEndDate={end!r}, "
                    f"outside what was asked for: {_settings_named(self.rules)}"
                )

    def _confirm_empty(self, tasks: list[Task]) -> None:
        """One request over the empty windows' range, its end one unit later: nothing inside them may come back.

        Refused (a server that limits the span of a request), it is asked again for the last empty
        window alone; refused again, the empty reads stand, with a warning in the log.
        """
        windows = sorted(task.window for task in tasks)
        for first, last in ((windows[0], windows[-1]), (windows[-1], windows[-1])):
            start = self._bounds(first)[0]
            end = widened_end(self._bounds(last)[1])
            try:
                page = self._pull({"createStartDate": start, "createEndDate": end})
            except KaptureRejected as exc:
                log.warning("guard.wide_request_refused", start=start, end=end, error=str(exc))
                continue
            self._inside(created_of(page.records), start, end)
            self._nothing_inside(page.records, windows, start, end)
            log.debug("guard.empty_windows_confirmed", windows=len(windows), start=start, end=end)
            return
        log.warning("guard.empty_windows_unconfirmed", windows=len(windows))

    def _pull(self, filters: dict[str, str]) -> Page:
        """The wider request, stop-aware like the paging: in a thread of its own, abandoned when the stop is set."""

        def request() -> Iterator[Page]:
            yield pull_page(self.client, filters, 0, self.rules.page_size)

        if self.stop is None:
            return next(request())
        with closing(prefetched(request(), depth=1, stop=self.stop)) as pages:
            return next(pages)

    def _nothing_inside(self, records: list[Any], windows: list[Window], start: str, end: str) -> None:
        starts = [to_ms(w.start) for w in windows]
        for record in records:
            created = created_ms(record)
            if created is None:
                continue
            at = bisect_right(starts, created) - 1
            if at >= 0 and created < to_ms(windows[at].end):
                raise ReadContradicted(
                    f"bad setting: {len(windows)} window(s) of this run came back empty, but a wider request "
                    f"(createStartDate={start!r} createEndDate={end!r}) served order {record.get('id')} created "
                    f"{_when(created, self.rules.zone)}, inside window {windows[at].label(self.rules.zone)}: "
                    f"{_settings_named(self.rules)}"
                )

    def _bounds(self, window: Window) -> tuple[str, str]:
        return request_bounds(window, self.rules.zone, self.rules.date_format, self.rules.end_inclusive)
