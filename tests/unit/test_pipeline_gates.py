"""A failing security gate keeps the model from ever being loaded: every model-loading gate
the policy enables is recorded as `skipped`, and the run fails on the security finding."""

from __future__ import annotations

import time
from pathlib import Path

from demo.models import MLMODEL_SKLEARN_PICKLE, malicious_pickle
from gates.base import GateContext, GateMode, Status
from gates.fairness import FairnessConfig
from gates.performance import PerformanceConfig
from gates.robustness import RobustnessConfig
from service.decision.verdict import decide
from service.policy import ModelPolicy
from service.runs.pipeline import MODEL_LOADING_GATES, Deadline, _security_stage
from service.store.tables import RunStatus


def test_security_failure_skips_model_loading_gates(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text(MLMODEL_SKLEARN_PICKLE)
    (model_dir / "model.pkl").write_bytes(malicious_pickle(tmp_path / "MARKER"))
    policy = ModelPolicy(
        performance=PerformanceConfig(),
        fairness=FairnessConfig(sensitive_features=["gender"]),
        robustness=RobustnessConfig(mode=GateMode.ENFORCE),
    )

    deadline = Deadline(time.monotonic() + 300, 300)
    stage = _security_stage(GateContext(artifact_dir=model_dir), policy, "test-run", deadline)
    by_gate = {r.gate: r for r in stage}
    assert by_gate["security"].status == Status.FAIL
    assert {g: by_gate[g].status for g in MODEL_LOADING_GATES} == dict.fromkeys(
        MODEL_LOADING_GATES, Status.SKIPPED
    )
    assert decide(stage, policy).status == RunStatus.FAILED
    assert not (tmp_path / "MARKER").exists()
