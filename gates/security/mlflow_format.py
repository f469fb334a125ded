"""The MLflow model format itself: what `mlflow.pyfunc.load_model` would import or run.

An MLflow model is a directory with an `MLmodel` file. Loading it is not just reading weights:
MLflow imports the `loader_module` the MLmodel names, prepends the model's `code/` directory
to `sys.path`, executes a models-from-code `.py` file, and unpickles a cloudpickled
`python_model.pkl`. All of that is chosen by whoever logged the model. This module reads the
MLmodel (already parsed by the caller) and the files it points at; it never imports, loads or
executes any of them. Static analysis of shipped code uses bandit as a library (ASTs only).

Rules (stable ids):

- SEC-MLFLOW-001 CRITICAL: a module name MLflow imports at load time that is not one of
  MLflow's own: `loader_module` of any flavor outside the shipped list of MLflow flavor loader
  modules (`mlflow.sklearn`, `mlflow.pyfunc.model`, `mlflow.pytorch`, ...), a pytorch
  `pickle_module_name` / `pickle_module_info.txt` other than `mlflow.pytorch.pickle_module`,
  `pickle`, `cloudpickle` or `dill`, a tensorflow `keras_module` / `keras_module.txt` other than
  `tensorflow.keras`, `keras` or `tf_keras`. Importing a module runs its top-level code, and
  with `code/` first on `sys.path` the module can come from the artifact.
- SEC-MLFLOW-002 HIGH: the model runs its own code at load time: a `code/` directory (the
  MLmodel's `code:` key, any flavor's `code:` key, or a `code/` directory at the root), a
  models-from-code file (`model_code_path`, or `python_model` naming a `.py` file), a custom
  loader module, or a cloudpickled `python_model` (`python_model.pkl`). Evidence lists each.
  The gate may lower this to LOW when the policy sets `allow_code: true` for the model.
- SEC-MLFLOW-003 HIGH: a file or directory at the top of a code directory whose import name
  shadows a standard-library module (`sys.stdlib_module_names`) or a popular installed package
  (shipped list below). MLflow puts the code directory first on `sys.path`, so `json.py` or
  `numpy/` there replaces the real module for every later import in the serving process.
- SEC-MLFLOW-004 MEDIUM (informational): `skops_trusted_types` in the MLmodel. MLflow passes the
  list to `skops.io.load`, so the model decides which of its own types are trusted; the
  gatekeeper never trusts that list (the skops engine judges the file's types itself).
- SEC-MLFLOW-005 HIGH: a path in the MLmodel's `code` or flavor configuration (`code`, `data`,
  `pickled_model`, `python_model`, `*_path`, `env` files, ...; not the free-form `config` or
  `metadata`) that is absolute or leaves the artifact with `..`. MLflow joins it
  to the model directory with `os.path.join`, so it would load or import a file this scan
  never saw.
- SEC-MLFLOW-006 HIGH: such a path with a component starting with `.` (`.git/model.pkl`,
  `.github/x.py`; `.` and `..` themselves are SEC-MLFLOW-005's when they escape). model-signing
  by default leaves `.git`, `.github`, `.gitignore` and `.gitattributes` out of a model's
  signature, so a file loaded from a hidden path could be swapped after signing.
- SEC-CODE-001 (bandit's severity: HIGH, MEDIUM or LOW): bandit's findings on the `.py`
  files of the code directories and on models-from-code files, with bandit's test id, file,
  line and confidence. `# nosec` comments are ignored: the author of the code does not get to
  silence the review of it.
- SEC-CODE-002 HIGH: shipped code that cannot be statically analysed: a `.py` file bandit
  cannot parse or over `MAX_CODE_BYTES`, compiled modules (`.so`, `.pyd`, `.pyc`), symbolic
  links, or more than `max_code_files` files. Fail closed: what was not read was not checked.

The code directories and the files handed to bandit are recorded in a `ReviewedCode`, so the
check of `.py` files elsewhere in the artifact (`python_files.py`) does not report them again.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bandit.core import config as bandit_config
from bandit.core import manager as bandit_manager

from gates.base import Finding, Severity
from gates.security import rules
from gates.security.common import Location, ReviewedCode

# Every loader module MLflow 3.x writes into an MLmodel (grep `loader_module=` in mlflow/), plus
# the historical flavors whose saved models still load.
MLFLOW_LOADER_MODULES = frozenset(
    {
        "mlflow.catboost",
        "mlflow.diffusers",
        "mlflow.dspy",
        "mlflow.fastai",
        "mlflow.gluon",
        "mlflow.h2o",
        "mlflow.johnsnowlabs",
        "mlflow.keras",
        "mlflow.langchain",
        "mlflow.lightgbm",
        "mlflow.llama_index",
        "mlflow.mleap",
        "mlflow.onnx",
        "mlflow.openai",
        "mlflow.paddle",
        "mlflow.pmdarima",
        "mlflow.prophet",
        "mlflow.prompt.promptlab_model",
        "mlflow.pyfunc.loaders.chat_agent",
        "mlflow.pyfunc.loaders.chat_model",
        "mlflow.pyfunc.loaders.code_model",
        "mlflow.pyfunc.loaders.responses_agent",
        "mlflow.pyfunc.model",
        "mlflow.pytorch",
        "mlflow.sentence_transformers",
        "mlflow.shap",
        "mlflow.sklearn",
        "mlflow.spacy",
        "mlflow.spark",
        "mlflow.statsmodels",
        "mlflow.tensorflow",
        "mlflow.transformers",
        "mlflow.xgboost",
    }
)
# Loader modules that exist to run the model author's Python code (SEC-MLFLOW-002).
_CODE_RUNNING_LOADERS = frozenset(
    {
        "mlflow.pyfunc.model",
        "mlflow.pyfunc.loaders.chat_agent",
        "mlflow.pyfunc.loaders.chat_model",
        "mlflow.pyfunc.loaders.code_model",
        "mlflow.pyfunc.loaders.responses_agent",
    }
)
PYTORCH_PICKLE_MODULES = frozenset(
    {"mlflow.pytorch.pickle_module", "pickle", "cloudpickle", "dill"}
)
KERAS_MODULES = frozenset({"tensorflow.keras", "keras", "tf_keras", "tensorflow.python.keras"})

# Import names of packages an ML serving process commonly imports; a code directory entry with
# one of these names replaces the real package (SEC-MLFLOW-003).
POPULAR_IMPORT_NAMES = frozenset(
    {
        "numpy", "pandas", "sklearn", "scipy", "torch", "torchvision", "tensorflow", "keras",
        "jax", "mlflow", "requests", "urllib3", "yaml", "cloudpickle", "joblib", "dill",
        "xgboost", "lightgbm", "catboost", "transformers", "tokenizers", "datasets",
        "huggingface_hub", "safetensors", "onnx", "onnxruntime", "skops", "statsmodels", "shap",
        "spacy", "nltk", "sentence_transformers", "langchain", "openai", "pydantic", "fastapi",
        "starlette", "flask", "werkzeug", "jinja2", "markupsafe", "uvicorn", "gunicorn",
        "boto3", "botocore", "google", "azure", "setuptools", "pip", "pkg_resources", "six",
        "typing_extensions", "packaging", "certifi", "idna", "charset_normalizer", "httpx",
        "aiohttp", "sqlalchemy", "click", "matplotlib", "PIL", "cv2", "h5py", "pyarrow",
        "dateutil", "pytz", "attr", "attrs", "tqdm", "psutil", "cryptography", "grpc", "fsspec",
        "filelock", "regex", "rich", "sitecustomize", "usercustomize",
    }
)  # fmt: skip

_IMPORTABLE_SUFFIXES = (".py", ".pyw", ".pyc", ".pyo", ".so", ".pyd")
_COMPILED_SUFFIXES = (".pyc", ".pyo", ".so", ".pyd", ".dylib", ".dll")
_PATH_KEYS = frozenset(
    {"code", "data", "model_path", "pickled_model", "python_model", "model_data", "path"}
    | {"conda", "virtualenv", "saved_model_dir", "model_file"}
)
_PATH_SUFFIXES = ("_path", "_file", "_dir")
# The model's own inference config is free-form user data, not paths MLflow opens.
_USER_CONFIG_KEYS = frozenset({"config", "model_config"})
# model_code_path is the author's original absolute path; MLflow uses only its basename.
_BASENAME_ONLY_KEYS = frozenset({"model_code_path"})
_EVIDENCE_LIST_CAP = 200
MAX_CODE_BYTES = 4 * 1024**2  # a .py file bandit is asked to read

_BANDIT_SEVERITY = {"HIGH": Severity.HIGH, "MEDIUM": Severity.MEDIUM, "LOW": Severity.LOW}

MLMODEL = Location("MLmodel")


@dataclass
class _CodeRun:
    """What in this model would run at load time (SEC-MLFLOW-002 evidence)."""

    code_dirs: list[str] = field(default_factory=list)
    code_files: list[str] = field(default_factory=list)
    models_from_code: list[str] = field(default_factory=list)
    custom_modules: list[str] = field(default_factory=list)
    pickled_python_models: list[str] = field(default_factory=list)
    code_running_loaders: list[str] = field(default_factory=list)

    def any(self) -> bool:
        parts = (self.code_dirs, self.models_from_code, self.custom_modules)
        return any(parts) or bool(self.pickled_python_models or self.code_running_loaders)


def check_mlflow_model(
    root: Path,
    mlmodel: Mapping[str, Any],
    *,
    max_code_files: int = 5_000,
    reviewed: ReviewedCode | None = None,
) -> list[Finding]:
    """All SEC-MLFLOW and SEC-CODE findings for the MLflow model directory `root`; the code
    directories and analysed files are added to `reviewed`."""
    root = root.resolve()
    reviewed = reviewed if reviewed is not None else ReviewedCode()
    findings: list[Finding] = []
    run = _CodeRun()
    flavors = mlmodel.get("flavors")
    flavors = flavors if isinstance(flavors, Mapping) else {}

    findings += _model_paths(root, mlmodel)
    code_dirs = _code_dirs(root, mlmodel, flavors)
    for flavor, conf in flavors.items():
        if not isinstance(conf, Mapping):
            continue
        findings += _imported_modules(str(flavor), conf, run)
        findings += _trusted_types(str(flavor), conf)
        _python_model(root, conf, run)
    findings += _module_files(root, run)

    py_files = [p for p in (root / rel for rel in run.models_from_code) if _inside_file(root, p)]
    for code_dir in code_dirs:
        rel_dir = _rel(root, code_dir)
        run.code_dirs.append(rel_dir)
        listing, more = _list_code_dir(code_dir, max_code_files)
        run.code_files += [_rel(root, p) for p in listing]
        findings += _shadowing(root, code_dir)
        findings += _unanalysable(root, listing, more, max_code_files, rel_dir)
        py_files += [p for p in listing if p.suffix in (".py", ".pyw") and not p.is_symlink()]
    findings += bandit_findings(root, py_files, reviewed)
    reviewed.dirs += code_dirs

    if run.any():
        findings.append(_runs_own_code(run))
    return findings


# --- modules MLflow imports -----------------------------------------------------------------


def _imported_modules(flavor: str, conf: Mapping[str, Any], run: _CodeRun) -> list[Finding]:
    out: list[Finding] = []
    checks = (
        ("loader_module", MLFLOW_LOADER_MODULES),
        ("pickle_module_name", PYTORCH_PICKLE_MODULES),
        ("keras_module", KERAS_MODULES),
    )
    for key, allowed in checks:
        if key not in conf or conf[key] is None:
            continue
        value = conf[key]
        if isinstance(value, str) and value in allowed:
            if key == "loader_module" and value in _CODE_RUNNING_LOADERS:
                run.code_running_loaders.append(f"{flavor}: {value}")
            continue
        run.custom_modules.append(f"{flavor}.{key}: {value!r}")
        out.append(
            rules.MLFLOW_FOREIGN_MODULE.finding(
                f"flavor {flavor!r} makes MLflow import {value!r} ({key}) at load time, which is "
                "not one of MLflow's own modules",
                MLMODEL,
                {"flavor": flavor, "key": key, "module": repr(value), "allowed": sorted(allowed)},
            )
        )
    return out


def _module_files(root: Path, run: _CodeRun) -> list[Finding]:
    """pytorch's `pickle_module_info.txt` and keras' `keras_module.txt` name modules too."""
    out: list[Finding] = []
    for name, allowed in (
        ("pickle_module_info.txt", PYTORCH_PICKLE_MODULES),
        ("keras_module.txt", KERAS_MODULES),
    ):
        for path in sorted(root.rglob(name)):
            if path.is_symlink() or not path.is_file():
                continue
            with path.open("rb") as handle:
                value = handle.read(1024).decode("utf-8", errors="replace")
            if value in allowed:
                continue
            rel = _rel(root, path)
            run.custom_modules.append(f"{rel}: {value[:200]!r}")
            out.append(
                rules.MLFLOW_FOREIGN_MODULE.finding(
                    f"{rel} makes MLflow import {value[:200]!r} at load time, which is not one "
                    "of MLflow's own modules",
                    Location(rel),
                    {"module": repr(value[:200]), "allowed": sorted(allowed)},
                )
            )
    return out


def _trusted_types(flavor: str, conf: Mapping[str, Any]) -> list[Finding]:
    types = conf.get("skops_trusted_types")
    if not types:
        return []
    listed = [str(t) for t in types] if isinstance(types, list) else [repr(types)]
    return [
        rules.MLFLOW_SKOPS_TRUSTED_TYPES.finding(
            f"flavor {flavor!r} lists {len(listed)} skops_trusted_types; MLflow trusts the "
            "model's own list, the gatekeeper does not",
            MLMODEL,
            {"flavor": flavor, "trusted_types": listed[:_EVIDENCE_LIST_CAP]},
        )
    ]


def _python_model(root: Path, conf: Mapping[str, Any], run: _CodeRun) -> None:
    code_path = conf.get("model_code_path")
    if isinstance(code_path, str) and code_path:
        # MLflow loads os.path.join(model_dir, basename(model_code_path)).
        run.models_from_code.append(PurePosixPath(code_path.replace("\\", "/")).name)
    python_model = conf.get("python_model")
    if isinstance(python_model, str) and python_model:
        target = root / python_model
        if python_model.endswith(".py"):
            run.models_from_code.append(_rel(root, target))
        else:
            run.pickled_python_models.append(_rel(root, target))


# --- paths in the MLmodel -------------------------------------------------------------------


def _model_paths(root: Path, mlmodel: Mapping[str, Any]) -> list[Finding]:
    """SEC-MLFLOW-005 (outside the artifact) and SEC-MLFLOW-006 (into a hidden file)."""
    out = []
    scope = {"code": mlmodel.get("code"), "flavors": mlmodel.get("flavors")}
    for keypath, value in _path_values(scope, ()):
        key = ".".join(keypath)
        evidence = {"key": key, "path": value}
        target = Path(os.path.join(root, value))
        if Path(value).is_absolute() or not target.resolve().is_relative_to(root):
            out.append(
                rules.MLFLOW_PATH_ESCAPE.finding(
                    f"MLmodel {key} = {value!r} points outside the artifact; MLflow "
                    "would read it from there, unscanned",
                    MLMODEL,
                    evidence,
                )
            )
        hidden = [part for part in re.split(r"[/\\]", value) if _is_hidden(part)]
        if hidden:
            out.append(
                rules.MLFLOW_HIDDEN_PATH.finding(
                    f"MLmodel {key} = {value!r} goes through {hidden[0]!r}, a hidden name that "
                    "model signing leaves out by default: the file could be replaced after "
                    "signing",
                    MLMODEL,
                    {**evidence, "hidden": hidden},
                )
            )
    return out


def _is_hidden(part: str) -> bool:
    return part.startswith(".") and part not in (".", "..")


def _path_values(node: Any, keypath: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if str(key) not in _USER_CONFIG_KEYS:
                yield from _path_values(value, (*keypath, str(key)))
    elif isinstance(node, str) and keypath:
        key = keypath[-1]
        if key in _BASENAME_ONLY_KEYS:
            return
        if key in _PATH_KEYS or key.endswith(_PATH_SUFFIXES):
            yield keypath, node


def _code_dirs(root: Path, mlmodel: Mapping[str, Any], flavors: Mapping[str, Any]) -> list[Path]:
    """Code directories MLflow would put on sys.path, plus a root `code/` directory."""
    values = [mlmodel.get("code")] + [
        conf.get("code") for conf in flavors.values() if isinstance(conf, Mapping)
    ]
    candidates = [root / v for v in values if isinstance(v, str) and v] + [root / "code"]
    dirs: list[Path] = []
    for path in candidates:
        resolved = path.resolve()
        if (
            resolved.is_relative_to(root)
            and resolved.is_dir()
            and not path.is_symlink()
            and resolved not in dirs
        ):
            dirs.append(resolved)
    return dirs


# --- the code directory ---------------------------------------------------------------------


def _list_code_dir(code_dir: Path, cap: int) -> tuple[list[Path], bool]:
    """Files (and symlinks) under `code_dir`, not following links; True when over `cap`."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(code_dir, followlinks=False):
        base = Path(dirpath)
        dirnames.sort()
        links = [d for d in dirnames if (base / d).is_symlink()]
        for name in sorted(filenames) + links:
            found.append(base / name)
            if len(found) > cap:
                return found[:cap], True
    return found, False


