"""MLflow model format checks on real saved models: what would run at load time, never run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier

from gates.base import Finding, Severity
from gates.security.mlflow_format import check_mlflow_model

FEATURES = np.random.default_rng(0).normal(size=(40, 3))
LABELS = (FEATURES[:, 0] > 0).astype(int)


def _mlmodel(root: Path) -> dict[str, Any]:
    return yaml.safe_load((root / "MLmodel").read_text())


def _write_mlmodel(root: Path, mlmodel: dict[str, Any]) -> None:
    (root / "MLmodel").write_text(yaml.safe_dump(mlmodel))


def _check(root: Path) -> list[Finding]:
    return check_mlflow_model(root, _mlmodel(root))


def _rules(findings: list[Finding]) -> list[str]:
    return sorted(f.rule_id for f in findings)


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sk") / "model"
    model = LogisticRegression().fit(FEATURES, LABELS)
    mlflow.sklearn.save_model(model, path, serialization_format="pickle")
    return path


@pytest.fixture()
def sklearn_copy(sklearn_model: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(sklearn_model, tmp_path / "model"))


class _Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context: Any, model_input: list[Any], params: Any = None) -> list[Any]:
        return model_input


def test_clean_sklearn_pickle_model_has_no_finding(sklearn_model: Path) -> None:
    assert _check(sklearn_model) == []


def test_custom_loader_module_is_critical(sklearn_copy: Path) -> None:
    mlmodel = _mlmodel(sklearn_copy)
    mlmodel["flavors"]["python_function"]["loader_module"] = "evil_loader"
    mlmodel["flavors"]["python_function"]["code"] = "code"
    _write_mlmodel(sklearn_copy, mlmodel)
    (sklearn_copy / "code").mkdir()
    (sklearn_copy / "code" / "evil_loader.py").write_text("def _load_pyfunc(path):\n    pass\n")

    findings = _check(sklearn_copy)

    [critical] = [f for f in findings if f.rule_id == "SEC-MLFLOW-001"]
    assert critical.severity == Severity.CRITICAL
    assert critical.file == "MLmodel"
    assert "evil_loader" in critical.message
    [runs] = [f for f in findings if f.rule_id == "SEC-MLFLOW-002"]
    assert runs.severity == Severity.HIGH
    assert runs.evidence["code_files"] == ["code/evil_loader.py"]
    assert any("evil_loader" in m for m in runs.evidence["custom_modules"])


def test_mlflow_prefix_alone_is_not_enough(sklearn_copy: Path) -> None:
    """`mlflow.anything` is not MLflow's: only the shipped list of flavor modules is."""
    mlmodel = _mlmodel(sklearn_copy)
    mlmodel["flavors"]["python_function"]["loader_module"] = "mlflow.evil"
    _write_mlmodel(sklearn_copy, mlmodel)
    assert "SEC-MLFLOW-001" in _rules(_check(sklearn_copy))


def test_pytorch_pickle_module_file_naming_another_module_is_critical(sklearn_copy: Path) -> None:
    (sklearn_copy / "data").mkdir()
    (sklearn_copy / "data" / "pickle_module_info.txt").write_text("antigravity")
    [finding] = [f for f in _check(sklearn_copy) if f.rule_id == "SEC-MLFLOW-001"]
    assert finding.file == "data/pickle_module_info.txt"
    assert "antigravity" in finding.message


def test_pyfunc_with_code_paths_lists_code_and_runs_bandit(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    helper = tmp_path / "helper.py"
    helper.write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "import subprocess\n"
        "def run(cmd):\n"
        "    return subprocess.call(cmd, shell=True)  # nosec\n"
    )
    root = tmp_path / "pyfunc"
    mlflow.pyfunc.save_model(
        root, python_model=_Echo(), code_paths=[str(helper)], pip_requirements=["mlflow"]
    )

    findings = _check(root)

    [runs] = [f for f in findings if f.rule_id == "SEC-MLFLOW-002"]
    assert runs.severity == Severity.HIGH
    assert runs.evidence["code_dirs"] == ["code"]
    assert runs.evidence["code_files"] == ["code/helper.py"]
    assert runs.evidence["pickled_python_models"] == ["python_model.pkl"]
    shell = [f for f in findings if f.rule_id == "SEC-CODE-001" and f.evidence["test_id"] == "B602"]
    assert shell, [f.to_dict() for f in findings]
    assert shell[0].severity == Severity.HIGH  # `# nosec` does not silence it
    assert shell[0].file == "code/helper.py"
    assert shell[0].evidence["line"] == 4
    assert not marker.exists(), "the scanner imported the model's code"


def test_models_from_code_file_is_found_and_analysed(tmp_path: Path) -> None:
    source = tmp_path / "my_model.py"
    source.write_text(
        "import mlflow\n"
        "class M(mlflow.pyfunc.PythonModel):\n"
        "    def predict(self, context, model_input, params=None):\n"
        "        return eval(model_input)\n"
        "mlflow.models.set_model(M())\n"
    )
    root = tmp_path / "mfc"
    mlflow.pyfunc.save_model(root, python_model=str(source), pip_requirements=["mlflow"])

    findings = _check(root)

    [runs] = [f for f in findings if f.rule_id == "SEC-MLFLOW-002"]
    assert runs.evidence["models_from_code"] == ["my_model.py"]
    evals = [f for f in findings if f.rule_id == "SEC-CODE-001" and f.evidence["test_id"] == "B307"]
    assert evals and evals[0].file == "my_model.py" and evals[0].evidence["line"] == 4
    assert evals[0].severity == Severity.MEDIUM


