"""Policy as code through the service, on a real MLflow server: warn mode, waivers, Rego
modules, and `gatekeeper policy test` replaying a stored run with MLflow unreachable."""

from __future__ import annotations

import datetime as dt
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from demo.models import log_malicious_model
from tests.helpers import (
    VENV_BIN,
    GatekeeperProcess,
    MlflowServer,
    free_port,
    gate_result,
    unique_name,
)
from tests.synthetic_credit import TARGET, make_credit_data, train_model

PREFIX = unique_name("policy")

RULES = """package gatekeeper

import rego.v1

deny contains msg if {
	input.model.description == ""
	model := input.model
	msg := sprintf("%s v%d has no description: say what it is for", [model.name, model.version])
}

deny contains msg if {
	input.model.name in {"BLOCKED"}
	msg := sprintf("%s is a retired model name", [input.model.name])
}
"""


def _policy(eval_csv: Path, fairness_mode: str) -> str:
    data = (
        f'    data:\n      evaluation: {{uri: "file://{eval_csv}", target: {TARGET}}}\n'
        "      sensitive_features: [gender]\n"
    )
    return (
        "models:\n"
        f'  - match: "{PREFIX}-warn-*"\n{data}'
        f"    gates:\n      fairness: {{mode: {fairness_mode}, bootstrap: 50}}\n"
        f'  - match: "{PREFIX}-waive-*"\n{data}'
        "    gates:\n      fairness: {mode: enforce, bootstrap: 50}\n"
        f'  - match: "{PREFIX}-rego-*"\n'
        "    rego: [rules.rego]\n"
    )


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("policy-as-code")
    make_credit_data(n=2000, seed=11, biased=False).to_csv(root / "eval.csv", index=False)
    (root / "policy.yaml").write_text(_policy(root / "eval.csv", "warn"))
    (root / "rules.rego").write_text(RULES.replace("BLOCKED", f"{PREFIX}-rego-legacy"))
    return root


@pytest.fixture(scope="module")
def service(mlflow_server: MlflowServer, workdir: Path) -> Iterator[GatekeeperProcess]:
    gk = GatekeeperProcess(
        data_dir=workdir / "gk",
        database_url=f"sqlite:///{workdir / 'gk.db'}",
        tracking_uri=mlflow_server.url,
        models="none",
        env={"GATEKEEPER_POLICY_PATH": str(workdir / "policy.yaml")},
    ).start()
    yield gk
    gk.stop()


@pytest.fixture(scope="module")
def biased_model() -> Any:
    return train_model(make_credit_data(n=4000, seed=1, biased=True))


def _log(tracking_uri: str, name: str, model: Any, description: str | None = None) -> int:
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, serialization_format="pickle"
        )
    version = int(info.registered_model_version)
    if description is not None:
        MlflowClient(tracking_uri).update_model_version(name, str(version), description)
    return version


def test_a_fairness_failure_in_warn_mode_promotes_with_the_warning_shown(
    service: GatekeeperProcess, mlflow_server: MlflowServer, biased_model: Any
) -> None:
    client = MlflowClient(mlflow_server.url)
    name = f"{PREFIX}-warn-credit"
    run = service.run_version(name, _log(mlflow_server.url, name, biased_model))

    assert gate_result(run, "fairness")["status"] == "fail"  # the gate's own verdict stands
    assert run["status"] == "passed", run["decision"]["deny"]
    assert any(w.startswith("fairness: ") for w in run["decision"]["warn"])
    tags = client.get_model_version(name, "1").tags
    assert tags["gatekeeper.gate.fairness"] == "warn" and tags["gatekeeper.status"] == "passed"
    assert client.get_registered_model(name).aliases["production-ready"] == "1"
    page = service.api("GET", f"/runs/{run['id']}").text
    assert "Warnings" in page and "fail (warn)" in page


