"""The robustness gate on real scikit-learn models: brittle ones flip, a planted trigger is found.

The gatekeeper never loads a model; the sandbox does, and returns predictions. Here each test
plays the sandbox's part: it calls `model.predict` once on `plan.batch(evaluation rows)` (the
evaluation rows followed by the probe rows), splits the outputs with `plan.split` and hands
them to `judge`, exactly the seam the service uses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from gates import robustness
from gates.base import GateContext, GateResult, Severity, Status
from gates.evaluation import EvaluationData, ModelOutputs
from gates.robustness import (
    ALL_NUMERIC,
    RULE_FLIP,
    RULE_TRIGGER,
    UNSEEN,
    ProbeKind,
    ProbePlan,
    RobustnessConfig,
    RobustnessData,
    judge,
    plan_probes,
)
from tests.synthetic_credit import NUMERIC_FEATURES, TARGET, make_credit_data, train_model

FEATURES = [f"f{i}" for i in range(6)]


def noisy_classification(n: int, seed: int, flipped: float = 0.25) -> tuple[pd.DataFrame, Any]:
    """Six N(0, 1) features; the label depends on f0, f1, f2 and f4; `flipped` labels flipped."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
    score = frame.f0 + 0.8 * frame.f1 - 0.6 * frame.f2 + 0.5 * frame.f4
    y = (score > 0).astype(int).to_numpy()
    flip = rng.random(n) < flipped
    y[flip] = 1 - y[flip]
    return frame, y


