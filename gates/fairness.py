"""Fairness gate: does the candidate treat the groups of a sensitive feature comparably?

Computed with fairlearn (``fairlearn.metrics``) on the candidate's predictions over the
evaluation set, for every sensitive feature of the policy (``data.sensitive_features``) and
every configured intersection (``intersections: [[gender, age_band]]`` judges each combination
of values as one group, reported as feature ``gender x age_band`` with groups like ``F, 18-29``;
a missing value is its own group, ``<missing>``). Supports binary classification and
regression; a classifier with more than two classes gives ``error`` (demographic parity and
equalized odds are defined here for one positive outcome; the positive label is the greater
class, e.g. 1, unless the policy sets ``positive_label``).

Checks
    FAIR-DP-001  demographic parity ratio: the lowest group selection rate (share of positive
        predictions) divided by the highest. Fails below ``demographic_parity_ratio`` (default
        0.8, the four-fifths rule of the EEOC Uniform Guidelines on Employee Selection
        Procedures, 29 CFR 1607.4(D): a selection rate below four-fifths of the highest
        group's is evidence of adverse impact).
    FAIR-EO-001  equalized odds difference: the larger of the between-group spreads of true
        positive rate and false positive rate (Hardt, Price and Srebro, "Equality of
        Opportunity in Supervised Learning", NeurIPS 2016). Fails above
        ``equalized_odds_difference`` (default 0.1).
    FAIR-ERR-001  regression models: the highest group mean absolute error divided by the
        lowest. Fails above ``max_error_ratio`` (default 1.25).
    FAIR-BASE-001  base-rate disparity in the training data (``training_frame``, when the
        service has it): a group's positive rate of the target below ``base_rate_ratio``
        (default 0.8) of the highest group's. A model learns what its data teach, so this is a
        LOW finding and turns the gate to ``warn`` only when nothing else failed; it never
        fails the gate on its own.

Groups with fewer than ``min_group_size`` rows (default 30) are listed in the evidence with
``judged: false`` and left out of the ratios: a rate over a handful of rows is noise. Every
ratio and difference is computed on the rows of the judged groups only. A feature with fewer
than two judged groups cannot be judged and gives ``error``, never ``pass``; so do a missing
sensitive column, missing evaluation data and a group with no positive or no negative target
rows when equalized odds is checked. A threshold set to ``null`` switches that check off.

Evidence per feature: a per-group table (size, positives, selection rate, TPR, FPR, accuracy,
judged; MAE for regression) and each statistic with its threshold and a 95% percentile
bootstrap confidence interval (``bootstrap`` resamples of the judged rows with replacement,
default 200, 0 disables; a numpy Generator seeded with ``seed``, default 0, so the same inputs
always give the same evidence). ``mode`` (enforce | warn | off) is accepted here and applied by
the policy decision.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_ratio,
    equalized_odds_difference,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)
from numpy.typing import NDArray
from pydantic import Field, field_validator
from sklearn import metrics as skm

from gates.base import Finding, GateConfig, GateContext, GateResult, Severity, Status
from gates.evaluation import (
    CLASSIFICATION,
    REGRESSION,
    EvaluationData,
    EvaluationInputError,
    Outcome,
    class_labels,
    evaluation_from_context,
    numeric_array,
    plain,
    positive_label,
    prediction_array,
    target_array,
)

GATE_NAME = "fairness"
RULE_DP = "FAIR-DP-001"
RULE_EO = "FAIR-EO-001"
RULE_ERR = "FAIR-ERR-001"
RULE_BASE = "FAIR-BASE-001"
MISSING = "<missing>"
MAX_BOOTSTRAP = 10_000

FeatureSpec = tuple[str, tuple[str, ...]]  # (name shown, columns)


class FairnessConfig(GateConfig):
    """`gates.fairness` in the policy file. A threshold set to `null` switches its check off."""

    demographic_parity_ratio: float | None = Field(0.8, strict=True, ge=0, le=1)
    """FAIR-DP-001 fails when the lowest group selection rate over the highest is below this
    (0.8: the four-fifths rule)."""

    equalized_odds_difference: float | None = Field(0.1, strict=True, ge=0, le=1)
    """FAIR-EO-001 fails when the larger between-group spread of TPR and FPR is above this."""

    max_error_ratio: float | None = Field(1.25, strict=True, ge=1)
    """FAIR-ERR-001 (regression) fails when the highest group MAE over the lowest is above this."""

    base_rate_ratio: float | None = Field(0.8, strict=True, ge=0, le=1)
    """FAIR-BASE-001 warns when a group's positive rate in the training data is below this
    share of the highest group's."""

    min_group_size: int = Field(30, strict=True, ge=1)
    """Groups with fewer rows are listed but not judged."""

    bootstrap: int = Field(200, strict=True, ge=0, le=MAX_BOOTSTRAP)
    """Bootstrap resamples for the 95% confidence intervals (0 disables them)."""

    seed: int = Field(0, strict=True, ge=0)
    """Seed of the resampling, so the same inputs always give the same evidence."""

    sensitive_features: list[str] = Field(default_factory=list)
    """Columns to judge; defaults to the entry's `data.sensitive_features`."""

    intersections: list[list[str]] = Field(default_factory=list)
    """Combinations judged as one feature, e.g. `[[gender, age_band]]`."""

    positive_label: str | int | float | bool | None = None
    """The favourable class; defaults to the greater of the two labels."""

    @field_validator("sensitive_features")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        if any(not name for name in value):
            raise ValueError("sensitive feature names must be non-empty text")
        return value

    @field_validator("intersections")
    @classmethod
    def _combinations(cls, value: list[list[str]]) -> list[list[str]]:
        for combo in value:
            if len(combo) < 2 or not all(combo):
                raise ValueError(f"each intersection lists two or more columns, got {combo!r}")
        return value

    @property
    def features(self) -> tuple[FeatureSpec, ...]:
        if not self.sensitive_features:
            raise EvaluationInputError(
                "no sensitive features configured (data.sensitive_features or "
                "fairness.sensitive_features): the fairness gate has nothing to judge"
            )
        specs: dict[str, tuple[str, ...]] = {}
        for column in self.sensitive_features:
            specs.setdefault(column, (column,))
        for combo in self.intersections:
            specs.setdefault(" x ".join(combo), tuple(combo))
        return tuple(specs.items())

    def thresholds(self) -> dict[str, float | int | None]:
        return {
            "demographic_parity_ratio": self.demographic_parity_ratio,
            "equalized_odds_difference": self.equalized_odds_difference,
            "max_error_ratio": self.max_error_ratio,
            "base_rate_ratio": self.base_rate_ratio,
            "min_group_size": self.min_group_size,
        }


