"""The README's flagship `credit-*` policy, verbatim, through `gatekeeper serve` (issue 21).

Item 1: the policy's evaluation set carries the sensitive features (gender, age_band) beside
the inputs of a model trained without them. The sandbox handed them to `predict_proba`,
scikit-learn refused them, the scores were lost without a word and the performance gate ended
`error` ("the model returned no class scores"); a model trained on noise ended `error` too,
never `failed`. Item 8: a model that failed showed viewers only "model failed in predict (its
exception is in the run's admin diagnostics)", nothing a person could act on.

One `gatekeeper serve` on the session's MLflow server, runs started through the manual API.
The policy file is the README's block with the file paths adjusted (a test below checks the
copy against the README), followed by two entries of this test's own.
"""

from __future__ import annotations

import html
import json
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cloudpickle
import httpx
import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from tests.helpers import (
    ROOT,
    GatekeeperProcess,
    MlflowServer,
    create_api_token,
    gate_result,
    unique_name,
)
from tests.synthetic_credit import NUMERIC_FEATURES, TARGET, make_credit_data

# Copied from README.md, "Policy file"; only the evaluation file's path is changed (below).
README_POLICY = """\
models:
  - match: "credit-*"
    data:
      evaluation: {uri: "file:///srv/eval/credit.parquet", target: approved}  # or https://, s3://
      training: {artifact_path: "data/train.csv"}   # an artifact of the candidate's run
      sensitive_features: [gender, age_band]
      columns: {email: pii, ssn: secret}            # data classification (see Decision)
      pii_inputs: [email]                           # pii columns the model may take as input
    gates:
      security:    {mode: enforce, fail_at: HIGH, allow_code: false, allow_callables: []}
      performance: {mode: enforce, min: {roc_auc: 0.75}, max_regression: {roc_auc: 0.02}}
      fairness:    {mode: enforce, demographic_parity_ratio: 0.8, equalized_odds_difference: 0.1,
                    min_group_size: 30, intersections: [[gender, age_band]], bootstrap: 200}
    sandbox: {memory_gb: 4, cpu_seconds: 300, wall_seconds: 600}
    limits: {max_artifact_gb: 20, max_dataset_gb: 2, max_dataset_rows: 5000000}
    waivers: {allow_critical: false}
    rego: [rules/credit.rego]                       # decision modules, relative to this file
"""
README_EVAL_URI = "file:///srv/eval/credit.parquet"

# The README's example decision module ("Decision (Rego)"), as rules/credit.rego.
CREDIT_REGO = """\
package gatekeeper

import rego.v1

deny contains msg if {
\tinput.model.description == ""
\tmsg := sprintf("%s v%d has no description", [input.model.name, input.model.version])
}

warn contains "trained on trainer-supplied evaluation data" if {
\tsome d in input.datasets
\td.name == "evaluation"
\td.trainer_supplied
}
"""

# This test's own entries: Giskard's scan on the same data, and models that fail.
OWN_ENTRIES = """\
  - match: "scan-credit-*"
    data:
      evaluation: {{uri: "{eval_uri}", target: approved}}
      sensitive_features: [gender, age_band]
    gates:
      performance: {{mode: enforce, min: {{roc_auc: 0.75}}}}
      robustness:  {{mode: warn, sample_rows: 300, giskard_sample_rows: 300}}
  - match: "reasons-*"
    data:
      evaluation: {{uri: "{eval_uri}", target: approved}}
      sensitive_features: [gender, age_band]
    gates:
      security:    {{mode: enforce, allow_code: true}}
      performance: {{mode: enforce, min: {{roc_auc: 0.75}}}}
      fairness:    {{mode: enforce, bootstrap: 0}}
    sandbox: {{wall_seconds: 120}}
"""
SECRET = "sk_live_9d2e4b7a1c3f5e8d0a6b"
SUFFIX = unique_name("t")


@dataclass
class Service:
    gk: GatekeeperProcess
    mlflow_url: str
    viewer: str
    evaluation: pd.DataFrame


