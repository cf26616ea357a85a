"""The proof: a seeded random walk over Kapture (the emulator), the real CLI and the database.

Each step is chosen at random from one seed: orders created, edited (recent and old, and with an
unchanged `lastModificationTime`), rows deleted from `orders` by hand, the emulator's page order,
`limit` cap and fault mix changed, and runs of the real `backfill`, `sync` and `reconcile`
commands as subprocesses, with orders created and edited *while they page*, many of them
SIGKILLed at a random instant and run again. After every process the model checks the invariants
of docs/reliability.md and records each violation instead of stopping, so one walk reports all of
them. Shared by `tests/test_proof.py` (a short walk per database) and `bench/kill_walk.py`
(hundreds of kills); nothing here belongs to the `sync` package.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from zoneinfo import ZoneInfo

import httpx
from sqlalchemy import Engine, delete, select

from sync.db import make_engine
from sync.models import Order, SyncRun, SyncState, SyncWindow
from sync.windows import from_ms
from tests.helpers import Differences, storable, truth_differences

ROOT: Final = Path(__file__).resolve().parents[1]
CM_ID: Final = 1000298
ZONE: Final = ZoneInfo("Asia/Kolkata")
DAY_MS: Final = 86_400_000
# About 5% of pull requests fail in a transient way; `timeout` holds the answer longer than the
# client waits. Retry settings below keep runs finishing quickly all the same.
FAULT_MIX: Final = {"503": 0.015, "429": 0.015, "truncate": 0.015, "timeout": 0.005}
SLOW_SECONDS: Final = 1.3
CLIENT_TIMEOUT: Final = "1"
LIMIT_CAPS: Final = (None, None, 7, 11, 17)

FinishedWindows = dict[datetime, tuple[int, datetime | None]]  # window start -> (scans, last_scanned_at)


@dataclass
class WalkConfig:
    """What to walk over and for how long; the defaults keep one walk near a minute."""

    database_url: str
    seed: int = 1
    kills: int = 12  # stop walking once this many kill points were survived...
    max_seconds: float = 70.0  # ...or after this long (the closing backfill and reconcile come after)
    max_steps: int = 10_000
    page_size: int = 25
    lookback_days: int = 3
    days: int = 16  # history the emulator holds; backfills reach back to it step by step
    latency_ms: float = 3.0
    log: Callable[[str], None] | None = None
    # The checkout whose `python -m sync` is run: this one, or e.g. an exported older commit, to
    # show which invariants it breaks. Its own migrations create the schema.
    cli_root: Path = ROOT


@dataclass(frozen=True)
class Violation:
    step: int
    invariant: str
    detail: str

    def __str__(self) -> str:
        return f"step {self.step}: {self.invariant}: {self.detail}"


@dataclass
class Figures:
    """What the walk did and what it found; `lost` must stay 0."""

    operations: Counter[str] = field(default_factory=Counter)
    kills: int = 0  # SIGKILLs that landed while the process was still running
    kills_missed: int = 0  # planned kills whose process had already finished
    runs: int = 0  # CLI processes started
    orders_in_model: int = 0
    lost: set[int] = field(default_factory=set)  # ids found missing by any check
    stale: set[int] = field(default_factory=set)  # ids found holding an older or different version
    doubled: set[int] = field(default_factory=set)
    extra: set[int] = field(default_factory=set)
    watermark_regressions: int = 0
    wall_seconds: float = 0.0

    def lines(self) -> list[str]:
        ops = ", ".join(f"{name} {n}" for name, n in sorted(self.operations.items()))
        return [
            f"operations:            {sum(self.operations.values())} ({ops})",
            f"kills survived:        {self.kills} (planned kills that came too late: {self.kills_missed})",
            f"runs (CLI processes):  {self.runs}",
            f"orders in the model:   {self.orders_in_model}",
            f"orders lost:           {len(self.lost)}",
            f"orders stale:          {len(self.stale)}",
            f"orders doubled:        {len(self.doubled)}",
            f"orders never served:   {len(self.extra)}",
            f"watermark regressions: {self.watermark_regressions}",
            f"wall time:             {self.wall_seconds:.1f}s",
        ]


@dataclass
class Attempt:
    """One CLI process: how it ended, and what was done to Kapture while it ran."""

    returncode: int | None
    killed: bool
    stderr_tail: str
    run_ids: list[int]
    concurrent_ids: set[int]
    started_ms: int
    log_marker: int


class Walk:
    """The model, the driver and the invariant checks of one walk against one database."""

    def __init__(self, url: str, config: WalkConfig) -> None:
        self.url = url
        self.config = config
        self.rng = random.Random(config.seed)
        self.http = httpx.Client(base_url=url, timeout=30)
        self.engine: Engine = make_engine(config.database_url)
        self.figures = Figures()
        self.violations: list[Violation] = []
        self._reported: set[tuple[object, ...]] = set()
        self.step = 0
        self.started = time.monotonic()
        # The model: what each order is owed, beyond equality with Kapture's truth.
        self.history: dict[int, list[str]] = {}  # what the walk did to an order, for violation reports
        self.same_stamp: set[int] = set()  # changed without a new stamp: exempt until a reconcile
        self.hand_deleted: set[int] = set()  # deleted from `orders` by hand, not yet proven back
        self.covered_from: date | None = None  # every window from here on has been read completely
        self.killed_runs: set[int] = set()  # run rows of processes we SIGKILLed
        self.known_runs = 0  # greatest sync_runs.id seen
        self.max_watermark: datetime | None = None
        self.last_truth: list[dict[str, Any]] = []
        self.http_method = "POST"
        self.backfill_edge = self.today() - timedelta(days=6)  # the next backfill reaches further back
        upgrade = [sys.executable, "-m", "sync", "db", "upgrade"]
        subprocess.run(upgrade, env=self.env(), cwd=config.cli_root, check=True, capture_output=True)

    # -- plumbing --------------------------------------------------------------------------

    def say(self, message: str) -> None:
        if self.config.log:
            self.config.log(f"[{time.monotonic() - self.started:6.1f}s step {self.step}] {message}")

    def today(self) -> date:
        return datetime.now(ZONE).date()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def violate(self, invariant: str, detail: str, key: object = None) -> None:
        """Record a violation once per (invariant, key); the walk goes on."""
        marker = (invariant, key if key is not None else detail)
        if marker in self._reported:
            return
        self._reported.add(marker)
        violation = Violation(self.step, invariant, detail)
        self.violations.append(violation)
        self.say(f"VIOLATION {violation}")

    def note(self, ids: set[int] | list[int], event: str) -> None:
        for order_id in ids:
            self.history.setdefault(order_id, []).append(f"{event}@{self.step}")

    def explain(self, order_id: int, truth: dict[int, dict[str, Any]]) -> str:
        """One order's story for a violation report: its age, served and stored stamps, what we did to it."""
        record = truth.get(order_id) or {}
        with self.engine.connect() as conn:
            stored = conn.execute(
                select(Order.last_modification_time, Order.raw).where(Order.cm_id == CM_ID, Order.id == order_id)
            ).first()
        age = (self.now_ms() - int(record.get("createDate") or 0)) / DAY_MS
        served = record.get("lastModificationTime")
        kept = "none" if stored is None else f"{int(stored.last_modification_time.timestamp() * 1000)}"
        differs = "" if stored is None else ",".join(k for k in record if stored.raw.get(k) != record.get(k))
        events = " ".join(self.history.get(order_id, [])[-6:]) or "none"
        return (
            f"{order_id} (created {age:.1f} d ago, served stamp {served}, stored {kept}, "
            f"differs [{differs}], did: {events})"
        )

    def truth(self) -> list[dict[str, Any]]:
        return self.http.get("/_emulator/truth").json()

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        response = self.http.request(method, f"/_emulator/{path}", json=body)
        response.raise_for_status()
        return response.json()

    def log_seq(self) -> int:
        return int(self.control("GET", "requests", {"since": 2**62})["last_seq"])

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KAPTURE_")}
        env.update(
            {
                "KAPTURE_BASE_URL": self.url,
                "KAPTURE_USERNAME": "demo",
                "KAPTURE_PASSWORD": "demo",
                "KAPTURE_CM_ID": str(CM_ID),
                "KAPTURE_SYNC_DATABASE_URL": self.config.database_url,
                "KAPTURE_PAGE_SIZE": str(self.config.page_size),
                "KAPTURE_HTTP_METHOD": self.http_method,
                "KAPTURE_SYNC_LOOKBACK_DAYS": str(self.config.lookback_days),
                "KAPTURE_SYNC_START_DATE": (self.today() - timedelta(days=self.config.lookback_days + 1)).isoformat(),
                "KAPTURE_BACKOFF_BASE": "0.01",
                "KAPTURE_BACKOFF_MAX": "0.05",
                "KAPTURE_MAX_ATTEMPTS": "10",
                "KAPTURE_TIMEOUT": CLIENT_TIMEOUT,
                "KAPTURE_RETRY_MAX_SECONDS": "60",
                "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": str(self.config.cli_root),
            }
        )
        return env

    # -- the database as the checks see it -------------------------------------------------

    def watermark(self) -> datetime | None:
        with self.engine.connect() as conn:
            return conn.execute(select(SyncState.watermark).where(SyncState.cm_id == CM_ID)).scalar()

    def finished_windows(self) -> FinishedWindows:
        """Windows read completely after they closed, with no read in progress: (scans, last_scanned_at)."""
        query = select(SyncWindow.window_start, SyncWindow.scans, SyncWindow.last_scanned_at).where(
            SyncWindow.cm_id == CM_ID,
            SyncWindow.last_scanned_at.is_not(None),
            SyncWindow.scanned_end >= SyncWindow.window_end,
            SyncWindow.progress_started_at.is_(None),
        )
        with self.engine.connect() as conn:
            return {row.window_start: (row.scans, row.last_scanned_at) for row in conn.execute(query)}

    def latest_run(self) -> tuple[int, int] | None:
        """(id, pages) of the newest run row written after the ones we already know."""
        query = (
            select(SyncRun.id, SyncRun.pages).where(SyncRun.id > self.known_runs).order_by(SyncRun.id.desc()).limit(1)
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (row.id, row.pages)

    def new_run_ids(self) -> list[int]:
        with self.engine.connect() as conn:
            ids = list(conn.execute(select(SyncRun.id).where(SyncRun.id > self.known_runs)).scalars())
        if ids:
            self.known_runs = max(ids)
        return ids

    # -- one CLI process -------------------------------------------------------------------

    @contextmanager
    def meddling(self, enabled: bool) -> Iterator[set[int]]:
        """While the body runs, a thread creates and edits recent orders through the control surface."""
        touched: set[int] = set()
        if not enabled:
            yield touched
            return
        stop = threading.Event()
        rng = random.Random(self.rng.random())
        lock = threading.Lock()

        def meddle() -> None:
            with httpx.Client(base_url=self.url, timeout=10) as http:
                while not stop.wait(rng.uniform(0.02, 0.1)):
                    if rng.random() < 0.6:
                        answer = http.post("/_emulator/orders", json={"count": rng.randint(1, 3)}).json()["created"]
                    else:
                        answer = http.post("/_emulator/edits", json={"count": rng.randint(1, 2)}).json()["edited"]
                    with lock:
                        touched.update(int(o["id"]) for o in answer)

        thread = threading.Thread(target=meddle, name="meddler", daemon=True)
        thread.start()
        try:
            yield touched
        finally:
            stop.set()
            thread.join(10)

    def attempt(self, args: list[str], kill: bool, meddle: bool) -> Attempt:
        """Run the CLI once; with `kill`, SIGKILL its process group after a random number of
        committed pages (or a random delay), then reap it so its pid is really gone."""
        started_ms = self.now_ms()
        marker = self.log_seq()
        pages_before_kill = self.rng.randint(1, 14)
        delay = self.rng.uniform(0.2, 1.8) if self.rng.random() < 0.3 else None
        self.figures.runs += 1
        with tempfile.TemporaryFile("w+") as stderr, self.meddling(meddle) as touched:
            process = subprocess.Popen(
                [sys.executable, "-m", "sync", *args],
                env=self.env(),
                cwd=self.config.cli_root,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
                text=True,
            )
            killed = False
            if kill:
                killed = self._kill_when_due(process, pages_before_kill, delay)
            try:
                returncode = process.wait(180)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                returncode = None
                self.violate("runs finish", f"{' '.join(args)} ran for over 180 s and was killed")
            stderr.seek(0)
            tail = "".join(stderr.readlines()[-5:]).strip()
        if kill and not killed:
            self.figures.kills_missed += 1
        if killed:
            self.figures.kills += 1
        self.same_stamp -= touched  # the meddler's edits always move the stamp on
        self.note(touched, f"during-{args[0]}")
        run_ids = self.new_run_ids()
        if killed:
            self.killed_runs.update(run_ids)
        self.check_watermark(f"after {'killed ' if killed else ''}{args[0]}")
        return Attempt(None if killed else returncode, killed, tail, run_ids, set(touched), started_ms, marker)

    def _kill_when_due(self, process: subprocess.Popen[str], pages: int, delay: float | None) -> bool:
        deadline = time.monotonic() + (delay if delay is not None else 120)
        while process.poll() is None:
            if delay is None:
                try:
                    latest = self.latest_run()
                except Exception:  # the schema may be mid-upgrade
                    latest = None
                due = latest is not None and latest[1] >= pages
            else:
                due = False
            if due or time.monotonic() >= deadline:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    return False
                process.wait()  # reap: a zombie's pid still looks alive to a lease check
                return True
            time.sleep(0.005)
        return False

    # -- runs and their checks -------------------------------------------------------------

    def run(self, kind: str, args: list[str]) -> None:
        """Run a command, maybe killing it a few times first, then to completion; then check it."""
        kills = self.rng.choice((0, 1, 1, 2, 3))
        self.figures.operations[kind] += 1
        if kind == "backfill":
            self.backfill_attempts(args, kills)
            return
        for _ in range(kills):
            done = self.attempt(args, kill=True, meddle=self.rng.random() < 0.4)
            if not done.killed:
                self.completed(kind, args, done)
                return
        self.completed(kind, args, self.finish(args))

    def finish(self, args: list[str]) -> Attempt:
        """The run to completion; a refusal or failure is a violation, retried a few times."""
        for _ in range(3):
            done = self.attempt(args, kill=False, meddle=self.rng.random() < 0.4)
            if done.returncode == 0:
                return done
            invariant = "rerun after a kill is let through" if done.returncode == 8 else "runs succeed"
            self.violate(invariant, f"{' '.join(args)} exited {done.returncode}: {done.stderr_tail[-300:]}")
            time.sleep(0.5)
        return done

    def completed(self, kind: str, args: list[str], done: Attempt) -> None:
        if done.returncode != 0:
            return  # already reported; the model cannot say what the database should hold
        self.check_runs()
        self.check_method(done)
        truth = self.last_truth = self.truth()
        self.figures.orders_in_model = sum(1 for r in truth if storable(r))
        if kind == "sync":
            self.check_after_sync(truth, done)
        elif kind == "reconcile":
            self.check_after_reconcile(truth, done)
        else:
            self.check_after_backfill(truth, done)

    def backfill_attempts(self, args: list[str], kills: int) -> None:
        """Backfill, killed `kills` times, then to completion; every attempt is checked not to
        read again a window that was complete before it started."""
        done: Attempt | None = None
        for attempt in range(kills + 1):
            before = self.finished_windows()
            meddle = self.rng.random() < 0.4
            done = self.finish(args) if attempt == kills else self.attempt(args, kill=True, meddle=meddle)
            self.check_no_complete_window_reread(before, done)
            if not done.killed:
                break
        assert done is not None
        if done.returncode == 0:
            first = date.fromisoformat(args[args.index("--from") + 1])
            self.covered_from = first if self.covered_from is None else min(first, self.covered_from)
        self.completed("backfill", args, done)

    # -- invariants ------------------------------------------------------------------------

    def check_watermark(self, when: str) -> None:
        """The watermark never goes backwards, kills included."""
        current = self.watermark()
        if self.max_watermark is not None and (current is None or current < self.max_watermark):
            self.figures.watermark_regressions += 1
            self.violate("watermark never goes back", f"{when}: {current} < {self.max_watermark}", key=self.step)
        if current is not None and (self.max_watermark is None or current > self.max_watermark):
            self.max_watermark = current

    def check_runs(self) -> None:
        """Every run row ends `success`, or `interrupted`/`failed` only for a process we killed."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(SyncRun.id, SyncRun.kind, SyncRun.outcome, SyncRun.error)).all()
        for row in rows:
            # A kill can land after the run row was closed but before the process exited.
            allowed = ("interrupted", "failed", "success") if row.id in self.killed_runs else ("success",)
            if row.outcome not in allowed:
                detail = f"run {row.id} ({row.kind}) ended {row.outcome!r}: {(row.error or '')[:200]}"
                self.violate("run outcomes", detail, key=row.id)

    def check_method(self, done: Attempt) -> None:
        """Every pull request the run made used the configured HTTP method."""
        log = self.control("GET", "requests", {"since": done.log_marker})["requests"]
        wrong = Counter(e["method"] for e in log if e["method"] != self.http_method)
        if wrong:
            self.violate("configured HTTP method", f"expected {self.http_method}, saw {dict(wrong)}", key=self.step)

    def record(self, invariant: str, differences: Differences) -> None:
        """Count and report a comparison's differences (each order once per invariant)."""
        for name, ids in (
            ("missing", differences.missing),
            ("stale", differences.stale),
            ("doubled", differences.doubled),
            ("never served", differences.extra),
        ):
            target = {
                "missing": self.figures.lost,
                "stale": self.figures.stale,
                "doubled": self.figures.doubled,
                "never served": self.figures.extra,
            }[name]
            fresh = [i for i in ids if (invariant, name, i) not in self._reported]
            target.update(ids)
            if fresh:
                for i in fresh:
                    self._reported.add((invariant, name, i))
                by_id = {int(r["id"]): r for r in self.last_truth if storable(r)}
                examples = "; ".join(self.explain(i, by_id) for i in fresh[:3])
                self.violations.append(Violation(self.step, invariant, f"{len(fresh)} orders {name}: {examples}"))
                self.say(f"VIOLATION {self.violations[-1]}")

    def check_after_sync(self, truth: list[dict[str, Any]], done: Attempt) -> None:
        """Every order created in the look-back equals Kapture's version, except those changed
        under an unchanged stamp (exempt until a reconcile) and those touched during the run."""
        cut = done.started_ms - self.config.lookback_days * DAY_MS + 60_000
        exempt = self.same_stamp | done.concurrent_ids

        def required(record: dict[str, Any]) -> bool:
            return int(record["createDate"]) >= cut and int(record["id"]) not in exempt

        differences = truth_differences(self.engine, truth, required)
        self.record("after sync, the look-back equals Kapture", differences)
        recent = {int(r["id"]) for r in truth if storable(r) and required(r)}
        # Back now, or reported just now; one still missing stays marked, so the backfill check
        # does not report the same loss again.
        self.hand_deleted -= recent - set(differences.missing)

    def check_after_reconcile(self, truth: list[dict[str, Any]], done: Attempt) -> None:
        """The database equals Kapture's truth: nothing missing, extra, stale or doubled."""
        start = self._covered_ms()

        def required(record: dict[str, Any]) -> bool:
            return int(record["createDate"]) >= start and int(record["id"]) not in done.concurrent_ids

        differences = truth_differences(self.engine, truth, required)
        self.record("after reconcile, the database equals Kapture", differences)
        # Repaired, or reported just now: what reconcile left wrong is not reported again by the
        # sync and backfill checks (the same loss, seen from elsewhere).
        self.same_stamp &= done.concurrent_ids | set(differences.stale)
        self.hand_deleted &= done.concurrent_ids | set(differences.missing)

    def check_after_backfill(self, truth: list[dict[str, Any]], done: Attempt) -> None:
        """After a backfill: every order created in a covered window before the run is stored
        (once), unless it was deleted by hand; versions are the business of sync and reconcile."""
        start = self._covered_ms()
        exempt = self.hand_deleted | done.concurrent_ids

        def required(record: dict[str, Any]) -> bool:
            return start <= int(record["createDate"]) < done.started_ms and int(record["id"]) not in exempt

        differences = truth_differences(self.engine, truth, required)
        differences.stale = []  # a backfill leaves complete windows alone, edits in them included
        self.record("after backfill, every order is stored once", differences)

    def check_no_complete_window_reread(self, before: FinishedWindows, done: Attempt) -> None:
        """A (resumed) backfill leaves every window complete before it alone: same scans, same
        last_scanned_at, and not one request for it in the emulator's log."""
        after = self.finished_windows()
        for start, (scans, scanned_at) in before.items():
            now = after.get(start)
            if now is None or now != (scans, scanned_at):
                self.violate(
                    "a resumed backfill re-reads no complete window",
                    f"window {start.astimezone(ZONE).date()} was (scans {scans}, read {scanned_at}), now {now}",
                    key=(start, scans),
                )
        days = {start.astimezone(ZONE).date().isoformat() for start in before}
        log = self.control("GET", "requests", {"since": done.log_marker})["requests"]
        asked = Counter(e["createStartDate"] for e in log if e["createStartDate"] in days)
        if asked:
            self.violate(
                "a resumed backfill re-reads no complete window",
                f"requests for complete windows: {dict(sorted(asked.items()))}",
                key=("log", done.log_marker),
            )

    def _covered_ms(self) -> int:
        covered = self.covered_from or self.today()
        return int(datetime(covered.year, covered.month, covered.day, tzinfo=ZONE).timestamp() * 1000)

    # -- the other operations --------------------------------------------------------------

    def create(self) -> None:
        self.control("POST", "orders", {"count": self.rng.randint(1, 15)})

    def edit(self, old: bool, keep_stamp: bool = False) -> None:
        body = {"count": self.rng.randint(1, 8), "old": old, "keep_stamp": keep_stamp}
        edited = {int(o["id"]) for o in self.control("POST", "edits", body)["edited"]}
        self.note(edited, "edit-same-stamp" if keep_stamp else "edit")
        if keep_stamp:
            self.same_stamp |= edited
        else:
            self.same_stamp -= edited

    def delete_rows(self, recent: bool) -> None:
        """Delete a few rows from `orders` by hand, as an operator might by mistake."""
        cut = from_ms(self.now_ms() - (self.config.lookback_days - 1) * DAY_MS)
        side = Order.create_date >= cut if recent else Order.create_date < cut
        with self.engine.begin() as conn:
            ids = list(conn.execute(select(Order.id).where(Order.cm_id == CM_ID, side)).scalars())
            chosen = self.rng.sample(ids, min(len(ids), self.rng.randint(1, 5)))
            if chosen:
                conn.execute(delete(Order).where(Order.cm_id == CM_ID, Order.id.in_(chosen)))
        self.hand_deleted.update(chosen)
        self.note(chosen, "deleted")

    def set_faults(self) -> None:
        choice = self.rng.random()
        if choice < 0.35:
            self.control("PUT", "faults", {"newest_first": not self.control("GET", "faults")["newest_first"]})
            self.figures.operations["newest_first"] += 1
        elif choice < 0.7:
            self.control("PUT", "faults", {"limit_cap": self.rng.choice(LIMIT_CAPS)})
            self.figures.operations["limit_cap"] += 1
        else:
            on = not self.control("GET", "faults")["rates"]
            self.control("PUT", "faults", {"rates": FAULT_MIX if on else {}})
            self.figures.operations["fault_mix"] += 1

    def backfill_args(self) -> list[str]:
        """Reach further back while history remains, so most backfills have fresh windows to kill in."""
        oldest = self.today() - timedelta(days=self.config.days)
        if self.backfill_edge > oldest:
            first = self.backfill_edge
            self.backfill_edge = max(oldest, self.backfill_edge - timedelta(days=self.rng.randint(2, 4)))
        else:
            first = oldest - timedelta(days=self.rng.randint(0, 2))
        return ["backfill", "--from", first.isoformat()]

    # -- the walk --------------------------------------------------------------------------

    def walk(self) -> Figures:
        """Random steps until enough kills were survived (or time is up), then a full check."""
        self.control(
            "PUT",
            "faults",
            {"latency_ms": self.config.latency_ms, "slow_seconds": SLOW_SECONDS, "retry_after_seconds": 0},
        )
        self.run("backfill", self.backfill_args())
        while (
            self.figures.kills < self.config.kills
            and time.monotonic() - self.started < self.config.max_seconds
            and self.step < self.config.max_steps
        ):
            self.step += 1
            self.one_step()
        self.step += 1
        self.say("closing: full backfill, then reconcile")
        self.backfill_edge = self.today() - timedelta(days=self.config.days)
        self.run("backfill", ["backfill", "--from", self.backfill_edge.isoformat()])
        self.figures.operations["reconcile"] += 1
        self.completed("reconcile", ["reconcile"], self.finish(["reconcile"]))
        self.figures.wall_seconds = time.monotonic() - self.started
        return self.figures

    def one_step(self) -> None:
        ops: list[tuple[float, Callable[[], None]]] = [
            (3.0, lambda: self._op("create", self.create)),
            (2.0, lambda: self._op("edit_recent", lambda: self.edit(old=False))),
            (1.0, lambda: self._op("edit_old", lambda: self.edit(old=True))),
            (1.0, lambda: self._op("edit_same_stamp", lambda: self.edit(old=self.rng.random() < 0.4, keep_stamp=True))),
            (0.6, lambda: self._op("delete_recent_rows", lambda: self.delete_rows(recent=True))),
            (0.6, lambda: self._op("delete_old_rows", lambda: self.delete_rows(recent=False))),
            (1.5, self.set_faults),
            (0.3, self._flip_method),
            (3.5, lambda: self.run("sync", ["sync"])),
            (1.0, lambda: self.run("reconcile", ["reconcile"])),
            (1.2, lambda: self.run("backfill", self.backfill_args())),
        ]
        point = self.rng.random() * sum(w for w, _ in ops)
        for weight, op in ops:
            point -= weight
            if point < 0:
                op()
                return
        ops[-1][1]()

    def _op(self, name: str, action: Callable[[], None]) -> None:
        self.figures.operations[name] += 1
        self.say(name)
        action()

    def _flip_method(self) -> None:
        self.http_method = "GET" if self.http_method == "POST" else "POST"
        self.figures.operations["http_method"] += 1

    def close(self) -> None:
        self.http.close()
        self.engine.dispose()

    def summary(self) -> str:
        """The figures and every violation, for a failure message or the bench's output."""
        lines = [f"seed {self.config.seed}, database {self.engine.url.render_as_string(hide_password=True)}"]
        lines += self.figures.lines()
        by_invariant = Counter(v.invariant for v in self.violations)
        lines.append(f"violations: {len(self.violations)}")
        lines += [f"  {n} x {name}" for name, n in by_invariant.most_common()]
        lines += [f"  - {v}" for v in self.violations[:40]]
        return "\n".join(lines)
