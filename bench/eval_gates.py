"""Time of the evaluation gates on a 5,000-row evaluation set, stage by stage.

A real scikit-learn pipeline (tests/synthetic_credit.py) saved as an MLflow model, loaded
only in the sandbox (service/sandbox.py: scrubbed env, rlimits, `unshare --net`), then the
performance gate (candidate and champion on the same rows) and the fairness gate (fairlearn,
200 bootstrap resamples). Prints one table; the sandbox's own timings come from its evidence.

    .venv/bin/python -m bench.eval_gates [ROWS]
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np

from gates import fairness, performance
from gates.base import GateContext
from gates.evaluation import EvaluationData, ModelOutputs, infer_task
from service.sandbox import Predictions, SandboxLimits, predict_in_sandbox
from tests.synthetic_credit import TARGET, make_credit_data, train_model


def _outputs(p: Predictions) -> ModelOutputs:
    scores = np.asarray(p.scores, dtype=float) if p.scores is not None else None
    return ModelOutputs(np.asarray(p.predictions), scores, p.classes)


def main(rows: int = 5000) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    frame = make_credit_data(n=rows, seed=21)
    candidate_dir, champion_dir = root / "candidate", root / "champion"
    mlflow.sklearn.save_model(
        train_model(make_credit_data(n=5000, seed=1, biased=True)),
        candidate_dir,
        serialization_format="pickle",
    )
    mlflow.sklearn.save_model(
        train_model(make_credit_data(n=5000, seed=2), include_gender=False),
        champion_dir,
        serialization_format="pickle",
    )
    features = frame.drop(columns=[TARGET])
    limits = SandboxLimits()
    started = time.perf_counter()
    candidate = predict_in_sandbox(candidate_dir, features, limits=limits, workdir=root / "s1")
    candidate_s = time.perf_counter() - started
    started = time.perf_counter()
    champion = predict_in_sandbox(champion_dir, features, limits=limits, workdir=root / "s2")
    champion_s = time.perf_counter() - started
    data = EvaluationData(
        frame=frame,
        target=TARGET,
        task=infer_task(frame[TARGET]),
        candidate=_outputs(candidate),
        champion=_outputs(champion),
        champion_version="1",
    )
    ctx = GateContext(artifact_dir=candidate_dir, datasets={"evaluation": data})
    perf = performance.check(ctx, {"mode": "enforce", "max_regression": {"accuracy": 0.02}})
    fair = fairness.check(
        ctx, {"mode": "enforce", "sensitive_features": ["gender", "age_band"], "bootstrap": 200}
    )
    timings = candidate.evidence["timings_s"]
    print(f"| stage ({rows} rows) | seconds |")
    print("|---|---|")
    for stage in ("start", "rows", "import", "load", "predict"):
        print(f"| sandbox: {stage} | {timings.get(stage, float('nan')):.3f} |")
    print(f"| sandbox: candidate total (parent wall) | {candidate_s:.3f} |")
    print(f"| sandbox: champion total (parent wall) | {champion_s:.3f} |")
    print(f"| performance gate (candidate + champion metrics) | {perf.duration_s:.3f} |")
    print(f"| fairness gate (2 features, 200 bootstrap) | {fair.duration_s:.3f} |")
    total = candidate_s + champion_s + perf.duration_s + fair.duration_s
    print(f"| total | {total:.3f} |")
    print(f"\nverdicts: performance={perf.status.value}, fairness={fair.status.value}")
    isolated = candidate.evidence.get("network_isolated")
    print(f"network isolated: {isolated} ({candidate.evidence.get('network_isolation')})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
