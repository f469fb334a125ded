"""Python files shipped anywhere in an artifact are code (SEC-CODE-003), each reported once.

Real MLflow models saved by MLflow, real transformers-style directories, the gate as the
service runs it. A `.py` outside an MLflow code directory used to pass unread; now it is a
finding that `allow_code` lowers, and bandit reads it. A file another engine already reports
(the code directory, the models-from-code file, an `auto_map` target) is not reported again.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import mlflow.pyfunc

from gates.base import GateContext, Severity, Status
from gates.security import check, scan_path
from gates.security.common import ReviewedCode
from gates.security.config import SecurityConfig
from gates.security.python_files import check_python_files

DROPPER = (
    "import subprocess\n\n\ndef fetch(url):\n"
    "    return subprocess.call('curl ' + url, shell=True)\n"
)


def _gate(root: Path, **config: Any) -> tuple[Status, list[dict[str, Any]]]:
    result = check(GateContext(artifact_dir=root), SecurityConfig(modelscan=False, **config))
    return result.status, [f.to_dict() for f in result.findings]


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: list[Any], params: Any = None) -> list[Any]:
        return model_input


def test_a_py_file_dropped_next_to_the_weights_is_code_unless_allow_code(tmp_path: Path) -> None:
    root = tmp_path / "model"
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (root / "utils").mkdir()
    (root / "utils" / "download.py").write_text(DROPPER)

    status, findings = _gate(root)

    assert status == Status.FAIL
    [loose] = [f for f in findings if f["rule_id"] == "SEC-CODE-003"]
    assert loose["file"] == "utils/download.py" and loose["severity"] == "HIGH"
    shell = [f for f in findings if f["rule_id"] == "SEC-CODE-001"]
    assert [f["evidence"]["test_id"] for f in shell if f["severity"] == "HIGH"] == ["B602"]

    status, findings = _gate(root, allow_code=True)
    [loose] = [f for f in findings if f["rule_id"] == "SEC-CODE-003"]
    assert loose["severity"] == "LOW" and loose["evidence"]["allowed_by_policy"] == "allow_code"
    # bandit's own findings keep their severity: a shell call with a built command still fails
    assert status == Status.FAIL


def test_code_mlflow_already_reports_is_not_reported_twice(tmp_path: Path) -> None:
    """A pyfunc with code_paths and a models-from-code file, plus one stray .py in its
    artifacts: only the stray one is SEC-CODE-003, and bandit reads every file once."""
    helper = tmp_path / "helper.py"
    helper.write_text(DROPPER)
    source = tmp_path / "my_model.py"
    source.write_text(
        "import mlflow\n"
        "class M(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return eval(model_input)\n"
        "mlflow.models.set_model(M())\n"
    )
    root = tmp_path / "mfc"
    mlflow.pyfunc.save_model(
        root, python_model=str(source), code_paths=[str(helper)], pip_requirements=["mlflow"]
    )
    (root / "artifacts").mkdir()
    (root / "artifacts" / "postprocess.py").write_text("def clean(x):\n    return x\n")

    status, findings = _gate(root)

    assert status == Status.FAIL
    assert [f["file"] for f in findings if f["rule_id"] == "SEC-CODE-003"] == [
        "artifacts/postprocess.py"
    ]
    [runs] = [f for f in findings if f["rule_id"] == "SEC-MLFLOW-002"]
    assert runs["evidence"]["models_from_code"] == ["my_model.py"]
    bandit = Counter(
        (f["file"], f["evidence"]["line"], f["evidence"]["test_id"])
        for f in findings
        if f["rule_id"] == "SEC-CODE-001"
    )
    assert bandit[("code/helper.py", 5, "B602")] == 1 and bandit[("my_model.py", 4, "B307")] == 1
    assert max(bandit.values()) == 1


def test_a_helper_imported_by_remote_code_is_reported_and_the_auto_map_file_is_not(
    tmp_path: Path,
) -> None:
    root = tmp_path / "model"
    root.mkdir()
    auto_map = {"AutoModel": "modeling_x.XModel"}
    (root / "config.json").write_text(json.dumps({"model_type": "x", "auto_map": auto_map}))
    (root / "modeling_x.py").write_text("from .helpers import fetch\n\n\nclass XModel:\n    pass\n")
    (root / "helpers.py").write_text(DROPPER)

    status, findings = _gate(root, allow_code=True)

    by_rule = Counter((f["rule_id"], f["file"]) for f in findings)
    assert by_rule[("SEC-AUTOMAP-001", "config.json")] == 1
    assert by_rule[("SEC-CODE-003", "helpers.py")] == 1
    assert by_rule[("SEC-CODE-003", "modeling_x.py")] == 0
    assert status == Status.FAIL  # bandit: B602 HIGH in helpers.py, not lowered by allow_code


def test_a_code_directory_without_an_mlmodel_is_not_an_mlflow_code_directory(
    tmp_path: Path,
) -> None:
    root = tmp_path / "bundle"
    (root / "code").mkdir(parents=True)
    (root / "code" / "serve.py").write_text("print('hello')\n")
    status, findings = _gate(root)
    assert status == Status.FAIL
    assert [f["file"] for f in findings if f["rule_id"] == "SEC-CODE-003"] == ["code/serve.py"]


def test_a_single_py_file_scanned_on_its_own_is_code(tmp_path: Path) -> None:
    path = tmp_path / "model.py"
    path.write_text(DROPPER)
    result = scan_path(path, SecurityConfig(modelscan=False))
    assert result.status == Status.FAIL
    assert {(f.rule_id, f.file) for f in result.findings} >= {
        ("SEC-CODE-003", "model.py"),
        ("SEC-CODE-001", "model.py"),
    }


def test_more_py_files_than_the_bound_are_not_called_safe(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"m{i}.py").write_text("x = 1\n")
    findings = check_python_files(tmp_path, ReviewedCode(), cap=3)
    unread = [f for f in findings if f.rule_id == "SEC-CODE-002"]
    assert len(unread) == 1 and unread[0].severity == Severity.HIGH
    assert len([f for f in findings if f.rule_id == "SEC-CODE-003"]) == 3


def test_a_py_file_too_large_to_analyse_is_not_called_safe(tmp_path: Path) -> None:
    (tmp_path / "generated.py").write_text("x = '" + "a" * 4_300_000 + "'\n")
    findings = check_python_files(tmp_path, ReviewedCode())
    unread = [f for f in findings if f.rule_id == "SEC-CODE-002"]
    assert len(unread) == 1 and "over the" in unread[0].message
    assert unread[0].file == "generated.py" and unread[0].severity == Severity.HIGH
