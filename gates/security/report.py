"""Formatters over one GateResult: text for people, JSON for scripts, SARIF for code hosts.

Separate functions over the same result, so every format says the same thing.
"""

from __future__ import annotations

import json
from typing import Any

from gates.base import Finding, GateResult, Severity

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
    rules: dict[str, dict[str, Any]] = {}
    results = []
    for f in result.findings:
        rules.setdefault(
            f.rule_id,
            {"id": f.rule_id, "shortDescription": {"text": f.rule_id}},
        )
        location: dict[str, Any] = {
            "physicalLocation": {"artifactLocation": {"uri": f.file or target}}
        }
        if f.member:
            location["logicalLocations"] = [{"fullyQualifiedName": f.member, "kind": "member"}]
        results.append(
            {
                "ruleId": f.rule_id,
                "level": SARIF_LEVEL[f.severity],
                "message": {"text": f.message},
                "locations": [location],
                "properties": {
                    "severity": f.severity.value,
                    "confidence": f.confidence,
                    "evidence": dict(f.evidence),
                },
            }
        )
    sarif = {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "mlflow-gatekeeper",
                        "rules": list(rules.values()),
                    }
                },
                "results": results,
                "properties": {"status": result.status.value, "target": target},
            }
        ],
    }
    return json.dumps(sarif, indent=2, default=str)


def _where(f: Finding) -> str:
    return (f.file or "?") + (f"!/{f.member}" if f.member else "")


FORMATTERS = {"text": to_text, "json": to_json, "sarif": to_sarif}
