"""Records made ready to write on another core: mapping, canonical JSON, fingerprint, the row's values.

One interpreter can only use one core at a time, and mapping a record (`to_row`: every field
checked, the canonical JSON and its SHA-256, each value put into the form the database takes) is
the biggest share of the work per order. `Preparer` hands each page's records to a worker process
while the fetching thread waits for the answer with the interpreter's lock released, so the writer
and the worker run at once. What comes back is compact: one tuple per record (`Prepared`), with the
row's values already as the driver takes them, shipped as `marshal` bytes because unpickling one
object per value would cost the writer's core about as much as mapping did.

The worker only computes: it never touches the database or the network, so a run killed at any
instant loses nothing that had not been committed, and a worker that dies only costs speed.
"""

from __future__ import annotations

import itertools
import marshal
import os
import pickle
import re
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import suppress
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Literal

import structlog

from sync.fields import ORDER_COLUMNS, ORDER_FIELDS
from sync.transform import RAW_JSON, Rejection, stamp, to_row
from sync.windows import to_ms

log = structlog.get_logger(__name__)

Dialect = Literal["sqlite", "postgresql"]
# id, lastModificationTime (epoch ms), fingerprint, createDate (epoch ms), and the row: on SQLite its
# values in the loader's column order with `synced_at` (the last) left for the writer to fill in, on
# PostgreSQL its line of COPY text up to `synced_at` (`copy_line`).
Prepared = tuple[int, int, str, int, list[Any] | bytes]

MIN_RECORDS = 200  # a smaller page is mapped in the calling thread: shipping it would cost more than it saves

_TIMES = tuple(i for i, f in enumerate(ORDER_FIELDS) if f.kind == "timestamp")
_AMOUNTS = tuple(i for i, f in enumerate(ORDER_FIELDS) if f.kind == "amount")
_PLACEHOLDER = datetime(1970, 1, 1, tzinfo=UTC)


def sqlite_time(moment: datetime) -> str:
    """The text SQLAlchemy's SQLite DATETIME stores (naive UTC, microseconds), so reads and compares agree."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat(" ", "microseconds")


def postgresql_time(moment: datetime) -> str:
    """A timestamp as COPY's text form reads it, zone included."""
    return moment.astimezone(UTC).isoformat(" ", "microseconds")


def values_of(row: dict[str, Any], dialect: Dialect) -> list[Any]:
    """A mapped row's values in the loader's column order, as plain values `marshal` can carry.

    Times become text in the form each database stores or parses; amounts that are `Decimal`
    become a float on SQLite (its NUMERIC keeps a double, see models.Amount) and text on
    PostgreSQL (read by NUMERIC exactly). The last value, `synced_at`, is left as None.
    """
    values = [row[c] for c in ORDER_COLUMNS]
    to_text = sqlite_time if dialect == "sqlite" else postgresql_time
    for i in _TIMES:
        if values[i] is not None:
            values[i] = to_text(values[i])
    for i in _AMOUNTS:
        if type(values[i]) is Decimal:
            values[i] = float(values[i]) if dialect == "sqlite" else str(values[i])
    values.append(row[RAW_JSON].decode())
    values.append(row["fingerprint"])
    values.append(None)
    return values


# COPY's text format: these characters are written escaped, exactly as psycopg's own formatter does.
_COPY_SPECIAL = re.compile("[\b\t\n\v\f\r\\\\]")
_COPY_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\v": "\\v", "\f": "\\f", "\r": "\\r", "\\": "\\\\"}


def copy_text(value: str) -> str:
    """A text value as COPY's text format reads it back unchanged."""
    if _COPY_SPECIAL.search(value) is None:
        return value
    return _COPY_SPECIAL.sub(lambda found: _COPY_ESCAPES[found.group()], value)


def _copy_line_source() -> str:
    """Source of `copy_line`: one expression per column, generated from ORDER_FIELDS like transform's fast path.

    Straight-line code costs about what psycopg's compiled formatter does (5 µs a row), and it runs
    in the worker, so the writer's core only joins finished lines.
    """
    null = repr("\\N")
    parts = []
    for f in ORDER_FIELDS:
        v = f"row[{f.column!r}]"
        if f.kind == "timestamp":
            parts.append(f"{null} if {v} is None else postgresql_time({v})")
        elif f.kind == "text":
            parts.append(f"{null} if {v} is None else copy_text({v})")
        elif f.kind == "flag":
            parts.append(f"{null} if {v} is None else ('t' if {v} else 'f')")
        else:  # ids, integers and amounts (int, float or Decimal): their shortest exact text
            parts.append(f"{null} if {v} is None else str({v})")
    parts.append(f"copy_text(row[{RAW_JSON!r}].decode())")
    parts.append("row['fingerprint']")
    body = ",\n        ".join(parts)
    return f"def copy_line(row):\n    return ('\\t'.join((\n        {body},\n    )) + '\\t').encode()\n"


