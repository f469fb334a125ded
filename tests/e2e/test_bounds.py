"""Bounded work under hostile input, through `gatekeeper serve` on the real MLflow server.

A 300 KB parquet file that declares 30M rows, an artifact bigger than the policy allows and a
scan that would run longer than its budget each end in a clear `error` within their bound,
and the service keeps serving.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.helpers import GatekeeperProcess, MlflowServer, unique_name
from tests.synthetic_credit import TARGET, make_credit_data, train_model

PREFIX = unique_name("bounds")


def _policy(root: Path, bomb: Path) -> str:
    eval_csv = root / "eval.csv"
    make_credit_data(n=300, seed=3).to_csv(eval_csv, index=False)
    return f"""
models:
  - match: "{PREFIX}-bomb"
    data:
      evaluation: {{uri: "file://{bomb}", target: {TARGET}}}
  - match: "{PREFIX}-big"
    limits: {{max_artifact_gb: 0.000001}}
  - match: "{PREFIX}-slow"
    gates:
      security: {{time_budget_s: 2}}
"""


@pytest.fixture(scope="module")
def service(
    mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatekeeperProcess]:
    root = tmp_path_factory.mktemp("bounds")
    bomb = root / "eval-bomb.parquet"
    zeros = np.zeros(30_000_000, dtype=np.int64)
    pq.write_table(pa.table({"income": zeros, TARGET: zeros}), bomb, compression="zstd")
    assert bomb.stat().st_size < 400_000
    policy = root / "policy.yaml"
    policy.write_text(_policy(root, bomb))
    gk = GatekeeperProcess(
        data_dir=root / "gk",
        database_url=f"sqlite:///{root / 'gk.db'}",
        tracking_uri=mlflow_server.url,
        models="none",
        env={"GATEKEEPER_POLICY_PATH": str(policy)},
    ).start()
    yield gk
    gk.stop()


def _log(tracking_uri: str, name: str, extra_files: dict[str, pd.DataFrame] | None = None) -> int:
    """A scikit-learn model directory, plus CSV files beside it, registered as one version."""
    mlflow.set_tracking_uri(tracking_uri)
    model = train_model(make_credit_data(n=500, seed=4), include_gender=False)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        mlflow.sklearn.save_model(model, model_dir, serialization_format="pickle")
        for filename, frame in (extra_files or {}).items():
            frame.to_csv(model_dir / filename, index=False)
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(model_dir), "model")
            version = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    return int(version.version)


def _run(gk: GatekeeperProcess, name: str, version: int) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    run = gk.run_version(name, version)
    return run, time.monotonic() - started


def _healthy(gk: GatekeeperProcess) -> None:
    assert httpx.get(f"{gk.url}/healthz", timeout=5).status_code == 200
    assert gk.api("GET", "/api/v1/runs/none").status_code == 404


def test_parquet_bomb_is_refused_from_its_metadata(
    service: GatekeeperProcess, mlflow_server: MlflowServer
) -> None:
    name = f"{PREFIX}-bomb"
    run, took = _run(service, name, _log(mlflow_server.url, name))
    assert run["status"] == "error"
    performance = next(g for g in run["gates"] if g["gate"] == "performance")
    assert performance["status"] == "error"
    assert "declares 30000000 rows" in performance["message"]
    assert "max_dataset_rows" in performance["message"]
    assert took < 60, took
    _healthy(service)


def test_oversized_artifact_is_refused_before_download(
    service: GatekeeperProcess, mlflow_server: MlflowServer
) -> None:
    name = f"{PREFIX}-big"
    run, took = _run(service, name, _log(mlflow_server.url, name))
    assert run["status"] == "error"
    assert "over the policy's limits.max_artifact_gb" in run["error_message"]
    assert "not downloaded" in run["error_message"]
    assert run["artifact_digest"] is None
    assert took < 60, took
    _healthy(service)


def test_a_scan_longer_than_its_budget_is_stopped_as_error(
    service: GatekeeperProcess, mlflow_server: MlflowServer
) -> None:
    """Thousands of distinct phone-like values make presidio's phone recognizer (which has no
    budget of its own) take ~10 s; the scan is a child process killed at its 2 s budget."""
    rng = np.random.default_rng(0)
    rows = pd.DataFrame(
        {
            f"note{c}": [
                f"call +1 {rng.integers(200, 999)} {rng.integers(200, 999)} "
                f"{rng.integers(1000, 9999)} ext {i}"
                for i in range(10_000)
            ]
            for c in range(3)
        }
    )
    name = f"{PREFIX}-slow"
    run, _took = _run(service, name, _log(mlflow_server.url, name, {"call_log.csv": rows}))
    security = next(g for g in run["gates"] if g["gate"] == "security")
    assert run["status"] == "error", run["decision"]
    assert security["status"] == "error"
    assert "exceeded its time budget of 2 s" in security["message"]
    # the message is the budget's own: a wall-clock bound here would only measure the machine
    _healthy(service)
