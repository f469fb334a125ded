"""Performance gate: is the candidate good enough, and no worse than the version it would replace?

The gatekeeper computes every number itself, with scikit-learn, from the predictions the
sandbox produced on the evaluation set the policy names; metrics the trainer logged are never
used for a decision.

Metrics
    classification: accuracy, precision, recall, f1 (binary: the positive label is the greater
    class, e.g. 1, unless the policy sets ``positive_label``; more than two classes: macro
    average over the classes present, stated in the evidence), and, when the model returns
    class scores (``predict_proba``), roc_auc (one-vs-rest macro for multiclass) and log_loss;
    when the model has ``predict_proba`` but it failed, the reason the sandbox classified
    ("ValueError raised in predict_proba; unexpected column 'gender'") is in the note.
    regression: rmse, mae, r2.
    Lower is better for log_loss, rmse and mae; higher for the others.

Checks (configuration: ``min``, ``max``, ``max_regression``, each a map metric -> number)
    PERF-FLOOR-001  absolute bounds: the candidate's metric is below ``min`` or above ``max``.
        Bounds are the policy owner's: there is no default floor.
    PERF-REGRESSION-001  no regression against the champion, the version that holds the alias
        now, evaluated on the same rows in the same run: for a higher-is-better metric the
        candidate fails when ``candidate < champion - allowed``; for a lower-is-better one when
        ``candidate > champion + allowed``. The message reads "regressed against version N".
        With no alias holder yet only the bounds apply, and the evidence says so.
    Comparisons allow 1e-9 for floating-point rounding.

Fails closed: missing evaluation data, a missing target column, a prediction count that does
not match the rows, an unknown metric or key in the configuration, or a configured metric that
cannot be computed (roc_auc on a target with one class, scores missing) give ``error``.

Evidence: a per-metric table (metric, candidate, champion, threshold, verdict pass|fail|info;
``error`` when a thresholded metric could not be computed, with a note saying why).
``mode`` (enforce | warn | off) is accepted here and applied by the policy decision.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import Field
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from gates.base import Finding, GateConfig, GateContext, GateResult, Severity, Status
from gates.evaluation import (
    CLASSIFICATION,
    REGRESSION,
    EvaluationData,
    EvaluationInputError,
    ModelOutputs,
    Task,
    class_labels,
    evaluation_from_context,
    numeric_array,
    plain,
    positive_label,
    prediction_array,
    score_matrix,
    target_array,
)

GATE_NAME = "performance"
RULE_FLOOR = "PERF-FLOOR-001"
RULE_REGRESSION = "PERF-REGRESSION-001"
THRESHOLD_KEYS = ("min", "max", "max_regression")
TOLERANCE = 1e-9

CLASSIFICATION_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "log_loss")
REGRESSION_METRICS = ("rmse", "mae", "r2")
METRICS_BY_TASK = {CLASSIFICATION: CLASSIFICATION_METRICS, REGRESSION: REGRESSION_METRICS}
LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})


ClassificationMetric = Literal["accuracy", "precision", "recall", "f1", "roc_auc", "log_loss"]
RegressionMetric = Literal["rmse", "mae", "r2"]
Metric = ClassificationMetric | RegressionMetric
Bound = Annotated[float, Field(allow_inf_nan=False, strict=True)]
AllowedChange = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]


class PerformanceConfig(GateConfig):
    """`gates.performance` in the policy file. There is no default bound: bounds are the
    policy owner's; with none, metrics are reported only."""

    min: dict[Metric, Bound] = Field(default_factory=dict)
    """PERF-FLOOR-001: the candidate fails when a metric is below its floor."""

    max: dict[Metric, Bound] = Field(default_factory=dict)
    """PERF-FLOOR-001: the candidate fails when a metric is above its ceiling."""

    max_regression: dict[Metric, AllowedChange] = Field(default_factory=dict)
    """PERF-REGRESSION-001: the allowed change against the version holding the alias, on
    the same rows (a no-regression check needs that champion to be loadable)."""

    positive_label: str | int | float | bool | None = None
    """The positive class for binary precision, recall and f1; defaults to the greater label."""

    def thresholds(self) -> dict[str, dict[str, float]]:
        return {key: dict(getattr(self, key)) for key in THRESHOLD_KEYS if getattr(self, key)}


