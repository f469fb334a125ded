"""The performance gate on real sklearn predictions: floors, no-regression, malformed inputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import roc_auc_score

from gates.base import GateContext, GateResult, Status
from gates.evaluation import EvaluationData, ModelOutputs, infer_task
from gates.performance import PerformanceConfig, check
from tests.synthetic_credit import TARGET, make_credit_data, train_model


def _outputs(model: Any, frame: pd.DataFrame) -> ModelOutputs:
    return ModelOutputs(model.predict(frame), model.predict_proba(frame), list(model.classes_))


def _run(data: EvaluationData, cfg: dict[str, Any]) -> GateResult:
    config = PerformanceConfig.model_validate(cfg)  # as the policy file would give it
    return check(GateContext(artifact_dir=Path("."), datasets={"evaluation": data}), config)


def _row(result: GateResult, metric: str) -> dict[str, Any]:
    return next(r for r in result.evidence["metrics"] if r["metric"] == metric)


@pytest.fixture(scope="module")
def credit() -> dict[str, Any]:
    train = make_credit_data(n=5000, seed=0, biased=False)
    evaluation = make_credit_data(n=5000, seed=1, biased=False)
    good = train_model(train)
    weak = LogisticRegression().fit(train[["age"]], train[TARGET])  # age barely matters

    class OnAge:  # the weak model, called like the others on the whole frame
        classes_ = weak.classes_

        def predict(self, frame: pd.DataFrame) -> np.ndarray:
            return weak.predict(frame[["age"]])

        def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
            return weak.predict_proba(frame[["age"]])

    return {
        "frame": evaluation,
        "good": _outputs(good, evaluation),
        "weak": _outputs(OnAge(), evaluation),
    }


def _classification(
    credit: dict[str, Any], candidate: str, champion: str | None = None, version: str = "3"
) -> EvaluationData:
    return EvaluationData(
        frame=credit["frame"],
        target=TARGET,
        task="classification",
        candidate=credit[candidate],
        champion=credit[champion] if champion else None,
        champion_version=version if champion else None,
    )


def test_floor_below_min_fails(credit: dict[str, Any]) -> None:
    result = _run(_classification(credit, "good"), {"min": {"accuracy": 0.99}})
    assert result.status == Status.FAIL
    assert [f.rule_id for f in result.findings] == ["PERF-FLOOR-001"]
    assert "accuracy" in result.message and "below the floor 0.99" in result.message
    row = _row(result, "accuracy")
    assert row["threshold"] == ">= 0.99" and row["verdict"] == "fail"


def test_floors_met_pass(credit: dict[str, Any]) -> None:
    cfg = {"mode": "enforce", "min": {"roc_auc": 0.9, "accuracy": 0.8}, "max": {"log_loss": 0.5}}
    result = _run(_classification(credit, "good"), cfg)
    assert result.status == Status.PASS, result.message
    assert _row(result, "roc_auc")["verdict"] == "pass"
    assert _row(result, "log_loss")["threshold"] == "<= 0.5"
    assert _row(result, "precision")["verdict"] == "info"
    expected = roc_auc_score(credit["frame"][TARGET], credit["good"].scores[:, 1])
    assert result.metrics["roc_auc"] == pytest.approx(expected)
    assert set(result.metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"}
    assert result.evidence["averaging"] == "binary: positive label 1"


def test_ceiling_on_lower_is_better_metric_fails(credit: dict[str, Any]) -> None:
    result = _run(_classification(credit, "good"), {"max": {"log_loss": 0.05}})
    assert result.status == Status.FAIL
    assert "log_loss" in result.message and "above the ceiling 0.05" in result.message


def test_worse_than_champion_fails_with_version(credit: dict[str, Any]) -> None:
    cfg = {"min": {"roc_auc": 0.5}, "max_regression": {"roc_auc": 0.02}}
    result = _run(_classification(credit, "weak", champion="good", version="3"), cfg)
    assert result.status == Status.FAIL
    assert "regressed against version 3" in result.message
    assert "roc_auc" in result.message
    finding = result.findings[0]
    assert finding.rule_id == "PERF-REGRESSION-001"
    assert finding.evidence["champion"] > finding.evidence["candidate"] + 0.02
    row = _row(result, "roc_auc")
    assert row["threshold"] == ">= 0.5; drop <= 0.02 vs v3"
    assert row["verdict"] == "fail"
    assert row["champion"] == pytest.approx(finding.evidence["champion"])


def test_better_than_champion_passes(credit: dict[str, Any]) -> None:
    cfg = {"max_regression": {"roc_auc": 0.02, "log_loss": 0.0, "f1": 0.0}}
    result = _run(_classification(credit, "good", champion="weak", version="3"), cfg)
    assert result.status == Status.PASS, result.message
    assert "against version 3" in result.message
    assert all(_row(result, m)["verdict"] == "pass" for m in ("roc_auc", "log_loss", "f1"))
    assert _row(result, "accuracy")["champion"] is not None


def test_lower_is_better_metric_regresses_when_it_rises(credit: dict[str, Any]) -> None:
    cfg = {"max_regression": {"log_loss": 0.01}}
    result = _run(_classification(credit, "weak", champion="good", version="12"), cfg)
    assert result.status == Status.FAIL
    assert "log_loss regressed against version 12" in result.message
    assert "rise" in result.message
    assert _row(result, "log_loss")["threshold"] == "rise <= 0.01 vs v12"


def test_no_champion_means_floors_only(credit: dict[str, Any]) -> None:
    cfg = {"min": {"accuracy": 0.5}, "max_regression": {"roc_auc": 0.0}}
    result = _run(_classification(credit, "weak"), cfg)
    assert result.status == Status.PASS, result.message
    assert "floors only" in result.evidence["comparison"]
    assert result.evidence["champion_version"] is None
    row = _row(result, "roc_auc")
    assert row["champion"] is None and row["verdict"] == "info"
    assert "none yet" in row["threshold"]


def test_regression_task_metrics_and_champion() -> None:
    frame = make_credit_data(n=2000, seed=3)
    frame["credit_limit"] = frame["income"] * (1 - frame["debt_ratio"]) / 5
    features = ["income", "debt_ratio"]
    good = LinearRegression().fit(frame[features], frame["credit_limit"])
    weak = LinearRegression().fit(frame[["age"]], frame["credit_limit"])
    assert infer_task(frame["credit_limit"]) == "regression"
    data = EvaluationData(
        frame=frame,
        target="credit_limit",
        task="regression",
        candidate=ModelOutputs(weak.predict(frame[["age"]]), None, None),
        champion=ModelOutputs(good.predict(frame[features]), None, None),
        champion_version="7",
    )
    result = _run(data, {"min": {"r2": -1.0}, "max_regression": {"rmse": 10.0}})
    assert set(result.metrics) == {"rmse", "mae", "r2"}
    truth = frame["credit_limit"].to_numpy()
    error = truth - weak.predict(frame[["age"]])
    assert result.metrics["rmse"] == pytest.approx(float(np.sqrt(np.mean(error**2))))
    assert result.metrics["mae"] == pytest.approx(float(np.mean(np.abs(error))))
    assert result.status == Status.FAIL
    assert "rmse regressed against version 7" in result.message

    swapped = EvaluationData(
        frame, "credit_limit", "regression", data.champion, data.candidate, "7"
    )
    assert _run(swapped, {"min": {"r2": 0.5}, "max_regression": {"rmse": 0.0}}).status == (
        Status.PASS
    )


def test_multiclass_uses_macro_average() -> None:
    frame = make_credit_data(n=2000, seed=4)
    model = LogisticRegression(max_iter=500).fit(frame[["age"]], frame["age_band"])
    outputs = ModelOutputs(
        model.predict(frame[["age"]]), model.predict_proba(frame[["age"]]), list(model.classes_)
    )
    data = EvaluationData(frame, "age_band", "classification", outputs)
    result = _run(data, {"min": {"f1": 0.1, "roc_auc": 0.6}})
    assert result.status == Status.PASS, result.message
    assert result.evidence["averaging"].startswith("macro average")
    assert result.evidence["positive_label"] is None


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"min": {"auc": 0.7}}, ("min", "auc")),
        ({"min": {"accuracy": "high"}}, ("min", "accuracy")),
        ({"min": {"accuracy": float("nan")}}, ("min", "accuracy")),
        ({"max_regression": {"roc_auc": -0.1}}, ("max_regression", "roc_auc")),
        ({"max_regresion": {"roc_auc": 0.1}}, ("max_regresion",)),
    ],
)
def test_bad_config_is_refused_naming_the_key(cfg: dict[str, Any], expected: tuple[str]) -> None:
    with pytest.raises(ValidationError) as refused:
        PerformanceConfig.model_validate(cfg)
    assert any(error["loc"][: len(expected)] == expected for error in refused.value.errors())


def test_metric_of_another_task_is_an_error_naming_the_key(credit: dict[str, Any]) -> None:
    result = _run(_classification(credit, "good"), {"max_regression": {"rmse": 0.1}})
    assert result.status == Status.ERROR
    assert "performance.max_regression.rmse" in result.message


def test_missing_target_column_is_an_error(credit: dict[str, Any]) -> None:
    data = EvaluationData(credit["frame"], "defaulted", "classification", credit["good"])
    result = _run(data, {"min": {"accuracy": 0.5}})
    assert result.status == Status.ERROR
    assert "'defaulted'" in result.message


def test_prediction_count_mismatch_is_an_error(credit: dict[str, Any]) -> None:
    short = ModelOutputs(credit["good"].predictions[:10], None, None)
    data = EvaluationData(credit["frame"], TARGET, "classification", short)
    result = _run(data, {})
    assert result.status == Status.ERROR
    assert "10 predictions for 5000 evaluation rows" in result.message


def test_champion_count_mismatch_is_an_error(credit: dict[str, Any]) -> None:
    short = ModelOutputs(credit["good"].predictions[:10], None, None)
    data = EvaluationData(credit["frame"], TARGET, "classification", credit["good"], short, "3")
    result = _run(data, {})
    assert result.status == Status.ERROR
    assert "version 3" in result.message


def test_labels_of_another_type_are_an_error(credit: dict[str, Any]) -> None:
    as_text = ModelOutputs(credit["good"].predictions.astype(str), None, None)
    data = EvaluationData(credit["frame"], TARGET, "classification", as_text)
    result = _run(data, {})
    assert result.status == Status.ERROR
    assert "1 vs '1'" in result.message


def test_single_class_target_makes_roc_auc_not_computable(credit: dict[str, Any]) -> None:
    frame = credit["frame"]
    approved = (frame[TARGET] == 1).to_numpy()
    rows = frame[approved].reset_index(drop=True)
    good = credit["good"]
    outputs = ModelOutputs(good.predictions[approved], good.scores[approved], good.classes)
    data = EvaluationData(rows, TARGET, "classification", outputs)

    thresholded = _run(data, {"min": {"roc_auc": 0.7}})
    assert thresholded.status == Status.ERROR
    assert "roc_auc" in thresholded.message and "one class" in thresholded.message

    reported = _run(data, {"min": {"accuracy": 0.5}})
    assert reported.status == Status.PASS, reported.message
    row = _row(reported, "roc_auc")
    assert row["candidate"] is None and "one class" in row["note"]
    assert "roc_auc" not in reported.metrics


def test_no_evaluation_data_is_an_error() -> None:
    config = PerformanceConfig(min={"accuracy": 0.5})
    result = check(GateContext(artifact_dir=Path(".")), config)
    assert result.status == Status.ERROR
    assert "no evaluation data" in result.message


def test_same_inputs_same_result(credit: dict[str, Any]) -> None:
    data = _classification(credit, "weak", champion="good")
    cfg = {"min": {"accuracy": 0.6}, "max_regression": {"roc_auc": 0.02}}
    first, second = _run(data, cfg).to_dict(), _run(data, cfg).to_dict()
    first.pop("duration_s"), second.pop("duration_s")
    assert first == second


def test_infer_task() -> None:
    assert infer_task(pd.Series([0, 1, 1, 0])) == "classification"
    assert infer_task(pd.Series(["yes", "no"])) == "classification"
    assert infer_task(pd.Series([True, False])) == "classification"
    assert infer_task(pd.Series([0.5, 1.25, 3.0])) == "regression"
    assert infer_task(pd.Series(range(100))) == "regression"
    assert infer_task(pd.Series([1.0, 2.0, 3.0])) == "classification"


def test_result_is_plain_json(credit: dict[str, Any]) -> None:
    result = _run(_classification(credit, "weak", champion="good"), {"min": {"f1": 0.5}})
    json.dumps(result.to_dict(), allow_nan=False)  # no numpy scalars, no NaN or infinity
