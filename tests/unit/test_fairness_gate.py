"""The fairness gate on a synthetic credit data set where one group is treated worse."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_ratio, equalized_odds_difference
from pydantic import ValidationError
from sklearn.linear_model import LogisticRegression

from gates import fairness
from gates.base import GateContext, GateResult, Severity, Status
from gates.evaluation import EvaluationData, ModelOutputs
from tests.synthetic_credit import TARGET, make_credit_data, train_model

CFG = {"mode": "enforce", "sensitive_features": ["gender", "age_band"]}


def _run(data: EvaluationData, cfg: dict[str, Any]) -> GateResult:
    config = fairness.FairnessConfig.model_validate(cfg)  # as the policy file would give it
    return fairness.check(
        GateContext(artifact_dir=Path("."), datasets={"evaluation": data}), config
    )


def _data(
    frame: pd.DataFrame, predictions: np.ndarray, training: pd.DataFrame | None = None
) -> EvaluationData:
    outputs = ModelOutputs(np.asarray(predictions), None, None)
    return EvaluationData(frame, TARGET, "classification", outputs, training_frame=training)


@pytest.fixture(scope="module")
def biased() -> dict[str, Any]:
    train = make_credit_data(n=5000, seed=0, biased=True)
    evaluation = make_credit_data(n=5000, seed=1, biased=True)
    return {"train": train, "frame": evaluation, "pred": train_model(train).predict(evaluation)}


@pytest.fixture(scope="module")
def fair() -> dict[str, Any]:
    train = make_credit_data(n=5000, seed=0, biased=False)
    evaluation = make_credit_data(n=5000, seed=1, biased=False)
    return {"train": train, "frame": evaluation, "pred": train_model(train).predict(evaluation)}


def test_biased_model_fails_with_ratio_group_and_size(biased: dict[str, Any]) -> None:
    result = _run(_data(biased["frame"], biased["pred"], biased["train"]), CFG)
    assert result.status == Status.FAIL
    gender = result.evidence["features"]["gender"]
    ratio = gender["demographic_parity_ratio"]["value"]
    assert 0.45 < ratio < 0.75
    assert gender["demographic_parity_ratio"]["threshold"] == 0.8
    assert gender["verdict"] == "fail"
    women = int((biased["frame"]["gender"] == "F").sum())
    dp = next(f for f in result.findings if f.rule_id == "FAIR-DP-001")
    assert dp.severity == Severity.HIGH
    assert dp.evidence["group"] == "F" and dp.evidence["group_size"] == women
    assert "gender" in dp.message and f"{ratio:.3f}" in dp.message
    assert "'F'" in dp.message and f"n={women}" in dp.message
    row = next(g for g in gender["groups"] if g["group"] == "F")
    assert row["size"] == women and row["judged"] is True
    assert set(row) >= {"selection_rate", "tpr", "fpr", "accuracy", "size"}
    assert result.metrics["gender.demographic_parity_ratio"] == pytest.approx(ratio)


def test_fair_model_passes(fair: dict[str, Any]) -> None:
    result = _run(_data(fair["frame"], fair["pred"], fair["train"]), CFG)
    assert result.status == Status.PASS, result.message
    assert not result.findings
    gender = result.evidence["features"]["gender"]
    assert gender["demographic_parity_ratio"]["value"] > 0.9
    assert gender["equalized_odds_difference"]["value"] < 0.05
    assert result.evidence["base_rate_warning"]["warning"] is False


def test_values_match_fairlearn(biased: dict[str, Any]) -> None:
    frame, pred = biased["frame"], biased["pred"]
    result = _run(_data(frame, pred), {"sensitive_features": ["gender"]})
    kwargs = {"sensitive_features": frame["gender"]}
    assert result.metrics["gender.demographic_parity_ratio"] == pytest.approx(
        demographic_parity_ratio(frame[TARGET], pred, **kwargs)
    )
    assert result.metrics["gender.equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(frame[TARGET], pred, **kwargs)
    )


def test_equalized_odds_ceiling_fails(biased: dict[str, Any]) -> None:
    cfg = {"sensitive_features": ["gender"], "demographic_parity_ratio": None}
    cfg["equalized_odds_difference"] = 0.05
    result = _run(_data(biased["frame"], biased["pred"]), cfg)
    assert result.status == Status.FAIL
    assert [f.rule_id for f in result.findings] == ["FAIR-EO-001"]
    assert "equalized odds difference for gender" in result.message
    assert "'F'" in result.message and "n=" in result.message


def test_small_group_is_reported_not_judged(fair: dict[str, Any]) -> None:
    frame = fair["frame"].copy()
    region = np.where(np.arange(len(frame)) % 2 == 0, "north", "south").astype(object)
    region[:10] = "island"
    frame["region"] = region
    result = _run(_data(frame, fair["pred"]), {"sensitive_features": ["region"]})
    assert result.status == Status.PASS, result.message
    groups = {g["group"]: g for g in result.evidence["features"]["region"]["groups"]}
    assert groups["island"]["size"] == 10 and groups["island"]["judged"] is False
    assert groups["north"]["judged"] and groups["south"]["judged"]
    judged = frame["region"] != "island"
    expected = demographic_parity_ratio(
        frame.loc[judged, TARGET],
        fair["pred"][judged.to_numpy()],
        sensitive_features=frame.loc[judged, "region"],
    )
    assert result.metrics["region.demographic_parity_ratio"] == pytest.approx(expected)


def test_single_group_feature_is_an_error(fair: dict[str, Any]) -> None:
    frame = fair["frame"].assign(country="NL")
    result = _run(_data(frame, fair["pred"]), {"sensitive_features": ["gender", "country"]})
    assert result.status == Status.ERROR
    assert "sensitive feature country has only one group (NL n=5000" in result.message
    assert result.evidence["features"]["country"]["verdict"] == "error"


def test_one_judged_group_and_a_tiny_one_is_an_error(fair: dict[str, Any]) -> None:
    frame = fair["frame"].copy()
    frame["country"] = ["BE" if i < 5 else "NL" for i in range(len(frame))]
    result = _run(_data(frame, fair["pred"]), {"sensitive_features": ["country"]})
    assert result.status == Status.ERROR
    assert "country has only one group" in result.message
    assert "too small to judge: BE n=5" in result.message


def test_missing_sensitive_column_is_an_error(fair: dict[str, Any]) -> None:
    result = _run(_data(fair["frame"], fair["pred"]), {"sensitive_features": ["ethnicity"]})
    assert result.status == Status.ERROR
    assert "'ethnicity'" in result.message


def test_no_sensitive_features_is_an_error(fair: dict[str, Any]) -> None:
    result = _run(_data(fair["frame"], fair["pred"]), {"mode": "enforce"})
    assert result.status == Status.ERROR
    assert "no sensitive features" in result.message


@pytest.mark.parametrize(
    ("cfg", "key"),
    [
        ({**CFG, "demographic_parity": 0.9}, "demographic_parity"),
        ({**CFG, "demographic_parity_ratio": 1.5}, "demographic_parity_ratio"),
        ({**CFG, "bootstrap": True}, "bootstrap"),
        ({**CFG, "intersections": [["gender"]]}, "intersections"),
        ({**CFG, "sensitive_features": [""]}, "sensitive_features"),
    ],
)
def test_bad_config_is_refused_naming_the_key(cfg: dict[str, Any], key: str) -> None:
    with pytest.raises(ValidationError) as refused:
        fairness.FairnessConfig.model_validate(cfg)
    assert any(error["loc"][0] == key for error in refused.value.errors())


def test_missing_evaluation_data_is_an_error() -> None:
    config = fairness.FairnessConfig.model_validate(CFG)
    result = fairness.check(GateContext(artifact_dir=Path(".")), config)
    assert result.status == Status.ERROR


def test_bootstrap_interval_contains_the_estimate(biased: dict[str, Any]) -> None:
    cfg = {"sensitive_features": ["gender"], "bootstrap": 200, "seed": 0}
    gender = _run(_data(biased["frame"], biased["pred"]), cfg).evidence["features"]["gender"]
    for stat in ("demographic_parity_ratio", "equalized_odds_difference"):
        low, high = gender[stat]["ci95"]
        assert low < gender[stat]["value"] < high
        assert high - low < 0.2
    off = _run(_data(biased["frame"], biased["pred"]), {**cfg, "bootstrap": 0})
    assert off.evidence["features"]["gender"]["demographic_parity_ratio"]["ci95"] is None


def test_bootstrap_statistics_agree_with_fairlearn(biased: dict[str, Any]) -> None:
    """The vectorised resample statistics equal fairlearn's on the unresampled rows."""
    frame, pred = biased["frame"], biased["pred"]
    groups = frame["age_band"].to_numpy()
    y = frame[TARGET].to_numpy()
    names, codes = np.unique(groups, return_inverse=True)
    counts = np.bincount(codes * 4 + y * 2 + pred, minlength=len(names) * 4)
    counts = counts.reshape(1, len(names), 4).astype(float)
    assert fairness._dp_from_counts(counts)[0] == pytest.approx(
        demographic_parity_ratio(y, pred, sensitive_features=groups)
    )
    assert fairness._eo_from_counts(counts)[0] == pytest.approx(
        equalized_odds_difference(y, pred, sensitive_features=groups)
    )


