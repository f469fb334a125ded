"""The security gate on the whole corpus, in process: what `bench/scan_corpus.py` measures
against modelscan and picklescan, held here as a bar.

- detection: at least 97% of the malicious samples (written from opcodes and format bytes
  from the public technique classes) fail or error the gate;
- false positives: none of the benign artifacts made by the real libraries (sklearn, joblib,
  cloudpickle, skops, torch, xgboost, lightgbm, numpy, safetensors, ONNX, MLflow flavors);
- nothing executes: no payload's marker file exists afterwards, and scanning imported none of
  the modules the payloads name.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from gates.base import Status
from gates.security import scan_path
from gates.security.config import SecurityConfig
from tests.corpus import Sample
from tests.corpus.benign import build_benign_corpus
from tests.corpus.malicious import build_malicious_corpus

# `make test-fast` leaves these out: scans the whole malicious and benign corpus
pytestmark = pytest.mark.slow

GADGET_MODULES = {
    "pty", "pdb", "bdb", "runpy", "timeit", "ensurepip", "pydoc", "webbrowser", "code",
    "codeop", "cProfile", "profile", "trace", "telnetlib", "ftplib", "smtplib", "dill",
    "mailcap", "idlelib", "lib2to3", "turtle", "tkinter",
}  # fmt: skip


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[Sample], Path]:
    root = tmp_path_factory.mktemp("corpus")
    markers = root / "markers"
    markers.mkdir()
    malicious = build_malicious_corpus(root / "malicious", markers)
    return root, markers, malicious, root / "benign"


def test_detects_at_least_97_percent_and_runs_nothing(corpus: tuple) -> None:
    root, markers, samples, _ = corpus
    assert len(samples) >= 100
    modules_before = set(sys.modules)
    missed = []
    for sample in samples:
        result = scan_path(root / "malicious" / sample.path, SecurityConfig(modelscan=False))
        if result.status not in (Status.FAIL, Status.ERROR):
            missed.append(f"{sample.technique}: {sample.path}")
    rate = 1 - len(missed) / len(samples)
    print(f"detected {len(samples) - len(missed)}/{len(samples)} ({rate:.1%}); missed: {missed}")
    assert rate >= 0.97, missed
    assert list(markers.iterdir()) == [], "a payload ran during the scan"
    imported = (set(sys.modules) - modules_before) & GADGET_MODULES
    assert not imported, f"scanning imported modules named by pickles: {imported}"


def test_no_false_positive_on_benign_artifacts(corpus: tuple) -> None:
    *_, benign_dir = corpus
    samples = build_benign_corpus(benign_dir)
    assert len(samples) >= 25
    flagged = {}
    for sample in samples:
        result = scan_path(benign_dir / sample.path, SecurityConfig(modelscan=False))
        if result.status != Status.PASS:
            flagged[sample.path] = [(f.rule_id, f.message) for f in result.findings[:3]] or [
                result.message
            ]
    assert flagged == {}
