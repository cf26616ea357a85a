"""`kapture-sync check` learns how the account's Pull Order API reads its filters.

Kapture documents neither its date format, nor whether `createEndDate` includes what it names,
nor the zone dates are read in, nor order, page cap, `offset` or method; each is a setting with a
guessed default. A handful of requests (at most `BUDGET`) answers each question from the account
itself, and where the account has too few orders to tell, the finding says so instead of guessing.

The questions are asked about one known order, by id (`orderIds`) inside a date range, so
each answer is a yes/no that does not depend on how busy the account is:

* formats and methods: a one-day range in each format with each method; a refusal is "no";
* the zone: the order's create second as a datetime range `[s, s+1s]` (true under both end
  rules) is served only in the zone the API reads dates in; date-only accounts ask whether
  orders near midnight are served for their day;
* the end rule: `[s, s]` (or `[d, d]`) holds the order only when the end is inclusive;
  adjacent one-day ranges and a wider control range tell it without knowing the zone;
* order, cap and `offset` from two pages of a range.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sync.client import KaptureClient
from sync.errors import KaptureRejected
from sync.guard import created_ms
from sync.judge import Page
from sync.settings import Settings
from sync.windows import DAY, from_ms

BUDGET = 30
FINDER_DAYS = (60, 7, 1)  # ranges tried to find orders, widest first (some servers refuse long spans)
ZONES = ("UTC", "Asia/Kolkata")  # tried after the configured zone
FORMATS = ("date", "datetime")
METHODS = ("POST", "GET")
ENV_NAMES = {
    "http_method": "KAPTURE_HTTP_METHOD",
    "date_format": "KAPTURE_DATE_FORMAT",
    "end_inclusive": "KAPTURE_END_INCLUSIVE",
    "timezone": "KAPTURE_TIMEZONE",
    "page_size": "KAPTURE_PAGE_SIZE",
    "window": "KAPTURE_SYNC_WINDOW",
}


class OutOfBudget(Exception):
    """The request budget is spent: what is not known yet stays unknown."""


@dataclass(frozen=True, slots=True)
class Finding:
    """One question about the API and its answer, for a person; `value` is None when it is not known."""

    topic: str
    text: str
    setting: str | None = None  # the config key the answer decides
    value: Any = None


# The settings a wrong value of which loses orders without an error: `check` says when it could
# not determine one, rather than letting "nothing contradicted" read as "all confirmed".
ESSENTIAL = ("date_format", "timezone", "end_inclusive")


@dataclass
class Findings:
    items: list[Finding] = field(default_factory=list)
    requests: int = 0
    # Config key -> the current value the account showed to be wrong, without showing the right one.
    ruled_out: dict[str, Any] = field(default_factory=dict)

    def add(self, topic: str, text: str, setting: str | None = None, value: Any = None) -> None:
        self.items.append(Finding(topic, text, setting, value))

    def right(self) -> dict[str, Any]:
        """The settings the account showed, by config key (only those it showed)."""
        return {f.setting: f.value for f in self.items if f.setting is not None and f.value is not None}

    def undetermined(self) -> list[str]:
        """The essential settings the account did not show, by environment name."""
        shown = set(self.right()) | set(self.ruled_out)
        return [ENV_NAMES[key] for key in ESSENTIAL if key not in shown]


def disagreements(findings: Findings, settings: Settings) -> dict[str, tuple[Any, Any]]:
    """Config key -> (current, right) for every setting the account contradicts."""
    current = {key: getattr(settings, key) for key in ENV_NAMES}
    current["window"] = _duration(settings.window)
    return {key: (current[key], value) for key, value in findings.right().items() if current[key] != value}


def _duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True, slots=True)
class _Known:
    """An order the probe asks about: its id and create instant."""

    id: int
    created: datetime

    @staticmethod
    def of(record: Any) -> _Known | None:
        ms = created_ms(record)
        identifier = record.get("id") if isinstance(record, dict) else None
        if ms is None or isinstance(identifier, bool) or not isinstance(identifier, int):
            return None
        return _Known(identifier, from_ms(ms))


def _day(value: date) -> str:
    return value.isoformat()


def _second(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S")


class Prober:
    """Asks the questions in order; each step may end early on a spent budget."""

    def __init__(self, client: KaptureClient, settings: Settings, today: date, budget: int = BUDGET) -> None:
        self.client = client
        self.settings = settings
        self.today = today
        self.budget = budget
        self.used = 0
        self.limit = settings.page_size
        self.found = Findings()
        self._finder: dict[str, str] = {}  # the range the sample page was read from

    # -- requests -------------------------------------------------------------------------------

    def _pull(
        self, filters: Mapping[str, str], offset: int = 0, limit: int | None = None, method: str | None = None
    ) -> Page:
        if self.used >= self.budget:
            raise OutOfBudget
        self.used += 1
        client = self.client if method is None else dataclasses.replace(self.client, method=method)
        return client.pull(filters, offset, limit or self.limit)

    def _filters_by_id(self, order: _Known, sample: list[Any]) -> bool:
        """Whether `orderIds` narrows a page to that order: every zone and end question relies on it.

        Asked only when the sample holds other orders (with one order the answer is the same
        either way); one request.
        """
        others = {r.get("id") for r in sample if isinstance(r, dict)} - {order.id}
        if not others:
            return True
        page = self._pull({**self._finder, "orderIds": str(order.id)}, 0, 10)
        return {r.get("id") for r in page.records if isinstance(r, dict)} <= {order.id}

    def _served(self, order: _Known, start: str, end: str) -> bool:
        """Whether `order` is served for `[start, end]` (asked by id, so page size never hides it)."""
        page = self._pull({"createStartDate": start, "createEndDate": end, "orderIds": str(order.id)}, 0, 10)
        return any(isinstance(r, dict) and r.get("id") == order.id for r in page.records)

    # -- the questions --------------------------------------------------------------------------

    def run(self) -> Findings:
        formats = self._formats_and_methods()
        fmt = self.settings.date_format if formats[self.settings.date_format] else _other(formats)
        try:
            sample = self._find_orders(fmt)
            known = [k for k in map(_Known.of, sample) if k is not None]
            if known and not self._filters_by_id(known[0], sample):
                why = "cannot tell: the API ignores the orderIds filter these questions are asked with"
                self.found.add("zone", why)
                self.found.add("end bound", why)
            else:
                self._zone_and_end(known, formats, fmt)  # first: what a wrong setting loses orders over
            self._order(sample)
            self._paging(sample)
        except OutOfBudget:
            self.found.add("budget", f"stopped at the budget of {self.budget} requests: the rest is not known")
        self.found.requests = self.used
        return self.found

    def _formats_and_methods(self) -> dict[str, bool]:
        """A one-day range (yesterday) in each format with the configured method, then the other method
        with a format that worked; only when the configured method fails both, the other with both.
        Nothing accepted at all re-raises the first refusal (exit 4), as a plain `check` would."""
        day = self.today - DAY
        ranges = {fmt: _range(day, day, fmt) for fmt in FORMATS}
        order = [self.settings.date_format, *(f for f in FORMATS if f != self.settings.date_format)]
        configured: str = self.settings.http_method
        other = next(m for m in METHODS if m != configured)
        refusals: list[KaptureRejected] = []

        def accepts(method: str, fmt: str) -> bool:
            try:
                self._pull(ranges[fmt], 0, 1, method)
            except KaptureRejected as exc:
                refusals.append(exc)
                return False
            return True

        formats = {fmt: accepts(configured, fmt) for fmt in order}
        methods: dict[str, bool] = {configured: any(formats.values())}
        if methods[configured]:
            methods[other] = accepts(other, next(f for f in order if formats[f]))
        else:
            formats = {fmt: accepts(other, fmt) for fmt in order}
            methods[other] = any(formats.values())
            if not methods[other]:
                raise refusals[0]
            self.client = dataclasses.replace(self.client, method=other)
        self._note_methods(methods)
        self._note_formats(formats)
        return formats

    def _note_methods(self, methods: dict[str, bool]) -> None:
        accepted = [m for m in METHODS if methods.get(m)]
        refused = [m for m in METHODS if m in methods and not methods[m]]
        text = " and ".join(accepted) + " accepted" + (f", {' and '.join(refused)} refused" if refused else "")
        keep = self.settings.http_method if self.settings.http_method in accepted else accepted[0]
        self.found.add("method", text, "http_method", keep)

    def _note_formats(self, formats: dict[str, bool]) -> None:
        accepted = [f for f in FORMATS if formats[f]]
        refused = [f for f in FORMATS if not formats[f]]
        text = " and ".join(f"'{f}'" for f in accepted) + " accepted"
        text += f", '{refused[0]}' refused" if refused else ""
        keep = self.settings.date_format if formats[self.settings.date_format] else accepted[0]
        self.found.add("dates", text, "date_format", keep)
        if keep == "date" and self.settings.window % DAY:
            self.found.add("window", "whole days: date-only bounds cannot ask for less", "window", "1d")

    def _find_orders(self, fmt: str) -> list[Any]:
        """One page of recent history (yesterday and before, so orders arriving now do not move it)."""
        last = self.today - DAY
        for days in FINDER_DAYS:
            first = last - timedelta(days=days - 1)
            bounds = _range(first, last, fmt)
            try:
                page = self._pull(bounds)
            except KaptureRejected:
                continue
            self._finder = bounds
            if page.records:
                return page.records
        self.found.add("orders", f"none created in the {FINDER_DAYS[0]} days before today: too few orders to tell")
        return []

    def _paging(self, first_page: list[Any]) -> None:
        """A second page of the same range: repeated rows mean `offset` is ignored; more rows after a
        short first page mean `limit` is capped silently."""
        served = len(first_page)
        if served < 2:
            self.found.add("limit", "too few orders to tell a silent cap")
            self.found.add("offset", "too few orders to tell")
            return
        ids = [r.get("id") if isinstance(r, dict) else None for r in first_page]
        second = [r.get("id") if isinstance(r, dict) else None for r in self._pull(self._finder, served).records]
        if not second:
            second = [r.get("id") if isinstance(r, dict) else None for r in self._pull(self._finder, 1).records]
            ignored = second[:1] == ids[:1]
            self.found.add("offset", "ignored: every page starts at the first row" if ignored else "honoured")
            self.found.add("limit", f"too few orders to tell a silent cap (all {served} fit in one page)")
            return
        if second == ids[: len(second)]:
            self.found.add(
                "offset",
                "ignored: every page starts at the first row, so no window deeper than one page can be read; "
                "use windows small enough to fit in one page (KAPTURE_DATE_FORMAT=datetime, KAPTURE_SYNC_WINDOW)",
            )
            self.found.add("limit", "cannot tell a cap while offset is ignored")
            return
        self.found.add("offset", "honoured")
        if served < self.limit:
            self.found.add(
                "limit",
                f"capped silently at {served} (asked for {self.limit}, and more orders followed)",
                "page_size",
                served,
            )
        else:
            self.found.add("limit", f"{self.limit} honoured", "page_size", self.settings.page_size)

    def _order(self, records: list[Any]) -> None:
        pairs = [(created_ms(r), _integer(r.get("lastModificationTime"))) for r in records if isinstance(r, dict)]
        rows = [(c, m) for c, m in pairs if c is not None and m is not None]
        if len(rows) < 3:
            self.found.add("order", "too few orders to tell")
            return
        fits = []
        for key, name in ((0, "create date"), (1, "modification time")):
            values = [row[key] for row in rows]
            if values == sorted(values):
                fits.append(f"oldest first by {name}")
            if values == sorted(values, reverse=True):
                fits.append(f"newest first by {name}")
        if len(fits) == 1:
            text = fits[0]
            if "modification" in text:
                text += ": an order edited during a read can move past the offset; the next read finds it"
        elif fits:
            text = f"{' or '.join(fits)}: these orders cannot tell"
        else:
            text = "neither by create date nor by modification time"
        self.found.add("order", text)

    def _zone_and_end(self, known: list[_Known], formats: dict[str, bool], fmt: str) -> None:
        if not known:
            self.found.add("zone", "too few orders to tell")
            self.found.add("end bound", "too few orders to tell")
            return
        zones = list(dict.fromkeys([self.settings.timezone, *ZONES]))
        rules: dict[str, bool | None] = {}
        if formats["datetime"]:
            zone = self._zone_by_second(known[0], zones)
            rules["datetime"] = None if zone is None else self._served(known[0], *_range_second(known[0], zone, 0))
            if formats["date"]:
                rules["date"] = self._date_rule(known[0], zone) if zone else self._date_rule_any_zone(known[0])
        else:
            rules["date"] = self._date_rule_any_zone(known[0])
            zone = self._zone_by_day(known, zones, rules["date"]) if rules["date"] is not None else None
            if rules["date"] is None:
                self.found.add("zone", "cannot tell before the end rule is known")
        if zone is not None:
            self.found.add("zone", f"dates are read in {zone}", "timezone", zone)
        self._note_rules(rules, fmt)

    def _zone_by_second(self, order: _Known, zones: list[str]) -> str | None:
        """The zone whose wall-clock second of the order's creation serves it: exact to the second."""
        for zone in zones:
            if self._served(order, *_range_second(order, zone, 1)):
                return zone
        self._no_zone(zones)
        return None

    def _no_zone(self, zones: list[str]) -> None:
        """Every zone tried, the configured one first, was ruled out: the configured one is wrong."""
        self.found.add(
            "zone",
            f"none of {', '.join(zones)}: set KAPTURE_TIMEZONE to the zone the account's API reads dates in",
        )
        self.found.ruled_out["timezone"] = self.settings.timezone

    def _date_rule(self, order: _Known, zone: str) -> bool | None:
        """`[d, d]` holds the order only when the end is inclusive; `[d, d+1]` holds it either way."""
        day = order.created.astimezone(ZoneInfo(zone)).date()
        if self._served(order, _day(day), _day(day)):
            return True
        if self._served(order, _day(day), _day(day + DAY)):
            return False
        return None

    def _date_rule_any_zone(self, order: _Known) -> bool | None:
        """Without the zone: one-day ranges `[d, d]` around the order's day are all empty of it only when
        the end is exclusive; a wider range `[d-1, d+2]` must hold it under either rule."""
        day = order.created.astimezone(self.settings.zone).date()
        if not self._served(order, _day(day - DAY), _day(day + 2 * DAY)):
            return None
        return any(self._served(order, _day(d), _day(d)) for d in (day, day - DAY, day + DAY))

    def _zone_by_day(self, known: list[_Known], zones: list[str], inclusive: bool) -> str | None:
        """Date-only accounts: the orders nearest midnight in a zone must be served for their day there.

        Two orders, one soon after midnight and one soon before, pin the offset the API reads with
        to `(-after, +before)` around the zone's; a candidate inside that interval cannot be ruled out.
        """
        for zone in zones:
            tz = ZoneInfo(zone)
            after = min(known, key=lambda k: _since_midnight(k.created, tz))
            before = max(known, key=lambda k: _since_midnight(k.created, tz))
            if not all(self._served(k, *_range_day(k, tz, inclusive)) for k in {after, before}):
                continue
            low, high = -_since_midnight(after.created, tz), DAY - _since_midnight(before.created, tz)
            offset = _offset(tz, after.created)
            rivals = [z for z in zones if z != zone and low <= _offset(ZoneInfo(z), after.created) - offset < high]
            if rivals:
                self.found.add(
                    "zone", f"{zone} or {' or '.join(rivals)}: too few orders near midnight to tell them apart"
                )
                return None
            return zone
        self._no_zone(zones)
        return None

    def _note_rules(self, rules: dict[str, bool | None], fmt: str) -> None:
        shown = {f: ("inclusive" if r else "exclusive") if r is not None else "not known" for f, r in rules.items()}
        if not shown:
            return
        text = "; ".join(f"{f}: {value}" for f, value in shown.items())
        chosen = rules.get(fmt)
        if chosen is None:
            self.found.add("end bound", f"{text}: too few orders to tell for '{fmt}'")
        else:
            self.found.add("end bound", text, "end_inclusive", chosen)


