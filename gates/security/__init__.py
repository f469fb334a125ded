"""Security gate: is the artifact safe to load?

Runs before anything loads the model. Today its engine is modelscan, used as a library on the
downloaded artifact directory (SEC-MODELSCAN-*). Findings at or above the configured severity
(default HIGH) fail the gate. modelscan's own errors, and an artifact in which it scanned
nothing, are gate errors, never a pass: a scanner that could not look has not said "safe".
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from gates.base import GateContext, GateResult, Severity, Status
from gates.security.modelscan_engine import scan_with_modelscan

GATE_NAME = "security"


def check(ctx: GateContext, cfg: Mapping[str, Any]) -> GateResult:
    started = time.perf_counter()
    fail_at = Severity(str(cfg.get("fail_at", Severity.HIGH.value)).upper())
    outcome = scan_with_modelscan(ctx.artifact_dir)
    blocking = [f for f in outcome.findings if f.severity.at_least(fail_at)]
    evidence = {
        "engines": {"modelscan": outcome.version},
        "scanned_files": outcome.scanned,
        "skipped_files": outcome.skipped,
        "engine_errors": outcome.errors,
    }
    if outcome.errors:
        status = Status.ERROR
        message = f"modelscan could not scan the artifact: {outcome.errors[0]['message']}"
    elif not outcome.scanned:
        status = Status.ERROR
        message = "no file in the artifact could be scanned; refusing to call it safe"
    elif blocking:
        status = Status.FAIL
        worst = max(blocking, key=lambda f: f.severity.rank)
        message = f"{len(blocking)} finding(s) at or above {fail_at.value}: {worst.message}"
    else:
        status = Status.PASS
        message = f"{len(outcome.scanned)} file(s) scanned, no finding at or above {fail_at}"
    return GateResult(
        gate=GATE_NAME,
        status=status,
        findings=tuple(outcome.findings),
        thresholds={"fail_at": fail_at.value},
        evidence=evidence,
        message=message,
        duration_s=time.perf_counter() - started,
    )