@pytest.fixture(scope="module")
def service(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    root = tmp_path_factory.mktemp("credit-policy")
    evaluation = make_credit_data(n=3000, seed=11)
    eval_path = root / "srv" / "eval" / "credit.parquet"
    eval_path.parent.mkdir(parents=True)
    evaluation.to_parquet(eval_path, index=False)
    (root / "rules").mkdir()
    (root / "rules" / "credit.rego").write_text(CREDIT_REGO)
    policy = root / "policy.yaml"
    eval_uri = f"file://{eval_path}"
    policy.write_text(
        README_POLICY.replace(README_EVAL_URI, eval_uri) + OWN_ENTRIES.format(eval_uri=eval_uri)
    )
    database_url = f"sqlite:///{root / 'gk.db'}"
    gk = GatekeeperProcess(
        data_dir=root / "gk",
        database_url=database_url,
        tracking_uri=mlflow_server.url,
        models="none",  # only the manual API starts runs here
        env={"GATEKEEPER_POLICY_PATH": str(policy)},
    ).start()
    yield Service(gk, mlflow_server.url, create_api_token(database_url, "viewer"), evaluation)
    gk.stop()


def _register(service: Service, name: str, log: Any, train: pd.DataFrame) -> int:
    """Log a model (with its training data as the run artifact `data/train.csv`) and give the
    version the description the README's rule asks for."""
    mlflow.set_tracking_uri(service.mlflow_url)
    with mlflow.start_run(), tempfile.TemporaryDirectory() as scratch:
        train_csv = Path(scratch) / "train.csv"
        train.to_csv(train_csv, index=False)
        mlflow.log_artifact(str(train_csv), artifact_path="data")
        version = int(log().registered_model_version)
    MlflowClient(service.mlflow_url).update_model_version(
        name, str(version), description="credit scoring model, trained without gender"
    )
    return version


def _log_sklearn(
    service: Service, name: str, model: Any, train: pd.DataFrame, signed: bool = True
) -> int:
    features = train[NUMERIC_FEATURES]

    def log() -> Any:
        return mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, serialization_format="pickle",
            signature=infer_signature(features, model.predict(features)) if signed else None,
        )  # fmt: skip

    return _register(service, name, log, train)


def _viewer_view(service: Service, run_id: str) -> tuple[dict[str, Any], str]:
    """The run as a viewer gets it: the JSON API and the report page."""
    bearer = {"Authorization": f"Bearer {service.viewer}"}
    api = httpx.get(f"{service.gk.url}/api/v1/runs/{run_id}", headers=bearer, timeout=30)
    page = httpx.get(f"{service.gk.url}/runs/{run_id}", headers=bearer, timeout=30)
    assert api.status_code == 200 and page.status_code == 200
    return api.json(), html.unescape(page.text)


def test_the_policy_here_is_the_readmes() -> None:
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", text, flags=re.S)
    assert README_POLICY in blocks, "README's credit-* policy changed: copy it here again"
    assert f"```rego\n{CREDIT_REGO}```" in text, "README's example module changed"


def test_the_readme_policy_passes_a_good_model_and_fails_one_trained_on_noise(
    service: Service,
) -> None:
    """Models trained on the applicants' numbers only, never on gender or age band, as
    scikit-learn users train them: on a DataFrame, so the estimator knows its columns."""
    train = make_credit_data(n=5000, seed=1)
    shuffled = train.assign(**{TARGET: train[TARGET].sample(frac=1.0, random_state=0).to_numpy()})
    good_name, noise_name, plain_name = (f"credit-{k}-{SUFFIX}" for k in ("good", "noise", "plain"))
    good = _log_sklearn(service, good_name, _numeric_logreg(train), train)
    noise = _log_sklearn(service, noise_name, _numeric_logreg(shuffled), train)
    # no signature: the columns the estimator was fitted on are its inputs
    plain = _log_sklearn(service, plain_name, _numeric_logreg(train), train, signed=False)

    for name, version in ((good_name, good), (plain_name, plain)):
        run = service.gk.run_version(name, version, timeout=400)
        assert run["status"] == "passed", (name, run["decision"], run["gates"])
        performance = gate_result(run, "performance")
        roc_auc = next(m for m in performance["evidence"]["metrics"] if m["metric"] == "roc_auc")
        assert roc_auc["candidate"] > 0.9 and roc_auc["verdict"] == "pass", roc_auc
        fairness = gate_result(run, "fairness")
        assert fairness["status"] == "pass", fairness["message"]
        features = fairness["evidence"]["features"]
        assert {"gender", "age_band", "gender x age_band"} <= set(features)
        groups = {g["group"]: g for g in features["gender"]["groups"]}
        assert set(groups) == {"F", "M"} and groups["F"]["size"] > 1000
        assert 0.3 < groups["F"]["selection_rate"] < 0.7
        client = MlflowClient(service.mlflow_url)
        assert client.get_registered_model(name).aliases["production-ready"] == str(version)

    run = service.gk.run_version(noise_name, noise, timeout=400)
    assert run["status"] == "failed", (run["decision"], run["gates"])
    performance = gate_result(run, "performance")
    assert performance["status"] == "fail", performance["message"]
    assert "roc_auc" in performance["message"] and "below the floor 0.75" in performance["message"]
    roc_auc = next(m for m in performance["evidence"]["metrics"] if m["metric"] == "roc_auc")
    assert roc_auc["candidate"] < 0.75 and roc_auc["verdict"] == "fail"


