"""Example models for `make demo` and the tests: a clean sklearn model and a booby-trapped one.

The malicious model's pickle is written opcode by opcode; nothing here ever unpickles it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

MLMODEL_SKLEARN_PICKLE = """\
flavors:
  python_function:
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: 3.11.7
  sklearn:
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.6.1
"""


def malicious_pickle(marker: Path) -> bytes:
    """Protocol-0 opcodes for `os.system("touch MARKER")`: written by hand, never loaded."""
    command = f"touch {marker}".replace("\\", "\\\\").replace("'", "\\'")
    return b"cos\nsystem\n(S'" + command.encode() + b"'\ntR."


def log_clean_model(tracking_uri: str, name: str, extra_bytes: int = 0) -> int:
    """A real sklearn model logged with the sklearn flavor (pickle format) and registered."""
    import mlflow
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    mlflow.set_tracking_uri(tracking_uri)
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 3))
    model = LogisticRegression().fit(features, (features[:, 0] > 0).astype(int))
    with mlflow.start_run():
        if extra_bytes:
            with tempfile.TemporaryDirectory() as tmp:
                blob = Path(tmp) / "weights-shard.bin"
                blob.write_bytes(os.urandom(extra_bytes))
                mlflow.log_artifact(str(blob), "extra")
        info = mlflow.sklearn.log_model(
            model, name="model", registered_model_name=name, serialization_format="pickle"
        )
    return int(info.registered_model_version)


def log_malicious_model(tracking_uri: str, name: str, marker: Path) -> int:
    """An MLflow sklearn-format model whose model.pkl would run `touch marker` if unpickled."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = Path(tmp) / "model"
        model_dir.mkdir()
        (model_dir / "MLmodel").write_text(MLMODEL_SKLEARN_PICKLE)
        (model_dir / "model.pkl").write_bytes(malicious_pickle(marker))
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(model_dir), "model")
            mv = mlflow.register_model(f"runs:/{run.info.run_id}/model", name)
    return int(mv.version)