def test_a_waiver_lets_a_fairness_failure_through_until_it_expires(
    service: GatekeeperProcess, mlflow_server: MlflowServer, biased_model: Any, workdir: Path
) -> None:
    client = MlflowClient(mlflow_server.url)
    name = f"{PREFIX}-waive-credit"
    version = _log(mlflow_server.url, name, biased_model)
    assert service.run_version(name, version)["status"] == "failed"

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=15)
    reason = "parity fix ships next sprint (JIRA-42)"
    body = {"model": name, "version": version, "gate": "fairness", "reason": reason,
            "expires_at": expires.isoformat()}  # fmt: skip
    created = service.api("POST", "/api/v1/waivers", json=body)
    assert created.status_code == 201, created.text
    waiver = created.json()
    assert waiver["state"] == "active" and waiver["created_by"]

    waived = service.run_version(name, version)
    assert waived["status"] == "waived", waived["decision"]
    assert waived["decision"]["waived"][0]["waivers"] == [waiver["id"]]
    tags = client.get_model_version(name, str(version)).tags
    assert tags["gatekeeper.status"] == "waived" and tags["gatekeeper.gate.fairness"] == "waived"
    # the summary says what was let through and by which waiver, not "all gates passed"
    assert tags["gatekeeper.summary"].startswith(f"waived: fairness by {waiver['id']}: ")
    assert client.get_registered_model(name).aliases["production-ready"] == str(version)
    page = service.api("GET", f"/runs/{waived['id']}").text
    assert "Waivers applied" in page and waiver["id"] in page and "JIRA-42" in page

    time.sleep(max(0.0, (expires - dt.datetime.now(dt.UTC)).total_seconds()) + 1)
    listed = service.api("GET", f"/api/v1/waivers?model={name}").json()["data"]
    assert [w["state"] for w in listed] == ["expired"]
    again = service.run_version(name, version)
    assert again["status"] == "failed", again["decision"]
    assert client.get_model_version(name, str(version)).tags["gatekeeper.status"] == "failed"

    revoked = service.api("DELETE", f"/api/v1/waivers/{waiver['id']}").json()
    assert revoked["state"] == "revoked"
    with sqlite3.connect(workdir / "gk.db") as db:
        actions = db.execute(
            "SELECT action, actor FROM audit_events WHERE action LIKE 'waiver.%' ORDER BY id"
        ).fetchall()
    # it let nothing through any more (the re-run failed): nothing was decided again
    assert [a for a, _ in actions] == ["waiver.created", "waiver.revoked"]
    assert all(actor for _, actor in actions)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"expires_at": "2099-01-01T00:00:00Z"}, "more than 30 days"),
        ({"expires_at": "2020-01-01T00:00:00Z"}, "in the past"),
        ({"expires_at": "2026-12-01T00:00:00"}, "time zone"),
        ({"gate": None}, "exactly one of gate, rule_id"),
        ({"gate": "vibes"}, "gate must be one of"),
        ({}, "MLflow has no registered model 'm'"),
        ({"version": None}, "give a version or an artifact_digest"),
    ],
)
def test_a_bad_waiver_request_is_refused_with_a_reason(
    service: GatekeeperProcess, change: dict[str, Any], words: str
) -> None:
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    body = {"model": "m", "version": 1, "gate": "fairness", "reason": "because",
            "expires_at": tomorrow, **change}  # fmt: skip
    answer = service.api("POST", "/api/v1/waivers", json=body)
    assert answer.status_code in (400, 422) and words in answer.text, answer.text
    anonymous = service.api("POST", "/api/v1/waivers", json=body, headers={"Authorization": ""})
    assert anonymous.status_code == 401


def test_a_waiver_that_would_do_nothing_is_refused_with_the_reason(
    service: GatekeeperProcess, mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    """A misspelt rule, an unknown model, a version nobody ran, or a CRITICAL finding the
    entry never lets a waiver cover: each was accepted (201) and silently changed nothing."""
    name = f"{PREFIX}-rego-critical"
    version = log_malicious_model(mlflow_server.url, name, tmp_path / "NEVER")
    assert service.run_version(name, version)["status"] == "failed"  # CRITICAL os.system
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).isoformat()
    base = {"model": name, "version": version, "reason": "because", "expires_at": tomorrow}
    cases = [
        ({"rule_id": "SEC-PICKL-001"}, "did you mean SEC-PICKLE-001"),
        ({"rule_id": "SEC-PICKLE-001"}, "CRITICAL"),
        ({"gate": "security"}, "SEC-PICKLE-001 is a CRITICAL security finding"),
        ({"gate": "fairness", "model": f"{name}-typo"}, "no registered model"),
        ({"gate": "fairness", "version": version + 40}, "has no recorded run"),
    ]
    for change, words in cases:
        answer = service.api("POST", "/api/v1/waivers", json={**base, **change})
        assert answer.status_code == 400 and words in answer.text, (change, answer.text)
    assert not (tmp_path / "NEVER").exists()


def test_a_rego_module_blocks_a_version_with_its_message(
    service: GatekeeperProcess, mlflow_server: MlflowServer
) -> None:
    model = train_model(make_credit_data(n=1000, seed=5), include_gender=False)
    name = f"{PREFIX}-rego-credit"
    bare = service.run_version(name, _log(mlflow_server.url, name, model))
    assert bare["status"] == "failed"
    assert bare["decision"]["deny"] == [f"{name} v1 has no description: say what it is for"]
    described = _log(mlflow_server.url, name, model, description="credit risk, weekly")
    assert service.run_version(name, described)["status"] == "passed"
    legacy = f"{PREFIX}-rego-legacy"
    blocked = service.run_version(legacy, _log(mlflow_server.url, legacy, model, "old"))
    assert blocked["decision"]["deny"] == [f"{legacy} is a retired model name"]


def test_policy_test_replays_a_stored_run_under_a_stricter_policy_without_mlflow(
    service: GatekeeperProcess, mlflow_server: MlflowServer, workdir: Path
) -> None:
    """The replay reads the stored run and nothing else: MLflow here is a closed port."""
    runs = service.api(
        "GET", f"/api/v1/models/{PREFIX}-warn-credit/versions/1/runs"
    ).json()["data"]  # fmt: skip
    run_id = next(r["id"] for r in runs if r["status"] == "passed")
    stricter = workdir / "stricter.yaml"
    stricter.write_text(_policy(workdir / "eval.csv", "enforce"))
    nowhere = f"http://127.0.0.1:{free_port()}"
    env = {"GATEKEEPER_DATABASE_URL": f"sqlite:///{workdir / 'gk.db'}",
           "GATEKEEPER_MLFLOW_TRACKING_URI": nowhere, "MLFLOW_TRACKING_URI": nowhere,
           "PATH": "/usr/bin:/bin"}  # fmt: skip
    command = [str(VENV_BIN / "gatekeeper"), "policy", "test", "--run", run_id, "--policy"]
    done = subprocess.run(
        [*command, str(stricter)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "recorded: passed" in done.stdout and "stricter.yaml: failed" in done.stdout
    assert "+ deny: fairness: " in done.stdout and "- warn: fairness: " in done.stdout
    same = subprocess.run(
        [*command, str(workdir / "policy.yaml")],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert same.returncode == 0 and "no deny or warn message changes" in same.stdout
