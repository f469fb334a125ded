"""Session-wide real services: one MLflow server, SQLite files and PostgreSQL databases."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from service.store.migrate import upgrade_to_head
from tests.helpers import MlflowServer
from tests.postgres import (
    PostgresServer,
    PostgresUnavailable,
    WheelPostgres,
    find_or_start_postgres,
)

# The suite is offline: never let giskard or anything else phone home.
os.environ.setdefault("GSK_DISABLE_ANALYTICS", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")


@dataclass
class _SessionPostgres:
    """One PostgreSQL for the session, found or started on first use (so module-scoped fixtures
    and `_create_pg_database` reach it without a fixture) and stopped when the session ends."""

    server: PostgresServer | None = None
    error: str | None = None
    used: str | None = None


_session_postgres = _SessionPostgres()


def postgres_server() -> PostgresServer:
    """The session's PostgreSQL; the calling test fails, never skips, when there is none."""
    state = _session_postgres
    if state.server is None and state.error is None:
        try:
            state.server = find_or_start_postgres()
            state.used = state.server.description
        except PostgresUnavailable as exc:
            state.error = str(exc)
    if state.server is None:
        pytest.fail(f"PostgreSQL tests need a server: {state.error}")
    return state.server


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    server, _session_postgres.server = _session_postgres.server, None
    if server is not None:
        server.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _session_postgres.used:
        terminalreporter.write_line(f"PostgreSQL tests ran against {_session_postgres.used}")


@pytest.fixture
def private_postgres() -> Iterator[WheelPostgres]:
    """A PostgreSQL of the test's own (from the wheel), for a test that stops and starts it:
    the shared server never goes down under tests running beside it (pytest-xdist)."""
    server = WheelPostgres()
    yield server
    server.close()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow"))
    server.start()  # raises (the test fails, never skips) when it cannot start
    yield server
    server.stop()


def _create_pg_database(server: PostgresServer | None = None) -> tuple[str, str]:
    server = server or postgres_server()
    name = f"gk_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(server.admin_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"{server.description} is not reachable ({exc})")
    base = server.admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://")
    return name, f"{base}/{name}"


def _drop_pg_database(name: str) -> None:
    with psycopg.connect(postgres_server().admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def empty_database(kind: str, root: Path) -> Iterator[str]:
    """An empty database (no schema): `sqlite`, a file under `root`; `postgresql`, a new
    database on the session's server, dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{root / 'gatekeeper.db'}"
        return
    name, url = _create_pg_database()
    try:
        yield url
    finally:
        from service.store.db import engine_for

        engine_for(url).dispose()
        _drop_pg_database(name)


@contextmanager
def migrated_database(kind: str, root: Path) -> Iterator[str]:
    """`empty_database`, migrated to head: what `gatekeeper serve` would find or make."""
    with empty_database(kind, root) as url:
        upgrade_to_head(url)
        yield url


@pytest.fixture
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of the kind named by the test's `db_kind` parameter (no schema)."""
    with empty_database(getattr(request, "param", "sqlite"), tmp_path) as url:
        yield url


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A migrated database: SQLite or PostgreSQL, as parametrized."""
    upgrade_to_head(fresh_database_url)
    return fresh_database_url


BOTH_DATABASES = pytest.mark.parametrize(
    "fresh_database_url", ["sqlite", "postgresql"], indirect=True
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`e2e`: everything under tests/e2e, and any test that needs the MLflow server."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "e2e" in item.path.parts or "mlflow_server" in fixtures:
            item.add_marker(pytest.mark.e2e)
