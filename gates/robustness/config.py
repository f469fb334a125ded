"""The robustness gate's settings (`gates.robustness` in the policy file), its rule ids and
the names shared by planning and judging. What the settings mean in practice is told in the
package docstring (gates/robustness/__init__.py), the gate's user documentation."""

from __future__ import annotations

import enum
import math
from typing import Any

from pydantic import Field, model_validator

from gates.base import GateConfig

GATE_NAME = "robustness"
ROBUSTNESS_KEY = "robustness"
RULE_FLIP = "ROBUST-FLIP-001"
RULE_TRIGGER = "ROBUST-TRIGGER-001"
RULE_GISKARD = "ROBUST-GISKARD-001"
ALL_NUMERIC = "<all numeric features>"
UNSEEN = "<gatekeeper-unseen-category>"
MAX_SAMPLE_ROWS = 100_000
TRIGGER_GRID_START = 0.5  # sd from the median: the nearest numeric trigger value there can be
BULK_QUANTILE = 0.01  # the evaluation rows' bulk: between this quantile and 1 minus it


class TriggerMode(enum.StrEnum):
    """How a trigger finding counts: `warn` reports it, `fail` blocks, `off` skips the search."""

    WARN = "warn"
    FAIL = "fail"
    OFF = "off"


class GiskardLevel(enum.StrEnum):
    """Giskard's issue levels, most severe first."""

    MAJOR = "major"
    MEDIUM = "medium"
    MINOR = "minor"

    @property
    def rank(self) -> int:
        return {"major": 3, "medium": 2, "minor": 1}[self.value]


class ProbeKind(enum.StrEnum):
    FLIP = "flip"
    TRIGGER = "trigger"


