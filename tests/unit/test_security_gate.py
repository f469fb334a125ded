"""The security gate on real files: clean models pass, payloads fail, unscannable errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from demo.models import MLMODEL_SKLEARN_PICKLE, malicious_pickle
from gates.base import GateContext, Severity, Status
from gates.security import check
from gates.security.config import SecurityConfig


def _model_dir(tmp_path: Path, payload: bytes, name: str = "model.pkl") -> Path:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text(MLMODEL_SKLEARN_PICKLE)
    (model_dir / name).write_bytes(payload)
    return model_dir


def test_sklearn_pickle_passes(tmp_path: Path) -> None:
    features = np.random.default_rng(1).normal(size=(30, 2))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    result = check(
        GateContext(artifact_dir=_model_dir(tmp_path, pickle.dumps(model))), SecurityConfig()
    )
    assert result.status == Status.PASS, result.message
    formats = {(c["file"], c["format"]) for c in result.evidence["coverage"]}
    assert ("model.pkl", "pickle") in formats


def test_os_system_pickle_fails_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    result = check(
        GateContext(artifact_dir=_model_dir(tmp_path, malicious_pickle(marker))), SecurityConfig()
    )
    assert result.status == Status.FAIL
    ours = [f for f in result.findings if f.rule_id == "SEC-PICKLE-001"]
    assert len(ours) == 1
    assert ours[0].severity == Severity.CRITICAL
    assert ours[0].file == "model.pkl"
    assert ours[0].evidence["callable"] == "os.system"
    # modelscan, kept as a second opinion, agrees
    assert any(f.rule_id == "SEC-MODELSCAN-001" for f in result.findings)
    assert not marker.exists()


def test_fail_at_critical_lets_high_through_but_not_critical(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    ctx = GateContext(artifact_dir=_model_dir(tmp_path, malicious_pickle(marker)))
    assert check(ctx, SecurityConfig(fail_at=Severity.CRITICAL)).status == Status.FAIL


def test_nothing_scannable_is_an_error_not_a_pass(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    result = check(GateContext(artifact_dir=model_dir), SecurityConfig())
    assert result.status == Status.ERROR
    assert "nothing" in result.message


def test_unparseable_pickle_is_not_a_pass(tmp_path: Path) -> None:
    result = check(
        GateContext(artifact_dir=_model_dir(tmp_path, b"\x80\x05\x95garbage")), SecurityConfig()
    )
    assert result.status == Status.FAIL, result.message
    assert any(f.rule_id == "SEC-PICKLE-004" for f in result.findings)
