"""SARIF output, as a code host reads it: every rule the scan reports is described in
`tool.driver.rules` from the catalogue, and every result points at its rule."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from gates.base import GateResult, Status
from gates.security import rules, scan_path
from gates.security.config import SecurityConfig
from gates.security.report import SARIF_LEVEL, to_sarif
from tests.unit.format_helpers import OS_SYSTEM_PICKLE, benign_safetensors

_TEXT = {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}
_LEVEL = {"enum": ["none", "note", "warning", "error"]}
# The part of the SARIF 2.1.0 schema (OASIS, sarif-schema-2.1.0.json) that this output uses,
# with the constraints code hosts rely on; the full schema accepts everything this accepts.
SARIF_SUBSET_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "$schema": {"type": "string", "format": "uri"},
        "runs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["tool", "results"],
                "properties": {
                    "tool": {
                        "type": "object",
                        "required": ["driver"],
                        "properties": {
                            "driver": {
                                "type": "object",
                                "required": ["name", "rules"],
                                "properties": {
                                    "name": {"type": "string", "minLength": 1},
                                    "rules": {
                                        "type": "array",
                                        "uniqueItems": True,
                                        "items": {"$ref": "#/$defs/reportingDescriptor"},
                                    },
                                },
                            }
                        },
                    },
                    "results": {"type": "array", "items": {"$ref": "#/$defs/result"}},
                },
            },
        },
    },
    "$defs": {
        "reportingDescriptor": {
            "type": "object",
            "required": ["id", "shortDescription", "fullDescription", "help"],
            "properties": {
                "id": {"type": "string", "pattern": r"^SEC-[A-Z0-9]+-\d{3}$"},
                "name": {"type": "string"},
                "shortDescription": _TEXT,
                "fullDescription": _TEXT,
                "help": {
                    "type": "object",
                    "required": ["text"],
                    "properties": {"text": {"type": "string"}, "markdown": {"type": "string"}},
                },
                "defaultConfiguration": {
                    "type": "object",
                    "properties": {"level": _LEVEL},
                },
            },
        },
        "result": {
            "type": "object",
            "required": ["ruleId", "ruleIndex", "level", "message", "locations"],
            "properties": {
                "ruleId": {"type": "string"},
                "ruleIndex": {"type": "integer", "minimum": 0},
                "level": _LEVEL,
                "message": _TEXT,
                "locations": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["physicalLocation"],
                        "properties": {
                            "physicalLocation": {
                                "type": "object",
                                "required": ["artifactLocation"],
                                "properties": {
                                    "artifactLocation": {
                                        "type": "object",
                                        "required": ["uri"],
                                        "properties": {"uri": {"type": "string"}},
                                    }
                                },
                            },
                            "logicalLocations": {"type": "array"},
                        },
                    },
                },
            },
        },
    },
}


def _hostile_artifact(root: Path) -> Path:
    """One directory that trips several engines at once."""
    root.mkdir()
    (root / "model.pkl").write_bytes(OS_SYSTEM_PICKLE)  # SEC-PICKLE-001
    np.save(root / "labels.npy", np.array(["a", {"b": 1}], dtype=object))  # SEC-NPY-001
    (root / "weights.safetensors").write_bytes(benign_safetensors() + OS_SYSTEM_PICKLE)  # -004
    (root / "encoder.h5").write_bytes(b"\x00\x01 not hdf5 " * 8)  # SEC-FILE-003
    os.symlink("/etc/passwd", root / "passwd")  # SEC-FILE-001
    return root


def _sarif(tmp_path: Path) -> tuple[GateResult, dict[str, Any]]:
    result = scan_path(_hostile_artifact(tmp_path / "model"), SecurityConfig(modelscan=False))
    document = json.loads(to_sarif(result, "model"))
    jsonschema.Draft202012Validator(
        SARIF_SUBSET_SCHEMA, format_checker=jsonschema.FormatChecker()
    ).validate(document)
    return result, document


def test_sarif_describes_every_rule_it_reports(tmp_path: Path) -> None:
    result, document = _sarif(tmp_path)
    assert result.status == Status.FAIL
    [run] = document["runs"]
    descriptors = run["tool"]["driver"]["rules"]
    reported = {r["ruleId"] for r in run["results"]}
    assert {
        "SEC-PICKLE-001",
        "SEC-NPY-001",
        "SEC-SAFETENSORS-004",
        "SEC-FILE-003",
        "SEC-FILE-001",
    } <= reported
    # one descriptor per reported rule, in the order the results first name them
    assert [d["id"] for d in descriptors] == list(
        dict.fromkeys(r["ruleId"] for r in run["results"])
    )
    for descriptor in descriptors:
        rule = rules.get(descriptor["id"])
        assert descriptor["shortDescription"]["text"] == rule.title != rule.id
        assert descriptor["fullDescription"]["text"] == rule.help
        assert rule.help in descriptor["help"]["text"]
        assert rule.remediation in descriptor["help"]["text"]
        assert rule.remediation in descriptor["help"]["markdown"]
        assert descriptor["defaultConfiguration"]["level"] == SARIF_LEVEL[rule.severity]


def test_each_result_points_at_its_rule_and_keeps_its_own_level(tmp_path: Path) -> None:
    result, document = _sarif(tmp_path)
    [run] = document["runs"]
    descriptors = run["tool"]["driver"]["rules"]
    assert len(run["results"]) == len(result.findings)
    for item, finding in zip(run["results"], result.findings, strict=True):
        assert descriptors[item["ruleIndex"]]["id"] == item["ruleId"] == finding.rule_id
        assert item["level"] == SARIF_LEVEL[finding.severity]
        assert item["properties"]["severity"] == finding.severity.value
    link = next(i for i in run["results"] if i["ruleId"] == "SEC-FILE-001")
    assert link["properties"]["severity"] == "CRITICAL"  # outside the artifact: above default
    [tail] = [
        i["locations"][0]
        for i in run["results"]
        if i["ruleId"] == "SEC-PICKLE-001" and "logicalLocations" in i["locations"][0]
    ]
    assert tail["physicalLocation"]["artifactLocation"]["uri"] == "weights.safetensors"
    assert tail["logicalLocations"] == [{"fullyQualifiedName": "<tail>", "kind": "member"}]


def test_a_clean_scan_has_no_rules_and_no_results(tmp_path: Path) -> None:
    (tmp_path / "weights.safetensors").write_bytes(benign_safetensors())
    result = scan_path(tmp_path, SecurityConfig(modelscan=False))
    assert result.status == Status.PASS, result.message
    [run] = json.loads(to_sarif(result, str(tmp_path)))["runs"]
    assert run["tool"]["driver"]["rules"] == [] and run["results"] == []
