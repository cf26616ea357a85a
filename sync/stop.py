"""A stop that every layer of a run honours: the paging loop, the fetching threads and the commit.

Signals reach only the main thread, and a signal handler should not raise there: the exception
would land in whatever bytecode runs, SQLAlchemy's pool included. So SIGINT/SIGTERM set a `Stop`:
the daemon's (whose jobs run in worker threads, where no signal arrives) and a one-shot run's
(`sync.cli._stopping`, exit 130). The run notices it

- before each request of the paging loop (`sync.paging.scan_window`),
- while waiting for the fetching threads' next pages, so a request in flight is not waited for
  (`sync.fetch.batches`; the threads stop at their next request),
- while waiting for the run guard's one wider request, made in a thread of its own for that reason
  (`sync.guard.RunGuard`),
- in the retry back-off sleeps of the client (`Stop.sleep` replaces `time.sleep`),
- before each batch's transaction (`sync.runs._commit`): a batch of pages is committed whole or not begun.

It then raises `Stopped`, which the run records as `interrupted` before releasing the account.
"""

from __future__ import annotations

import threading


class Stopped(Exception):
    """Raised inside a run whose `Stop` was set; recorded as `interrupted`, never shown as a failure."""

    def __init__(self, reason: str = "stopped") -> None:
        super().__init__(reason)
        self.reason = reason


class Terminated(BaseException):
    """SIGTERM where no `Stop` is listened for (a command that is no run, a second signal).

    A `KeyboardInterrupt` would do, but click answers one by printing a blank line to close the
    terminal's `^C` echo, of which a SIGTERM leaves none: the one line would come second.
    """


class Stop:
    """A one-way flag with a reason; `Stop()` is never set unless someone calls `set`."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str = "stopped") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to `timeout` seconds for the stop; True when it is set."""
        return self._event.wait(timeout)

    def check(self) -> None:
        """Raise `Stopped` if the stop is set."""
        if self._event.is_set():
            raise Stopped(self.reason)

    def sleep(self, seconds: float) -> None:
        """`time.sleep` that ends early, raising `Stopped`, when the stop is set (retry back-off)."""
        if self._event.wait(max(0.0, seconds)):
            raise Stopped(self.reason)
