"""The plan, shared by the two halves of the gate: the probe rows the sandbox predicts on,
which probe each row belongs to, and how the evaluation rows and the probe rows travel
through the sandbox in one call (`ProbePlan.batch`, `ProbePlan.split`)."""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from gates.evaluation import EvaluationInputError, ModelOutputs, plain
from gates.robustness.config import FeatureKind, ProbeKind


@dataclass(frozen=True)
class Probe:
    """One block of `ProbePlan.rows`: copies of evaluation rows with one feature changed."""

    kind: ProbeKind
    feature: str  # the changed column (ALL_NUMERIC for the all-at-once flip probe)
    feature_kind: FeatureKind
    start: int  # the block is plan.rows[start:stop]
    stop: int
    source: NDArray[np.intp]  # position in the evaluation frame of each copied row
    label: str  # how the values were chosen: "+/-0.05 std", "median + 4 sd", "rare category"
    value: Any = None  # trigger: the value set (a plain Python value)
    original: NDArray[Any] | None = None  # flip on one feature: the values before the change
    direction: str | None = None  # numeric trigger: "above" or "below" the median
    step: int = 0  # numeric trigger: 0 is the start (the bulk's edge), then 1, 2, ... outwards


@dataclass(frozen=True)
class Skipped:
    feature: str
    check: ProbeKind
    reason: str

    def as_dict(self) -> dict[str, str]:
        return {"feature": self.feature, "check": self.check.value, "reason": self.reason}


@dataclass(frozen=True)
class ProbePlan:
    """Every row the model must be asked about, and which probe each row belongs to.

    `rows` has exactly the input columns given to `plan_probes`, in that order. `n_rows` is the
    number of evaluation rows whose predictions are the baseline. A plan that could not be made
    has `error` set and no rows; `judge` turns it into an `error` result.
    """

    rows: pd.DataFrame
    probes: tuple[Probe, ...]
    n_rows: int
    features: tuple[str, ...]
    skipped: tuple[Skipped, ...] = ()
    summary: dict[str, Any] = field(default_factory=dict)  # JSON-able, for the evidence
    error: str | None = None

    def batch(self, evaluation_inputs: pd.DataFrame) -> pd.DataFrame:
        """The evaluation rows then the probe rows: what the sandbox predicts, in one call.

        `evaluation_inputs` are the rows the plan was made from (the model's input columns);
        a plan that could not be made adds no rows, so other gates still get their predictions.
        """
        if self.error:
            return evaluation_inputs.reset_index(drop=True)
        if len(evaluation_inputs) != self.n_rows:
            raise EvaluationInputError(
                f"the plan was made for {self.n_rows} evaluation rows, got {len(evaluation_inputs)}"
            )
        head = evaluation_inputs.loc[:, list(self.features)].reset_index(drop=True)
        return _concat([head, self.rows])

    def split(self, outputs: ModelOutputs) -> tuple[ModelOutputs, ModelOutputs]:
        """The outputs of a `batch` call as (evaluation rows, probe rows).

        A count that does not add up is left for `judge` to report as an error.
        """
        n = len(np.asarray(outputs.predictions)) if self.error else self.n_rows
        predictions = np.asarray(outputs.predictions)
        scores = None if outputs.scores is None else np.asarray(outputs.scores)
        return (
            ModelOutputs(predictions[:n], None if scores is None else scores[:n], outputs.classes),
            ModelOutputs(predictions[n:], None if scores is None else scores[n:], outputs.classes),
        )


@dataclass(frozen=True)
class RobustnessData:
    """What the service puts under ``datasets["robustness"]`` for `check`."""

    plan: ProbePlan
    probes: ModelOutputs  # the candidate's outputs on plan.rows, in order


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Frames one after the other; a categorical column keeps the union of the categories."""
    frames = [f.reset_index(drop=True) for f in frames]
    for column in frames[0].columns:
        dtypes = [f[column].dtype for f in frames]
        if any(isinstance(d, pd.CategoricalDtype) for d in dtypes):
            known: dict[Any, None] = {}
            for f in frames:
                part = f[column]
                if isinstance(part.dtype, pd.CategoricalDtype):
                    known.update(dict.fromkeys(part.cat.categories))
                known.update(dict.fromkeys(part.dropna().astype(object).unique()))
            categories = list(known)
            ordered = any(getattr(d, "ordered", False) for d in dtypes)
            union = pd.CategoricalDtype(categories, ordered=ordered)
            frames = [f.assign(**{column: f[column].astype(object).astype(union)}) for f in frames]
    return pd.concat(frames, ignore_index=True)


def json_value(value: Any) -> Any:
    """A value for JSON evidence: plain numbers, text, booleans and None; anything else as text."""
    value = plain(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Hashable) and pd.isna(value):
        return None
    return str(value)
