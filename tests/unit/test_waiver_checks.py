"""A waiver that would do nothing is refused with the reason, before anyone relies on it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from service.decision.rule_ids import known_rules
from service.errors import BadRequest
from service.policy import ModelPolicy, WaiverPolicy
from service.runs.waiver_checks import WaiverRequest, check_waiver
from service.store.tables import GateResultRow, GateRun

ROOT = Path(__file__).resolve().parents[2]


def _run_with(*findings: tuple[str, str]) -> GateRun:
    run = GateRun(model_name="credit", model_version=3, trigger="manual", policy_digest="p")
    run.results.append(
        GateResultRow(
            gate="security", status="fail", message="",
            findings=[{"rule_id": r, "severity": s, "message": "m"} for r, s in findings],
        )
    )  # fmt: skip
    return run


def _check(request: WaiverRequest, run: GateRun | None = None, **policy: object) -> None:
    config = ModelPolicy(waivers=WaiverPolicy(**policy))  # type: ignore[arg-type]
    check_waiver(request, model_exists=True, policy=config, latest_run=run)


def test_a_misspelt_rule_id_is_refused_with_the_likely_one() -> None:
    with pytest.raises(BadRequest, match=r"SEC-PICKL-001 is not a rule.*did you mean SEC-PICKLE"):
        _check(WaiverRequest("credit", 3, None, "SEC-PICKL-001"))


def test_a_model_mlflow_does_not_have_is_refused() -> None:
    with pytest.raises(BadRequest, match="no registered model 'credt'"):
        check_waiver(
            WaiverRequest("credt", 3, "fairness", None),
            model_exists=False, policy=ModelPolicy(), latest_run=None,
        )  # fmt: skip


def test_a_waiver_on_a_critical_finding_is_refused_unless_the_entry_allows_it() -> None:
    run = _run_with(("SEC-FILE-001", "CRITICAL"), ("SEC-SECRET-001", "HIGH"))
    with pytest.raises(BadRequest, match="SEC-FILE-001 is a CRITICAL security finding"):
        _check(WaiverRequest("credit", 3, "security", None), run)
    with pytest.raises(BadRequest, match="SEC-FILE-001 is a CRITICAL security finding"):
        _check(WaiverRequest("credit", 3, None, "SEC-FILE-001"), run)
    with pytest.raises(BadRequest, match=r"SEC-PICKLE-001 .* is a CRITICAL security rule"):
        _check(WaiverRequest("credit", 3, None, "SEC-PICKLE-001"))
    _check(WaiverRequest("credit", 3, None, "SEC-SECRET-001"), run)  # HIGH: fine
    _check(WaiverRequest("credit", 3, "fairness", None), run)  # another gate: fine
    _check(WaiverRequest("credit", 3, "security", None), run, allow_critical=True)


def test_every_rule_a_gate_or_the_decision_reports_is_in_the_one_list() -> None:
    known = set(known_rules())
    constants = set()
    for path in (ROOT / "gates").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                if any(n.startswith("RULE_") for n in names) and isinstance(node.value.value, str):
                    constants.add(node.value.value)
    rego = (ROOT / "service" / "decision" / "default.rego").read_text()
    data_rules = set(re.findall(r'"(DATA-[A-Z-]+)"', rego))
    assert constants and data_rules
    assert constants <= known, constants - known
    assert data_rules <= known, data_rules - known
