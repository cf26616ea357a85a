"""Mapping on another core: the worker answers exactly what mapping here gives, and never outlives its caller."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from sync.client import make_client, make_http_client
from sync.db import make_engine
from sync.fetch import batches
from sync.paging import PageFetched
from sync.prepare import MIN_RECORDS, Preparer, WorkerLost, premap, prepare
from sync.runs import backfill, rules_of, schedule_of, sync
from sync.schedule import plan_backfill
from sync.settings import today_in
from sync.transform import Rejection
from tests.conftest import settings_for
from tests.helpers import assert_equals_truth, rejected, storable

ROOT = Path(__file__).resolve().parent.parent


def _records(emulator: Any) -> list[Any]:
    return [dict(record) for record in emulator.store.truth()]


def _strange(records: list[Any]) -> list[Any]:
    """Good records with bad ones among them: not an object, an id that is text, an amount with too many digits."""
    bad = [["a", "list"], {**records[1], "id": "twelve"}, {**records[2], "productValue": "1.23456789012345678"}]
    return [*records[3:], *bad]


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_the_worker_answers_exactly_what_mapping_in_process_gives(start_emulator, dialect):
    emulator, _ = start_emulator(orders=400, days=3, malformed_rate=0.0)
    records = _strange(_records(emulator))
    assert len(records) >= MIN_RECORDS
    with Preparer(1000298, dialect, processes=1) as preparer:
        shipped = preparer.prepare(records)
        assert preparer._workers, "a page this size goes to the worker"
    here = prepare(records, 1000298, dialect)
    assert shipped == here
    rejected = [p for p in shipped if isinstance(p, Rejection)]
    assert len(rejected) == 3 and isinstance(shipped[-3], Rejection) and isinstance(shipped[-1], Rejection)
    assert "id" in shipped[-2].reason and "productValue" in shipped[-1].reason


def test_premap_leaves_out_rows_at_or_below_the_floor(start_emulator):
    emulator, _ = start_emulator(orders=300, days=3)
    records = _records(emulator)
    stamps = sorted(r["lastModificationTime"] for r in records)
    floor = stamps[len(stamps) // 2]
    with Preparer(1000298, "sqlite", processes=0) as preparer:
        mapped = premap(preparer, records, floor)
    assert set(mapped) == {i for i, r in enumerate(records) if r["lastModificationTime"] > floor}
    assert all(mapped[i][0] == records[i]["id"] for i in mapped)


def test_a_worker_that_dies_costs_speed_not_the_page(start_emulator):
    emulator, _ = start_emulator(orders=300, days=3)
    records = _records(emulator)
    with Preparer(1000298, "sqlite", processes=1) as preparer:
        preparer.prepare(records)
        worker = preparer._workers[0]
        worker.process.kill()
        worker.process.wait()
        with pytest.raises(WorkerLost):
            worker.submit(records, 1000298, "sqlite").result(timeout=5)
        assert preparer.prepare(records) == prepare(records, 1000298, "sqlite")
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
            for batch in batches(client, tasks, rules_of(settings), preparer=preparer)
            for e in batch
            if isinstance(e, PageFetched)
        ]
    big = [p for p in pages if len(p.records) >= MIN_RECORDS]
    assert big, "the emulator serves pages this large"
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
    from tests.test_prepare import page_for_orphan
    from sync.prepare import Preparer
    preparer = Preparer(1000298, "sqlite", processes=1)
    preparer.prepare(page_for_orphan())
    print(preparer._workers[0].process.pid, flush=True)
    time.sleep(60)
    """
)


def page_for_orphan() -> list[dict[str, Any]]:
    """Records enough to go to the worker, without an emulator: the script below has none."""
    return [
        {"id": i, "cmId": 1000298, "createDate": 1795152848000 + i, "lastModificationTime": 1795152848000 + i}
        for i in range(1, MIN_RECORDS + 1)
    ]


def test_a_killed_caller_leaves_no_worker_and_no_pipe_held_open(tmp_path):
    # No `if __name__ == "__main__"` guard in the script: the worker must not re-run its caller.
    script = tmp_path / "caller.py"
    script.write_text(_ORPHAN.format(root=str(ROOT)))
    caller = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert caller.stdout is not None
    worker_pid = int(caller.stdout.readline())
    os.kill(caller.pid, signal.SIGKILL)
    caller.wait()
    started = time.monotonic()
    assert caller.stdout.read() == b"", "the worker holds none of the caller's pipes: EOF at once"
    assert caller.stderr is not None and caller.stderr.read() == b""
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
    records = _records(emulator)
    with Preparer(1000298, "sqlite", processes=1) as preparer:
        assert preparer.prepare(records) == prepare(records, 1000298, "sqlite")
        assert preparer.processes == 1, "the worker answered"
    assert not marker.exists()


def test_a_worker_that_cannot_start_costs_speed_not_the_run(start_emulator, monkeypatch):
    import sync.prepare as module

    emulator, _ = start_emulator(orders=300, days=3)
    records = _records(emulator)

    def refuse(*args: object, **kwargs: object) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(module.subprocess, "Popen", refuse)
    with Preparer(1000298, "sqlite", processes=1) as preparer:
        assert preparer.prepare(records) == prepare(records, 1000298, "sqlite")
        assert preparer.processes == 0


def test_a_failure_reading_the_workers_answers_falls_back_instead_of_hanging(start_emulator, monkeypatch):
    import pickle
    import threading

    import sync.prepare as module

    emulator, _ = start_emulator(orders=300, days=3)
    records = _records(emulator)

    class Broken:
        dumps = staticmethod(pickle.dumps)
        HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL

        @staticmethod
        def loads(body: bytes) -> object:
            raise MemoryError("no memory for the answer")

    monkeypatch.setattr(module, "pickle", Broken)
    answer: list[object] = []
    with Preparer(1000298, "sqlite", processes=1) as preparer:
        waiting = threading.Thread(target=lambda: answer.append(preparer.prepare(records)), daemon=True)
        waiting.start()
        waiting.join(timeout=20)
        assert not waiting.is_alive(), "a page waited forever for an answer that could not be read"
        assert answer == [prepare(records, 1000298, "sqlite")] and preparer.processes == 0
