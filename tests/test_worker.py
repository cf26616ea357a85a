"""Pages read on another core: the worker answers exactly what reading here gives, and never outlives its caller."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import weakref
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from sync.client import make_client, make_http_client
from sync.db import make_engine
from sync.errors import CredentialsRejected, KaptureRejected, TransientError
from sync.fetch import batches
from sync.judge import judge
from sync.paging import PageFetched
from sync.prepare import prepare
from sync.read import Destination, read_page
from sync.runs import backfill, rules_of, schedule_of, sync
from sync.schedule import plan_backfill
from sync.settings import today_in
from sync.transform import Rejection
from sync.worker import MIN_BYTES, Preparer, WorkerLost
from tests.conftest import settings_for
from tests.helpers import assert_equals_truth, rejected, storable

ROOT = Path(__file__).resolve().parent.parent


def _records(emulator: Any) -> list[Any]:
    return [dict(record) for record in emulator.store.truth()]


def _body(records: list[Any]) -> bytes:
    """A successful answer serving `records`, as Kapture sends it."""
    return orjson.dumps({"success": "true", "order_details": records})


SQLITE = Destination(1000298, "sqlite")


def _strange(records: list[Any]) -> list[Any]:
    """Good records with bad ones among them: not an object, an id that is text, an amount with too many digits."""
    bad = [["a", "list"], {**records[1], "id": "twelve"}, {**records[2], "productValue": "1.23456789012345678"}]
    return [*records[3:], *bad]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_worker_answers_exactly_what_reading_in_process_gives(start_emulator, dialect):
    emulator, _ = start_emulator(orders=400, days=3, malformed_rate=0.0)
    records = _strange(_records(emulator))
    records[5] = {**records[5], "loyaltyTier": "gold"}  # a field the documentation does not list
    stamps = sorted(r["lastModificationTime"] for r in records if isinstance(r, dict))
    body = _body(records)
    assert len(body) >= MIN_BYTES
    floored = Destination(1000298, dialect, stamps[len(stamps) // 2])
    with Preparer(1000298, dialect, processes=1) as preparer:
        shipped, shipped_floored = (preparer.read(200, {}, body, to) for to in (Destination(1000298, dialect), floored))
        assert preparer._workers and preparer.processes == 1, "a page this size is read by the worker"
    assert shipped == read_page(200, {}, body, Destination(1000298, dialect))
    assert shipped_floored == read_page(200, {}, body, floored)
    assert shipped_floored.prepared.count(None) > len(records) // 3, "rows at or below the floor are not mapped"
    assert shipped.undocumented == {5: {"loyaltyTier": records[5]["id"]}}
    assert shipped.prepared == prepare(records, 1000298, dialect), "without a floor every record is mapped"
    rejected = [p for p in shipped.prepared if isinstance(p, Rejection)]
    assert len(rejected) == 3 and all(isinstance(p, Rejection) for p in shipped.prepared[-3:])
    assert "id" in shipped.prepared[-2].reason and "productValue" in shipped.prepared[-1].reason  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status", "body", "raised"),
    [
        (200, b'{"status": "failed", "message": "Invalid Auth Key"}' + b" " * MIN_BYTES, CredentialsRejected),
        (200, b'{"status": "failed", "message": "cmId is required"}' + b" " * MIN_BYTES, KaptureRejected),
        (200, _body([{"id": 1}] * 20_000)[:-1], TransientError),  # truncated
        (200, b"[" + b"1," * MIN_BYTES + b"1]", TransientError),  # JSON, but not a page
    ],
)
def test_a_body_that_is_not_a_page_fails_as_the_client_judges_it_wherever_it_is_read(status, body, raised):
    assert len(body) >= MIN_BYTES
    with pytest.raises(raised) as here:
        judge(status, {}, body)
    with Preparer(1000298, "sqlite", processes=1) as preparer:
        with pytest.raises(raised) as there:
            preparer.read(status, {}, body, SQLITE)
        assert preparer._workers and preparer.processes == 1, "the worker answered, and is still trusted"
    assert str(there.value) == str(here.value)


def test_a_worker_that_dies_costs_speed_not_the_page(start_emulator):
    emulator, _ = start_emulator(orders=300, days=3)
    body = _body(_records(emulator))
    with Preparer(1000298, "sqlite", processes=1) as preparer:
        preparer.read(200, {}, body, SQLITE)
        worker = preparer._workers[0]
        worker.process.kill()
        worker.process.wait()
        with pytest.raises(WorkerLost):
            worker.submit(200, body, SQLITE).result(timeout=5)
        assert preparer.read(200, {}, body, SQLITE) == read_page(200, {}, body, SQLITE)
        assert preparer.processes == 0


def test_pages_come_to_the_writer_already_mapped(start_emulator, tmp_path):
    emulator, serving = start_emulator(orders=900, days=3)
    settings = settings_for(serving.url, f"sqlite:///{tmp_path / 'k.db'}", page_size=500)
    today = today_in(settings.zone)
    tasks = plan_backfill(today - timedelta(days=3), today, {}, schedule_of(settings), datetime.now(UTC))
    with make_http_client(settings) as http, Preparer(1000298, "sqlite", processes=1) as preparer:
        client = make_client(settings, http)
        pages = [
            e
            for batch in batches(client, tasks, rules_of(settings), workers=settings.concurrency, preparer=preparer)
            for e in batch
            if isinstance(e, PageFetched)
        ]
        assert preparer._workers and preparer.processes == 1, "the worker read them"
    assert any(len(p.records) >= 250 for p in pages), "the emulator serves pages large enough for the worker"
    served = {record["id"]: record for record in _records(emulator)}
    for page in pages:
        assert page.prepared is not None and set(page.prepared) == set(range(len(page.records)))
        assert page.records == [None] * len(page.records), "a mapped record is let go before the writer"
        assert list(page.prepared.values()) == prepare([served[i] for i in page.ids], 1000298, "sqlite")


@pytest.mark.parametrize("processes", [0, 1])
def test_a_backfill_through_the_worker_stores_every_order_and_rejects_the_malformed(
    start_emulator, database_url, processes
):
    emulator, serving = start_emulator(orders=1500, days=4, malformed_rate=0.03, seed=31)
    settings = settings_for(serving.url, database_url, page_size=500, processes=processes)
    engine = make_engine(database_url)
    with make_http_client(settings) as http:
        client = make_client(settings, http)
        first = backfill(engine, client, settings, today_in(settings.zone) - timedelta(days=4))
        bad = [r for r in emulator.store.truth() if not storable(r)]
        assert bad and first.totals.rejected == len(bad)
        assert_equals_truth(engine, emulator.store.truth())
        edited = {r["id"] for r in emulator.store.edit(n=30)}
        others = [r["id"] for r in emulator.store.truth() if storable(r) and r["id"] not in edited]
        emulator.store.edit(others[:10], keep_stamp=True)
        emulator.store.create(25)
        later = sync(engine, client, settings)
    assert_equals_truth(engine, emulator.store.truth())
    assert later.totals.load.inserted == 25 and later.totals.load.updated == 40
    assert len(rejected(engine)) == len(bad)
    engine.dispose()


_ORPHAN = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from tests.test_worker import page_for_orphan
    from sync.worker import Preparer
    from sync.read import Destination
    preparer = Preparer(1000298, "sqlite", processes=1)
    preparer.read(200, {{}}, page_for_orphan(), Destination(1000298, "sqlite"))
    print(preparer._workers[0].process.pid, flush=True)
    time.sleep(60)
    """
)