def _import_name(path: Path) -> str | None:
    if path.is_dir():
        return path.name
    name = path.name
    for suffix in _IMPORTABLE_SUFFIXES:
        if name.endswith(suffix):
            # extension modules: `name.cpython-311-x86_64-linux-gnu.so` imports as `name`
            return name.split(".", 1)[0]
    return None


def _shadowing(root: Path, code_dir: Path) -> list[Finding]:
    out = []
    stdlib = {name.lower() for name in sys.stdlib_module_names}
    popular = {name.lower() for name in POPULAR_IMPORT_NAMES}
    for entry in sorted(code_dir.iterdir()):
        module = _import_name(entry)
        if module is None or module == "__init__":
            continue
        kind = (
            "standard-library module"
            if module.lower() in stdlib
            else "popular package"
            if module.lower() in popular
            else None
        )
        if kind is None:
            continue
        rel = _rel(root, entry)
        out.append(
            rules.MLFLOW_SHADOWED_MODULE.finding(
                f"{rel} shadows the {kind} {module!r}: MLflow puts the code directory first "
                "on sys.path",
                Location(rel),
                {"module": module, "shadows": kind, "code_dir": _rel(root, code_dir)},
            )
        )
    return out


def _unanalysable(
    root: Path, listing: list[Path], more: bool, cap: int, rel_dir: str
) -> list[Finding]:
    out = []
    for path in listing:
        reason = None
        if path.is_symlink():
            reason = f"a symbolic link (to {os.readlink(path)!r})"
        elif path.name.endswith(_COMPILED_SUFFIXES):
            reason = "compiled code"
        if reason:
            rel = _rel(root, path)
            out.append(_code_002(rel, f"{rel} is {reason}; it cannot be statically analysed"))
    if more:
        message = f"{rel_dir} has more than {cap} files; the rest were not analysed"
        out.append(_code_002(rel_dir, message))
    return out


