"""Drift gate: is the candidate's training data still the data the production version knew?

Pure data comparison, outside the sandbox: no model code runs. The service puts pandas
DataFrames in the context: ``datasets["training"]`` (the candidate's training data, required),
``datasets["reference"]`` (usually the training data of the version holding the alias now) and,
optionally, ``datasets["evaluation_frame"]`` (the evaluation rows, for training/serving skew;
when it is absent the frame of an ``EvaluationData`` under ``datasets["evaluation"]`` is used).
The model's input columns come from the MLmodel signature (``signature.inputs``, MLflow's
column-based schema); without a column signature every column counts as a model input.

Column tests (Evidently's documented "data drift" defaults, computed with scipy; Evidently
itself is not a dependency: it pulls a telemetry package and a web server)
    With at most ``small_sample_rows`` (1,000) reference rows: two-sample Kolmogorov-Smirnov
    (``scipy.stats.ks_2samp``) for numeric columns and Pearson's chi-square test of
    homogeneity on the category counts (``scipy.stats.chi2_contingency``) for categorical
    ones; a column drifted when the p-value is below ``p_value`` (0.05). Above that:
    Wasserstein distance divided by the reference standard deviation (floored at 0.001, as
    Evidently does, so a constant reference column drifts as soon as the values move) for
    numeric columns and the Jensen-Shannon distance (natural log) of the category shares for
    categorical ones; drifted at or above ``wasserstein_threshold`` / ``jensen_shannon_threshold``
    (0.1). The method follows the reference's row count before sampling, one method per table.
    Missing and infinite values are left out of the tests and shown as ``missing_share``; a
    column whose values are all missing on one side only has drifted; all missing on both
    sides, it is listed and not judged.
    PSI (population stability index) is in every row: reference quantile bins (``psi_bins``,
    10; open-ended at both ends) for numeric columns, the reference's categories plus an
    ``<unseen>`` bin for categorical ones, plus a ``<missing>`` bin, shares floored at 1e-4.
    Level ``warn`` from ``psi_warn`` (0.1), ``drift`` from ``psi_drift`` (0.25), the usual
    credit-scoring conventions.

Column kinds
    Booleans, strings, objects and pandas categoricals are categorical; integers and floats
    are numeric, however few their distinct values: the distance between values means
    something (a 1-5 rating moving from 2 to 4 is more than from 2 to 3, which Wasserstein
    sees and chi-square does not), and KS is conservative on tied values, so this adds no
    false alarms. Dates, durations and other dtypes are listed, not tested, and do not count
    in the drifted share (a timestamp always "drifts" between two snapshots). Identifiers
    (a customer id) differ between any two snapshots too: leave them out with ``columns``.

Checks
    DRIFT-DATA-001 (HIGH, fails)  dataset drift: the share of judged columns that drifted is
        at or above ``max_drifted_share`` (0.5; Evidently's ``drift_share``, also compared
        with >=, so 3 drifted columns of 6 fail). The message names the drifted columns.
    DRIFT-COLUMN-001  one drifted column, always listed. LOW and no effect on the status when
        only its test says so: with KS / chi-square, a column of identical distributions is
        flagged 5% of the time by construction, a quarter of six-column tables would warn.
        MEDIUM and the gate ``warn`` when PSI confirms it (level ``drift``): one column moved
        a lot (a unit change, a broken feature pipeline) below the dataset share.
    DRIFT-SCHEMA-001  a column of the reference is missing from the training data.
    DRIFT-SCHEMA-002  a column of the training data is not in the reference.
    DRIFT-SCHEMA-003  a column changed kind (numeric, categorical, temporal, other).
        Each schema finding is HIGH and fails when the column is a model input, LOW and warns
        otherwise. A numeric dtype change within a kind (int64 to float64, as pandas does as
        soon as an integer column holds one missing value) is listed in ``dtype_changed`` and
        the values are still compared.
    DRIFT-SKEW-001  training/serving skew: the evaluation rows against the training data with
        the same tests (the training data is the baseline). Found when the evaluation set
        shows dataset drift, a PSI-confirmed drifted column, a model input it lacks or whose
        kind changed, or no column to compare. ``skew_mode``: ``warn`` (default, MEDIUM),
        ``fail`` (HIGH) or ``off``.

Statuses
    ``skipped``: no reference data (the first version of a model has no production version
    whose training data could serve as reference); skew is still checked and may warn or fail.
    ``error`` (blocks like ``fail``: the gatekeeper fails closed): no training data, a dataset
    that is not a DataFrame, has no rows, no columns or duplicate column names, a configured
    column in neither frame, no column the two frames can compare, a column a test could not
    process (in the skew check a warning, unless ``skew_mode`` is ``fail``).
    Otherwise ``fail`` > ``warn`` > ``pass`` from the checks above.

Work is bounded: a frame longer than ``max_rows`` (100,000) is sampled without replacement
with a numpy Generator seeded with ``seed`` (0), and the evidence says so; same inputs, same
result. Evidence: per comparison, the row counts, the method, the schema differences and a
per-column table (kind, model input, method, statistic, score and threshold, drifted, PSI and
level, missing shares, values compared). ``mode`` (enforce | warn | off) is accepted here and
applied by the policy decision.
"""

