"""The contract every gate honours: a pure function of a GateContext returning a GateResult.

Gates never import `service`, SQLAlchemy, FastAPI, httpx or the MLflow client, so each one is
testable in milliseconds and usable from the CLI without a server.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class Status(enum.StrEnum):
    """Outcome of one gate. `error` blocks exactly like `fail`: the gatekeeper fails closed."""

    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    ERROR = "error"
    SKIPPED = "skipped"


class Severity(enum.StrEnum):
    CRITICAL = "CRITICAL"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"

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


Gate = Callable[[GateContext, Mapping[str, Any]], GateResult]
