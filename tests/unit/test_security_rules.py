"""The rule catalogue: every security finding is made from it, the README lists it as it is,
and no rule id is written anywhere in `gates/` but there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from gates.base import Severity
from gates.security import rules
from gates.security.common import Location

ROOT = Path(__file__).resolve().parents[2]
GATES = ROOT / "gates"
CATALOGUE_MODULE = GATES / "security" / "rules.py"

# Ids users, policies and waivers name: renaming or dropping one breaks them.
STABLE_IDS = {
    *(f"SEC-PICKLE-00{n}" for n in range(1, 8)),
    "SEC-LIMIT-001",
    *(f"SEC-FILE-00{n}" for n in range(1, 5)),
    *(f"SEC-SAFETENSORS-00{n}" for n in range(1, 5)),
    *(f"SEC-NPY-00{n}" for n in range(1, 4)),
    *(f"SEC-SKOPS-00{n}" for n in range(1, 5)),
    *(f"SEC-KERAS-00{n}" for n in range(1, 5)),
    *(f"SEC-TF-00{n}" for n in range(1, 4)),
    *(f"SEC-ONNX-00{n}" for n in range(1, 5)),
    *(f"SEC-MLFLOW-00{n}" for n in range(1, 7)),
    *(f"SEC-CODE-00{n}" for n in range(1, 4)),
    *(f"SEC-REQ-00{n}" for n in range(1, 6)),
    "SEC-SECRET-001",
    "SEC-SECRET-002",
    "SEC-PII-001",
    *(f"SEC-TEMPLATE-00{n}" for n in range(1, 5)),
    "SEC-GGUF-001",
    "SEC-AUTOMAP-001",
    "SEC-MODELSCAN-001",
}


def _rule_id_literals(path: Path) -> list[tuple[int, str]]:
    """(line, id) of every string constant in the module that is exactly a rule id."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and rules.RULE_ID.fullmatch(node.value)
    ]


def test_the_catalogue_keeps_every_published_rule_id() -> None:
    assert set(rules.CATALOGUE) == STABLE_IDS
    assert [r.id for r in rules.RULES] == list(rules.CATALOGUE)


def test_no_rule_id_is_written_outside_the_catalogue() -> None:
    written = [
        f"{path.relative_to(ROOT)}:{line}: {rule_id} (use rules.{_constant(rule_id)})"
        for path in sorted(GATES.rglob("*.py"))
        if path != CATALOGUE_MODULE
        for line, rule_id in _rule_id_literals(path)
    ]
    assert not written, f"rule ids written as strings instead of catalogue entries: {written}"


def test_security_findings_are_made_only_by_the_catalogue() -> None:
    """`Finding(...)` is built in one place, `Rule.finding`: no engine can invent an id."""
    builders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in sorted((GATES / "security").rglob("*.py"))
        if path != CATALOGUE_MODULE
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call)
        and (getattr(node.func, "id", None) or getattr(node.func, "attr", None)) == "Finding"
    ]
    assert not builders, builders


def test_every_rule_id_the_documentation_names_exists() -> None:
    named = {
        f"{path.relative_to(ROOT)}: {rule_id}"
        for path in GATES.rglob("*.py")
        for rule_id in re.findall(r"SEC-[A-Z0-9]+-\d{3}", path.read_text(encoding="utf-8"))
        if rule_id not in rules.CATALOGUE
    }
    assert not named, named


@pytest.mark.parametrize("rule", rules.RULES, ids=lambda r: r.id)
def test_every_rule_says_what_it_means_and_what_to_do(rule: rules.Rule) -> None:
    assert rule.title and rule.title != rule.id and not rule.title.endswith(".")
    assert len(rule.help) > len(rule.title) and rule.help.endswith("."), rule.help
    assert rule.remediation.endswith("."), rule.remediation
    for text in (rule.title, rule.help, rule.remediation):
        assert text == text.strip() and "  " not in text, text


def test_findings_take_the_rule_severity_unless_the_call_site_judges_it() -> None:
    where = Location("model.pkl", "data.pkl")
    made = rules.PICKLE_EMBEDDED_CODE.finding("code", where, {"names": ["f"]})
    assert (made.rule_id, made.severity, made.file, made.member) == (
        "SEC-PICKLE-005",
        Severity.HIGH,
        "model.pkl",
        "data.pkl",
    )
    assert made.evidence == {"names": ["f"]} and made.confidence == "high"
    raised = rules.PICKLE_EMBEDDED_CODE.finding("code", where, severity=Severity.CRITICAL)
    assert raised.severity == Severity.CRITICAL


def test_an_id_outside_the_catalogue_is_refused() -> None:
    assert rules.get("SEC-PICKLE-006") is rules.PICKLE_TRAILING_DATA
    with pytest.raises(rules.UnknownRule):
        rules.get("SEC-PICKLE-999")
    with pytest.raises(ValueError, match="SEC-<FAMILY>-<NNN>"):
        rules.Rule("PICKLE-1", Severity.HIGH, "t", "h.", "r.")


def test_readme_rule_list_is_the_catalogue() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert rules.readme_block(readme) == rules.to_markdown(), (
        "README.md's security rule list differs from gates/security/rules.py; "
        "run `python -m gates.security.rules --write README.md`"
    )
    for rule in rules.RULES:
        assert f"`{rule.id}` **{rule.severity.value}** {rule.title}." in readme


def test_the_readme_block_is_rewritten_between_its_markers() -> None:
    text = f"intro\n{rules.README_START}\nstale\n{rules.README_END}\noutro\n"
    updated = rules.with_readme_block(text)
    assert updated.startswith("intro\n") and updated.endswith(f"{rules.README_END}\noutro\n")
    assert "stale" not in updated
    assert rules.readme_block(updated) == rules.to_markdown()
    with pytest.raises(ValueError, match="no"):
        rules.readme_block("no markers here")


def _constant(rule_id: str) -> str:
    """The catalogue constant for `rule_id`, for the failure message."""
    return next(
        (n for n, v in vars(rules).items() if isinstance(v, rules.Rule) and v.id == rule_id),
        "<an entry to add to gates/security/rules.py>",
    )
