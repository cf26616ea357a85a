"""The emulated account's orders, held in memory and served from pre-serialized JSON.

Orders are indexed by (createDate, key) so a create-date window is two bisections, and each
order's JSON is serialized once (again only when it is edited), so serving a page is a join of
cached bytes. That is what makes the emulator fast enough never to be a benchmark's bottleneck.
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson

from sync.emulator.config import EmulatorConfig
from sync.emulator.generate import DAY_MS, FIRST_ORDER_ID, MALFORMED_KINDS, OrderFactory, generate_orders, malform

PAGE_HEAD: Final = b'{"success":"true","order_details":['
PAGE_TAIL: Final = b"]}"
OLD_AFTER_MS: Final = 7 * DAY_MS


def render_page(blobs: list[bytes]) -> bytes:
    """The success body for a page of pre-serialized orders."""
    return PAGE_HEAD + b",".join(blobs) + PAGE_TAIL


def virtual_clock(start_ms: int | None) -> Callable[[], int]:
    """Epoch-ms clock; with a fixed start it begins there and advances with real elapsed time.

    So a fixed `now_ms` makes generation reproducible while orders created or edited later
    still get increasing timestamps close to that "now".
    """
    if start_ms is None:
        return lambda: time.time_ns() // 1_000_000
    origin = time.monotonic_ns()
    return lambda: start_ms + (time.monotonic_ns() - origin) // 1_000_000


def _as_int(value: Any) -> int | None:
    """An id as an int whether it was served as a number or a numeric string."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class _Entry:
    """One stored order: its JSON exactly as served plus what the index and filters need.

    Only the bytes are kept (the dict is rebuilt on edit), which halves memory at 100k orders.
    """

    __slots__ = ("key", "sort_ms", "modified_ms", "blob", "customer_id", "malformed")

    def __init__(self, key: int, sort_ms: int, record: dict[str, Any], malformed: str | None) -> None:
        self.key = key
        self.sort_ms = sort_ms
        self.malformed = malformed
        self.set(record)

    def set(self, record: dict[str, Any]) -> None:
        """Replace the record and re-serialize it (the cache is never stale)."""
        # orjson returns bytes with a ~16 KiB buffer behind them; copying to an exact-size
        # object cuts memory at 100k orders from ~800 MB to ~150 MB.
        self.blob = memoryview(orjson.dumps(record)).tobytes()
        self.customer_id = _as_int(record.get("customerId"))
        modified = _as_int(record.get("lastModificationTime"))
        self.modified_ms = self.sort_ms if modified is None else modified

    def record(self) -> dict[str, Any]:
        """A fresh dict of the record as served."""
        return orjson.loads(self.blob)


