"""The most common benign shapes, registered through MLflow as teams do, pass the security
gate and are promoted: a KNN fraud model and a SelectKBest pipeline (issue 9)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.helpers import GatekeeperProcess, MlflowServer, gate_result, unique_name
from tests.synthetic_credit import TARGET, make_credit_data

PREFIX = unique_name("benign")


@pytest.fixture(scope="module")
def service(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatekeeperProcess]:
    root = tmp_path_factory.mktemp("benign")
    gk = GatekeeperProcess(
        data_dir=root / "gk",
        database_url=f"sqlite:///{root / 'gk.db'}",
        tracking_uri=mlflow_server.url,
        models="none",
    ).start()
    yield gk
    gk.stop()


def _numeric_training() -> tuple[Any, Any]:
    data = make_credit_data(n=1000, seed=8)
    features = data.drop(columns=[TARGET]).select_dtypes("number")
    return features, data[TARGET]


@pytest.mark.parametrize(
    "label",
    ["knn", "selectkbest"],
)
def test_common_models_pass_security_and_are_promoted(
    service: GatekeeperProcess, mlflow_server: MlflowServer, label: str
) -> None:
    X, y = _numeric_training()
    model = {
        "knn": KNeighborsClassifier(n_neighbors=5),
        "selectkbest": make_pipeline(
            StandardScaler(), SelectKBest(f_classif, k=3), LogisticRegression()
        ),
    }[label].fit(X, y)
    name = f"{PREFIX}-{label}"
    mlflow.set_tracking_uri(mlflow_server.url)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, serialization_format="pickle"
        )
    version = int(info.registered_model_version)
    body = service.run_version(name, version, timeout=120)
    security = gate_result(body, "security")
    assert security["status"] == "pass", security["message"]
    assert body["status"] == "passed"
    client = MlflowClient(mlflow_server.url)
    assert client.get_registered_model(name).aliases["production-ready"] == str(version)
