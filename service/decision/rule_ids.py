"""Every rule id a run's findings or its decision can carry, in one list.

What a waiver may name (`rule_id`), and what `gatekeeper` checks a waiver against: the
security gate's catalogue (gates/security/rules.py), the evaluation gates' rules (their
modules' `RULE_*` constants) and the decision's own data-classification rules (the `DATA-*`
ids `default.rego` denies with). A test keeps this list and those sources in step.
"""

from __future__ import annotations

from dataclasses import dataclass

from gates import drift, fairness, performance
from gates.base import Severity
from gates.robustness import config as robustness
from gates.security.rules import RULES


@dataclass(frozen=True)
class KnownRule:
    id: str
    gate: str  # the gate whose findings carry it, or "decision" for the DATA-* rules
    severity: Severity | None  # the catalogue's default (security rules only)
    title: str


# default.rego's data-classification denials (waivable by rule id like a finding)
DATA_RULES = {
    "DATA-SECRET-INPUT": "a column classified secret is a model input",
    "DATA-SECRET-TRAINING": "a column classified secret is in the training data",
    "DATA-PII-INPUT": "a column classified pii is a model input not in data.pii_inputs",
}

EVALUATION_RULES = {
    "performance": (performance.RULE_FLOOR, performance.RULE_REGRESSION),
    "fairness": (fairness.RULE_DP, fairness.RULE_EO, fairness.RULE_ERR, fairness.RULE_BASE),
    "robustness": (robustness.RULE_FLIP, robustness.RULE_TRIGGER, robustness.RULE_GISKARD),
    "drift": (
        drift.RULE_DATA, drift.RULE_COLUMN, drift.RULE_SCHEMA_REMOVED, drift.RULE_SCHEMA_ADDED,
        drift.RULE_SCHEMA_KIND, drift.RULE_SKEW,
    ),
}  # fmt: skip


def known_rules() -> dict[str, KnownRule]:
    found = {r.id: KnownRule(r.id, "security", r.severity, r.title) for r in RULES}
    for gate, ids in EVALUATION_RULES.items():
        found.update({i: KnownRule(i, gate, None, i) for i in ids})
    found.update({i: KnownRule(i, "decision", None, t) for i, t in DATA_RULES.items()})
    return found