def _other(formats: dict[str, bool]) -> str:
    return next(f for f in FORMATS if formats[f])


def _integer(value: Any) -> int | None:
    return created_ms({"createDate": value})


def _range(first: date, last: date, fmt: str) -> dict[str, str]:
    if fmt == "date":
        return {"createStartDate": _day(first), "createEndDate": _day(last)}
    return {"createStartDate": f"{_day(first)} 00:00:00", "createEndDate": f"{_day(last)} 23:59:59"}


def _range_second(order: _Known, zone: str, extra: int) -> tuple[str, str]:
    """The order's create second in `zone`, to `extra` seconds later, as datetime bounds."""
    second = order.created.astimezone(ZoneInfo(zone)).replace(microsecond=0, tzinfo=None)
    return _second(second), _second(second + timedelta(seconds=extra))


def _range_day(order: _Known, zone: ZoneInfo, inclusive: bool) -> tuple[str, str]:
    """The order's create day in `zone` as date bounds under the end rule."""
    day = order.created.astimezone(zone).date()
    return _day(day), _day(day if inclusive else day + DAY)


def _since_midnight(moment: datetime, zone: ZoneInfo) -> timedelta:
    local = moment.astimezone(zone)
    return local - local.replace(hour=0, minute=0, second=0, microsecond=0)


