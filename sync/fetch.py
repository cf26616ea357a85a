"""Several windows fetched at once, their pages handed to the one writer in order of arrival.

`KAPTURE_SYNC_CONCURRENCY` threads each take the next window of the plan and page it with
`paging.scan_window`; every request goes through the client, so through the process's request
budget (`sync/budget.py`). Pages go into one bounded queue: a window's own pages arrive in order
(one thread reads a window from start to end), windows interleave. The writer takes them in
batches (`batches`): whatever has arrived, up to a number of rows and a time since the batch's
first page, so that one transaction commits several pages when the database is the slower side,
and a page commits as soon as it arrives when the network is.

The bound (two pages waiting, besides the page each thread holds) keeps memory to a page or so
per thread whatever a window's size. A deeper queue only held more pages while the writer was the
slower side, and fed it larger batches that held more still; a shallower one stalled the threads
of a PostgreSQL run under latency while the server was busy. Measured with 6 threads: peak RSS of
a 1,000,000-order SQLite backfill 142 / 135 / 127 MiB with a queue of 3 / 2 / 1 pages, the same
speed; a 100,000-order PostgreSQL backfill with 100 ms per request 3.3 / 3.2 / 3.0 times a
one-request-at-a-time reader.

A `Stop` (the daemon's) raises `Stopped` while waiting for pages within a tenth of a second,
without waiting for requests in flight; the threads stop at their next request. Worker threads run
in a copy of the caller's context, so their log lines carry the account and run id.
"""

from __future__ import annotations

import contextvars
import queue
import threading
import time
from collections.abc import Generator
from typing import Any

from sync.client import KaptureClient
from sync.paging import Event, PageFetched, PagingRules, scan_window
from sync.prefetch import DONE, Failure, put_until
from sync.read import PageReader, read_page
from sync.schedule import Task
from sync.stop import Stop, Stopped
from sync.windows import to_ms
from sync.worker import Preparer


class _Halt:
    """What the fetching threads check before each request: the run's stop, or the writer leaving."""

    def __init__(self, stop: Stop | None, finished: threading.Event) -> None:
        self._stop = stop
        self._finished = finished

    def check(self) -> None:
        if self._stop is not None:
            self._stop.check()
        if self._finished.is_set():
            raise Stopped("the run ended")


def batches(
    client: KaptureClient,
    tasks: list[Task],
    rules: PagingRules,
    stop: Stop | None = None,
    *,
    workers: int,
    max_rows: int = 5000,
    max_seconds: float = 1.0,
    depth: int | None = None,
    preparer: Preparer | None = None,
) -> Generator[list[Event], None, None]:
    """Yield lists of events in order of arrival; a failure of any thread is raised here, first come.

    A batch holds at least one event and closes when nothing more has arrived, when its pages hold
    `max_rows` records, or `max_seconds` after its first event. With a `preparer`, each answer's body
    is read (parsed, keyed, its records mapped) on another core before the page is handed over, so
    the fetching threads hold the interpreter's lock only for HTTP and the writer only writes;
    `reconcile`'s records are kept as served, since it compares every column on dict rows it maps itself.
    """
    pending: queue.SimpleQueue[Task] = queue.SimpleQueue()
    for task in tasks:
        pending.put(task)
    workers = max(1, min(workers, len(tasks)))
    items: queue.Queue[object] = queue.Queue(maxsize=depth or 2)
    finished = threading.Event()
    halt = _Halt(stop, finished)

    def hand_over(item: object) -> bool:
        return put_until(items, item, finished)

    def produce() -> None:
        try:
            while not finished.is_set():
                try:
                    task = pending.get_nowait()
                except queue.Empty:
                    break
                read: PageReader = read_page
                if preparer is not None and task.reason != "reconcile":
                    read = preparer.reader(None if task.floor is None else to_ms(task.floor), halt.check)
                for event in scan_window(client, task, rules, halt, read):  # type: ignore[arg-type]
                    if not hand_over(event):
                        return
            hand_over(DONE)
        except BaseException as exc:  # handed to the writer, who decides
            hand_over(Failure(exc))

    threads = [
        threading.Thread(target=contextvars.copy_context().run, args=(produce,), name=f"kapture-fetch-{n}", daemon=True)
        for n in range(workers)
    ]
    for thread in threads:
        thread.start()
    running = len(threads)

    def take() -> Any:
        """The next item, as long as it takes, honouring the stop every tenth of a second."""
        while True:
            try:
                return items.get(timeout=0.1)
            except queue.Empty:
                if stop is not None:
                    stop.check()

    try:
        while running:
            batch: list[Event] = []
            rows = 0
            opened = 0.0
            while running:
                try:
                    item = take() if not batch else items.get_nowait()
                except queue.Empty:
                    break
                if item is DONE:
                    running -= 1
                    continue
                if isinstance(item, Failure):
                    raise item.error
                if not batch:
                    opened = time.monotonic()
                batch.append(item)  # type: ignore[arg-type]
                if isinstance(item, PageFetched):
                    rows += len(item.records)
                if rows >= max_rows or time.monotonic() - opened >= max_seconds:
                    break
            if batch:
                yield batch
    finally:
        finished.set()
        for thread in threads:
            thread.join(timeout=1.0)
