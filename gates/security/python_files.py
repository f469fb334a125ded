"""Python files shipped anywhere in the artifact: code, wherever it sits (SEC-CODE-003).

A `.py` file outside an MLflow model's code directories is still code someone may run:
transformers' remote code copies and imports the modules its `auto_map` file imports from
the model directory, a pyfunc `python_model` imports from its artifacts, a deploy step runs
what it finds. Each such file is SEC-CODE-003 (HIGH; `allow_code: true` lowers it to LOW like
the other code rules) and is analysed with bandit like shipped code (SEC-CODE-001/002).

Files another engine already reported are left to it (recorded in `ReviewedCode`): the code
directories and models-from-code file of `mlflow_format.py`, the files `auto_map` and
`custom_pipelines` name (`formats/transformers_code.py`). `.py` members of archives are not
listed here: the walker scans them as text, and TorchScript archives ship `.py` members that
the TorchScript interpreter, not Python, reads. Bounds: `MAX_PY_FILES` files, past which the
rest is SEC-CODE-002 (not analysed, so not known to be safe).
"""

from __future__ import annotations

from pathlib import Path

from gates.base import Finding
from gates.security import rules
from gates.security.common import Location, ReviewedCode, files_under
from gates.security.mlflow_format import bandit_findings

MAX_PY_FILES = 5_000


def check_python_files(
    root: Path, reviewed: ReviewedCode, *, cap: int = MAX_PY_FILES
) -> list[Finding]:
    listed, more = files_under(root, lambda name: name.endswith(".py"), cap)
    loose = [path for path in listed if not reviewed.covers(path)]
    findings = []
    for path in loose:
        rel = _rel(root, path)
        findings.append(
            rules.CODE_LOOSE.finding(
                f"{rel} is Python code shipped outside a code directory; it may be imported "
                "or run by whoever loads the model",
                Location(rel),
                {"size": path.stat().st_size},
            )
        )
    if more:
        findings.append(
            rules.CODE_UNANALYSABLE.finding(
                f"more than {cap} .py files in the artifact; the rest were not analysed",
                Location("."),
                {"limit": cap},
            )
        )
    base = root if root.is_dir() else root.parent
    return findings + bandit_findings(base, loose, reviewed)


def _rel(root: Path, path: Path) -> str:
    return path.name if root.is_file() else path.relative_to(root).as_posix()