def _numeric_logreg(train: pd.DataFrame) -> LogisticRegression:
    return LogisticRegression(max_iter=1000).fit(train[NUMERIC_FEATURES], train[TARGET])


def test_giskard_scans_a_model_of_the_credit_data(service: Service) -> None:
    """The scan's model wrapper gives the model its own columns, not the sensitive ones."""
    train = make_credit_data(n=5000, seed=2)
    name = f"scan-credit-{SUFFIX}"
    model = _numeric_logreg(train)
    run = service.gk.run_version(name, _log_sklearn(service, name, model, train), timeout=400)
    robustness = gate_result(run, "robustness")
    scan = robustness["evidence"]["giskard"]
    assert scan["error"] is None, robustness["message"]
    assert scan["seconds"] > 0 and scan["status"] in ("pass", "warn", "fail")
    assert gate_result(run, "performance")["status"] == "pass"


# --- item 8: why a model failed, for the people who must act on it ---------------------------


class RaisesWithRows(mlflow.pyfunc.PythonModel):
    """Raises with a secret-looking token and the rows it was given in the message."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        raise ValueError(f"token {SECRET}; rows:\n{model_input.head(5).to_csv(index=False)}")


def _log_pyfunc(
    service: Service, name: str, model: Any, train: pd.DataFrame, features: pd.DataFrame
) -> int:
    def log() -> Any:
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        try:
            return mlflow.pyfunc.log_model(
                name="model", python_model=model, registered_model_name=name,
                signature=infer_signature(features), pip_requirements=["mlflow"],
            )  # fmt: skip
        finally:
            cloudpickle.unregister_pickle_by_value(sys.modules[__name__])

    return _register(service, name, log, train)


def test_viewers_see_why_a_model_failed_and_nothing_it_wrote(service: Service) -> None:
    train = make_credit_data(n=3000, seed=3)
    numeric = _numeric_logreg(train)
    floats = train[NUMERIC_FEATURES].astype({"age": float})
    float_age = LogisticRegression(max_iter=1000).fit(floats, train[TARGET])
    without_income = [c for c in NUMERIC_FEATURES if c != "income"]

    cases = {
        # the signature was inferred on a frame that lacked `income`; the model needs it
        "missing": (
            lambda name: _log_sklearn_on(service, name, numeric, train, train[without_income]),
            "missing input column 'income'",
        ),
        # trained (and signed) where age was a float; the evaluation file has integers
        "dtype": (
            lambda name: _log_sklearn_on(service, name, float_age, train, floats),
            "dtype mismatch in column 'age' (expected double, got long)",
        ),
        "raises": (
            lambda name: _log_pyfunc(
                service, name, RaisesWithRows(), train, train[NUMERIC_FEATURES]
            ),
            "ValueError raised in predict",
        ),
    }
    evaluation_rows = service.evaluation.head(5).to_csv(index=False).splitlines()[1:]
    for label, (log, reason) in cases.items():
        name = f"reasons-{label}-{SUFFIX}"
        run = service.gk.run_version(name, log(name), timeout=400)
        assert run["status"] == "error", (label, run["decision"])
        as_viewer, page = _viewer_view(service, run["id"])
        performance = gate_result(as_viewer, "performance")
        assert performance["status"] == "error"
        assert reason in performance["message"], (label, performance["message"])
        assert reason in page, label
        assert performance["diagnostics"] is None  # what the model wrote is for admins
        published = json.dumps(as_viewer) + page
        for leak in (SECRET, "Traceback", "Feature names", "Incompatible input types"):
            assert leak not in published, (label, leak)
        for row in evaluation_rows:
            assert row not in published, (label, row)
        # (the values of one evaluation row, as the model's message would print them)
        income = str(service.evaluation["income"].iloc[0])
        assert f"{income}," not in published, label
        if label == "raises":  # the admin still gets the model's own words
            admin = gate_result(service.gk.api("GET", f"/api/v1/runs/{run['id']}").json(),
                                "performance")  # fmt: skip
            assert SECRET in admin["diagnostics"]["exception"]


def _log_sklearn_on(
    service: Service, name: str, model: Any, train: pd.DataFrame, signed_on: pd.DataFrame
) -> int:
    def log() -> Any:
        return mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, serialization_format="pickle",
            signature=infer_signature(signed_on),
        )  # fmt: skip

    return _register(service, name, log, train)
