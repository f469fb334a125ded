"""The run verdict: fail beats error beats pass; errors of enforced gates fail closed."""

from __future__ import annotations

from gates.base import GateMode, GateResult, Severity, Status
from gates.drift import DriftConfig
from gates.security.config import SecurityConfig
from service.decision.verdict import decide
from service.policy import ModelPolicy
from service.store.tables import RunStatus


def _result(gate: str, status: str) -> GateResult:
    return GateResult(gate=gate, status=Status(status), message=f"{gate} said {status}")


def test_all_pass_is_passed() -> None:
    decision = decide([_result("security", "pass")], ModelPolicy())
    assert decision.status == RunStatus.PASSED and decision.deny == []


def test_enforced_failure_is_failed_with_reason() -> None:
    decision = decide([_result("security", "fail")], ModelPolicy())
    assert decision.status == "failed"
    assert decision.deny == ["security: security said fail"]


def test_enforced_error_blocks() -> None:
    assert decide([_result("security", "error")], ModelPolicy()).status == "error"


def test_failure_wins_over_error() -> None:
    policy = ModelPolicy(drift=DriftConfig(mode=GateMode.ENFORCE))
    decision = decide([_result("security", "error"), _result("drift", "fail")], policy)
    assert decision.status == "failed"


def test_warn_mode_failure_only_warns() -> None:
    policy = ModelPolicy(drift=DriftConfig(mode=GateMode.WARN))
    decision = decide([_result("security", "pass"), _result("drift", "fail")], policy)
    assert decision.status == "passed"
    assert decision.warn == ["drift: drift said fail"]


def test_no_gate_ran_is_never_a_pass() -> None:
    assert decide([], ModelPolicy()).status == "error"


def test_policy_digest_changes_with_policy() -> None:
    stricter = ModelPolicy(security=SecurityConfig(fail_at=Severity.MEDIUM))
    assert ModelPolicy().digest != stricter.digest
    assert ModelPolicy().digest == ModelPolicy().digest


def test_a_gate_in_warn_mode_that_errors_does_not_block() -> None:
    policy = ModelPolicy(drift=DriftConfig(mode=GateMode.WARN))
    decision = decide([_result("security", "pass"), _result("drift", "error")], policy)
    assert decision.status == RunStatus.PASSED
    assert decision.warn == ["drift: drift said error"]
