"""Judging what Giskard's scan reported, as ROBUST-GISKARD-001 findings.

The scan runs in the sandbox (it calls the model), so its issues arrive as plain records the
service has already bounded and typed (service/sandbox/runner.py); this module only turns
them into findings by level: `giskard_fail_level` and above fail, `giskard_warn_level` warns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gates.base import Finding, GateResult, Severity, Status
from gates.robustness.config import RULE_GISKARD, GiskardLevel, RobustnessConfig


@dataclass(frozen=True)
class GiskardIssue:
    level: GiskardLevel
    detector: str
    group: str
    features: tuple[str, ...]
    metric: str
    deviation: str
    description: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "detector": self.detector,
            "group": self.group,
            "features": list(self.features),
            "metric": self.metric,
            "deviation": self.deviation,
            "description": self.description,
        }


@dataclass(frozen=True)
class GiskardScan:
    """What the sandbox's scan returned (or why it did not)."""

    issues: tuple[GiskardIssue, ...] = ()
    seconds: float = 0.0
    error: str | None = None  # set when the scan failed or ran out of time: the gate errors
    html: str | None = None  # Giskard's own report page, made in the sandbox


_SEVERITY = {GiskardLevel.MAJOR: Severity.HIGH, GiskardLevel.MEDIUM: Severity.MEDIUM,
             GiskardLevel.MINOR: Severity.LOW}  # fmt: skip
_ORDER = {Status.PASS: 0, Status.WARN: 1, Status.FAIL: 2, Status.ERROR: 3}


def judge_giskard(scan: GiskardScan, config: RobustnessConfig) -> tuple[Status, list[Finding]]:
    if scan.error is not None:
        return Status.ERROR, []
    findings: list[Finding] = []
    status = Status.PASS
    for issue in scan.issues:
        if issue.level.rank >= config.giskard_fail_level.rank:
            verdict = Status.FAIL
        elif issue.level.rank >= config.giskard_warn_level.rank:
            verdict = Status.WARN
        else:
            continue
        status = verdict if _ORDER[verdict] > _ORDER[status] else status
        # our words only: the fields came from the process the model ran in (see evidence)
        message = (
            f"Giskard's scan reported a {issue.level.value} issue on "
            f"{len(issue.features)} feature(s) (details in the evidence)"
        )
        findings.append(
            Finding(RULE_GISKARD, _SEVERITY[issue.level], message, evidence=issue.as_dict())
        )
    return status, findings


def merge(result: GateResult, scan: GiskardScan, config: RobustnessConfig) -> GateResult:
    """The robustness result with Giskard's verdict folded in: the worse status wins."""
    status, findings = judge_giskard(scan, config)
    evidence = {
        **result.evidence,
        "giskard": {
            "issues": [i.as_dict() for i in scan.issues],
            "seconds": round(scan.seconds, 2),
            "error": scan.error,
            "detectors": list(config.giskard_detectors),
            "status": status.value,
            "report": scan.html is not None,
        },
    }
    worst = status if _ORDER.get(status, 0) > _ORDER.get(result.status, 0) else result.status
    message = result.message
    if scan.error is not None:
        message = f"{message}; Giskard scan: {scan.error}" if message else scan.error
    elif findings:
        extra = f"Giskard: {len(findings)} issue(s) at or above {config.giskard_warn_level}"
        message = f"{message}; {extra}" if message else extra
    return GateResult(
        gate=result.gate,
        status=worst,
        findings=(*result.findings, *findings),
        metrics={**result.metrics, "giskard_issues": float(len(findings))},
        thresholds=result.thresholds,
        evidence=evidence,
        message=message,
        duration_s=result.duration_s + scan.seconds,
        diagnostics=result.diagnostics,
        report_html=scan.html,
    )
