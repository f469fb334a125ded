"""What reaches the model in the sandbox, and what its failures are called (issue 21, items 1, 8).

Evaluation data carry more than a model's inputs: the target, and the sensitive features the
fairness gate groups by, which a model is usually NOT trained on. The model gets exactly its
input columns (the MLmodel signature's, else the ones it was trained on, e.g. scikit-learn's
`feature_names_in_`, which only the sandbox can read); its scores, Giskard's scan and its
predictions then come back. When it fails, the published message says why in the parent's own
words: a missing or unexpected column the gatekeeper itself knows, a dtype mismatch, the type
of the exception (from a fixed list) and never its text, which stays in the admin diagnostics.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cloudpickle
import mlflow.pyfunc
import mlflow.sklearn
import pandas as pd
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from service.sandbox.runner import GiskardRequest, SandboxError, SandboxLimits, predict_in_sandbox
from tests.synthetic_credit import NUMERIC_FEATURES, TARGET, make_credit_data

# `make test-fast` leaves these out: every test starts a sandboxed model process (seconds each)
pytestmark = pytest.mark.slow

QUICK = SandboxLimits(wall_seconds=60)
SECRET = "sk_live_4f1c9a0e7d2b8c6a5e3f"


# --- models (pickled by value, so the child loads them like any user's model) ---------------


class ReportsItsColumns(mlflow.pyfunc.PythonModel):
    """Answers every row with the names of the columns it was given."""

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> list[str]:
        return [",".join(map(str, model_input.columns))] * len(model_input)


class RaisesWithRows(mlflow.pyfunc.PythonModel):
    """Raises an exception whose text carries a secret and the rows it was given."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> list[int]:
        text = f"token {SECRET}; rows:\n{model_input.head(3).to_csv(index=False)}"
        if self.kind == "custom":

            class LeakyError(Exception):
                pass

            raise LeakyError(text)
        raise ValueError(text)


class ReadsAColumn(mlflow.pyfunc.PythonModel):
    """Reads a column by name: a KeyError when it is not among its rows."""

    def __init__(self, column: str) -> None:
        self.column = column

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> list[int]:
        return [int(v > 0) for v in model_input[self.column]]


class ClaimsColumns(mlflow.pyfunc.PythonModel):
    """Says it was trained on columns that smuggle text out, then fails."""

    def __init__(self) -> None:
        self.feature_names_in_ = ["income", f"{SECRET}-{'x' * 300}", "\x1b[31mred", "gender"]

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> list[int]:
        raise RuntimeError(f"{SECRET} {model_input.head(2).to_csv()}")


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def credit() -> pd.DataFrame:
    return make_credit_data(n=600, seed=31)


@pytest.fixture(scope="module")
def rows(credit: pd.DataFrame) -> pd.DataFrame:
    """What the gatekeeper has beside the target: the inputs and the sensitive features."""
    return credit.drop(columns=[TARGET])


@pytest.fixture(scope="module")
def numeric_logreg(credit: pd.DataFrame) -> LogisticRegression:
    """Trained on the numeric columns only, from a DataFrame: it knows their names and
    refuses any other column (scikit-learn checks `feature_names_in_`)."""
    return LogisticRegression(max_iter=1000).fit(credit[NUMERIC_FEATURES], credit[TARGET])


@pytest.fixture
def workdir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sandboxes"
    yield path
    assert not path.exists() or not list(path.iterdir()), "the sandbox left files behind"


def save_sklearn(path: Path, model: Any, signature_on: pd.DataFrame | None) -> Path:
    signature = infer_signature(signature_on) if signature_on is not None else None
    mlflow.sklearn.save_model(model, path, serialization_format="pickle", signature=signature)
    return path


def save_pyfunc(path: Path, python_model: Any, signature_on: pd.DataFrame | None) -> Path:
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        mlflow.pyfunc.save_model(
            path,
            python_model=python_model,
            pip_requirements=["mlflow"],
            signature=infer_signature(signature_on) if signature_on is not None else None,
        )
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    return path


def failure(model: Path, rows: pd.DataFrame, workdir: Path) -> SandboxError:
    with pytest.raises(SandboxError) as caught:
        predict_in_sandbox(model, rows, limits=QUICK, workdir=workdir)
    return caught.value


# --- item 1: the model gets its own columns, the gates keep the rest -------------------------


