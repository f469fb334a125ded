"""Start-up checks that fail fast and readably: exit 2 and one paragraph naming the setting.

An operator who mistyped a URL should read which variable is wrong, not 460 lines of
SQLAlchemy traceback; a host that accepts TCP and never answers must not hang `serve`; a
secret that is too short must not be echoed back. `--debug` shows the traceback.
"""

from __future__ import annotations

from urllib.parse import urlparse

from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from service.config import Settings
from service.store.db import CONNECT_TIMEOUT_S, build_engine


class StartupError(Exception):
    """What is wrong, in one paragraph that names the setting; never a secret's value."""


def settings_error(exc: ValidationError) -> StartupError:
    parts = []
    for error in exc.errors():
        field = ".".join(str(p) for p in error.get("loc", ())) or "settings"
        parts.append(f"GATEKEEPER_{field.upper()}: {error.get('msg', 'invalid')}")
    return StartupError("invalid settings: " + "; ".join(parts))


def check_database(settings: Settings) -> None:
    """The URL parses, names a driver we have, and the database answers within the timeout."""
    raw = settings.resolved_database_url
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise StartupError(
            "GATEKEEPER_DATABASE_URL is not a database URL (expected e.g. "
            "postgresql+psycopg://user:password@host:5432/db or sqlite:///path/gatekeeper.db)"
        ) from exc
    shown = url.render_as_string(hide_password=True)
    try:
        engine = build_engine(raw)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise StartupError(
            f"GATEKEEPER_DATABASE_URL ({shown}) names a database driver that is not "
            f"available: {exc}"
        ) from exc
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except DBAPIError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0][:300]
        raise StartupError(
            f"cannot reach the database named by GATEKEEPER_DATABASE_URL ({shown}) within "
            f"{CONNECT_TIMEOUT_S} s: {reason}"
        ) from exc
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
