"""Benign corpus: real artifacts written by the real libraries a model registry receives.

Why: a security gate that blocks ordinary models gets switched off. These files are what
scikit-learn, joblib, cloudpickle, skops, PyTorch, XGBoost, LightGBM, numpy, ONNX and MLflow
write in their default (and a few common non-default) modes, so the false-positive count in
`bench/scan_corpus.py` measures what users would hit. Objects with custom classes (a pickled
`nn.Module` subclass, a cloudpickled function) are not benign by our definition and are not
here; `nn.Sequential` of torch's own layers is.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.corpus import Sample, write_manifest

SEED = 7


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(200, 4))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return x, y


def _sklearn_models() -> dict[str, Any]:
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC
    from sklearn.tree import DecisionTreeRegressor

    x, y = _data()
    models: dict[str, Any] = {
        "logreg": LogisticRegression(),
        "random_forest": RandomForestClassifier(n_estimators=5, random_state=SEED),
        "pipeline_scaler_svc": Pipeline([("scale", StandardScaler()), ("svc", SVC())]),
        "gradient_boosting": GradientBoostingClassifier(n_estimators=5, random_state=SEED),
        "decision_tree_regressor": DecisionTreeRegressor(max_depth=3, random_state=SEED),
    }
    for model in models.values():
        model.fit(x, y)
    return models


def safetensors_file(tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> bytes:
    """The safetensors layout written by hand (the `safetensors` package is not installed):
    u64 LE header size, JSON header with dtype/shape/data_offsets, then the raw data."""
    dtypes = {np.dtype("float32"): "F32", np.dtype("int64"): "I64", np.dtype("float16"): "F16"}
    header: dict[str, Any] = {"__metadata__": metadata}
    data = b""
    for name, arr in tensors.items():
        raw = np.ascontiguousarray(arr).tobytes()
        header[name] = {
            "dtype": dtypes[arr.dtype],
            "shape": list(arr.shape),
            "data_offsets": [len(data), len(data) + len(raw)],
        }
        data += raw
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    return struct.pack("<Q", len(head)) + head + data


class _Writer:
    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        self.samples: list[Sample] = []

    def add(
        self, name: str, technique: str, description: str, write: Callable[[Path], Any]
    ) -> None:
        write(self.out_dir / name)
        self.samples.append(Sample(name, technique, description, False, "none"))


def _sklearn_and_joblib(w: _Writer, models: dict[str, Any]) -> None:
    import cloudpickle
    import joblib
    import skops.io as sio

    for key, model in models.items():
        w.add(f"sklearn_{key}.pkl", "benign-sklearn-pickle", f"pickle.dumps of {key}",
              lambda p, m=model: p.write_bytes(pickle.dumps(m, protocol=5)))  # fmt: skip
    w.add("sklearn_logreg_protocol2.pkl", "benign-sklearn-pickle", "pickle protocol 2",
          lambda p: p.write_bytes(pickle.dumps(models["logreg"], protocol=2)))  # fmt: skip
    rf = models["random_forest"]
    for suffix, compress in (
        ("plain.joblib", 0),
        ("zlib3.joblib", 3),
        ("gzip.joblib", ("gzip", 3)),
        ("bz2.joblib", ("bz2", 3)),
        ("xz.joblib", ("xz", 3)),
        ("lzma.joblib", ("lzma", 3)),
    ):
        w.add(f"joblib_random_forest_{suffix}", "benign-joblib", f"joblib.dump compress={compress}",
              lambda p, c=compress: joblib.dump(rf, p, compress=c))  # fmt: skip
    w.add("cloudpickle_pipeline.pkl", "benign-cloudpickle", "cloudpickle of an sklearn Pipeline",
          lambda p: p.write_bytes(cloudpickle.dumps(models["pipeline_scaler_svc"])))  # fmt: skip
    w.add("skops_logreg.skops", "benign-skops", "skops sio.dump of LogisticRegression",
          lambda p: sio.dump(models["logreg"], p))  # fmt: skip
    w.add("skops_pipeline.skops", "benign-skops", "skops sio.dump of a scaler+SVC Pipeline",
          lambda p: sio.dump(models["pipeline_scaler_svc"], p))  # fmt: skip


def _torch_net() -> Any:
    import torch
    from torch import nn

    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def _torch(w: _Writer) -> None:
    import torch

    net = _torch_net()
    sd = net.state_dict()
    w.add("torch_state_dict.pt", "benign-torch", "torch.save(state_dict) zip format",
          lambda p: torch.save(sd, p))  # fmt: skip
    w.add("torch_state_dict_legacy.pt", "benign-torch", "torch.save legacy (non-zip) format",
          lambda p: torch.save(sd, p, _use_new_zipfile_serialization=False))  # fmt: skip
    mixed = {
        "f16": torch.ones(3, dtype=torch.float16),
        "i64": torch.arange(5),
        "mask": torch.tensor([True, False]),
        "bf16": torch.zeros(2, dtype=torch.bfloat16),
    }
    w.add("torch_mixed_dtypes.pt", "benign-torch", "tensors of float16/int64/bool/bfloat16",
          lambda p: torch.save(mixed, p))  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    net(torch.ones(1, 4)).sum().backward()
    opt.step()
    ckpt = {"epoch": 3, "model": net.state_dict(), "optimizer": opt.state_dict(), "loss": 0.25}
    w.add("torch_checkpoint_with_optimizer.pt", "benign-torch", "epoch, model and Adam state",
          lambda p: torch.save(ckpt, p))  # fmt: skip
    w.add("torch_single_tensor.pth", "benign-torch", "torch.save of one tensor",
          lambda p: torch.save(torch.linspace(0, 1, 16), p))  # fmt: skip


def _gbm_and_numpy(w: _Writer) -> None:
    import lightgbm as lgb
    import xgboost as xgb

    x, y = _data()
    booster = xgb.XGBClassifier(n_estimators=5, max_depth=2, random_state=SEED).fit(x, y)
    w.add("xgboost_model.json", "benign-xgboost", "XGBoost native JSON",
          lambda p: booster.save_model(str(p)))  # fmt: skip
    w.add("xgboost_model.ubj", "benign-xgboost", "XGBoost native UBJSON",
          lambda p: booster.save_model(str(p)))  # fmt: skip
    lgbm = lgb.LGBMClassifier(n_estimators=5, random_state=SEED, verbose=-1).fit(x, y)
    w.add("lightgbm_model.txt", "benign-lightgbm", "LightGBM native text model",
          lambda p: lgbm.booster_.save_model(str(p)))  # fmt: skip
    w.add("numpy_float.npy", "benign-numpy", "float64 array",
          lambda p: np.save(p, x))  # fmt: skip
    w.add("numpy_int.npy", "benign-numpy", "int64 array",
          lambda p: np.save(p, y))  # fmt: skip
    w.add("numpy_arrays.npz", "benign-numpy", "np.savez of two arrays",
          lambda p: np.savez(p, x=x, y=y))  # fmt: skip
    w.add("numpy_arrays_compressed.npz", "benign-numpy", "np.savez_compressed",
          lambda p: np.savez_compressed(p, x=x, y=y))  # fmt: skip


def _formats(w: _Writer) -> None:
    from onnx import TensorProto, helper

    sd = {k: v.detach().numpy() for k, v in _torch_net().state_dict().items()}
    w.add("safetensors_state_dict.safetensors", "benign-safetensors", "F32 tensors + metadata",
          lambda p: p.write_bytes(safetensors_file(sd, {"format": "pt"})))  # fmt: skip
    mixed = {"ids": np.arange(6, dtype=np.int64), "half": np.ones(4, dtype=np.float16)}
    w.add("safetensors_mixed.safetensors", "benign-safetensors", "I64 and F16 tensors",
          lambda p: p.write_bytes(safetensors_file(mixed, {})))  # fmt: skip
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 2], [0.1] * 8)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y],
                              initializer=[weight])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    w.add("onnx_matmul.onnx", "benign-onnx", "onnx.helper MatMul model, default domain",
          lambda p: p.write_bytes(model.SerializeToString()))  # fmt: skip


def _mlflow(w: _Writer, models: dict[str, Any]) -> None:
    # MLflow 3 may send usage telemetry; the corpus is built offline.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    import lightgbm as lgb
    import mlflow.lightgbm
    import mlflow.pytorch
    import mlflow.sklearn
    import mlflow.xgboost
    import xgboost as xgb

    x, y = _data()
    w.add("mlflow_sklearn_pickle", "benign-mlflow", "mlflow.sklearn.save_model pickle format",
          lambda p: mlflow.sklearn.save_model(models["random_forest"], p,
                                              serialization_format="pickle"))  # fmt: skip
    w.add("mlflow_sklearn_cloudpickle", "benign-mlflow", "mlflow.sklearn cloudpickle format",
          lambda p: mlflow.sklearn.save_model(models["pipeline_scaler_svc"], p,
                                              serialization_format="cloudpickle"))  # fmt: skip
    w.add("mlflow_sklearn_skops", "benign-mlflow", "mlflow.sklearn skops format (default)",
          lambda p: mlflow.sklearn.save_model(models["logreg"], p,
                                              serialization_format="skops"))  # fmt: skip
    booster = xgb.XGBClassifier(n_estimators=5, max_depth=2, random_state=SEED).fit(x, y)
    w.add("mlflow_xgboost", "benign-mlflow", "mlflow.xgboost: pyfunc from the xgboost flavor",
          lambda p: mlflow.xgboost.save_model(booster, p))  # fmt: skip
    lgbm = lgb.LGBMClassifier(n_estimators=5, random_state=SEED, verbose=-1).fit(x, y)
    w.add("mlflow_lightgbm", "benign-mlflow", "mlflow.lightgbm: pyfunc from the lightgbm flavor",
          lambda p: mlflow.lightgbm.save_model(lgbm, p))  # fmt: skip
    w.add("mlflow_pytorch_pickle", "benign-mlflow",
          "mlflow.pytorch pickle format: nn.Sequential(Linear, ReLU, Linear)",
          lambda p: mlflow.pytorch.save_model(_torch_net(), p,
                                              serialization_format="pickle"))  # fmt: skip
    example = np.ones((1, 4), dtype=np.float32)
    w.add("mlflow_pytorch_pt2", "benign-mlflow", "mlflow.pytorch pt2 format (the 3.17 default)",
          lambda p: mlflow.pytorch.save_model(_torch_net(), p, serialization_format="pt2",
                                              input_example=example))  # fmt: skip


def build_benign_corpus(out_dir: Path) -> list[Sample]:
    """Write every benign artifact under `out_dir` and a `manifest.json`.

    Deterministic (seeded data and models) so a false positive can be reproduced.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    w = _Writer(out_dir)
    models = _sklearn_models()
    _sklearn_and_joblib(w, models)
    _torch(w)
    _gbm_and_numpy(w)
    _formats(w)
    _mlflow(w, models)
    write_manifest(out_dir, w.samples, kind="benign")
    return w.samples