def test_same_inputs_same_result(biased: dict[str, Any]) -> None:
    data = _data(biased["frame"], biased["pred"], biased["train"])
    cfg = {**CFG, "seed": 7}
    first, second = _run(data, cfg).to_dict(), _run(data, cfg).to_dict()
    first.pop("duration_s"), second.pop("duration_s")
    assert first == second
    other = _run(data, {**cfg, "seed": 8}).evidence["features"]["gender"]
    assert (
        other["demographic_parity_ratio"]["ci95"]
        != (first["evidence"]["features"]["gender"]["demographic_parity_ratio"]["ci95"])
    )


def test_intersections_are_judged_as_combined_groups(biased: dict[str, Any]) -> None:
    cfg = {"sensitive_features": ["gender"], "intersections": [["gender", "age_band"]]}
    result = _run(_data(biased["frame"], biased["pred"]), cfg)
    combined = result.evidence["features"]["gender x age_band"]
    assert combined["columns"] == ["gender", "age_band"]
    labels = {g["group"] for g in combined["groups"]}
    assert "F, 18-29" in labels and len(labels) == 8
    assert "gender x age_band.demographic_parity_ratio" in result.metrics


def test_base_rate_disparity_in_training_data_only_warns(
    fair: dict[str, Any], biased: dict[str, Any]
) -> None:
    result = _run(_data(fair["frame"], fair["pred"], biased["train"]), CFG)
    assert result.status == Status.WARN, result.message
    [finding] = result.findings
    assert finding.rule_id == "FAIR-BASE-001" and finding.severity == Severity.LOW
    assert finding.evidence["group"] == "F"
    assert result.evidence["base_rate_warning"]["warning"] is True

    failing = _run(_data(biased["frame"], biased["pred"], biased["train"]), CFG)
    assert failing.status == Status.FAIL
    assert "FAIR-BASE-001" in {f.rule_id for f in failing.findings}


