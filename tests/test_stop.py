"""The stop the daemon sets on SIGTERM: honoured by paging, prefetch, retry sleeps and the page commit."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from sync.daemon import backoff
from sync.models import SyncState
from sync.prefetch import prefetched
from sync.runs import backfill
from sync.stop import Stop, Stopped
from tests.conftest import settings_for
from tests.helpers import assert_equals_truth, runs

FIRST = date.today() - timedelta(days=12)


def test_a_set_stop_ends_the_run_at_a_page_boundary_as_interrupted_and_the_next_run_completes_it(
    start_emulator, engine, database_url, connect
):
    emu, serving = start_emulator(orders=600, days=10, seed=31)
    settings = settings_for(serving.url, database_url, page_size=20)
    stop = Stop()
    windows = []

    def on_window(task, seen):
        windows.append(task)
        if len(windows) == 3:
            stop.set("test")

    with pytest.raises(Stopped):
        backfill(engine, connect(settings), settings, FIRST, stop=stop, on_window=on_window)
    [run] = runs(engine)
    # the stop is seen before the next transaction: windows completed in the batch that held the third count too
    assert run.outcome == "interrupted" and run.finished_at is not None and run.windows >= 3
    with engine.connect() as conn:
        assert conn.execute(select(SyncState.lease_owner)).scalar() is None
    result = backfill(engine, connect(settings), settings, FIRST)
    assert result.outcome == "success"
    assert_equals_truth(engine, emu.store.truth())


def test_prefetch_raises_stopped_without_waiting_for_a_request_in_flight():
    stop = Stop()
    release = threading.Event()

    def slow_source():
        yield 1
        release.wait(30)  # a request that would hang for 30 s
        yield 2

    threading.Timer(0.2, stop.set).start()
    began = time.monotonic()
    seen = []
    with pytest.raises(Stopped):
        for item in prefetched(slow_source(), stop=stop):
            seen.append(item)
    release.set()
    assert seen == [1] and time.monotonic() - began < 2.0


def test_retry_back_off_ends_at_once_when_the_stop_is_set(start_emulator, connect):
    emu, serving = start_emulator(orders=10, days=2)
    emu.faults.retry_after_seconds = 10
    emu.faults.push("429", 5)
    client = connect(settings_for(serving.url))
    stop = Stop()
    client.sleep = stop.sleep
    threading.Timer(0.3, stop.set).start()
    began = time.monotonic()
    with pytest.raises(Stopped):
        client.pull({"createStartDate": "2024-01-01", "createEndDate": "2024-01-01"}, 0, 10)
    assert time.monotonic() - began < 2.0


def test_a_failing_account_backs_off_doubling_from_its_interval_up_to_the_cap():
    minute, hour = timedelta(minutes=1), timedelta(hours=1)
    gaps = [backoff(minute, n, hour) for n in range(0, 9)]
    assert gaps == [minute, minute, 2 * minute, 4 * minute, 8 * minute, 16 * minute, 32 * minute, hour, hour]
    assert backoff(2 * hour, 3, hour) == 2 * hour  # never shorter than the interval itself