def test_names_that_shadow_stdlib_or_popular_packages(sklearn_copy: Path) -> None:
    code = sklearn_copy / "code"
    (code / "numpy").mkdir(parents=True)
    (code / "numpy" / "__init__.py").write_text("")
    (code / "json.py").write_text("")
    (code / "features.py").write_text("def f(x):\n    return x\n")
    mlmodel = _mlmodel(sklearn_copy)
    mlmodel["flavors"]["python_function"]["code"] = "code"
    _write_mlmodel(sklearn_copy, mlmodel)

    shadows = {f.file: f for f in _check(sklearn_copy) if f.rule_id == "SEC-MLFLOW-003"}

    assert set(shadows) == {"code/json.py", "code/numpy"}
    assert shadows["code/json.py"].evidence["shadows"] == "standard-library module"
    assert shadows["code/numpy"].evidence["shadows"] == "popular package"
    assert all(f.severity == Severity.HIGH for f in shadows.values())


def test_unanalysable_code_is_reported(sklearn_copy: Path) -> None:
    code = sklearn_copy / "code"
    code.mkdir()
    (code / "broken.py").write_text("def oops(:\n")
    (code / "fast.cpython-311-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    unreadable = {f.file for f in _check(sklearn_copy) if f.rule_id == "SEC-CODE-002"}
    assert unreadable == {"code/broken.py", "code/fast.cpython-311-x86_64-linux-gnu.so"}


@pytest.mark.slow
def test_skops_trusted_types_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "skops"
    mlflow.sklearn.save_model(
        DecisionTreeClassifier().fit(FEATURES, LABELS),
        root,
        skops_trusted_types=["sklearn.tree._tree.Tree"],
    )
    [info] = _check(root)
    assert info.rule_id == "SEC-MLFLOW-004"
    assert info.severity == Severity.MEDIUM
    assert info.evidence["trusted_types"] == ["sklearn.tree._tree.Tree"]


@pytest.mark.parametrize(
    ("key", "value"),
    [("code", "../outside"), ("model_path", "/etc/passwd"), ("python_model", "../../x.pkl")],
)
def test_paths_leaving_the_artifact(sklearn_copy: Path, key: str, value: str) -> None:
    mlmodel = _mlmodel(sklearn_copy)
    mlmodel["flavors"]["python_function"][key] = value
    _write_mlmodel(sklearn_copy, mlmodel)
    escapes = [f for f in _check(sklearn_copy) if f.rule_id == "SEC-MLFLOW-005"]
    assert [f.evidence["path"] for f in escapes] == [value]
    assert escapes[0].severity == Severity.HIGH


def test_findings_serialise_to_json(sklearn_copy: Path) -> None:
    mlmodel = _mlmodel(sklearn_copy)
    mlmodel["flavors"]["python_function"]["loader_module"] = ["not", "a", "string"]
    _write_mlmodel(sklearn_copy, mlmodel)
    findings = _check(sklearn_copy)
    assert "SEC-MLFLOW-001" in _rules(findings)
    json.dumps([f.to_dict() for f in findings])


def test_user_metadata_and_model_config_paths_are_not_judged(sklearn_copy: Path) -> None:
    mlmodel = _mlmodel(sklearn_copy)
    mlmodel["metadata"] = {"training_data_path": "/mnt/data/train.parquet"}
    mlmodel["flavors"]["python_function"]["config"] = {"lookup_path": "/srv/lookup.csv"}
    _write_mlmodel(sklearn_copy, mlmodel)
    assert _check(sklearn_copy) == []


@pytest.mark.parametrize(
    "hidden",
    [".git/model.pkl", "model/.github/model.pkl", ".gitattributes", "./.cache\\model.pkl"],
)
def test_a_pickle_path_into_a_hidden_directory_that_signing_skips_is_blocked(
    sklearn_copy: Path, hidden: str
) -> None:
    """model-signing leaves .git, .github, .gitignore and .gitattributes out of a signature by
    default: a pickle loaded from there could be swapped after the model was signed."""
    target = sklearn_copy / hidden.replace("\\", "/")
    target.parent.mkdir(parents=True, exist_ok=True)
    (sklearn_copy / "model.pkl").rename(target)
    mlmodel = _mlmodel(sklearn_copy)
    mlmodel["flavors"]["sklearn"]["pickled_model"] = hidden
    mlmodel["flavors"]["python_function"]["model_path"] = hidden
    _write_mlmodel(sklearn_copy, mlmodel)

    findings = _check(sklearn_copy)

    hidden_paths = [f for f in findings if f.rule_id == "SEC-MLFLOW-006"]
    assert {f.evidence["key"] for f in hidden_paths} == {
        "flavors.sklearn.pickled_model",
        "flavors.python_function.model_path",
    }
    assert all(f.severity == Severity.HIGH and f.file == "MLmodel" for f in hidden_paths)
    assert "SEC-MLFLOW-005" not in _rules(findings)  # it stays inside the artifact


def test_dot_and_dot_dot_alone_are_not_hidden_names(sklearn_copy: Path) -> None:
    mlmodel = _mlmodel(sklearn_copy)
    mlmodel["flavors"]["sklearn"]["pickled_model"] = "./model.pkl"
    mlmodel["flavors"]["python_function"]["model_path"] = "sub/../model.pkl"
    _write_mlmodel(sklearn_copy, mlmodel)
    assert _check(sklearn_copy) == []
