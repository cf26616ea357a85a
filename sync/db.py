"""Engines and schema: URL normalisation, SQLite pragmas, and Alembic upgrades on first use."""

from __future__ import annotations

import os
import warnings
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from sync import jsontext
from sync.errors import DatabaseUnavailable, SettingsError

if TYPE_CHECKING:
    from alembic.config import Config

WRITE = {"sqlite_begin": "BEGIN IMMEDIATE"}
SQLITE_BUSY_SECONDS = 30.0  # `?timeout=N` in a SQLite URL changes it
# The page size of a SQLite file kapture-sync creates (an existing file keeps its own). An order's
# row is ~1.7 KB in `orders` and again in `order_versions`; with SQLite's default 4 KiB pages a
# backfill spent much of the writer's time on page writes, WAL frames and checkpoints. Measured
# (bench/cpu_split.py): 100,000 orders 20,000-21,000 -> 22,900-24,200 orders/s, 1,000,000 orders
# 14,100 -> 17,900 orders/s and a 15% smaller file (3.04 -> 2.57 GB); 8 KiB lay between.
SQLITE_PAGE_SIZE = 16384


def normalize_url(raw: str) -> URL:
    """Accept `postgresql://` and `postgres://` as psycopg 3, the only PostgreSQL driver we ship."""
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):  # `host:badport`; the driver's text is never shown: it holds the password
        raise SettingsError("bad setting: KAPTURE_SYNC_DATABASE_URL is not a database URL") from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise SettingsError(
            f"bad setting: KAPTURE_SYNC_DATABASE_URL uses {url.get_backend_name()!r}; "
            "supported are sqlite and postgresql"
        )
    if url.drivername not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise SettingsError(
            f"bad setting: KAPTURE_SYNC_DATABASE_URL names the driver {url.drivername!r}; kapture-sync ships "
            "pysqlite and psycopg 3: write sqlite:// or postgresql://"
        )
    if url.host and "@" in url.host:  # the password's own `@` ended it early: the rest would be shown as the host
        raise SettingsError(
            "bad setting: KAPTURE_SYNC_DATABASE_URL has an '@' in its host: write an '@' in the password as %40"
        )
    if url.get_backend_name() == "sqlite" and url.database:
        # sqlite:///~/kapture.db means the home folder, as in a shell, not a folder named "~" here;
        # so does an SQLite URI's path (sqlite:///file:~/kapture.db?uri=true)
        path = url.database.removeprefix("file:")
        if path.startswith("~"):
            url = url.set(database=url.database.removesuffix(path) + os.path.expanduser(path))
    return url


def redact(url: URL | str) -> str:
    """The URL as it may be shown: never with its password."""
    parsed = url if isinstance(url, URL) else make_url(url)
    return parsed.render_as_string(hide_password=True)


def sqlite_file(url: URL) -> Path | None:
    """The file a SQLite URL opens, read as SQLAlchemy's driver reads it; None for an in-memory database.

    With `uri=true` the database is an SQLite URI (`sqlite:///file:data/k.db?mode=ro&uri=true`):
    its path is what follows `file:`, not a folder named `file:`. Without it, SQLite's URI options
    such as `mode=memory` are ignored and the file is opened.
    """
    with warnings.catch_warnings():  # an ignored `mode=`: the engine warns about it when it connects
        warnings.simplefilter("ignore")
        [filename], options = url.get_dialect()().create_connect_args(url)
    if not options.get("uri"):
        return None if filename == ":memory:" else Path(filename)
    if not filename.startswith("file:"):  # a URI connection still opens a plain name as a file
        return None if filename in ("", ":memory:") else Path(filename).absolute()
    parts = urlsplit(filename)
    path = unquote(parts.path)
    if path in ("", ":memory:") or "memory" in parse_qs(parts.query).get("mode", []):
        return None
    return Path(path).absolute()