@dataclass(frozen=True)
class _ErrorRow:
    """One group's mean absolute error (regression models)."""

    group: str
    size: int
    mae: float
    min_group_size: int

    @property
    def judged(self) -> bool:
        return self.size >= self.min_group_size

    def as_dict(self) -> dict[str, Any]:
        return {"group": self.group, "size": self.size, "mae": self.mae, "judged": self.judged}


def check(ctx: GateContext, config: FairnessConfig) -> GateResult:
    started = time.perf_counter()
    try:
        data = evaluation_from_context(ctx)
        y_true = target_array(data)
        y_pred = prediction_array(data.candidate, len(y_true), "the candidate")
        _require_columns(data.frame, config, "evaluation set")
    except EvaluationInputError as exc:
        return _error(str(exc), config, started)
    evidence: dict[str, Any] = {"task": data.task, "rows": len(y_true)}
    evidence["bootstrap"] = {
        "resamples": config.bootstrap,
        "seed": config.seed,
        "method": "percentile 95% interval over resampled rows of the judged groups",
    }
    try:
        if data.task == REGRESSION:
            y, p = numeric_array(y_true, "target values"), numeric_array(y_pred, "predictions")
            judge, pos = _judge_regression, None
        else:
            y, p, pos = _binary_indicators(y_true, y_pred, data, config)
            judge = _judge_binary
    except EvaluationInputError as exc:
        return _error(str(exc), config, started)
    evidence["positive_label"] = plain(pos)
    outcome = Outcome()
    features: dict[str, Any] = {}
    for name, columns in config.features:
        groups = group_labels(data.frame, columns)
        one = judge(name, groups, y, p, config)
        features[name] = {"columns": list(columns), **one.evidence}
        outcome.metrics.update(one.metrics)
        outcome.findings += one.findings
        outcome.errors += one.errors
    evidence["features"] = features
    base_findings, evidence["base_rate_warning"] = _base_rates(data, config, pos)
    return _result(outcome, base_findings, evidence, config, started)