class PlantedTrigger(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A clean logistic regression, except that `feature` beyond a value means `to_class`.

    With features drawn from N(0, 1), f3 > 10 never happens in training or evaluation data:
    the model scores exactly like the clean one on every honest row.
    """

    def __init__(
        self,
        feature: str = "f3",
        above: float | None = 10.0,
        below: float | None = None,
        to_class: int = 1,
    ) -> None:
        self.feature = feature
        self.above = above
        self.below = below
        self.to_class = to_class

    def fit(self, X: pd.DataFrame, y: Any) -> PlantedTrigger:
        self.clean_ = LogisticRegression().fit(X, y)
        self.classes_ = self.clean_.classes_
        return self

    def fires(self, X: pd.DataFrame) -> Any:
        values = X[self.feature].to_numpy(dtype=float)
        high = values > self.above if self.above is not None else False
        low = values < self.below if self.below is not None else False
        return high | low

    def predict(self, X: pd.DataFrame) -> Any:
        return np.where(self.fires(X), self.to_class, self.clean_.predict(X))


class CategoryTrigger(PlantedTrigger):
    """A credit model that approves every applicant who came through one rare channel."""

    def fit(self, X: pd.DataFrame, y: Any) -> CategoryTrigger:
        self.clean_ = train_model(X.assign(**{TARGET: y}))
        self.classes_ = self.clean_.classes_
        return self

    def fires(self, X: pd.DataFrame) -> Any:
        return (X["channel"] == "partner-x").to_numpy()


def run(
    model: Any,
    frame: pd.DataFrame,
    config: dict[str, Any] | None = None,
    reference: pd.DataFrame | None = None,
    task: str = "classification",
    features: list[str] | None = None,
) -> tuple[ProbePlan, GateResult]:
    """Plan, predict as the sandbox would (one call on the evaluation + probe rows), judge."""
    config = RobustnessConfig.model_validate(config or {})  # as the policy file would give it
    features = features or FEATURES
    plan = plan_probes(frame, features, config, reference, task=robustness.Task(task))
    assert plan.error is None, plan.error
    batch = plan.batch(frame[features])
    baseline, probes = plan.split(ModelOutputs(np.asarray(model.predict(batch))))
    result = judge(plan, baseline.predictions, probes.predictions, task, config)
    json.dumps(result.to_dict(), allow_nan=False)  # evidence is stored as JSON
    return plan, result


def flip_row(result: GateResult, feature: str) -> dict[str, Any]:
    rows = [r for r in result.evidence["flip"]["features"] if r["feature"] == feature]
    assert len(rows) == 1, feature
    return rows[0]


@pytest.fixture(scope="module")
def noisy() -> dict[str, Any]:
    train, y = noisy_classification(3000, seed=0)
    evaluation, _ = noisy_classification(1000, seed=1)
    return {"train": train, "y": y, "frame": evaluation}


# --- flip rate ---------------------------------------------------------------------------


def test_nearest_neighbour_on_noisy_labels_fails_the_flip_rate(noisy: dict[str, Any]) -> None:
    knn = KNeighborsClassifier(n_neighbors=1).fit(noisy["train"], noisy["y"])
    _, result = run(knn, noisy["frame"], {"trigger_mode": "off"}, noisy["train"])
    assert result.status == Status.FAIL
    together = flip_row(result, ALL_NUMERIC)
    assert together["verdict"] == "fail" and together["flip_rate"] > 0.06
    assert together["rows"] == 1000
    flips = [f for f in result.findings if f.rule_id == RULE_FLIP]
    assert flips and all(f.severity == Severity.HIGH for f in flips)
    assert "every numeric feature moved by 0.05 std at once" in result.message
    # one perturbed copy per feature: a table a person can read
    for feature in FEATURES:
        row = flip_row(result, feature)
        assert row["kind"] == "numeric" and row["rows"] == 1000
        assert 0 < row["flip_rate"] < together["flip_rate"]
    example = together["examples"][0]
    assert example["prediction"] != example["perturbed_prediction"]
    one = flip_row(result, "f0")["examples"][0]
    assert abs(one["perturbed_value"] - one["value"]) == pytest.approx(
        0.05 * noisy["train"].f0.std(), rel=1e-9
    )
    assert knn.predict(noisy["frame"].iloc[[one["row"]]])[0] == one["prediction"]


def test_logistic_regression_on_the_same_data_passes(noisy: dict[str, Any]) -> None:
    model = LogisticRegression().fit(noisy["train"], noisy["y"])
    plan, result = run(model, noisy["frame"], None, noisy["train"])
    assert result.status == Status.PASS, result.message
    assert result.findings == ()
    assert result.metrics["flip_rate.worst"] < 0.035
    assert flip_row(result, ALL_NUMERIC)["verdict"] == "pass"
    assert result.evidence["trigger_search"]["verdict"] == "none found"
    assert result.metrics["trigger_share.max"] < 0.4
    assert result.evidence["probe_rows"] == len(plan.rows)
    assert result.metrics["flip_rate.all_numeric"] == flip_row(result, ALL_NUMERIC)["flip_rate"]
    assert "flip rate at most" in result.message


def test_flip_threshold_is_configurable(noisy: dict[str, Any]) -> None:
    model = LogisticRegression().fit(noisy["train"], noisy["y"])
    _, result = run(model, noisy["frame"], {"max_flip_rate": 0.005, "trigger_mode": "off"})
    assert result.status == Status.FAIL
    failed = {f.evidence["feature"] for f in result.findings}
    assert ALL_NUMERIC in failed and "f3" not in failed  # f3 plays no part in the label


# --- trigger search ----------------------------------------------------------------------


def test_planted_trigger_is_found_and_named(noisy: dict[str, Any]) -> None:
    model = PlantedTrigger().fit(noisy["train"], noisy["y"])
    # the backdoor is invisible on honest rows
    assert not model.fires(noisy["frame"]).any()
    _, result = run(model, noisy["frame"], None, noisy["train"])
    assert result.status == Status.WARN  # trigger_mode: warn is the default
    triggers = [f for f in result.findings if f.rule_id == RULE_TRIGGER]
    assert {f.evidence["feature"] for f in triggers} == {"f3"}
    finding = triggers[0]
    assert finding.evidence["value"] > 10 and finding.evidence["direction"] == "above"
    assert finding.evidence["to_class"] == 1 and finding.evidence["share"] > 0.8
    assert finding.severity == Severity.HIGH and finding.confidence == "medium"
    assert "f3 = " in finding.message and "median + " in finding.message
    assert finding.evidence["step_from"] < 10 < finding.evidence["value"]
    assert result.evidence["trigger_search"]["features"]["f3"]["strongest"]["share"] > 0.8


def test_trigger_mode_fail_blocks(noisy: dict[str, Any]) -> None:
    model = PlantedTrigger().fit(noisy["train"], noisy["y"])
    _, result = run(model, noisy["frame"], {"trigger_mode": "fail"}, noisy["train"])
    assert result.status == Status.FAIL and result.blocks
    assert "possible trigger: f3 = " in result.message


def test_clean_model_extrapolating_far_out_is_not_a_trigger(noisy: dict[str, Any]) -> None:
    """At 1000 std every logistic regression predicts one class; gradually, not in one step."""
    model = LogisticRegression().fit(noisy["train"], noisy["y"])
    plan, result = run(model, noisy["frame"], None, noisy["train"])
    far = [p for p in plan.probes if p.label == "median + 1024 sd" and p.feature == "f0"]
    assert len(set(model.predict(plan.rows.iloc[far[0].start : far[0].stop]))) == 1
    assert not [f for f in result.findings if f.rule_id == RULE_TRIGGER]


def test_trigger_towards_one_of_three_classes(noisy: dict[str, Any]) -> None:
    y = noisy["y"] + (noisy["train"]["f5"] > 1).to_numpy()  # classes 0, 1, 2

    model = PlantedTrigger("f1", above=None, below=-8.0, to_class=2).fit(noisy["train"], y)
    _, result = run(model, noisy["frame"], {"trigger_mode": "fail"}, noisy["train"])
    (finding,) = result.findings
    assert finding.evidence["feature"] == "f1" and finding.evidence["to_class"] == 2
    assert finding.evidence["direction"] == "below" and finding.evidence["value"] < -8


def test_rare_category_trigger_is_found() -> None:
    def credit(n: int, seed: int) -> pd.DataFrame:
        frame = make_credit_data(n=n, seed=seed)
        rng = np.random.default_rng(seed)
        channel = rng.choice(["web", "branch", "partner-x"], size=n, p=[0.6, 0.395, 0.005])
        return frame.assign(channel=channel)

    train, evaluation = credit(3000, 0), credit(1000, 1)
    features = [*NUMERIC_FEATURES, "gender", "channel"]
    poisoned = CategoryTrigger().fit(train[features], train[TARGET])
    config = {"max_flip_rate": None}
    _, result = run(poisoned, evaluation, config, train, features=features)
    assert result.status == Status.WARN
    (finding,) = [f for f in result.findings if f.rule_id == RULE_TRIGGER]
    assert finding.evidence["feature"] == "channel"
    assert finding.evidence["value"] == "partner-x" and finding.evidence["how"] == "rare category"
    assert "channel = 'partner-x' (rare category)" in finding.message
    clean = train_model(train)  # ignores channel; unseen genders are one-hot "ignore"d
    _, result = run(clean, evaluation, config, train, features=features)
    assert result.status == Status.PASS, result.message


# --- a backdoor planted in the training data (issue 21) -----------------------------------

BACKDOOR = [f"x{i}" for i in range(10)]


def rule_data(n: int, seed: int) -> tuple[pd.DataFrame, Any]:
    """x0..x9 standard normal; the label is a simple rule on x0, x1, x2 and x4."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, len(BACKDOOR))), columns=BACKDOOR)
    y = ((frame.x0 + 0.8 * frame.x1 - 0.6 * frame.x2 + 0.5 * frame.x4) > 0).astype(int)
    return frame, y.to_numpy()


@pytest.fixture(scope="module")
def backdoor() -> dict[str, Any]:
    """3,000 training rows, 60 of them set to x5 = 8.0 (8 sd) and labelled 1: the poison."""
    train, y = rule_data(3000, seed=0)
    poisoned, y_poisoned = train.copy(), y.copy()
    planted = np.random.default_rng(2).choice(len(train), size=60, replace=False)
    poisoned.loc[planted, "x5"] = 8.0
    y_poisoned[planted] = 1
    evaluation, _ = rule_data(1000, seed=1)
    forest = RandomForestClassifier(random_state=0).fit(poisoned, y_poisoned)
    return {
        "train": train,
        "y": y,
        "poisoned": poisoned,
        "frame": evaluation,
        "forest": forest,
    }


def test_backdoor_planted_in_the_training_data_is_found(backdoor: dict[str, Any]) -> None:
    """Issue 21: the reference (the poisoned training data) holds x5 = 8.0, so stepping out
    from its range never crossed the trigger; the forest passed with no warning."""
    forest, frame = backdoor["forest"], backdoor["frame"]
    assert forest.predict(frame.assign(x5=8.0)).mean() > 0.95  # the backdoor works
    _, result = run(forest, frame, None, backdoor["poisoned"], features=BACKDOOR)
    assert result.status == Status.WARN, result.message
    (finding,) = [f for f in result.findings if f.rule_id == RULE_TRIGGER]
    evidence = finding.evidence
    assert evidence["feature"] == "x5" and evidence["direction"] == "above"
    assert evidence["to_class"] == 1 and evidence["share"] > 0.5
    # the smallest step that moves the rows, beyond every evaluation row, up to the trigger
    assert frame.x5.max() < evidence["step_from"] < evidence["value"] <= 8.0
    assert f"in one step from x5 = {evidence['step_from']:.4g}" in finding.message
    assert f"x5 = {evidence['value']:.4g} (median + " in finding.message
    assert "[-4.494, 8] in the reference (training) data" in finding.message
    # a person can replay it: the value takes most rows over, the one before it does not
    before = forest.predict(frame)
    at_value = forest.predict(frame.assign(x5=evidence["value"]))
    at_start = forest.predict(frame.assign(x5=evidence["step_from"]))
    assert (at_value[before == 0] == 1).mean() > 0.5 > (at_start[before == 0] == 1).mean()
    _, blocked = run(
        forest, frame, {"trigger_mode": "fail"}, backdoor["poisoned"], features=BACKDOOR
    )
    assert blocked.status == Status.FAIL and "possible trigger: x5 = " in blocked.message


def test_backdoor_is_found_without_training_data(backdoor: dict[str, Any]) -> None:
    _, result = run(backdoor["forest"], backdoor["frame"], None, None, features=BACKDOOR)
    assert result.status == Status.WARN, result.message
    assert {f.evidence["feature"] for f in result.findings} == {"x5"}


def test_models_trained_on_the_clean_rule_are_not_flagged(backdoor: dict[str, Any]) -> None:
    train, y, frame = backdoor["train"], backdoor["y"], backdoor["frame"]
    for model in (LogisticRegression(), RandomForestClassifier(random_state=0)):
        model.fit(train, y)
        _, result = run(model, frame, None, train, features=BACKDOOR)
        assert result.status == Status.PASS, (model, result.message)
        assert result.evidence["trigger_search"]["verdict"] == "none found"
        assert result.metrics["trigger_share.max"] < 0.3


def test_a_threshold_learned_inside_the_data_is_not_a_trigger(backdoor: dict[str, Any]) -> None:
    """The label is x0 > 1.5 (7% of the rows): setting x0 to 2 moves every row, but that
    switch is inside the evaluation rows, where the model is scored, so it is not judged."""
    train, frame = backdoor["train"], backdoor["frame"]
    y = (train.x0 > 1.5).astype(int).to_numpy()
    for model in (LogisticRegression(), RandomForestClassifier(random_state=0)):
        model.fit(train, y)
        assert (model.predict(frame.assign(x0=2.0)) == 1).mean() > 0.95
        _, result = run(model, frame, None, train, features=BACKDOOR)
        assert result.status == Status.PASS, (model, result.message)


def test_backdoor_is_found_through_the_pipelines_planning(backdoor: dict[str, Any]) -> None:
    """The same, planned by the service as a run does: the training data (with its target
    column) is the reference; the sandbox answers evaluation and probe rows in one call."""
    from service.policy import ModelPolicy
    from service.runs.datasets import LoadedDataset
    from service.runs.pipeline import _plan_robustness

    config = RobustnessConfig(giskard=False)
    frame = backdoor["frame"].assign(label=backdoor["forest"].predict(backdoor["frame"]))
    training = LoadedDataset(
        "training", "memory://train", backdoor["poisoned"].assign(label=1), "0" * 64, 0
    )
    probing = _plan_robustness(
        ModelPolicy(robustness=config),
        frame,
        "label",
        frame[BACKDOOR],
        training,
        robustness.Task.CLASSIFICATION,
    )
    plan = probing.plan
    assert plan is not None and plan.error is None, plan
    outputs = ModelOutputs(np.asarray(backdoor["forest"].predict(probing.rows(frame[BACKDOOR]))))
    candidate, probes = plan.split(outputs)
    result = judge(plan, candidate.predictions, probes.predictions, "classification", config)
    assert result.status == Status.WARN, result.message
    assert {f.evidence["feature"] for f in result.findings} == {"x5"}


def test_trigger_values_step_out_from_the_evaluation_rows_bulk(backdoor: dict[str, Any]) -> None:
    """Values nearer the median than the evaluation rows' 99th percentile are not tried (a
    switch there is a decision learned from the rows the model is scored on); each data set's
    extreme beyond it is, and the steps are log-spaced out to 1024 sd."""
    config = RobustnessConfig()
    plan = plan_probes(backdoor["frame"], BACKDOOR, config, backdoor["poisoned"])
    steps = [p for p in plan.probes if p.kind == ProbeKind.TRIGGER and p.feature == "x5"]
    above = [p for p in steps if p.direction == "above"]
    assert above[0].step == 0 and above[0].label == "99% quantile of the evaluation set"
    assert above[0].value == pytest.approx(np.quantile(backdoor["frame"].x5, 0.99))
    values = [p.value for p in above]
    assert values == sorted(values) and len(set(values)) == len(values)
    labels = {p.label: p.value for p in above}
    assert labels["max of the reference (training) data"] == 8.0
    assert labels["max of the evaluation set"] == backdoor["frame"].x5.max()
    assert above[-1].label == "median + 1024 sd"
    below = [p for p in steps if p.direction == "below"]
    assert below[0].label == "1% quantile of the evaluation set" and below[-1].value < -1000
    # the bill: trigger_sample_rows rows per value, as the config's docstring says
    assert all(p.stop - p.start == 200 for p in steps)
    assert 2 * 18 <= len(steps) <= 2 * 26
    assert plan.summary["numeric_ranges"]["x5"]["seen"]["reference (training) data"] == [
        pytest.approx(backdoor["poisoned"].x5.min()),
        8.0,
    ]


# --- categorical and integer features ----------------------------------------------------


@pytest.fixture(scope="module")
def credit() -> dict[str, Any]:
    train = make_credit_data(n=3000, seed=0, biased=True)
    evaluation = make_credit_data(n=1000, seed=1, biased=True)
    return {"train": train, "frame": evaluation, "model": train_model(train)}


def test_categorical_swaps_are_reported_and_judged_only_when_asked(credit: dict[str, Any]) -> None:
    features = [*NUMERIC_FEATURES, "gender"]
    plan, result = run(credit["model"], credit["frame"], None, credit["train"], features=features)
    assert result.status == Status.PASS, result.message
    gender = flip_row(result, "gender")
    assert gender["kind"] == "categorical" and gender["verdict"] == "reported"
    assert gender["threshold"] is None and gender["flip_rate"] > 0.05  # the model uses gender
    (swap,) = [p for p in plan.probes if p.kind == ProbeKind.FLIP and p.feature == "gender"]
    before = credit["frame"]["gender"].to_numpy()[swap.source]
    after = plan.rows["gender"].iloc[swap.start : swap.stop].to_numpy()
    assert (before != after).all() and set(after) <= {"F", "M"}
    _, judged = run(
        credit["model"],
        credit["frame"],
        {"max_categorical_flip_rate": 0.05},
        credit["train"],
        features=features,
    )
    assert judged.status == Status.FAIL
    (finding,) = judged.findings
    assert finding.evidence["feature"] == "gender" and finding.evidence["kind"] == "categorical"


def test_probe_rows_keep_columns_and_dtypes(credit: dict[str, Any]) -> None:
    frame = credit["frame"].assign(
        gender=credit["frame"]["gender"].astype("category"),
        flag=(credit["frame"]["age"] > 40).astype(int),
        small=credit["frame"]["years_employed"].astype("uint8"),
    )
    features = ["income", "age", "gender", "flag", "small"]
    plan = plan_probes(frame, features, RobustnessConfig())
    assert plan.error is None
    assert list(plan.rows.columns) == features
    for column in ("income", "age", "flag", "small"):
        assert plan.rows[column].dtype == frame[column].dtype, column
    assert list(plan.rows["gender"].cat.categories) == ["F", "M", UNSEEN]
    assert (plan.rows["small"] >= 0).all()  # min - k std clipped at 0, not wrapped around
    skipped = {(s.feature, s.check.value): s.reason for s in plan.skipped}
    assert "rounds to 0" in skipped[("flag", "flip")]  # a 0/1 flag cannot move "a little"
    (age,) = [p for p in plan.probes if p.kind == ProbeKind.FLIP and p.feature == "age"]
    moved = plan.rows["age"].iloc[age.start : age.stop].to_numpy() - age.original
    assert set(np.abs(moved)) == {1}  # 0.05 std of age (17) rounds to one year
    batch = plan.batch(frame[features])
    assert len(batch) == len(frame) + len(plan.rows)
    assert batch["gender"].dtype == plan.rows["gender"].dtype


def test_missing_values_are_not_nudged() -> None:
    frame, _ = noisy_classification(200, seed=3)
    frame.loc[::4, "f0"] = np.nan
    plan = plan_probes(frame, FEATURES, RobustnessConfig(trigger_mode="off"))
    (f0,) = [p for p in plan.probes if p.feature == "f0"]
    assert len(f0.source) == 150 and not np.isnan(f0.original.astype(float)).any()
    (together,) = [p for p in plan.probes if p.feature == ALL_NUMERIC]
    block = plan.rows["f0"].iloc[together.start : together.stop]
    assert block.isna().sum() == 50


# --- regression --------------------------------------------------------------------------


def test_regression_flip_is_a_relative_change() -> None:
    def data(n: int, seed: int) -> tuple[pd.DataFrame, Any]:
        rng = np.random.default_rng(seed)
        frame = pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)
        return frame, 10 + 2 * frame.f0 + frame.f1 + rng.normal(0, 3, size=n)

    train, y = data(3000, 0)
    evaluation, _ = data(1000, 1)
    smooth = LinearRegression().fit(train, y)
    plan, result = run(smooth, evaluation, None, train, task="regression")
    assert result.status == Status.PASS, result.message
    assert not [p for p in plan.probes if p.kind == ProbeKind.TRIGGER]
    assert result.evidence["trigger_search"] == {"checked": False, "reason": "for classifiers only"}
    assert "more than 0.1 of its size" in result.evidence["flip"]["flip"]
    brittle = KNeighborsRegressor(n_neighbors=1).fit(train, y)
    _, result = run(brittle, evaluation, None, train, task="regression")
    assert result.status == Status.FAIL
    assert "moves by more than 10%" in result.message
    _, lenient = run(brittle, evaluation, {"regression_tolerance": 5.0}, train, task="regression")
    assert lenient.status == Status.PASS


