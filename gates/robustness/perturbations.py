"""How one feature is probed: its flip probe (a small nudge, or a swap to another frequent
category) and its trigger values (steps beyond the reference's range, rare and unseen
categories). Each feature draws from its own seeded Generator, and probe values keep the
column's dtype, since the sandbox hands the rows to the model as they are."""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from gates.robustness.config import ALL_NUMERIC, UNSEEN, FeatureKind, ProbeKind, RobustnessConfig
from gates.robustness.probes import Probe, Skipped, json_value


@dataclass(frozen=True)
class NumericStats:
    """What defines "small" and "out of range" for a numeric feature: the reference's values."""

    low: float
    high: float
    std: float
    integer: bool
    dtype: Any

    @property
    def scale(self) -> float:
        """The step unit beyond the range; a constant feature uses its magnitude (at least 1)."""
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


def numeric_stats(basis: pd.Series, column: pd.Series) -> NumericStats | None:
    values = _as_float(basis)
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # values near the float limit
        std = float(np.std(finite, ddof=1)) if len(finite) > 1 else 0.0
    return NumericStats(
        low=float(finite.min()),
        high=float(finite.max()),
        std=std if math.isfinite(std) else 0.0,
        integer=pd.api.types.is_integer_dtype(column.dtype),
        dtype=column.dtype,
    )


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
    unit = "std" if stats.std > 0 else f"x {_number(stats.scale)} (constant in the reference)"
    for direction, edge, sign, name in (
        ("above", stats.high, 1.0, "max"),
        ("below", stats.low, -1.0, "min"),
    ):
        candidates = [(edge, name)] + [
            (edge + sign * d * stats.scale, f"{name} {'+-'[sign < 0]} {_number(d)} {unit}")
            for d in config.trigger_distances
        ]
        raw = np.array([v for v, _ in candidates], dtype=float)
        cast = _cast_numeric(raw, stats)
        as_float = np.asarray(cast, dtype=float)
        step, last = 0, None
        for i, (value, label) in enumerate(
            zip(as_float, (lbl for _, lbl in candidates), strict=True)
        ):
            beyond = value > stats.high if sign > 0 else value < stats.low
            if not math.isfinite(value) or (i > 0 and not beyond) or value == last:
                continue  # clipped to the dtype's range, overflowed or the same as the last
            last = value
            builder.add(
                rows,
                {feature: np.repeat(cast[i : i + 1], len(rows))},
                kind=ProbeKind.TRIGGER,
                feature=feature,
                feature_kind=FeatureKind.NUMERIC,
                label=label,
                value=json_value(cast[i]),
                direction=direction,
                step=step,
            )
            step += 1


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
