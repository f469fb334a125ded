"""Keras configs (SEC-KERAS-*) in .keras v3 archives and legacy .h5 files: dense models pass,
Lambda layers and callables outside Keras are caught, unreadable inputs fail closed.

Every malicious sample is built from bytes, JSON or protobuf fields; none is ever loaded by
the library it targets.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest

from gates.base import Severity
from gates.security.common import Limits, Location
from gates.security.formats import keras
from tests.unit.format_helpers import POLICY, lambda_bytecode, one_finding, rule_pairs


def _ref(module: str, class_name: str, config: Any, registered: Any = None) -> dict[str, Any]:
    return {
        "module": module,
        "class_name": class_name,
        "config": config,
        "registered_name": registered,
    }


def _dense(name: str, **extra: Any) -> dict[str, Any]:
    cfg = {
        "name": name,
        "units": 4,
        "activation": "relu",
        "kernel_initializer": _ref("keras.initializers", "GlorotUniform", {"seed": None}),
        "dtype": _ref("keras", "DTypePolicy", {"name": "float32"}),
        **extra,
    }
    return {**_ref("keras.layers", "Dense", cfg), "build_config": {"input_shape": [None, 3]}}


def _sequential(*layers: dict[str, Any], name: str = "sequential") -> dict[str, Any]:
    return _ref("keras", "Sequential", {"name": name, "layers": list(layers)})


def _benign_config() -> dict[str, Any]:
    model = _sequential(_dense("dense"), _dense("dense_1"))
    model["compile_config"] = {
        "optimizer": _ref("keras.optimizers", "Adam", {"learning_rate": 0.001}),
        "loss": _ref("keras.losses", "function", "mean_squared_error", "mean_squared_error"),
        "metrics": ["mae"],
    }
    return model


def _keras_v3_archive(tmp_path: Path, config: dict[str, Any]) -> Path:
    weights = tmp_path / "model.weights.h5"
    with h5py.File(weights, "w") as h5:
        h5.create_dataset("layers/dense/vars/0", data=np.ones((3, 4), dtype="f4"))
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("config.json", json.dumps(config))
        zf.writestr("metadata.json", json.dumps({"keras_version": "3.6.0", "date_saved": "x"}))
        zf.write(weights, "model.weights.h5")
    return path


def test_keras_v3_archive_with_dense_layers_is_clean(tmp_path: Path) -> None:
    path = _keras_v3_archive(tmp_path, _benign_config())
    with zipfile.ZipFile(path) as zf:
        assert keras.looks_like_keras_v3(zf.namelist())
        config = zf.read("config.json")
        weights = tmp_path / "extracted.weights.h5"
        weights.write_bytes(zf.read("model.weights.h5"))
    assert keras.scan_keras_json(config, Location("model.keras").child("config.json"), POLICY) == []
    assert keras.looks_like_hdf5(weights.read_bytes()[:8])
    assert keras.scan_h5(weights, Location("w.h5"), POLICY, Limits()) == []


def test_legacy_h5_with_dense_layers_is_clean(tmp_path: Path) -> None:
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "legacy",
            "layers": [{"class_name": "Dense", "config": {"name": "d", "units": 2}}],
        },
    }
    training = {"loss": "mse", "optimizer_config": {"class_name": "Adam", "config": {}}}
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(config)  # stored as a variable-length str
        h5.attrs["training_config"] = json.dumps(training).encode()
        h5.create_dataset("model_weights/d/kernel", data=np.ones((2, 2)))
    assert keras.scan_h5(path, Location("legacy.h5"), POLICY, Limits()) == []


def test_lambda_layer_nested_in_wrappers_is_critical(tmp_path: Path) -> None:
    lam = _ref(
        "keras.layers",
        "Lambda",
        {
            "name": "sneaky",
            "function": {
                "class_name": "__lambda__",
                "config": {"code": lambda_bytecode(), "defaults": None, "closure": None},
            },
        },
    )
    inner = _sequential(_dense("d"), lam, name="inner")
    wrapped = _ref("keras.layers", "TimeDistributed", {"name": "td", "layer": inner})
    functional = _ref(
        "keras", "Functional", {"name": "outer", "layers": [_dense("first"), wrapped]}
    )
    findings = keras.scan_keras_config(functional, Location("model.keras"), POLICY)
    hit = one_finding(findings, "SEC-KERAS-001")
    assert hit.severity == Severity.CRITICAL
    assert hit.evidence["layer"] == "sneaky"
    assert hit.evidence["config_path"] == "$.config.layers[1].config.layer.config.layers[1]"
    assert hit.evidence["function_kind"] == "marshaled bytecode (base64)"
    assert "system" in hit.evidence["bytecode_strings"]
    assert len(findings) == 1


def test_legacy_h5_with_lambda_and_os_system_reference(tmp_path: Path) -> None:
    config = {
        "class_name": "Sequential",
        "config": {
            "name": "legacy",
            "layers": [
                {"class_name": "Dense", "config": {"name": "dense", "units": 2}},
                {
                    "class_name": "Lambda",
                    "config": {
                        "name": "code",
                        "function": [lambda_bytecode(), None, None],
                        "function_type": "lambda",
                        "module": "__main__",
                    },
                },
                {
                    "class_name": "Lambda",
                    "config": {
                        "name": "raw",
                        "function": "system",
                        "function_type": "raw",
                        "module": "os",
                    },
                },
            ],
        },
    }
    path = tmp_path / "legacy.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = json.dumps(config).encode()
        h5.attrs["keras_version"] = b"2.12.0"
        h5.create_dataset("model_weights/dense/kernel", data=np.ones((2, 2)))
    findings = keras.scan_h5(path, Location("legacy.h5"), POLICY, Limits())
    lambdas = [f for f in findings if f.rule_id == "SEC-KERAS-001"]
    assert sorted(f.evidence["layer"] for f in lambdas) == ["code", "raw"]
    assert {f.evidence["function_kind"] for f in lambdas} == {
        "marshaled bytecode (base64)",
        "module reference os.system",
    }
    ref = one_finding(findings, "SEC-KERAS-002")
    assert (ref.severity, ref.evidence["callable"]) == (Severity.CRITICAL, "os.system")
    assert all(f.evidence["hdf5_attribute"] == "model_config" for f in findings)


@pytest.mark.parametrize(
    ("entry", "rule", "severity", "name"),
    [
        (_ref("builtins", "function", "eval"), "SEC-KERAS-002", Severity.CRITICAL, "builtins.eval"),
        (
            _ref("subprocess", "Popen", {"args": "id"}),
            "SEC-KERAS-002",
            Severity.CRITICAL,
            "subprocess.Popen",
        ),
        (
            _ref("my_pkg.acts", "function", "swishy", "my_pkg>swishy"),
            "SEC-KERAS-002",
            Severity.HIGH,
            "my_pkg.acts.swishy",
        ),
        (
            _ref("keras.utils", "function", "get_file"),
            "SEC-KERAS-002",
            Severity.CRITICAL,
            "keras.utils.get_file",
        ),
        (
            _ref("keras.layers", "TFSMLayer", {"filepath": "/tmp/x"}),
            "SEC-KERAS-002",
            Severity.CRITICAL,
            "keras.layers.TFSMLayer",
        ),
        (
            _ref("my_pkg.layers", "MyLayer", {}, "my_pkg>MyLayer"),
            "SEC-KERAS-003",
            Severity.MEDIUM,
            "my_pkg.layers.MyLayer",
        ),
        (
            {"class_name": "MyLayer", "config": {}, "registered_name": "Custom>MyLayer"},
            "SEC-KERAS-003",
            Severity.MEDIUM,
            "Custom>MyLayer",
        ),
        (
            {"class_name": "LossWrapper", "config": {"fn": "os.system"}},
            "SEC-KERAS-002",
            Severity.CRITICAL,
            "os.system",
        ),
    ],
)
def test_keras_references_outside_keras(
    entry: dict[str, Any], rule: str, severity: Severity, name: str
) -> None:
    config = _sequential(_dense("d", activation=entry))
    findings = keras.scan_keras_config(config, Location("config.json"), POLICY)
    hit = one_finding(findings, rule)
    assert hit.severity == severity
    assert name in (hit.evidence.get("callable"), hit.evidence.get("object"))
    assert hit.evidence["config_path"].startswith("$.config.layers[0].config.activation")


def test_keras_unreadable_inputs_fail_closed(tmp_path: Path) -> None:
    assert rule_pairs(keras.scan_keras_json(b"{oops", Location("c"), POLICY)) == [
        ("SEC-KERAS-004", Severity.HIGH)
    ]
    fake = tmp_path / "fake.h5"
    fake.write_bytes(keras.HDF5_MAGIC + b"\0" * 100)
    assert rule_pairs(keras.scan_h5(fake, Location("fake.h5"), POLICY, Limits())) == [
        ("SEC-KERAS-004", Severity.HIGH)
    ]
    path = tmp_path / "notjson.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = b"not json"
    assert rule_pairs(keras.scan_h5(path, Location("n.h5"), POLICY, Limits())) == [
        ("SEC-KERAS-004", Severity.HIGH)
    ]


def test_hdf5_sniff() -> None:
    assert keras.looks_like_hdf5(keras.HDF5_MAGIC + b"\0")
    assert keras.looks_like_hdf5(b"\0" * 512 + keras.HDF5_MAGIC)
    assert not keras.looks_like_hdf5(b"PK\x03\x04" + b"\0" * 16)


# -- tensorflow (protobufs encoded by hand) ---------------------------------------------
