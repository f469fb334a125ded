"""`python -m demo` (what `make demo` runs): a local installation, shown working, left running.

Starts `gatekeeper serve` in the background (embedded MLflow server, SQLite), registers the
MLflow webhook with a secret, logs two versions of an example model (v-clean and one whose
pickle would create a marker file if anything ever loaded it), waits for both decisions and
prints them.
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer

from demo.models import log_clean_model, log_malicious_model

MODEL_NAME = "demo-churn-classifier"
WEBHOOK_NAME = "gatekeeper-demo"


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _pick_port(preferred: int) -> int:
    if _free(preferred):
        return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop_previous(data_dir: Path) -> None:
    pid_file = data_dir / "gatekeeper.pid"
    if not pid_file.exists():
        return
    try:
        pid = int(pid_file.read_text())
        os.killpg(pid, signal.SIGTERM)
        typer.echo(f"stopped the previous demo gatekeeper (pid {pid})")
        for _ in range(50):
            os.killpg(pid, 0)
            time.sleep(0.2)
    except (ValueError, ProcessLookupError, PermissionError):
        pass
    pid_file.unlink(missing_ok=True)


ENV_FILE = "demo.env"
# What `source .gatekeeper-demo/demo.env` gives a shell: the demo's secrets, and the settings
# that point the gatekeeper CLI at the demo's database from any directory (absolute paths;
# GATEKEEPER_DATABASE_URL too, so a URL already in the shell does not win).
DEMO_SECRETS = ("GATEKEEPER_WEBHOOK_SECRET", "GATEKEEPER_ADMIN_TOKEN")


def read_demo_env(env_file: Path) -> dict[str, str]:
    """The variables of a demo.env (`export NAME=value` lines; older demos wrote
    `NAME=value`)."""
    values: dict[str, str] = {}
    if not env_file.exists():
        return values
    for line in env_file.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        name, _, value = line.removeprefix("export ").partition("=")
        words = shlex.split(value)
        values[name.strip()] = words[0] if words else ""
    return values


def write_demo_env(data_dir: Path, *, public_url: str, mlflow_port: int) -> Path:
    """Write `<data dir>/demo.env` (0600: it holds the admin token), keeping the secrets of an
    earlier demo in the same dir; the demo's `gatekeeper serve` runs with exactly these."""
    from service.config import Settings

    data_dir = data_dir.resolve()
    env_file = data_dir / ENV_FILE
    earlier = read_demo_env(env_file)
    # the database `serve` keeps in that data dir, from the one place that knows
    database_url = Settings.model_construct(data_dir=data_dir).resolved_database_url
    values = {
        "GATEKEEPER_DATA_DIR": str(data_dir),
        "GATEKEEPER_DATABASE_URL": database_url,
        **{name: earlier.get(name) or secrets.token_urlsafe(24) for name in DEMO_SECRETS},
        "GATEKEEPER_PUBLIC_URL": public_url,
        "GATEKEEPER_EMBEDDED_MLFLOW_PORT": str(mlflow_port),
    }
    lines = [
        "# Written by `make demo`. `source` it and the gatekeeper CLI (token create, policy test,",
        "# ...) uses the demo's database, from any directory.",
        *(f"export {name}={shlex.quote(value)}" for name, value in values.items()),
    ]
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    env_file.chmod(0o600)  # a file an older demo wrote with other bits
    return env_file


def _wait(url: str, timeout: float, log_file: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).is_success:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    typer.echo(f"gatekeeper did not become ready; last log lines of {log_file}:", err=True)
    typer.echo("\n".join(log_file.read_text(errors="replace").splitlines()[-30:]), err=True)
    raise typer.Exit(1)


