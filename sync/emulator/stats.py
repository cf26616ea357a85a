"""Request counters, so tests and benchmarks can see what a client really asked for."""

from __future__ import annotations

import threading
from typing import Final

COUNTERS: Final = ("requests", "pull_requests", "control_requests", "orders_served", "failed_bodies")


class ServerStats:
    """Thread-safe counters of requests served (control requests are counted apart)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        """Increase one counter (one of COUNTERS)."""
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        """The counters as a plain dict."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Every counter back to zero."""
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)