def _code_002(rel: str, message: str) -> Finding:
    return rules.CODE_UNANALYSABLE.finding(message, Location(rel))


def bandit_findings(
    root: Path, files: list[Path], reviewed: ReviewedCode | None = None
) -> list[Finding]:
    """bandit (as a library, default profile, `# nosec` ignored) on `files`: SEC-CODE-001/002.
    Files already in `reviewed.files` are skipped (another engine analysed them); the rest are
    added to it. A file over MAX_CODE_BYTES is SEC-CODE-002, not read."""
    root = root.resolve()
    reviewed = reviewed if reviewed is not None else ReviewedCode()
    out = []
    readable = []
    for path in dict.fromkeys(p.resolve() for p in files):
        if path in reviewed.files:
            continue
        reviewed.files.add(path)
        size = path.stat().st_size
        if size > MAX_CODE_BYTES:
            rel = _rel(root, path)
            out.append(_code_002(rel, f"{rel} is {size} bytes, over the {MAX_CODE_BYTES}-byte "
                                      "limit for analysis; it was not read"))  # fmt: skip
        else:
            readable.append(path)
    if not readable:
        return out
    manager = bandit_manager.BanditManager(
        bandit_config.BanditConfig(), "file", quiet=True, ignore_nosec=True
    )
    manager.discover_files([str(p) for p in readable])
    manager.run_tests()
    for issue in manager.get_issue_list():
        rel = _rel(root, Path(issue.fname))
        cwe = getattr(getattr(issue, "cwe", None), "id", None)
        out.append(
            rules.CODE_BANDIT.finding(
                f"{rel}:{issue.lineno}: {issue.test_id} {issue.text}",
                Location(rel),
                {
                    "line": issue.lineno,
                    "column": issue.col_offset,
                    "test_id": issue.test_id,
                    "test_name": issue.test,
                    "bandit_severity": issue.severity,
                    "cwe": cwe,
                },
                severity=_BANDIT_SEVERITY.get(str(issue.severity).upper(), Severity.HIGH),
                confidence=str(issue.confidence).lower(),
            )
        )
    for fname, reason in manager.get_skipped():
        rel = _rel(root, Path(fname))
        out.append(_code_002(rel, f"{rel} could not be analysed by bandit ({reason})"))
    return out


# --- helpers --------------------------------------------------------------------------------


def _runs_own_code(run: _CodeRun) -> Finding:
    parts = [
        (run.code_dirs, "code directory"),
        (run.models_from_code, "models-from-code file"),
        (run.custom_modules, "custom module import"),
        (run.pickled_python_models, "cloudpickled python_model"),
    ]
    what = ", ".join(f"{len(items)} {label}(s)" for items, label in parts if items)
    what = what or ", ".join(run.code_running_loaders)
    return rules.MLFLOW_LOAD_TIME_CODE.finding(
        f"the model runs its own code at load time ({what})",
        MLMODEL,
        {
            "code_dirs": run.code_dirs,
            "code_files": run.code_files[:_EVIDENCE_LIST_CAP],
            "code_file_count": len(run.code_files),
            "models_from_code": run.models_from_code,
            "custom_modules": run.custom_modules,
            "pickled_python_models": run.pickled_python_models,
            "code_running_loaders": run.code_running_loaders,
        },
    )


def _inside_file(root: Path, path: Path) -> bool:
    return path.is_file() and not path.is_symlink() and path.resolve().is_relative_to(root)


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        try:
            return path.resolve().relative_to(root).as_posix()
        except ValueError:
            return path.as_posix()
