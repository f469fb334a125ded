"""The drift reference is found the way the entry finds the candidate's training data.

A team that ships its training data as a run artifact (`training: {artifact_path: ...}`)
and leaves `reference` at its default: every version after the first used to end `error`
("logged no training dataset"), because the reference was looked for only among the
datasets the holder's run logged with `mlflow.log_input`. Real MLflow server, real
`gatekeeper serve`, runs started through the API.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from tests.helpers import GatekeeperProcess, MlflowServer, gate_result, unique_name
from tests.synthetic_credit import NUMERIC_FEATURES, TARGET, make_credit_data, train_model

PREFIX = unique_name("driftref")
COLUMNS = [*NUMERIC_FEATURES, "gender", TARGET]
SHIFTED = ["income", "debt_ratio", "age"]


@pytest.fixture(scope="module")
def service(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatekeeperProcess]:
    root = tmp_path_factory.mktemp("drift-reference")
    (root / "policy.yaml").write_text(
        "models:\n"
        f'  - match: "{PREFIX}-*"\n'
        "    data:\n"
        '      training: {artifact_path: "data/train.csv"}\n'
        "    gates:\n"
        "      drift: {mode: enforce}\n"
    )
    gk = GatekeeperProcess(
        data_dir=root / "gk",
        database_url=f"sqlite:///{root / 'gk.db'}",
        tracking_uri=mlflow_server.url,
        models="none",
        env={"GATEKEEPER_POLICY_PATH": str(root / "policy.yaml")},
    ).start()
    yield gk
    gk.stop()


def _log(server: MlflowServer, name: str, train: pd.DataFrame) -> int:
    """A model whose run ships its training data as the artifact `data/train.csv`."""
    model = train_model(train, include_gender=False)
    mlflow.set_tracking_uri(server.url)
    with mlflow.start_run(), tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "train.csv"
        train.to_csv(csv, index=False)
        mlflow.log_artifact(str(csv), "data")
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, serialization_format="pickle"
        )
    return int(info.registered_model_version)


def test_drift_against_the_holder_uses_the_holders_training_artifact(
    service: GatekeeperProcess, mlflow_server: MlflowServer
) -> None:
    name = f"{PREFIX}-credit"
    train = make_credit_data(n=2000, seed=21)[COLUMNS]
    first = service.run_version(name, _log(mlflow_server, name, train))
    assert first["status"] == "passed", first["decision"]
    assert gate_result(first, "drift")["status"] == "skipped"  # nothing to compare with yet

    shifted = train.assign(**{c: train[c] + train[c].std() for c in SHIFTED})
    second = service.run_version(name, _log(mlflow_server, name, shifted))
    drift = gate_result(second, "drift")
    assert drift["status"] == "fail", drift["message"]
    assert second["status"] == "failed"
    table = drift["evidence"]["data_drift"]["columns"]
    assert {row["column"] for row in table if row["drifted"]} == set(SHIFTED), table
    reference = drift["evidence"]["datasets"]["reference"]
    assert reference["origin"] == "alias-holder"
    assert reference["source"] == f"runs:/{_run_id(mlflow_server, name, 1)}/data/train.csv"

    fresh = make_credit_data(n=2000, seed=22)[COLUMNS]  # same distribution, other applicants
    third = service.run_version(name, _log(mlflow_server, name, fresh))
    assert gate_result(third, "drift")["status"] == "pass", gate_result(third, "drift")
    assert third["status"] == "passed", third["decision"]


def _run_id(server: MlflowServer, name: str, version: int) -> str:
    run_id = mlflow.MlflowClient(server.url).get_model_version(name, str(version)).run_id
    assert run_id is not None
    return str(run_id)