@dataclass
class _Computed:
    """One model's metrics: a value, or None with the reason it could not be computed."""

    values: dict[str, float | None] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Setup:
    task: Task
    y_true: NDArray[Any]
    labels: list[Any]
    pos_label: Any
    averaging: str


def check(ctx: GateContext, config: PerformanceConfig) -> GateResult:
    started = time.perf_counter()
    try:
        data = evaluation_from_context(ctx)
        thresholds = _thresholds(config, data.task)
        setup = _setup(data, config)
        candidate = _evaluate(setup, data.candidate, "the candidate")
        champion = (
            _evaluate(setup, data.champion, f"the champion (version {data.champion_version})")
            if data.champion is not None
            else None
        )
    except EvaluationInputError as exc:
        return GateResult(
            GATE_NAME,
            Status.ERROR,
            message=str(exc),
            thresholds=config.thresholds(),
            duration_s=time.perf_counter() - started,
        )
    version = data.champion_version or "?"
    rows, findings, errors = _judge(setup.task, thresholds, candidate, champion, version)
    evidence: dict[str, Any] = {
        "task": setup.task,
        "rows": len(setup.y_true),
        "averaging": setup.averaging,
        "positive_label": plain(setup.pos_label) if setup.pos_label is not None else None,
        "champion_version": data.champion_version if champion is not None else None,
        "comparison": (
            f"against version {version} on the same rows"
            if champion is not None
            else "no champion (no other version holds the alias in the gatekeeper's record): "
            "floors only"
        ),
        "metrics": rows,
    }
    if errors:
        status, message = Status.ERROR, "; ".join(errors)
    elif findings:
        status, message = Status.FAIL, "; ".join(f.message for f in findings)
    else:
        status = Status.PASS
        judged = sum(row["verdict"] == "pass" for row in rows)
        against = f" against version {version}" if champion is not None else " (floors only)"
        message = (
            f"{judged} thresholded metric(s) met on {len(setup.y_true)} rows{against}"
            if judged
            else f"no thresholds configured: metrics on {len(setup.y_true)} rows reported only"
        )
    return GateResult(
        gate=GATE_NAME,
        status=status,
        findings=tuple(findings),
        metrics={k: v for k, v in candidate.values.items() if v is not None},
        thresholds=config.thresholds(),
        evidence=evidence,
        message=message,
        duration_s=time.perf_counter() - started,
    )


def _thresholds(config: PerformanceConfig, task: Task) -> dict[str, dict[str, float]]:
    """The configured bounds, refused when a metric does not apply to the model's task."""
    parsed: dict[str, dict[str, float]] = {}
    for key in THRESHOLD_KEYS:
        section: dict[str, float] = getattr(config, key)
        for metric in section:
            if metric not in METRICS_BY_TASK[task]:
                raise EvaluationInputError(
                    f"performance.{key}.{metric} is not a {task} metric (the model is evaluated "
                    f"as {task}: {', '.join(METRICS_BY_TASK[task])})"
                )
        parsed[key] = dict(section)
    return parsed


def _setup(data: EvaluationData, config: PerformanceConfig) -> _Setup:
    y_true = target_array(data)
    if data.task == REGRESSION:
        return _Setup(REGRESSION, numeric_array(y_true, "target values"), [], None, "none")
    outputs = [("the candidate", data.candidate)]
    if data.champion is not None:
        outputs.append((f"the champion (version {data.champion_version})", data.champion))
    predicted = [(who, prediction_array(out, len(y_true), who), out) for who, out in outputs]
    labels = class_labels(y_true, predicted)
    pos = positive_label(labels, config.positive_label)
    if len(labels) <= 2:
        averaging = f"binary: positive label {plain(pos)!r}"
    else:
        averaging = f"macro average over the classes present ({len(labels)} classes)"
        pos = None
    return _Setup(CLASSIFICATION, y_true, labels, pos, averaging)


