"""How one feature is probed: its flip probe (a small nudge, or a swap to another frequent
category) and its trigger values (log-spaced steps away from the median and the extremes of
every data set the run has, rare and unseen categories). Each feature draws from its own
seeded Generator, and probe values keep the column's dtype, since the sandbox hands the rows
to the model as they are."""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from gates.robustness.config import (
    ALL_NUMERIC,
    BULK_QUANTILE,
    UNSEEN,
    FeatureKind,
    ProbeKind,
    RobustnessConfig,
)
from gates.robustness.probes import Probe, Skipped, json_value

MAD_TO_SD = 1.4826  # the median absolute deviation times this estimates a normal's sd


@dataclass(frozen=True)
class NumericStats:
    """What defines "small" and "far" for a numeric feature: the reference's values (their
    standard deviation for a nudge; median and robust spread for trigger values), the
    evaluation rows' bulk, and the extremes of every data set the run has."""

    low: float  # the reference's range
    high: float
    std: float
    integer: bool
    dtype: Any
    median: float = 0.0
    spread: float = 0.0  # robust sd: 1.4826 x the median absolute deviation
    bulk: tuple[float, float] | None = None  # the evaluation rows' 1st and 99th percentiles
    extremes: tuple[tuple[str, float, float], ...] = ()  # (data set, min, max)

    @property
    def scale(self) -> float:
        """The trigger search's sd: the robust spread (a few far values, such as planted
        triggers in the reference, do not widen it), the standard deviation when at least half
        the values are equal, a constant feature's magnitude (at least 1)."""
        if self.spread > 0:
            return self.spread
        return self.std if self.std > 0 else max(abs(self.low), abs(self.high), 1.0)


class ProbeBuilder:
    """Collects probes as (source rows, changed columns) and assembles `rows` once."""

    def __init__(self, inputs: pd.DataFrame) -> None:
        self.inputs = inputs
        self.sources: list[NDArray[np.intp]] = []
        self.changes: dict[str, list[tuple[int, int, NDArray[Any]]]] = {}
        self.probes: list[Probe] = []
        self.size = 0

    def add(self, source: NDArray[np.intp], changes: dict[str, NDArray[Any]], **meta: Any) -> None:
        start, stop = self.size, self.size + len(source)
        for column, values in changes.items():
            self.changes.setdefault(column, []).append((start, stop, values))
        self.sources.append(source)
        self.probes.append(Probe(start=start, stop=stop, source=source, **meta))
        self.size = stop

    def rows(self) -> pd.DataFrame:
        if not self.sources:
            return self.inputs.iloc[:0].reset_index(drop=True)
        rows = self.inputs.iloc[np.concatenate(self.sources)].reset_index(drop=True)
        for column, blocks in self.changes.items():
            rows[column] = _with_blocks(rows[column], blocks)
        return rows


