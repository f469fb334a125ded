"""What the evaluation gates look at: the evaluation rows and what the models predicted on them.

The gatekeeper never trusts metrics a trainer logged. The service loads the evaluation set the
policy names (`data.evaluation`), runs the candidate model on it in the sandbox and, when a
version already holds the alias (the "champion"), runs that one on the same rows in the same
run. It hands the outcome to the gates as ``ctx.datasets["evaluation"]``, an `EvaluationData`.
Gates never load a model.

The helpers here validate those inputs and raise `EvaluationInputError` with a message an
operator can act on (the target column that is missing, the prediction count that does not
match the row count, labels of the wrong type); the gates turn it into an ``error`` result,
which blocks promotion like a failure does: the gatekeeper fails closed.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from gates.base import Finding, GateContext

EVALUATION_KEY = "evaluation"


class Task(enum.StrEnum):
    CLASSIFICATION = "classification"
    REGRESSION = "regression"


CLASSIFICATION = Task.CLASSIFICATION
REGRESSION = Task.REGRESSION
TASKS = tuple(Task)
# an integer-valued target with at most this many distinct values is read as class labels
MAX_INTEGER_CLASSES = 20


@dataclass
class Outcome:
    """What judging one part of an evaluation gate produced (a feature, a check)."""

    evidence: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class EvaluationInputError(ValueError):
    """The evaluation inputs are missing or malformed; the gate reports `error`, never `pass`."""


@dataclass(frozen=True)
class ModelOutputs:
    """One model's outputs on the evaluation rows, in row order."""

    predictions: NDArray[Any]  # one label (classification) or value (regression) per row
    scores: NDArray[Any] | None = None  # predict_proba: n_rows x n_classes, or None
    classes: list[Any] | None = None  # column order of `scores` (the model's classes_)
    # why there are no scores although the model has predict_proba, in classified words the
    # service made (never the model's own): "ValueError raised in predict_proba"
    scores_error: str | None = None


@dataclass(frozen=True)
class EvaluationData:
    """The evaluation set and the outputs of the candidate (and champion) on it."""

    frame: pd.DataFrame  # the evaluation rows: features + target + sensitive columns
    target: str
    task: Task  # see `infer_task`
    candidate: ModelOutputs
    champion: ModelOutputs | None = None  # the alias holder, same rows, same run
    champion_version: str | None = None
    training_frame: pd.DataFrame | None = None


def infer_task(y: pd.Series) -> Task:
    """`classification` for labels, `regression` for quantities.

    Booleans, strings and categoricals are labels. Numbers are labels when every value is an
    integer and there are at most 20 distinct values (0/1, a 1-5 rating); anything else (a
    fractional value, or many distinct integers such as an amount in cents) is a quantity.
    The policy can state the task explicitly; this is the fallback.
    """
    values = y.dropna()
    if (
        pd.api.types.is_bool_dtype(values)
        or not pd.api.types.is_numeric_dtype(values)
        or isinstance(values.dtype, pd.CategoricalDtype)
    ):
        return CLASSIFICATION
    numbers = values.to_numpy(dtype=float)
    if not np.all(np.isfinite(numbers)) or not np.all(numbers == np.round(numbers)):
        return REGRESSION
    return CLASSIFICATION if values.nunique() <= MAX_INTEGER_CLASSES else REGRESSION


def evaluation_from_context(ctx: GateContext) -> EvaluationData:
    """The `EvaluationData` the service put in the context, checked for shape."""
    data = ctx.datasets.get(EVALUATION_KEY)
    if data is None:
        raise EvaluationInputError(
            "no evaluation data: the policy names no evaluation set for this model "
            "(data.evaluation), so the model cannot be evaluated"
        )
    if not isinstance(data, EvaluationData):
        raise EvaluationInputError(
            f"datasets['{EVALUATION_KEY}'] is a {type(data).__name__}, expected EvaluationData"
        )
    if not isinstance(data.frame, pd.DataFrame):
        raise EvaluationInputError(
            f"the evaluation set is a {type(data.frame).__name__}, expected a DataFrame"
        )
    if data.task not in TASKS:
        raise EvaluationInputError(
            f"unknown task {data.task!r}: expected one of {', '.join(TASKS)}"
        )
    if not isinstance(data.candidate, ModelOutputs):
        raise EvaluationInputError("the candidate model produced no outputs on the evaluation set")
    return data