class OrderStore:
    """Thread-safe in-memory orders; one lock guards the map, the index and the RNG."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], int] | None = None) -> None:
        self._lock = threading.Lock()
        self._clock = clock or virtual_clock(config.now_ms)
        self._factory = OrderFactory(config.cm_id, config.seed, customer_count=config.orders // 3)
        self._entries: dict[int, _Entry] = {}
        self._index: list[tuple[int, int]] = []  # (sort_ms, key), ascending
        self._next_anonymous = -1  # keys for records served without an id
        self._last_id = FIRST_ORDER_ID
        for record, sort_ms, kind in generate_orders(config, self._clock(), self._factory):
            self._insert(record, sort_ms, kind, append=True)

    # -- internals (caller holds the lock, or is the constructor) --

    def _insert(self, record: dict[str, Any], sort_ms: int, kind: str | None, append: bool = False) -> None:
        record_id = record.get("id")
        if isinstance(record_id, int):
            key = record_id
            self._last_id = max(self._last_id, record_id)
        else:
            key = self._next_anonymous
            self._next_anonymous -= 1
        self._entries[key] = _Entry(key, sort_ms, record, kind)
        if append:
            self._index.append((sort_ms, key))
        else:
            insort(self._index, (sort_ms, key))

    def _new_record(self, at_ms: int | None) -> tuple[dict[str, Any], int]:
        now = self._clock() if at_ms is None else at_ms
        self._last_id += self._factory.rng.randint(1, 7)
        return self._factory.order(self._last_id, now, now), now

    # -- public API --

    def now_ms(self) -> int:
        """The store's clock (epoch ms): what "now" means for create and edit."""
        return self._clock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def query(
        self,
        start_ms: int | None = None,
        end_ms: int | None = None,
        customer_ids: Iterable[int] | None = None,
        order_ids: Iterable[int] | None = None,
        newest_first: bool = False,
        offset: int = 0,
        limit: int = 100,
        by_modified: bool = False,
    ) -> list[bytes]:
        """Serialized orders with start_ms <= createDate < end_ms matching the id filters, one page.

        Order is (createDate, id) ascending, or descending when `newest_first`; with `by_modified`,
        (lastModificationTime, id) instead, so an edit moves an order to the end (or the front).
        """
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must be >= 0")
        customers = None if customer_ids is None else set(customer_ids)
        wanted = None if order_ids is None else set(order_ids)
        with self._lock:
            index = self._index
            lo = 0 if start_ms is None else bisect_left(index, (start_ms,))
            hi = len(index) if end_ms is None else bisect_left(index, (end_ms,))
            if hi <= lo:
                return []
            entries = self._entries
            if customers is None and wanted is None and not by_modified:
                if newest_first:
                    top = hi - offset
                    positions = range(top - 1, max(lo, top - limit) - 1, -1)
                else:
                    first = lo + offset
                    positions = range(first, min(hi, first + limit))
                return [entries[index[p][1]].blob for p in positions]
            if wanted is not None and (customers is None or len(wanted) <= len(customers)):
                keys = sorted(
                    (entries[k].sort_ms, k)
                    for k in wanted
                    if k in entries
                    and (start_ms is None or entries[k].sort_ms >= start_ms)
                    and (end_ms is None or entries[k].sort_ms < end_ms)
                )
                matches = [entries[k] for _, k in keys]
            else:
                matches = [entries[k] for _, k in index[lo:hi]]
            if customers is not None:
                matches = [e for e in matches if e.customer_id in customers]
            if wanted is not None:
                matches = [e for e in matches if e.key in wanted]
            if by_modified:
                matches.sort(key=lambda e: (e.modified_ms, e.key))
            if newest_first:
                matches.reverse()
            return [e.blob for e in matches[offset : offset + limit]]

    def create(self, n: int = 1, at_ms: int | None = None) -> list[dict[str, Any]]:
        """Add `n` new orders created (and last modified) now, or at `at_ms`; returns copies."""
        if n < 0:
            raise ValueError("n must be >= 0")
        with self._lock:
            created = []
            for _ in range(n):
                record, now = self._new_record(at_ms)
                self._insert(record, now, None)
                created.append(self._entries[record["id"]].record())
            return created

    def add_malformed(self, kind: str, at_ms: int | None = None) -> dict[str, Any]:
        """Add one new order broken as `kind` (one of MALFORMED_KINDS); returns a copy as served."""
        if kind not in MALFORMED_KINDS:
            raise ValueError(f"unknown malformed kind {kind!r}; expected one of {', '.join(MALFORMED_KINDS)}")
        with self._lock:
            record, now = self._new_record(at_ms)
            bad = malform(record, kind, self._factory.rng)
            self._insert(bad, now, kind)
            key = bad["id"] if "id" in bad else self._next_anonymous + 1
            return self._entries[key].record()

    def edit(
        self, ids: Iterable[int] | None = None, n: int = 1, old: bool = False, keep_stamp: bool = False
    ) -> list[dict[str, Any]]:
        """Edit orders as an agent would; lastModificationTime becomes now, always > its old value.

        With `ids`, exactly those orders (KeyError if any is unknown). Otherwise `n` well-formed
        orders picked at random among those created in the last 7 days, or, with `old=True`,
        among older ones (falling back to any order when that group is empty).

        With `keep_stamp=True` the content changes (deliveryStatus always, remarks, sometimes
        discount and assignee) but lastModificationTime does not: Kapture has been seen saving
        changes without bumping it, and only a content comparison can notice those.
        """
        with self._lock:
            if ids is not None:
                keys = list(dict.fromkeys(int(i) for i in ids))
                unknown = [k for k in keys if k not in self._entries or k < 0]
                if unknown:
                    raise KeyError(f"unknown order ids: {', '.join(map(str, unknown))}")
            else:
                keys = self._pick(n, old)
            now = self._clock()
            edited = []
            for key in keys:
                entry = self._entries[key]
                record = entry.record()
                stamp = record.get("lastModificationTime")
                previous = _as_int(stamp)
                modified = now if previous is None else max(now, previous + 1)
                record = self._factory.edited(record, modified)
                if keep_stamp:
                    record["lastModificationTime"] = stamp
                entry.set(record)
                edited.append(record)
            return edited

    def delete(self, ids: Iterable[int]) -> list[dict[str, Any]]:
        """Remove orders as Kapture would delete them: no trace is served; returns them as they were."""
        with self._lock:
            keys = list(dict.fromkeys(int(i) for i in ids))
            unknown = [k for k in keys if k not in self._entries or k < 0]
            if unknown:
                raise KeyError(f"unknown order ids: {', '.join(map(str, unknown))}")
            removed = []
            for key in keys:
                entry = self._entries.pop(key)
                self._index.remove((entry.sort_ms, key))
                removed.append(entry.record())
            return removed

    def restore(self, records: Iterable[dict[str, Any]]) -> None:
        """Put deleted orders back exactly as they were (an undo at Kapture)."""
        with self._lock:
            for record in records:
                self._insert(dict(record), _as_int(record.get("createDate")) or self._clock(), None)

    def _pick(self, n: int, old: bool) -> list[int]:
        cut = bisect_left(self._index, (self._clock() - OLD_AFTER_MS,))
        group = self._index[:cut] if old else self._index[cut:]
        candidates = [k for _, k in group if self._entries[k].malformed is None]
        if not candidates:
            candidates = [k for _, k in self._index if self._entries[k].malformed is None]
        return self._factory.rng.sample(candidates, min(max(n, 0), len(candidates)))

    def get(self, order_id: int) -> dict[str, Any] | None:
        """A copy of one order exactly as served, or None."""
        with self._lock:
            entry = self._entries.get(order_id)
            return None if entry is None or order_id < 0 else entry.record()

    def truth(self) -> list[dict[str, Any]]:
        """Copies of every record exactly as served now, sorted by id (id-less records last)."""
        with self._lock:
            entries = sorted(self._entries.values(), key=lambda e: (e.key < 0, abs(e.key)))
            return [e.record() for e in entries]
