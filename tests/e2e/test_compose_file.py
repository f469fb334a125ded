"""docker-compose.yml validates and wires the four services the way the design says.

Offline and without Docker: the file is read, its `${VAR}` / `${VAR:?message}` /
`${VAR:-default}` references interpolated as Compose does, and the result validated against
the Compose specification's JSON schema (tests/e2e/data/compose_spec.json, the schema of the
compose-spec project as Docker Compose 1.29 ships it, Apache-2.0), so a fresh machine needs
neither Docker nor the docker-compose binary to run these tests.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).with_name("data") / "compose_spec.json"

EXPECTED_SERVICES = {"postgres", "mlflow", "gatekeeper-api", "gatekeeper-worker"}
GATEKEEPER_SERVICES = ("gatekeeper-api", "gatekeeper-worker")

# Variables the compose file refuses to run without (`${VAR:?message}`).
REQUIRED_VARS = {
    "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": "ZHVtbXktZmVybmV0LWtleS1mb3ItdGVzdHMtMDAwMDA=",
    "GATEKEEPER_WEBHOOK_SECRET": "dummy-webhook-secret-for-tests",
    "GATEKEEPER_ADMIN_TOKEN": "dummy-admin-token-for-tests",
}
_REFERENCE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_]\w*)")


class ComposeError(Exception):
    """What `docker compose config` would refuse, with its message."""


def _compose_env(**overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    env.update(REQUIRED_VARS)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _interpolate_text(text: str, env: dict[str, str]) -> str:
    # Compose's rules: `:?` errors on unset or empty, `?` on unset; `:-` defaults on unset or
    # empty, `-` on unset; `$$` is a literal dollar.
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        value = env.get(name)
        missing = value is None or (op is not None and op.startswith(":") and value == "")
        if op in (":?", "?") and missing:
            raise ComposeError(f"required variable {name} is missing a value: {arg}")
        if op in (":-", "-") and missing:
            return arg
        return value or ""

    return _REFERENCE.sub(replace, text)


def _interpolate(node: Any, env: dict[str, str]) -> Any:
    if isinstance(node, str):
        return _interpolate_text(node, env)
    if isinstance(node, list):
        return [_interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _interpolate(value, env) for key, value in node.items()}
    return node


def load_compose(env: dict[str, str]) -> dict[str, Any]:
    """The interpolated compose document, validated against the Compose specification."""
    assert COMPOSE_FILE.is_file(), f"{COMPOSE_FILE} is missing"
    document = _interpolate(yaml.safe_load(COMPOSE_FILE.read_text()), env)
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
    if errors:
        where = "/".join(map(str, errors[0].absolute_path))
        raise ComposeError(
            f"docker-compose.yml does not follow the spec at {where}: {errors[0].message}"
        )
    return document


@functools.cache
def _services() -> dict[str, Any]:
    return load_compose(_compose_env())["services"]


def _environment(service: dict[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        pairs = (item.split("=", 1) for item in raw)
        return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}
    return {key: "" if value is None else str(value) for key, value in raw.items()}


def _command(service: dict[str, Any]) -> list[str]:
    raw = service.get("command") or []
    return shlex.split(raw) if isinstance(raw, str) else [str(part) for part in raw]


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
def test_missing_secret_fails_with_a_clear_message(missing: str) -> None:
    with pytest.raises(ComposeError) as caught:
        load_compose(_compose_env(**{missing: None}))
    assert f"set {missing} to" in str(caught.value)


def test_the_schema_catches_a_broken_file() -> None:
    """The validation can fail: an unknown service key is refused by the spec."""
    document = load_compose(_compose_env())
    document["services"]["mlflow"]["restart_policy_typo"] = "always"
    schema = json.loads(SCHEMA.read_text())
    assert list(jsonschema.Draft201909Validator(schema).iter_errors(document))


def test_worker_gets_what_the_sandbox_needs_and_never_runs_as_root() -> None:
    services = _services()
    for name in GATEKEEPER_SERVICES:
        user = str(services[name].get("user", ""))
        assert user and user.split(":")[0] not in ("0", "root"), (name, user)
    worker = services["gatekeeper-worker"]
    assert worker.get("cap_drop") == ["ALL"]
    options = worker.get("security_opt") or []
    seccomp = [o.split("=", 1)[1] for o in options if o.startswith("seccomp=")]
    assert seccomp and seccomp[0] not in ("unconfined",), options
    profile = json.loads((ROOT / seccomp[0]).read_text())
    denied = {n for rule in profile["syscalls"] for n in rule["names"]}
    # what bubblewrap needs stays allowed; what escapes containers is denied
    assert not denied & {"unshare", "clone", "clone3", "mount", "pivot_root", "setns"}
    assert {"kexec_load", "init_module", "bpf", "ptrace", "keyctl"} <= denied
    assert "systempaths=unconfined" in options
