"""Signatures a deploy job can check, and the alias taken back, on a real MLflow server.

`gatekeeper verify` and the plain `model_signing verify key` CLI are run as a deploy job
runs them; the artifact store is the MLflow server's own directory, changed by one byte as
someone with store access would.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient

from demo.models import log_clean_model
from tests.helpers import (
    VENV_BIN,
    GatekeeperProcess,
    LoggedInput,
    MlflowServer,
    create_api_token,
    flip_one_byte,
    log_sklearn_with_inputs,
    pinned_public_key,
    run_verify,
    stored_artifact,
    unique_name,
    wait_for,
)

ALIAS = "production-ready"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("integrity")
    (root / "rules.rego").write_text("package gatekeeper\n\nimport rego.v1\n")
    (root / "policy.yaml").write_text('models:\n  - match: "*"\n    rego: [rules.rego]\n')
    return root


@pytest.fixture(scope="module")
def service(mlflow_server: MlflowServer, workdir: Path) -> Iterator[GatekeeperProcess]:
    gk = GatekeeperProcess(
        data_dir=workdir / "gk",
        database_url=f"sqlite:///{workdir / 'gk.db'}",
        tracking_uri=mlflow_server.url,
        models="none",  # runs start through the API only
        env={
            "GATEKEEPER_POLICY_PATH": str(workdir / "policy.yaml"),
            "GATEKEEPER_POLL_INTERVAL_S": "1",
            "GATEKEEPER_REVERIFY_INTERVAL_S": "2",
            "GATEKEEPER_LOGGED_DATA_SOURCES": str(workdir / "data"),
        },
    ).start()
    yield gk
    gk.stop()


@pytest.fixture(scope="module")
def deploy_job(service: GatekeeperProcess, workdir: Path) -> tuple[Path, dict[str, str]]:
    """What a deploy job holds: the pinned public key and a viewer token for the status."""
    key = pinned_public_key(service, workdir / "pinned.pub")
    token = create_api_token(f"sqlite:///{workdir / 'gk.db'}")
    return key, {"GATEKEEPER_TOKEN": token, "GATEKEEPER_PUBLIC_URL": service.url}


def _verify(
    deploy_job: tuple[Path, dict[str, str]], server: MlflowServer, *args: str
) -> subprocess.CompletedProcess[str]:
    key, env = deploy_job
    return run_verify(server, *args, "--public-key", str(key), env=env)


def _model_signing(
    directory: Path, public_key: Path, signature: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "model_signing"), "verify", "key", str(directory),
         "--public_key", str(public_key), "--signature", str(signature),
         "--no-ignore-git-paths"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_a_deploy_job_verifies_the_promoted_files_and_refuses_changed_or_foreign_ones(
    service: GatekeeperProcess,
    mlflow_server: MlflowServer,
    tmp_path: Path,
    deploy_job: tuple[Path, dict[str, str]],
) -> None:
    client = MlflowClient(mlflow_server.url)
    name = unique_name("signed")
    version = log_clean_model(mlflow_server.url, name)
    run = service.run_version(name, version)
    assert run["status"] == "passed"
    tags = client.get_model_version(name, str(version)).tags
    assert tags["gatekeeper.signature_uri"].startswith("runs:/")

    public = tmp_path / "gatekeeper.pub"
    public.write_bytes(
        service.api("GET", "/api/v1/keys/public", headers={"Authorization": ""}).content
    )
    signature = tmp_path / "model.sig"
    answer = service.api("GET", f"/api/v1/models/{name}/versions/{version}/signature")
    assert (
        answer.status_code == 200 and answer.headers["x-artifact-digest"] == run["artifact_digest"]
    )
    signature.write_text(answer.text)

    good = _verify(
        deploy_job, mlflow_server, f"models:/{name}@{ALIAS}", "--download-to", str(tmp_path / "ok")
    )
    assert good.returncode == 0, good.stderr
    deployed = Path(good.stdout.strip().splitlines()[-1])
    assert (deployed / "model.pkl").is_file()
    assert _model_signing(deployed, public, signature).returncode == 0  # the plain CLI agrees

    flip_one_byte(stored_artifact(mlflow_server, name, version, "model.pkl"))
    # by version: the gatekeeper's own re-verification may already have taken the alias away
    changed = _verify(
        deploy_job,
        mlflow_server,
        f"models:/{name}/{version}",
        "--download-to",
        str(tmp_path / "bad"),
    )
    assert changed.returncode == 1 and "model.pkl" in changed.stderr, changed.stderr
    plain = _model_signing(tmp_path / "bad", public, signature)
    assert plain.returncode != 0 and "model.pkl" in plain.stdout + plain.stderr

    # a registry user signs files with a key of their own and points the tag at it
    other = tmp_path / "other.pem"
    subprocess.run(
        [str(VENV_BIN / "gatekeeper"), "keys", "generate", "--out", str(other)], check=True
    )
    forged = tmp_path / "forged.sig"
    subprocess.run(
        [str(VENV_BIN / "model_signing"), "sign", "key", str(tmp_path / "bad"),
         "--private_key", str(other), "--signature", str(forged)], check=True, capture_output=True,
    )  # fmt: skip
    mlflow.set_tracking_uri(mlflow_server.url)
    with mlflow.start_run() as attacker:
        mlflow.log_artifact(str(forged), "sig")
    client.set_model_version_tag(
        name,
        str(version),
        "gatekeeper.signature_uri",
        f"runs:/{attacker.info.run_id}/sig/forged.sig",
    )
    foreign = _verify(
        deploy_job,
        mlflow_server,
        f"models:/{name}/{version}",
        "--download-to",
        str(tmp_path / "foreign"),
    )
    assert foreign.returncode == 1, foreign.stdout
    assert _model_signing(tmp_path / "foreign", public, forged).returncode != 0


def test_a_failing_rerun_and_changed_stored_files_take_the_alias_back(
    service: GatekeeperProcess, mlflow_server: MlflowServer, workdir: Path
) -> None:
    client = MlflowClient(mlflow_server.url)
    name = unique_name("takeback")
    holder = lambda: client.get_registered_model(name).aliases.get(ALIAS)  # noqa: E731
    v1 = log_clean_model(mlflow_server.url, name)
    v2 = log_clean_model(mlflow_server.url, name, extra_bytes=10)
    assert service.run_version(name, v1)["status"] == "passed"
    assert service.run_version(name, v2)["status"] == "passed"
    assert holder() == str(v2)

    # the policy changes: v2's manual re-run fails, and the alias goes back to v1
    (workdir / "rules.rego").write_text(
        "package gatekeeper\n\nimport rego.v1\n\n"
        f'deny contains "v{v2} is withdrawn" if {{\n'
        f'\tinput.model.name == "{name}"\n\tinput.model.version == {v2}\n}}\n'
    )
    try:
        assert service.run_version(name, v2)["status"] == "failed"
        assert holder() == str(v1)
    finally:
        (workdir / "rules.rego").write_text("package gatekeeper\n\nimport rego.v1\n")

    v3 = log_clean_model(mlflow_server.url, name, extra_bytes=20)
    assert service.run_version(name, v3)["status"] == "passed"
    assert holder() == str(v3)
    flip_one_byte(stored_artifact(mlflow_server, name, v3, "model.pkl"))
    wait_for(lambda: holder() == str(v1), 30, "the re-verification moves the alias back")
    wait_for(
        lambda: client.get_model_version(name, str(v3)).tags.get("gatekeeper.status") == "tampered",
        10, "the changed version tagged",
    )  # fmt: skip
    with sqlite3.connect(workdir / "gk.db") as db:
        found = db.execute(
            "SELECT kind, version FROM tamper_events WHERE model_name = ?", (name,)
        ).fetchall()
    assert found == [("artifact", v3)]


def _log_trained_on(tracking_uri: str, name: str, train_csv: Path, seed: int) -> int:
    """A model trained on `train_csv`, its run logging the file with mlflow.log_input."""
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    frame = pd.read_csv(train_csv)
    features = frame.drop(columns=["label"])
    model = LogisticRegression(random_state=seed).fit(features, frame["label"])
    training = LoggedInput(frame, str(train_csv), "training")
    return log_sklearn_with_inputs(tracking_uri, name, model, features, [training])[0]


def test_quarantine_by_dataset_pulls_every_version_trained_on_it(
    service: GatekeeperProcess, mlflow_server: MlflowServer, workdir: Path
) -> None:
    import numpy as np
    import pandas as pd

    data = workdir / "data"
    data.mkdir(exist_ok=True)
    rng = np.random.default_rng(7)
    for label in ("poisoned", "clean"):
        x = rng.normal(size=(200, 3))
        frame = pd.DataFrame(x, columns=["a", "b", "c"]).assign(label=(x[:, 0] > 0).astype(int))
        frame.to_csv(data / f"{label}.csv", index=False)
    client = MlflowClient(mlflow_server.url)
    alpha, beta, gamma = (unique_name(n) for n in ("alpha", "beta", "gamma"))
    holder = lambda n: client.get_registered_model(n).aliases.get(ALIAS)  # noqa: E731
    trained = [
        (alpha, _log_trained_on(mlflow_server.url, alpha, data / "poisoned.csv", 1)),
        (alpha, _log_trained_on(mlflow_server.url, alpha, data / "poisoned.csv", 2)),
        (beta, _log_trained_on(mlflow_server.url, beta, data / "poisoned.csv", 3)),
        (gamma, _log_trained_on(mlflow_server.url, gamma, data / "clean.csv", 4)),
    ]
    for name, version in trained:
        assert service.run_version(name, version)["status"] == "passed"
    assert (holder(alpha), holder(beta), holder(gamma)) == ("2", "1", "1")

    poisoned = str(data / "poisoned.csv")
    lineage = service.api("GET", "/api/v1/lineage", params={"dataset": poisoned}).json()["data"]
    assert sorted((e["model"], e["version"]) for e in lineage) == sorted(trained[:3])
    opened = service.api(
        "POST", "/api/v1/incidents", json={"dataset": poisoned, "reason": "label flipping found"}
    )
    assert opened.status_code == 201, opened.text
    incident = opened.json()
    assert sorted((a["model"], a["version"]) for a in incident["affected"]) == sorted(trained[:3])
    assert holder(alpha) is None and holder(beta) is None  # no unaffected passing version
    assert holder(gamma) == "1"
    for name, version in trained[:3]:
        status = client.get_model_version(name, str(version)).tags["gatekeeper.status"]
        assert status == "quarantined"

    rerun = service.run_version(alpha, 2)
    assert rerun["status"] == "passed"  # the gates still pass; the incident holds it back
    assert holder(alpha) is None
    assert client.get_model_version(alpha, "2").tags["gatekeeper.status"] == "quarantined"

    closed = service.api("POST", f"/api/v1/incidents/{incident['id']}/close")
    assert closed.status_code == 200 and closed.json()["open"] is False
    assert holder(alpha) == "2" and holder(beta) == "1"
    assert client.get_model_version(alpha, "2").tags["gatekeeper.status"] == "passed"
    with sqlite3.connect(workdir / "gk.db") as db:
        actions = [a for (a,) in db.execute(
            "SELECT action FROM audit_events WHERE action LIKE 'incident.%' ORDER BY id"
        )]  # fmt: skip
        tampering = db.execute(
            "SELECT count(*) FROM tamper_events WHERE model_name IN (?, ?, ?)",
            (alpha, beta, gamma),
        ).fetchone()[0]
    assert actions == ["incident.opened", "incident.closed"]
    assert tampering == 0  # quarantine and its end are the gatekeeper's own changes
