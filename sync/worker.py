"""Pages read on another core: the worker process, and `Preparer`, which the fetching threads call.

One interpreter runs one thread at a time. A fetching thread hands each answer's body, as bytes,
to a worker process, which judges it, keys its records and maps them (`sync.read.read_page`), and
waits for the answer with the interpreter's lock released: the writer, which shares that lock,
writes meanwhile. What comes back is one `marshal` blob (`sync.read.pack`).

The worker only computes: it never touches the database or the network, so a run killed at any
instant loses nothing that had not been committed, and a worker that dies only costs speed.
"""

from __future__ import annotations

import itertools
import os
import pickle
import struct
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import CancelledError, Future
from contextlib import suppress
from pathlib import Path
from typing import IO, Any

from sync.errors import SyncError, TransientError
from sync.prepare import Dialect
from sync.read import Destination, Packed, PageReader, ReadPage, pack, read_page, unpack

# A smaller body is read in the calling thread: shipping it would cost more than it saves (about
# 150 records of Kapture's size).
MIN_BYTES = 150_000

# A worker that has not answered a page in this long is hung (stopped, swapping, a bug), not busy:
# a page of 1,000 orders takes it ~25 ms. It is killed and pages are read here from then on.
ANSWER_TIMEOUT = 30.0

_HEADER = struct.Struct("<III")  # request number, length of the first part, length of the second


def _read_frame(stream: IO[bytes]) -> tuple[int, bytes, bytes] | None:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    number, first, second = _HEADER.unpack(head)
    body = stream.read(first + second)
    return None if len(body) < first + second else (number, body[:first], body[first:])


def _write_frame(stream: IO[bytes], number: int, first: bytes, second: bytes = b"") -> None:
    """One frame; the second part (a page's body) is written as it is, never copied into the first."""
    stream.write(_HEADER.pack(number, len(first), len(second)))
    stream.write(first)
    stream.write(second)
    stream.flush()


def _answer(status: int, to: Destination, body: bytes) -> tuple[Any, ...]:
    """("page", *packed), or ("refused",) for a body that is not a page: its caller judges that one
    itself, with the headers it kept, and so raises exactly what `judge.judge` raises."""
    try:
        return ("page", *pack(read_page(status, {}, body, to)))
    except (TransientError, SyncError):
        return ("refused",)