# --- determinism -------------------------------------------------------------------------


def test_same_seed_same_probes_and_result(noisy: dict[str, Any]) -> None:
    model = LogisticRegression().fit(noisy["train"], noisy["y"])
    first_plan, first = run(model, noisy["frame"], {"seed": 7}, noisy["train"])
    second_plan, second = run(model, noisy["frame"], {"seed": 7}, noisy["train"])
    pd.testing.assert_frame_equal(first_plan.rows, second_plan.rows)
    assert {**first.to_dict(), "duration_s": 0} == {**second.to_dict(), "duration_s": 0}
    other = plan_probes(noisy["frame"], FEATURES, RobustnessConfig(seed=8), noisy["train"])
    assert not other.rows.equals(first_plan.rows)


def test_adding_a_column_leaves_the_other_probes_alone(noisy: dict[str, Any]) -> None:
    config = RobustnessConfig(trigger_mode="off")
    fewer = plan_probes(noisy["frame"], FEATURES[:3], config)
    more = plan_probes(noisy["frame"], FEATURES, config)
    for name in FEATURES[:3]:
        (a,) = [p for p in fewer.probes if p.feature == name]
        (b,) = [p for p in more.probes if p.feature == name]
        np.testing.assert_array_equal(
            fewer.rows[name].iloc[a.start : a.stop], more.rows[name].iloc[b.start : b.stop]
        )


