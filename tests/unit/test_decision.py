"""The run verdict: fail beats error beats pass; errors of enforced gates fail closed."""

from __future__ import annotations

from gates.base import GateMode, GateResult, Severity, Status
from gates.drift import DriftConfig
from gates.security.config import SecurityConfig
from service.decision.verdict import decide, replay
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


def _unconfigured(gate: str) -> GateResult:
    return GateResult(gate, Status.NOT_CONFIGURED, message=f"not configured: no gates.{gate}")


def test_every_gate_the_policy_leaves_out_is_named_with_what_it_lacks() -> None:
    """Issue 21 (9): the default policy runs security only, and says what the rest lack."""
    assert ModelPolicy().not_configured() == {
        "performance": "no data.evaluation and no gates.performance",
        "fairness": "no data.evaluation with data.sensitive_features, and no gates.fairness",
        "robustness": "no gates.robustness",
        "drift": "no gates.drift",
    }
    off = ModelPolicy(security=SecurityConfig(mode=GateMode.OFF))
    assert off.not_configured()["security"] == "mode: off"


def test_unconfigured_gates_are_listed_but_are_not_a_run() -> None:
    """Four not-configured gates beside a pass still pass; with nothing that ran, nothing
    passes: listing a gate never counts as judging it."""
    listed = [_unconfigured(g) for g in ("performance", "fairness", "robustness", "drift")]
    decision = decide([_result("security", "pass"), *listed], ModelPolicy())
    assert decision.status == RunStatus.PASSED
    assert decision.gates["robustness"] == "not_configured"
    off = ModelPolicy(security=SecurityConfig(mode=GateMode.OFF))
    nothing_ran = decide([_unconfigured("security"), *listed], off)
    assert nothing_ran.status == RunStatus.ERROR
    assert nothing_ran.deny == ["no gate ran"]


def test_replay_under_a_policy_that_adds_a_gate_does_not_pass_it_unjudged() -> None:
    recorded = decide([_result("security", "pass"), _unconfigured("drift")], ModelPolicy())
    assert recorded.status == RunStatus.PASSED and recorded.input is not None
    with_drift = ModelPolicy(drift=DriftConfig(mode=GateMode.ENFORCE))
    replayed = replay(recorded.input, with_drift)
    assert replayed.status == RunStatus.ERROR
    assert replayed.deny == ["drift: not run in the recorded run (not configured then); re-run it"]
