"""The decision in Rego: the gatekeeper's own module, a policy's modules, waivers, errors.

Real regopy, real module files in tmp_path: what a policy author writes and sees."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from gates.base import Finding, GateMode, GateResult, Severity, Status
from gates.fairness import FairnessConfig
from service.decision.document import DecisionContext, WaiverRecord
from service.decision.verdict import decide, replay
from service.errors import ConfigError
from service.policy import ModelPolicy, load_policy_file, policy_for
from service.store.tables import RunStatus

NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)
FAIR_FINDING = Finding("FAIR-DP-001", Severity.HIGH, "demographic parity ratio 0.42 < 0.8")


def _fairness(status: Status = Status.FAIL) -> GateResult:
    return GateResult(
        gate="fairness", status=status, message="demographic parity ratio 0.42 < 0.8",
        findings=(FAIR_FINDING,) if status == Status.FAIL else (),
    )  # fmt: skip


def _security(*findings: Finding) -> GateResult:
    status = Status.FAIL if findings else Status.PASS
    return GateResult(gate="security", status=status, message="security", findings=findings)


def _waiver(
    *, gate: str | None = None, rule_id: str | None = None, hours: float = 24, wid: str = "w-1"
) -> WaiverRecord:
    return WaiverRecord(
        id=wid, model="churn", version=3, artifact_digest=None, gate=gate, rule_id=rule_id,
        reason="fix in next release", expires_at=NOW + dt.timedelta(hours=hours),
        created_by="alice",
    )  # fmt: skip


def _context(*waivers: WaiverRecord, **kwargs: object) -> DecisionContext:
    return DecisionContext(model_name="churn", model_version=3, waivers=waivers, now=NOW, **kwargs)  # type: ignore[arg-type]


ENFORCED = ModelPolicy(fairness=FairnessConfig(sensitive_features=["gender"]))
WARNED = ModelPolicy(fairness=FairnessConfig(mode=GateMode.WARN, sensitive_features=["gender"]))


def test_a_fairness_failure_in_warn_mode_passes_with_a_warning_and_a_warn_tag() -> None:
    decision = decide([_security(), _fairness()], WARNED, _context())
    assert decision.status == RunStatus.PASSED
    assert decision.warn == ["fairness: demographic parity ratio 0.42 < 0.8"]
    assert decision.gates == {"security": "pass", "fairness": "warn"}


def test_a_gate_waiver_lets_the_failure_through_as_waived_until_it_expires() -> None:
    blocked = decide([_security(), _fairness()], ENFORCED, _context())
    assert blocked.status == RunStatus.FAILED
    waived = decide([_security(), _fairness()], ENFORCED, _context(_waiver(gate="fairness")))
    assert waived.status == RunStatus.WAIVED and waived.deny == []
    assert waived.gates["fairness"] == "waived"
    assert waived.waived == [
        {"gate": "fairness", "waivers": ["w-1"], "message": "demographic parity ratio 0.42 < 0.8"}
    ]
    assert any("waived (w-1)" in w for w in waived.warn)
    expired = decide(
        [_security(), _fairness()], ENFORCED, _context(_waiver(gate="fairness", hours=-1))
    )
    assert expired.status == RunStatus.FAILED


def test_a_rule_waiver_covers_a_gate_only_when_it_covers_every_finding_that_matters() -> None:
    waiver = _waiver(rule_id="FAIR-DP-001")
    assert decide([_fairness()], ENFORCED, _context(waiver)).status == RunStatus.WAIVED
    other = Finding("FAIR-EO-001", Severity.HIGH, "equalized odds difference 0.3 > 0.1")
    two = GateResult("fairness", Status.FAIL, (FAIR_FINDING, other), message="two failures")
    assert decide([two], ENFORCED, _context(waiver)).status == RunStatus.FAILED
    # a gate that errored has no finding to waive: only a waiver on the gate covers it
    errored = GateResult("fairness", Status.ERROR, message="evaluation data missing")
    assert decide([errored], ENFORCED, _context(waiver)).status == RunStatus.ERROR


def test_a_critical_dangerous_callable_is_never_waived_unless_the_policy_says_so() -> None:
    rce = Finding("SEC-PICKLE-001", Severity.CRITICAL, "os.system in model.pkl")
    waivers = (_waiver(gate="security"), _waiver(rule_id="SEC-PICKLE-001", wid="w-2"))
    decision = decide([_security(rce)], ModelPolicy(), _context(*waivers))
    assert decision.status == RunStatus.FAILED
    from service.policy import WaiverPolicy

    allowing = ModelPolicy(waivers=WaiverPolicy(allow_critical=True))
    assert decide([_security(rce)], allowing, _context(*waivers)).status == RunStatus.WAIVED


def test_data_classification_denies_secret_inputs_and_undeclared_pii_inputs() -> None:
    from service.policy import DataConfig

    policy = ModelPolicy(data=DataConfig(columns={"ssn": "secret", "email": "pii"}))
    training = {"name": "training", "source": "/data/t.csv", "columns": ["ssn", "age"]}
    context = _context(model_inputs=["age", "email", "ssn"], datasets=[training])
    decision = decide([_security()], policy, context)
    assert decision.status == RunStatus.FAILED
    assert any(d.startswith("DATA-SECRET-INPUT") and "'ssn'" in d for d in decision.deny)
    assert any(d.startswith("DATA-SECRET-TRAINING") for d in decision.deny)
    assert any(d.startswith("DATA-PII-INPUT") and "'email'" in d for d in decision.deny)
    allowed = ModelPolicy(
        data=DataConfig(columns={"ssn": "secret", "email": "pii"}, pii_inputs=["email"])
    )
    waivers = (
        _waiver(rule_id="DATA-SECRET-INPUT"), _waiver(rule_id="DATA-SECRET-TRAINING", wid="w-2")
    )  # fmt: skip
    clean = decide([_security()], allowed, _context(*waivers, model_inputs=["age", "email", "ssn"],
                                                    datasets=[training]))  # fmt: skip
    assert clean.deny == []


def _policy_dir(tmp_path: Path, module: str, extra: str = "") -> Path:
    (tmp_path / "rules.rego").write_text(module)
    policy = tmp_path / "policy.yaml"
    policy.write_text(f'models:\n  - match: "churn*"\n{extra}    rego:\n      - rules.rego\n')
    return policy


DESCRIPTION_RULE = """package gatekeeper