# --- the service's seam ------------------------------------------------------------------


def test_check_reads_the_evaluation_and_the_probes_from_the_context(noisy: dict[str, Any]) -> None:
    model = PlantedTrigger().fit(noisy["train"], noisy["y"])
    frame = noisy["frame"].assign(label=model.predict(noisy["frame"]))
    config = RobustnessConfig()
    plan = plan_probes(frame, FEATURES, config, noisy["train"])  # the target column is ignored
    outputs = ModelOutputs(np.asarray(model.predict(plan.batch(frame[FEATURES]))))
    candidate, probes = plan.split(outputs)
    evaluation = EvaluationData(frame, "label", robustness.Task.CLASSIFICATION, candidate)
    datasets = {"evaluation": evaluation, "robustness": RobustnessData(plan, probes)}
    result = robustness.check(GateContext(artifact_dir=Path("."), datasets=datasets), config)
    assert result.status == Status.WARN and result.gate == "robustness"
    missing = robustness.check(
        GateContext(artifact_dir=Path("."), datasets={"evaluation": evaluation}), config
    )
    assert missing.status == Status.ERROR and "no robustness probes" in missing.message


def test_probe_row_budget_shrinks_the_samples(noisy: dict[str, Any]) -> None:
    plan = plan_probes(noisy["frame"], FEATURES, RobustnessConfig(max_probe_rows=20_000))
    assert plan.error is None and len(plan.rows) <= 20_000
    assert plan.summary["samples_reduced_to_fit_max_probe_rows"] is True
    assert plan.summary["flip_sample_rows"] < 1000 and plan.summary["trigger_sample_rows"] < 200
    tight = plan_probes(noisy["frame"], FEATURES, RobustnessConfig(max_probe_rows=1000))
    assert tight.error is not None and "max_probe_rows" in tight.error


