"""Start-up checks that fail fast and readably: exit 2 and one paragraph naming the setting.

An operator who mistyped a URL should read which variable is wrong, not 460 lines of
SQLAlchemy traceback; a host that accepts TCP and never answers must not hang `serve`; a
secret that is too short must not be echoed back. `--debug` shows the traceback.

Which database: every command finds it as `serve` does (GATEKEEPER_DATABASE_URL, else
`gatekeeper.db` in GATEKEEPER_DATA_DIR) and says which one it used. Only `serve` and `db
upgrade` make one; a command that needs the gatekeeper's records (`token create`, `policy
test`, `worker`) refuses a database that is not there, or holds no gatekeeper schema, and
says where it looked: a token written into a database no server reads is a token the server
refuses (issue 21).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from pydantic import ValidationError
from sqlalchemy import Connection, Engine, create_engine, pool, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from service.config import Settings
from service.store.db import CONNECT_TIMEOUT_S, build_engine, is_sqlite

SQLITE_MAGIC = b"SQLite format 3\x00"


class StartupError(Exception):
    """What is wrong, in one paragraph that names the setting; never a secret's value."""


@dataclass(frozen=True)
class DatabaseLocation:
    """The database a command uses, and which setting named it."""

    url: str
    shown: str
    """The URL with its password hidden, for messages."""

    named_by: str
    """The setting the URL comes from, as a user would look it up."""

    sqlite_path: Path | None = None
    """For SQLite: the file, absolute."""

    def __str__(self) -> str:
        return f"database {self.shown} ({self.named_by})"


def database_location(settings: Settings) -> DatabaseLocation:
    """Where `serve` keeps its records under these settings; the URL must parse."""
    raw = settings.resolved_database_url
    url = _parse(raw)
    if settings.database_url:
        named_by = "GATEKEEPER_DATABASE_URL"
    elif "data_dir" in settings.model_fields_set:
        named_by = f"in GATEKEEPER_DATA_DIR {settings.data_dir}"
        if not settings.data_dir.is_absolute():
            named_by += f", relative to {Path.cwd()}"
    else:
        named_by = (
            f"in the default data dir {settings.data_dir} of {Path.cwd()}: "
            "GATEKEEPER_DATA_DIR and GATEKEEPER_DATABASE_URL are unset"
        )
    path = None
    if is_sqlite(raw) and url.database and url.database != ":memory:":
        path = Path(url.database).absolute()
    return DatabaseLocation(raw, url.render_as_string(hide_password=True), named_by, path)


def _parse(raw: str) -> URL:
    try:
        return make_url(raw)
    except ArgumentError as exc:
        raise StartupError(
            "GATEKEEPER_DATABASE_URL is not a database URL (expected e.g. "
            "postgresql+psycopg://user:password@host:5432/db or sqlite:///path/gatekeeper.db)"
        ) from exc


POINT_AT_IT = (
    "Point the CLI at the database `gatekeeper serve` uses: GATEKEEPER_DATA_DIR=<its data "
    "dir> or GATEKEEPER_DATABASE_URL=<its URL> (after `make demo`: `source "
    ".gatekeeper-demo/demo.env`)"
)


def check_existing_database(settings: Settings) -> DatabaseLocation:
    """For commands that read or add to the gatekeeper's records: the database must already
    exist, answer, and hold this gatekeeper's schema at head. Nothing is created or migrated:
    SQLite files are checked before they are opened (opening one creates it)."""
    location = database_location(settings)
    path = location.sqlite_path
    if path is not None:
        _check_sqlite_file(path, location)
    engine = _plain_engine(location.url) if path is not None else _engine(location)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            _check_schema(conn, location)
    except DBAPIError as exc:
        raise _unreachable(location, exc, f"{POINT_AT_IT}.") from exc
    finally:
        engine.dispose()
    return location


def _check_sqlite_file(path: Path, location: DatabaseLocation) -> None:
    if not path.exists():
        raise StartupError(
            f"no gatekeeper database at {path} ({location.named_by}); nothing was created "
            f"there. {POINT_AT_IT}; `gatekeeper db upgrade` starts a new, empty one."
        )
    try:
        with path.open("rb") as handle:
            magic = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StartupError(f"cannot read the database {path} ({location.named_by}): {exc}") from exc
    if magic != SQLITE_MAGIC:
        raise StartupError(
            f"{path} ({location.named_by}) is not a gatekeeper database"
            f"{' (an empty file)' if not magic else ' (not SQLite)'}; it was left as it is. "
            f"{POINT_AT_IT}; `gatekeeper db upgrade` makes a new one where you point it."
        )


