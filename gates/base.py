"""The contract every gate honours: a pure function of a GateContext returning a GateResult.

Gates never import `service`, SQLAlchemy, FastAPI, httpx or the MLflow client, so each one is
testable in milliseconds and usable from the CLI without a server. Each gate owns one pydantic
model of its configuration (a `GateConfig`), with its defaults; the service's policy file
composes them and hands each gate its typed object.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict


class Status(enum.StrEnum):
    """Outcome of one gate. `error` blocks exactly like `fail`: the gatekeeper fails closed."""

    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    ERROR = "error"
    SKIPPED = "skipped"
    # the policy gives this model no configuration for the gate (or `mode: off`): listed on
    # every run so that a pass says which gates it covers
    NOT_CONFIGURED = "not_configured"


class GateMode(enum.StrEnum):
    """How a gate's outcome counts: `enforce` blocks, `warn` reports, `off` does not run."""

    ENFORCE = "enforce"
    WARN = "warn"
    OFF = "off"


class Severity(enum.StrEnum):
    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"

    @classmethod
    def _missing_(cls, value: object) -> Severity | None:
        # policy files and the CLI accept `high` as well as `HIGH`
        if isinstance(value, str) and value.upper() in cls.__members__:
            return cls[value.upper()]
        return None

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]

    def at_least(self, other: Severity) -> bool:
        return self.rank >= other.rank


_SEVERITY_RANK = {Severity.LOW: 1, Severity.MEDIUM: 2, Severity.HIGH: 3, Severity.CRITICAL: 4}


@dataclass(frozen=True)
class Finding:
    """One thing a gate found, with enough evidence for a person to verify it."""

    rule_id: str
    severity: Severity
    message: str
    file: str | None = None
    member: str | None = None
    confidence: str = "high"
    evidence: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, stored: Mapping[str, Any]) -> Finding:
        """A finding read back from the JSON the worker stored."""
        return cls(
            rule_id=str(stored.get("rule_id", "")),
            severity=Severity(str(stored.get("severity", Severity.LOW.value))),
            message=str(stored.get("message", "")),
            file=stored.get("file"),
            member=stored.get("member"),
            confidence=str(stored.get("confidence", "high")),
            evidence=dict(stored.get("evidence") or {}),
        )

    @property
    def where(self) -> str:
        """`file!/member` (or the file alone, or empty)."""
        if not self.file:
            return ""
        return self.file + (f"!/{self.member}" if self.member else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "severity": self.severity.value,
            "confidence": self.confidence,
            "message": self.message,
            "file": self.file,
            "member": self.member,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True)
class GateResult:
    gate: str
    status: Status
    findings: tuple[Finding, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    thresholds: Mapping[str, Any] = field(default_factory=dict)
    evidence: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""
    duration_s: float = 0.0
    # what a hostile model wrote (stderr, exception text): admin-only, never published
    diagnostics: Mapping[str, Any] | None = None
    # an HTML report made where the model ran (Giskard's): kept apart, served isolated
    report_html: str | None = None

    @property
    def blocks(self) -> bool:
        """`fail` and `error` block an enforced gate alike: the gatekeeper fails closed."""
        return self.status in (Status.FAIL, Status.ERROR)

    def to_dict(self) -> dict[str, Any]:
        return {
            "gate": self.gate,
            "status": self.status.value,
            "message": self.message,
            "findings": [f.to_dict() for f in self.findings],
            "metrics": dict(self.metrics),
            "thresholds": dict(self.thresholds),
            "evidence": dict(self.evidence),
            "duration_s": round(self.duration_s, 4),
        }


@dataclass(frozen=True)
class GateContext:
    """Everything a gate may look at. Built by the service (or the CLI) before gates run."""

    artifact_dir: Path
    model_name: str = ""
    model_version: str = ""
    mlmodel: Mapping[str, Any] = field(default_factory=dict)
    datasets: Mapping[str, Any] = field(default_factory=dict)
    predict: Callable[[Any], Any] | None = None
    # the policy's data classification (`data.columns`: column -> pii | secret | public)
    column_classes: Mapping[str, str] = field(default_factory=dict)


class GateConfig(BaseModel):
    """Base of every gate's configuration: its entry under `gates:` in the policy file."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    mode: GateMode = GateMode.ENFORCE
    """`enforce` blocks the version, `warn` only reports, `off` does not run the gate."""


ConfigT_contra = TypeVar("ConfigT_contra", bound=GateConfig, contravariant=True)


class Gate(Protocol[ConfigT_contra]):
    """A gate: a pure function of the context and its own typed configuration."""

    def __call__(self, ctx: GateContext, config: ConfigT_contra, /) -> GateResult: ...