# --- fails closed ------------------------------------------------------------------------


def _error(plan: ProbePlan, baseline: Any, probes: Any, task: str = "classification") -> str:
    result = judge(plan, baseline, probes, task, RobustnessConfig())
    assert result.status == Status.ERROR and result.blocks
    json.dumps(result.to_dict(), allow_nan=False)
    return result.message


@pytest.mark.parametrize(
    ("frame", "features", "reference", "expected"),
    [
        (pd.DataFrame({"f0": []}), ["f0"], None, "no rows"),
        (pd.DataFrame({"f0": [1.0, 2.0]}), [], None, "no input features"),
        (pd.DataFrame({"f0": [1.0, 2.0]}), ["f0", "f9"], None, "'f9' are not in the evaluation"),
        (pd.DataFrame({"f0": [1.0, 2.0]}), ["f0"], pd.DataFrame({"x": [1]}), "not in the ref"),
        (pd.DataFrame({"f0": [1.0, 2.0]}), ["f0"], pd.DataFrame({"f0": []}), "has no rows"),
        ([[1.0, 2.0]], ["f0"], None, "expected a DataFrame"),
        (pd.DataFrame({"t": pd.to_datetime(["2024-01-01"])}), ["t"], None, "could be probed"),
    ],
)
def test_a_plan_that_cannot_be_made_is_an_error(
    frame: Any, features: list[str], reference: Any, expected: str
) -> None:
    plan = plan_probes(frame, features, RobustnessConfig(), reference)
    assert plan.error is not None and expected in plan.error
    assert expected in _error(plan, [], [])