_copy_namespace: dict[str, Any] = {"copy_text": copy_text, "postgresql_time": postgresql_time}
exec(compile(_copy_line_source(), "<sync.prepare copy_line>", "exec"), _copy_namespace)  # noqa: S102 (our own source)
copy_line: Callable[[dict[str, Any]], bytes] = _copy_namespace["copy_line"]
copy_line.__doc__ = """A mapped row as one line of COPY text without its last column, `synced_at`, and newline.

The writer ends every line with the same `<synced_at>\\n`, so a page's lines are written with one join.
"""


def prepare(records: list[Any], cm_id: int, dialect: Dialect) -> list[Prepared | Rejection]:
    """Map each record, in order: its `Prepared` tuple, or the `Rejection` saying why it cannot be stored.

    For PostgreSQL the row is a line of COPY text (`copy_line`), for SQLite its value list (`values_of`).
    """
    out: list[Prepared | Rejection] = []
    copy = dialect == "postgresql"
    for record in records:
        row = to_row(record, cm_id, _PLACEHOLDER)
        if isinstance(row, Rejection):
            out.append(row)
            continue
        out.append(
            (
                row["id"],
                to_ms(row["last_modification_time"]),
                row["fingerprint"],
                to_ms(row["create_date"]),
                copy_line(row) if copy else values_of(row, dialect),
            )
        )
    return out


def premap(
    preparer: Preparer, records: list[Any], floor_ms: int | None, wait: Callable[[], None] | None = None
) -> dict[int, Prepared | Rejection]:
    """The prepared form of a page's records, by position, leaving out those at or below the window's floor.

    Those are almost always stored already and are confirmed by id and stamp alone (see
    commit.write_records); the writer maps the rare one that turns out missing or older itself.
    """
    chosen = [
        i for i, record in enumerate(records) if floor_ms is None or (key := stamp(record)) is None or key[1] > floor_ms
    ]
    if not chosen:
        return {}
    return dict(zip(chosen, preparer.prepare([records[i] for i in chosen], wait), strict=True))


def _pack(prepared: list[Prepared | Rejection]) -> tuple[bytes, dict[int, Rejection]]:
    """Tuples as one `marshal` blob (None where a record was rejected), the rejections apart (pickled)."""
    rejected = {i: p for i, p in enumerate(prepared) if isinstance(p, Rejection)}
    return marshal.dumps([None if isinstance(p, Rejection) else p for p in prepared]), rejected


def _unpack(blob: bytes, rejected: dict[int, Rejection]) -> list[Prepared | Rejection]:
    prepared: list[Any] = marshal.loads(blob)
    for i, rejection in rejected.items():
        prepared[i] = rejection
    return prepared


def prepare_packed(records: list[Any], cm_id: int, dialect: Dialect) -> tuple[bytes, dict[int, Rejection]]:
    """`prepare`, run in the worker: its answer in the form that is cheapest to send back."""
    return _pack(prepare(records, cm_id, dialect))


_HEADER = struct.Struct("<II")  # request number, length of the pickle that follows


def _read_frame(stream: IO[bytes]) -> tuple[int, bytes] | None:
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    number, size = _HEADER.unpack(head)
    body = stream.read(size)
    return None if len(body) < size else (number, body)


