"""Security gate: is the artifact safe to load, and is the data free of secrets and PII?

Runs first and never loads, imports or executes what it inspects. Engines:

- the content walker (gates/security/walker.py) with the symbolic pickle machine
  (pickle_vm.py, judged against the allowlist in callables.py) and the format parsers
  (formats/: safetensors, numpy, skops, Keras, TensorFlow SavedModel, ONNX);
- MLflow model checks (mlflow_format.py: loader modules, shipped code, paths, bandit),
  transformers remote code (formats/transformers_code.py: `auto_map`, `custom_pipelines`),
  every other `.py` file of the artifact (python_files.py), each file analysed by bandit once,
  and requirement files (requirements.py: index overrides, VCS/file URLs, typosquats, known-
  vulnerable pins);
- secrets (secrets.py, detect-secrets offline) in text files, strings of binaries and string
  columns of the logged datasets; PII (pii.py, presidio pattern recognizers) in the datasets;
  both also in the tables shipped inside the artifact (artifact_tables.py: input examples,
  csv, parquet, jsonl), under the same column rules;
- modelscan, kept as a second opinion: its findings count, its gaps do not.

Verdict: a finding at or above `fail_at` (default HIGH) fails the gate. Code that runs at load
time (pickled functions, `code/`, custom loader modules, remote code, shipped `.py` files)
is HIGH unless the policy sets
`allow_code: true` for the model, which lowers those findings to LOW. An artifact with
nothing to scan is an error, never a pass.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from gates.base import Finding, GateContext, GateResult, Severity, Status
from gates.mlmodel import read_mlmodel
from gates.security import pii, requirements, rules
from gates.security import secrets as secret_scan
from gates.security.artifact_tables import artifact_tables
from gates.security.callables import CallablePolicy
from gates.security.common import Limits, Location, ReviewedCode
from gates.security.config import SecurityConfig
from gates.security.formats.transformers_code import check_auto_map
from gates.security.mlflow_format import check_mlflow_model
from gates.security.modelscan_engine import scan_with_modelscan
from gates.security.python_files import check_python_files
from gates.security.walker import Walker

GATE_NAME = "security"
# Findings about code that runs at load time: `allow_code: true` lowers them to LOW.
CODE_RULES = frozenset(
    r.id
    for r in (
        rules.PICKLE_EMBEDDED_CODE,
        rules.MLFLOW_LOAD_TIME_CODE,
        rules.MLFLOW_FOREIGN_MODULE,
        rules.REMOTE_CODE,
        rules.CODE_LOOSE,
    )
)


def check(ctx: GateContext, config: SecurityConfig) -> GateResult:
    started = time.perf_counter()
    fail_at = config.fail_at
    root = ctx.artifact_dir
    if not root.exists():
        return GateResult(GATE_NAME, Status.ERROR, message=f"{root} does not exist")
    limits = Limits(time_budget_s=config.time_budget_s)
    allow_code = config.allow_code
    policy = CallablePolicy.from_config(config.allow_callables, allow_code=allow_code)
    walk = Walker(root, limits, policy).walk()
    findings = list(walk.findings)
    evidence: dict[str, Any] = {"coverage": walk.coverage, "code_objects": walk.code_objects}

    reviewed = ReviewedCode()  # each .py file reported and analysed by one engine only
    if root.is_dir() and (root / "MLmodel").is_file():
        mlmodel = dict(ctx.mlmodel) or read_mlmodel(root)
        findings += check_mlflow_model(root, mlmodel, reviewed=reviewed)
        findings += requirements.check_requirements(root)
    findings += check_auto_map(root, reviewed)
    findings += check_python_files(root, reviewed)
    if config.modelscan:
        findings += _modelscan(root, evidence)
    findings += _data_findings(ctx, config, evidence)
    findings += _artifact_table_findings(ctx, config, evidence)

    findings = _apply_code_policy(findings, allow_code=allow_code)
    # most severe first; at equal severity our own engines before modelscan's second opinion
    findings.sort(
        key=lambda f: (
            -f.severity.rank,
            f.rule_id == rules.MODELSCAN_UNSAFE.id,
            f.file or "",
            f.member or "",
            f.rule_id,
        )
    )
    blocking = [f for f in findings if f.severity.at_least(fail_at)]
    evidence["counts"] = {s.value: sum(f.severity == s for f in findings) for s in Severity}
    if blocking:
        status = Status.FAIL
        worst = blocking[0]
        where = worst.file + (f"!/{worst.member}" if worst.member else "") if worst.file else ""
        message = f"{len(blocking)} finding(s) at or above {fail_at}: {worst.message} ({where})"
    elif not walk.coverage and not ctx.datasets:
        status = Status.ERROR
        message = "nothing in the artifact could be scanned; refusing to call it safe"
    else:
        status = Status.PASS
        message = f"{len(walk.coverage)} item(s) scanned, no finding at or above {fail_at}"
    return GateResult(
        gate=GATE_NAME,
        status=status,
        findings=tuple(findings),
        thresholds={"fail_at": fail_at.value, "allow_code": allow_code},
        evidence=evidence,
        message=message,
        duration_s=time.perf_counter() - started,
    )


def scan_path(path: Path, config: SecurityConfig | None = None) -> GateResult:
    """The gate on a local file or directory, as `gatekeeper scan` runs it."""
    return check(GateContext(artifact_dir=path), config or SecurityConfig())


def _modelscan(root: Path, evidence: dict[str, Any]) -> list[Finding]:
    try:
        outcome = scan_with_modelscan(root)
    except Exception as exc:  # a crashing second opinion is recorded, our engine decides
        evidence["modelscan"] = {"error": repr(exc)}
        return []
    evidence["modelscan"] = {
        "version": outcome.version,
        "scanned": outcome.scanned,
        "errors": outcome.errors,
    }
    return outcome.findings


def _data_findings(
    ctx: GateContext, config: SecurityConfig, evidence: dict[str, Any]
) -> list[Finding]:
    findings: list[Finding] = []
    columns = dict(ctx.column_classes)
    threshold = config.pii_threshold
    pii_evidence: dict[str, Any] = {}
    for name, frame in ctx.datasets.items():
        where = Location(f"dataset:{name}")
        findings += secret_scan.scan_dataframe(frame, where)
        found, detail = pii.scan_dataframe_pii(
            frame, dataset=name, column_classes=columns, threshold=threshold
        )
        findings += found
        pii_evidence[name] = detail
    if pii_evidence:
        evidence["pii"] = pii_evidence
    return findings


def _artifact_table_findings(
    ctx: GateContext, config: SecurityConfig, evidence: dict[str, Any]
) -> list[Finding]:
    """Rows shipped in the artifact (input examples, csv, parquet, jsonl) judged like data."""
    findings: list[Finding] = []
    root = ctx.artifact_dir
    columns = dict(ctx.column_classes)
    threshold = config.pii_threshold
    tables: dict[str, Any] = {}
    for table in artifact_tables(root):
        if table.frame is None:
            tables[table.path] = {"parsed": False, "error": table.error}
            continue
        where = Location(table.path)
        findings += secret_scan.scan_dataframe(table.frame, where)
        found, detail = pii.scan_dataframe_pii(
            table.frame,
            dataset=table.path,
            column_classes=columns,
            threshold=threshold,
            where=where,
            kind="artifact file",
        )
        findings += found
        tables[table.path] = {"parsed": True, "rows": len(table.frame), "pii": detail["columns"]}
    if tables:
        evidence["artifact_tables"] = tables
    return findings


def _apply_code_policy(findings: list[Finding], *, allow_code: bool) -> list[Finding]:
    if not allow_code:
        return findings
    lowered = []
    for item in findings:
        is_code = item.rule_id in CODE_RULES or str(item.evidence.get("callable", "")).startswith(
            "cloudpickle."
        )
        if is_code:
            item = dataclasses.replace(
                item,
                severity=Severity.LOW,
                evidence={**item.evidence, "allowed_by_policy": "allow_code"},
            )
        lowered.append(item)
    return lowered
