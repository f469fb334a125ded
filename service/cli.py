"""`gatekeeper` command line: serve, worker, db upgrade, token create, policy, keys, scan, verify.

Exit codes, everywhere: 0 done, 1 a verdict that says no (`policy test`: not promotable;
`scan`: findings that fail; `verify`: does not hold), 2 could not do it, in one paragraph on
stderr, the traceback only with `--debug`. A CI job must never read a crash as a verdict.
Commands that use the database say on stderr which one (`using database ...`).
"""

from __future__ import annotations

import enum
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from service.config import Settings, get_settings
from service.errors import ConfigError

if TYPE_CHECKING:
    from service.runs.deploy_verify import OfflineStatus, OnlineStatus
    from service.startup import DatabaseLocation


class _Cli(typer.Typer):
    """The app, with the last word on exceptions no command handled: exit 2 and one
    paragraph, never Python's exit 1 (the "not promotable" of `policy test`)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            import traceback

            if _debug:
                traceback.print_exception(exc, file=sys.stderr)
            first = (str(exc).strip().splitlines() or [""])[0][:500]
            hint = "" if _debug else " (`gatekeeper --debug ...` shows the traceback)"
            message = f"gatekeeper: unexpected error: {type(exc).__name__}: {first}{hint}"
            typer.echo(_scrubbed(message), err=True)
            sys.exit(2)


def _scrubbed(text: str) -> str:
    """`text` without the secrets the settings hold (database password, webhook secret,
    admin token), for messages made from other libraries' exceptions."""
    from sqlalchemy.engine import make_url

    secrets: list[str] = []
    for name in ("GATEKEEPER_WEBHOOK_SECRET", "GATEKEEPER_ADMIN_TOKEN", "GATEKEEPER_TOKEN"):
        secrets.append(os.environ.get(name, ""))
    try:
        secrets.append(make_url(os.environ.get("GATEKEEPER_DATABASE_URL", "")).password or "")
    except Exception:  # not a URL: nothing to take out of it
        pass
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


app = _Cli(help="mlflow-gatekeeper: vets MLflow model versions before production.")
db_app = typer.Typer(help="Database schema.")
token_app = typer.Typer(help="API tokens.")
policy_app = typer.Typer(help="The policy file.")
keys_app = typer.Typer(help="The signing key.")
app.add_typer(keys_app, name="keys")
app.add_typer(db_app, name="db")
app.add_typer(token_app, name="token")
app.add_typer(policy_app, name="policy")

log = logging.getLogger("gatekeeper")
_debug = False


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False,
) -> None:
    global _debug
    _debug = debug


def _fail(message: str, exc: BaseException | None = None) -> typer.Exit:
    """One readable paragraph and exit 2; the traceback only with --debug."""
    import traceback

    if _debug and exc is not None:
        traceback.print_exception(exc, file=sys.stderr)
    typer.echo(f"gatekeeper: {message}", err=True)
    return typer.Exit(2)


