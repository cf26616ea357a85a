"""The Alembic migration and the SQLAlchemy models describe the same schema, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine

from sync.db import current_revision
from sync.fields import ORDER_FIELDS
from sync.models import Base, Order


def test_migrations_and_models_agree(engine: Engine):
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
    assert current_revision(engine) == "0001"


def test_orders_has_one_column_per_documented_field():
    assert set(Order.__table__.columns.keys()) == {f.column for f in ORDER_FIELDS} | {"raw", "synced_at"}
    assert [c.name for c in Order.__table__.primary_key.columns] == ["cm_id", "id"]