def _answer_frame(frame: tuple[int, bytes, bytes]) -> tuple[int, bytes]:
    number, meta, body = frame
    try:
        status, to = pickle.loads(meta)
        answer = _answer(status, to, body)
    except Exception as exc:  # reported to the caller, who then reads its pages itself
        answer = ("error", f"{type(exc).__name__}: {exc}")
    return number, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The worker's loop: one page at a time, until the caller closes its end (or dies, which does the same).

    Each page is handled in a function of its own, so nothing of it is held while the next is awaited.
    """
    while (frame := _read_frame(requests)) is not None:
        number, answer = _answer_frame(frame)
        del frame
        try:
            _write_frame(answers, number, answer)
        except OSError:
            return
        del answer


class WorkerLost(RuntimeError):
    pass


class _Worker:
    """One worker process, `python -m sync.worker`, fed bodies on its stdin and answering on its stdout.

    A plain child process rather than `multiprocessing`: it never re-imports the caller's main
    module, never forks a threaded process, holds none of the caller's pipes (stderr goes to
    /dev/null), sits in its own session so a Ctrl-C meant for the caller does not reach it, and
    ends when its stdin does: when the caller closes it, or dies, even by SIGKILL.
    """

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parent.parent)  # found even when sync/ is not installed
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))}
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "sync.worker"],  # -P: never a `sync` from the current directory
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[Packed | None]] = {}
        self._pending_lock = threading.Lock()
        self._numbers = itertools.count()
        self._lost: str | None = None
        self._reader = threading.Thread(target=self._read, name="kapture-worker-reader", daemon=True)
        self._reader.start()

    def submit(
        self, status: int, body: bytes, to: Destination, timeout: float = ANSWER_TIMEOUT
    ) -> Future[Packed | None]:
        """The page read in the worker: its packed form, or None when the body is not a page.

        Unanswered after `timeout` seconds, the worker is given up (`_overdue`); the watch covers
        handing the body over too, since a stopped worker's full pipe blocks the write. Raises
        RuntimeError when no thread can be started for the watch (a threads limit).
        """
        future: Future[Packed | None] = Future()
        number = next(self._numbers) & 0xFFFFFFFF
        meta = pickle.dumps((status, to), protocol=pickle.HIGHEST_PROTOCOL)
        # The watch holds the page's future weakly: the future holds the watch (its cancelling
        # callback), and a cycle would keep every answered page's blob until the collector's rare
        # full pass (+26 MiB peak in a 100,000-order backfill).
        watch = threading.Timer(timeout, self._overdue, (weakref.ref(future), timeout))
        watch.daemon = True
        with self._pending_lock:
            if self._lost is not None:
                raise WorkerLost(self._lost)
            watch.start()
            self._pending[number] = future
        future.add_done_callback(lambda _: watch.cancel())
        try:
            with self._send_lock:
                assert self.process.stdin is not None
                _write_frame(self.process.stdin, number, meta, body)
        except (OSError, ValueError) as exc:  # ValueError: its stdin was closed by `close`
            self._fail(f"the worker process is gone ({exc})")
        return future

    def _read(self) -> None:
        """Hand each answer to the thread waiting for it; whatever ends this loop fails every page still waiting.

        A worker left running after its answers stopped being read could block a fetching thread
        writing to its full stdin for good, so it is killed.
        """
        assert self.process.stdout is not None
        reason = "the worker process ended"
        try:
            while (frame := _read_frame(self.process.stdout)) is not None:
                self._deliver(frame)
                del frame  # nothing of a page is held while the next answer is awaited
        except Exception as exc:  # ends the reader; every waiting page is read in its own thread instead
            reason = f"reading the worker's answers failed: {type(exc).__name__}: {exc}"
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self._fail(f"{reason} (exit status {self.process.wait()})")

    def _deliver(self, frame: tuple[int, bytes, bytes]) -> None:
        number, body, _ = frame
        answer = pickle.loads(body)  # before the page leaves `_pending`: a failure here fails it too
        with self._pending_lock:
            future = self._pending.pop(number, None)
        if future is None:
            return
        if answer[0] == "page":
            future.set_result((answer[1], answer[2]))
        elif answer[0] == "refused":
            future.set_result(None)
        else:
            future.set_exception(WorkerLost(answer[1]))

    def _fail(self, reason: str) -> None:
        with self._pending_lock:
            self._lost = self._lost or reason
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(WorkerLost(reason))

    def _overdue(self, page: weakref.ref[Future[Packed | None]], waited: float) -> None:
        """Give up on a worker that has not answered a page in `waited` seconds: every page waiting on
        it fails, and it is killed, which also ends a write blocked on its full stdin.

        A second's grace first: a caller that was stopped and resumed (Ctrl-Z, a paused VM) finds the
        answer waiting in the pipe, and its reader takes it before this gives up a working worker.
        """
        future = page()
        if future is None:  # nobody waits for it any more
            return
        try:
            future.exception(timeout=1.0)
            return
        except (TimeoutError, CancelledError):
            pass
        self._fail(f"the worker gave no answer in {waited:g} s")
        self.process.kill()

    def close(self) -> None:
        """Close its stdin so it ends after the page in hand; kill it if it has not within a second."""
        with self._send_lock, suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._reader.join(timeout=1.0)
        if self.process.stdout is not None:
            with suppress(OSError):
                self.process.stdout.close()


class Preparer:
    """Reads pages in up to `processes` worker processes, or in the calling thread when that is 0.

    Thread-safe: every fetching thread calls `read` and waits for its own page (pages go to the
    workers in turn). The workers start with the first page worth shipping; `close` ends them.
    """

    def __init__(self, cm_id: int, dialect: Dialect, processes: int, answer_timeout: float = ANSWER_TIMEOUT) -> None:
        self.cm_id = cm_id
        self.dialect = dialect
        self.processes = processes
        self.answer_timeout = answer_timeout
        self._workers: list[_Worker] = []
        self._turn = itertools.count()
        self._lock = threading.Lock()
        self._closed = False

    def _worker(self) -> _Worker | None:
        with self._lock:
            if self._closed or self.processes <= 0:
                return None
            if len(self._workers) < self.processes:
                self._workers.append(_Worker())
                return self._workers[-1]
            return self._workers[next(self._turn) % len(self._workers)]

    def reader(self, floor_ms: int | None, wait: Callable[[], None] | None = None) -> PageReader:
        """What a window's paging reads its answers with (`KaptureClient.pull_as`): mapped for this
        account and database, above the window's floor; `wait` is called every tenth of a second
        while the worker reads (a stop check)."""
        to = Destination(self.cm_id, self.dialect, floor_ms)

        def read(status: int, headers: Mapping[str, str], body: bytes) -> ReadPage:
            return self.read(status, headers, body, to, wait)

        return read

    def read(
        self,
        status: int,
        headers: Mapping[str, str],
        body: bytes,
        to: Destination,
        wait: Callable[[], None] | None = None,
    ) -> ReadPage:
        """`read.read_page` of one answer, in a worker when the body is a large success.

        A worker that cannot start, dies or hangs (a pids limit, the OOM killer, a stopped process)
        costs speed, not the run: the page and every later one are read in the calling thread, and
        the log says so once.
        """
        packed = self._shipped(status, body, to, wait) if 200 <= status < 300 and len(body) >= MIN_BYTES else None
        return read_page(status, headers, body, to) if packed is None else unpack(*packed)

    def _shipped(self, status: int, body: bytes, to: Destination, wait: Callable[[], None] | None) -> Packed | None:
        """The page as the worker packed it; None when it is read here instead: no worker, a lost
        one, or a body that is not a page (judged here, with its headers, for the failure it raises)."""
        try:
            worker = self._worker()  # started here the first time: it may fail (a pids limit, no memory)
            if worker is None:
                return None
            # A megabyte a second on top: a page far larger than Kapture's is slow to read, not hung.
            future = worker.submit(status, body, to, self.answer_timeout + len(body) / 1_000_000)
            while True:
                try:
                    return future.result(timeout=0.1)
                except TimeoutError:
                    if wait is not None:
                        wait()
        except (WorkerLost, OSError, RuntimeError) as exc:  # RuntimeError: no thread could be started
            with self._lock:
                first, self.processes = self.processes > 0 and not self._closed, 0
            if first:
                import structlog  # here, not at the top: the worker process itself never logs (8 MiB less)

                structlog.get_logger(__name__).warning(
                    "worker.lost", error=str(exc), hint="reading pages in this process from now on"
                )
            return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()

    def __enter__(self) -> Preparer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    from sync.memory import tune_malloc

    tune_malloc()  # its pages pass through the same megabyte buffers as the caller's
    serve(sys.stdin.buffer, sys.stdout.buffer)
