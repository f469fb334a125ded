"""Giskard's issues as robustness findings: major fails, medium warns, a broken scan errors."""

from __future__ import annotations

from gates.base import GateResult, Severity, Status
from gates.robustness import (
    GiskardIssue,
    GiskardLevel,
    GiskardScan,
    RobustnessConfig,
    judge_giskard,
    merge,
)


def _issue(level: GiskardLevel) -> GiskardIssue:
    return GiskardIssue(
        level=level, detector="RobustnessDetector", group="Robustness", features=("income",),
        metric="Fail rate", deviation="0.12", description="Adding typos changes predictions",
    )  # fmt: skip


def test_levels_map_to_verdicts_and_findings_name_the_feature() -> None:
    config = RobustnessConfig()
    assert judge_giskard(GiskardScan(), config) == (Status.PASS, [])
    status, findings = judge_giskard(GiskardScan(issues=(_issue(GiskardLevel.MEDIUM),)), config)
    assert status == Status.WARN and findings[0].severity == Severity.MEDIUM
    status, findings = judge_giskard(
        GiskardScan(issues=(_issue(GiskardLevel.MINOR), _issue(GiskardLevel.MAJOR))), config
    )
    assert status == Status.FAIL and len(findings) == 1
    assert findings[0].rule_id == "ROBUST-GISKARD-001"
    # the message is ours; what the scan's process wrote stays in the evidence
    assert "income" not in findings[0].message and findings[0].evidence["features"] == ["income"]


def test_the_levels_are_configurable() -> None:
    lenient = RobustnessConfig(giskard_fail_level=GiskardLevel.MAJOR, giskard_warn_level="major")
    assert judge_giskard(GiskardScan(issues=(_issue(GiskardLevel.MEDIUM),)), lenient)[0] == (
        Status.PASS
    )


def test_a_scan_that_did_not_finish_makes_the_gate_an_error_keeping_what_finished() -> None:
    flips = GateResult(gate="robustness", status=Status.PASS, message="flip rate 1.0%")
    scan = GiskardScan(error="the Giskard scan did not finish within its budget of 120 s")
    merged = merge(flips, scan, RobustnessConfig())
    assert merged.status == Status.ERROR
    assert "flip rate 1.0%" in merged.message and "120 s" in merged.message
    assert merged.evidence["giskard"]["error"] == scan.error


def test_the_worse_verdict_wins() -> None:
    failed = GateResult(gate="robustness", status=Status.FAIL, message="flips")
    assert merge(failed, GiskardScan(), RobustnessConfig()).status == Status.FAIL
    passed = GateResult(gate="robustness", status=Status.PASS, message="ok")
    major = GiskardScan(issues=(_issue(GiskardLevel.MAJOR),))
    merged = merge(passed, major, RobustnessConfig())
    assert merged.status == Status.FAIL and merged.findings[-1].rule_id == "ROBUST-GISKARD-001"