def _evaluate(setup: _Setup, outputs: ModelOutputs, who: str) -> _Computed:
    predictions = prediction_array(outputs, len(setup.y_true), who)
    if setup.task == REGRESSION:
        return _regression_metrics(setup.y_true, numeric_array(predictions, f"{who} predictions"))
    scores = score_matrix(outputs, setup.labels, len(setup.y_true), who)
    return _classification_metrics(setup, predictions, scores, outputs.scores_error)


def _regression_metrics(y_true: NDArray[Any], y_pred: NDArray[Any]) -> _Computed:
    out = _Computed()
    out.values["rmse"] = float(skm.root_mean_squared_error(y_true, y_pred))
    out.values["mae"] = float(skm.mean_absolute_error(y_true, y_pred))
    if len(np.unique(y_true)) < 2:
        out.values["r2"] = None
        out.reasons["r2"] = "the target is constant on the evaluation set"
    else:
        out.values["r2"] = float(skm.r2_score(y_true, y_pred))
    return out


def _classification_metrics(
    setup: _Setup,
    y_pred: NDArray[Any],
    scores: tuple[NDArray[Any], list[Any]] | None,
    scores_error: str | None = None,
) -> _Computed:
    y_true = setup.y_true
    out = _Computed()
    out.values["accuracy"] = float(skm.accuracy_score(y_true, y_pred))
    avg: dict[str, Any] = (
        {"average": "binary", "pos_label": setup.pos_label}
        if setup.pos_label is not None
        else {"average": "macro"}
    )
    for name, fn in (
        ("precision", skm.precision_score),
        ("recall", skm.recall_score),
        ("f1", skm.f1_score),
    ):
        _try(out, name, functools.partial(fn, y_true, y_pred, zero_division=0, **avg))
    if scores is None:
        why = "the model returned no class scores (predict_proba)"
        why = f"{why}: {scores_error}" if scores_error else why
        for name in ("roc_auc", "log_loss"):
            out.values[name] = None
            out.reasons[name] = why
        return out
    matrix, classes = scores
    if len(np.unique(y_true)) < 2:
        out.values["roc_auc"] = None
        out.reasons["roc_auc"] = "the target has only one class in the evaluation set"
    else:
        _try(out, "roc_auc", lambda: _roc_auc(setup, matrix, classes))
    _try(out, "log_loss", lambda: skm.log_loss(y_true, matrix, labels=classes))
    return out


def _roc_auc(setup: _Setup, matrix: NDArray[Any], classes: list[Any]) -> float:
    if setup.pos_label is not None:
        if setup.pos_label not in classes:
            raise ValueError(f"no score column for the positive label {setup.pos_label!r}")
        column = matrix[:, classes.index(setup.pos_label)]
        return float(skm.roc_auc_score(setup.y_true == setup.pos_label, column))
    return float(
        skm.roc_auc_score(setup.y_true, matrix, multi_class="ovr", average="macro", labels=classes)
    )


