"""Real parts for the tests: an MLflow server, gatekeeper processes, models, signed webhooks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from service.api.webhook_signature import sign
from service.errors import ConfigError
from service.mlflow.embedded import EmbeddedMlflow
from service.processes import kill_process_group, stop_process_group

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
WEBHOOK_SECRET = "test-webhook-secret-0123456789"
ADMIN_TOKEN = "test-admin-token-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:
            last_error = exc
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error})"
    )


def tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "<no log>"


class MlflowServer:
    """One real `mlflow server` (SQLite backend, local artifacts) with webhooks to loopback,
    started by the same code as `gatekeeper serve`'s embedded server."""

    def __init__(self, root: Path) -> None:
        self.embedded = EmbeddedMlflow(root, free_port(), workers=2, webhook_cache_ttl_s=1)
        self.url = self.embedded.url
        self.log = self.embedded.root / "server.log"

    def start(self) -> None:
        try:
            self.embedded.start()
        except ConfigError as exc:
            raise RuntimeError(f"mlflow server did not start: {exc}\n{tail(self.log)}") from exc

    def stop(self) -> None:
        self.embedded.stop()


class GatekeeperProcess:
    """`gatekeeper serve` or `gatekeeper worker` as a user runs it, in its own process group."""

    def __init__(
        self,
        *,
        data_dir: Path,
        database_url: str,
        tracking_uri: str,
        models: str,
        command: str = "serve",
        extra_args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.database_url = database_url
        self.command = command
        self.log = (log_dir or data_dir) / f"gatekeeper-{command}-{self.port}.log"
        self.env = dict(os.environ)
        self.env.update(
            GATEKEEPER_DATA_DIR=str(data_dir),
            GATEKEEPER_DATABASE_URL=database_url,
            GATEKEEPER_MLFLOW_TRACKING_URI=tracking_uri,
            GATEKEEPER_WEBHOOK_SECRET=WEBHOOK_SECRET,
            GATEKEEPER_ADMIN_TOKEN=ADMIN_TOKEN,
            GATEKEEPER_MODELS=models,
            GATEKEEPER_PUBLIC_URL=self.url,
            GATEKEEPER_POLL_INTERVAL_S="3600",
            GATEKEEPER_WORKER_IDLE_SLEEP_S="0.2",
            GATEKEEPER_RETRY_BACKOFF_S="1",
        )
        self.env.update(env or {})
        self.args = [str(VENV_BIN / "gatekeeper"), command]
        if command == "serve":
            self.args += ["--port", str(self.port)]
        self.args += list(extra_args)
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    def api_only(
        cls, *, data_dir: Path, database_url: str, tracking_uri: str, models: str
    ) -> GatekeeperProcess:
        """`serve --no-worker --no-poller`: the HTTP API alone; nothing claims or polls."""
        return cls(
            data_dir=data_dir, database_url=database_url, tracking_uri=tracking_uri,
            models=models, extra_args=("--no-worker", "--no-poller"),
        )  # fmt: skip

    def start(self, wait: bool = True) -> GatekeeperProcess:
        data_dir = self.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            self.args,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait and self.command == "serve":
            wait_for(self._healthy, 90, f"gatekeeper serve on {self.url}\n{tail(self.log)}")
            if "--no-poller" not in self.args:
                # The poller's first cycle runs at start; one that runs late (a loaded CI
                # machine) finds the version a test registered meanwhile and queues a second
                # run beside the test's own. Started means: that cycle is behind us.
                wait_for(self._polled_once, 90, f"the first poll cycle\n{tail(self.log)}")
        return self

    def _polled_once(self) -> bool:
        metrics = httpx.get(f"{self.url}/metrics", timeout=5).text
        return any(
            line.startswith("gatekeeper_poll_cycles_total{") and float(line.split()[-1]) >= 1
            for line in metrics.splitlines()
        )

    def _healthy(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(
                f"gatekeeper exited with {self.process.returncode}:\n{tail(self.log)}"
            )
        return httpx.get(f"{self.url}/healthz", timeout=2).is_success

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a lost node would."""
        assert self.process is not None
        kill_process_group(self.process.pid)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            stop_process_group(self.process, grace_s=20)

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", **kwargs.pop("headers", {})}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def run_version(self, name: str, version: int, timeout: float = 180) -> dict[str, Any]:
        """A manual run of `name` v`version`, as the admin, waited for until it is published."""
        run = self.api("POST", f"/api/v1/models/{name}/versions/{version}/runs").json()

        def published() -> dict[str, Any] | None:
            body = self.api("GET", f"/api/v1/runs/{run['id']}").json()
            return body if body["published_at"] else None

        return wait_for(published, timeout, f"{name} v{version} decision", interval=0.3)


def stored_artifact(server: MlflowServer, name: str, version: int, filename: str) -> Path:
    """A version's file as the artifact store keeps it (the MLflow server's own directory),
    for tests that change it as someone with store access would."""
    from urllib.parse import urlsplit

    from mlflow import MlflowClient

    source = MlflowClient(server.url).get_model_version(name, str(version)).source
    if source.startswith("models:/"):  # a logged model (MLflow 3)
        pattern = f"**/{source.removeprefix('models:/')}/artifacts/{filename}"
    elif source.startswith("runs:/"):
        run_id, _, path = source.removeprefix("runs:/").partition("/")
        pattern = f"**/{run_id}/artifacts/{path}/{filename}"
    else:  # mlflow-artifacts:/EXPERIMENT/RUN/artifacts/PATH
        pattern = f"**/{urlsplit(source).path.strip('/')}/{filename}"
    [path] = list((server.embedded.root / "artifacts").glob(pattern))
    return path


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def create_api_token(database_url: str, role: str = "viewer", name: str | None = None) -> str:
    """A token as `gatekeeper token create` makes it, straight into the service's database."""
    from service.store.auth import create_token
    from service.store.db import transaction

    with transaction(database_url) as session:
        return create_token(session, name=name or f"{role}-{uuid.uuid4().hex[:6]}", role=role)


def pinned_public_key(gk: GatekeeperProcess, path: Path) -> Path:
    """The gatekeeper's public key saved where a deploy job keeps it (fetched once, out of
    band, as an operator would hand it over)."""
    path.write_bytes(httpx.get(f"{gk.url}/api/v1/keys/public", timeout=30).content)
    return path


def run_verify(
    server: MlflowServer, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`gatekeeper verify ARGS` as a deploy job runs it: a clean environment with the
    registry's URI (and whatever the job sets: GATEKEEPER_TOKEN, GATEKEEPER_PUBLIC_URL)."""
    clean = {"PATH": "/usr/bin:/bin", "MLFLOW_TRACKING_URI": server.url, **(env or {})}
    return subprocess.run(
        [str(VENV_BIN / "gatekeeper"), "verify", *args],
        capture_output=True, text=True, env=clean, timeout=180,
    )  # fmt: skip


@dataclass(frozen=True)
class LoggedInput:
    """A dataset a training run logs with `mlflow.log_input` (metadata: the rows stay where
    `source` says)."""

    frame: Any  # a pandas DataFrame
    source: str
    context: str
    name: str | None = None


def log_sklearn_with_inputs(
    tracking_uri: str, name: str, model: Any, features: Any, inputs: Sequence[LoggedInput]
) -> tuple[int, list[Any]]:
    """Register a fitted scikit-learn `model` (pickle format, its signature inferred on
    `features`), its run logging each of `inputs`; the version and the logged datasets."""
    import mlflow
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    logged = []
    with mlflow.start_run():
        for item in inputs:
            dataset = mlflow.data.from_pandas(item.frame, source=item.source, name=item.name)
            mlflow.log_input(dataset, context=item.context)
            logged.append(dataset)
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, serialization_format="pickle",
            signature=infer_signature(features, model.predict(features)),
        )  # fmt: skip
    return int(info.registered_model_version), logged


def gate_result(run: dict[str, Any], gate: str) -> dict[str, Any]:
    return next(g for g in run["gates"] if g["gate"] == gate)


class Listener:
    """A TCP server on the host the tests own, counting the connections it accepts.

    `hold=True` keeps each connection open and never answers: a server that hangs."""

    def __init__(self, *, hold: bool = False) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._hold = hold
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.accepted += 1
            if self._hold:
                self._held.append(conn)
            else:
                conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._held:
            conn.close()
        self.sock.close()


def signed_webhook_headers(
    body: bytes,
    *,
    secret: str = WEBHOOK_SECRET,
    delivery_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    delivery_id = delivery_id or str(uuid.uuid4())
    ts = str(timestamp if timestamp is not None else int(time.time()))
    return {
        "Content-Type": "application/json",
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": ts,
        "X-MLflow-Signature": sign(secret, delivery_id, ts, body),
    }


def version_created_body(name: str, version: int | str) -> bytes:
    return json.dumps(
        {
            "entity": "model_version",
            "action": "created",
            "timestamp": "2026-11-25T00:00:00+00:00",
            "data": {"name": name, "version": str(version), "source": "models:/x", "run_id": None},
        }
    ).encode()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