def _write_frame(stream: IO[bytes], number: int, body: bytes) -> None:
    stream.write(_HEADER.pack(number, len(body)) + body)
    stream.flush()


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    """The worker's loop: one page at a time, until the caller closes its end (or dies, which does the same)."""
    while (frame := _read_frame(requests)) is not None:
        number, body = frame
        try:
            records, cm_id, dialect = pickle.loads(body)
            answer: tuple[Any, ...] = ("ok", *prepare_packed(records, cm_id, dialect))
        except Exception as exc:  # reported to the caller, who then maps its pages itself
            answer = ("error", f"{type(exc).__name__}: {exc}")
        try:
            _write_frame(answers, number, pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            return


class WorkerLost(RuntimeError):
    pass


Answer = tuple[bytes, dict[int, Rejection]]


class _Worker:
    """One worker process, `python -m sync.prepare`, fed pages on its stdin and answering on its stdout.

    A plain child process rather than `multiprocessing`: it never re-imports the caller's main
    module, never forks a threaded process, holds none of the caller's pipes (stderr goes to
    /dev/null), sits in its own session so a Ctrl-C meant for the caller does not reach it, and
    ends when its stdin does: when the caller closes it, or dies, even by SIGKILL.
    """

    def __init__(self) -> None:
        package_root = str(Path(__file__).resolve().parent.parent)  # found even when sync/ is not installed
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))}
        self.process = subprocess.Popen(
            [sys.executable, "-P", "-m", "sync.prepare"],  # -P: never a `sync` from the current directory
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._send_lock = threading.Lock()
        self._pending: dict[int, Future[Answer]] = {}
        self._pending_lock = threading.Lock()
        self._numbers = itertools.count()
        self._lost: str | None = None
        self._reader = threading.Thread(target=self._read, name="kapture-prepare-reader", daemon=True)
        self._reader.start()

    def submit(self, records: list[Any], cm_id: int, dialect: Dialect) -> Future[Answer]:
        future: Future[Answer] = Future()
        number = next(self._numbers) & 0xFFFFFFFF
        body = pickle.dumps((records, cm_id, dialect), protocol=pickle.HIGHEST_PROTOCOL)
        with self._pending_lock:
            if self._lost is not None:
                raise WorkerLost(self._lost)
            self._pending[number] = future
        try:
            with self._send_lock:
                assert self.process.stdin is not None
                _write_frame(self.process.stdin, number, body)
        except (OSError, ValueError) as exc:  # ValueError: its stdin was closed by `close`
            self._fail(f"the worker process is gone ({exc})")
        return future

    def _read(self) -> None:
        """Hand each answer to the thread waiting for it; whatever ends this loop fails every page still waiting."""
        assert self.process.stdout is not None
        reason = "the worker process ended"
        try:
            while (frame := _read_frame(self.process.stdout)) is not None:
                number, body = frame
                answer = pickle.loads(body)  # before the page leaves `_pending`: a failure here fails it too
                with self._pending_lock:
                    future = self._pending.pop(number, None)
                if future is None:
                    continue
                if answer[0] == "ok":
                    future.set_result((answer[1], answer[2]))
                else:
                    future.set_exception(WorkerLost(answer[1]))
        except Exception as exc:  # ends the reader; every waiting page is mapped in its own thread instead
            reason = f"reading the worker's answers failed: {type(exc).__name__}: {exc}"
        finally:
            self._fail(f"{reason} (exit status {self.process.poll()})")

    def _fail(self, reason: str) -> None:
        with self._pending_lock:
            self._lost = self._lost or reason
            pending, self._pending = self._pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(WorkerLost(reason))

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
    """Maps pages in up to `processes` worker processes, or in the calling thread when that is 0.

    Thread-safe: every fetching thread calls `prepare` and waits for its own page (pages go to the
    workers in turn). The workers start with the first page worth shipping; `close` ends them.
    """

    def __init__(self, cm_id: int, dialect: Dialect, processes: int) -> None:
        self.cm_id = cm_id
        self.dialect = dialect
        self.processes = processes
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

    def prepare(self, records: list[Any], wait: Callable[[], None] | None = None) -> list[Prepared | Rejection]:
        """The page's records prepared, in order; `wait` is called every tenth of a second (a stop check).

        A worker that cannot start or dies (a pids limit, the OOM killer) costs speed, not the run:
        the page and every later one are mapped in the calling thread, and the log says so once.
        """
        if len(records) < MIN_RECORDS:
            return prepare(records, self.cm_id, self.dialect)
        try:
            worker = self._worker()  # started here the first time: it may fail (a pids limit, no memory)
            if worker is None:
                return prepare(records, self.cm_id, self.dialect)
            future = worker.submit(records, self.cm_id, self.dialect)
            while True:
                try:
                    return _unpack(*future.result(timeout=0.1))
                except TimeoutError:
                    if wait is not None:
                        wait()
        except (WorkerLost, OSError) as exc:
            with self._lock:
                first, self.processes = self.processes > 0 and not self._closed, 0
            if first:
                log.warning("prepare.worker_lost", error=str(exc), hint="mapping records in this process from now on")
            return prepare(records, self.cm_id, self.dialect)

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
