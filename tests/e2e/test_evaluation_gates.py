"""Performance and fairness through the service, on a real MLflow server.

One `gatekeeper serve` with a policy file; runs are started through the manual API so their
order is the test's to choose. Models are real scikit-learn pipelines trained on the
synthetic credit data in tests/synthetic_credit.py; the evaluation set is a CSV the
gatekeeper controls.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from tests.e2e import sandbox_models
from tests.helpers import (
    GatekeeperProcess,
    LoggedInput,
    MlflowServer,
    gate_result,
    log_sklearn_with_inputs,
    unique_name,
)
from tests.synthetic_credit import NUMERIC_FEATURES, TARGET, make_credit_data, train_model

PREFIX = unique_name("eval")


def _policy(eval_csv: Path, one_group_csv: Path) -> str:
    evaluation = f'{{uri: "file://{eval_csv}", target: {TARGET}}}'
    return f"""
models:
  - match: "{PREFIX}-sandbox-*"
    data:
      evaluation: {evaluation}
    gates:
      security: {{allow_code: true}}
      performance: {{mode: enforce}}
    sandbox: {{wall_seconds: 10, memory_gb: 2, cpu_seconds: 60}}
  - match: "{PREFIX}-missing-*"
    data:
      evaluation: {{uri: "file://{eval_csv.parent / "no-such-file.csv"}", target: {TARGET}}}
  - match: "{PREFIX}-notarget-*"
    data:
      evaluation: {{uri: "file://{eval_csv}", target: churned}}
  - match: "{PREFIX}-logged-*"
    gates:
      performance: {{mode: enforce, min: {{accuracy: 0.6}}}}
      drift: {{mode: enforce}}
  - match: "{PREFIX}-robust-*"
    data:
      evaluation: {evaluation}
    gates:
      performance: {{mode: warn}}
      robustness: {{mode: enforce, sample_rows: 300, giskard_sample_rows: 300}}
  - match: "{PREFIX}-onegroup-*"
    data:
      evaluation: {{uri: "file://{one_group_csv}", target: {TARGET}}}
      sensitive_features: [country]
  - match: "{PREFIX}-*"
    data:
      evaluation: {evaluation}
      sensitive_features: [gender]
    gates:
      performance: {{mode: enforce, min: {{accuracy: 0.6}}, max_regression: {{accuracy: 0.02}}}}
      fairness: {{mode: enforce, bootstrap: 50}}
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("evaluation")


@pytest.fixture(scope="module")
def service(mlflow_server: MlflowServer, workdir: Path) -> Iterator[GatekeeperProcess]:
    root = workdir
    evaluation = make_credit_data(n=3000, seed=11, biased=False)
    eval_csv = root / "credit-eval.csv"
    evaluation.to_csv(eval_csv, index=False)
    one_group_csv = root / "credit-one-country.csv"
    evaluation.assign(country="NL").to_csv(one_group_csv, index=False)
    policy = root / "policy.yaml"
    policy.write_text(_policy(eval_csv, one_group_csv))
    gk = GatekeeperProcess(
        data_dir=root / "gk",
        database_url=f"sqlite:///{root / 'gk.db'}",
        tracking_uri=mlflow_server.url,
        models="none",  # only the manual API starts runs here
        env={
            "GATEKEEPER_POLICY_PATH": str(policy),
            "GATEKEEPER_LOGGED_DATA_SOURCES": str(root / "logged"),
        },
    ).start()
    yield gk
    gk.stop()


def _log_sklearn(tracking_uri: str, name: str, model: Any) -> int:
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, serialization_format="pickle"
        )
    return int(info.registered_model_version)


def _log_pyfunc(tracking_uri: str, name: str, model: Any) -> int:
    mlflow.set_tracking_uri(tracking_uri)
    cloudpickle.register_pickle_by_value(sandbox_models)
    try:
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(
                name="model", python_model=model, registered_model_name=name
            )
    finally:
        cloudpickle.unregister_pickle_by_value(sandbox_models)
    return int(info.registered_model_version)