def _configure_logging() -> None:
    logging.basicConfig(
        level=os.environ.get("GATEKEEPER_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )


def _load_settings() -> Settings:
    from pydantic import ValidationError

    from service.startup import settings_error

    try:
        return get_settings()
    except ValidationError as exc:  # one line per variable, values never echoed
        raise _fail(str(settings_error(exc)), exc) from exc


def _existing_database(settings: Settings) -> DatabaseLocation:
    """The database `serve` uses under these settings, which must exist with the schema at
    head (nothing is created); said on stderr."""
    from service.startup import StartupError, check_existing_database

    try:
        location = check_existing_database(settings)
    except StartupError as exc:
        raise _fail(str(exc), exc) from exc
    _say_database(location)
    return location


def _say_database(location: DatabaseLocation) -> None:
    typer.echo(f"using {location}", err=True)


def _check_dependencies(
    settings: Settings, tracking_uri: str | None, *, creates_database: bool
) -> None:
    """Database reachable (and, unless this command creates it, there with the schema) and
    tracking URI plausible, before anything starts."""
    from service.mlflow.registry import configure_client_environment
    from service.startup import (
        StartupError,
        check_database,
        check_existing_database,
        check_tracking_uri,
    )

    configure_client_environment()
    try:
        if creates_database:
            check_database(settings)
        else:
            _say_database(check_existing_database(settings))
        if tracking_uri is not None:
            setting = (
                "GATEKEEPER_MLFLOW_TRACKING_URI"
                if settings.mlflow_tracking_uri
                else "MLFLOW_TRACKING_URI"
            )
            check_tracking_uri(tracking_uri, setting)
    except StartupError as exc:
        raise _fail(str(exc), exc) from exc


def _check_policy(settings: Settings) -> None:
    """A bad policy stops the process at start, naming the key and the line."""
    from service.policy import load_policy_file

    if settings.policy_path is None:
        return
    try:
        document = load_policy_file(settings.policy_path)
    except ConfigError as exc:
        raise _fail(str(exc), exc) from exc
    log.info("policy %s: %d model entries", settings.policy_path, len(document.models))


def _configured_tracking_uri(settings: Settings) -> str | None:
    return settings.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    worker: Annotated[bool, typer.Option(help="Run an in-process worker.")] = True,
    poller: Annotated[bool, typer.Option(help="Run the reconciliation poller.")] = True,
) -> None:
    """Migrate the database, then serve the API and report pages (with a worker and poller)."""
    import uvicorn

    from service.app import create_app
    from service.mlflow.embedded import EmbeddedMlflow

    _configure_logging()
    settings = _load_settings()
    _check_policy(settings)
    tracking_uri = _configured_tracking_uri(settings)
    _check_port(host, port)
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        message = f"GATEKEEPER_DATA_DIR {settings.data_dir} cannot be created: {exc}"
        raise _fail(message, exc) from exc
    from service.integrity.keys import signing_key

    try:  # generated on first start when GATEKEEPER_SIGNING_KEY_PATH is unset
        signing_key(settings.signing_key_path, settings.data_dir)
    except (ConfigError, OSError) as exc:
        raise _fail(f"signing key: {exc}", exc) from exc
    _check_dependencies(settings, tracking_uri, creates_database=True)
    location = _upgrade(settings)
    embedded: EmbeddedMlflow | None = None
    if tracking_uri is None:
        embedded = EmbeddedMlflow(settings.data_dir, settings.embedded_mlflow_port)
        typer.echo("No MLflow tracking URI configured: starting an embedded MLflow server...")
        try:
            tracking_uri = embedded.start()
        except ConfigError as exc:
            raise _fail(str(exc), exc) from exc
        typer.echo(f"Embedded MLflow server: {tracking_uri}")
    if not settings.webhook_secret:
        log.warning("GATEKEEPER_WEBHOOK_SECRET is not set: webhooks are refused, poller only")
    typer.echo(f"Gatekeeper API: http://{host}:{port}  ({location})")
    app_ = create_app(
        settings,
        tracking_uri=tracking_uri,
        run_worker=worker,
        run_poller=poller,
        on_shutdown=embedded.stop if embedded else None,
    )
    try:
        uvicorn.run(app_, host=host, port=port, log_level="info", access_log=False)
    except SystemExit as exc:  # uvicorn: 1 could not bind, 3 the app did not start
        if exc.code not in (0, None):
            raise _fail(
                f"the server did not start on {host}:{port} (uvicorn exit {exc.code}; its "
                "reason is in the lines above)",
                exc,
            ) from exc
    finally:  # startup failures never reach the lifespan's shutdown
        if embedded is not None:
            embedded.stop()


def _check_port(host: str, port: int) -> None:
    from service.startup import StartupError, check_port_free

    try:
        check_port_free(host, port)
    except StartupError as exc:
        raise _fail(str(exc), exc) from exc


def _upgrade(settings: Settings) -> DatabaseLocation:
    """Migrate to head (creating the schema, and a SQLite file, if there is none); one
    paragraph when it cannot."""
    from service.startup import StartupError, database_location
    from service.store.migrate import upgrade_to_head

    try:
        location = database_location(settings)
    except StartupError as exc:
        raise _fail(str(exc), exc) from exc
    try:
        upgrade_to_head(location.url)
    except Exception as exc:  # alembic and the driver: a revision it does not know, ...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise _fail(
            f"cannot migrate the {location} to this gatekeeper's schema: {reason}", exc
        ) from exc
    return location


