"""Formatters over one GateResult: text for people, JSON for scripts, SARIF for code hosts.

Separate functions over the same result, so every format says the same thing.
"""

from __future__ import annotations

import json
import re
from typing import Any

from gates.base import Finding, GateResult, Severity
from gates.security import rules
from gates.security.rules import Rule

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"

SARIF_LEVEL = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
}


def to_json(result: GateResult, target: str) -> str:
    body = {
        "target": target,
        "status": result.status.value,
        "message": result.message,
        "findings": [f.to_dict() for f in result.findings],
        "coverage": result.evidence.get("coverage", []),
        "counts": result.evidence.get("counts", {}),
        "duration_s": round(result.duration_s, 3),
    }
    return json.dumps(body, indent=2, default=str)


def to_text(result: GateResult, target: str) -> str:
    lines = [f"{target}: {result.status.value.upper()} - {result.message}"]
    for f in result.findings:
        where = _where(f)
        lines.append(f"  {f.severity.value:<8} {f.rule_id:<16} {where}: {f.message}")
    covered = result.evidence.get("coverage", [])
    lines.append(f"  ({len(covered)} item(s) scanned in {result.duration_s:.2f}s)")
    return "\n".join(lines)


def to_sarif(result: GateResult, target: str) -> str:
    """SARIF 2.1.0: one run, the catalogue entry of every rule it reports in
    `tool.driver.rules`, each result pointing at its rule by `ruleId` and `ruleIndex`."""
    reported = list(dict.fromkeys(f.rule_id for f in result.findings))
    index = {rule_id: i for i, rule_id in enumerate(reported)}
    results = [_sarif_result(f, target, index[f.rule_id]) for f in result.findings]
    sarif = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "mlflow-gatekeeper",
                        "rules": [_sarif_rule(rules.get(rule_id)) for rule_id in reported],
                    }
                },
                "results": results,
                "properties": {"status": result.status.value, "target": target},
            }
        ],
    }
    return json.dumps(sarif, indent=2, default=str)


def _sarif_rule(rule: Rule) -> dict[str, Any]:
    """A SARIF reportingDescriptor made from the catalogue entry."""
    return {
        "id": rule.id,
        "name": _pascal_case(rule.title),
        "shortDescription": {"text": rule.title},
        "fullDescription": {"text": rule.help},
        "help": {
            "text": f"{rule.help}\n\nRemediation: {rule.remediation}",
            "markdown": f"{rule.help}\n\n**Remediation:** {rule.remediation}",
        },
        "defaultConfiguration": {"level": SARIF_LEVEL[rule.severity]},
        "properties": {"severity": rule.severity.value},
    }


def _sarif_result(f: Finding, target: str, rule_index: int) -> dict[str, Any]:
    location: dict[str, Any] = {"physicalLocation": {"artifactLocation": {"uri": f.file or target}}}
    if f.member:
        location["logicalLocations"] = [{"fullyQualifiedName": f.member, "kind": "member"}]
    return {
        "ruleId": f.rule_id,
        "ruleIndex": rule_index,
        "level": SARIF_LEVEL[f.severity],
        "message": {"text": f.message},
        "locations": [location],
        "properties": {
            "severity": f.severity.value,
            "confidence": f.confidence,
            "evidence": dict(f.evidence),
        },
    }


def _pascal_case(title: str) -> str:
    return "".join(word[:1].upper() + word[1:] for word in re.findall(r"[A-Za-z0-9]+", title))


def _where(f: Finding) -> str:
    return (f.file or "?") + (f"!/{f.member}" if f.member else "")


FORMATTERS = {"text": to_text, "json": to_json, "sarif": to_sarif}