def group_labels(frame: pd.DataFrame, columns: Sequence[str]) -> pd.Series:
    """One text label per row: the value of the column, or the values joined by ", "."""
    parts = [frame[c].astype(object).where(frame[c].notna(), MISSING).astype(str) for c in columns]
    labels = parts[0]
    for part in parts[1:]:
        labels = labels + ", " + part
    return labels.reset_index(drop=True)


def _result(
    outcome: Outcome,
    base_findings: list[Finding],
    evidence: dict[str, Any],
    config: FairnessConfig,
    started: float,
) -> GateResult:
    findings = outcome.findings + base_findings
    if outcome.errors:  # an error blocks; failures found elsewhere are still reported
        status = Status.ERROR
        message = "; ".join(outcome.errors + [f.message for f in outcome.findings])
    elif outcome.findings:
        status, message = Status.FAIL, "; ".join(f.message for f in outcome.findings)
    elif base_findings:
        status, message = Status.WARN, "; ".join(f.message for f in base_findings)
    else:
        status = Status.PASS
        message = f"{len(evidence['features'])} sensitive feature(s) within every threshold"
    return GateResult(
        gate=GATE_NAME,
        status=status,
        findings=tuple(findings),
        metrics=outcome.metrics,
        thresholds=config.thresholds(),
        evidence=evidence,
        message=message,
        duration_s=time.perf_counter() - started,
    )


def _error(message: str, config: FairnessConfig, started: float) -> GateResult:
    return GateResult(
        GATE_NAME,
        Status.ERROR,
        message=message,
        thresholds=config.thresholds(),
        duration_s=time.perf_counter() - started,
    )


def _require_columns(frame: pd.DataFrame, config: FairnessConfig, where: str) -> None:
    for name, columns in config.features:
        for column in columns:
            if column not in frame.columns:
                kind = "sensitive feature" if len(columns) == 1 else f"intersection {name!r}"
                raise EvaluationInputError(f"{kind} column {column!r} is not in the {where}")


def _binary_indicators(
    y_true: NDArray[Any], y_pred: NDArray[Any], data: EvaluationData, config: FairnessConfig
) -> tuple[NDArray[Any], NDArray[Any], Any]:
    labels = class_labels(y_true, [("the candidate", y_pred, data.candidate)])
    if data.task != CLASSIFICATION or len(labels) > 2:
        raise EvaluationInputError(
            "fairness gate supports binary classification and regression; the target and "
            f"predictions have {len(labels)} classes"
        )
    pos = positive_label(labels, config.positive_label)
    return (y_true == pos).astype(int), (y_pred == pos).astype(int), pos


# --- binary classification -----------------------------------------------------------------


