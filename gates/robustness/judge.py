"""Judging: the model's predictions on the probe rows against its predictions on the
evaluation rows, turned into ROBUST-FLIP-001 and ROBUST-TRIGGER-001 findings and one
`GateResult` (`judge`; `check` is the same from a `GateContext`)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from gates.base import Finding, GateContext, GateResult, Severity, Status
from gates.evaluation import (
    REGRESSION,
    TASKS,
    EvaluationInputError,
    ModelOutputs,
    Outcome,
    Task,
    evaluation_from_context,
    numeric_array,
    plain,
    prediction_array,
)
from gates.robustness.config import (
    ALL_NUMERIC,
    GATE_NAME,
    ROBUSTNESS_KEY,
    RULE_FLIP,
    RULE_TRIGGER,
    FeatureKind,
    ProbeKind,
    RobustnessConfig,
    TriggerMode,
)
from gates.robustness.probes import Probe, ProbePlan, RobustnessData, json_value

EXAMPLES = 3  # flipped rows shown per probe
RELATIVE_FLOOR = 0.01  # regression: |prediction| floored at this share of the mean |prediction|


def check(ctx: GateContext, config: RobustnessConfig) -> GateResult:
    """The gate as the pipeline runs it: `RobustnessData` under ``datasets["robustness"]``,
    the baseline predictions and the task from the `EvaluationData` under "evaluation"."""
    started = time.perf_counter()
    try:
        evaluation = evaluation_from_context(ctx)
        data = ctx.datasets.get(ROBUSTNESS_KEY)
        if not isinstance(data, RobustnessData):
            raise EvaluationInputError(
                "no robustness probes: the service did not plan or run them "
                f"(datasets['{ROBUSTNESS_KEY}'] is {type(data).__name__}, expected RobustnessData)"
            )
    except EvaluationInputError as exc:
        return _error(str(exc), config, started)
    return judge(
        data.plan,
        evaluation.candidate.predictions,
        data.probes.predictions,
        evaluation.task,
        config,
        started=started,
    )


def judge(
    plan: ProbePlan,
    baseline_predictions: Any,
    probe_predictions: Any,
    task: Task | str,
    config: RobustnessConfig,
    *,
    started: float | None = None,
) -> GateResult:
    """The gate's result from the model's predictions on the evaluation rows (`baseline`,
    one per row of the planned frame, in order) and on `plan.rows` (`probe_predictions`)."""
    started = time.perf_counter() if started is None else started
    try:
        return _judge(plan, baseline_predictions, probe_predictions, task, config, started)
    except EvaluationInputError as exc:
        return _error(str(exc), config, started)
    except Exception as exc:  # fail closed: a crash is an error that blocks, never a pass
        return _error(
            f"robustness could not be judged: {type(exc).__name__}: {exc}", config, started
        )


def _judge(
    plan: ProbePlan,
    baseline_predictions: Any,
    probe_predictions: Any,
    task: Task | str,
    config: RobustnessConfig,
    started: float,
) -> GateResult:
    if plan.error:
        raise EvaluationInputError(plan.error)
    if task not in TASKS:
        raise EvaluationInputError(f"unknown task {task!r}: expected one of {', '.join(TASKS)}")
    task = Task(task)
    baseline = prediction_array(
        ModelOutputs(np.asarray(baseline_predictions)), plan.n_rows, "the candidate"
    )
    probes = prediction_array(
        ModelOutputs(np.asarray(probe_predictions)), len(plan.rows), "the candidate on the probes"
    )
    if task == REGRESSION:
        baseline = numeric_array(baseline, "the candidate's predictions")
        probes = numeric_array(probes, "the candidate's predictions on the probes")
    else:
        _same_label_types(baseline, probes)
    evidence: dict[str, Any] = {"task": task.value, "rows": plan.n_rows, **plan.summary}
    evidence["skipped"] = [s.as_dict() for s in plan.skipped]
    outcomes: list[Outcome] = []
    if config.flips_on:
        flips = _judge_flips(plan, baseline, probes, task, config)
        evidence["flip"] = flips.evidence
        outcomes.append(flips)
    triggers = Outcome()
    if config.triggers_on and task == REGRESSION:
        evidence["trigger_search"] = {"checked": False, "reason": "for classifiers only"}
    elif config.triggers_on:
        triggers = _judge_triggers(plan, baseline, probes, config)
        evidence["trigger_search"] = triggers.evidence
    return _result(outcomes, triggers, evidence, config, started)


def _same_label_types(baseline: NDArray[Any], probes: NDArray[Any]) -> None:
    """Labels of one model keep their type; `1` against `"1"` would look like flips."""

    def kinds(values: NDArray[Any]) -> set[str]:
        return {"text" if isinstance(plain(v), str) else "other" for v in pd.unique(values)}

    if len(probes) and kinds(baseline).isdisjoint(kinds(probes)):
        raise EvaluationInputError(
            "the candidate's labels changed type between the evaluation rows and the probes "
            "(e.g. 1 against '1'); predict them in one call"
        )


def _judge_flips(
    plan: ProbePlan,
    baseline: NDArray[Any],
    probes: NDArray[Any],
    task: Task,
    config: RobustnessConfig,
) -> Outcome:
    out = Outcome()
    scale = RELATIVE_FLOOR * float(np.mean(np.abs(baseline))) if task == REGRESSION else 0.0
    table: list[dict[str, Any]] = []
    judged = 0
    for probe in (p for p in plan.probes if p.kind == ProbeKind.FLIP):
        before, after = baseline[probe.source], probes[probe.start : probe.stop]
        flipped = _flipped(before, after, task, config, scale)
        rows, flips = len(before), int(flipped.sum())
        rate = flips / rows if rows else 0.0
        threshold = (
            config.max_categorical_flip_rate
            if probe.feature_kind == FeatureKind.CATEGORICAL
            else config.max_flip_rate
        )
        row: dict[str, Any] = {
            "feature": probe.feature,
            "kind": probe.feature_kind.value,
            "perturbation": probe.label,
            "rows": rows,
            "flips": flips,
            "flip_rate": rate,
            "threshold": threshold,
        }
        if rows < config.min_rows:
            row["verdict"] = "not judged"
            row["note"] = f"fewer than {config.min_rows} rows"
        elif threshold is None:
            row["verdict"] = "reported"
        else:
            judged += 1
            name = "all_numeric" if probe.feature == ALL_NUMERIC else probe.feature
            out.metrics[f"flip_rate.{name}"] = rate
            row["verdict"] = "fail" if rate > threshold else "pass"
        row["examples"] = _flip_examples(plan, probe, flipped, before, after)
        table.append(row)
        if row["verdict"] == "fail":
            out.findings.append(_flip_finding(row, task, config))
    rates = [r["flip_rate"] for r in table if r["verdict"] in ("pass", "fail")]
    if rates:
        out.metrics["flip_rate.worst"] = max(rates)
    if judged == 0:
        out.errors.append(
            "the flip rate could not be judged: no feature was perturbed on at least "
            f"{config.min_rows} rows and judged (see skipped features and the table; "
            "categorical swaps are judged only with max_categorical_flip_rate)"
        )
    out.evidence = {
        "epsilon": config.epsilon,
        "threshold": config.max_flip_rate,
        "categorical_threshold": config.max_categorical_flip_rate,
        "flip": (
            f"prediction moves by more than {config.regression_tolerance:g} of its size"
            if task == REGRESSION
            else "predicted class changes"
        ),
        "features": table,
        "verdict": "error" if out.errors else "fail" if out.findings else "pass",
    }
    return out


def _flipped(
    before: NDArray[Any], after: NDArray[Any], task: Task, config: RobustnessConfig, scale: float
) -> NDArray[np.bool_]:
    if task == REGRESSION:
        size = np.maximum(np.abs(before), max(scale, 1e-12))
        relative: NDArray[np.bool_] = np.abs(after - before) / size > config.regression_tolerance
        return relative
    changed: NDArray[np.bool_] = np.asarray(before != after, dtype=bool)
    return changed


def _flip_examples(
    plan: ProbePlan,
    probe: Probe,
    flipped: NDArray[np.bool_],
    before: NDArray[Any],
    after: NDArray[Any],
) -> list[dict[str, Any]]:
    examples = []
    for i in np.flatnonzero(flipped)[:EXAMPLES]:
        example: dict[str, Any] = {"row": int(probe.source[i])}
        if probe.original is not None:
            example["value"] = json_value(probe.original[i])
            example["perturbed_value"] = json_value(
                plan.rows[probe.feature].iloc[probe.start + int(i)]
            )
        example["prediction"] = json_value(before[i])
        example["perturbed_prediction"] = json_value(after[i])
        examples.append(example)
    return examples


def _flip_finding(row: dict[str, Any], task: Task, config: RobustnessConfig) -> Finding:
    what = (
        f"moves by more than {config.regression_tolerance:.0%}"
        if task == REGRESSION
        else "changes class"
    )
    if row["kind"] == FeatureKind.ALL_NUMERIC:
        subject = f"every numeric feature moved by {config.epsilon:g} std at once"
    elif row["kind"] == FeatureKind.CATEGORICAL:
        subject = f"{row['feature']} swapped to another frequent category"
    else:
        subject = f"{row['feature']} moved by {config.epsilon:g} std"
    message = (
        f"prediction flip rate {row['flip_rate']:.1%} > {row['threshold']:.1%} with {subject}: "
        f"the prediction {what} for {row['flips']} of {row['rows']} rows"
    )
    evidence = {
        "feature": row["feature"],
        "kind": row["kind"],
        "flip_rate": row["flip_rate"],
        "threshold": row["threshold"],
        "rows": row["rows"],
        "flips": row["flips"],
        "perturbation": row["perturbation"],
        "examples": row["examples"],
    }
    return Finding(RULE_FLIP, Severity.HIGH, message, evidence=evidence)


def _judge_triggers(
    plan: ProbePlan, baseline: NDArray[Any], probes: NDArray[Any], config: RobustnessConfig
) -> Outcome:
    out = Outcome()
    rows: dict[str, list[dict[str, Any]]] = {}
    previous: dict[tuple[str, str | None], tuple[NDArray[Any], Any]] = {}
    found: set[tuple[str, str | None]] = set()
    for probe in (p for p in plan.probes if p.kind == ProbeKind.TRIGGER):
        before = baseline[probe.source]
        after = probes[probe.start : probe.stop]
        key = (probe.feature, probe.direction)
        if probe.direction is not None and probe.step == 0:
            # the start (the edge of the evaluation rows' bulk): not a step itself
            previous[key] = (after, probe.value)
            continue
        last, start = previous.get(key, (before, None))
        row = _trigger_row(probe, before, last, after, config)
        if probe.direction is not None:
            row["step_from"] = start
            previous[key] = (after, probe.value)
        rows.setdefault(probe.feature, []).append(row)
        # numeric: the nearest step that moves the rows is the finding, not each one beyond
        if row["judged"] and row["share"] > config.trigger_share and key not in found:
            out.findings.append(_trigger_finding(probe, row, plan, config))
            if probe.direction is not None:
                found.add(key)
    judged = [r for feature_rows in rows.values() for r in feature_rows if r["judged"]]
    if judged:
        out.metrics["trigger_share.max"] = max(r["share"] for r in judged)
    else:
        planned = any(p.kind == ProbeKind.TRIGGER for p in plan.probes)
        out.errors.append(
            "the trigger search could not be judged: "
            + (
                f"no class had {config.min_rows} or more sampled rows outside it"
                if planned
                else "no feature had a value to try (see skipped features; trigger_mode: off "
                "switches the search off)"
            )
        )
    out.evidence = {
        "checked": True,
        "mode": config.trigger_mode.value,
        "threshold": config.trigger_share,
        "share": "rows moved to one class among the sampled rows not predicted as that class; "
        "numeric values step away from the median from the edge of the evaluation rows' bulk "
        "(log-spaced in sd, and each data set's extremes) and count only the rows not already "
        "moved at the value before",
        "values_tried": sum(len(r) for r in rows.values()),
        "features": {name: _trigger_summary(feature_rows) for name, feature_rows in rows.items()},
        "verdict": "error" if out.errors else "found" if out.findings else "none found",
    }
    return out


def _trigger_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One feature's trigger values: the strongest, and every value that moved a row."""
    judged = [r for r in rows if r["judged"]]
    strongest = max(judged, key=lambda r: r["share"]) if judged else None
    return {
        "values_tried": len(rows),
        "values_judged": len(judged),
        "strongest": strongest,
        "moved_rows": [r for r in judged if r["moved"]],
    }


