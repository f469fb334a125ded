"""`gatekeeper scan` on the trust-chain bypasses of issue 20, run as a user runs it.

Each of these passed the gate before: a chat template hidden in a `{% set %}` block inside
`chat_template.json` (a file the scanner did not read for templates), an MLmodel loading its
pickle from `.git/` (which model signing leaves out of a signature), and remote code named by
`auto_map` in `processor_config.json` (a file the scanner did not read for `auto_map`). Exit
codes: 0 clean, 1 findings that fail the gate, 2 could not scan.
"""

from __future__ import annotations

import json
import pickle
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import VENV_BIN

BENIGN_TEMPLATE = (
    Path(__file__).resolve().parents[1] / "corpus" / "chat_templates" / "benign" / "llama3.jinja"
).read_text()


def _scan(path: Path, *options: str) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [str(VENV_BIN / "gatekeeper"), "scan", str(path), "--format", "json", *options],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def _rules_by_file(report: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["rule_id"], f["file"]) for f in report["findings"]}


def _mlflow_model(root: Path, pickle_path: str) -> Path:
    """An MLflow sklearn-flavor directory whose pickle (a plain dict) sits at `pickle_path`."""
    (root / pickle_path).parent.mkdir(parents=True, exist_ok=True)
    (root / pickle_path).write_bytes(pickle.dumps({"coef": [0.5, -0.25]}, protocol=4))
    (root / "MLmodel").write_text(
        "flavors:\n"
        "  python_function:\n"
        "    loader_module: mlflow.sklearn\n"
        f"    model_path: {pickle_path}\n"
        "    python_version: 3.11.7\n"
        "  sklearn:\n"
        f"    pickled_model: {pickle_path}\n"
        "    serialization_format: pickle\n"
        "    sklearn_version: 1.6.1\n"
        "mlflow_version: 3.17.2\n"
    )
    (root / "requirements.txt").write_text("mlflow==3.17.2\nscikit-learn==1.6.1\n")
    return root


def test_a_set_block_template_in_chat_template_json_fails_the_scan(tmp_path: Path) -> None:
    template = (
        "{% set name %}__class__{% endset %}"
        "{% for m in messages %}{{ m['content'] }}{% endfor %}{{ ''[name] }}"
    )
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))

    code, report = _scan(tmp_path)

    assert code == 1, report
    assert report["status"] == "fail"
    assert ("SEC-TEMPLATE-001", "chat_template.json") in _rules_by_file(report)


def test_an_mlmodel_loading_its_pickle_from_git_fails_the_scan(tmp_path: Path) -> None:
    hidden = _mlflow_model(tmp_path / "hidden", ".git/model.pkl")
    plain = _mlflow_model(tmp_path / "plain", "model.pkl")

    code, report = _scan(hidden)

    assert code == 1, report
    hidden_paths = [f for f in report["findings"] if f["rule_id"] == "SEC-MLFLOW-006"]
    assert {f["evidence"]["path"] for f in hidden_paths} == {".git/model.pkl"}
    assert all(f["severity"] == "HIGH" for f in hidden_paths)
    # the same model with its pickle in an ordinary place is clean
    code, report = _scan(plain)
    assert code == 0, report["findings"]


@pytest.mark.parametrize("allow_code", [False, True], ids=["default", "allow-code"])
def test_auto_map_in_processor_config_json_is_remote_code(tmp_path: Path, allow_code: bool) -> None:
    processor = {
        "processor_class": "CustomProcessor",
        "auto_map": {"AutoProcessor": "processing_custom.CustomProcessor"},
    }
    (tmp_path / "processor_config.json").write_text(json.dumps(processor))
    (tmp_path / "processing_custom.py").write_text("class CustomProcessor:\n    pass\n")

    code, report = _scan(tmp_path, *(["--allow-code"] if allow_code else []))

    [remote] = [f for f in report["findings"] if f["rule_id"] == "SEC-AUTOMAP-001"]
    assert remote["file"] == "processor_config.json"
    if allow_code:
        assert code == 0 and remote["severity"] == "LOW", report
    else:
        assert code == 1 and remote["severity"] == "HIGH", report


def test_a_model_directory_with_published_templates_passes(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    tokenizer = {"bos_token": "<|begin_of_text|>", "chat_template": BENIGN_TEMPLATE}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    (tmp_path / "chat_template.json").write_text(json.dumps({"chat_template": BENIGN_TEMPLATE}))
    (tmp_path / "chat_template.jinja").write_text(BENIGN_TEMPLATE)

    code, report = _scan(tmp_path)

    assert code == 0, report["findings"]
    assert report["status"] == "pass" and report["findings"] == []
    formats = {(c["file"], c["format"]) for c in report["coverage"]}
    assert ("chat_template.json", "chat template") in formats