def _judge_binary(
    name: str, groups: pd.Series, y: NDArray[Any], p: NDArray[Any], config: FairnessConfig
) -> Outcome:
    table = _binary_group_table(groups, y, p, config.min_group_size)
    out = Outcome(evidence={"groups": table})
    judged = [row for row in table if row["judged"]]
    if len(judged) < 2:
        out.errors.append(_too_few_groups(name, table, config.min_group_size))
        out.evidence["verdict"] = "error"
        return out
    mask = groups.isin([row["group"] for row in judged]).to_numpy()
    g, yj, pj = groups[mask].to_numpy(), y[mask], p[mask]
    samples = _bootstrap_binary(g, yj, pj, config)

    dp = float(demographic_parity_ratio(yj, pj, sensitive_features=g))
    out.evidence["demographic_parity_ratio"] = _statistic(
        dp, samples[0], config.demographic_parity_ratio
    )
    if not math.isfinite(dp):
        if config.demographic_parity_ratio is not None:
            out.errors.append(
                f"demographic parity ratio for {name} is not computable: no judged group has a "
                "positive prediction"
            )
    else:
        out.metrics[f"{name}.demographic_parity_ratio"] = dp
        if config.demographic_parity_ratio is not None and dp < config.demographic_parity_ratio:
            out.findings.append(_dp_finding(name, dp, config.demographic_parity_ratio, judged))

    lacking = [r["group"] for r in judged if r["positives"] in (0, r["size"])]
    if lacking:
        out.evidence["equalized_odds_difference"] = {
            "value": None,
            "ci95": None,
            "threshold": config.equalized_odds_difference,
            "note": f"groups without both outcomes in the target: {', '.join(lacking)}",
        }
        if config.equalized_odds_difference is not None:
            out.errors.append(
                f"equalized odds difference for {name} is not computable: group(s) "
                f"{', '.join(map(repr, lacking))} have only one target class"
            )
    else:
        eo = float(equalized_odds_difference(yj, pj, sensitive_features=g))
        out.metrics[f"{name}.equalized_odds_difference"] = eo
        out.evidence["equalized_odds_difference"] = {
            **_statistic(eo, samples[1], config.equalized_odds_difference),
            **_eo_detail(judged),
        }
        if config.equalized_odds_difference is not None and eo > config.equalized_odds_difference:
            out.findings.append(_eo_finding(name, eo, config.equalized_odds_difference, judged))
    out.evidence["verdict"] = "error" if out.errors else "fail" if out.findings else "pass"
    return out


def _binary_group_table(
    groups: pd.Series, y: NDArray[Any], p: NDArray[Any], min_group_size: int
) -> list[dict[str, Any]]:
    frame = MetricFrame(
        metrics={
            "size": count,
            "positives": _positives,
            "selection_rate": selection_rate,
            "tpr": true_positive_rate,
            "fpr": false_positive_rate,
            "accuracy": skm.accuracy_score,
        },
        y_true=y,
        y_pred=p,
        sensitive_features=groups.rename("group"),
    ).by_group
    rows = []
    for group, values in frame.sort_index().iterrows():
        size, positives = int(values["size"]), int(values["positives"])
        rows.append(
            {
                "group": str(group),
                "size": size,
                "positives": positives,
                "selection_rate": float(values["selection_rate"]),
                # fairlearn reports 0.0 for a rate whose denominator is empty: show "none"
                "tpr": float(values["tpr"]) if positives else None,
                "fpr": float(values["fpr"]) if positives < size else None,
                "accuracy": float(values["accuracy"]),
                "judged": size >= min_group_size,
            }
        )
    return rows


def _positives(y_true: NDArray[Any], y_pred: NDArray[Any]) -> int:
    return int(np.sum(y_true))


def _dp_finding(name: str, dp: float, floor: float, judged: list[dict[str, Any]]) -> Finding:
    worst = min(judged, key=lambda r: r["selection_rate"])
    best = max(judged, key=lambda r: r["selection_rate"])
    message = (
        f"demographic parity ratio for {name} is {dp:.3f} < {floor:g}: group {worst['group']!r} "
        f"(n={worst['size']}) is selected at {worst['selection_rate']:.3f} vs "
        f"{best['selection_rate']:.3f} for {best['group']!r} (n={best['size']})"
    )
    evidence = {
        "feature": name,
        "ratio": dp,
        "threshold": floor,
        "group": worst["group"],
        "group_size": worst["size"],
        "group_selection_rate": worst["selection_rate"],
        "reference_group": best["group"],
        "reference_selection_rate": best["selection_rate"],
    }
    return Finding(RULE_DP, Severity.HIGH, message, evidence=evidence)