from __future__ import annotations

import enum
import math
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import Field, field_validator, model_validator
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

from gates.base import Finding, GateConfig, GateContext, GateResult, Severity, Status
from gates.evaluation import EVALUATION_KEY, EvaluationData
from gates.mlmodel import model_inputs

GATE_NAME = "drift"
TRAINING_KEY = "training"
REFERENCE_KEY = "reference"
EVALUATION_FRAME_KEY = "evaluation_frame"

RULE_DATA = "DRIFT-DATA-001"
RULE_COLUMN = "DRIFT-COLUMN-001"
RULE_SCHEMA_REMOVED = "DRIFT-SCHEMA-001"
RULE_SCHEMA_ADDED = "DRIFT-SCHEMA-002"
RULE_SCHEMA_KIND = "DRIFT-SCHEMA-003"
RULE_SKEW = "DRIFT-SKEW-001"

STD_FLOOR = 0.001  # Evidently's floor on the reference std in the normalised Wasserstein
PSI_FLOOR = 1e-4  # share given to an empty PSI bin, so the logarithm stays finite
LARGE_METHODS = "wasserstein_norm / jensen_shannon"
# how each method's score reads against its threshold, for messages
SCORES = {
    "ks": ("KS p-value", "<"),
    "chi_square": ("chi-square p-value", "<"),
    "wasserstein_norm": ("normalised Wasserstein distance", ">="),
    "jensen_shannon": ("Jensen-Shannon distance", ">="),
}
NO_REFERENCE = (
    "no reference data: the first version of a model has no production version whose "
    "training data could serve as reference (or the policy names no data.reference), so "
    "data drift is not judged"
)


class SkewMode(enum.StrEnum):
    """How training/serving skew counts: `warn` reports it, `fail` blocks, `off` skips it."""

    WARN = "warn"
    FAIL = "fail"
    OFF = "off"