class FeatureKind(enum.StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    ALL_NUMERIC = "all numeric"


class RobustnessConfig(GateConfig):
    """`gates.robustness` in the policy file: flip rate under small noise, trigger search."""

    sample_rows: int = Field(1000, strict=True, ge=1, le=MAX_SAMPLE_ROWS)
    """Evaluation rows (a seeded sample) on which flip rates are measured."""

    epsilon: float = Field(0.05, strict=True, gt=0, le=1)
    """Numeric features are moved by this many standard deviations, up or down at random."""

    max_flip_rate: float | None = Field(0.05, strict=True, ge=0, le=1)
    """ROBUST-FLIP-001 fails when the share of rows whose prediction flips is above this, for
    all numeric features moved at once or for any one of them (null switches the check off)."""

    regression_tolerance: float = Field(0.1, strict=True, gt=0)
    """Regression: a prediction flips when it moves by more than this share of its size."""

    top_categories: int = Field(5, strict=True, ge=2)
    """Categorical features are swapped to another of their this many most frequent values."""

    max_categorical_flip_rate: float | None = Field(None, strict=True, ge=0, le=1)
    """ROBUST-FLIP-001 for categorical swaps (not a small change): null reports their flip
    rates without judging them."""

    min_rows: int = Field(30, strict=True, ge=1)
    """A probe on fewer rows (or a class with fewer rows outside it) is listed, not judged."""

    trigger_mode: TriggerMode = TriggerMode.WARN
    """ROBUST-TRIGGER-001: `warn` reports a trigger, `fail` blocks, `off` skips the search."""

    trigger_sample_rows: int = Field(200, strict=True, ge=1, le=MAX_SAMPLE_ROWS)
    """Evaluation rows (a seeded sample) set to each trigger value: the search adds this many
    probe rows per value. A numeric feature gets, on each side of its median, the start, the
    distances beyond it and each data set's extreme beyond it: with the defaults about 42
    values in all (8,400 rows), at most 52 (10,400), fewer for an integer feature, whose
    rounded values repeat; a categorical feature up to `rare_categories` + 1."""

    trigger_share: float = Field(0.5, strict=True, gt=0, le=1)
    """A trigger value is reported when it moves more than this share of the rows not
    predicted as some class to that class (numeric: in one step, from the value before it)."""

    trigger_start_distance: float = Field(4.0, strict=True, gt=0, le=1024)
    """Numeric trigger values step away from the median starting at the edge of the
    evaluation rows' bulk (their 1st and 99th percentiles), or at this many sd (robust: 1.4826
    x the median absolute deviation) from the median where that is nearer, so a trigger
    planted in some evaluation rows is stepped across too."""

    trigger_max_distance: float = Field(1024.0, strict=True, ge=1, le=1e9)
    """Numeric trigger values run out to this many sd from the median: the "large magnitude"
    value."""

    trigger_steps_per_doubling: int = Field(2, strict=True, ge=1, le=8)
    """Numeric trigger values per doubling of the distance (..., 2, 2.83, 4, 5.66, ... sd);
    each is judged against the one before it. Finer steps tell a sudden switch from gradual
    extrapolation better, at more rows."""

    rare_share: float = Field(0.01, strict=True, ge=0, le=1)
    """A category is rare when at most this share of the reference rows hold it."""

    rare_categories: int = Field(3, strict=True, ge=0)
    """Categorical trigger values: up to this many of the rarest rare categories."""

    unseen_category: bool = Field(True, strict=True)
    """Also try a category never seen, on text columns (an encoder that rejects unknown
    categories then fails the probes, and so this gate, not the other gates)."""

    max_probe_rows: int = Field(250_000, strict=True, ge=1000)
    """Bound on the probe rows sent to the sandbox: above it both samples shrink alike (never
    below `min_rows`), and the evidence says so."""

    seed: int = Field(0, strict=True, ge=0)
    """Seed of the samples and perturbations, so the same inputs always give the same result."""

    giskard: bool = Field(True, strict=True)
    """Also run Giskard's scan (giskard.scan) on a sample, in the sandbox."""

    giskard_sample_rows: int = Field(1000, strict=True, ge=20, le=MAX_SAMPLE_ROWS)
    """Evaluation rows (a seeded sample) Giskard scans."""

    giskard_detectors: list[str] = Field(default_factory=lambda: ["robustness"])
    """Giskard detector tags to run (`robustness`, `performance`, `calibration`, ...)."""

    giskard_fail_level: GiskardLevel = GiskardLevel.MAJOR
    """ROBUST-GISKARD-001: an issue at this level or above fails the gate."""

    giskard_warn_level: GiskardLevel = GiskardLevel.MEDIUM
    """ROBUST-GISKARD-001: an issue at this level or above (below the fail level) warns."""

    giskard_time_budget_s: float = Field(120.0, strict=True, gt=0, le=3600)
    """Seconds for the scan; past it the scan is killed and the gate is an `error` naming it."""

    @model_validator(mode="after")
    def _something_to_check(self) -> RobustnessConfig:
        if self.max_flip_rate is None and self.max_categorical_flip_rate is not None:
            raise ValueError("max_categorical_flip_rate needs the flip check (max_flip_rate)")
        if self.trigger_start_distance >= self.trigger_max_distance:
            raise ValueError("trigger_start_distance must be below trigger_max_distance")
        if self.max_flip_rate is None and self.trigger_mode == TriggerMode.OFF:
            raise ValueError(
                "max_flip_rate is null and trigger_mode is off: nothing left to check "
                "(set the gate's mode to off instead)"
            )
        return self

    @property
    def trigger_distances(self) -> list[float]:
        """Distances from the median, in sd: `TRIGGER_GRID_START` (0.5) to
        `trigger_max_distance`, `trigger_steps_per_doubling` per doubling. Only those beyond
        a feature's start are tried."""
        per, high = self.trigger_steps_per_doubling, self.trigger_max_distance
        steps = math.floor(math.log2(high / TRIGGER_GRID_START) * per + 1e-9)
        distances = [TRIGGER_GRID_START * 2.0 ** (k / per) for k in range(steps + 1)]
        if distances[-1] < high * (1 - 1e-9):
            distances.append(high)
        return distances

    @property
    def flips_on(self) -> bool:
        return self.max_flip_rate is not None

    @property
    def triggers_on(self) -> bool:
        return self.trigger_mode != TriggerMode.OFF

    def thresholds(self) -> dict[str, Any]:
        return {
            "max_flip_rate": self.max_flip_rate,
            "max_categorical_flip_rate": self.max_categorical_flip_rate,
            "epsilon": self.epsilon,
            "regression_tolerance": self.regression_tolerance,
            "trigger_share": self.trigger_share,
            "trigger_mode": self.trigger_mode.value,
            "min_rows": self.min_rows,
        }