def _trigger_row(
    probe: Probe,
    before: NDArray[Any],
    last: NDArray[Any],
    after: NDArray[Any],
    config: RobustnessConfig,
) -> dict[str, Any]:
    """The class the value moves most rows to, and the share it moves."""
    best: dict[str, Any] = {"share": 0.0, "to_class": None, "moved": 0, "considered": 0}
    for label in pd.unique(after):
        outside = before != label
        considered = int(outside.sum())
        if considered < config.min_rows:
            continue
        moved = int((outside & (last != label) & (after == label)).sum())
        share = moved / considered
        if share > best["share"] or best["to_class"] is None:
            best = {
                "share": share,
                "to_class": json_value(label),
                "moved": moved,
                "considered": considered,
            }
    row: dict[str, Any] = {"value": probe.value, "label": probe.label, **best}
    row["judged"] = best["to_class"] is not None
    if not row["judged"]:
        row["note"] = f"no class with at least {config.min_rows} rows outside it"
    return row


def _trigger_finding(
    probe: Probe, row: dict[str, Any], plan: ProbePlan, config: RobustnessConfig
) -> Finding:
    shown = _shown(row["value"])
    if probe.direction is not None:
        known = plan.summary.get("numeric_ranges", {}).get(probe.feature, {})
        seen = ", ".join(
            f"[{_shown(low)}, {_shown(high)}] in the {where}"
            for where, (low, high) in known.get("seen", {}).items()
        )
        how = f"{row['label']}; seen: {seen}" if seen else str(row["label"])
        step = f" in one step from {probe.feature} = {_shown(row['step_from'])}"
    else:
        how, step = str(row["label"]), ""
    message = (
        f"possible trigger: {probe.feature} = {shown} ({how}) moves {row['moved']} of the "
        f"{row['considered']} sampled rows not predicted {row['to_class']!r} to "
        f"{row['to_class']!r}{step} ({row['share']:.0%} > {config.trigger_share:.0%}): a planted "
        "backdoor, or a model that lets this one value decide the class"
    )
    evidence = {
        "feature": probe.feature,
        "value": row["value"],
        "how": row["label"],
        "step_from": row.get("step_from"),
        "to_class": row["to_class"],
        "share": row["share"],
        "threshold": config.trigger_share,
        "moved": row["moved"],
        "considered": row["considered"],
        "direction": probe.direction,
    }
    return Finding(RULE_TRIGGER, Severity.HIGH, message, confidence="medium", evidence=evidence)