class Kind(enum.StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    TEMPORAL = "temporal"
    OTHER = "other"


class DriftInputError(ValueError):
    """A dataset is missing or malformed; the gate reports `error`, never `pass`."""


class DriftConfig(GateConfig):
    """`gates.drift` in the policy file: Evidently's data-drift defaults, computed with scipy."""

    max_drifted_share: float = Field(0.5, strict=True, gt=0, le=1)
    """DRIFT-DATA-001 fails when the share of judged columns that drifted is at or above this
    (Evidently's `drift_share`)."""

    small_sample_rows: int = Field(1000, strict=True, ge=1)
    """With at most this many reference rows columns are compared with KS (numeric) and
    chi-square (categorical); above it with normalised Wasserstein and Jensen-Shannon."""

    p_value: float = Field(0.05, strict=True, gt=0, lt=1)
    """KS and chi-square: a column drifted when the p-value is below this."""

    wasserstein_threshold: float = Field(0.1, strict=True, gt=0)
    """With more reference rows than `small_sample_rows`, a numeric column drifted when the
    Wasserstein distance over the reference standard deviation is at or above this."""

    jensen_shannon_threshold: float = Field(0.1, strict=True, gt=0, le=1)
    """With more reference rows than `small_sample_rows`, a categorical column drifted when the
    Jensen-Shannon distance (natural log) of the category shares is at or above this."""

    psi_bins: int = Field(10, strict=True, ge=2, le=100)
    """Quantile bins of the reference for the population stability index of numeric columns."""

    psi_warn: float = Field(0.1, strict=True, ge=0)
    """PSI level `warn` from this value (shown in the table only)."""

    psi_drift: float = Field(0.25, strict=True, gt=0)
    """PSI level `drift` from this value; a drifted column with PSI at this level warns."""

    skew_mode: SkewMode = SkewMode.WARN
    """Training/serving skew (evaluation rows against the training data): `warn`, `fail` or
    `off`."""

    columns: list[str] = Field(default_factory=list)
    """Compare only these columns; empty compares every column."""

    max_rows: int = Field(100_000, strict=True, ge=1000)
    """A longer frame is sampled to this many rows (seeded), and the evidence says so."""

    seed: int = Field(0, strict=True, ge=0)
    """Seed of the sampling, so the same inputs always give the same result."""

    @field_validator("columns")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        if any(not name for name in value):
            raise ValueError("column names must be non-empty text")
        if len(set(value)) != len(value):
            raise ValueError("a column is listed twice")
        return value

    @model_validator(mode="after")
    def _psi_levels(self) -> DriftConfig:
        if self.psi_warn > self.psi_drift:
            raise ValueError(
                f"psi_warn ({self.psi_warn}) must not be above psi_drift ({self.psi_drift})"
            )
        return self

    def thresholds(self) -> dict[str, float | int | str]:
        return {
            "max_drifted_share": self.max_drifted_share,
            "small_sample_rows": self.small_sample_rows,
            "p_value": self.p_value,
            "wasserstein_threshold": self.wasserstein_threshold,
            "jensen_shannon_threshold": self.jensen_shannon_threshold,
            "psi_warn": self.psi_warn,
            "psi_drift": self.psi_drift,
            "skew_mode": self.skew_mode.value,
        }


# --- inputs -----------------------------------------------------------------------------------


def dataset(ctx: GateContext, key: str, what: str) -> pd.DataFrame | None:
    """The DataFrame under `key`, or None when absent; a malformed one raises."""
    return _checked(ctx.datasets.get(key), f"datasets['{key}']", what)


def evaluation_frame(ctx: GateContext) -> tuple[pd.DataFrame | None, str | None]:
    """The evaluation rows for the skew check and the key they came from."""
    frame = dataset(ctx, EVALUATION_FRAME_KEY, "evaluation frame")
    if frame is not None:
        return frame, EVALUATION_FRAME_KEY
    data = ctx.datasets.get(EVALUATION_KEY)
    if isinstance(data, EvaluationData):
        where = f"datasets['{EVALUATION_KEY}'].frame"
        return _checked(data.frame, where, "evaluation set"), EVALUATION_KEY
    return None, None


def _checked(frame: Any, where: str, what: str) -> pd.DataFrame | None:
    if frame is None:
        return None
    if not isinstance(frame, pd.DataFrame):
        raise DriftInputError(f"{where} ({what}) is a {type(frame).__name__}, expected a DataFrame")
    if len(frame) == 0 or len(frame.columns) == 0:
        raise DriftInputError(f"the {what} is empty ({len(frame)} rows, {frame.shape[1]} columns)")
    twice = sorted(n for n, k in Counter(str(c) for c in frame.columns).items() if k > 1)
    if twice:
        raise DriftInputError(f"the {what} has duplicate column names: {', '.join(twice)}")
    return frame


def sample(frame: pd.DataFrame, max_rows: int, seed: int, stream: int) -> pd.DataFrame:
    """At most `max_rows` rows of `frame`, drawn without replacement, in their original order."""
    if len(frame) <= max_rows:
        return frame
    rng = np.random.default_rng([seed, stream])
    rows = np.sort(rng.choice(len(frame), size=max_rows, replace=False))
    return frame.iloc[rows]


def column_kind(column: pd.Series) -> Kind:
    """How a column is compared; see the module docstring."""
    dtype = column.dtype
    types = pd.api.types
    if types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return Kind.CATEGORICAL
    if (
        types.is_datetime64_any_dtype(dtype)
        or types.is_timedelta64_dtype(dtype)
        or isinstance(dtype, pd.PeriodDtype)
    ):
        return Kind.TEMPORAL
    if types.is_complex_dtype(dtype):
        return Kind.OTHER
    if types.is_numeric_dtype(dtype):
        return Kind.NUMERIC
    if types.is_object_dtype(dtype) or types.is_string_dtype(dtype):
        return Kind.CATEGORICAL
    return Kind.OTHER


# --- one column -------------------------------------------------------------------------------


class _Test(NamedTuple):
    method: str | None
    statistic: float | None
    score: float | None  # the p-value (KS, chi-square) or the distance, set against threshold
    threshold: float | None
    drifted: bool | None  # None: not judged
    note: str = ""


@dataclass(frozen=True)
class ColumnDrift:
    """One row of the per-column table."""

    column: str
    kind: Kind
    model_input: bool
    test: _Test
    psi: float | None
    psi_level: str | None
    missing_share: tuple[float, float]  # baseline, current
    values: tuple[int, int]  # values compared (not missing), baseline, current

    @property
    def confirmed(self) -> bool:
        """Drifted by its test and by PSI: the column moved a lot."""
        return bool(self.test.drifted) and self.psi_level == "drift"

    def as_dict(self, roles: tuple[str, str]) -> dict[str, Any]:
        return {
            "column": self.column,
            "kind": self.kind.value,
            "model_input": self.model_input,
            "method": self.test.method,
            "statistic": _finite(self.test.statistic),
            "score": _finite(self.test.score),
            "threshold": self.test.threshold,
            "drifted": self.test.drifted,
            "psi": _finite(self.psi),
            "psi_level": self.psi_level,
            "missing_share": dict(zip(roles, self.missing_share, strict=True)),
            "values": dict(zip(roles, self.values, strict=True)),
            "note": self.test.note,
        }


def compare_column(
    name: str,
    base: pd.Series,
    current: pd.Series,
    *,
    kind: Kind,
    small: bool,
    model_input: bool,
    roles: tuple[str, str],
    config: DriftConfig,
) -> ColumnDrift:
    missing = (_share(base, kind), _share(current, kind))
    if kind is Kind.NUMERIC:
        ref, cur = _numbers(base), _numbers(current)
        test = _empty_side(ref.size, cur.size, roles) or _numeric_test(ref, cur, small, config)
        bins = _numeric_bins(ref, cur, len(base) - ref.size, len(current) - cur.size, config)
        sizes = (ref.size, cur.size)
    elif kind is Kind.CATEGORICAL:
        ref_counts, cur_counts = _category_counts(base), _category_counts(current)
        sizes = (sum(ref_counts.values()), sum(cur_counts.values()))
        test = _empty_side(*sizes, roles) or _categorical_test(
            ref_counts, cur_counts, small, config
        )
        bins = _category_bins(ref_counts, cur_counts, len(base) - sizes[0], len(current) - sizes[1])
    else:
        untested = _Test(None, None, None, None, None, f"{kind.value} column: listed, not compared")
        return ColumnDrift(name, kind, model_input, untested, None, None, missing, (0, 0))
    if test.score is not None and not math.isfinite(test.score):
        raise ArithmeticError(f"{test.method} gave {test.score} (values out of floating range?)")
    psi = _psi(*bins)
    return ColumnDrift(
        name, kind, model_input, test, psi, _psi_level(psi, config), missing, (sizes[0], sizes[1])
    )


def _numbers(column: pd.Series) -> NDArray[np.float64]:
    values = np.asarray(column.to_numpy(dtype=float, na_value=np.nan), dtype=np.float64)
    finite: NDArray[np.float64] = values[np.isfinite(values)]
    return finite


def _share(column: pd.Series, kind: Kind) -> float:
    """Share of missing values (and, for numbers, infinite ones)."""
    if kind is Kind.NUMERIC:
        return float(1.0 - _numbers(column).size / len(column))
    return float(column.isna().mean())


def _key(value: Any) -> str:
    """A category as text: unhashable values (lists, dicts) are counted by their repr."""
    if isinstance(value, str):
        return value
    return repr(value.item() if isinstance(value, np.generic) else value)


def _category_counts(column: pd.Series) -> dict[str, int]:
    present = column[column.notna()].astype(object)
    counts: dict[str, int] = {}
    for value in present:
        key = _key(value)
        counts[key] = counts.get(key, 0) + 1
    return counts


def _empty_side(n_base: int, n_current: int, roles: tuple[str, str]) -> _Test | None:
    if n_base and n_current:
        return None
    if not n_base and not n_current:
        return _Test(None, None, None, None, None, "every value is missing on both sides")
    side = roles[0] if not n_base else roles[1]
    return _Test(None, None, None, None, True, f"every value is missing in the {side} data")


def _numeric_test(
    ref: NDArray[np.float64], cur: NDArray[np.float64], small: bool, config: DriftConfig
) -> _Test:
    if small:
        result = ks_2samp(ref, cur)
        p = float(result.pvalue)
        return _Test("ks", float(result.statistic), p, config.p_value, p < config.p_value)
    std = float(np.std(ref))
    distance = float(wasserstein_distance(ref, cur)) / max(std, STD_FLOOR)
    threshold = config.wasserstein_threshold
    note = f"reference std {std:g} floored at {STD_FLOOR:g}" if std < STD_FLOOR else ""
    return _Test("wasserstein_norm", distance, distance, threshold, distance >= threshold, note)


def _categorical_test(
    ref: dict[str, int], cur: dict[str, int], small: bool, config: DriftConfig
) -> _Test:
    keys = sorted(set(ref) | set(cur))
    table = np.array([[ref.get(k, 0) for k in keys], [cur.get(k, 0) for k in keys]], dtype=float)
    if small:
        if len(keys) < 2:
            return _Test("chi_square", 0.0, 1.0, config.p_value, False, "one category only")
        chi2, p, _, _ = chi2_contingency(table, correction=False)
        p = float(p)
        return _Test("chi_square", float(chi2), p, config.p_value, p < config.p_value)
    distance = float(jensenshannon(table[0] / table[0].sum(), table[1] / table[1].sum()))
    distance = distance if math.isfinite(distance) else 0.0  # rounding on identical shares
    threshold = config.jensen_shannon_threshold
    return _Test("jensen_shannon", distance, distance, threshold, distance >= threshold)


def _numeric_bins(
    ref: NDArray[np.float64],
    cur: NDArray[np.float64],
    ref_missing: int,
    cur_missing: int,
    config: DriftConfig,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Counts per reference quantile bin (open-ended at both ends), then the missing count."""
    inner = np.linspace(0.0, 1.0, config.psi_bins + 1)[1:-1]
    cuts = np.unique(np.quantile(ref, inner)) if ref.size else np.empty(0)
    ref_counts = np.bincount(np.searchsorted(cuts, ref, side="left"), minlength=cuts.size + 1)
    cur_counts = np.bincount(np.searchsorted(cuts, cur, side="left"), minlength=cuts.size + 1)
    return (
        np.append(ref_counts, ref_missing).astype(float),
        np.append(cur_counts, cur_missing).astype(float),
    )


def _category_bins(
    ref: dict[str, int], cur: dict[str, int], ref_missing: int, cur_missing: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Counts per reference category, then `<unseen>` categories, then missing values."""
    keys = sorted(ref)
    unseen = sum(n for k, n in cur.items() if k not in ref)
    return (
        np.array([*(ref[k] for k in keys), 0, ref_missing], dtype=float),
        np.array([*(cur.get(k, 0) for k in keys), unseen, cur_missing], dtype=float),
    )


def _psi(ref_counts: NDArray[np.float64], cur_counts: NDArray[np.float64]) -> float:
    expected = np.maximum(ref_counts / ref_counts.sum(), PSI_FLOOR)
    actual = np.maximum(cur_counts / cur_counts.sum(), PSI_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _psi_level(psi: float, config: DriftConfig) -> str:
    if psi >= config.psi_drift:
        return "drift"
    return "warn" if psi >= config.psi_warn else "none"


# --- one frame against another ----------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """One frame (`current`) against its baseline: schema differences and the column table."""

    roles: tuple[str, str]  # ("reference", "training") or ("training", "evaluation")
    rows: tuple[int, int]
    compared_rows: tuple[int, int]
    small: bool
    inputs: frozenset[str] | None
    columns: tuple[ColumnDrift, ...] = ()
    removed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    kind_changed: tuple[tuple[str, str, str], ...] = ()  # column, baseline dtype, current dtype
    dtype_changed: tuple[tuple[str, str, str], ...] = ()
    errors: tuple[str, ...] = ()

    def is_input(self, column: str) -> bool:
        return self.inputs is None or column in self.inputs

    @property
    def judged(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.test.drifted is not None]

    @property
    def drifted(self) -> list[str]:
        return [c.column for c in self.columns if c.test.drifted]

    @property
    def share(self) -> float:
        return len(self.drifted) / len(self.judged) if self.judged else 0.0

    def dataset_drift(self, config: DriftConfig) -> bool:
        return bool(self.judged) and self.share >= config.max_drifted_share

    def method(self) -> str:
        methods, limit = ("ks / chi_square", "<=") if self.small else (LARGE_METHODS, ">")
        return f"{methods}: the {self.roles[0]} has {self.rows[0]} rows ({limit} small_sample_rows)"

    def evidence(self, config: DriftConfig) -> dict[str, Any]:
        base, current = self.roles

        def changes(items: tuple[tuple[str, str, str], ...]) -> list[dict[str, str]]:
            return [{"column": c, base: b, current: k} for c, b, k in items]

        return {
            "baseline": base,
            "current": current,
            "rows": dict(zip(self.roles, self.rows, strict=True)),
            "compared_rows": dict(zip(self.roles, self.compared_rows, strict=True)),
            "sampled": self.rows != self.compared_rows,
            "method": self.method(),
            "schema": {
                "removed": list(self.removed),
                "added": list(self.added),
                "kind_changed": changes(self.kind_changed),
                "dtype_changed": changes(self.dtype_changed),
            },
            "columns": [c.as_dict(self.roles) for c in self.columns],
            "judged_columns": len(self.judged),
            "drifted_columns": self.drifted,
            "drifted_share": self.share,
            "max_drifted_share": config.max_drifted_share,
            "dataset_drift": self.dataset_drift(config),
            "errors": list(self.errors),
        }


def compare(
    baseline: pd.DataFrame,
    current: pd.DataFrame,
    *,
    roles: tuple[str, str],
    inputs: frozenset[str] | None,
    config: DriftConfig,
) -> Comparison:
    """`current` against `baseline`, column by column, after sampling both to `max_rows`."""
    small = len(baseline) <= config.small_sample_rows
    base = sample(baseline, config.max_rows, config.seed, 0)
    cur = sample(current, config.max_rows, config.seed, 1)
    base_names = {str(c): c for c in base.columns}
    cur_names = {str(c): c for c in cur.columns}
    names = list(base_names) + [n for n in cur_names if n not in base_names]
    if config.columns:
        wanted = set(config.columns)
        names = [n for n in names if n in wanted]
    columns: list[ColumnDrift] = []
    kind_changed: list[tuple[str, str, str]] = []
    dtype_changed: list[tuple[str, str, str]] = []
    errors: list[str] = []
    for name in (n for n in names if n in base_names and n in cur_names):
        b, c = base[base_names[name]], cur[cur_names[name]]
        kind, current_kind = column_kind(b), column_kind(c)
        if kind is not current_kind:
            kind_changed.append(
                (name, f"{kind.value} ({b.dtype})", f"{current_kind.value} ({c.dtype})")
            )
            continue
        if str(b.dtype) != str(c.dtype):
            dtype_changed.append((name, str(b.dtype), str(c.dtype)))
        is_input = inputs is None or name in inputs
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=RuntimeWarning)
                columns.append(
                    compare_column(
                        name,
                        b,
                        c,
                        kind=kind,
                        small=small,
                        model_input=is_input,
                        roles=roles,
                        config=config,
                    )
                )
        except (ValueError, TypeError, ArithmeticError) as exc:
            errors.append(f"column {name!r} could not be compared: {exc}")
    return Comparison(
        roles=roles,
        rows=(len(baseline), len(current)),
        compared_rows=(len(base), len(cur)),
        small=small,
        inputs=inputs,
        columns=tuple(columns),
        removed=tuple(n for n in names if n not in cur_names),
        added=tuple(n for n in names if n not in base_names),
        kind_changed=tuple(kind_changed),
        dtype_changed=tuple(dtype_changed),
        errors=tuple(errors),
    )


# --- the verdict ------------------------------------------------------------------------------


@dataclass
class _Verdict:
    findings: list[Finding] = field(default_factory=list)
    fail: list[str] = field(default_factory=list)
    warn: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, finding: Finding, blocks: bool) -> None:
        self.findings.append(finding)
        (self.fail if blocks else self.warn).append(finding.message)


def check(ctx: GateContext, config: DriftConfig) -> GateResult:
    """The training data against the reference, and the evaluation rows against the training
    data; see the module docstring."""
    started = time.perf_counter()
    try:
        training = dataset(ctx, TRAINING_KEY, "training data")
        reference = dataset(ctx, REFERENCE_KEY, "reference data")
        evaluation, evaluation_key = (
            evaluation_frame(ctx) if config.skew_mode is not SkewMode.OFF else (None, None)
        )
        if training is None:
            raise DriftInputError(
                f"no training data: datasets['{TRAINING_KEY}'] (the candidate's training data, "
                "policy data.training or the run's logged training input) is missing, so "
                "drift cannot be judged"
            )
        _require_columns(config, training, reference)
    except DriftInputError as exc:
        return _result(_Verdict(errors=[str(exc)]), {}, {}, config, started)
    inputs, inputs_source = model_inputs(ctx.mlmodel)
    known = {str(c) for c in training.columns} | (
        {str(c) for c in reference.columns} if reference is not None else set()
    )
    evidence: dict[str, Any] = {
        "model_inputs": {
            "source": inputs_source,
            "columns": sorted(inputs) if inputs is not None else None,
            "not_in_data": sorted(inputs - known) if inputs is not None else [],
        },
        "sampling": {"max_rows": config.max_rows, "seed": config.seed},
    }
    metrics: dict[str, float] = {}
    verdict = _Verdict()
    if reference is None:
        evidence["data_drift"] = {"skipped": NO_REFERENCE}
    else:
        data = compare(
            reference, training, roles=("reference", "training"), inputs=inputs, config=config
        )
        evidence["data_drift"] = data.evidence(config)
        metrics.update(
            drifted_share=data.share,
            drifted_columns=float(len(data.drifted)),
            judged_columns=float(len(data.judged)),
        )
        _judge_data(data, config, verdict)
    if config.skew_mode is SkewMode.OFF:
        evidence["skew"] = {"skipped": "skew_mode is off"}
    elif evaluation is None:
        evidence["skew"] = {"skipped": "no evaluation rows to compare with the training data"}
    else:
        skew = compare(
            training, evaluation, roles=("training", "evaluation"), inputs=inputs, config=config
        )
        evidence["skew"] = {"source": f"datasets['{evaluation_key}']", **skew.evidence(config)}
        metrics["skew_drifted_share"] = skew.share
        _judge_skew(skew, config, verdict)
    return _result(verdict, evidence, metrics, config, started, skipped=reference is None)


def _require_columns(
    config: DriftConfig, training: pd.DataFrame, reference: pd.DataFrame | None
) -> None:
    known = {str(c) for c in training.columns}
    if reference is not None:
        known |= {str(c) for c in reference.columns}
    unknown = [c for c in config.columns if c not in known]
    if unknown:
        where = (
            "the training or the reference data" if reference is not None else "the training data"
        )
        raise DriftInputError(
            f"column(s) {', '.join(map(repr, unknown))} of drift.columns are not in {where}"
        )


def _judge_data(data: Comparison, config: DriftConfig, verdict: _Verdict) -> None:
    verdict.errors += data.errors
    schema = [
        (RULE_SCHEMA_REMOVED, name, "is in the reference data but not in the training data")
        for name in data.removed
    ]
    schema += [
        (RULE_SCHEMA_ADDED, name, "is in the training data but not in the reference data")
        for name in data.added
    ]
    schema += [
        (RULE_SCHEMA_KIND, name, f"changed kind from {before} (reference) to {after} (training)")
        for name, before, after in data.kind_changed
    ]
    for rule, name, what in schema:
        verdict.add(*_schema_finding(rule, name, data, what))
    for column in data.columns:
        if column.test.drifted:
            finding = _column_finding(column, data.roles)
            verdict.findings.append(finding)
            if column.confirmed:
                verdict.warn.append(finding.message)
    if data.dataset_drift(config):
        message = (
            f"dataset drift: {len(data.drifted)} of {len(data.judged)} columns drifted "
            f"(share {data.share:.2f} >= {config.max_drifted_share:g}): {', '.join(data.drifted)}"
        )
        evidence = {
            "drifted_columns": data.drifted,
            "judged_columns": len(data.judged),
            "drifted_share": data.share,
            "threshold": config.max_drifted_share,
            "method": data.method(),
        }
        verdict.add(Finding(RULE_DATA, Severity.HIGH, message, evidence=evidence), blocks=True)
    if not data.judged and not data.errors:
        verdict.errors.append(
            "no column of the reference and the training data could be compared "
            "(no common numeric or categorical column with values)"
        )


def _schema_finding(rule: str, column: str, data: Comparison, what: str) -> tuple[Finding, bool]:
    is_input = data.is_input(column)
    role = "model input column" if is_input else "column (not a model input)"
    severity = Severity.HIGH if is_input else Severity.LOW
    finding = Finding(
        rule,
        severity,
        f"{role} {column!r} {what}",
        evidence={"column": column, "model_input": is_input},
    )
    return finding, is_input


def _column_finding(column: ColumnDrift, roles: tuple[str, str]) -> Finding:
    test = column.test
    if test.method is None or test.threshold is None:
        detail = test.note
    else:
        what, sign = SCORES[test.method]
        detail = f"{what} {_fmt(test.score)} {sign} {test.threshold:g}"
    psi = f", PSI {_fmt(column.psi)} ({column.psi_level})" if column.psi is not None else ""
    severity = Severity.MEDIUM if column.confirmed else Severity.LOW
    message = f"column {column.column!r} drifted: {detail}{psi}"
    return Finding(RULE_COLUMN, severity, message, evidence=column.as_dict(roles))


def _judge_skew(skew: Comparison, config: DriftConfig, verdict: _Verdict) -> None:
    blocks = config.skew_mode is SkewMode.FAIL
    reasons: list[str] = []
    if skew.dataset_drift(config):
        reasons.append(
            f"{len(skew.drifted)} of {len(skew.judged)} columns drifted "
            f"(share {skew.share:.2f} >= {config.max_drifted_share:g}): {', '.join(skew.drifted)}"
        )
    else:
        confirmed = [c.column for c in skew.columns if c.confirmed]
        if confirmed:
            reasons.append(f"column(s) drifted, confirmed by PSI: {', '.join(confirmed)}")
    lacking = [c for c in skew.removed if skew.is_input(c)]
    if lacking:
        reasons.append(f"model input column(s) missing: {', '.join(lacking)}")
    changed = [c for c, _, _ in skew.kind_changed if skew.is_input(c)]
    if changed:
        reasons.append(f"model input column(s) of another kind: {', '.join(changed)}")
    if not skew.judged and not skew.errors:
        reasons.append("no column to compare with the training data")
    if skew.errors:
        (verdict.errors if blocks else verdict.warn).extend(skew.errors)
    if not reasons:
        return
    message = "training/serving skew: the evaluation rows differ from the training data: " + (
        "; ".join(reasons)
    )
    evidence = {
        "drifted_columns": skew.drifted,
        "drifted_share": skew.share,
        "skew_mode": config.skew_mode.value,
        "method": skew.method(),
    }
    severity = Severity.HIGH if blocks else Severity.MEDIUM
    verdict.add(Finding(RULE_SKEW, severity, message, evidence=evidence), blocks=blocks)


def _result(
    verdict: _Verdict,
    evidence: dict[str, Any],
    metrics: dict[str, float],
    config: DriftConfig,
    started: float,
    skipped: bool = False,
) -> GateResult:
    if verdict.errors:  # an error blocks; failures found as well are still reported
        status, message = Status.ERROR, "; ".join(verdict.errors + verdict.fail)
    elif verdict.fail:
        status, message = Status.FAIL, "; ".join(verdict.fail)
    elif verdict.warn:
        status, message = Status.WARN, "; ".join(verdict.warn)
    elif skipped:
        status, message = Status.SKIPPED, NO_REFERENCE
    else:
        data = evidence["data_drift"]
        status = Status.PASS
        message = (
            f"no dataset drift: {len(data['drifted_columns'])} of {data['judged_columns']} "
            f"columns drifted (share {data['drifted_share']:.2f} < {config.max_drifted_share:g})"
        )
    if skipped and status in (Status.FAIL, Status.WARN):
        message += f"; {NO_REFERENCE}"
    return GateResult(
        gate=GATE_NAME,
        status=status,
        findings=tuple(verdict.findings),
        metrics=metrics,
        thresholds=config.thresholds(),
        evidence=evidence,
        message=message,
        duration_s=time.perf_counter() - started,
    )


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"