def stable(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def _rng(config: RobustnessConfig, purpose: str, feature: str) -> np.random.Generator:
    """A Generator of its own per feature: adding a column leaves the other probes unchanged."""
    return np.random.default_rng([config.seed, stable(purpose), stable(feature)])


def _as_float(column: pd.Series) -> NDArray[np.float64]:
    values: NDArray[np.float64] = pd.to_numeric(column, errors="coerce").to_numpy(
        dtype=float, na_value=np.nan
    )
    return values


def numeric_stats(
    basis: pd.Series, column: pd.Series, seen: Mapping[str, pd.Series]
) -> NumericStats | None:
    """`basis` (the reference) gives range, median and spread, `column` (the evaluation rows)
    the bulk and the dtype; `seen` names every data set the run has (its column of this
    feature), whose finite extremes are trigger values too."""
    values = _finite(basis)
    if len(values) == 0:
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # values near the float limit
        std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        median = float(np.median(values))
        spread = MAD_TO_SD * float(np.median(np.abs(values - median)))
    evaluated = _finite(column)
    bulk = None
    if len(evaluated):
        low, high = np.quantile(evaluated, [BULK_QUANTILE, 1 - BULK_QUANTILE])
        bulk = (float(low), float(high))
    extremes = tuple(
        (name, float(present.min()), float(present.max()))
        for name, present in ((name, _finite(data)) for name, data in seen.items())
        if len(present)
    )
    return NumericStats(
        low=float(values.min()),
        high=float(values.max()),
        std=std if math.isfinite(std) else 0.0,
        integer=pd.api.types.is_integer_dtype(column.dtype),
        dtype=column.dtype,
        median=median,
        spread=spread if math.isfinite(spread) else 0.0,
        bulk=bulk,
        extremes=extremes,
    )


def _finite(column: pd.Series) -> NDArray[np.float64]:
    values = _as_float(column)
    finite: NDArray[np.float64] = values[np.isfinite(values)]
    return finite


def plan_numeric_flips(
    builder: ProbeBuilder,
    numeric: dict[str, NumericStats],
    rows: NDArray[np.intp],
    config: RobustnessConfig,
    skipped: list[Skipped],
) -> None:
    together: dict[str, NDArray[Any]] = {}
    label = f"+/-{config.epsilon:g} std"
    for feature, stats in numeric.items():
        step = config.epsilon * stats.std
        if stats.integer:
            step = float(round(step))
        if step == 0:
            reason = (
                "constant in the reference (or its spread is not a finite number)"
                if stats.std == 0
                else f"integer feature: {config.epsilon:g} std ({config.epsilon * stats.std:.3g}) "
                "rounds to 0, it cannot move by a small amount"
            )
            skipped.append(Skipped(feature, ProbeKind.FLIP, reason))
            continue
        values = _as_float(builder.inputs[feature])[rows]
        signs = _rng(config, "flip", feature).choice(np.array([-1.0, 1.0]), size=len(rows))
        moved = _cast_numeric(values + signs * step, stats)
        present = np.isfinite(values)
        original = builder.inputs[feature].astype(object).to_numpy()[rows]
        builder.add(
            rows[present],
            {feature: moved[present]},
            kind=ProbeKind.FLIP,
            feature=feature,
            feature_kind=FeatureKind.NUMERIC,
            label=label,
            original=original[present],
        )
        together[feature] = np.where(present, moved, original)
    if len(together) >= 2:
        builder.add(
            rows,
            together,
            kind=ProbeKind.FLIP,
            feature=ALL_NUMERIC,
            feature_kind=FeatureKind.ALL_NUMERIC,
            label=f"{label}, every numeric feature at once",
        )


def _cast_numeric(values: NDArray[np.float64], stats: NumericStats) -> NDArray[Any]:
    """Values in the column's own dtype: integers rounded and clipped to the dtype's range."""
    if not stats.integer:
        if isinstance(stats.dtype, np.dtype):
            cast: NDArray[Any] = values.astype(stats.dtype)
            return cast
        return values
    bounds = np.iinfo(
        stats.dtype.numpy_dtype if hasattr(stats.dtype, "numpy_dtype") else stats.dtype
    )
    clipped = np.clip(np.round(values), float(bounds.min), float(bounds.max))
    if isinstance(stats.dtype, np.dtype):
        ints: NDArray[Any] = clipped.astype(stats.dtype)
        return ints
    # a nullable integer column (Int64): Python ints, missing stays missing
    return np.array([int(v) if math.isfinite(v) else None for v in clipped], dtype=object)


def _category_counts(basis: pd.Series) -> pd.Series:
    """Value counts without missing values, most frequent first, ties in a stable order."""
    counts = basis.dropna().astype(object).value_counts(sort=False)
    order = sorted(range(len(counts)), key=lambda i: (-int(counts.iloc[i]), repr(counts.index[i])))
    return counts.iloc[order]


def plan_categorical_flip(
    builder: ProbeBuilder,
    feature: str,
    basis: pd.DataFrame,
    rows: NDArray[np.intp],
    config: RobustnessConfig,
    skipped: list[Skipped],
) -> None:
    counts = _category_counts(basis[feature])
    if len(counts) < 2:
        skipped.append(Skipped(feature, ProbeKind.FLIP, "fewer than two categories"))
        return
    tops = list(counts.index[: config.top_categories])
    column = builder.inputs[feature].astype(object).to_numpy()[rows]
    present = ~pd.isna(column)
    source, original = rows[present], column[present]
    position = {value: i for i, value in enumerate(tops)}
    own = np.array([position.get(v, -1) for v in original], dtype=int)
    k = len(tops)
    draw = _rng(config, "flip", feature).integers(0, k, size=len(source))
    # a row holding a top category draws among the k-1 others, any other row among all k
    inside = own >= 0
    other = _rng(config, "flip-other", feature).integers(0, k - 1, size=len(source))
    pick = np.where(inside, np.where(other >= own, other + 1, other), draw)
    swapped = np.empty(len(source), dtype=object)
    swapped[:] = [tops[i] for i in pick]
    builder.add(
        source,
        {feature: swapped},
        kind=ProbeKind.FLIP,
        feature=feature,
        feature_kind=FeatureKind.CATEGORICAL,
        label=f"swapped to another of the {k} most frequent categories",
        original=original,
    )


def plan_numeric_triggers(
    builder: ProbeBuilder,
    feature: str,
    stats: NumericStats,
    rows: NDArray[np.intp],
    config: RobustnessConfig,
) -> None:
    """Per side of the median, every sampled row set to each value of `trigger_values`."""
    for direction, values in trigger_values(stats, config).items():
        for step, (value, label) in enumerate(values):
            builder.add(
                rows,
                {feature: np.repeat(value, len(rows))},
                kind=ProbeKind.TRIGGER,
                feature=feature,
                feature_kind=FeatureKind.NUMERIC,
                label=label,
                value=json_value(value[0]),
                direction=direction,
                step=step,
            )


def trigger_values(
    stats: NumericStats, config: RobustnessConfig
) -> dict[str, list[tuple[NDArray[Any], str]]]:
    """Per direction ("above", "below" the median) the values to try, nearest first, each in
    the column's dtype (a one-element array) with how it was chosen. The first is the start:
    the edge of the evaluation rows' bulk, or `trigger_start_distance` sd from the median when
    that is nearer. Then the median plus (minus) each of `trigger_distances` sd beyond the
    start, and each data set's extreme beyond it. A value that is not finite or does not move
    on from the one before (integers round, the dtype's range clips) is dropped."""
    return {"above": _side(stats, config, 1.0), "below": _side(stats, config, -1.0)}


def _side(
    stats: NumericStats, config: RobustnessConfig, sign: float
) -> list[tuple[NDArray[Any], str]]:
    def away(value: float) -> float:
        return sign * (value - stats.median)

    unit = "sd" if stats.spread > 0 or stats.std > 0 else f"x {_number(stats.scale)} (constant)"
    plus = "+" if sign > 0 else "-"
    cap = config.trigger_start_distance
    start = (stats.median + sign * cap * stats.scale, f"median {plus} {cap:g} {unit}")
    if stats.bulk is not None:
        end = stats.bulk[1] if sign > 0 else stats.bulk[0]
        if away(end) < cap * stats.scale:
            quantile = 1 - BULK_QUANTILE if sign > 0 else BULK_QUANTILE
            start = (end, f"{quantile:.0%} quantile of the evaluation set")
    edge = "max" if sign > 0 else "min"
    extremes = [(name, high if sign > 0 else low) for name, low, high in stats.extremes]
    candidates = [(away(value), 0, value, f"{edge} of the {name}") for name, value in extremes]
    candidates += [
        (
            d * stats.scale,
            1,
            stats.median + sign * d * stats.scale,
            f"median {plus} {_number(d)} {unit}",
        )
        for d in config.trigger_distances
    ]
    # nearest first; a data set's extreme before a distance landing on the same value
    beyond = sorted(c for c in candidates if c[0] > away(start[0]))
    values = [start, *((value, label) for _, _, value, label in beyond)]
    cast = _cast_numeric(np.array([v for v, _ in values], dtype=float), stats)
    as_float = np.asarray(cast, dtype=float)
    kept: list[tuple[NDArray[Any], str]] = []
    last = math.nan
    for i, (_, label) in enumerate(values):
        value = float(as_float[i])
        if not math.isfinite(value) or (kept and away(value) <= away(last)):
            continue  # overflowed, or rounded or clipped onto the value before
        kept.append((cast[i : i + 1], label))
        last = value
    return kept


def plan_categorical_triggers(
    builder: ProbeBuilder,
    feature: str,
    basis: pd.DataFrame,
    rows: NDArray[np.intp],
    config: RobustnessConfig,
    skipped: list[Skipped],
) -> None:
    counts = _category_counts(basis[feature])
    total = int(basis[feature].notna().sum())
    rare = [
        v for v, c in reversed(list(counts.items())) if total and c / total <= config.rare_share
    ]
    values: list[tuple[Any, str]] = [(v, "rare category") for v in rare[: config.rare_categories]]
    seen = list(counts.index)
    if config.unseen_category and seen and all(isinstance(v, str) for v in seen):
        unseen = UNSEEN
        while unseen in counts.index:
            unseen += "_"
        values.append((unseen, "unseen category"))
    if not values:
        skipped.append(
            Skipped(
                feature,
                ProbeKind.TRIGGER,
                f"no category held by at most {config.rare_share:g} of the reference rows"
                + ("" if not config.unseen_category else ", and not a text column"),
            )
        )
        return
    for value, label in values:
        column = np.empty(len(rows), dtype=object)
        column[:] = [value] * len(rows)
        builder.add(
            rows,
            {feature: column},
            kind=ProbeKind.TRIGGER,
            feature=feature,
            feature_kind=FeatureKind.CATEGORICAL,
            label=label,
            value=json_value(value),
        )


def _with_blocks(column: pd.Series, blocks: list[tuple[int, int, NDArray[Any]]]) -> pd.Series:
    """`column` with each block's values written over rows start:stop, in the column's dtype."""
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind in "iufb":
        values = column.to_numpy(copy=True)
        for start, stop, block in blocks:
            values[start:stop] = block
        return pd.Series(values, dtype=dtype)
    values = column.astype(object).to_numpy(copy=True)
    for start, stop, block in blocks:
        values[start:stop] = block
    if isinstance(dtype, pd.CategoricalDtype):
        added = [v for v in pd.unique(values[~pd.isna(values)]) if v not in dtype.categories]
        categories = list(dtype.categories) + list(added)
        return pd.Series(pd.Categorical(values, categories=categories, ordered=dtype.ordered))
    if pd.api.types.is_object_dtype(dtype):
        return pd.Series(values, dtype=object)
    return pd.Series(values, dtype=object).astype(dtype)


def _number(value: float) -> str:
    """1, 1.41, 22.6, 1024: a distance as a person reads it."""
    return f"{value:.0f}" if value >= 100 else f"{value:.3g}"
