"""Alembic: head builds the schema on an empty DB, and the ORM has nothing left to migrate."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service.store.migrate import upgrade_to_head
from service.store.tables import Base
from tests.conftest import BOTH_DATABASES


@BOTH_DATABASES
def test_upgrade_head_then_autogenerate_finds_nothing(fresh_database_url: str) -> None:
    upgrade_to_head(fresh_database_url)
    upgrade_to_head(fresh_database_url)  # idempotent: a restart migrates again harmlessly
    engine = create_engine(fresh_database_url)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            assert set(Base.metadata.tables) <= tables
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()
