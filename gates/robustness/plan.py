"""`plan_probes`: every row the model must be asked about, made from the evaluation rows and
the reference (training) data, with samples shrunk alike to fit `max_probe_rows`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from gates.evaluation import REGRESSION, EvaluationInputError, Task
from gates.robustness.config import FeatureKind, ProbeKind, RobustnessConfig
from gates.robustness.perturbations import (
    NumericStats,
    ProbeBuilder,
    numeric_stats,
    plan_categorical_flip,
    plan_categorical_triggers,
    plan_numeric_flips,
    plan_numeric_triggers,
    stable,
)
from gates.robustness.probes import ProbePlan, Skipped

EVALUATION_SET = "evaluation set"
REFERENCE = "reference (training) data"


def plan_probes(
    frame: pd.DataFrame,
    features: Sequence[str],
    config: RobustnessConfig,
    reference: pd.DataFrame | None = None,
    *,
    task: Task | None = None,
) -> ProbePlan:
    """The probe rows for `features` (the model's input columns) of the evaluation `frame`.

    `reference` (the training data) defines each feature's range, spread and categories; the
    evaluation frame does when it is None. With `task` regression no trigger rows are planned
    (the trigger search is for classifiers). Never raises: a plan that cannot be made carries
    its `error`, which `judge` reports.
    """
    names: tuple[str, ...] = ()
    n_rows = len(frame) if isinstance(frame, pd.DataFrame) else 0
    try:
        columns = list(features)
        names = tuple(map(str, columns))
        return _plan(frame, columns, config, reference, task)
    except EvaluationInputError as exc:
        return _failed_plan(str(exc), names, n_rows)
    except Exception as exc:  # fail closed: a plan that cannot be made blocks, never passes
        return _failed_plan(
            f"the robustness probes could not be planned: {type(exc).__name__}: {exc}",
            names,
            n_rows,
        )


def _failed_plan(message: str, features: tuple[str, ...], n_rows: int) -> ProbePlan:
    return ProbePlan(pd.DataFrame(), (), n_rows, features, error=message)


@dataclass
class _Draft:
    """Probes planned on samples of given sizes, before their rows are assembled."""

    builder: ProbeBuilder
    skipped: list[Skipped]
    numeric: dict[str, NumericStats]
    flip_rows: int
    trigger_rows: int


def _plan(
    frame: Any,
    features: list[Any],
    config: RobustnessConfig,
    reference: Any,
    task: Task | None,
) -> ProbePlan:
    inputs, basis = _validated_inputs(frame, features, reference)
    seen = (
        {EVALUATION_SET: inputs}
        if reference is None
        else {EVALUATION_SET: inputs, REFERENCE: basis}
    )
    triggers = config.triggers_on and task != REGRESSION
    sizes = (min(config.sample_rows, len(inputs)), min(config.trigger_sample_rows, len(inputs)))
    draft = _draft(inputs, basis, seen, features, config, triggers, sizes)
    reduced = draft.builder.size > config.max_probe_rows
    if reduced:  # one smaller sample for every probe, rather than probing fewer features
        factor = config.max_probe_rows / draft.builder.size
        sizes = (
            max(min(config.min_rows, sizes[0]), math.floor(sizes[0] * factor)),
            max(min(config.min_rows, sizes[1]), math.floor(sizes[1] * factor)),
        )
        draft = _draft(inputs, basis, seen, features, config, triggers, sizes)
        if draft.builder.size > config.max_probe_rows:
            raise EvaluationInputError(
                f"probing {len(features)} features needs {draft.builder.size} rows even on "
                f"samples of {config.min_rows} rows, more than max_probe_rows "
                f"({config.max_probe_rows}); raise it, or lower trigger_max_distance or "
                "trigger_steps_per_doubling"
            )
    if not draft.builder.probes:
        reasons = "; ".join(f"{s.feature}: {s.reason}" for s in draft.skipped) or "no feature"
        raise EvaluationInputError(f"no feature could be probed for robustness ({reasons})")
    summary = {
        "probe_rows": draft.builder.size,
        "flip_sample_rows": draft.flip_rows,
        "trigger_sample_rows": draft.trigger_rows,
        "samples_reduced_to_fit_max_probe_rows": reduced,
        "range_from": EVALUATION_SET if reference is None else REFERENCE,
        "seed": config.seed,
        "numeric_ranges": {
            name: {
                "min": s.low,
                "max": s.high,
                "std": s.std,
                "median": s.median,
                "sd": s.scale,  # the trigger search's unit (robust)
                "bulk": None if s.bulk is None else list(s.bulk),
                "seen": {where: [low, high] for where, low, high in s.extremes},
            }
            for name, s in draft.numeric.items()
        },
    }
    return ProbePlan(
        rows=draft.builder.rows(),
        probes=tuple(draft.builder.probes),
        n_rows=len(inputs),
        features=tuple(features),
        skipped=tuple(draft.skipped),
        summary=summary,
    )


def _draft(
    inputs: pd.DataFrame,
    basis: pd.DataFrame,
    seen: dict[str, pd.DataFrame],
    features: list[str],
    config: RobustnessConfig,
    triggers: bool,
    sizes: tuple[int, int],
) -> _Draft:
    # one seeded order of the rows: a smaller sample is the start of a larger one
    order = np.random.default_rng([config.seed, stable("sample")]).permutation(len(inputs))
    flip_rows = np.sort(order[: sizes[0]]).astype(np.intp)
    trigger_rows = np.sort(order[: sizes[1]]).astype(np.intp)
    draft = _Draft(ProbeBuilder(inputs), [], {}, 0, 0)
    kinds: dict[str, FeatureKind] = {}
    for feature in features:
        kind, why = _kind(inputs[feature])
        stats = (
            numeric_stats(basis[feature], inputs[feature], {k: f[feature] for k, f in seen.items()})
            if kind == FeatureKind.NUMERIC
            else None
        )
        if kind == FeatureKind.NUMERIC and stats is None:
            kind, why = None, "no finite value in the reference"
        if kind is None:
            draft.skipped += [Skipped(feature, check, why) for check in _checks(config, triggers)]
            continue
        kinds[feature] = kind
        if stats is not None:
            draft.numeric[feature] = stats
    if config.flips_on:
        draft.flip_rows = len(flip_rows)
        plan_numeric_flips(draft.builder, draft.numeric, flip_rows, config, draft.skipped)
        for feature in (f for f, k in kinds.items() if k == FeatureKind.CATEGORICAL):
            plan_categorical_flip(draft.builder, feature, basis, flip_rows, config, draft.skipped)
    if triggers:
        draft.trigger_rows = len(trigger_rows)
        for feature, kind in kinds.items():
            if kind == FeatureKind.NUMERIC:
                stats = draft.numeric[feature]
                plan_numeric_triggers(draft.builder, feature, stats, trigger_rows, config)
            else:
                plan_categorical_triggers(
                    draft.builder, feature, basis, trigger_rows, config, draft.skipped
                )
    return draft


def _validated_inputs(
    frame: Any, features: list[Any], reference: Any
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The input columns of the evaluation rows (index 0..n-1) and the frame defining ranges."""
    if not isinstance(frame, pd.DataFrame):
        raise EvaluationInputError(
            f"the evaluation set is a {type(frame).__name__}, expected a DataFrame"
        )
    if len(frame) == 0:
        raise EvaluationInputError("the evaluation set has no rows: nothing to probe")
    if not features:
        raise EvaluationInputError("no input features given: nothing to probe")
    if not all(isinstance(f, str) and f for f in features):
        raise EvaluationInputError("input feature names must be non-empty text")
    if len(set(features)) != len(features):
        raise EvaluationInputError("an input feature is listed twice")
    if frame.columns.has_duplicates:
        raise EvaluationInputError("the evaluation set has duplicate column names")
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise EvaluationInputError(
            f"input feature(s) {', '.join(map(repr, missing))} are not in the evaluation set"
        )
    if reference is None:
        basis = frame
    elif not isinstance(reference, pd.DataFrame):
        raise EvaluationInputError(
            f"the reference data is a {type(reference).__name__}, expected a DataFrame"
        )
    elif len(reference) == 0:
        raise EvaluationInputError("the reference (training) data has no rows")
    elif reference.columns.has_duplicates:
        raise EvaluationInputError("the reference (training) data has duplicate column names")
    else:
        absent = [f for f in features if f not in reference.columns]
        if absent:
            raise EvaluationInputError(
                f"input feature(s) {', '.join(map(repr, absent))} are not in the reference "
                "(training) data, so their range is unknown"
            )
        basis = reference
    return frame.loc[:, features].reset_index(drop=True), basis


def _checks(config: RobustnessConfig, triggers: bool) -> list[ProbeKind]:
    return [k for k, on in ((ProbeKind.FLIP, config.flips_on), (ProbeKind.TRIGGER, triggers)) if on]


def _kind(column: pd.Series) -> tuple[FeatureKind | None, str]:
    """Numeric (integers and floats), categorical (bool, text, object, category) or neither."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_bool_dtype(dtype):
        return FeatureKind.CATEGORICAL, ""
    if pd.api.types.is_integer_dtype(dtype) or pd.api.types.is_float_dtype(dtype):
        return FeatureKind.NUMERIC, ""
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return FeatureKind.CATEGORICAL, ""
    return None, f"dtype {dtype} is not probed (only numbers, booleans and categories)"