def _shown(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else repr(value)


def _result(
    outcomes: list[Outcome],
    triggers: Outcome,
    evidence: dict[str, Any],
    config: RobustnessConfig,
    started: float,
) -> GateResult:
    every = [*outcomes, triggers]
    errors = [e for o in every for e in o.errors]
    flips = [f for o in outcomes for f in o.findings]
    metrics = {k: v for o in every for k, v in o.metrics.items()}
    findings = flips + triggers.findings
    if errors:  # an error blocks; what was found elsewhere is still reported
        status, message = Status.ERROR, "; ".join(errors + [f.message for f in findings])
    elif flips or (triggers.findings and config.trigger_mode == TriggerMode.FAIL):
        status, message = Status.FAIL, "; ".join(f.message for f in findings)
    elif triggers.findings:
        status, message = Status.WARN, "; ".join(f.message for f in findings)
    else:
        status, message = Status.PASS, _pass_message(evidence, metrics, config)
    return GateResult(
        gate=GATE_NAME,
        status=status,
        findings=tuple(findings),
        metrics=metrics,
        thresholds=config.thresholds(),
        evidence=evidence,
        message=message,
        duration_s=time.perf_counter() - started,
    )


def _pass_message(
    evidence: dict[str, Any], metrics: dict[str, float], config: RobustnessConfig
) -> str:
    parts = []
    if "flip_rate.worst" in metrics and config.max_flip_rate is not None:
        parts.append(
            f"flip rate at most {metrics['flip_rate.worst']:.1%} (threshold "
            f"{config.max_flip_rate:.0%}) under {config.epsilon:g} std noise"
        )
    search = evidence.get("trigger_search", {})
    if search.get("checked"):
        parts.append(
            f"no trigger among {search['values_tried']} values tried (numeric steps away from "
            "each feature's median beyond the evaluation rows' bulk, rare categories)"
        )
    return "; ".join(parts) or "robustness checks passed"


def _error(message: str, config: RobustnessConfig, started: float) -> GateResult:
    return GateResult(
        GATE_NAME,
        Status.ERROR,
        message=message,
        thresholds=config.thresholds(),
        duration_s=time.perf_counter() - started,
    )