import rego.v1

deny contains msg if {
	input.model.description == ""
	msg := sprintf("model %s v%d has no description", [input.model.name, input.model.version])
}

deny contains "blocklisted model name" if input.model.name in {"churn-legacy"}
"""


def test_a_policy_module_adds_its_deny_messages(tmp_path: Path) -> None:
    policy = policy_for("churn", _policy_dir(tmp_path, DESCRIPTION_RULE))
    decision = decide([_security()], policy, _context())
    assert decision.status == RunStatus.FAILED
    assert decision.deny == ["model churn v3 has no description"]
    described = _context(description="Churn model, retrained weekly")
    assert decide([_security()], policy, described).status == RunStatus.PASSED
    legacy = DecisionContext(model_name="churn-legacy", description="x", now=NOW)
    assert decide([_security()], policy, legacy).deny == ["blocklisted model name"]


def test_the_policy_digest_covers_its_modules(tmp_path: Path) -> None:
    path = _policy_dir(tmp_path, DESCRIPTION_RULE)
    before = policy_for("churn", path).digest
    (tmp_path / "rules.rego").write_text(DESCRIPTION_RULE.replace("churn-legacy", "churn-old"))
    assert policy_for("churn", path).digest != before


@pytest.mark.parametrize(
    ("module", "extra", "where", "words"),
    [
        ("package gatekeeper\nimport rego.v1\n\ndeny contains x if {\n  x := \n}\n", "",
         "rules.rego:5:", "does not compile"),
        ("package other\nimport rego.v1\ndeny contains 1 if true\n", "",
         "rules.rego:1:", "package gatekeeper"),
        (DESCRIPTION_RULE, "    gates:\n      fairness: {demographic_parity_ratio: 2}\n",
         "policy.yaml:4:", "demographic_parity_ratio"),
        (DESCRIPTION_RULE, "    gates:\n      explainability: {mode: enforce}\n",
         "policy.yaml:4:", "explainability"),
        (DESCRIPTION_RULE, "    gates: [unclosed\n", "policy.yaml:", "not valid YAML"),
    ],
)  # fmt: skip
def test_a_bad_policy_is_refused_at_load_naming_file_and_line(
    tmp_path: Path, module: str, extra: str, where: str, words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_policy_file(_policy_dir(tmp_path, module, extra))
    assert where in str(caught.value) and words in str(caught.value)


RUNTIME_ERRORS = {
    "conflict": 'package gatekeeper\nimport rego.v1\n\nlevel := "a"\nlevel := "b" if {\n'
    '  input.model.version > 0\n}\n\ndeny contains "low" if level == "c"\n',
    "builtin": "package gatekeeper\nimport rego.v1\n\ndeny contains msg if {\n"
    '  n := to_number(input.model.tags.build)\n  msg := sprintf("%v", [n])\n}\n',
}


@pytest.mark.parametrize(("kind", "line"), [("conflict", 4), ("builtin", 4)])
def test_a_rule_that_fails_at_run_time_is_a_decision_error_never_a_pass(
    tmp_path: Path, kind: str, line: int
) -> None:
    """Both compile (serve starts); at run time they error. By default Rego would turn the
    built-in's error into "undefined" and drop the deny: strict built-in errors keep it."""
    path = _policy_dir(tmp_path, RUNTIME_ERRORS[kind])
    load_policy_file(path)
    context = _context(tags={"build": "nightly"})
    decision = decide([_security()], policy_for("churn", path), context)
    assert decision.status == RunStatus.ERROR
    assert f"rules.rego:{line}:" in decision.deny[0] and "run time" in decision.deny[0]