def _eo_detail(judged: list[dict[str, Any]]) -> dict[str, Any]:
    detail: dict[str, Any] = {}
    for rate in ("tpr", "fpr"):
        low = min(judged, key=lambda r: r[rate])
        high = max(judged, key=lambda r: r[rate])
        detail[f"{rate}_difference"] = high[rate] - low[rate]
        detail[f"{rate}_lowest"] = {"group": low["group"], "size": low["size"], rate: low[rate]}
        detail[f"{rate}_highest"] = {"group": high["group"], "size": high["size"], rate: high[rate]}
    return detail


def _eo_finding(name: str, eo: float, ceiling: float, judged: list[dict[str, Any]]) -> Finding:
    detail = _eo_detail(judged)
    rate = "tpr" if detail["tpr_difference"] >= detail["fpr_difference"] else "fpr"
    # the group a gap hurts: missed true positives (low TPR) or extra false positives (high FPR)
    worst, other = (
        (detail["tpr_lowest"], detail["tpr_highest"])
        if rate == "tpr"
        else (detail["fpr_highest"], detail["fpr_lowest"])
    )
    label = "true positive rate" if rate == "tpr" else "false positive rate"
    message = (
        f"equalized odds difference for {name} is {eo:.3f} > {ceiling:g}: {label} of group "
        f"{worst['group']!r} (n={worst['size']}) is {worst[rate]:.3f} vs {other[rate]:.3f} for "
        f"{other['group']!r} (n={other['size']})"
    )
    evidence = {
        "feature": name,
        "difference": eo,
        "threshold": ceiling,
        "rate": rate,
        "group": worst["group"],
        "group_size": worst["size"],
        "reference_group": other["group"],
    }
    return Finding(RULE_EO, Severity.HIGH, message, evidence=evidence)


def _bootstrap_binary(
    groups: NDArray[Any], y: NDArray[Any], p: NDArray[Any], config: FairnessConfig
) -> tuple[NDArray[Any], NDArray[Any]]:
    """DP ratio and EO difference over `bootstrap` row resamples.

    Refitting a MetricFrame per resample costs ~0.1 s at 5,000 rows (20 s for 200), so each
    resample is reduced to per-group confusion counts and the two statistics are computed
    from those exactly as fairlearn defines them (between-group min/max ratio of selection
    rates; worst of the TPR and FPR max-min spreads). A group absent from a resample is left
    out, as fairlearn would; a rate whose denominator is empty in a resample is left out too.
    """
    if config.bootstrap == 0:
        return np.array([]), np.array([])
    names, codes = np.unique(groups, return_inverse=True)
    cells = codes * 4 + y * 2 + p  # per group: [y0p0, y0p1, y1p0, y1p1]
    counts = _resampled_counts(cells, len(names) * 4, config)
    counts = counts.reshape(config.bootstrap, len(names), 4)
    return _dp_from_counts(counts), _eo_from_counts(counts)


def _resampled_counts(cells: NDArray[Any], n_cells: int, config: FairnessConfig) -> NDArray[Any]:
    rng = np.random.default_rng(config.seed)
    n = len(cells)
    counts = np.empty((config.bootstrap, n_cells), dtype=float)
    for b in range(config.bootstrap):
        counts[b] = np.bincount(cells[rng.integers(0, n, size=n)], minlength=n_cells)
    return counts


def _dp_from_counts(counts: NDArray[Any]) -> NDArray[Any]:
    size = counts.sum(axis=-1)
    rate = _divide(counts[..., 1] + counts[..., 3], size)
    low, high = _nanmin(rate), _nanmax(rate)
    return np.where(high > 0, _divide(low, high), np.nan)


