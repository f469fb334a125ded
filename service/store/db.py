"""Engine and session factory. Nothing is built at import; callers pass Settings."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


CONNECT_TIMEOUT_S = 10  # a host that accepts TCP and never answers must not hang us
# execution option of the engine `read_engine_for` returns (see the SQLite begin below)
_READ_ONLY = "gatekeeper_read_only"


def build_engine(url: str) -> Engine:
    if is_sqlite(url):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
        _make_sqlite_transactions_immediate(engine)
        return engine
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=5,
        max_overflow=10,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )


def _make_sqlite_transactions_immediate(engine: Engine) -> None:
    """Every SQLite transaction that may write takes the write lock up front (BEGIN
    IMMEDIATE); a read (`read_transaction`) takes none.

    pysqlite's default deferred transactions let two workers both read a queued run and then
    race to write it; taking the lock at BEGIN makes a claim on SQLite a plain serialised write
    transaction, the SQLite equivalent of PostgreSQL's FOR UPDATE SKIP LOCKED.

    A read must not take it: a request that looked its token up under the write lock and then
    called code opening a transaction of its own waited for itself until busy_timeout (issue
    21). So a read is a deferred transaction (in WAL mode it neither waits for a writer nor
    holds one up) on a connection with `query_only` set, so a write slipped into a read fails
    at once instead of upgrading the lock half way through.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let us issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(_READ_ONLY):
            connection.exec_driver_sql("PRAGMA query_only=ON")
            connection.exec_driver_sql("BEGIN DEFERRED")
        else:
            connection.exec_driver_sql("PRAGMA query_only=OFF")
            connection.exec_driver_sql("BEGIN IMMEDIATE")


def insert_stmt(session: Session, table: Any) -> Any:
    """INSERT with the dialect's ON CONFLICT support (PostgreSQL and SQLite share the syntax)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


@functools.cache
def engine_for(url: str) -> Engine:
    return build_engine(url)


@functools.cache
def session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=engine_for(url), expire_on_commit=False)


@functools.cache
def read_engine_for(url: str) -> Engine:
    """The same engine and pool, for transactions that only read: deferred and `query_only`
    on SQLite (never the write lock), `BEGIN READ ONLY` on PostgreSQL."""
    engine = engine_for(url)
    if is_sqlite(url):
        return engine.execution_options(**{_READ_ONLY: True})
    return engine.execution_options(postgresql_readonly=True)


@functools.cache
def read_session_factory(url: str) -> sessionmaker[Session]:
    return sessionmaker(bind=read_engine_for(url), expire_on_commit=False)


@contextmanager
def transaction(url: str) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception. On SQLite it holds
    the write lock from its first statement to its end: never open another inside it."""
    with session_factory(url)() as session, session.begin():
        yield session


@contextmanager
def read_transaction(url: str) -> Iterator[Session]:
    """One consistent read that writes nothing (a write in it fails): it takes no lock a
    writer waits for, so it may be open while other code opens a `transaction`."""
    with read_session_factory(url)() as session, session.begin():
        yield session
