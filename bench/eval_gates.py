"""Time of the evaluation gates on a 5,000-row evaluation set, stage by stage.

A real scikit-learn pipeline (tests/synthetic_credit.py) saved as an MLflow model, loaded
only in the sandbox (service/sandbox/runner.py: bubblewrap), then the performance gate
(candidate and champion on the same rows) and the fairness gate (fairlearn, 200 bootstrap
resamples). Prints one table; the sandbox's own timings come from its evidence.

A second table puts the sandbox start (spawn to the child's first word, which includes the
parent's isolation checks and limits) with bubblewrap next to the previous sandbox's way of
starting (`unconfined`: scrubbed environment and rlimits, the same child, no namespaces; main
before bubblewrap also prefixed `unshare --net`, whose own cost is measured on its own), the
median of REPEATS starts of the same model in the same run.

    .venv/bin/python -m bench.eval_gates [ROWS] [REPEATS]
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlflow
import numpy as np

from gates import fairness, performance
from gates.base import GateContext
from gates.evaluation import EvaluationData, ModelOutputs, infer_task
from gates.fairness import FairnessConfig
from gates.performance import PerformanceConfig
from service.sandbox.isolation import IsolationConfig
from service.sandbox.runner import Predictions, SandboxLimits, predict_in_sandbox
from tests.synthetic_credit import TARGET, make_credit_data, train_model


def _outputs(p: Predictions) -> ModelOutputs:
    scores = np.asarray(p.scores, dtype=float) if p.scores is not None else None
    return ModelOutputs(np.asarray(p.predictions), scores, p.classes)


def _start_seconds(model_dir: Path, features: object, mode: str, root: Path) -> float:
    result = predict_in_sandbox(
        model_dir,
        features,  # type: ignore[arg-type]
        limits=SandboxLimits(),
        workdir=root / f"start-{mode}",
        isolation=IsolationConfig(mode=mode),
    )
    return float(result.evidence["timings_s"]["start"])


def _unshare_net_seconds(repeats: int) -> float | None:
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    samples = []
    for _ in range(repeats):
        began = time.perf_counter()
        subprocess.run([unshare, "--net", "true"], check=True)
        with_ns = time.perf_counter() - began
        began = time.perf_counter()
        subprocess.run(["true"], check=True)
        samples.append(with_ns - (time.perf_counter() - began))
    return statistics.median(samples)


def sandbox_start(model_dir: Path, features: object, root: Path, repeats: int) -> None:
    starts = {mode: [] for mode in ("unconfined", "bwrap")}
    for _ in range(repeats):  # interleaved, so both see the same machine state
        for mode, samples in starts.items():
            samples.append(_start_seconds(model_dir, features, mode, root))
    bwrap, before = statistics.median(starts["bwrap"]), statistics.median(starts["unconfined"])
    unshare = _unshare_net_seconds(repeats)
    print(f"\n| sandbox start, median of {repeats} | seconds |")
    print("|---|---|")
    print(f"| previous way (scrubbed env + rlimits, no namespaces) | {before:.3f} |")
    if unshare is not None:
        print(f"| + `unshare --net` as main had it (measured alone) | {unshare:.3f} |")
    print(f"| bubblewrap (7 namespaces, checks, limits, cgroup) | {bwrap:.3f} |")
    print(f"| added by bubblewrap over the previous way | {bwrap - before:.3f} |")
    if unshare is not None:
        print(f"| added over main's `unshare --net` start | {bwrap - before - unshare:.3f} |")


def main(rows: int = 5000, repeats: int = 5) -> None:
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
    perf = performance.check(ctx, PerformanceConfig(max_regression={"accuracy": 0.02}))
    fair = fairness.check(
        ctx, FairnessConfig(sensitive_features=["gender", "age_band"], bootstrap=200)
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
    print(f"sandbox namespaces: {candidate.evidence.get('namespaces')}")
    sandbox_start(candidate_dir, features, root, repeats)


if __name__ == "__main__":
    main(
        int(sys.argv[1]) if len(sys.argv) > 1 else 5000,
        int(sys.argv[2]) if len(sys.argv) > 2 else 5,
    )
