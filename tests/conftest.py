"""Fixtures that start real things: the emulator on 127.0.0.1, SQLite files, and PostgreSQL.

PostgreSQL is part of the suite, not optional: when the server is down it is started here
(`pg_ctlcluster`), and the test database is created when missing.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine

from sync.client import KaptureClient, make_client, make_http_client
from sync.db import ensure_schema, make_engine
from sync.emulator import Emulator, EmulatorConfig, RunningEmulator
from sync.settings import Settings

PG_ADMIN_DSN = os.environ.get("KAPTURE_TEST_PG_ADMIN", "host=127.0.0.1 port=5432 user=postgres dbname=test")
# One database per test process, so two suites running at once (two checkouts, CI beside a
# developer) and the test processes of one suite (pytest-xdist) never share rows or leases. A name
# given in KAPTURE_TEST_PG_DB gets the process's worker id too (gw0, gw1, ...).
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
PG_TEST_DB = (
    f"{os.environ['KAPTURE_TEST_PG_DB']}{'_' + _WORKER if _WORKER else ''}"
    if os.environ.get("KAPTURE_TEST_PG_DB")
    else f"kapture_sync_test_{os.getpid()}"
)
PG_HOST_PORT_USER = "postgres@127.0.0.1:5432"


def _pg_admin() -> psycopg.Connection:
    return psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=3)


def _start_postgres() -> None:
    for conf in sorted(glob.glob("/etc/postgresql/*/main")):
        version = Path(conf).parent.name
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            check=False,
            capture_output=True,
            timeout=60,
        )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database for the suite, started and created if need be, dropped at the end."""
    deadline = time.monotonic() + 30
    started = False
    while True:
        try:
            admin = _pg_admin()
            break
        except psycopg.OperationalError:
            if not started:
                _start_postgres()
                started = True
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    with admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (PG_TEST_DB,)).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{PG_TEST_DB}"')
    yield f"postgresql://{PG_HOST_PORT_USER}/{PG_TEST_DB}"
    with _pg_admin() as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{PG_TEST_DB}" WITH (FORCE)')


def reset_postgres(url: str) -> None:
    with psycopg.connect(url.replace("postgresql://", "postgresql://", 1), autocommit=True) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test that takes this runs once on a fresh SQLite file and once on a clean PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'kapture.db'}"
    url = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    ensure_schema(engine)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No setting leaks in from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith("KAPTURE_"):
            monkeypatch.delenv(name)


EmulatorFactory = Callable[..., tuple[Emulator, RunningEmulator]]


@pytest.fixture
def start_emulator() -> Iterator[EmulatorFactory]:
    """Start emulators on free loopback ports; all are stopped at teardown."""
    running: list[RunningEmulator] = []

    def start(port: int = 0, **config: Any) -> tuple[Emulator, RunningEmulator]:
        config.setdefault("orders", 600)
        config.setdefault("days", 10)
        config.setdefault("seed", 11)
        emulator = Emulator(EmulatorConfig(**config))
        serving = emulator.serve(host="127.0.0.1", port=port)
        running.append(serving)
        return emulator, serving

    yield start
    for serving in running:
        serving.stop()


@pytest.fixture
def emulator(start_emulator: EmulatorFactory) -> tuple[Emulator, RunningEmulator]:
    return start_emulator()


def settings_for(url: str, database_url: str = "sqlite:///:memory:", **overrides: Any) -> Settings:
    """Settings for a test: the emulator's account and quick retries."""
    values: dict[str, Any] = {
        "base_url": url,
        "username": "demo",
        "password": "demo",
        "cm_id": 1000298,
        "database_url": database_url,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "timeout": 5.0,
        "max_attempts": 5,
        "retry_max_seconds": 30.0,
        "requests_per_second": 0,  # unpaced: the budget's own tests set a rate
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def connect() -> Iterator[Callable[[Settings], KaptureClient]]:
    """Real keep-alive clients for given settings, closed at teardown."""
    opened = []

    def make(settings: Settings) -> KaptureClient:
        http = make_http_client(settings)
        opened.append(http)
        return make_client(settings, http)

    yield make
    for http in opened:
        http.close()


@pytest.fixture(autouse=True, scope="session")
def _quiet_logs() -> None:
    from sync.logs import configure_logging

    configure_logging(debug=False)


Answer = Callable[[dict], list[dict] | bytes]


@pytest.fixture
def serve() -> Iterator[Callable[..., str]]:
    """A minimal Pull Order server for misbehaviour the emulator is not built for.

    `answer(body)` gives a page's records, or the page as bytes; `raw()`, when given, gives the
    response bytes and extra headers instead, for broken bodies.
    """
    servers: list[ThreadingHTTPServer] = []

    def start(answer: Answer, raw: Callable[[], tuple[bytes, dict[str, str]]] | None = None) -> str:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                headers: dict[str, str] = {}
                if raw is not None:
                    payload, headers = raw()
                elif isinstance(records := answer(body), bytes):  # a page's JSON as bytes, spoiled on purpose
                    payload = records
                else:
                    payload = json.dumps({"success": "true", "order_details": records}).encode()
                self.send_response(200)
                for name, value in {**headers, "Content-Length": str(len(payload))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