def test_biased_model_fails_fairness_and_fair_model_passes(
    service: GatekeeperProcess, mlflow_server: MlflowServer
) -> None:
    client = MlflowClient(mlflow_server.url)
    biased_name, fair_name = f"{PREFIX}-biased", f"{PREFIX}-fair"
    biased = train_model(make_credit_data(n=5000, seed=1, biased=True))
    fair = train_model(make_credit_data(n=5000, seed=2, biased=False), include_gender=False)
    biased_run = service.run_version(
        biased_name, _log_sklearn(mlflow_server.url, biased_name, biased)
    )
    fair_run = service.run_version(fair_name, _log_sklearn(mlflow_server.url, fair_name, fair))

    assert biased_run["status"] == "failed"
    fairness = gate_result(biased_run, "fairness")
    assert fairness["status"] == "fail"
    ratio = fairness["evidence"]["features"]["gender"]["demographic_parity_ratio"]["value"]
    assert 0.45 < ratio < 0.75, ratio
    groups = {g["group"]: g for g in fairness["evidence"]["features"]["gender"]["groups"]}
    assert groups["F"]["size"] > 1000
    assert "F" in fairness["message"] and "gender" in fairness["message"]
    tags = client.get_model_version(biased_name, "1").tags
    assert tags["gatekeeper.gate.fairness"] == "fail"
    assert "production-ready" not in client.get_registered_model(biased_name).aliases
    assert biased_run["datasets"][0]["sha256"] and biased_run["datasets"][0]["rows"] == 3000
    report = service.api("GET", f"/runs/{biased_run['id']}").text
    assert "selection_rate" in report and "demographic_parity_ratio" in report

    assert fair_run["status"] == "passed", fair_run["decision"]
    assert client.get_model_version(fair_name, "1").tags["gatekeeper.gate.fairness"] == "pass"
    assert client.get_registered_model(fair_name).aliases["production-ready"] == "1"


def test_regression_against_the_alias_holder_blocks_and_improvement_promotes(
    service: GatekeeperProcess, mlflow_server: MlflowServer
) -> None:
    client = MlflowClient(mlflow_server.url)
    name = f"{PREFIX}-regress"
    data = make_credit_data(n=5000, seed=3, biased=False)
    good = train_model(data, include_gender=False)
    noisy = data.assign(**{TARGET: data[TARGET].sample(frac=1.0, random_state=0).to_numpy()})
    worse = train_model(noisy.iloc[:300], include_gender=False)
    better = train_model(make_credit_data(n=20_000, seed=4), include_gender=False)

    v1 = _log_sklearn(mlflow_server.url, name, good)
    assert service.run_version(name, v1)["status"] == "passed"
    v2 = _log_sklearn(mlflow_server.url, name, worse)
    regressed = service.run_version(name, v2)
    assert regressed["status"] == "failed"
    assert f"regressed against version {v1}" in gate_result(regressed, "performance")["message"]
    assert client.get_registered_model(name).aliases["production-ready"] == str(v1)

    v3 = _log_sklearn(mlflow_server.url, name, better)
    improved = service.run_version(name, v3)
    assert improved["status"] == "passed", improved["decision"]
    table = gate_result(improved, "performance")["evidence"]
    assert any(row.get("champion") is not None for row in table["metrics"])
    assert client.get_registered_model(name).aliases["production-ready"] == str(v3)


