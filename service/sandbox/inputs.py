"""Which columns of the evaluation rows reach the model: exactly its inputs.

Evaluation data carry more than a model's inputs: the sensitive features the fairness gate
groups by (a model is usually trained without them), and whatever else the policy's file
holds. A model given columns it was not fitted on may refuse them (scikit-learn checks the
names it saw in `fit`), so the parent sends the model exactly:

1. the MLmodel signature's input columns, in the signature's order, when it names columns;
   a required one the data does not have, or a dtype MLflow's own schema enforcement would
   refuse, is an `InputMismatch` before anything is loaded, worded from what the gatekeeper
   knows (the signature and its own data);
2. else every column it was given, and the child narrows them to the names the fitted model
   reports (`feature_names_in_`), which only the model's process can read.

The target and the sensitive features stay with the parent, where the gates use them.
MLflow's `_enforce_mlflow_datatype` judges dtypes here (data against the model's declared
types; nothing of the model runs), so a mismatch is named exactly when MLflow would refuse
the rows; without it (a future MLflow) the child's own enforcement still fails closed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pandas.api.types import infer_dtype

from gates.mlmodel import InputColumn, signature_columns
from service.errors import GatekeeperError
from service.sandbox.reasons import (
    MAX_NAMES_SHOWN,
    input_reasons,
    printable,
    quoted,
    reported_names,
)

SIGNATURE = "signature"
FITTED = "the columns the model was fitted on (feature_names_in_)"
EVERY_COLUMN = "every column given (no signature, no fitted column names)"
MAX_COLUMNS_LISTED = 200  # in the evidence; beyond it the evidence gives the count


class InputMismatch(GatekeeperError):
    """The evaluation rows do not fit the model's signature; `reasons` are classified text."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


@dataclass(frozen=True)
class ModelInputs:
    rows: pd.DataFrame  # what the model is sent
    source: str | None  # SIGNATURE, or None: the child narrows to the fitted names if any


def select_model_inputs(mlmodel: Mapping[str, Any], rows: pd.DataFrame) -> ModelInputs:
    """The rows the model is sent, or InputMismatch naming what does not fit."""
    columns = signature_columns(mlmodel)
    if columns is None or any(c.type == "tensor" for c in columns):
        return ModelInputs(rows, None)
    present = {str(c): c for c in rows.columns}
    missing = [c.name for c in columns if c.required and c.name not in present]
    reasons = [f"missing input column {quoted(n)}" for n in missing[:MAX_NAMES_SHOWN]]
    if len(missing) > MAX_NAMES_SHOWN:
        reasons.append(f"{len(missing) - MAX_NAMES_SHOWN} more missing input column(s)")
    chosen = [c for c in columns if c.name in present]
    for column in chosen:
        problem = _dtype_problem(column, rows[present[column.name]])
        if problem is not None:
            reasons.append(problem)
    if reasons:
        raise InputMismatch(reasons)
    return ModelInputs(rows[[present[c.name] for c in chosen]], SIGNATURE)


@dataclass(frozen=True)
class SentColumns:
    """What the parent knows about the columns of one sandbox call: what the model was sent,
    the evaluation data's own columns (the only names a model-reported name may be shown as),
    and whether the child was to narrow them (`source` None: no signature)."""

    sent: tuple[str, ...] = ()
    known: frozenset[str] = field(default_factory=frozenset)
    source: str | None = SIGNATURE

    @classmethod
    def of(cls, selected: ModelInputs, known: Collection[Any]) -> SentColumns:
        return cls(
            tuple(str(c) for c in selected.rows.columns),
            frozenset(str(c) for c in known),
            selected.source,
        )

    def reasons(self, report: dict[str, Any]) -> list[str]:
        """Classified reasons from what the child reported about a failure (names it was
        fitted on, keys of KeyErrors), checked against what the parent knows."""
        keys = reported_names(report.get("missing_keys")) or []
        return input_reasons(
            sent=self.sent,
            known=self.known,
            fitted=reported_names(report.get("fitted_columns")),
            missing_keys=keys[:20],
            # without a signature the child drops what the model was not fitted on
            report_unexpected=self.source is not None,
        )

    def evidence(self, kept: Any) -> dict[str, Any]:
        """Which columns the model got, for the gate evidence."""
        names = reported_names(kept)
        if self.source is not None:
            source, columns = self.source, list(self.sent)
        elif names and set(names) <= set(self.sent):
            # in the order sent, not the order the model chose to report them in
            source, columns = FITTED, [c for c in self.sent if c in set(names)]
        else:
            source, columns = EVERY_COLUMN, list(self.sent)
        shown: dict[str, Any] = {"source": source, "columns": columns[:MAX_COLUMNS_LISTED]}
        if len(columns) > MAX_COLUMNS_LISTED:
            shown["count"] = len(columns)
        return shown


def _dtype_problem(column: InputColumn, values: pd.Series) -> str | None:
    """MLflow's verdict on one column against its declared type, in the gatekeeper's words."""
    try:  # a private function of MLflow: the one its own predict() enforces the schema with
        from mlflow.models.utils import _enforce_mlflow_datatype
        from mlflow.types import DataType
    except ImportError:
        return None
    try:
        declared = DataType[str(column.type)]
    except KeyError:
        return None  # arrays, objects, maps: MLflow judges those value by value, in the child
    try:
        _enforce_mlflow_datatype(column.name, values, declared)
    except Exception:
        return (
            f"dtype mismatch in column {quoted(column.name)} "
            f"(expected {declared.name}, got {type_name(values)})"
        )
    return None


_BY_KIND = {"b": "boolean", "f": "double", "M": "datetime", "S": "binary", "U": "string"}
_INFERRED = {
    "string": "string",
    "bytes": "binary",
    "integer": "long",
    "floating": "double",
    "mixed-integer-float": "double",
    "boolean": "boolean",
    "datetime64": "datetime",
    "datetime": "datetime",
    "date": "datetime",
}


def type_name(values: pd.Series) -> str:
    """A column's type in MLflow's words (long, double, string, ...), from the data alone."""
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype):
        return "string"
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    kind = getattr(dtype, "kind", "O")
    if kind in ("i", "u"):
        return "long" if dtype.itemsize > 4 else "integer"
    if kind == "f" and dtype.itemsize <= 4:
        return "float"
    if kind in _BY_KIND:
        return _BY_KIND[kind]
    if kind == "O":
        return _INFERRED.get(infer_dtype(values, skipna=True), "object")
    name = str(dtype)
    return name if printable(name) else "another type"