def run_demo(data_dir: Path, port: int) -> None:
    from mlflow import MlflowClient

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    _stop_previous(data_dir)
    port = _pick_port(port)
    mlflow_port = _pick_port(5000)
    url = f"http://127.0.0.1:{port}"
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    env_file = write_demo_env(data_dir, public_url=url, mlflow_port=mlflow_port)
    demo_env = read_demo_env(env_file)
    webhook_secret = demo_env["GATEKEEPER_WEBHOOK_SECRET"]
    admin_token = demo_env["GATEKEEPER_ADMIN_TOKEN"]
    env = dict(os.environ)
    for key in ("MLFLOW_TRACKING_URI", "GATEKEEPER_MLFLOW_TRACKING_URI"):
        env.pop(key, None)  # the demo's gatekeeper starts its own MLflow
    env.update(demo_env)
    log_file = data_dir / "gatekeeper.log"
    typer.echo(f"1/5 starting gatekeeper serve (embedded MLflow, SQLite in {data_dir}) ...")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gatekeeper"), "serve", "--port", str(port)],
        env=env,
        stdout=log_file.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    (data_dir / "gatekeeper.pid").write_text(str(process.pid))
    _wait(f"{url}/readyz", 180, log_file)

    typer.echo(f"2/5 registering the MLflow webhook -> {url}/webhooks/mlflow (HMAC secret)")
    client = MlflowClient(mlflow_url)
    for hook in client.list_webhooks():
        if hook.name == WEBHOOK_NAME:
            client.delete_webhook(hook.webhook_id)
    client.create_webhook(
        name=WEBHOOK_NAME,
        url=f"{url}/webhooks/mlflow",
        events=["model_version.created"],
        secret=webhook_secret,
    )
    time.sleep(3)  # the MLflow server caches its webhook list (2 s on the embedded server)

    marker = data_dir / "PAYLOAD-RAN"
    marker.unlink(missing_ok=True)
    typer.echo(f"3/5 logging and registering two versions of '{MODEL_NAME}' ...")
    clean = log_clean_model(mlflow_url, MODEL_NAME)
    malicious = log_malicious_model(mlflow_url, MODEL_NAME, marker)
    typer.echo(f"    v{clean}: a clean scikit-learn model")
    typer.echo(f"    v{malicious}: a pickle that would run `touch {marker}` when loaded")

    typer.echo("4/5 waiting for the gatekeeper's decisions ...")
    headers = {"Authorization": f"Bearer {admin_token}"}
    runs = {v: _wait_for_run(url, headers, v) for v in (clean, malicious)}
    aliases = client.get_registered_model(MODEL_NAME).aliases

    typer.echo("5/5 decisions:")
    for version, run in runs.items():
        tags = client.get_model_version(MODEL_NAME, str(version)).tags
        if run["status"] == "passed":
            typer.echo(
                f"    v{version}: PROMOTED  ({run['trigger']} -> {tags['gatekeeper.status']})"
            )
        else:
            finding = _first_finding(run)
            typer.echo(f"    v{version}: BLOCKED   ({run['status']}: {finding})")
        typer.echo(f"           gates  {_gates_line(run)}")
        typer.echo(f"           report {run['report_url']}")
    typer.echo(f"    alias production-ready -> v{aliases.get('production-ready', '-')}")
    payload_ran = "YES - investigate!" if marker.exists() else "no (the pickle was never loaded)"
    typer.echo(f"    marker file exists: {payload_ran}")
    typer.echo("")
    typer.echo(f"Gatekeeper is running: {url}  (pid {process.pid}, log {log_file})")
    typer.echo(f"MLflow UI:             {mlflow_url}")
    typer.echo(f"Admin token:           in {env_file}")
    typer.echo(
        f"The CLI on this demo:  source {_shown(env_file)}  (then gatekeeper token create ...)"
    )
    typer.echo(f"Stop it with:          kill -TERM -{process.pid}")


def _shown(path: Path) -> str:
    """`path` as the user would type it here: relative to the current directory if under it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _wait_for_run(url: str, headers: dict[str, str], version: int) -> dict:
    path = f"{url}/api/v1/models/{MODEL_NAME}/versions/{version}/runs"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        body = httpx.get(path, headers=headers, timeout=10).json()
        done = [r for r in body.get("data", []) if r["published_at"]]
        if done:
            return done[0]
        time.sleep(0.5)
    typer.echo(f"no decision for v{version} after 180 s", err=True)
    raise typer.Exit(1)


def _gates_line(run: dict) -> str:
    """`security pass; not configured: performance, ...`: what the verdict covers."""
    ran = [f"{g['gate']} {g['status']}" for g in run["gates"] if g["status"] != "not_configured"]
    unset = [g["gate"] for g in run["gates"] if g["status"] == "not_configured"]
    return "; ".join(ran + ([f"not configured: {', '.join(unset)}"] if unset else []))


def _first_finding(run: dict) -> str:
    for gate in run["gates"]:
        for finding in gate["findings"]:
            where = finding.get("file") or "?"
            callable_name = finding.get("evidence", {}).get("callable", "")
            return f"{finding['severity']} {callable_name} in {where} - {finding['message']}"
    return "; ".join((run.get("decision") or {}).get("deny", [])) or run.get("error_message", "")