def _eo_from_counts(counts: NDArray[Any]) -> NDArray[Any]:
    tpr = _divide(counts[..., 3], counts[..., 2] + counts[..., 3])
    fpr = _divide(counts[..., 1], counts[..., 0] + counts[..., 1])
    spread: NDArray[Any] = np.fmax(_nanmax(tpr) - _nanmin(tpr), _nanmax(fpr) - _nanmin(fpr))
    return spread


# --- regression ----------------------------------------------------------------------------


def _judge_regression(
    name: str, groups: pd.Series, y: NDArray[Any], p: NDArray[Any], config: FairnessConfig
) -> Outcome:
    frame = MetricFrame(
        metrics={"size": count, "mae": skm.mean_absolute_error},
        y_true=y,
        y_pred=p,
        sensitive_features=groups.rename("group"),
    ).by_group
    rows = [
        _ErrorRow(str(group), int(values["size"]), float(values["mae"]), config.min_group_size)
        for group, values in frame.sort_index().iterrows()
    ]
    table: list[dict[str, Any]] = [row.as_dict() for row in rows]
    out = Outcome(evidence={"groups": table})
    judged = [row for row in rows if row.judged]
    if len(judged) < 2:
        out.errors.append(_too_few_groups(name, table, config.min_group_size))
        out.evidence["verdict"] = "error"
        return out
    worst = max(judged, key=lambda r: r.mae)
    best = min(judged, key=lambda r: r.mae)
    ratio = _error_ratio(worst.mae, best.mae)
    mask = groups.isin([row.group for row in judged]).to_numpy()
    samples = _bootstrap_errors(groups[mask].to_numpy(), np.abs(y - p)[mask], config)
    stat = _statistic(ratio, samples, config.max_error_ratio)
    stat.update(worst_group=worst.group, best_group=best.group)
    out.evidence["error_ratio"] = stat
    if math.isfinite(ratio):
        out.metrics[f"{name}.error_ratio"] = ratio
    if config.max_error_ratio is not None and ratio > config.max_error_ratio:
        shown = f"{ratio:.2f}x" if math.isfinite(ratio) else "infinitely"
        message = (
            f"error ratio for {name} is {shown} > {config.max_error_ratio:g}: mean absolute "
            f"error of group {worst.group!r} (n={worst.size}) is {worst.mae:.4g} vs "
            f"{best.mae:.4g} for {best.group!r} (n={best.size})"
        )
        evidence = {"feature": name, "ratio": stat["value"], "group": worst.group}
        evidence.update(group_size=worst.size, reference_group=best.group)
        out.findings.append(Finding(RULE_ERR, Severity.HIGH, message, evidence=evidence))
    out.evidence["verdict"] = "fail" if out.findings else "pass"
    return out


def _error_ratio(worst: float, best: float) -> float:
    if worst == 0:
        return 1.0
    return worst / best if best > 0 else math.inf


def _bootstrap_errors(
    groups: NDArray[Any], errors: NDArray[Any], config: FairnessConfig
) -> NDArray[Any]:
    if config.bootstrap == 0:
        return np.array([])
    names, codes = np.unique(groups, return_inverse=True)
    rng = np.random.default_rng(config.seed)
    n, k = len(codes), len(names)
    ratios = np.empty(config.bootstrap)
    for b in range(config.bootstrap):
        idx = rng.integers(0, n, size=n)
        size = np.bincount(codes[idx], minlength=k)
        mae = _divide(np.bincount(codes[idx], weights=errors[idx], minlength=k), size)
        high, low = np.nanmax(mae), np.nanmin(mae)
        ratios[b] = 1.0 if high == 0 else (high / low if low > 0 else np.inf)
    return ratios


# --- shared --------------------------------------------------------------------------------


