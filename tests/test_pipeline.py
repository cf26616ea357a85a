"""The fast pipeline's behaviours (issue 9): windows fetched at once, one polite request budget,
several pages per transaction, and a larger default `limit` that falls back when refused.

Speed itself is measured in bench/performance.py, never here; these tests check what each
optimisation does, and each fails when it is switched off.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from sync.budget import RequestBudget
from sync.fetch import batches
from sync.paging import FALLBACK_PAGE_SIZE, PageFetched
from sync.runs import backfill, rules_of
from sync.schedule import Task
from sync.settings import Settings
from tests.conftest import settings_for
from tests.helpers import assert_equals_truth

FIRST = date.today() - timedelta(days=12)


def _pulls(emu) -> list[dict]:
    return emu.pull_log()["requests"]


def test_windows_are_fetched_concurrently_by_default(start_emulator, engine, database_url, connect):
    emu, serving = start_emulator(orders=600, days=10, seed=3)
    emu.faults.latency_ms = 40  # long enough for requests of several windows to overlap
    settings = settings_for(serving.url, database_url)
    assert Settings.model_fields["concurrency"].default >= 4
    backfill(engine, connect(settings), settings, FIRST)
    assert emu.stats()["max_in_flight"] >= 2
    assert_equals_truth(engine, emu.store.truth())


def test_one_request_budget_paces_every_thread(start_emulator, tmp_path, connect):
    emu, serving = start_emulator(orders=300, days=10, seed=5)
    rate = 10.0
    settings = settings_for(serving.url, f"sqlite:///{tmp_path}/b.db", requests_per_second=rate, concurrency=4)
    from sync.db import make_engine

    engine = make_engine(settings.database_url)
    backfill(engine, connect(settings), settings, FIRST)
    times = sorted(entry["at"] for entry in _pulls(emu))
    assert len(times) > 2 * rate
    # Starts are spaced 1/rate apart; the server sees them with its own scheduling jitter, which a
    # loaded machine can stretch, so: the whole run takes at least its paced length (unpaced, these
    # requests would all land within half a second), and no second holds more than a couple extra.
    assert times[-1] - times[0] >= 0.9 * (len(times) - 1) / rate
    busiest = max(sum(1 for t in times[i:] if t < start + 1.0) for i, start in enumerate(times))
    assert busiest <= rate + 2
    assert_equals_truth(engine, emu.store.truth())


def test_a_429_holds_back_every_thread_and_halves_the_rate():
    now = [100.0]
    budget = RequestBudget(8.0, clock=lambda: now[0])
    assert budget.reserve() == 0.0
    budget.throttled(2.0)
    assert budget.rate == 4.0
    assert budget.reserve() >= 2.0  # the next request of any thread waits for Retry-After
    assert budget.reserve() >= 2.0 + 1 / 4.0
    for _ in range(40):
        budget.answered()
    assert budget.rate == 8.0


def test_the_429s_of_requests_in_flight_together_halve_the_rate_once():
    """Six threads' requests throttled at once are one signal, not six: 8/s becomes 4, not 0.125."""
    now = [100.0]
    budget = RequestBudget(8.0, clock=lambda: now[0])
    in_flight = [budget.acquire(sleep=lambda s: None) for _ in range(6)]
    now[0] += 1.0  # all six come back 429
    for started in in_flight:
        budget.throttled(1.0, started)
    assert budget.rate == 4.0
    now[0] += 2.0
    later = budget.acquire(sleep=lambda s: None)  # sent after the slow-down, and throttled again
    now[0] += 0.5
    budget.throttled(1.0, later)
    assert budget.rate == 2.0


def test_a_429_from_the_server_pauses_the_other_windows_too(start_emulator, engine, database_url, connect):
    emu, serving = start_emulator(orders=600, days=10, seed=9)
    emu.faults.latency_ms = 40  # without the pause, the other threads' ~80 requests would fill the next second
    emu.faults.retry_after_seconds = 1
    settings = settings_for(serving.url, database_url, requests_per_second=1000.0, concurrency=4, page_size=10)
    emu.faults.push("429")
    backfill(engine, connect(settings), settings, FIRST)
    log = _pulls(emu)
    [hit] = [entry["at"] for entry in log if entry["fault"] == "429"]
    during = [entry for entry in log if hit + 0.15 < entry["at"] < hit + 0.9]
    # Requests the other threads had already sent may land in the pause (on a loaded machine a thread's
    # first request, opening its connection, can take longer than 0.15 s): at most one per other thread.
    # Without the pause the other threads' ~80 requests would fill it.
    assert len(during) <= settings.concurrency - 1, during
    assert_equals_truth(engine, emu.store.truth())


def test_a_refused_large_limit_falls_back_is_remembered_and_logged(
    start_emulator, engine, database_url, connect, caplog
):
    emu, serving = start_emulator(orders=600, days=10, seed=13)
    emu.faults.limit_max = FALLBACK_PAGE_SIZE
    settings = settings_for(serving.url, database_url)
    assert settings.page_size > FALLBACK_PAGE_SIZE  # the default asks for more than the fallback
    result = backfill(engine, connect(settings), settings, FIRST)
    assert result.outcome == "success"
    assert_equals_truth(engine, emu.store.truth())
    refused = [e for e in _pulls(emu) if int(e["limit"]) > FALLBACK_PAGE_SIZE]
    assert 1 <= len(refused) <= settings.concurrency  # only the requests already sent when the first was refused
    assert "kapture.limit_refused" in caplog.text
    since = emu.pull_log()["last_seq"]
    backfill(engine, connect(settings), settings, FIRST, refetch=True)
    assert all(int(e["limit"]) == FALLBACK_PAGE_SIZE for e in emu.pull_log(since)["requests"])


def test_the_writer_takes_what_has_arrived_as_one_batch(start_emulator, connect):
    emu, serving = start_emulator(orders=600, days=10, seed=17)
    settings = settings_for(serving.url, page_size=10)
    client = connect(settings)
    from sync.runs import schedule_of
    from sync.schedule import plan_backfill
    from sync.settings import today_in

    now = datetime.now(tz=UTC)
    tasks: list[Task] = plan_backfill(FIRST, today_in(settings.zone, now), {}, schedule_of(settings), now, False)
    sizes = []
    fetching = batches(client, tasks, rules_of(settings), workers=4, max_rows=10_000, max_seconds=5.0, depth=16)
    for n, batch in enumerate(fetching):
        sizes.append(sum(isinstance(e, PageFetched) for e in batch))
        if n == 0:
            time.sleep(0.5)  # a slow commit: the fetchers fill the queue meanwhile
    assert max(sizes) >= 4  # several pages went into one transaction
