"""Request counters and a log of recent pull requests, so tests and benchmarks can see what a client
really asked for: how many requests, with which HTTP method, and which windows and offsets it read.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from typing import Any, Final

import orjson

COUNTERS: Final = ("requests", "pull_requests", "control_requests", "orders_served", "failed_bodies", "max_in_flight")
LOG_SIZE: Final = 10_000
LOGGED_FIELDS: Final = ("createStartDate", "createEndDate", "offset", "limit")


def _logged(body: bytes) -> dict[str, Any]:
    """The paging fields of a pull body as the client sent them (None when absent or unreadable).

    Parsed leniently and apart from validation: a request the API refuses, or one a fault hit
    before it was read, is still logged with what it asked for.
    """
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        return dict.fromkeys(LOGGED_FIELDS)
    return {name: data.get(name) for name in LOGGED_FIELDS}


class ServerStats:
    """Thread-safe counters of requests served (control requests are counted apart), requests by
    HTTP method, and the last `log_size` pull requests, each with a sequence number."""

    def __init__(self, log_size: int = LOG_SIZE) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)
        self._methods: Counter[str] = Counter()
        self._log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self._seq = 0  # never reset, so "requests since N" stays meaningful across resets
        self._in_flight = 0  # pull requests being answered right now; the peak is `max_in_flight`

    def add(self, name: str, amount: int = 1) -> None:
        """Increase one counter (one of COUNTERS)."""
        with self._lock:
            self._counts[name] += amount

    def method(self, method: str) -> None:
        """Count one non-control request by its HTTP method."""
        with self._lock:
            self._methods[method] += 1

    def begin_pull(self) -> None:
        """One pull request is being answered (see `max_in_flight`: how many a client had open at once)."""
        with self._lock:
            self._in_flight += 1
            self._counts["max_in_flight"] = max(self._counts["max_in_flight"], self._in_flight)

    def end_pull(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def log_pull(self, method: str, body: bytes, fault: str | None) -> None:
        """Remember one pull request: its method, window, offset and limit, any fault injected, and
        `at`, the server's monotonic clock when it arrived (seconds), for request-rate checks."""
        entry = {"method": method, **_logged(body), "fault": fault, "at": time.monotonic()}
        with self._lock:
            self._seq += 1
            entry["seq"] = self._seq
            self._log.append(entry)

    def pull_log(self, since: int = 0) -> dict[str, Any]:
        """The logged pull requests with `seq` > `since`, oldest first, and the last `seq` given out."""
        with self._lock:
            entries = [dict(e) for e in self._log if e["seq"] > since]
            return {"requests": entries, "last_seq": self._seq, "capacity": self._log.maxlen}

    def snapshot(self) -> dict[str, Any]:
        """The counters as a plain dict, with `methods` (non-control requests by HTTP method)."""
        with self._lock:
            return {**self._counts, "methods": dict(self._methods)}

    def reset(self) -> None:
        """Every counter back to zero and the log emptied (sequence numbers keep growing)."""
        with self._lock:
            self._counts = dict.fromkeys(COUNTERS, 0)
            self._methods.clear()
            self._log.clear()
