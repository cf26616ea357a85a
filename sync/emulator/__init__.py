"""A local server that behaves like Kapture's Pull Order API, for demos, tests and benchmarks.

    from sync.emulator import Emulator, EmulatorConfig
    emu = Emulator(EmulatorConfig(orders=500, days=10, seed=7))
    with emu.serve(host="127.0.0.1", port=0) as running:
        running.url, emu.store.create(5), emu.faults.push("503", 2), emu.stats()

See docs/emulator.md.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any, ClassVar

from sync.emulator.config import EmulatorConfig
from sync.emulator.control import ControlSurface
from sync.emulator.faults import FAULT_KINDS, Faults
from sync.emulator.generate import MALFORMED_KINDS
from sync.emulator.live import LiveTicker
from sync.emulator.server import ENDPOINT_PATH, EmulatorServer
from sync.emulator.stats import ServerStats
from sync.emulator.store import OrderStore

__all__ = [
    "FAULT_KINDS",
    "MALFORMED_KINDS",
    "Emulator",
    "EmulatorConfig",
    "Faults",
    "OrderStore",
    "RunningEmulator",
]


class RunningEmulator:
    """A serving emulator: its URL, and stop() (also called when leaving a `with` block)."""

    def __init__(self, emulator: Emulator, server: EmulatorServer, ticker: LiveTicker | None) -> None:
        self.emulator = emulator
        self._server = server
        self._ticker = ticker
        host, port = server.server_address[:2]
        self.host: str = str(host)
        self.port: int = int(port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{shown}:{self.port}"
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="kapture-emulator", daemon=True
        )
        self._stopped = False
        self._thread.start()
        if ticker is not None:
            ticker.start()

    @property
    def ticker(self) -> LiveTicker | None:
        """The live ticker, when the config asks for new orders or edits over time."""
        return self._ticker

    def stop(self) -> None:
        """Stop serving, close client connections and free the port (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        if self._ticker is not None:
            self._ticker.stop()
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(5)
        self.emulator._running = None

    def __enter__(self) -> RunningEmulator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Emulator:
    """The emulated account (orders, faults, counters) and the server that exposes it."""

    endpoint_path: ClassVar[str] = ENDPOINT_PATH

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        self.store = OrderStore(self.config)
        self.faults = Faults(self.config.seed)
        self._stats = ServerStats()
        self._running: RunningEmulator | None = None

    def serve(self, host: str = "127.0.0.1", port: int = 0, verbose: bool = False) -> RunningEmulator:
        """Start serving in background threads (plus the live ticker if its rates are > 0)."""
        if self._running is not None:
            raise RuntimeError(f"emulator already serving at {self._running.url}")
        control = ControlSurface(self.store, self.faults, self.stats, self.reset_stats)
        server = EmulatorServer((host, port), self.config, self.store, self.faults, self._stats, control, verbose)
        live = self.config.new_orders_per_minute > 0 or self.config.edits_per_minute > 0
        self._running = RunningEmulator(self, server, LiveTicker(self.store, self.config) if live else None)
        return self._running

    @property
    def url(self) -> str:
        """Base URL while serving (the endpoint path is appended by clients)."""
        if self._running is None:
            raise RuntimeError("emulator is not serving; call serve() first")
        return self._running.url

    def stats(self) -> dict[str, Any]:
        """Counters: requests, pull_requests, control_requests, orders_served, failed_bodies,
        faults (injected, by kind) and orders (currently stored)."""
        return {**self._stats.snapshot(), "faults": self.faults.injected(), "orders": len(self.store)}

    def pull_log(self, since: int = 0) -> dict[str, Any]:
        """The pull requests served after sequence number `since` (method, dates, offset, limit, fault),
        as `GET /_emulator/requests` gives them: what a client really asked for."""
        return self._stats.pull_log(since)

    def reset_stats(self) -> None:
        """Zero the counters and the injected-fault counts."""
        self._stats.reset()
        self.faults.reset_counts()
