"""Session-wide real services: one MLflow server, SQLite files and PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from service.migrate import upgrade_to_head
from tests.helpers import MlflowServer

# The suite is offline: never let giskard or anything else phone home.
os.environ.setdefault("GSK_DISABLE_ANALYTICS", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")

PG_ADMIN_DSN = os.environ.get(
    "GATEKEEPER_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"
)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()  # raises (the test fails, never skips) when it cannot start
    yield server
    server.stop()


def _create_pg_database() -> tuple[str, str]:
    name = f"gk_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {PG_ADMIN_DSN} is not reachable ({exc}); .ci/run starts it")
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return name, f"{base}/{name}"


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of the kind named by the test's `db_kind` parameter (no schema)."""
    kind = getattr(request, "param", "sqlite")
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'gatekeeper.db'}"
        return
    name, url = _create_pg_database()
    yield url
    from service.db import engine_for

    engine_for(url).dispose()
    _drop_pg_database(name)


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A migrated database: SQLite or PostgreSQL, as parametrized."""
    upgrade_to_head(fresh_database_url)
    return fresh_database_url


BOTH_DATABASES = pytest.mark.parametrize(
    "fresh_database_url", ["sqlite", "postgresql"], indirect=True
)
