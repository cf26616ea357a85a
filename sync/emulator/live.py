"""Live behaviour: new orders arrive and existing ones are edited while the emulator runs.

Gives an incremental sync something to find. Rates are per minute and applied on every tick
with fractional carry-over, so low rates still produce orders at the right average pace.
"""

from __future__ import annotations

import random
import threading
import time

from sync.emulator.config import EmulatorConfig
from sync.emulator.store import OrderStore


class LiveTicker:
    """A stoppable background thread that creates and edits orders at the configured rates."""

    def __init__(self, store: OrderStore, config: EmulatorConfig, tick_seconds: float = 0.1) -> None:
        self._store = store
        self._new_per_second = config.new_orders_per_minute / 60
        self._edits_per_second = config.edits_per_minute / 60
        self._old_fraction = config.old_edit_fraction
        self._tick = tick_seconds
        self._rng = random.Random(config.seed * 65_537 + 11)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.created = 0
        self.edited = 0

    @property
    def running(self) -> bool:
        """Whether the ticker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start ticking in a daemon thread (idempotent)."""
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="kapture-emulator-live", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop ticking and wait for the thread to end."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        due_new = due_edits = 0.0
        last = time.monotonic()
        while not self._stop.wait(self._tick):
            now = time.monotonic()
            elapsed, last = now - last, now
            due_new += self._new_per_second * elapsed
            due_edits += self._edits_per_second * elapsed
            if due_new >= 1:
                count = int(due_new)
                due_new -= count
                self.created += len(self._store.create(count))
            if due_edits >= 1:
                count = int(due_edits)
                due_edits -= count
                old = sum(self._rng.random() < self._old_fraction for _ in range(count))
                if count > old:
                    self.edited += len(self._store.edit(n=count - old))
                if old:
                    self.edited += len(self._store.edit(n=old, old=True))
