"""A failing security gate keeps the model from ever being loaded: every model-loading gate
the policy enables is recorded as `skipped`, and the run fails on the security finding."""

from __future__ import annotations

import time
from pathlib import Path

from gates.base import GateContext
from service.demo_models import MLMODEL_SKLEARN_PICKLE, malicious_pickle
from service.pipeline import MODEL_LOADING_GATES, Deadline, _security_stage
from service.policy import ModelPolicy, decide


def test_security_failure_skips_model_loading_gates(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "MLmodel").write_text(MLMODEL_SKLEARN_PICKLE)
    (model_dir / "model.pkl").write_bytes(malicious_pickle(tmp_path / "MARKER"))
    policy = ModelPolicy(gates={g: {"mode": "enforce"} for g in ("security", *MODEL_LOADING_GATES)})

    deadline = Deadline(time.monotonic() + 300, 300)
    stage = _security_stage(GateContext(artifact_dir=model_dir), policy, "test-run", deadline)
    results = [r.to_dict() for r in stage]

    by_gate = {r["gate"]: r for r in results}
    assert by_gate["security"]["status"] == "fail"
    assert {g: by_gate[g]["status"] for g in MODEL_LOADING_GATES} == dict.fromkeys(
        MODEL_LOADING_GATES, "skipped"
    )
    assert decide(results, policy).status == "failed"
    assert not (tmp_path / "MARKER").exists()