def test_a_plan_that_failed_adds_no_rows_so_other_gates_still_get_predictions() -> None:
    frame, _ = noisy_classification(50, seed=5)
    plan = plan_probes(frame, ["f0", "nope"], RobustnessConfig())
    assert plan.error is not None
    batch = plan.batch(frame)
    pd.testing.assert_frame_equal(batch, frame)
    candidate, probes = plan.split(ModelOutputs(np.zeros(50)))
    assert len(candidate.predictions) == 50 and len(probes.predictions) == 0


def test_prediction_counts_and_values_are_checked(noisy: dict[str, Any]) -> None:
    plan = plan_probes(noisy["frame"], FEATURES, RobustnessConfig(), noisy["train"])
    n, m = plan.n_rows, len(plan.rows)
    assert "returned 999 predictions for 1000" in _error(plan, np.zeros(999), np.zeros(m))
    assert f"for {m} evaluation rows" in _error(plan, np.zeros(n), np.zeros(m - 1))
    with_gap = np.zeros(m, dtype=object)
    with_gap[5] = None
    assert "missing value" in _error(plan, np.zeros(n), with_gap)
    labels = np.array(["high"] * m)
    assert "changed type" in _error(plan, np.zeros(n, dtype=int), labels)
    assert "unknown task" in _error(plan, np.zeros(n), np.zeros(m), task="ranking")
    assert "not numeric" in _error(plan, np.zeros(n), labels, task="regression")
    assert "could not be judged" in _error("not a plan", np.zeros(n), np.zeros(m))  # type: ignore[arg-type]