def test_multiclass_is_an_error() -> None:
    frame = make_credit_data(n=1000, seed=2)
    model = LogisticRegression(max_iter=500).fit(frame[["age"]], frame["age_band"])
    outputs = ModelOutputs(model.predict(frame[["age"]]), None, None)
    data = EvaluationData(frame, "age_band", "classification", outputs)
    result = _run(data, {"sensitive_features": ["gender"]})
    assert result.status == Status.ERROR
    assert "fairness gate supports binary classification and regression" in result.message


def _regression_data(noise_f: float) -> EvaluationData:
    frame = make_credit_data(n=4000, seed=5)
    rng = np.random.default_rng(5)
    frame["credit_limit"] = frame["income"] / 5
    scale = np.where(frame["gender"] == "F", noise_f, 100.0)
    predictions = frame["credit_limit"].to_numpy() + rng.normal(0.0, scale)
    outputs = ModelOutputs(predictions, None, None)
    return EvaluationData(frame, "credit_limit", "regression", outputs)


def test_regression_error_ratio() -> None:
    worse = _run(_regression_data(noise_f=200.0), {"sensitive_features": ["gender"]})
    assert worse.status == Status.FAIL
    [finding] = worse.findings
    assert finding.rule_id == "FAIR-ERR-001" and finding.evidence["group"] == "F"
    stat = worse.evidence["features"]["gender"]["error_ratio"]
    assert stat["value"] == pytest.approx(2.0, abs=0.2)
    low, high = stat["ci95"]
    assert low < stat["value"] < high
    groups = {g["group"]: g for g in worse.evidence["features"]["gender"]["groups"]}
    assert groups["F"]["mae"] > groups["M"]["mae"]

    even = _run(_regression_data(noise_f=100.0), {"sensitive_features": ["gender"]})
    assert even.status == Status.PASS, even.message


def test_result_is_plain_json(biased: dict[str, Any]) -> None:
    cfg = {**CFG, "intersections": [["gender", "age_band"]]}
    result = _run(_data(biased["frame"], biased["pred"], biased["train"]), cfg)
    json.dumps(result.to_dict(), allow_nan=False)  # no numpy scalars, no NaN or infinity