def make_engine(raw_url: str) -> Engine:
    """One engine per target; SQLite gets WAL and explicit transactions so a page commits atomically."""
    url = normalize_url(raw_url)
    if url.get_backend_name() == "sqlite":
        try:  # how long a write waits for another writer (an analyst's open transaction), seconds
            busy = float(str(url.query.get("timeout", SQLITE_BUSY_SECONDS)))
        except ValueError:
            message = "bad setting: KAPTURE_SYNC_DATABASE_URL: timeout= must be a number of seconds"
            raise SettingsError(message) from None
        try:
            database = sqlite_file(url)
        except (ValueError, TypeError) as exc:  # a driver option that does not read (check_same_thread=maybe)
            raise SettingsError(f"bad setting: KAPTURE_SYNC_DATABASE_URL: {exc}") from None
        if database is not None:
            folder = database.parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise SettingsError(
                    f"bad setting: KAPTURE_SYNC_DATABASE_URL: cannot create folder {folder}: {exc.strerror}"
                ) from None
        engine = create_engine(url, json_serializer=jsontext.dumps, connect_args={"timeout": busy})
        _sqlite_transactions(engine)
    else:
        # UTF-8 whatever the server, database, role or PGCLIENTENCODING say: the worker's COPY lines
        # are UTF-8 bytes, sent as they are, and every character Kapture serves must be storable.
        engine = create_engine(
            url, json_serializer=jsontext.dumps, pool_pre_ping=True, connect_args={"client_encoding": "utf8"}
        )
    return engine


def _sqlite_transactions(engine: Engine) -> None:
    """Let SQLAlchemy, not pysqlite, decide when a transaction begins (SQLAlchemy's documented recipe).

    The busy timeout is pysqlite's own `timeout` (passed when connecting), which sets SQLite's.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA page_size={SQLITE_PAGE_SIZE}")  # only a file not yet written takes it
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql(conn.get_execution_options().get("sqlite_begin", "BEGIN"))


def writer(engine: Engine) -> Engine:
    """The engine to write with: on SQLite it takes the write lock up front, avoiding upgrade deadlocks."""
    return engine.execution_options(**WRITE)


# The newest migration shipped (migrations/versions). A run checks the database against it with
# one query and imports Alembic (7 MB of memory, for the life of a daemon) only to upgrade.
# tests/test_migrations.py checks it against Alembic's own answer, so a new migration cannot forget it.
SCHEMA_HEAD = "0005"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's config pointing at the migrations shipped in the package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(files("sync.migrations")))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@cache
def head_revision() -> str | None:
    """The newest revision shipped, as Alembic reads the migration scripts."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (Alembic's `alembic_version` table), None before any."""
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


# pg_advisory_xact_lock key serialising schema upgrades on PostgreSQL ("kapture" + 1).
_MIGRATION_LOCK = 0x6B61_7074_7572_6501


def upgrade(engine: Engine) -> None:
    """Apply every migration up to head, inside one transaction.

    Commands started together on an empty database (a `backfill` and a `status`, two daemons) queue
    for it instead of racing to create the same tables: on PostgreSQL behind a transaction-level
    advisory lock, after which Alembic reads the revision the first one committed; on SQLite the
    writer's `BEGIN IMMEDIATE` does the same.
    """
    from alembic import command

    with writer(engine).begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        command.upgrade(alembic_config(conn), "head")


def ensure_schema(engine: Engine) -> None:
    """Create or upgrade the schema on first use, and fail with one line when the database is down."""
    try:
        if current_revision(engine) != SCHEMA_HEAD:
            upgrade(engine)
    except (OperationalError, DBAPIError) as exc:
        raise DatabaseUnavailable(database_problem(engine, exc)) from None


# SQLite's words for a database that is there but cannot take a write: another writer's lock, a full
# disk, a read-only file.
_WRITE_FAILURES = ("database is locked", "disk is full", "disk i/o error", "readonly database", "read-only")


def database_problem(engine: Engine, exc: BaseException) -> str:
    """One line naming the database and what went wrong: unreachable, or a statement it refused."""
    original = getattr(exc, "orig", None) or exc
    first_line = str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
    if isinstance(exc, OperationalError | InterfaceError):
        if any(word in first_line.lower() for word in _WRITE_FAILURES):  # reachable, but not writable now
            return f"database could not write at {redact(engine.url)}: {first_line}"
        return f"database unreachable at {redact(engine.url)}: {first_line}"
    return f"database error at {redact(engine.url)}: {type(original).__name__}: {first_line}"