def _check_schema(conn: Connection, location: DatabaseLocation) -> None:
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from service.store.migrate import alembic_config

    current = set(MigrationContext.configure(conn).get_current_heads())
    script = ScriptDirectory.from_config(alembic_config(location.url))
    heads = set(script.get_heads())
    if current == heads:
        return
    where = f"{location.shown} ({location.named_by})"
    if not current:
        raise StartupError(
            f"{where} holds no gatekeeper schema; it was left as it is. {POINT_AT_IT}; "
            "`gatekeeper db upgrade` makes a new one where you point it."
        )
    known = {revision.revision for revision in script.walk_revisions()}
    if not current <= known:
        raise StartupError(
            f"{where} is at schema revision {', '.join(sorted(current))}, which this "
            "gatekeeper does not know: it was migrated by a newer gatekeeper; run the CLI of "
            "that version"
        )
    raise StartupError(
        f"{where} is at schema revision {', '.join(sorted(current))}, this gatekeeper needs "
        f"{', '.join(sorted(heads))}: run `gatekeeper db upgrade` (or restart `gatekeeper "
        "serve`, which migrates it) first"
    )


def schema_revisions(location: DatabaseLocation) -> tuple[str, ...]:
    """The schema revisions the database is at (empty: no schema); it must answer."""
    from alembic.migration import MigrationContext

    engine = _plain_engine(location.url) if location.sqlite_path else _engine(location)
    try:
        with engine.connect() as conn:
            return tuple(MigrationContext.configure(conn).get_current_heads())
    except DBAPIError as exc:
        raise _unreachable(location, exc) from exc
    finally:
        engine.dispose()


def _engine(location: DatabaseLocation) -> Engine:
    try:
        return build_engine(location.url)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise StartupError(
            f"GATEKEEPER_DATABASE_URL ({location.shown}) names a database driver that is not "
            f"available: {exc}"
        ) from exc


def _plain_engine(url: str) -> Engine:
    """SQLite without the service's connect hooks (they switch the journal to WAL, a write):
    a check only reads."""
    return create_engine(url, poolclass=pool.NullPool)


def _unreachable(location: DatabaseLocation, exc: DBAPIError, hint: str = "") -> StartupError:
    reason = str(exc.orig or exc).strip().splitlines()[0][:300]
    if location.named_by == "GATEKEEPER_DATABASE_URL":
        message = (
            f"cannot reach the database named by GATEKEEPER_DATABASE_URL ({location.shown}) "
            f"within {CONNECT_TIMEOUT_S} s: {reason}"
        )
    else:
        message = f"cannot open the {location}: {reason}"
    return StartupError(f"{message}. {hint}" if hint else message)


def check_port_free(host: str, port: int) -> None:
    """`serve` would otherwise start its worker and MLflow, then fail to bind and exit 3."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise StartupError(f"--host {host}: not an address to listen on ({exc})") from exc
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc} (another gatekeeper "
                "or another program holds it); give a free one with --port"
            ) from exc


def settings_error(exc: ValidationError) -> StartupError:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error.get("loc", ())) or "settings"
        parts.append(f"GATEKEEPER_{field.upper()}: {error.get('msg', 'invalid')}")
    return StartupError("invalid settings: " + "; ".join(parts))


def check_database(settings: Settings) -> None:
    """The URL parses, names a driver we have, and the database answers within the timeout.
    For `serve` and `db upgrade`, which create the database: a SQLite file is made here."""
    location = database_location(settings)
    engine = _engine(location)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        raise _unreachable(location, exc) from exc
    finally:
        engine.dispose()


def check_tracking_uri(uri: str, setting: str) -> None:
    """An MLflow server the gatekeeper talks to: http(s) or Databricks, nothing else."""
    parsed = urlparse(uri)
    scheme = parsed.scheme.lower()
    if scheme in ("http", "https") and parsed.netloc:
        return
    if scheme == "databricks":
        return
    if scheme.startswith(("postgresql", "mysql", "sqlite", "mssql")):
        raise StartupError(
            f"{setting} is a database URL ({scheme}://...), not an MLflow server: give the "
            "URL of the MLflow tracking server (http(s)://host:port), or leave it unset for "
            "an embedded one"
        )
    raise StartupError(
        f"{setting} must be the URL of an MLflow tracking server, http(s)://host:port or "
        f"databricks; got a value with scheme {scheme or 'none'!r}"
    )
