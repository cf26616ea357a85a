"""Faults the emulator injects into pull requests, so a client's resilience can be tested.

Two mechanisms: a queue of one-shot faults for the next pull requests (deterministic tests), and
standing settings (latency, a silent page-size cap, the order of results, an ignored `offset`,
per-request fault rates drawn from a seeded RNG for fault-mix tests). One lock guards all of it.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from typing import Any, Final

FAULT_KINDS: Final = (
    "500",
    "502",
    "503",
    "429",
    "timeout",
    "truncate",
    "bad_json",
    "failed_body",
    "disconnect",
    "429_date",
    "html",
    "list_body",
    "refused_body",
)
SETTINGS: Final = (
    "latency_ms",
    "limit_cap",
    "limit_max",
    "newest_first",
    "order_by",
    "ignore_offset",
    "retry_after_seconds",
    "rates",
    "slow_seconds",
)
ORDER_KEYS: Final = ("createDate", "lastModificationTime")


def _check_kind(kind: str) -> str:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
    return kind


def _number(name: str, value: Any, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise ValueError(f"{name} must be a number >= {minimum:g}")
    return float(value)


class Faults:
    """What goes wrong, and how often; shared by every request thread."""

    def __init__(self, seed: int = 1) -> None:
        self._lock = threading.Lock()
        self._rng = random.Random(seed * 104_729 + 3)
        self._queue: deque[str] = deque()
        self._injected: Counter[str] = Counter()
        self._latency_ms = 0.0
        self._limit_cap: int | None = None
        self._limit_max: int | None = None
        self._newest_first = False
        self._order_by = "createDate"
        self._ignore_offset = False
        self._retry_after_seconds = 1
        self._rates: dict[str, float] = {}
        self._slow_seconds = 5.0

    # -- one-shot faults --

    def push(self, kind: str, count: int = 1) -> None:
        """Make the next `count` pull requests fail as `kind` (after any already queued)."""
        _check_kind(kind)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError("count must be an integer >= 0")
        with self._lock:
            self._queue.extend([kind] * count)

    def pending(self) -> list[str]:
        """The queued one-shot faults, next first."""
        with self._lock:
            return list(self._queue)

    def take(self) -> str | None:
        """The fault for the pull request being served now (queued first, then by rate); counted."""
        with self._lock:
            if self._queue:
                kind: str | None = self._queue.popleft()
            else:
                kind = self._draw()
            if kind is not None:
                self._injected[kind] += 1
            return kind

    def _draw(self) -> str | None:
        if not self._rates:
            return None
        point = self._rng.random()
        for kind in FAULT_KINDS:  # fixed order keeps draws reproducible
            point -= self._rates.get(kind, 0.0)
            if point < 0:
                return kind
        return None

    def injected(self) -> dict[str, int]:
        """How many faults of each kind were injected so far."""
        with self._lock:
            return dict(self._injected)

    def reset_counts(self) -> None:
        """Forget the injected counts (settings and queue stay)."""
        with self._lock:
            self._injected.clear()

    def clear(self) -> None:
        """Back to a healthy server: empty queue and default settings (counts are kept)."""
        with self._lock:
            self._queue.clear()
            self._latency_ms = 0.0
            self._limit_cap = None
            self._limit_max = None
            self._newest_first = False
            self._order_by = "createDate"
            self._ignore_offset = False
            self._retry_after_seconds = 1
            self._rates = {}
            self._slow_seconds = 5.0

    # -- standing settings --

    @property
    def latency_ms(self) -> float:
        """Milliseconds added to every pull request."""
        with self._lock:
            return self._latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        checked = _number("latency_ms", value)
        with self._lock:
            self._latency_ms = checked

    @property
    def limit_cap(self) -> int | None:
        """At most this many orders per page whatever `limit` asks (None: no cap)."""
        with self._lock:
            return self._limit_cap

    @limit_cap.setter
    def limit_cap(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError("limit_cap must be a positive integer or null")
        with self._lock:
            self._limit_cap = value

    @property
    def limit_max(self) -> int | None:
        """Refuse (a failed body) any `limit` above this, as a server with a hard page cap would (None: accept any)."""
        with self._lock:
            return self._limit_max

    @limit_max.setter
    def limit_max(self, value: int | None) -> None:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise ValueError("limit_max must be a positive integer or null")
        with self._lock:
            self._limit_max = value

    @property
    def newest_first(self) -> bool:
        """Serve pages newest first (descending by `order_by`), so offset paging drifts when orders arrive."""
        with self._lock:
            return self._newest_first

    @newest_first.setter
    def newest_first(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError("newest_first must be true or false")
        with self._lock:
            self._newest_first = value

    @property
    def order_by(self) -> str:
        """The field pages are sorted by: `createDate` or `lastModificationTime` (id breaks ties)."""
        with self._lock:
            return self._order_by

    @order_by.setter
    def order_by(self, value: str) -> None:
        if value not in ORDER_KEYS:
            raise ValueError(f"order_by must be one of {', '.join(ORDER_KEYS)}")
        with self._lock:
            self._order_by = value

    @property
    def ignore_offset(self) -> bool:
        """Serve every page from the first row, whatever `offset` asks, as a server without paging would."""
        with self._lock:
            return self._ignore_offset

    @ignore_offset.setter
    def ignore_offset(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise ValueError("ignore_offset must be true or false")
        with self._lock:
            self._ignore_offset = value

    @property
    def retry_after_seconds(self) -> int:
        """The Retry-After header value sent with 429."""
        with self._lock:
            return self._retry_after_seconds

    @retry_after_seconds.setter
    def retry_after_seconds(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError("retry_after_seconds must be an integer >= 0")
        with self._lock:
            self._retry_after_seconds = value

    @property
    def rates(self) -> dict[str, float]:
        """Per-request probability of each fault kind (a copy)."""
        with self._lock:
            return dict(self._rates)

    @rates.setter
    def rates(self, value: dict[str, float]) -> None:
        if not isinstance(value, dict):
            raise ValueError("rates must be an object of fault kind -> probability")
        checked = {_check_kind(k): _number(f"rate of {k}", v) for k, v in value.items()}
        if sum(checked.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates must add up to at most 1")
        with self._lock:
            self._rates = {k: v for k, v in checked.items() if v > 0}

    @property
    def slow_seconds(self) -> float:
        """How long a "timeout" fault stalls before answering normally."""
        with self._lock:
            return self._slow_seconds

    @slow_seconds.setter
    def slow_seconds(self, value: float) -> None:
        checked = _number("slow_seconds", value)
        with self._lock:
            self._slow_seconds = checked

    def settings(self) -> dict[str, Any]:
        """The standing settings and the queued faults, as JSON-ready values."""
        with self._lock:
            return {
                "latency_ms": self._latency_ms,
                "limit_cap": self._limit_cap,
                "limit_max": self._limit_max,
                "newest_first": self._newest_first,
                "order_by": self._order_by,
                "ignore_offset": self._ignore_offset,
                "retry_after_seconds": self._retry_after_seconds,
                "rates": dict(self._rates),
                "slow_seconds": self._slow_seconds,
                "pending": list(self._queue),
            }

    def update(self, changes: dict[str, Any]) -> None:
        """Apply settings by name (as the control endpoint receives them); all-or-nothing."""
        unknown = sorted(set(changes) - set(SETTINGS))
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(unknown)}; expected {', '.join(SETTINGS)}")
        probe = Faults()
        for name, value in changes.items():
            setattr(probe, name, value)  # validates every value before anything changes
        for name in changes:
            setattr(self, name, getattr(probe, name))
