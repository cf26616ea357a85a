"""Alembic environment: the app's own metadata, and the app's own database setting."""

from __future__ import annotations

from alembic import context

from sync.db import make_engine, writer
from sync.models import Base
from sync.schema_doc import annotate
from sync.settings import DatabaseSettings, load_settings

config = context.config
target_metadata = Base.metadata
annotate(target_metadata)  # the migrations' meanings as comments, so autogenerate agrees with PostgreSQL


def _configure(connection: object) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=True,
        compare_type=True,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = make_engine(load_settings(kind=DatabaseSettings).database_url)
    with writer(engine).connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("kapture-sync migrations run online only: use `kapture-sync db upgrade`")
run_migrations_online()
