"""Statements on the database driver's own cursor, inside SQLAlchemy's connection and transaction.

The bulk paths (COPY, `executemany`, id lists as one parameter) go to the driver directly rather
than through SQLAlchemy's per-row parameter processing; their errors are still raised as
SQLAlchemy's `DBAPIError`, as every other statement's are.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError


def driver(conn: Connection) -> Any:
    """The DBAPI connection under `conn`, inside the same transaction."""
    raw = conn.connection.driver_connection
    if raw is None:
        raise RuntimeError("the connection is closed")
    return raw


def driver_errors(conn: Connection) -> type[Exception]:
    """The driver's base exception (psycopg's or sqlite3's), taken from the dialect so that a SQLite
    process never imports psycopg (about 10 MB of memory)."""
    return cast(type[Exception], conn.dialect.dbapi.Error)  # type: ignore[union-attr]


@contextmanager
def driver_cursor(conn: Connection, statement: str) -> Iterator[Any]:
    """A cursor of the driver's own, closed after use; its errors raised as SQLAlchemy's `DBAPIError`
    naming `statement` (the bulk write's first), as every other statement's are."""
    error = driver_errors(conn)
    cursor = driver(conn).cursor()
    try:
        yield cursor
    except error as exc:
        raise DBAPIError.instance(statement, None, exc, error, dialect=conn.dialect) from exc
    finally:
        cursor.close()


def run(conn: Connection, statement: str, params: Any, many: bool = False) -> list[Any]:
    """One statement on the driver's own cursor; its rows, if it returns any.

    On PostgreSQL the statement is never prepared on the server. psycopg prepares a statement after
    five executions, and the server may then keep one generic plan for it: for the id-list reads a
    plan made while `orders` was empty (a first run, or a run after `TRUNCATE`) scans the whole
    table for every page, which grows with the table until autovacuum happens to analyse it
    (measured: 1.2 ms instead of 1 µs an order after a `TRUNCATE` on a long-lived connection).
    Planning each page's statement costs about a tenth of a millisecond.
    """
    with driver_cursor(conn, statement) as cursor:
        if many:
            cursor.executemany(statement, params)
            return []
        if conn.dialect.name == "postgresql":
            cursor.execute(statement, params, prepare=False)
        else:
            cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []
