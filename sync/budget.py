"""One request-rate budget for every request of the process, so a vendor API is treated politely.

Several windows are fetched at once (`KAPTURE_SYNC_CONCURRENCY`), and the daemon may run several
accounts; all of their requests draw from one `RequestBudget`, which spaces request *starts* at
least `1 / rate` seconds apart (`KAPTURE_REQUESTS_PER_SECOND`): no burst, so no more than `rate`
requests begin in any second, whatever the concurrency.

A 429 slows everyone down: the rate is halved (down to a floor of one request every 10 s) and no
request of any thread starts before the `Retry-After` the server sent; each answered request then
wins back a twentieth of the configured rate, so the budget returns to it after a run of
successes. The rate is halved once for the requests that were already in flight together: when
the server throttles, every thread's request in flight may come back 429, and six halvings for
one episode would leave 1/64 of the rate where 1/2 answers it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

MIN_RATE = 0.1  # requests per second a run of 429s can push the budget down to


class RequestBudget:
    """A shared, thread-safe pacing of request starts; `rate` <= 0 means no limit."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.configured = float(rate)
        self.rate = float(rate)
        self._clock = clock
        self._lock = threading.Lock()
        self._next = 0.0  # the earliest instant the next request may start
        self._halved_at = float("-inf")  # when the rate was last halved

    def reserve(self) -> float:
        """Claim the next start slot; return how many seconds to wait for it (0 when it is now)."""
        with self._lock:
            now = self._clock()
            if self.rate <= 0 and self._next <= now:
                return 0.0
            slot = max(now, self._next)
            self._next = slot + (1.0 / self.rate if self.rate > 0 else 0.0)
            return slot - now

    def acquire(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Wait for this request's slot (`sleep` may be a `Stop.sleep`, which ends the wait early);
        return the instant it was claimed, which `throttled` takes if the request comes back 429."""
        wait = self.reserve()
        started = self._clock()
        if wait > 0:
            sleep(wait)
        return started + wait

    def throttled(self, retry_after: float | None, started: float | None = None) -> None:
        """A 429: halve the rate and hold every request back until `Retry-After` has passed.

        A request `started` before the last halving was in flight with the one that caused it: it
        holds requests back too, but does not halve the rate again.
        """
        with self._lock:
            if started is None or started >= self._halved_at:
                base = self.rate if self.rate > 0 else 10.0
                self.rate = max(MIN_RATE, base / 2)
                self._halved_at = self._clock()
            if retry_after:
                self._next = max(self._next, self._clock() + retry_after)
            rate = self.rate
        log.warning("kapture.slow_down", requests_per_second=round(rate, 2), retry_after=retry_after)

    def answered(self) -> None:
        """A page was served (not a 429, nor any other failure): creep back towards the configured rate.

        With no configured limit (`rate` <= 0), a throttled budget climbs by one request per second
        per answer up to 1,000 a second, then drops the limit again.
        """
        if self.rate == self.configured:
            return
        with self._lock:
            if self.configured <= 0:
                self.rate = min(self.rate + 1.0, 1000.0) if self.rate < 1000.0 else self.configured
            else:
                self.rate = min(self.configured, self.rate + self.configured / 20)


_shared: dict[float, RequestBudget] = {}
_shared_lock = threading.Lock()


def shared_budget(rate: float) -> RequestBudget:
    """The process's budget for this rate: every client built from the same settings shares it."""
    with _shared_lock:
        if rate not in _shared:
            _shared[rate] = RequestBudget(rate)
        return _shared[rate]
