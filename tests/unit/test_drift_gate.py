"""The drift gate on synthetic tabular data: shifted features, schema changes, serving skew."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from gates import drift
from gates.base import GateContext, GateResult, Severity, Status
from gates.evaluation import EvaluationData, ModelOutputs

FEATURES = [f"f{i}" for i in range(6)]
# each feature has its own location and scale, so a shift of "1 sigma" means something
MEANS = np.array([0.0, 10.0, -5.0, 100.0, 0.5, 3.0])
SCALES = np.array([1.0, 2.0, 0.5, 15.0, 0.1, 4.0])
SIGNATURE = {"inputs": json.dumps([{"name": f, "type": "double"} for f in FEATURES])}


def make_frame(
    n: int,
    seed: int,
    shifted: tuple[str, ...] = (),
    segment: tuple[float, float, float] | None = None,
) -> pd.DataFrame:
    """`n` rows of six normal features; `shifted` ones moved by one standard deviation.

    `segment` adds a categorical column with those shares of "a", "b" and "c".
    """
    rng = np.random.default_rng(seed)
    values = rng.normal(MEANS, SCALES, size=(n, len(FEATURES)))
    frame = pd.DataFrame(values, columns=FEATURES)
    for name in shifted:
        frame[name] += SCALES[FEATURES.index(name)]
    if segment is not None:
        frame["segment"] = rng.choice(np.array(["a", "b", "c"]), size=n, p=segment)
    return frame


def run(
    training: Any = None,
    reference: Any = None,
    evaluation: Any = None,
    signature: bool = True,
    **cfg: Any,
) -> GateResult:
    config = drift.DriftConfig.model_validate(cfg)  # as the policy file would give it
    datasets = {
        key: value
        for key, value in (
            (drift.TRAINING_KEY, training),
            (drift.REFERENCE_KEY, reference),
            (drift.EVALUATION_FRAME_KEY, evaluation),
        )
        if value is not None
    }
    mlmodel = {"signature": SIGNATURE} if signature else {}
    ctx = GateContext(artifact_dir=Path("."), mlmodel=mlmodel, datasets=datasets)
    result = drift.check(ctx, config)
    json.dumps(result.to_dict(), allow_nan=False)  # plain JSON, no numpy types, no NaN
    return result


def table(result: GateResult, part: str = "data_drift") -> dict[str, dict[str, Any]]:
    return {row["column"]: row for row in result.evidence[part]["columns"]}


def rules(result: GateResult) -> list[str]:
    return [f.rule_id for f in result.findings]


# --- what the issue asks to show ---------------------------------------------------------------


def test_one_sigma_shift_on_three_of_six_features_fails_naming_exactly_those() -> None:
    shifted = ("f1", "f3", "f4")
    result = run(make_frame(2000, seed=2, shifted=shifted), make_frame(2000, seed=1))
    assert result.status == Status.FAIL
    [dataset_finding] = [f for f in result.findings if f.rule_id == drift.RULE_DATA]
    assert dataset_finding.severity == Severity.HIGH
    assert dataset_finding.evidence["drifted_columns"] == list(shifted)
    assert "3 of 6 columns drifted" in result.message
    assert "f1, f3, f4" in result.message
    rows = table(result)
    assert {c for c, row in rows.items() if row["drifted"]} == set(shifted)
    for name in shifted:  # about 1.0 by construction: W(shift) / sd
        assert rows[name]["method"] == "wasserstein_norm"
        assert 0.8 < rows[name]["score"] < 1.2
        assert rows[name]["psi_level"] == "drift"
    assert result.metrics["drifted_share"] == 0.5


def test_same_distribution_passes_in_at_least_19_of_20_seeds() -> None:
    for rows in (2000, 500):  # the Wasserstein / Jensen-Shannon path and the KS / chi-square one
        passed = 0
        for seed in range(20):
            share = (0.5, 0.3, 0.2)
            reference = make_frame(rows, seed=seed, segment=share)
            training = make_frame(rows, seed=1000 + seed, segment=share)
            passed += run(training, reference).status == Status.PASS
        assert passed >= 19, f"{rows} rows: only {passed} of 20 same-distribution draws passed"


@pytest.mark.parametrize(
    ("rows", "numeric", "categorical"),
    [(600, "ks", "chi_square"), (3000, "wasserstein_norm", "jensen_shannon")],
)
def test_method_follows_reference_size_and_a_category_shift_is_found(
    rows: int, numeric: str, categorical: str
) -> None:
    reference = make_frame(rows, seed=3, segment=(0.6, 0.3, 0.1))
    training = make_frame(rows, seed=4, segment=(0.3, 0.3, 0.4))
    result = run(training, reference, signature=False)
    evidence = result.evidence["data_drift"]
    assert evidence["method"].startswith(f"{numeric} / {categorical}")
    rows_by_column = table(result)
    assert {rows_by_column[f]["method"] for f in FEATURES} == {numeric}
    segment = rows_by_column["segment"]
    assert segment["method"] == categorical
    assert segment["kind"] == "categorical"
    assert segment["drifted"] is True
    assert segment["psi_level"] == "drift"
    # one drifted column of seven is no dataset drift, but PSI confirms a large move: warn
    assert result.status == Status.WARN
    [column] = [
        f for f in result.findings if f.rule_id == drift.RULE_COLUMN and "segment" in f.message
    ]
    assert column.severity == Severity.MEDIUM
    assert drift.RULE_DATA not in rules(result)


def test_removing_a_model_input_column_fails() -> None:
    reference = make_frame(800, seed=5)
    result = run(reference.drop(columns=["f2"]), reference)
    assert result.status == Status.FAIL
    [finding] = [f for f in result.findings if f.rule_id == drift.RULE_SCHEMA_REMOVED]
    assert finding.severity == Severity.HIGH
    assert "model input column 'f2'" in finding.message
    assert result.evidence["data_drift"]["schema"]["removed"] == ["f2"]


def test_adding_a_column_that_is_no_model_input_warns() -> None:
    reference = make_frame(800, seed=5)
    training = reference.assign(note="free text")
    result = run(training, reference)
    assert result.status == Status.WARN
    [finding] = [f for f in result.findings if f.rule_id == drift.RULE_SCHEMA_ADDED]
    assert finding.severity == Severity.LOW
    assert "'note'" in result.message
    # without a signature every column counts as a model input: the same change fails
    assert run(training, reference, signature=False).status == Status.FAIL


def test_kind_change_is_a_schema_finding_and_int_to_float_is_not() -> None:
    reference = make_frame(800, seed=6).assign(label=1, count=np.arange(800))
    training = reference.assign(label="1", count=reference["count"].astype(float))
    result = run(training, reference)
    assert result.status == Status.WARN  # `label` is no model input
    [finding] = [f for f in result.findings if f.rule_id == drift.RULE_SCHEMA_KIND]
    assert "'label'" in finding.message
    assert "numeric (int64)" in finding.message and "categorical (object)" in finding.message
    schema = result.evidence["data_drift"]["schema"]
    assert schema["dtype_changed"] == [
        {"column": "count", "reference": "int64", "training": "float64"}
    ]
    assert table(result)["count"]["drifted"] is False


def test_no_reference_is_skipped_with_the_reason() -> None:
    result = run(make_frame(300, seed=7))
    assert result.status == Status.SKIPPED
    assert result.message.startswith("no reference data: the first version")
    assert not result.blocks


@pytest.mark.parametrize(
    ("training", "reference", "words"),
    [
        (None, make_frame(100, seed=0), "no training data"),
        (None, None, "no training data"),
        (make_frame(100, seed=0), make_frame(100, seed=0).iloc[:0], "reference data is empty"),
        (pd.DataFrame(), make_frame(100, seed=0), "training data is empty"),
        (make_frame(100, seed=0).to_numpy(), make_frame(100, seed=0), "expected a DataFrame"),
    ],
)
def test_missing_or_malformed_data_is_an_error_that_blocks(
    training: Any, reference: Any, words: str
) -> None:
    result = run(training, reference)
    assert result.status == Status.ERROR
    assert result.blocks
    assert words in result.message


def test_training_serving_skew_warns_by_default() -> None:
    reference, training = make_frame(2000, seed=8), make_frame(2000, seed=9)
    evaluation = make_frame(500, seed=10, shifted=("f0", "f1", "f2", "f5"))
    result = run(training, reference, evaluation)
    assert result.status == Status.WARN
    [skew] = [f for f in result.findings if f.rule_id == drift.RULE_SKEW]
    assert skew.severity == Severity.MEDIUM
    assert skew.evidence["drifted_columns"] == ["f0", "f1", "f2", "f5"]
    assert result.message.startswith("training/serving skew")
    assert result.evidence["skew"]["rows"] == {"training": 2000, "evaluation": 500}
    assert not result.evidence["data_drift"]["dataset_drift"]
    assert run(training, reference, evaluation, skew_mode="fail").status == Status.FAIL
    off = run(training, reference, evaluation, skew_mode="off")
    assert off.status == Status.PASS
    assert off.evidence["skew"] == {"skipped": "skew_mode is off"}


def test_skew_reads_the_evaluation_set_when_no_evaluation_frame_is_given() -> None:
    training = make_frame(1500, seed=11)
    evaluation = make_frame(400, seed=12, shifted=("f0", "f1", "f2"))
    outputs = ModelOutputs(np.zeros(len(evaluation)))
    data = EvaluationData(evaluation, "f5", "regression", outputs)
    ctx = GateContext(
        artifact_dir=Path("."), datasets={drift.TRAINING_KEY: training, "evaluation": data}
    )
    result = drift.check(ctx, drift.DriftConfig())
    assert result.status == Status.WARN  # no reference (skipped) but the skew is reported
    assert drift.RULE_SKEW in rules(result)
    assert result.evidence["skew"]["source"] == "datasets['evaluation']"
    assert "no reference data" in result.message


@pytest.mark.parametrize(
    "cfg",
    [
        {"max_drifted_share": 0},
        {"max_drifted_share": 1.5},
        {"max_drifted_share": "0.5"},  # strict: a quoted number in YAML is a mistake
        {"p_value": 0},
        {"p_value": 1},
        {"small_sample_rows": 0},
        {"small_sample_rows": 1000.0},
        {"wasserstein_threshold": -0.1},
        {"jensen_shannon_threshold": 0},
        {"psi_bins": 1},
        {"psi_warn": 0.3, "psi_drift": 0.2},
        {"skew_mode": "loud"},
        {"columns": ["f0", "f0"]},
        {"columns": [""]},
        {"max_rows": 10},
        {"seed": -1},
        {"max_drift_share": 0.5},  # a typo is refused, not ignored
    ],
)
def test_config_rejects_bad_values(cfg: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        drift.DriftConfig.model_validate(cfg)


def test_config_defaults_are_evidentlys() -> None:
    config = drift.DriftConfig()
    assert (config.max_drifted_share, config.small_sample_rows, config.p_value) == (0.5, 1000, 0.05)
    assert (config.wasserstein_threshold, config.jensen_shannon_threshold) == (0.1, 0.1)
    assert (config.psi_bins, config.psi_warn, config.psi_drift) == (10, 0.1, 0.25)
    assert config.skew_mode == drift.SkewMode.WARN
    assert all(info.description for info in drift.DriftConfig.model_fields.values())


# --- odd data ----------------------------------------------------------------------------------


def odd_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    x[::7] = np.nan
    x[::11] = np.inf
    return pd.DataFrame(
        {
            "x": x,
            "all_nan": np.full(n, np.nan),
            "constant": np.full(n, 3.0),
            "flag": rng.random(n) < 0.3,
            "nullable": pd.array(rng.integers(0, 5, size=n), dtype="Int64"),
            "tags": [["a", "b"] if i % 2 else {"k": 1} for i in range(n)],  # unhashable
            "mixed": [(1, "1", None, 2.5, "x")[i % 5] for i in range(n)],
            "when": pd.date_range("2024-01-01", periods=n, freq="h"),
            "category": pd.Categorical(rng.choice(["u", "v"], size=n)),
        }
    )


@pytest.mark.parametrize("rows", [300, 1500])
def test_odd_data_never_crashes(rows: int) -> None:
    reference, training = odd_frame(rows, seed=13), odd_frame(rows, seed=14)
    result = run(training, reference, signature=False)
    assert result.status == Status.PASS, result.message
    by_column = table(result)
    assert by_column["all_nan"]["drifted"] is None  # nothing to judge on either side
    assert by_column["constant"]["drifted"] is False
    assert by_column["when"]["kind"] == "temporal" and by_column["when"]["drifted"] is None
    assert by_column["x"]["missing_share"]["training"] > 0.2  # NaN and inf
    assert by_column["tags"]["drifted"] is False


def test_a_column_emptied_or_moved_off_a_constant_drifts() -> None:
    reference = odd_frame(1500, seed=15)
    training = reference.assign(x=np.nan, constant=3.5)
    rows = table(run(training, reference, signature=False))
    assert rows["x"]["drifted"] is True
    assert "every value is missing in the training data" in rows["x"]["note"]
    assert rows["x"]["psi_level"] == "drift"
    assert rows["constant"]["drifted"] is True
    assert "floored" in rows["constant"]["note"]


def test_large_frames_are_sampled_with_a_seed_and_say_so() -> None:
    reference, training = make_frame(3000, seed=16), make_frame(2500, seed=17)
    first = run(training, reference, max_rows=1000, seed=7)
    evidence = first.evidence["data_drift"]
    assert evidence["sampled"] is True
    assert evidence["rows"] == {"reference": 3000, "training": 2500}
    assert evidence["compared_rows"] == {"reference": 1000, "training": 1000}
    assert evidence["method"].startswith("wasserstein_norm")  # chosen on the 3,000 rows
    assert run(training, reference, max_rows=1000, seed=7).evidence == first.evidence


def test_columns_restrict_the_comparison() -> None:
    reference = make_frame(800, seed=18)
    training = make_frame(800, seed=19, shifted=("f0", "f1", "f2", "f3"))
    result = run(training, reference, columns=["f4", "f5"])
    assert result.status == Status.PASS
    assert set(table(result)) == {"f4", "f5"}
    unknown = run(training, reference, columns=["f4", "nope"])
    assert unknown.status == Status.ERROR
    assert "'nope'" in unknown.message


def test_a_statistic_that_overflows_is_an_error_naming_the_column() -> None:
    reference = make_frame(2000, seed=20).assign(huge=lambda f: f["f0"] * 1e307)
    training = make_frame(2000, seed=21).assign(huge=lambda f: f["f0"] * 1e308)
    with np.errstate(over="ignore"):
        result = run(training, reference)
    assert result.status == Status.ERROR
    assert "column 'huge' could not be compared" in result.message
    assert table(result)["f0"]["drifted"] is False  # the other columns are still reported
