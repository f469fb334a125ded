"""PII and secrets in the rows a model carries: `input_example=X_train.head()` copies training
rows into `input_example.json` and `serving_input_example.json`, and teams ship CSVs of
training rows beside the weights. Real models saved by MLflow, scanned by the gate."""

from __future__ import annotations

from pathlib import Path

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from gates.base import GateContext, Status
from gates.security import check
from gates.security.config import SecurityConfig

# `make test-fast` leaves these out: logs real MLflow models and runs presidio
pytestmark = pytest.mark.slow


def _training_rows(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 80, n),
            "income": rng.normal(50_000, 10_000, n).round(2),
            "email": [f"customer{i}@example.org" for i in range(n)],
            "ssn": [
                f"{rng.integers(100, 665)}-{rng.integers(10, 99)}-{rng.integers(1000, 9999)}"
                for _ in range(n)
            ],
            "card": ["4111 1111 1111 1111", "5500 0000 0000 0004"] * (n // 2),
        }
    )


@pytest.fixture(scope="module")
def model_with_rows(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = _training_rows()
    y = (rows["income"] > 50_000).astype(int)
    path = tmp_path_factory.mktemp("pii") / "model"
    model = LogisticRegression().fit(rows[["age", "income"]], y)
    mlflow.sklearn.save_model(
        model, path, serialization_format="pickle", input_example=rows.head(5)
    )
    rows.to_csv(path / "training_rows.csv", index=False)
    return path


def test_pii_in_the_input_example_and_a_shipped_csv_blocks_naming_file_column_entity(
    model_with_rows: Path,
) -> None:
    assert (model_with_rows / "input_example.json").is_file()
    result = check(GateContext(artifact_dir=model_with_rows), SecurityConfig(modelscan=False))

    assert result.status == Status.FAIL
    found = {
        (f.file, f.evidence["column"], f.evidence["entity"])
        for f in result.findings
        if f.rule_id == "SEC-PII-001"
    }
    for file in ("input_example.json", "serving_input_example.json", "training_rows.csv"):
        assert (file, "email", "EMAIL_ADDRESS") in found, found
        assert (file, "ssn", "US_SSN") in found, found
        assert (file, "card", "CREDIT_CARD") in found, found
    message = next(f.message for f in result.findings if f.file == "training_rows.csv")
    assert "artifact file 'training_rows.csv' column" in message


def test_the_same_model_passes_when_the_policy_classes_those_columns_pii(
    model_with_rows: Path,
) -> None:
    classes = {"email": "pii", "ssn": "pii", "card": "pii"}  # the policy's data.columns
    ctx = GateContext(artifact_dir=model_with_rows, column_classes=classes)
    result = check(ctx, SecurityConfig(modelscan=False))
    assert result.status == Status.PASS, [f.message for f in result.findings][:5]
    tables = result.evidence["artifact_tables"]
    assert tables["training_rows.csv"]["pii"]["email"]["judged"] is False
    assert tables["training_rows.csv"]["pii"]["email"]["entities"]["EMAIL_ADDRESS"]["count"] == 60


def test_a_secret_in_shipped_rows_is_found(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {"note": ["ok", "aws key AKIAIOSFODNN7EXAMPLE in use", "ok"], "x": [1, 2, 3]}
    )
    rows.to_parquet(tmp_path / "rows.parquet")
    result = check(GateContext(artifact_dir=tmp_path), SecurityConfig(modelscan=False))
    secrets = [
        f for f in result.findings if f.rule_id.startswith("SEC-SECRET") and "column" in f.evidence
    ]
    assert secrets and secrets[0].file == "rows.parquet"
    assert secrets[0].evidence["column"] == "note" and secrets[0].evidence["row"] == 1