def _try(out: _Computed, name: str, compute: Callable[[], Any]) -> None:
    """Record the metric, or None and why sklearn could not compute it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=UndefinedMetricWarning)
            value = float(compute())
        if not math.isfinite(value):
            raise ValueError(f"the result is {value}")
    except (ValueError, TypeError) as exc:
        out.values[name] = None
        out.reasons[name] = f"not computable: {exc}"
        return
    out.values[name] = value


def _judge(
    task: Task,
    thresholds: dict[str, dict[str, float]],
    candidate: _Computed,
    champion: _Computed | None,
    version: str,
) -> tuple[list[dict[str, Any]], list[Finding], list[str]]:
    rows: list[dict[str, Any]] = []
    findings: list[Finding] = []
    errors: list[str] = []
    for metric in METRICS_BY_TASK[task]:
        row, found, err = _judge_metric(metric, thresholds, candidate, champion, version)
        rows.append(row)
        findings += found
        errors += err
    return rows, findings, errors


def _judge_metric(
    metric: str,
    thresholds: dict[str, dict[str, float]],
    candidate: _Computed,
    champion: _Computed | None,
    version: str,
) -> tuple[dict[str, Any], list[Finding], list[str]]:
    value = candidate.values.get(metric)
    champ = champion.values.get(metric) if champion is not None else None
    lower, upper = thresholds["min"].get(metric), thresholds["max"].get(metric)
    allowed = thresholds["max_regression"].get(metric)
    texts: list[str] = []
    verdicts: list[str] = []
    findings: list[Finding] = []
    errors: list[str] = []
    notes = [candidate.reasons[metric]] if metric in candidate.reasons else []
    detail = {"metric": metric, "candidate": value, "champion": champ}

    for bound, op in ((lower, ">="), (upper, "<=")):
        if bound is None:
            continue
        texts.append(f"{op} {bound:g}")
        if value is None:
            errors.append(f"{metric} has a bound but {candidate.reasons[metric]}")
            verdicts.append("error")
        elif _outside(value, bound, op):
            word = "below the floor" if op == ">=" else "above the ceiling"
            findings.append(
                Finding(
                    RULE_FLOOR,
                    Severity.HIGH,
                    f"{metric} {value:.4f} is {word} {bound:g}",
                    evidence={**detail, "threshold": f"{op} {bound:g}"},
                )
            )
            verdicts.append("fail")
        else:
            verdicts.append("pass")

    if allowed is not None:
        direction = "rise" if metric in LOWER_IS_BETTER else "drop"
        if champion is None:
            texts.append(f"{direction} <= {allowed:g} vs champion (none yet: not judged)")
        else:
            texts.append(f"{direction} <= {allowed:g} vs v{version}")
            verdict, finding, error = _judge_regression(
                metric, value, champ, allowed, version, candidate, champion, detail
            )
            verdicts.append(verdict)
            findings += [finding] if finding else []
            errors += [error] if error else []
    if champion is not None and metric in champion.reasons:
        notes.append(f"champion: {champion.reasons[metric]}")

    if "error" in verdicts:
        row_verdict = "error"
    elif "fail" in verdicts:
        row_verdict = "fail"
    else:
        row_verdict = "pass" if verdicts else "info"
    row = {**detail, "threshold": "; ".join(texts) or None, "verdict": row_verdict}
    if notes:
        row["note"] = "; ".join(notes)
    return row, findings, errors


def _outside(value: float, bound: float, op: str) -> bool:
    return value < bound - TOLERANCE if op == ">=" else value > bound + TOLERANCE


def _judge_regression(
    metric: str,
    value: float | None,
    champ: float | None,
    allowed: float,
    version: str,
    candidate: _Computed,
    champion: _Computed,
    detail: dict[str, Any],
) -> tuple[str, Finding | None, str | None]:
    if value is None or champ is None:
        why = candidate.reasons.get(metric) or f"for the champion {champion.reasons.get(metric)}"
        return "error", None, f"cannot compare {metric} against version {version}: {why}"
    if metric in LOWER_IS_BETTER:
        worse, change, word = value > champ + allowed + TOLERANCE, value - champ, "rise"
    else:
        worse, change, word = value < champ - allowed - TOLERANCE, champ - value, "drop"
    if not worse:
        return "pass", None, None
    message = (
        f"{metric} regressed against version {version}: {value:.4f} vs {champ:.4f} "
        f"({word} {change:.4f} > allowed {allowed:g})"
    )
    evidence = {**detail, "threshold": f"{word} <= {allowed:g} vs v{version}"}
    return "fail", Finding(RULE_REGRESSION, Severity.HIGH, message, evidence=evidence), None