def test_a_model_with_a_signature_gets_only_its_input_columns(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    model = save_pyfunc(tmp_path / "m", ReportsItsColumns(), rows[NUMERIC_FEATURES])
    result = predict_in_sandbox(model, rows, limits=QUICK, workdir=workdir)
    assert set(result.predictions) == {",".join(NUMERIC_FEATURES)}
    assert result.evidence["model_inputs"] == {
        "source": "signature",
        "columns": NUMERIC_FEATURES,
    }


def test_scores_of_a_model_trained_without_the_sensitive_columns(
    tmp_path: Path, rows: pd.DataFrame, numeric_logreg: LogisticRegression, workdir: Path
) -> None:
    """The README's credit case: predict went through MLflow's schema (which drops extra
    columns), but predict_proba got gender and age_band, refused them, and the scores were
    silently lost (roc_auc could not be computed: the gate ended `error`)."""
    model = save_sklearn(tmp_path / "m", numeric_logreg, rows[NUMERIC_FEATURES])
    result = predict_in_sandbox(model, rows, limits=QUICK, workdir=workdir)
    assert result.scores is not None and len(result.scores) == len(rows)
    assert result.classes == [0, 1]
    assert "scores_error" not in result.evidence


def test_without_a_signature_the_columns_it_was_trained_on_are_used(
    tmp_path: Path, rows: pd.DataFrame, numeric_logreg: LogisticRegression, workdir: Path
) -> None:
    model = save_sklearn(tmp_path / "m", numeric_logreg, None)
    result = predict_in_sandbox(model, rows, limits=QUICK, workdir=workdir)
    assert len(result.predictions) == len(rows)
    assert result.scores is not None and len(result.scores) == len(rows)
    assert result.evidence["model_inputs"] == {
        "source": "the columns the model was fitted on (feature_names_in_)",
        "columns": NUMERIC_FEATURES,
    }


def test_giskard_scans_the_credit_rows_with_the_models_own_columns(
    tmp_path: Path, credit: pd.DataFrame, rows: pd.DataFrame, numeric_logreg: Any, workdir: Path
) -> None:
    """Giskard's model wrapper called predict_proba with every column of the scan's rows; the
    scan failed and said only 'failed in the sandbox'."""
    model = save_sklearn(tmp_path / "m", numeric_logreg, rows[NUMERIC_FEATURES])
    request = GiskardRequest(
        target_values=[int(v) for v in credit[TARGET].iloc[:300]], task="classification",
        cat_columns=["gender", "age_band"], detectors=["robustness"],
        row_indices=list(range(300)), budget_s=100.0,
    )  # fmt: skip
    result = predict_in_sandbox(
        model, rows, limits=SandboxLimits(wall_seconds=150), workdir=workdir, giskard=request
    )
    assert result.giskard is not None
    assert result.giskard.error is None, result.giskard.error
    assert result.giskard.seconds > 0


def test_a_giskard_scan_that_fails_says_why_in_classified_words(
    tmp_path: Path, rows: pd.DataFrame, numeric_logreg: Any, workdir: Path
) -> None:
    model = save_sklearn(tmp_path / "m", numeric_logreg, rows[NUMERIC_FEATURES])
    # fewer labels than rows to scan: building the scan's dataset raises a ValueError
    request = GiskardRequest(
        target_values=[0] * 50, task="classification", cat_columns=[],
        detectors=["robustness"], row_indices=list(range(60)), budget_s=100.0,
    )  # fmt: skip
    result = predict_in_sandbox(
        model, rows, limits=SandboxLimits(wall_seconds=150), workdir=workdir, giskard=request
    )
    assert result.giskard is not None and result.giskard.error is not None
    assert "ValueError raised in the Giskard scan" in result.giskard.error, result.giskard.error
    assert len(result.predictions) == len(rows)


def test_probe_rows_mlflow_refuses_cost_only_the_probes(tmp_path: Path, workdir: Path) -> None:
    """MLflow converts a 0/1 integer column to a `double` input, not a 2: the dtypes are
    judged on the evaluation rows, and a probe row refused in the sandbox costs the probes."""
    rows = pd.DataFrame({"flag": [0, 1] * 20, "x": [float(i) for i in range(40)]})
    signed_on = rows.astype({"flag": float})
    logreg = LogisticRegression().fit(signed_on, [0, 1] * 20)
    model = save_sklearn(tmp_path / "m", logreg, signed_on)
    probes = rows.head(5).assign(flag=2)
    result = predict_in_sandbox(
        model, pd.concat([rows, probes], ignore_index=True), limits=QUICK, workdir=workdir,
        n_primary=len(rows),
    )  # fmt: skip
    assert len(result.predictions) == len(rows)
    assert result.extra_predictions is None and result.extra_error is not None


# --- item 8: classified, row-free reasons ----------------------------------------------------


def test_a_column_the_signature_lacks_is_named_as_missing(
    tmp_path: Path, rows: pd.DataFrame, numeric_logreg: LogisticRegression, workdir: Path
) -> None:
    """The signature was inferred on a frame without `income`; the model needs it."""
    without_income = rows[[c for c in NUMERIC_FEATURES if c != "income"]]
    model = save_sklearn(tmp_path / "m", numeric_logreg, without_income)
    error = failure(model, rows, workdir)
    assert "missing input column 'income'" in error.message, error.message
    assert "ValueError raised in predict" in error.message
    assert "Feature names" not in error.message  # scikit-learn's own words stay for admins
    assert "Feature names" in error.diagnostics["exception"]


def test_a_pyfunc_reading_a_column_it_was_not_given_names_it(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    model = save_pyfunc(tmp_path / "m", ReadsAColumn("income"), rows[["age", "debt_ratio"]])
    error = failure(model, rows, workdir)
    assert "missing input column 'income'" in error.message, error.message
    assert "KeyError raised in predict" in error.message


def test_a_column_the_model_does_not_take_is_named_as_unexpected(
    tmp_path: Path, rows: pd.DataFrame, numeric_logreg: LogisticRegression, workdir: Path
) -> None:
    """The signature lists `gender`, the model was never fitted on it and refuses it."""
    signed = tmp_path / "signed-with-gender"
    mlflow.sklearn.save_model(
        numeric_logreg, signed, serialization_format="pickle",
        signature=infer_signature(rows[[*NUMERIC_FEATURES, "gender"]]),
    )  # fmt: skip
    error = failure(signed, rows, workdir)
    assert "unexpected column 'gender'" in error.message, error.message


def test_a_signature_column_absent_from_the_data_is_named_before_loading(
    tmp_path: Path, rows: pd.DataFrame, numeric_logreg: LogisticRegression, workdir: Path
) -> None:
    model = save_sklearn(tmp_path / "m", numeric_logreg, rows[NUMERIC_FEATURES])
    error = failure(model, rows.drop(columns=["debt_ratio"]), workdir)
    assert error.kind == "input"
    assert "missing input column 'debt_ratio'" in error.message, error.message


def test_a_dtype_mismatch_is_named_with_both_types(
    tmp_path: Path, credit: pd.DataFrame, rows: pd.DataFrame, workdir: Path
) -> None:
    """Trained and signed on a frame where age was a float; the evaluation file has integers,
    which MLflow's schema enforcement refuses to convert."""
    floats = credit[NUMERIC_FEATURES].astype({"age": float})
    logreg = LogisticRegression(max_iter=1000).fit(floats, credit[TARGET])
    model = save_sklearn(tmp_path / "m", logreg, floats)
    error = failure(model, rows, workdir)
    assert "dtype mismatch in column 'age' (expected double, got long)" in error.message, (
        error.message
    )

    # amounts written as text ("$39,580"): MLflow converts "39580.0", not these
    strings = rows.assign(income=[f"${v:,.0f}" for v in rows["income"]])
    error = failure(model, strings, workdir)
    assert "dtype mismatch in column 'income' (expected double, got string)" in error.message


@pytest.mark.parametrize(("kind", "named"), [("value", "ValueError"), ("custom", "an exception")])
def test_an_exception_is_named_by_type_and_its_text_stays_with_the_admins(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path, kind: str, named: str
) -> None:
    model = save_pyfunc(tmp_path / "m", RaisesWithRows(kind), rows[NUMERIC_FEATURES])
    error = failure(model, rows, workdir)
    assert f"{named} raised in predict" in error.message, error.message
    assert "LeakyError" not in error.message
    first_row = rows[NUMERIC_FEATURES].head(1).to_csv(index=False).splitlines()[1]
    for leak in (SECRET, first_row, str(rows["income"].iloc[0])):
        assert leak not in error.message
        assert leak not in str(error.evidence)
    assert SECRET in error.diagnostics["exception"]  # the admin diagnostics are unchanged


def test_column_names_the_model_reports_are_echoed_only_when_the_data_has_them(
    tmp_path: Path, rows: pd.DataFrame, workdir: Path
) -> None:
    model = save_pyfunc(tmp_path / "m", ClaimsColumns(), rows[["age", "debt_ratio"]])
    error = failure(model, rows, workdir)
    assert "missing input column 'income'" in error.message, error.message
    # a data column, but not missing: it was not sent because the signature does not list it
    assert "missing input column 'gender'" in error.message
    assert SECRET not in error.message and "[31mred" not in error.message
    assert "\x1b" not in error.message
    assert "2 input column(s) the evaluation data does not have" in error.message
    assert SECRET not in str(error.evidence)
