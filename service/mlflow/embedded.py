"""A local `mlflow server` for a one-command installation when no tracking URI is configured.

SQLite backend and local artifacts under the data dir, webhooks allowed to reach loopback, and
a Fernet key kept in the data dir so stored webhook secrets survive a restart.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.errors import ConfigError
from service.processes import stop_process_group

log = logging.getLogger("gatekeeper.embedded_mlflow")

START_TIMEOUT_S = 120


class EmbeddedMlflow:
    def __init__(
        self,
        data_dir: Path,
        port: int,
        host: str = "127.0.0.1",
        *,
        workers: int = 1,
        webhook_cache_ttl_s: int = 2,
    ) -> None:
        self.root = (data_dir / "mlflow").resolve()
        self.host = host
        self.port = port
        self.workers = workers
        # a webhook made a moment ago should hear the next registration on a local install
        self.webhook_cache_ttl_s = webhook_cache_ttl_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        if _port_in_use(self.host, self.port):
            raise ConfigError(
                f"port {self.port} is in use, so the embedded MLflow server cannot start; "
                "set GATEKEEPER_MLFLOW_TRACKING_URI to an existing server or "
                "GATEKEEPER_EMBEDDED_MLFLOW_PORT to a free port"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(
            MLFLOW_WEBHOOK_ALLOWED_SCHEMES="http,https",
            MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS="true",
            MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY=self._encryption_key(),
            MLFLOW_WEBHOOK_CACHE_TTL=str(self.webhook_cache_ttl_s),
        )
        mlflow_bin = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or "mlflow"
        command = [
            mlflow_bin, "server",
            "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
            "--artifacts-destination", str(self.root / "artifacts"),
            "--host", self.host, "--port", str(self.port), "--workers", str(self.workers),
        ]  # fmt: skip
        log_file = (self.root / "server.log").open("ab")
        self.process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._wait_healthy()
        log.info("embedded MLflow server at %s (data in %s)", self.url, self.root)
        return self.url

    def stop(self) -> None:
        """Stop the server and its workers (its own process group) together."""
        if self.process is not None:
            stop_process_group(self.process, grace_s=15)

    def _encryption_key(self) -> str:
        from cryptography.fernet import Fernet

        key_file = self.root / "webhook-encryption.key"
        if not key_file.exists():
            key_file.write_bytes(Fernet.generate_key())
            key_file.chmod(0o600)
        return key_file.read_text().strip()

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ConfigError(
                    f"embedded MLflow server exited with {self.process.returncode}; "
                    f"see {self.root / 'server.log'}"
                )
            try:
                if httpx.get(f"{self.url}/health", timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ConfigError(f"embedded MLflow server not healthy after {START_TIMEOUT_S}s")


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex((host, port)) == 0
