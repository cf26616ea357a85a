"""The Alembic migration and the SQLAlchemy models describe the same schema, on both databases."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import orjson
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, text

from sync.db import SCHEMA_HEAD, alembic_config, current_revision, head_revision, make_engine, upgrade, writer
from sync.fields import ORDER_FIELDS
from sync.models import Base, Order
from sync.schema_doc import annotate
from sync.transform import to_row


def test_migrations_and_models_agree(engine: Engine):
    annotate()  # the migrations' meanings as comments, as env.py does
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert current_revision(engine) == head_revision()


def test_the_schema_head_runs_check_against_is_the_newest_migration():
    """Runs compare the database with SCHEMA_HEAD without importing Alembic: a new migration must move it."""
    assert head_revision() == SCHEMA_HEAD, "set sync.db.SCHEMA_HEAD to the new migration's revision"


def test_orders_has_one_column_per_documented_field():
    assert set(Order.__table__.columns.keys()) == {f.column for f in ORDER_FIELDS} | {
        "raw",
        "fingerprint",
        "synced_at",
        "deleted_at",
    }
    assert [c.name for c in Order.__table__.primary_key.columns] == ["cm_id", "id"]


def test_upgrading_an_existing_database_fingerprints_its_rows_as_a_sync_would(database_url: str):
    """Rows stored before 0002 get the fingerprint the transform computes, so no sync rewrites them."""
    engine = make_engine(database_url)
    try:
        with writer(engine).begin() as conn:
            command.upgrade(alembic_config(conn), "0001")
        served = {
            "id": 5,
            "createDate": 1_790_000_000_000,
            "lastModificationTime": 1_790_000_000_000,
            "remarks": "नमस्ते",
            "productValue": 12.5,
            "invoiceSent": True,
        }
        with writer(engine).begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO orders (cm_id, id, create_date, last_modification_time, raw, synced_at) "
                    "VALUES (1, 5, :t, :t, :raw, :t)"
                ),
                {"t": datetime(2026, 9, 21, tzinfo=UTC), "raw": orjson.dumps(served).decode()},
            )
        upgrade(engine)
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT fingerprint FROM orders WHERE id = 5")).scalar_one()
        row = to_row(served, 1, datetime.now(UTC))
        assert stored == row["fingerprint"]
    finally:
        engine.dispose()


def test_commands_started_together_on_an_empty_database_all_find_the_schema(database_url: str):
    """Each first command creates the schema: started together on PostgreSQL, all but one failed with
    `UniqueViolation ... pg_type_typname_nsp_index` (exit 6) as they raced to create the same tables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAPTURE_")}
    env["KAPTURE_SYNC_DATABASE_URL"] = database_url
    commands = [[sys.executable, "-m", "sync", "db", "upgrade"]] * 4
    started = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for command in commands]
    failures = [err for process in started if (err := process.communicate(timeout=120)[1]) and process.returncode]
    assert failures == []
    engine = make_engine(database_url)
    assert current_revision(engine) == SCHEMA_HEAD
    engine.dispose()