def test_replay_judges_a_stored_input_under_a_stricter_policy(tmp_path: Path) -> None:
    recorded = decide([_security(), _fairness()], WARNED, _context())
    assert recorded.status == RunStatus.PASSED and recorded.input is not None
    stricter = replay(recorded.input, ENFORCED)
    assert stricter.status == RunStatus.FAILED
    assert stricter.deny == ["fairness: demographic parity ratio 0.42 < 0.8"]
    with_module = replay(
        recorded.input, policy_for("churn", _policy_dir(tmp_path, DESCRIPTION_RULE))
    )
    assert "model churn v3 has no description" in with_module.deny


def test_gate_messages_with_quotes_and_backslashes_survive_the_rules() -> None:
    """regopy prints input strings raw unless they are given as a JSON term: a quote in a
    message (any registry user can write one into a tag or a description) must not break
    the decision."""
    odd = GateResult("fairness", Status.FAIL, (FAIR_FINDING,), message='ratio "0.4" \\ low')
    context = _context(description='say "hi" \\', tags={"team": 'a"b'})
    decision = decide([odd], ENFORCED, context)
    assert decision.status == RunStatus.FAILED
    assert decision.deny == ['fairness: ratio "0.4" \\ low']


def test_the_readme_example_module_compiles_and_does_what_it_says(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    module = readme.split("```rego\n", 1)[1].split("```", 1)[0]
    policy = policy_for("churn", _policy_dir(tmp_path, module))
    evaluation = {"name": "evaluation", "source": "runs:/x", "trainer_supplied": True}
    decision = decide([_security()], policy, _context(datasets=[evaluation]))
    assert decision.deny == ["churn v3 has no description"]
    assert decision.warn == ["trained on trainer-supplied evaluation data"]


def test_padding_findings_of_a_waived_rule_cannot_push_a_high_finding_out_of_the_rules_sight() -> (
    None
):
    """The attack: a narrow rule waiver (fixture keys) and 250 findings of that rule in front
    of a HIGH pickle finding. Every finding reaches the rules, so the run is not waived."""
    padding = [
        Finding("SEC-SECRET-001", Severity.HIGH, f"AWS key in fixtures/{i}.txt", "x" * 5000)
        for i in range(250)
    ]
    hidden = Finding("SEC-PICKLE-002", Severity.HIGH, "callable outside the allowlist")
    waiver = _waiver(rule_id="SEC-SECRET-001")
    decision = decide([_security(*padding, hidden)], ModelPolicy(), _context(waiver))
    assert decision.status == RunStatus.FAILED and decision.waived == []
    assert decision.input is not None
    seen = decision.input["gates"][0]["findings"]
    assert len(seen) == 251 and seen[-1]["rule_id"] == "SEC-PICKLE-002"
    assert all(len(f["where"]) <= 300 for f in seen)  # the text is cut, never the list
    only_padding = decide([_security(*padding)], ModelPolicy(), _context(waiver))
    assert only_padding.status == RunStatus.WAIVED