def page_for_orphan() -> bytes:
    """A body large enough to go to the worker, without an emulator: the script below has none."""
    return _body(
        [
            {"id": i, "cmId": 1000298, "createDate": 1795152848000 + i, "lastModificationTime": 1795152848000 + i}
            for i in range(1, MIN_BYTES // 50)
        ]
    )


def test_a_killed_caller_leaves_no_worker_and_no_pipe_held_open(tmp_path):
    # No `if __name__ == "__main__"` guard in the script: the worker must not re-run its caller.
    script = tmp_path / "caller.py"
    script.write_text(_ORPHAN.format(root=str(ROOT)))
    caller = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert caller.stdout is not None
    worker_pid = int(caller.stdout.readline())
    assert caller.stderr is not None
    callers_pipes = {f"pipe:[{os.fstat(stream.fileno()).st_ino}]" for stream in (caller.stdout, caller.stderr)}
    workers_files = {os.readlink(f"/proc/{worker_pid}/fd/{fd}") for fd in os.listdir(f"/proc/{worker_pid}/fd")}
    assert not callers_pipes & workers_files, "the worker holds the caller's stdout or stderr"
    os.kill(caller.pid, signal.SIGKILL)
    caller.wait()
    started = time.monotonic()
    assert caller.stdout.read() == b"", "the worker holds none of the caller's pipes: EOF at once"
    assert caller.stderr.read() == b""
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        os.kill(worker_pid, signal.SIGKILL)
        pytest.fail("the worker outlived its killed caller")


def test_a_sync_py_in_the_current_directory_is_never_run_by_the_worker(start_emulator, tmp_path, monkeypatch):
    emulator, _ = start_emulator(orders=300, days=3)
    marker = tmp_path / "ran"
    (tmp_path / "sync.py").write_text(f"open({str(marker)!r}, 'w').write('the user script ran')\n")
    monkeypatch.chdir(tmp_path)
    body = _body(_records(emulator))
    with Preparer(1000298, "sqlite", processes=1) as preparer:
        assert preparer.read(200, {}, body, SQLITE) == read_page(200, {}, body, SQLITE)
        assert preparer.processes == 1, "the worker answered"
    assert not marker.exists()


def test_a_worker_that_cannot_start_costs_speed_not_the_run(start_emulator, monkeypatch):
    import sync.worker as module

    emulator, _ = start_emulator(orders=300, days=3)
    body = _body(_records(emulator))

    def refuse(*args: object, **kwargs: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(module.subprocess, "Popen", refuse)
    with Preparer(1000298, "sqlite", processes=1) as preparer:
        assert preparer.read(200, {}, body, SQLITE) == read_page(200, {}, body, SQLITE)
        assert preparer.processes == 0


def test_a_failure_reading_the_workers_answers_falls_back_instead_of_hanging(start_emulator, monkeypatch):
    import pickle
    import threading

    import sync.worker as module

    emulator, _ = start_emulator(orders=300, days=3)
    body = _body(_records(emulator))

    class Broken:
        dumps = staticmethod(pickle.dumps)
        HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL

        @staticmethod
        def loads(body: bytes) -> object:
            raise MemoryError("no memory for the answer")

    monkeypatch.setattr(module, "pickle", Broken)
    answer: list[object] = []
    with Preparer(1000298, "sqlite", processes=1) as preparer:
        waiting = threading.Thread(target=lambda: answer.append(preparer.read(200, {}, body, SQLITE)), daemon=True)
        waiting.start()
        waiting.join(timeout=20)
        assert not waiting.is_alive(), "a page waited forever for an answer that could not be read"
        assert answer == [read_page(200, {}, body, SQLITE)] and preparer.processes == 0


def test_the_worker_process_loads_neither_the_http_client_nor_the_settings():
    """It only judges and maps: httpx, tenacity and the settings would cost it 25 MiB and 0.2 s at every start."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-P", "-m", "sync.worker"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=60,
        check=True,
    )
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.decode().splitlines()}
    assert {"sync.read", "sync.judge", "sync.prepare"} <= imported
    assert not imported & {"httpx", "tenacity", "sync.settings", "pydantic", "structlog", "sqlalchemy"}


@pytest.mark.timeout(30)
def test_a_worker_that_hangs_is_killed_and_its_page_read_here(start_emulator):
    """A stopped worker (SIGSTOP, a frozen cgroup) never answers and never dies: its page would wait for good."""
    emulator, _ = start_emulator(orders=300, days=3)
    body = _body(_records(emulator))
    with Preparer(1000298, "sqlite", processes=1, answer_timeout=1.0) as preparer:
        assert preparer.read(200, {}, body, SQLITE) == read_page(200, {}, body, SQLITE)
        worker = preparer._workers[0].process
        os.kill(worker.pid, signal.SIGSTOP)
        started = time.monotonic()
        assert preparer.read(200, {}, body, SQLITE) == read_page(200, {}, body, SQLITE)
        assert time.monotonic() - started < 10
        assert preparer.processes == 0, "later pages are read here"
        assert worker.wait(timeout=5) == -signal.SIGKILL, "the hung worker is killed, not left stopped"


def test_a_caller_that_was_stopped_does_not_give_up_a_worker_whose_answer_is_waiting(start_emulator):
    """Ctrl-Z stops the caller, not the worker (its own session): on resume the page's watch is
    overdue, yet the answer sits in the pipe. A second's grace lets the reader take it."""
    from concurrent.futures import Future

    emulator, _ = start_emulator(orders=300, days=3)
    body = _body(_records(emulator))
    with Preparer(1000298, "sqlite", processes=1) as preparer:
        preparer.read(200, {}, body, SQLITE)
        worker = preparer._workers[0]
        answered: Future[None] = Future()
        threading.Timer(0.3, answered.set_result, (None,)).start()
        worker._overdue(weakref.ref(answered), 30.0)  # type: ignore[arg-type]
        assert worker.process.poll() is None, "a worker that answered is not killed"
        assert preparer.read(200, {}, body, SQLITE) == read_page(200, {}, body, SQLITE)
        assert preparer.processes == 1
        time.sleep(0.2)
        watching = [t for t in threading.enumerate() if isinstance(t, threading.Timer) and t.is_alive()]
        assert not watching, "an answered page's watch ends with the answer, not 30 s later"


def test_a_page_whose_watch_cannot_start_is_read_here(start_emulator, monkeypatch):
    """A threads or pids limit can refuse the watch's thread: that costs speed, not the run."""
    import sync.worker as module

    emulator, _ = start_emulator(orders=300, days=3)
    body = _body(_records(emulator))

    class Refused(threading.Timer):
        def start(self) -> None:
            raise RuntimeError("can't start new thread")

    with Preparer(1000298, "sqlite", processes=1) as preparer:
        preparer.read(200, {}, body, SQLITE)
        monkeypatch.setattr(module.threading, "Timer", Refused)
        assert preparer.read(200, {}, body, SQLITE) == read_page(200, {}, body, SQLITE)
        assert preparer.processes == 0


def test_an_answered_page_is_not_kept_alive_after_it_is_read(start_emulator):
    """A page's future, its watch and the watch's cancelling callback must not form a cycle: each
    answered page's blob (a megabyte or two) would then live until the collector's rare full pass,
    and a backfill's peak memory rose by 26 MiB."""
    import gc
    from concurrent.futures import Future

    emulator, _ = start_emulator(orders=300, days=3)
    body = _body(_records(emulator))
    with Preparer(1000298, "sqlite", processes=1) as preparer:
        preparer.read(200, {}, body, SQLITE)
        gc.collect()
        gc.disable()  # what the collector would find late is found now, before it runs
        try:
            for _ in range(3):
                preparer.read(200, {}, body, SQLITE)
            time.sleep(0.2)  # the cancelled watches' threads end
            kept = [f for f in gc.get_objects() if isinstance(f, Future) and f.done()]
        finally:
            gc.enable()
    assert not kept, f"{len(kept)} answered pages still in memory"


@pytest.mark.timeout(30)
def test_a_big_page_is_given_a_second_a_megabyte_beyond_the_answer_timeout():
    """A page of several megabytes is slow to read, not a sign of a hung worker: its watch waits a
    second a megabyte beyond `answer_timeout`. Here the worker is held stopped past the timeout and
    its second's grace, well within the 3 s its page earns, and its answer is still taken."""
    stamp = 1795152848000
    big = _body(
        [
            {
                "id": i,
                "cmId": 1000298,
                "createDate": stamp + i,
                "lastModificationTime": stamp + i,
                "remarks": "x" * 4000,
            }
            for i in range(1, 751)
        ]
    )
    assert len(big) > 3_000_000
    with Preparer(1000298, "sqlite", processes=1) as preparer:
        preparer.read(200, {}, page_for_orphan(), SQLITE)  # the worker is up, its imports done
        preparer.answer_timeout = 0.05
        worker = preparer._workers[0].process
        worker.send_signal(signal.SIGSTOP)
        answer: list[object] = []
        reading = threading.Thread(target=lambda: answer.append(preparer.read(200, {}, big, SQLITE)), daemon=True)
        reading.start()
        reading.join(timeout=1.25)  # 0.05 s and the grace have passed; 3.05 s and the grace have not
        worker.send_signal(signal.SIGCONT)
        reading.join(timeout=20)
        assert answer == [read_page(200, {}, big, SQLITE)]
        assert preparer.processes == 1 and worker.poll() is None, "a worker within its allowance was given up"