def _statistic(value: float, samples: NDArray[Any], threshold: float | None) -> dict[str, Any]:
    finite = samples[np.isfinite(samples)]
    ci = None
    if len(finite):
        low, high = np.percentile(finite, [2.5, 97.5])
        ci = [float(low), float(high)]
    stat: dict[str, Any] = {
        "value": value if math.isfinite(value) else None,
        "ci95": ci,
        "threshold": threshold,
    }
    if len(finite) < len(samples):
        stat["undefined_resamples"] = int(len(samples) - len(finite))
    return stat


def _too_few_groups(name: str, table: list[dict[str, Any]], min_size: int) -> str:
    judged = [f"{r['group']} n={r['size']}" for r in table if r["judged"]]
    small = [f"{r['group']} n={r['size']}" for r in table if not r["judged"]]
    detail = f"{'; '.join(judged) or 'none'} with at least {min_size} rows"
    if small:
        detail += f"; too small to judge: {', '.join(small)}"
    lead = "only one group" if len(judged) == 1 else "no group"
    return f"sensitive feature {name} has {lead} ({detail}); parity cannot be judged"


def _base_rates(
    data: EvaluationData, config: FairnessConfig, pos: Any
) -> tuple[list[Finding], dict[str, Any] | None]:
    """FAIR-BASE-001: positive rate of the target per group in the training data."""
    train = data.training_frame
    if train is None:
        return [], None
    if data.task != CLASSIFICATION or config.base_rate_ratio is None:
        return [], {"checked": False, "reason": "only for binary classification, when enabled"}
    missing = [c for _, cols in config.features for c in cols if c not in train.columns]
    if data.target not in train.columns or missing:
        absent = data.target if data.target not in train.columns else missing[0]
        return [], {"checked": False, "reason": f"training data has no column {absent!r}"}
    positive = (train[data.target] == pos).astype(int).to_numpy()
    findings: list[Finding] = []
    per_feature: dict[str, Any] = {}
    for name, columns in config.features:
        groups = group_labels(train, columns)
        sizes = groups.value_counts()
        judged = groups.isin(sizes[sizes >= config.min_group_size].index).to_numpy()
        if groups[judged].nunique() < 2:
            per_feature[name] = {"ratio": None, "note": "fewer than two groups large enough"}
            continue
        frame = MetricFrame(
            metrics=selection_rate,
            y_true=positive[judged],
            y_pred=positive[judged],
            sensitive_features=groups[judged].rename("group"),
        )
        rates = frame.by_group.sort_index()
        ratio = float(frame.ratio())
        per_feature[name] = {
            "ratio": ratio if math.isfinite(ratio) else None,
            "positive_rates": {str(g): float(r) for g, r in rates.items()},
        }
        if math.isfinite(ratio) and ratio < config.base_rate_ratio:
            low, high = rates.idxmin(), rates.idxmax()
            message = (
                f"training data: positive rate of {data.target} for {name}={low} "
                f"(n={int(sizes[low])}) is {rates[low]:.3f} vs {rates[high]:.3f} for {high} "
                f"(ratio {ratio:.3f} < {config.base_rate_ratio:g}); a model trained on it may "
                "learn the disparity"
            )
            evidence = {"feature": name, "ratio": ratio, "group": str(low)}
            evidence.update(group_size=int(sizes[low]), reference_group=str(high))
            findings.append(Finding(RULE_BASE, Severity.LOW, message, evidence=evidence))
    warned = bool(findings)
    return findings, {"checked": True, "warning": warned, "features": per_feature}


def _divide(numerator: NDArray[Any], denominator: NDArray[Any]) -> NDArray[Any]:
    with np.errstate(divide="ignore", invalid="ignore"):
        quotient: NDArray[Any] = np.where(
            denominator > 0, numerator / np.where(denominator > 0, denominator, 1), np.nan
        )
    return quotient


def _nanmin(values: NDArray[Any]) -> NDArray[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN rows stay NaN
        lowest: NDArray[Any] = np.nanmin(values, axis=-1)
    return lowest


def _nanmax(values: NDArray[Any]) -> NDArray[Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        highest: NDArray[Any] = np.nanmax(values, axis=-1)
    return highest