def _offset(zone: ZoneInfo, moment: datetime) -> timedelta:
    return moment.astimezone(zone).utcoffset() or timedelta(0)


def _shown(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def describe(findings: Findings, settings: Settings) -> list[str]:
    """The findings as a few lines a person can act on; a contradicted setting is marked on its line."""
    wrong = disagreements(findings, settings)
    width = max((len(f.topic) for f in findings.items), default=0)
    lines = []
    for finding in findings.items:
        line = f"  {finding.topic:<{width}}  {finding.text}"
        if finding.setting in wrong:
            current, right = wrong[finding.setting]
            line += f"  <- {ENV_NAMES[finding.setting]} is {_shown(current)}: should be {_shown(right)}"
        lines.append(line)
    return lines


def mismatch_line(wrong: Mapping[str, tuple[Any, Any]], ruled_out: Mapping[str, Any] | None = None) -> str:
    """`KAPTURE_X=right, ...` for the settings the account contradicts, then those it only ruled out."""
    parts = [f"{ENV_NAMES[key]}={_shown(right)} (is {_shown(current)})" for key, (current, right) in wrong.items()]
    parts += [f"{ENV_NAMES[key]} (not {_shown(current)})" for key, current in (ruled_out or {}).items()]
    return ", ".join(parts)


def probe(client: KaptureClient, settings: Settings, now: datetime | None = None, budget: int = BUDGET) -> Findings:
    """Learn the API's ways from the account; `check` prints the result."""
    today = (now or datetime.now(tz=UTC)).astimezone(settings.zone).date()
    return Prober(client, settings, today, budget).run()
