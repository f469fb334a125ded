"""modelscan as a library: turn its report into our findings, errors and coverage.

modelscan is blocklist-based and skips files it does not recognise; the gate above decides
what an empty or erroring scan means (fail closed). Skips other than "not a model format"
(a zip it could not open, a bad magic number, ...) are reported as errors, because they mean
modelscan tried to read a model file and gave up.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gates.base import Finding, Severity
from gates.security import rules
from gates.security.common import Location

# Skip categories that only say "this file is not a format modelscan knows" (MLmodel, yaml).
_BENIGN_SKIPS = {"SCAN_NOT_SUPPORTED"}


@dataclass
class ModelscanOutcome:
    version: str
    findings: list[Finding] = field(default_factory=list)
    scanned: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)


def scan_with_modelscan(path: Path) -> ModelscanOutcome:
    from modelscan import __version__
    from modelscan.modelscan import ModelScan
    from modelscan.settings import DEFAULT_SETTINGS

    # modelscan logs every file at INFO through the root logger; keep our logs for operators.
    logging.getLogger("modelscan").setLevel(logging.WARNING)
    report = ModelScan(settings=copy.deepcopy(DEFAULT_SETTINGS)).scan(str(path))
    outcome = ModelscanOutcome(version=__version__)
    summary = report.get("summary", {})
    outcome.scanned = list(summary.get("scanned", {}).get("scanned_files", []))
    for issue in report.get("issues", []):
        outcome.findings.append(_finding_from_issue(issue))
    for error in report.get("errors", []):
        outcome.errors.append(
            {
                "source": str(error.get("source", "")),
                "message": str(error.get("description", error)),
            }
        )
    for skipped in summary.get("skipped", {}).get("skipped_files", []):
        entry = {k: str(v) for k, v in skipped.items()}
        outcome.skipped.append(entry)
        if entry.get("category") not in _BENIGN_SKIPS:
            outcome.errors.append(
                {
                    "source": entry.get("source", ""),
                    "message": f"{entry.get('category')}: {entry.get('description')}",
                }
            )
    return outcome


def _finding_from_issue(issue: dict[str, Any]) -> Finding:
    severity_name = str(issue.get("severity", "HIGH")).upper()
    try:
        severity = Severity(severity_name)
    except ValueError:
        severity = Severity.HIGH
    module = str(issue.get("module", ""))
    operator = str(issue.get("operator", ""))
    source = str(issue.get("source", ""))
    file_part, _, member = source.partition(":")
    made = rules.MODELSCAN_UNSAFE.finding(
        str(issue.get("description", f"unsafe callable {module}.{operator}")),
        Location(file_part, member or None),
        {
            "callable": f"{module}.{operator}" if module else operator,
            "engine": "modelscan",
            "scanner": str(issue.get("scanner", "")),
        },
        severity=severity,
    )
    return made if file_part else dataclasses.replace(made, file=None)