def test_hostile_models_fail_closed_and_the_service_keeps_serving(
    service: GatekeeperProcess, mlflow_server: MlflowServer
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connections: list[bytes] = []

    def accept() -> None:
        listener.settimeout(60)
        try:
            conn, _ = listener.accept()
            connections.append(conn.recv(100))
        except OSError:
            pass

    threading.Thread(target=accept, daemon=True).start()
    cases = {
        "loop": (sandbox_models.LoopsForever(), ("timeout", "did not finish")),
        "hog": (sandbox_models.Allocates20GiB(), ("memory",)),
        "net": (sandbox_models.PhonesHome(port), ("network",)),
    }
    try:
        for label, (model, words) in cases.items():
            name = f"{PREFIX}-sandbox-{label}"
            run = service.run_version(name, _log_pyfunc(mlflow_server.url, name, model))
            performance = gate_result(run, "performance")
            assert run["status"] == "error", (label, run["decision"])
            assert performance["status"] == "error"
            assert any(w in performance["message"].lower() for w in words), performance["message"]
            assert httpx.get(f"{service.url}/healthz", timeout=5).status_code == 200
    finally:
        listener.close()
    assert connections == [], "a sandboxed model reached a socket on the host"


def test_bad_data_configuration_errors_the_run_never_passes(
    service: GatekeeperProcess, mlflow_server: MlflowServer
) -> None:
    model = train_model(make_credit_data(n=2000, seed=5), include_gender=False)
    expected = {
        "missing": ("performance", "does not exist"),
        "notarget": ("performance", "churned"),
        "onegroup": ("fairness", "only one group"),
    }
    for label, (gate, words) in expected.items():
        name = f"{PREFIX}-{label}-model"
        run = service.run_version(name, _log_sklearn(mlflow_server.url, name, model))
        assert run["status"] == "error", (label, run["decision"])
        result = gate_result(run, gate)
        assert result["status"] == "error" and words in result["message"], result["message"]


def test_malformed_policy_stops_serve_naming_key_and_line(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "models:\n"
        "  - match: 'credit-*'\n"
        "    gates:\n"
        "      fairness: {demographic_parity_ratio: high}\n"
    )
    gk = GatekeeperProcess(
        data_dir=tmp_path / "gk",
        database_url=f"sqlite:///{tmp_path / 'gk.db'}",
        tracking_uri="http://127.0.0.1:9",
        models="*",
        env={"GATEKEEPER_POLICY_PATH": str(policy)},
    )
    result = subprocess.run(gk.args, env=gk.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{policy}:4: models[0].gates.fairness.demographic_parity_ratio" in result.stderr

    # a decision module with a syntax error stops it too, naming the module and its line
    (tmp_path / "rules.rego").write_text(
        "package gatekeeper\n\nimport rego.v1\n\ndeny contains msg if {\n  msg := \n}\n"
    )
    policy.write_text("models:\n  - match: 'credit-*'\n    rego: [rules.rego]\n")
    result = subprocess.run(gk.args, env=gk.env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert f"{tmp_path / 'rules.rego'}:6: Rego does not compile" in result.stderr


def _log_with_data(
    tracking_uri: str, name: str, train_csv: Path, eval_csv: Path
) -> tuple[int, Any, Any]:
    """A model trained on `train_csv`, its run logging both files with mlflow.log_input."""
    train, evaluation = pd.read_csv(train_csv), pd.read_csv(eval_csv)
    model = train_model(train, include_gender=True)
    inputs = [
        LoggedInput(train, str(train_csv), "training", "credit-train"),
        LoggedInput(evaluation, str(eval_csv), "evaluation", "credit-eval"),
    ]
    features = train.drop(columns=[TARGET])
    version, (training_input, eval_input) = log_sklearn_with_inputs(
        tracking_uri, name, model, features, inputs
    )
    return version, training_input, eval_input


def test_data_the_run_logged_is_used_drift_against_the_alias_holder_and_tampering(
    service: GatekeeperProcess, mlflow_server: MlflowServer, workdir: Path
) -> None:
    """A policy with gates and no `data:`: the gatekeeper evaluates on the frames the run
    logged with mlflow.log_input, after checking MLflow's digest; the next version's training
    data is compared with the alias holder's (three features shifted by 1 std: drift fails
    naming them); relabelling the logged training file after the run makes a re-run `error`."""
    name = f"{PREFIX}-logged-churn"
    logged_dir = workdir / "logged"  # GATEKEEPER_LOGGED_DATA_SOURCES
    logged_dir.mkdir(exist_ok=True)
    columns = [*NUMERIC_FEATURES, "gender", TARGET]
    train_csv, eval_csv = logged_dir / "train.csv", logged_dir / "eval.csv"
    train = make_credit_data(n=2000, seed=21)[columns]
    train.to_csv(train_csv, index=False)
    make_credit_data(n=1000, seed=22)[columns].to_csv(eval_csv, index=False)
    version, training_input, eval_input = _log_with_data(
        mlflow_server.url, name, train_csv, eval_csv
    )

    first = service.run_version(name, version)
    assert first["status"] == "passed", first["decision"]
    by_name = {d["name"]: d for d in first["datasets"]}
    assert by_name["evaluation"]["origin"] == "run-input"
    assert by_name["evaluation"]["trainer_supplied"] is True
    assert by_name["evaluation"]["target"] == TARGET  # the one column not in the signature
    assert by_name["evaluation"]["logged"]["digest"] == eval_input.digest
    assert by_name["training"]["logged"]["digest"] == training_input.digest
    assert gate_result(first, "performance")["evidence"]["rows"] == 1000
    assert gate_result(first, "drift")["status"] == "skipped"  # no earlier version to compare
    page = service.api("GET", f"/runs/{first['id']}").text
    assert "run-input" in page and "trainer-supplied" in page and eval_input.digest in page

    shifted_csv = logged_dir / "train-v2.csv"
    shifted = ["income", "debt_ratio", "age"]
    train.assign(**{c: train[c] + train[c].std() for c in shifted}).to_csv(shifted_csv, index=False)
    second_version, _, _ = _log_with_data(mlflow_server.url, name, shifted_csv, eval_csv)
    second = service.run_version(name, second_version)
    drift = gate_result(second, "drift")
    assert drift["status"] == "fail", drift["message"]
    assert second["status"] == "failed"
    table = drift["evidence"]["data_drift"]["columns"]
    assert {row["column"] for row in table if row["drifted"]} == set(shifted), table
    assert drift["evidence"]["datasets"]["reference"]["origin"] == "alias-holder"

    train.assign(**{TARGET: 1 - train[TARGET]}).to_csv(train_csv, index=False)
    rerun = service.run_version(name, version)
    assert rerun["status"] == "error", rerun["decision"]
    tampered = gate_result(rerun, "drift")
    assert tampered["status"] == "error"
    assert "changed after the run" in tampered["message"]
    assert training_input.digest in tampered["message"]


def test_a_brittle_model_fails_robustness_through_the_sandbox(
    service: GatekeeperProcess, mlflow_server: MlflowServer
) -> None:
    """1-nearest-neighbour on noisy labels: the probe rows go to the sandbox mixed among the
    evaluation rows and the flip rate fails the gate; a logistic regression on the same data
    passes."""
    from sklearn.compose import ColumnTransformer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    data = make_credit_data(n=3000, seed=31)
    noisy = data[TARGET].where(np.random.default_rng(3).random(len(data)) > 0.3, 1 - data[TARGET])
    numeric = ColumnTransformer([("numeric", StandardScaler(), NUMERIC_FEATURES)])
    brittle = Pipeline([("scale", numeric), ("knn", KNeighborsClassifier(n_neighbors=1))])
    brittle.fit(data[NUMERIC_FEATURES], noisy)
    steady = train_model(data, include_gender=False)

    brittle_name, steady_name = f"{PREFIX}-robust-knn", f"{PREFIX}-robust-logreg"
    brittle_run = service.run_version(
        brittle_name, _log_sklearn(mlflow_server.url, brittle_name, brittle)
    )
    steady_run = service.run_version(
        steady_name, _log_sklearn(mlflow_server.url, steady_name, steady)
    )

    failed = gate_result(brittle_run, "robustness")
    assert brittle_run["status"] == "failed", failed["message"]
    assert failed["status"] == "fail"
    assert any(f["rule_id"] == "ROBUST-FLIP-001" for f in failed["findings"])
    # one sandbox call: the probes answered with the evaluation rows, then the scan
    timings = failed["evidence"]["sandbox"]["timings_s"]
    assert {"predict", "giskard"} <= set(timings)
    scan = failed["evidence"]["giskard"]  # Giskard ran in the sandbox; its issues are here
    assert scan["error"] is None and isinstance(scan["issues"], list) and scan["seconds"] > 0
    assert scan["report"] is True
    page = service.api("GET", f"/runs/{brittle_run['id']}").text
    assert f"/runs/{brittle_run['id']}/reports/robustness" in page
    report = service.api("GET", f"/runs/{brittle_run['id']}/reports/robustness")
    assert report.status_code == 200 and "giskard" in report.text.lower()
    # made where the model ran: served from an opaque origin with no network
    policy = report.headers["content-security-policy"]
    assert policy.startswith("sandbox allow-scripts;") and "allow-same-origin" not in policy
    assert "default-src 'none'" in policy and report.headers["x-content-type-options"] == "nosniff"
    assert report.headers["content-disposition"].startswith("attachment")
    passed = gate_result(steady_run, "robustness")
    assert passed["status"] in ("pass", "warn"), passed["message"]
    assert not any(f["rule_id"] == "ROBUST-FLIP-001" for f in passed["findings"])
