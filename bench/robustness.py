"""The robustness gate against `giskard.scan` alone, on the same model and rows, in one run.

For each sample size (1,000 and 5,000 evaluation rows of tests/synthetic_credit.py, a
scikit-learn pipeline saved as an MLflow model):

- `giskard.scan alone`: the peer in this process, giskard already imported, the model already
  in memory, detectors `robustness` (the gate's default); and the same plus `import giskard`
  in a fresh interpreter, as a CI job that runs the scan pays it.
- `gate`: what the robustness gate adds to a run: plan the flip and trigger probes, the
  candidate answers them mixed among the evaluation rows in its sandbox call (bubblewrap),
  then Giskard scans it in that same process (the labels sent only once the answers are
  out), judge. Measured as that call minus the evaluation call alone, plus planning and
  judging; median of 3 interleaved pairs.

Prints one table and the ratio gate / giskard-alone; the goal is at most 1.2.

    .venv/bin/python -m bench.robustness [ROWS ...]
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["GSK_DISABLE_ANALYTICS"] = "true"  # before giskard is imported

import giskard
import mlflow
import numpy as np
import pandas as pd

from gates import robustness
from gates.evaluation import ModelOutputs, Task
from service.sandbox.runner import GiskardRequest, Predictions, SandboxLimits, predict_in_sandbox
from tests.synthetic_credit import NUMERIC_FEATURES, TARGET, make_credit_data, train_model

FEATURES = [*NUMERIC_FEATURES, "gender"]
REPEATS = 3


def _outputs(p: Predictions) -> ModelOutputs:
    scores = np.asarray(p.scores, dtype=float) if p.scores is not None else None
    return ModelOutputs(np.asarray(p.predictions), scores, p.classes)


def giskard_alone(model: object, rows: pd.DataFrame) -> float:
    started = time.perf_counter()
    wrapped = giskard.Model(
        model=lambda df: model.predict_proba(df[FEATURES]),  # type: ignore[attr-defined]
        model_type="classification",
        classification_labels=list(model.classes_),  # type: ignore[attr-defined]
        feature_names=FEATURES,
    )
    dataset = giskard.Dataset(df=rows, target=TARGET, cat_columns=["gender"])
    giskard.scan(wrapped, dataset, only=["robustness"], raise_exceptions=False, verbose=False)
    return time.perf_counter() - started


def giskard_import_seconds() -> float:
    """`import giskard` in a fresh interpreter (what a CI step running the scan pays)."""
    code = "import time; t = time.perf_counter(); import giskard; print(time.perf_counter() - t)"
    env = {**os.environ, "GSK_DISABLE_ANALYTICS": "true"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    return float(out.stdout.strip().splitlines()[-1])


def gate(
    model_dir: Path, rows: pd.DataFrame, training: pd.DataFrame, work: Path
) -> tuple[float, robustness.RobustnessConfig]:
    """The candidate's sandbox call on the evaluation rows alone (the baseline)."""
    config = robustness.RobustnessConfig(sample_rows=len(rows), giskard_sample_rows=len(rows))
    features = rows[FEATURES]
    limits = SandboxLimits(wall_seconds=900)
    started = time.perf_counter()
    predict_in_sandbox(model_dir, features, limits=limits, workdir=work / "plain")
    return time.perf_counter() - started, config


def gate_added(model_dir: Path, rows: pd.DataFrame, training: pd.DataFrame, work: Path) -> float:
    """Median over REPEATS of (call with probes and scan) - (call without), interleaved."""
    added = []
    for i in range(REPEATS):
        without, config = gate(model_dir, rows, training, work / f"{i}")
        added.append(_with(model_dir, rows, training, work / f"{i}", config) - without)
    return statistics.median(added)


def _with(
    model_dir: Path,
    rows: pd.DataFrame,
    training: pd.DataFrame,
    work: Path,
    config: robustness.RobustnessConfig,
) -> float:
    features = rows[FEATURES]
    limits = SandboxLimits(wall_seconds=900)
    started = time.perf_counter()
    plan = robustness.plan_probes(features, FEATURES, config, training[FEATURES],
                                  task=Task.CLASSIFICATION)  # fmt: skip
    request = GiskardRequest(
        target_values=rows[TARGET].tolist(), task="classification", cat_columns=["gender"],
        detectors=["robustness"], row_indices=list(range(len(rows))), budget_s=600.0,
    )  # fmt: skip
    answered = predict_in_sandbox(model_dir, plan.batch(features), limits=limits,
                                  workdir=work / "with", n_primary=len(features),
                                  giskard=request)  # fmt: skip
    assert answered.extra_predictions is not None and answered.giskard is not None
    assert answered.giskard.error is None, answered.giskard
    result = robustness.judge(plan, _outputs(answered).predictions,
                              np.asarray(answered.extra_predictions), Task.CLASSIFICATION,
                              config)  # fmt: skip
    robustness.merge(result, answered.giskard, config)
    return time.perf_counter() - started


def main(sizes: list[int]) -> None:
    training = make_credit_data(n=5000, seed=1)[[*FEATURES, TARGET]]
    model = train_model(training)
    with tempfile.TemporaryDirectory(prefix="bench-robustness-") as tmp:
        root = Path(tmp)
        model_dir = root / "model"
        mlflow.sklearn.save_model(model, model_dir, serialization_format="pickle")
        imported = giskard_import_seconds()
        print(
            "| rows | giskard.scan alone (s) | + import giskard (s) | robustness gate (s) "
            "| gate / scan | gate / (import + scan) |"
        )
        print("|---|---|---|---|---|---|")
        for n in sizes:
            rows = make_credit_data(n=n, seed=2)[[*FEATURES, TARGET]]
            alone = giskard_alone(model, rows)
            ours = gate_added(model_dir, rows, training, root / f"work-{n}")
            cold = alone + imported
            print(
                f"| {n:,} | {alone:.2f} | {cold:.2f} | {ours:.2f} | {ours / alone:.1f}x "
                f"| {ours / cold:.2f}x |"
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [1000, 5000])
