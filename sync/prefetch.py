"""Run a producer in a background thread, a few items ahead of the consumer, honouring the stop.

The run guard's one wider request uses it so that a daemon's stop does not wait for that request;
`fetch.py` shares its hand-over (`put_until`, `DONE`, `Failure`) for its several producers.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from collections.abc import Generator, Iterable
from typing import TypeVar

from sync.stop import Stop

T = TypeVar("T")
DONE = object()  # a producer's last item: it has no more


class Failure:
    """A producer's exception, handed to the consumer to raise."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def put_until(items: queue.Queue[object], item: object, finished: threading.Event) -> bool:
    """Put `item` on a bounded queue, waiting while it is full; False once `finished` says no one reads."""
    while not finished.is_set():
        try:
            items.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def prefetched(source: Iterable[T], depth: int = 2, stop: Stop | None = None) -> Generator[T, None, None]:
    """Iterate `source` in a daemon thread; its exceptions surface here, in order.

    When the consumer stops early the producer is told to stop at its next item; a request it
    is waiting on is not interrupted, so the thread may outlive the loop by that long. A set
    `stop` raises `Stopped` here within a tenth of a second, without waiting for that request.
    The thread runs in a copy of the caller's context, so its log lines carry the same
    account and run id.
    """
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    finished = threading.Event()

    def hand_over(item: object) -> bool:
        return put_until(items, item, finished)

    def produce() -> None:
        try:
            for item in source:
                if not hand_over(item):
                    return
            hand_over(DONE)
        except BaseException as exc:  # handed to the consumer, who decides
            hand_over(Failure(exc))

    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(produce,), name="kapture-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            if stop is None:
                item = items.get()
            else:
                try:
                    item = items.get(timeout=0.1)
                except queue.Empty:
                    stop.check()
                    continue
            if item is DONE:
                return
            if isinstance(item, Failure):
                raise item.error
            yield item  # type: ignore[misc]
    finally:
        finished.set()
        worker.join(timeout=1.0)