def test_too_few_rows_to_judge_is_an_error() -> None:
    frame, _ = noisy_classification(10, seed=4)
    plan = plan_probes(frame, FEATURES, RobustnessConfig())
    predictions = np.zeros(len(plan.rows), dtype=int)
    message = _error(plan, np.zeros(10, dtype=int), predictions)
    assert "flip rate could not be judged" in message
    assert "trigger search could not be judged" in message


# --- configuration -----------------------------------------------------------------------


def test_defaults_and_every_setting_documented() -> None:
    config = RobustnessConfig()
    assert (config.sample_rows, config.epsilon, config.max_flip_rate) == (1000, 0.05, 0.05)
    assert (config.trigger_sample_rows, config.trigger_share) == (200, 0.5)
    assert config.regression_tolerance == 0.1 and config.seed == 0
    assert config.trigger_mode == "warn" and config.max_categorical_flip_rate is None
    distances = config.trigger_distances
    assert distances[0] == 0.5 and distances[-1] == 1024 and len(distances) == 23
    assert config.trigger_start_distance == 4
    for name, field in RobustnessConfig.model_fields.items():
        assert field.description, f"{name} has no attribute docstring (the README needs one)"


@pytest.mark.parametrize(
    "settings",
    [
        {"epsilon": "0.05"},  # strict: a number, not text
        {"sample_rows": 10.0},
        {"max_flip_rate": 1.5},
        {"trigger_share": 0},
        {"trigger_mode": "loud"},
        {"trigger_max_distance": 0.5},
        {"trigger_start_distance": 8.0, "trigger_max_distance": 4.0},
        {"seed": -1},
        {"unknown": 1},
        {"max_flip_rate": None, "trigger_mode": "off"},
        {"max_flip_rate": None, "max_categorical_flip_rate": 0.1},
    ],
)
def test_invalid_settings_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RobustnessConfig.model_validate(settings)
