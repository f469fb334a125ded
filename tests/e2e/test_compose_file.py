"""docker-compose.yml validates and wires the four services the way the design says.

Offline: `docker-compose config` only parses, interpolates and validates the file; it needs
no Docker engine. The binary is a hard requirement of the suite (Debian: `apt-get install
docker-compose`), so its absence fails the test instead of skipping it.
"""

from __future__ import annotations

import functools
import json
import os
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"

EXPECTED_SERVICES = {"postgres", "mlflow", "gatekeeper-api", "gatekeeper-worker"}
GATEKEEPER_SERVICES = ("gatekeeper-api", "gatekeeper-worker")

# Variables the compose file refuses to run without (`${VAR:?message}`).
REQUIRED_VARS = {
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": "ZHVtbXktZmVybmV0LWtleS1mb3ItdGVzdHMtMDAwMDA=",
    "GATEKEEPER_WEBHOOK_SECRET": "dummy-webhook-secret-for-tests",
    "GATEKEEPER_ADMIN_TOKEN": "dummy-admin-token-for-tests",
}


def _docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail(
            "docker-compose is not installed; it validates docker-compose.yml offline. "
            "Install it with `apt-get install docker-compose` (Debian/Ubuntu).",
            pytrace=False,
        )
    return binary


def _compose_env(**overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    env.update(REQUIRED_VARS)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _run_config(
    tmp_path: Path, env: dict[str, str], *extra: str
) -> subprocess.CompletedProcess[str]:
    # An empty env file, so a developer's own .env beside the compose file cannot change
    # what is being tested.
    env_file = tmp_path / "empty.env"
    env_file.touch()
    cmd = [
        _docker_compose(),
        "--project-directory",
        str(ROOT),
        "-f",
        str(COMPOSE_FILE),
        "--env-file",
        str(env_file),
        "config",
        *extra,
    ]
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _supports_json_format() -> bool:
    # Compose v2 has `config --format json`; Debian's docker-compose 1.29 prints YAML only.
    result = subprocess.run(
        [_docker_compose(), "config", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return "--format" in result.stdout + result.stderr


def _environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) for item in raw)
        return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def _command(service: dict[str, Any]) -> list[str]:
    raw = service.get("command") or []
    return shlex.split(raw) if isinstance(raw, str) else [str(part) for part in raw]


@functools.cache
def _services() -> dict[str, Any]:
    # Called from each test rather than a fixture, so a missing binary or an invalid file
    # reports every test as failed, not as an error in set-up.
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    extra = ("--format", "json") if _supports_json_format() else ()
    with tempfile.TemporaryDirectory() as tmp:
        result = _run_config(Path(tmp), _compose_env(), *extra)
    assert result.returncode == 0, (
        f"docker-compose config failed (exit {result.returncode}):\n{result.stderr}"
    )
    # JSON is YAML too, so one parser covers both output formats.
    config = yaml.safe_load(result.stdout)
    assert isinstance(config, dict), f"unexpected config output:\n{result.stdout}"
    return config["services"]


def test_services_are_exactly_the_four() -> None:
    services = _services()
    assert set(services) == EXPECTED_SERVICES


def test_mlflow_can_deliver_webhooks_to_the_gatekeeper() -> None:
    env = _environment(_services()["mlflow"])
    assert "MLFLOW_WEBHOOK_ALLOWED_SCHEMES" in env
    assert "http" in env["MLFLOW_WEBHOOK_ALLOWED_SCHEMES"].split(",")
    assert env.get("MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS") == "true"
    assert (
        env.get("MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY")
        == (REQUIRED_VARS["MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"])
    )


@pytest.mark.parametrize("name", GATEKEEPER_SERVICES)
def test_gatekeeper_services_use_postgres_and_mlflow(name: str) -> None:
    env = _environment(_services()[name])
    database_url = env.get("GATEKEEPER_DATABASE_URL", "")
    assert database_url.startswith("postgresql"), database_url
    assert "@postgres:5432/" in database_url, database_url
    assert env.get("GATEKEEPER_MLFLOW_TRACKING_URI") == "http://mlflow:5000"
    assert env.get("GATEKEEPER_WEBHOOK_SECRET") == REQUIRED_VARS["GATEKEEPER_WEBHOOK_SECRET"]
    assert env.get("GATEKEEPER_ADMIN_TOKEN") == REQUIRED_VARS["GATEKEEPER_ADMIN_TOKEN"]


def test_only_the_api_runs_the_poller() -> None:
    services = _services()
    api = _command(services["gatekeeper-api"])
    assert api[:2] == ["gatekeeper", "serve"]
    assert "--no-worker" in api
    assert _command(services["gatekeeper-worker"]) == ["gatekeeper", "worker"]


@pytest.mark.parametrize("missing", sorted(REQUIRED_VARS))
def test_missing_secret_fails_with_a_clear_message(tmp_path: Path, missing: str) -> None:
    result = _run_config(tmp_path, _compose_env(**{missing: None}), "-q")
    assert result.returncode != 0, f"config validated without {missing}"
    assert f"set {missing} to" in result.stderr + result.stdout


def test_worker_gets_what_the_sandbox_needs_and_never_runs_as_root() -> None:
    services = _services()
    for name in GATEKEEPER_SERVICES:
        user = str(services[name].get("user", ""))
        assert user and user.split(":")[0] not in ("0", "root"), (name, user)
    worker = services["gatekeeper-worker"]
    assert worker.get("cap_drop") == ["ALL"]
    options = worker.get("security_opt") or []
    # compose v1 prints `seccomp:FILE`, v2 keeps `seccomp=FILE`
    seccomp = [o[len("seccomp") + 1 :] for o in options if o.startswith(("seccomp=", "seccomp:"))]
    assert seccomp and seccomp[0] not in ("unconfined",), options
    profile = json.loads((ROOT / seccomp[0]).read_text())
    denied = {n for rule in profile["syscalls"] for n in rule["names"]}
    # what bubblewrap needs stays allowed; what escapes containers is denied
    assert not denied & {"unshare", "clone", "clone3", "mount", "pivot_root", "setns"}
    assert {"kexec_load", "init_module", "bpf", "ptrace", "keyctl"} <= denied
    assert "systempaths=unconfined" in options
