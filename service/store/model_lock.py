"""One registry writer per model across every gatekeeper process on one database.

The guard, the publisher, quarantine and re-verification each compare the record with MLflow
and write the difference. Two of them at once on one model see each other's half-written
tags as tampering, record one tamper act twice and publish one run twice. A thread lock
only covers one process; replicas (two `serve --no-worker` behind a load balancer, workers
beside them) share only the database, so the exclusion comes from the database:

- PostgreSQL: a session advisory lock keyed by the model's name, held on a connection of
  its own for as long as the lock is held (the server drops it if the process dies);
- SQLite (one host by nature): an exclusive `flock` on a file beside the database file (the
  kernel drops it if the process dies).

Within a process the lock is re-entrant (a publish reconciles the alias, which locks again)
and threads queue on a per-model `RLock` first, so a process holds each database lock once.
A lock not had within `LOCK_WAIT_S` raises `ModelLockBusy`: the caller's work is retried
(the next guard pass, the poller's republish), never done unlocked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from sqlalchemy import Connection, make_url, text

from service.errors import GatekeeperError
from service.store.db import engine_for, is_sqlite

LOCK_WAIT_S = 300.0
_POLL_S = (0.02, 0.5)  # first and longest pause between tries


class ModelLockBusy(GatekeeperError):
    """Another process held the model's lock for longer than LOCK_WAIT_S: try again (an API
    request that meets it answers 503 with Retry-After, never a 500)."""

    http_status = 503


class _Held(Protocol):
    def release(self) -> None: ...


_LOCAL: dict[tuple[str, str], threading.RLock] = {}
_DEPTH: dict[tuple[str, str], int] = {}
_HELD: dict[tuple[str, str], _Held] = {}
_LOCAL_GUARD = threading.Lock()


@contextlib.contextmanager
def model_lock(database_url: str, name: str, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold `name`'s registry-writer lock for the block, across processes on the database."""
    key = (database_url, name)
    with _LOCAL_GUARD:
        local = _LOCAL.setdefault(key, threading.RLock())
    if not local.acquire(timeout=wait_s):
        raise ModelLockBusy(f"model {name!r}: another thread held its lock for {wait_s:g} s")
    try:
        # only the thread holding `local` touches this key's depth and handle
        if _DEPTH.get(key, 0) == 0:
            _HELD[key] = _acquire(database_url, name, wait_s)
        _DEPTH[key] = _DEPTH.get(key, 0) + 1
        try:
            yield
        finally:
            _DEPTH[key] -= 1
            if _DEPTH[key] == 0:
                _HELD.pop(key).release()
    finally:
        local.release()


def _acquire(database_url: str, name: str, wait_s: float) -> _Held:
    if is_sqlite(database_url):
        database = make_url(database_url).database
        if not database or database == ":memory:":
            return _NoLock()  # one process by construction
        return _FileLock.take(Path(database), name, wait_s)
    return _AdvisoryLock.take(database_url, name, wait_s)


def _tries(name: str, wait_s: float) -> Iterator[None]:
    """Yields once per try until `wait_s` is spent, then raises ModelLockBusy."""
    deadline = time.monotonic() + wait_s
    pause = _POLL_S[0]
    while True:
        yield
        if time.monotonic() + pause > deadline:
            raise ModelLockBusy(
                f"model {name!r}: another gatekeeper process held its registry lock for "
                f"{wait_s:g} s; this pass is skipped and retried"
            )
        time.sleep(pause)
        pause = min(pause * 2, _POLL_S[1])


def _key64(name: str) -> int:
    """The advisory lock key: 64 bits of sha256 of the name, as PostgreSQL's signed bigint."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class _NoLock:
    def release(self) -> None:
        return None


class _AdvisoryLock:
    def __init__(self, connection: Connection, key: int) -> None:
        self._connection, self._key = connection, key

    @classmethod
    def take(cls, database_url: str, name: str, wait_s: float) -> _AdvisoryLock:
        key = _key64(name)
        connection = (
            engine_for(database_url).connect().execution_options(isolation_level="AUTOCOMMIT")
        )
        try:
            for _ in _tries(name, wait_s):
                got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
                if got.scalar():
                    return cls(connection, key)
        except BaseException:
            connection.close()
            raise
        raise AssertionError("unreachable")  # _tries raises when the time is spent

    def release(self) -> None:
        try:
            self._connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
        except BaseException:
            # never back into the pool still holding the lock: a closed session drops it
            self._connection.invalidate()
            raise
        finally:
            self._connection.close()


class _FileLock:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    @classmethod
    def take(cls, database: Path, name: str, wait_s: float) -> _FileLock:
        directory = database.with_name(database.name + ".model-locks")
        directory.mkdir(mode=0o700, exist_ok=True)
        path = directory / (hashlib.sha256(name.encode()).hexdigest()[:32] + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            for _ in _tries(name, wait_s):
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return cls(fd)
                except BlockingIOError:
                    continue
        except BaseException:
            os.close(fd)
            raise
        raise AssertionError("unreachable")

    def release(self) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