def target_array(data: EvaluationData) -> NDArray[Any]:
    """The target column as an array: present, non-empty and without missing values."""
    frame = data.frame
    if data.target not in frame.columns:
        shown = ", ".join(map(str, list(frame.columns)[:20]))
        more = ", ..." if len(frame.columns) > 20 else ""
        raise EvaluationInputError(
            f"target column {data.target!r} is not in the evaluation set (columns: {shown}{more})"
        )
    if len(frame) == 0:
        raise EvaluationInputError("the evaluation set has no rows")
    column = frame[data.target]
    missing = int(column.isna().sum())
    if missing:
        raise EvaluationInputError(
            f"target column {data.target!r} has {missing} missing value(s) in the evaluation set"
        )
    values: NDArray[Any] = column.to_numpy()
    return values


def prediction_array(outputs: ModelOutputs, n_rows: int, who: str) -> NDArray[Any]:
    """One prediction per evaluation row, without missing values."""
    predictions = np.asarray(outputs.predictions)
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions[:, 0]
    if predictions.ndim != 1:
        raise EvaluationInputError(
            f"{who} predictions have shape {predictions.shape}, expected one value per row"
        )
    if len(predictions) != n_rows:
        raise EvaluationInputError(
            f"{who} returned {len(predictions)} predictions for {n_rows} evaluation rows"
        )
    missing = int(pd.isna(predictions).sum())
    if missing:
        raise EvaluationInputError(f"{who} predictions contain {missing} missing value(s)")
    return predictions


def numeric_array(values: NDArray[Any], what: str) -> NDArray[Any]:
    """`values` as finite floats (regression targets and predictions)."""
    try:
        numbers = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise EvaluationInputError(f"{what} are not numeric ({exc})") from exc
    if not np.all(np.isfinite(numbers)):
        raise EvaluationInputError(f"{what} contain infinite values")
    return numbers


def class_labels(
    y_true: NDArray[Any],
    predicted: Sequence[tuple[str, NDArray[Any], ModelOutputs]],
) -> list[Any]:
    """Sorted label space: target values, predicted values and the models' declared classes.

    A predicted label that is neither a target value nor a class the model declares is a
    malformed input (typically `1` against `"1"` after a round trip through JSON).
    """
    known = set(pd.unique(y_true).tolist())
    for _, _, outputs in predicted:
        if outputs.classes is not None:
            known.update(plain(c) for c in outputs.classes)
    labels = set(known)
    for who, predictions, _ in predicted:
        unknown = set(pd.unique(predictions).tolist()) - known
        if unknown:
            example = sorted(map(repr, unknown))[0]
            raise EvaluationInputError(
                f"{who} predicted label {example} that is neither a value of the target nor a "
                "class of the model; check that labels keep their type (1 vs '1')"
            )
    try:
        return sorted(labels)
    except TypeError as exc:
        kinds = sorted({type(v).__name__ for v in labels})
        raise EvaluationInputError(
            f"labels of mixed types ({', '.join(kinds)}) in target and predictions"
        ) from exc


def positive_label(labels: list[Any], configured: Any = None) -> Any:
    """The label counted as positive in binary metrics: configured, else the greater class."""
    if configured is not None:
        for label in labels:
            if label == configured:
                return label
        raise EvaluationInputError(
            f"positive_label {configured!r} is not among the labels {labels!r}"
        )
    return labels[-1]


def score_matrix(
    outputs: ModelOutputs, labels: list[Any], n_rows: int, who: str
) -> tuple[NDArray[Any], list[Any]] | None:
    """The model's class scores (n_rows x n_classes) and their column labels, or None."""
    if outputs.scores is None:
        return None
    try:
        scores = np.asarray(outputs.scores, dtype=float)
    except (TypeError, ValueError) as exc:
        raise EvaluationInputError(f"{who} scores are not numeric ({exc})") from exc
    classes = [plain(c) for c in outputs.classes] if outputs.classes is not None else None
    if scores.ndim == 1:  # one probability per row: P(positive class) of a binary model
        if len(labels) != 2:
            raise EvaluationInputError(
                f"{who} returned one score per row for {len(labels)} classes"
            )
        scores = np.column_stack([1.0 - scores, scores])
        classes = classes if classes is not None and len(classes) == 2 else list(labels)
    if scores.ndim != 2 or scores.shape[0] != n_rows:
        raise EvaluationInputError(
            f"{who} scores have shape {scores.shape}, expected ({n_rows}, n_classes)"
        )
    if classes is None:
        if scores.shape[1] != len(labels):
            raise EvaluationInputError(
                f"{who} scores have {scores.shape[1]} columns but the model declared no classes "
                f"and there are {len(labels)} labels"
            )
        classes = list(labels)
    if len(classes) != scores.shape[1]:
        raise EvaluationInputError(
            f"{who} scores have {scores.shape[1]} columns for {len(classes)} classes"
        )
    if not np.all(np.isfinite(scores)):
        raise EvaluationInputError(f"{who} scores contain missing or infinite values")
    return scores, classes


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value (for JSON evidence and set membership)."""
    return value.item() if isinstance(value, np.generic) else value