@app.command("worker")
def worker_command() -> None:
    """Claim and drive runs from the shared database; no HTTP. Scale out with more of these."""
    from service.mlflow.registry import Registry
    from service.runs.worker import SHUTDOWN_GRACE_S, start_worker_thread

    _configure_logging()
    settings = _load_settings()
    _check_policy(settings)
    tracking_uri = _configured_tracking_uri(settings)
    if tracking_uri is None:
        raise _fail("gatekeeper worker needs GATEKEEPER_MLFLOW_TRACKING_URI (an MLflow server)")
    # the worker never migrates: `serve` or `db upgrade` does, before workers start
    _check_dependencies(settings, tracking_uri, creates_database=False)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    running = start_worker_thread(settings, Registry(tracking_uri), stop)
    while not stop.wait(1.0):
        if not running.thread.is_alive():
            break
    stop.set()
    running.stop(grace_s=SHUTDOWN_GRACE_S)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply Alembic migrations up to head, creating the database's schema (and a SQLite
    file) when there is none; says which database and what it did."""
    from service.startup import StartupError, check_database, database_location, schema_revisions

    settings = _load_settings()
    try:
        location = database_location(settings)
    except StartupError as exc:
        raise _fail(str(exc), exc) from exc
    new_file = location.sqlite_path is not None and not location.sqlite_path.exists()
    try:
        if location.sqlite_path is not None:
            location.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        check_database(settings)  # a SQLite file is made here
        before = () if new_file else schema_revisions(location)
    except StartupError as exc:
        raise _fail(str(exc), exc) from exc
    except OSError as exc:
        raise _fail(f"cannot create the {location}: {exc}", exc) from exc
    _say_database(location)
    _upgrade(settings)
    after = ", ".join(schema_revisions(location))
    if new_file:
        typer.echo(f"created {location.shown}: a new, empty database", err=True)
        typer.echo(f"database at head ({after}): {location.shown}")
    elif not before:
        typer.echo(f"created the gatekeeper schema in {location.shown}", err=True)
        typer.echo(f"database at head ({after}): {location.shown}")
    elif ", ".join(before) == after:
        typer.echo(f"database already at head ({after}): {location.shown}")
    else:
        typer.echo(
            f"database upgraded from {', '.join(before)} to head ({after}): {location.shown}"
        )


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="Who or what uses the token.")],
    role: Annotated[str, typer.Option(help="viewer | operator | approver | admin")] = "viewer",
) -> None:
    """Create an API token and print it once (only its hash is stored).

    The token goes into the database `gatekeeper serve` uses (GATEKEEPER_DATABASE_URL, else
    gatekeeper.db in GATEKEEPER_DATA_DIR), which must exist: none is created."""
    from service.errors import BadRequest
    from service.store import audit
    from service.store.auth import create_token
    from service.store.db import transaction

    settings = _load_settings()
    location = _existing_database(settings)
    try:
        with transaction(location.url) as session:
            token = create_token(session, name=name, role=role)
            audit.record(
                session, actor="cli", action="token.created", target=name, details={"role": role}
            )
    except BadRequest as exc:
        raise _fail(str(exc), exc) from exc
    typer.echo(token)


@policy_app.command("reference")
def policy_reference() -> None:
    """Print the policy reference (every key, type, default) the README carries."""
    from service.policy_reference import reference_markdown

    typer.echo(reference_markdown())


@policy_app.command("test")
def policy_test(
    run_id: Annotated[str, typer.Option("--run", help="A recorded run's id.")],
    policy: Annotated[
        Path | None,
        typer.Option(help="The policy to judge it under (default: GATEKEEPER_POLICY_PATH)."),
    ] = None,
) -> None:
    """Replay a recorded run's decision under a policy, from its stored results.

    Reads the run from the database and writes nothing; never calls MLflow. Prints the
    verdict and the deny and warn messages that change; exits 1 when the replayed verdict
    would not be promotable, 2 when it could not replay (a bad policy, no database, an
    unknown run).
    """
    from service.decision.verdict import changed_messages, replay
    from service.policy import load_policy_file, policy_for
    from service.store.db import session_factory
    from service.store.tables import PROMOTABLE_STATUSES, GateRun

    settings = _load_settings()
    policy_path = policy or settings.policy_path
    if policy_path is not None:
        try:
            load_policy_file(policy_path)
        except ConfigError as exc:
            raise _fail(str(exc), exc) from exc
    location = _existing_database(settings)
    with session_factory(location.url)() as session:
        run = session.get(GateRun, run_id)
        if run is None:
            raise _fail(f"no run {run_id} in the {location}")
        recorded = dict(run.decision or {})
        name, version, status = run.model_name, run.model_version, run.status
    document = recorded.get("input")
    if not isinstance(document, dict):
        raise _fail(
            f"run {run_id} has no stored decision input (it ended before any gate ran, or was "
            "recorded by a gatekeeper older than the Rego decision); re-run it to replay it"
        )
    replayed = replay(document, policy_for(name, policy_path))
    typer.echo(f"run {run_id}: {name} v{version}")
    typer.echo(f"recorded: {status}")
    typer.echo(f"under {policy_path or 'the default policy'}: {replayed.status.value}")
    for line in changed_messages(recorded, replayed):
        typer.echo(line)
    if replayed.status not in PROMOTABLE_STATUSES:
        raise typer.Exit(1)


@keys_app.command("generate")
def keys_generate(
    out: Annotated[
        Path, typer.Option(help="Where to write the private key (the public key: .pub beside).")
    ] = Path("gatekeeper-signing.pem"),
) -> None:
    """Write a new ECDSA P-256 key pair (what GATEKEEPER_SIGNING_KEY_PATH names)."""
    from service.integrity.keys import generate_key_pair

    if out.exists():
        raise _fail(f"{out} exists; not overwritten")
    nearest = next((parent for parent in out.parents if parent.exists()), None)
    if nearest is not None and not nearest.is_dir():
        raise _fail(f"cannot write the key to {out}: {nearest} is not a directory")
    try:
        key = generate_key_pair(out)
    except FileExistsError as exc:  # made by someone else meanwhile
        raise _fail(f"{out} exists; not overwritten", exc) from exc
    except OSError as exc:
        raise _fail(f"cannot write the key to {out}: {exc.strerror or exc}", exc) from exc
    typer.echo(f"private key: {out} (mode 0600)")
    typer.echo(f"public key:  {out.with_suffix('.pub')} (key id {key.key_id})")


@app.command()
def verify(
    model_uri: Annotated[str, typer.Argument(help="models:/NAME@ALIAS or models:/NAME/VERSION")],
    public_key: Annotated[
        Path | None,
        typer.Option(help="The gatekeeper's public key (PEM), pinned; or pin its fingerprint."),
    ] = None,
    key_fingerprint: Annotated[
        str | None,
        typer.Option(
            envvar="GATEKEEPER_KEY_FINGERPRINT",
            help="sha256 of the key (X-Key-Id); lets the key be fetched over HTTPS.",
        ),
    ] = None,
    download_to: Annotated[
        Path | None, typer.Option(help="Directory to download the verified files into.")
    ] = None,
    gatekeeper: Annotated[
        str | None,
        typer.Option(
            envvar="GATEKEEPER_PUBLIC_URL", help="The gatekeeper to ask (default 127.0.0.1:8000)."
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="GATEKEEPER_TOKEN", help="A viewer token for the status check."),
    ] = None,
    revocations: Annotated[
        Path | None,
        typer.Option(help="Offline: a signed revocation list (GET /api/v1/revocations)."),
    ] = None,
) -> None:
    """For deploy jobs: is this exactly the version the gatekeeper holds promotable now?

    Downloads the version the URI names, checks every file against the gatekeeper's signature
    with a pinned key, checks the signed statement names this model, version and these files,
    and asks the gatekeeper (a signed answer) whether the version is promotable now, or reads
    a signed revocation list offline. Exit 0 and print the verified directory; exit 1 naming
    what does not hold; exit 2 when it could not be checked (no key pinned, no status source,
    the gatekeeper unreachable)."""
    import tempfile

    from service.errors import GatekeeperError
    from service.integrity.signing import VerificationFailed
    from service.mlflow.registry import Registry
    from service.runs.deploy_verify import verify_model

    tracking_uri = os.environ.get("GATEKEEPER_MLFLOW_TRACKING_URI") or os.environ.get(
        "MLFLOW_TRACKING_URI"
    )
    if not tracking_uri:
        raise _fail("set MLFLOW_TRACKING_URI to the registry to verify from")
    base = gatekeeper or "http://127.0.0.1:8000"
    with tempfile.TemporaryDirectory(prefix="gatekeeper-key-") as tmp:
        pinned = _pinned_key(public_key, key_fingerprint, base, Path(tmp))
        status = _status_source(pinned.read_bytes(), base, token, revocations)
        try:
            verified = verify_model(Registry(tracking_uri), model_uri, pinned, status, download_to)
        except VerificationFailed as exc:
            typer.echo(f"gatekeeper verify: FAILED: {exc}", err=True)
            raise typer.Exit(1) from exc
        except GatekeeperError as exc:
            typer.echo(f"gatekeeper verify: could not verify: {exc}", err=True)
            raise typer.Exit(2) from exc
    typer.echo(
        f"verified {verified.name} v{verified.version}: every file matches the signature, the "
        f"statement names this version, and it is promotable now ({verified.status_source})"
    )
    typer.echo(str(verified.path))


def _pinned_key(public_key: Path | None, fingerprint: str | None, base: str, tmp: Path) -> Path:
    """The key to verify with: a file the job holds, or one fetched over HTTPS and matched
    to a pinned fingerprint. Never a key taken on trust from the network: a man in the middle
    would serve their own key with their own signatures."""
    import httpx

    from service.errors import ConfigError
    from service.integrity.keys import key_id_of

    wanted = fingerprint.strip().lower() if fingerprint else None
    if public_key is not None:
        try:
            found = key_id_of(public_key.read_bytes())
        except (OSError, ConfigError) as exc:
            raise _fail(f"--public-key {public_key}: {exc}", exc) from exc
        if wanted is not None and found != wanted:
            raise _fail(f"--public-key {public_key} has fingerprint {found}, not the pinned one")
        return public_key
    if wanted is None:
        raise _fail(
            "pin the gatekeeper's key: --public-key FILE, or --key-fingerprint "
            "(GATEKEEPER_KEY_FINGERPRINT) to fetch it over HTTPS"
        )
    if not base.lower().startswith("https://"):
        raise _fail(
            f"refusing to fetch the public key over plain HTTP ({base}); give --public-key FILE"
        )
    try:
        answer = httpx.get(f"{base.rstrip('/')}/api/v1/keys/public", timeout=30)
        answer.raise_for_status()
        found = key_id_of(answer.content)
    except (httpx.HTTPError, ConfigError) as exc:
        raise _fail(f"cannot fetch the public key from {base}: {exc}", exc) from exc
    if found != wanted:
        raise _fail(f"the key served by {base} has fingerprint {found}, not the pinned one")
    path = tmp / "gatekeeper.pub"
    path.write_bytes(answer.content)
    return path


def _status_source(
    public_pem: bytes, base: str, token: str | None, revocations: Path | None
) -> OnlineStatus | OfflineStatus:
    import json
    from urllib.parse import urlsplit

    from service.runs.deploy_verify import OfflineStatus, OnlineStatus

    if revocations is not None:
        try:
            document = json.loads(revocations.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _fail(f"--revocations {revocations}: {exc}", exc) from exc
        return OfflineStatus(document, public_pem)
    if not token:
        raise _fail(
            "verify needs the gatekeeper's word that the version is promotable now: set "
            "GATEKEEPER_TOKEN (a viewer token) or give --revocations FILE (offline)"
        )
    host = (urlsplit(base).hostname or "").lower()
    if urlsplit(base).scheme.lower() != "https" and host not in ("127.0.0.1", "localhost", "::1"):
        # the answer is signed, so the verdict cannot be changed in transit; the token can be
        # read there, and it lets its reader see every run
        typer.echo(
            f"gatekeeper verify: warning: the viewer token goes to {base} over plain HTTP",
            err=True,
        )
    return OnlineStatus(base, token, public_pem)


class ScanFormat(enum.StrEnum):
    text = "text"
    json = "json"
    sarif = "sarif"


@app.command()
def scan(
    path: Annotated[Path, typer.Argument(help="A model file or directory.")],
    output_format: Annotated[ScanFormat, typer.Option("--format", help="Output format.")] = (
        ScanFormat.text
    ),
    allow_code: Annotated[
        bool, typer.Option(help="Accept models that run their own code at load time.")
    ] = False,
    modelscan: Annotated[bool, typer.Option(help="Also run modelscan as a second opinion.")] = True,
    allow_callable: Annotated[
        list[str] | None,
        typer.Option(help="Extra allowed callable, e.g. 'mypkg.models.*' (repeatable)."),
    ] = None,
) -> None:
    """The security gate on a local file or directory, nothing executed, no server needed.

    Exit 0 clean, 1 findings that fail the gate, 2 could not scan.
    """
    from gates.base import Status
    from gates.security import scan_path
    from gates.security.config import SecurityConfig
    from gates.security.report import FORMATTERS

    if not path.exists():
        typer.echo(f"gatekeeper scan: {path} does not exist", err=True)
        raise typer.Exit(2)
    config = SecurityConfig(
        allow_code=allow_code, modelscan=modelscan, allow_callables=allow_callable or []
    )
    result = scan_path(path, config)
    typer.echo(FORMATTERS[output_format.value](result, str(path)))
    raise typer.Exit({Status.PASS: 0, Status.FAIL: 1}.get(result.status, 2))


if __name__ == "__main__":
    app()
