"""Format parsers on real files made here: benign ones pass, crafted ones are caught.

Every malicious sample is built from bytes, JSON or protobuf fields; none is ever loaded by
the library it targets. Pickle payloads are hand-written opcodes.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import time
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gates.base import Finding, Severity
from gates.security.callables import CallablePolicy
from gates.security.common import Limits, Location, ScanLimitExceeded, finding
from gates.security.formats import keras, numpy_files, onnx_format, safetensors, skops
from gates.security.formats import tensorflow as tf_format

POLICY = CallablePolicy()
# GLOBAL 'os system', then (cmd,) REDUCE: the classic payload, written as opcodes.
OS_SYSTEM_PICKLE = b"\x80\x04cos\nsystem\n\x8c\x0ctouch MARKER\x85R."


def _rules(findings: list[Finding]) -> list[tuple[str, Severity]]:
    return sorted((f.rule_id, f.severity) for f in findings)


def _one(findings: list[Finding], rule: str) -> Finding:
    matching = [f for f in findings if f.rule_id == rule]
    assert len(matching) == 1, [f.to_dict() for f in findings]
    return matching[0]


# -- safetensors ------------------------------------------------------------------------


def _safetensors(header: dict[str, Any], data: bytes, pad: bool = True) -> bytes:
    raw = json.dumps(header).encode()
    if pad:
        raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def _benign_safetensors() -> bytes:
    weight = np.arange(4, dtype="<f4").tobytes()
    bias = np.arange(3, dtype="<i8").tobytes()
    header = {
        "__metadata__": {"format": "pt"},
        "weight": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
        "bias": {"dtype": "I64", "shape": [3], "data_offsets": [16, 40]},
    }
    return _safetensors(header, weight + bias)


def test_safetensors_benign_file_has_no_finding(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(_benign_safetensors())
    assert safetensors.looks_like_safetensors(path.read_bytes()[:64])
    assert safetensors.scan_safetensors(path, Location("model.safetensors"), Limits()) == []
    assert safetensors.trailing_region(path) is None


def test_safetensors_2gib_header_length_is_judged_in_under_a_second(tmp_path: Path) -> None:
    path = tmp_path / "huge.safetensors"
    with path.open("wb") as fh:
        fh.write(struct.pack("<Q", 2 * 1024**3) + b'{"a":')
        fh.truncate(3 * 1024**3)  # sparse: the length fits in the file, still refused
    started = time.perf_counter()
    findings = safetensors.scan_safetensors(path, Location("huge.safetensors"), Limits())
    assert time.perf_counter() - started < 1.0
    hit = _one(findings, "SEC-SAFETENSORS-001")
    assert hit.severity == Severity.HIGH
    assert hit.evidence["header_length"] == 2 * 1024**3
    assert safetensors.trailing_region(path) is None


def test_safetensors_header_length_past_end_of_file(tmp_path: Path) -> None:
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 5000) + b"{}")
    hit = _one(safetensors.scan_safetensors(path, Location("s"), Limits()), "SEC-SAFETENSORS-001")
    assert hit.evidence["file_size"] == 10


@pytest.mark.parametrize(
    ("raw_header", "reason"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2, 3]", "not an object"),
        (b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}, "a": {}}', "duplicate"),
        (b'{"a": {"dtype": "PICKLE", "shape": [1], "data_offsets": [0, 4]}}', "unknown dtype"),
        (b'{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', "shape"),
        (b'{"a": "not an entry"}', "entry is a str"),
        (b'{"__metadata__": {"k": 1}}', "__metadata__"),
        (b'{"a": "\xff\xfe"}', "not UTF-8"),
    ],
)
def test_safetensors_invalid_header(tmp_path: Path, raw_header: bytes, reason: str) -> None:
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw_header)) + raw_header + b"\0" * 4)
    hit = _one(safetensors.scan_safetensors(path, Location("bad"), Limits()), "SEC-SAFETENSORS-002")
    assert hit.severity == Severity.HIGH
    assert reason in hit.evidence["reason"]


def test_pickle_named_safetensors_is_not_taken_for_one(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(OS_SYSTEM_PICKLE)
    assert not safetensors.looks_like_safetensors(OS_SYSTEM_PICKLE)
    findings = safetensors.scan_safetensors(path, Location("model.safetensors"), Limits())
    assert {f.rule_id for f in findings} <= {"SEC-SAFETENSORS-001", "SEC-SAFETENSORS-002"}
    assert findings and all(f.severity == Severity.HIGH for f in findings)


@pytest.mark.parametrize(
    ("tensors", "data_len", "problem"),
    [
        ({"a": ("F32", [2], [0, 8]), "b": ("F32", [2], [4, 12])}, 12, "overlaps"),
        ({"a": ("F32", [2], [0, 8]), "b": ("F32", [2], [12, 20])}, 20, "gap of 4 bytes"),
        ({"a": ("F32", [2], [4, 12])}, 12, "gap of 4 bytes"),
        ({"a": ("F32", [3], [0, 8])}, 8, "needs 12"),
        ({"a": ("F32", [4], [0, 16])}, 8, "past the 8-byte data region"),
        ({"a": ("F32", [2], [8, 0])}, 8, "begin 8 > end 0"),
        ({"a": ("F32", [2], [0])}, 8, "is not [begin, end]"),
    ],
)
def test_safetensors_offsets_must_tile_the_data_region(
    tmp_path: Path,
    tensors: dict[str, tuple[str, list[int], list[int]]],
    data_len: int,
    problem: str,
) -> None:
    header = {k: {"dtype": d, "shape": s, "data_offsets": o} for k, (d, s, o) in tensors.items()}
    path = tmp_path / "offsets.safetensors"
    path.write_bytes(_safetensors(header, b"\0" * data_len))
    hit = _one(safetensors.scan_safetensors(path, Location("o"), Limits()), "SEC-SAFETENSORS-003")
    assert hit.severity == Severity.HIGH
    assert any(problem in p for p in hit.evidence["problems"]), hit.evidence


def test_safetensors_with_a_pickle_appended_is_a_polyglot(tmp_path: Path) -> None:
    benign = _benign_safetensors()
    path = tmp_path / "polyglot.safetensors"
    path.write_bytes(benign + OS_SYSTEM_PICKLE)
    hit = _one(safetensors.scan_safetensors(path, Location("p"), Limits()), "SEC-SAFETENSORS-004")
    assert hit.severity == Severity.HIGH
    assert hit.evidence["tail_offset"] == len(benign)
    assert hit.evidence["tail_size"] == len(OS_SYSTEM_PICKLE)
    start, end = safetensors.trailing_region(path) or (0, 0)
    assert path.read_bytes()[start:end] == OS_SYSTEM_PICKLE


# -- numpy ------------------------------------------------------------------------------


class _PickleSpy:
    """Stands in for the pickle engine: records what it was given, reports one finding."""

    def __init__(self) -> None:
        self.calls: list[bytes] = []

    def __call__(self, data: bytes, where: Location) -> list[Finding]:
        self.calls.append(data)
        return [finding("SEC-PICKLE-SPY", Severity.CRITICAL, "spy", where, {"n": len(data)})]


def _npy_bytes(header: str, payload: bytes, version: tuple[int, int] = (1, 0)) -> bytes:
    text = header.encode("latin1")
    fmt = "<H" if version == (1, 0) else "<I"
    prefix_len = 8 + struct.calcsize(fmt)
    text += b" " * (-(prefix_len + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY" + bytes(version) + struct.pack(fmt, len(text)) + text + payload


def test_numeric_npy_from_np_save_is_clean(tmp_path: Path) -> None:
    path = tmp_path / "weights.npy"
    np.save(path, np.arange(12, dtype=np.float32).reshape(3, 4))
    spy = _PickleSpy()
    assert numpy_files.looks_like_npy(path.read_bytes()[:16])
    assert numpy_files.scan_npy(path, Location("weights.npy"), Limits(), spy) == []
    assert numpy_files.scan_npy(path.read_bytes(), Location("weights.npy"), Limits(), spy) == []
    assert spy.calls == []


def test_object_npy_sends_its_pickle_to_the_pickle_engine(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    np.save(path, np.array([1, "two", None], dtype=object), allow_pickle=True)
    spy = _PickleSpy()
    findings = numpy_files.scan_npy(path, Location("objects.npy"), Limits(), spy)
    assert _rules(findings) == [
        ("SEC-NPY-001", Severity.MEDIUM),
        ("SEC-PICKLE-SPY", Severity.CRITICAL),
    ]
    hit = _one(findings, "SEC-NPY-001")
    assert hit.evidence["descr"] == "|O"
    [payload] = spy.calls
    assert payload.startswith(b"\x80") and hit.evidence["pickle_bytes"] == len(payload)


def test_hand_made_object_npy_with_os_system_payload() -> None:
    data = _npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", OS_SYSTEM_PICKLE)
    spy = _PickleSpy()
    findings = numpy_files.scan_npy(data, Location("evil.npy"), Limits(), spy)
    assert spy.calls == [OS_SYSTEM_PICKLE]
    assert _one(findings, "SEC-NPY-001").evidence["data_offset"] == len(data) - len(
        OS_SYSTEM_PICKLE
    )


def test_structured_dtype_with_an_object_field_is_a_pickle_too() -> None:
    header = "{'descr': [('a', '<i8'), ('b', '|O')], 'fortran_order': False, 'shape': (2,), }"
    spy = _PickleSpy()
    findings = numpy_files.scan_npy(
        _npy_bytes(header, OS_SYSTEM_PICKLE), Location("s"), Limits(), spy
    )
    assert "SEC-NPY-001" in {f.rule_id for f in findings}
    assert spy.calls == [OS_SYSTEM_PICKLE]


def test_npz_members_are_scanned_one_by_one(tmp_path: Path) -> None:
    path = tmp_path / "arrays.npz"
    np.savez(path, weights=np.ones((2, 2)), labels=np.array(["a", {"b": 1}], dtype=object))
    spy = _PickleSpy()
    by_member: dict[str, list[str]] = {}
    with zipfile.ZipFile(path) as zf:
        for name in zf.namelist():
            data = zf.read(name)
            assert numpy_files.looks_like_npy(data)
            where = Location("arrays.npz").child(name)
            found = numpy_files.scan_npy(data, where, Limits(), spy)
            by_member[name] = sorted(f.rule_id for f in found)
    assert by_member == {"weights.npy": [], "labels.npy": ["SEC-NPY-001", "SEC-PICKLE-SPY"]}


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x93NUMPY\x09\x00" + b"\0" * 20, "unknown .npy version"),
        (_npy_bytes("__import__('os').system('id')", b""), "not a Python literal"),
        (_npy_bytes("{'descr': '<f8', 'shape': (1,)}", b"\0" * 8), "{descr, fortran_order, shape}"),
        (_npy_bytes("{'descr': '<f8', 'fortran_order': 1, 'shape': (1,)}", b"\0" * 8), "bool"),
        (_npy_bytes("{'descr': 'nonsense', 'fortran_order': False, 'shape': (1,)}", b""), "dtype"),
        (_npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}", b""), "shape"),
        (
            _npy_bytes("{'descr': '<f8', 'fortran_order': False, 'shape': (4,)}", b"\0" * 8),
            "needs 32",
        ),
        (b"\x93NUMPY\x01\x00\xff\xff{'descr'", "the length field says 65535"),
    ],
)
def test_malformed_npy(data: bytes, reason: str) -> None:
    findings = numpy_files.scan_npy(data, Location("bad.npy"), Limits(), _PickleSpy())
    hit = _one(findings, "SEC-NPY-002")
    assert hit.severity == Severity.HIGH
    assert reason in hit.message, hit.message


def test_npy_header_over_the_limit_is_malformed_without_reading_it() -> None:
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{"
    hit = _one(numpy_files.scan_npy(data, Location("x"), Limits(), _PickleSpy()), "SEC-NPY-002")
    assert "exceeds" in hit.message


def test_bytes_after_the_array_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "tail.npy"
    np.save(path, np.zeros(4))
    clean_size = path.stat().st_size
    with path.open("ab") as fh:
        fh.write(OS_SYSTEM_PICKLE)
    hit = _one(numpy_files.scan_npy(path, Location("t"), Limits(), _PickleSpy()), "SEC-NPY-003")
    assert hit.evidence["tail_offset"] == clean_size


def test_object_pickle_larger_than_the_member_limit_is_a_limit_hit() -> None:
    data = _npy_bytes("{'descr': '|O', 'fortran_order': False, 'shape': (1,), }", b"\x80" * 64)
    with pytest.raises(ScanLimitExceeded):
        numpy_files.scan_npy(data, Location("x"), Limits(max_member_bytes=16), _PickleSpy())


# -- skops ------------------------------------------------------------------------------


def _skops_schema(tmp_path: Path, model: Any) -> tuple[list[str], bytes]:
    import skops.io as sio

    path = tmp_path / "model.skops"
    sio.dump(model, path)
    with zipfile.ZipFile(path) as zf:
        return zf.namelist(), zf.read("schema.json")


def _fitted(model: Any) -> Any:
    features = np.random.default_rng(0).random(size=(60, 3))
    return model.fit(features, (features[:, 0] > 0.5).astype(int))


def _benign_estimators() -> list[Any]:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    return [
        LogisticRegression(),
        RandomForestClassifier(n_estimators=3, random_state=0),
        Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression())]),
        Pipeline([("log", FunctionTransformer(np.log1p)), ("clf", LogisticRegression())]),
        HistGradientBoostingClassifier(max_iter=3, random_state=0),
    ]


@pytest.mark.parametrize("index", range(5))
def test_real_skops_dumps_have_no_finding(tmp_path: Path, index: int) -> None:
    estimator = _fitted(_benign_estimators()[index])
    names, schema = _skops_schema(tmp_path, estimator)
    assert skops.looks_like_skops(names, schema)
    assert skops.scan_skops_schema(schema, Location("model.skops"), POLICY) == []


def _lr_schema(tmp_path: Path) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression

    return json.loads(_skops_schema(tmp_path, _fitted(LogisticRegression()))[1])


def _inject(schema: dict[str, Any], node: dict[str, Any]) -> bytes:
    schema["content"]["content"]["injected"] = node
    return json.dumps(schema).encode()


@pytest.mark.parametrize(
    ("node", "callable_name"),
    [
        (
            {"__class__": "eval", "__module__": "builtins", "__loader__": "FunctionNode"},
            "builtins.eval",
        ),
        (
            {
                "__class__": "system",
                "__module__": "os",
                "__loader__": "ConstructorFromReduceNode",
                "content": {
                    "__class__": "tuple",
                    "__module__": "builtins",
                    "__loader__": "TupleNode",
                    "content": [],
                },
            },
            "os.system",
        ),
        (
            {
                "__class__": "methodcaller",
                "__module__": "operator",
                "__loader__": "OperatorFuncNode",
                "attrs": {},
            },
            "operator.methodcaller",
        ),
        (
            {
                "__class__": "x",
                "__module__": "x",
                "__loader__": "FunctionNode",
                "content": {"module_path": "subprocess", "function": "getoutput"},
            },
            "subprocess.getoutput",
        ),
        (
            {"__class__": "Popen", "__module__": "subprocess", "__loader__": "TypeNode"},
            "subprocess.Popen",
        ),
    ],
)
def test_skops_dangerous_callables_are_critical(
    tmp_path: Path, node: dict[str, Any], callable_name: str
) -> None:
    findings = skops.scan_skops_schema(
        _inject(_lr_schema(tmp_path), node), Location("m.skops"), POLICY
    )
    hit = _one(findings, "SEC-SKOPS-002")
    assert hit.severity == Severity.CRITICAL
    assert hit.evidence["callable"] == callable_name
    assert hit.evidence["schema_paths"] == ["$.content.content.injected"]


@pytest.mark.parametrize(
    ("node", "callable_name"),
    [
        (
            {"__class__": "Backdoor", "__module__": "evil_pkg.models", "__loader__": "ObjectNode"},
            "evil_pkg.models.Backdoor",
        ),
        (
            {
                "__class__": "Generator",
                "__module__": "numpy.random._generator",
                "__loader__": "RandomGeneratorNode",
                "content": {"bit_generator": {"bit_generator": "seed"}, "seed_seq": {}},
            },
            "numpy.random.seed",
        ),
        (
            {
                "__class__": "LogisticRegression",
                "__module__": "sklearn.linear_model._logistic",
                "__loader__": "MethodNode",
                "content": {
                    "func": "fit",
                    "obj": {
                        "__class__": "LogisticRegression",
                        "__module__": "sklearn.linear_model._logistic",
                        "__loader__": "ObjectNode",
                    },
                },
            },
            "sklearn.linear_model._logistic.LogisticRegression.fit",
        ),
    ],
)
def test_skops_untrusted_types_are_high(
    tmp_path: Path, node: dict[str, Any], callable_name: str
) -> None:
    findings = skops.scan_skops_schema(
        _inject(_lr_schema(tmp_path), node), Location("m.skops"), POLICY
    )
    hit = _one(findings, "SEC-SKOPS-001")
    assert hit.severity == Severity.HIGH
    assert hit.evidence["callable"] == callable_name


def test_skops_policy_extension_allows_a_custom_type(tmp_path: Path) -> None:
    node = {"__class__": "MyModel", "__module__": "my_pkg", "__loader__": "ObjectNode"}
    data = _inject(_lr_schema(tmp_path), node)
    assert skops.scan_skops_schema(data, Location("m"), CallablePolicy(("my_pkg.*",))) == []


def test_skops_unknown_loader_and_unreadable_schema(tmp_path: Path) -> None:
    node = {"__class__": "dict", "__module__": "builtins", "__loader__": "TimeMachineNode"}
    findings = skops.scan_skops_schema(_inject(_lr_schema(tmp_path), node), Location("m"), POLICY)
    assert _rules(findings) == [("SEC-SKOPS-004", Severity.MEDIUM)]
    for bad in (b"{not json", b"[]", b"\xff\xfe"):
        assert _rules(skops.scan_skops_schema(bad, Location("m"), POLICY)) == [
            ("SEC-SKOPS-003", Severity.HIGH)
        ]


def test_looks_like_skops_needs_the_schema() -> None:
    assert not skops.looks_like_skops(["config.json"], b"{}")
    assert not skops.looks_like_skops(["schema.json"], b'{"type": "object"}')


# -- keras ------------------------------------------------------------------------------


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


def _lambda_bytecode() -> str:
    # Stand-in for marshaled code of `lambda x: __import__("os").system("touch MARKER")`:
    # never unmarshaled, only its printable strings are read.
    return base64.b64encode(b"\xe3\x00\x00\x00\xda\n__import__\xda\x02os\xda\x06system").decode()


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
                "config": {"code": _lambda_bytecode(), "defaults": None, "closure": None},
            },
        },
    )
    inner = _sequential(_dense("d"), lam, name="inner")
    wrapped = _ref("keras.layers", "TimeDistributed", {"name": "td", "layer": inner})
    functional = _ref(
        "keras", "Functional", {"name": "outer", "layers": [_dense("first"), wrapped]}
    )
    findings = keras.scan_keras_config(functional, Location("model.keras"), POLICY)
    hit = _one(findings, "SEC-KERAS-001")
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
                        "function": [_lambda_bytecode(), None, None],
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
    ref = _one(findings, "SEC-KERAS-002")
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
    hit = _one(findings, rule)
    assert hit.severity == severity
    assert name in (hit.evidence.get("callable"), hit.evidence.get("object"))
    assert hit.evidence["config_path"].startswith("$.config.layers[0].config.activation")


def test_keras_unreadable_inputs_fail_closed(tmp_path: Path) -> None:
    assert _rules(keras.scan_keras_json(b"{oops", Location("c"), POLICY)) == [
        ("SEC-KERAS-004", Severity.HIGH)
    ]
    fake = tmp_path / "fake.h5"
    fake.write_bytes(keras.HDF5_MAGIC + b"\0" * 100)
    assert _rules(keras.scan_h5(fake, Location("fake.h5"), POLICY, Limits())) == [
        ("SEC-KERAS-004", Severity.HIGH)
    ]
    path = tmp_path / "notjson.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs["model_config"] = b"not json"
    assert _rules(keras.scan_h5(path, Location("n.h5"), POLICY, Limits())) == [
        ("SEC-KERAS-004", Severity.HIGH)
    ]


def test_hdf5_sniff() -> None:
    assert keras.looks_like_hdf5(keras.HDF5_MAGIC + b"\0")
    assert keras.looks_like_hdf5(b"\0" * 512 + keras.HDF5_MAGIC)
    assert not keras.looks_like_hdf5(b"PK\x03\x04" + b"\0" * 16)


# -- tensorflow (protobufs encoded by hand) ---------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len(field_no: int, payload: bytes) -> bytes:
    return _varint(field_no << 3 | 2) + _varint(len(payload)) + payload


def _int(field_no: int, value: int) -> bytes:
    return _varint(field_no << 3) + _varint(value)


def _node_def(name: str, op: str, **string_attrs: str) -> bytes:
    attrs = b"".join(
        _len(5, _len(1, k.encode()) + _len(2, _len(2, v.encode()))) for k, v in string_attrs.items()
    )
    return _len(1, name.encode()) + _len(2, op.encode()) + _len(3, b"input:0") + attrs


def _graph_def(*nodes: bytes, functions: tuple[bytes, ...] = ()) -> bytes:
    library = _len(2, b"".join(_len(1, f) for f in functions)) if functions else b""
    return b"".join(_len(1, n) for n in nodes) + library


def _function_def(name: str, *nodes: bytes) -> bytes:
    return _len(1, _len(1, name.encode())) + b"".join(_len(3, n) for n in nodes)


def _saved_model(graph: bytes) -> bytes:
    meta_graph = _len(1, _len(1, b"serve")) + _len(2, graph)
    return _int(1, 1) + _len(2, meta_graph)


def test_saved_model_with_ordinary_ops_is_clean() -> None:
    graph = _graph_def(
        _node_def("x", "Const"),
        _node_def("y", "MatMul"),
        _node_def("save/SaveV2", "SaveV2"),
        _node_def("restore", "RestoreV2"),
        _node_def("print", "PrintV2", output_stream="stderr"),
        functions=(_function_def("__inference_serve_1", _node_def("m", "MatMul")),),
    )
    data = _saved_model(graph)
    assert tf_format.looks_like_saved_model_pb(data)
    assert tf_format.scan_saved_model_pb(data, Location("saved_model.pb")) == []


def test_saved_model_with_file_and_python_ops() -> None:
    graph = _graph_def(
        _node_def("x", "Const"),
        _node_def("leak", "ReadFile"),
        _node_def("dump", "PrintV2", output_stream="file:///tmp/stolen"),
        functions=(
            _function_def("__inference_call_7", _node_def("py", "PyFunc", token="pyfunc_0")),
        ),
    )
    findings = tf_format.scan_saved_model_pb(_saved_model(graph), Location("saved_model.pb"))
    assert _rules(findings) == [
        ("SEC-TF-001", Severity.CRITICAL),
        ("SEC-TF-002", Severity.HIGH),
        ("SEC-TF-002", Severity.HIGH),
    ]
    py = _one(findings, "SEC-TF-001")
    assert py.evidence["nodes"] == ["py"]
    assert py.evidence["scopes"] == ["meta_graph[0]/function:__inference_call_7"]
    assert py.evidence["attrs"] == [{"token": "pyfunc_0"}]
    ops = {f.evidence["op"]: f for f in findings}
    assert ops["ReadFile"].evidence["nodes"] == ["leak"]
    assert ops["PrintV2"].evidence["attrs"] == [{"output_stream": "file:///tmp/stolen"}]


def test_frozen_graph_def_is_read_too() -> None:
    data = _graph_def(_node_def("a", "Placeholder"), _node_def("b", "EagerPyFunc"))
    hit = _one(tf_format.scan_saved_model_pb(data, Location("frozen.pb")), "SEC-TF-001")
    assert hit.evidence["scopes"] == ["graph"]


def test_truncated_saved_model_fails_closed_and_string_scan_still_sees_pyfunc() -> None:
    data = _saved_model(_graph_def(_node_def("x", "Const"), _node_def("py", "PyFunc")))
    findings = tf_format.scan_saved_model_pb(data[:-3] + b"\xff", Location("saved_model.pb"))
    assert _one(findings, "SEC-TF-003").severity == Severity.HIGH
    signal = _one(findings, "SEC-TF-001")
    assert (signal.confidence, signal.evidence["signal"]) == ("medium", "string scan")


def test_keras_metadata_pb_lambda_goes_through_the_keras_scanner() -> None:
    def saved_object(node_id: int, path: str, metadata: dict[str, Any]) -> bytes:
        return (
            _int(2, node_id)
            + _len(3, path.encode())
            + _len(4, b"_tf_keras_layer")
            + _len(5, json.dumps(metadata).encode())
        )

    lam = {
        "class_name": "Lambda",
        "name": "lam",
        "config": {
            "name": "lam",
            "function": [_lambda_bytecode(), None, None],
            "function_type": "lambda",
        },
    }
    dense = {"class_name": "Dense", "name": "dense", "config": {"name": "dense", "units": 3}}
    clean = _len(1, saved_object(1, "root.layer-0", dense))
    assert tf_format.scan_saved_model_pb(clean, Location("keras_metadata.pb")) == []
    data = clean + _len(1, saved_object(2, "root.layer-1", lam))
    hit = _one(tf_format.scan_saved_model_pb(data, Location("keras_metadata.pb")), "SEC-KERAS-001")
    assert (hit.severity, hit.evidence["node_path"], hit.evidence["layer"]) == (
        Severity.CRITICAL,
        "root.layer-1",
        "lam",
    )


def test_fingerprint_pb_yields_nothing() -> None:
    fingerprint = _int(1, 2**60) + _int(2, 12345) + _int(3, 6789) + _len(6, _int(1, 1))
    assert tf_format.scan_saved_model_pb(fingerprint, Location("fingerprint.pb")) == []


# -- onnx -------------------------------------------------------------------------------


def _onnx_model(
    nodes: list[onnx.NodeProto], initializers: list[TensorProto] = (), **kw: Any
) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=list(initializers),
    )
    kw.setdefault("opset_imports", [helper.make_opsetid("", 17)])
    return helper.make_model(graph, **kw)


def _external(name: str, location: str) -> TensorProto:
    tensor = helper.make_tensor(name, TensorProto.FLOAT, [2], [0.0, 0.0])
    del tensor.float_data[:]
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", "8")):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _save(model: onnx.ModelProto, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def test_standard_onnx_model_is_clean_and_recognised_by_content(tmp_path: Path) -> None:
    model = _onnx_model([helper.make_node("Relu", ["x"], ["y"], name="relu")])
    path = _save(model, tmp_path / "model" / "model.bin")
    assert onnx_format.looks_like_onnx(path.read_bytes()[:64])
    assert onnx_format.scan_onnx(path, Location("model.bin"), path.parent) == []
    for other in (OS_SYSTEM_PICKLE, b"PK\x03\x04", _saved_model(b""), _benign_safetensors()):
        assert not onnx_format.looks_like_onnx(other)


def test_onnx_with_real_external_data_is_clean(tmp_path: Path) -> None:
    weights = numpy_helper.from_array(np.ones(256, dtype=np.float32), "w")
    model = _onnx_model([helper.make_node("Add", ["x", "w"], ["y"])], [weights])
    root = tmp_path / "model"
    root.mkdir()
    onnx.save_model(
        model,
        str(root / "model.onnx"),
        save_as_external_data=True,
        location="weights.bin",
        size_threshold=0,
    )
    assert (root / "weights.bin").exists()
    assert onnx_format.scan_onnx(root / "model.onnx", Location("model.onnx"), root) == []


def test_onnx_custom_domains_in_graph_subgraph_and_functions(tmp_path: Path) -> None:
    evil = helper.make_node("Backdoor", ["x"], ["t"], name="bd", domain="com.evil")
    then_branch = helper.make_graph(
        [helper.make_node("Shell", [], ["z"], domain="org.native")],
        "then",
        [],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, [2])],
    )
    branch = helper.make_node("If", ["c"], ["y"], then_branch=then_branch, else_branch=then_branch)
    local_call = helper.make_node("Twice", ["x"], ["u"], domain="local.fns")
    twice = helper.make_function(
        "local.fns",
        "Twice",
        ["a"],
        ["b"],
        [helper.make_node("Add", ["a", "a"], ["b"])],
        [helper.make_opsetid("", 17)],
    )
    imports = [
        helper.make_opsetid("", 17),
        helper.make_opsetid("com.evil", 1),
        helper.make_opsetid("local.fns", 1),
        helper.make_opsetid("ai.onnx.contrib", 1),
    ]
    model = _onnx_model([evil, branch, local_call], opset_imports=imports, functions=[twice])
    path = _save(model, tmp_path / "m" / "model.onnx")
    findings = onnx_format.scan_onnx(path, Location("model.onnx"), path.parent)
    by_domain = {f.evidence["domain"]: f for f in findings}
    assert set(by_domain) == {"com.evil", "org.native", "ai.onnx.contrib"}
    assert all((f.rule_id, f.severity) == ("SEC-ONNX-001", Severity.HIGH) for f in findings)
    assert by_domain["com.evil"].evidence["nodes"] == ["bd"]
    assert by_domain["org.native"].evidence["scopes"] == [
        "graph/If.else_branch",
        "graph/If.then_branch",
    ]
    assert by_domain["ai.onnx.contrib"].evidence["in_opset_import"]


def test_custom_op_inside_a_local_function_is_found(tmp_path: Path) -> None:
    body = [helper.make_node("Exec", ["a"], ["b"], domain="com.evil")]
    fn = helper.make_function(
        "local.fns", "Wrap", ["a"], ["b"], body, [helper.make_opsetid("com.evil", 1)]
    )
    model = _onnx_model(
        [helper.make_node("Wrap", ["x"], ["y"], domain="local.fns")],
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local.fns", 1)],
        functions=[fn],
    )
    path = _save(model, tmp_path / "m" / "model.onnx")
    hit = _one(onnx_format.scan_onnx(path, Location("model.onnx"), path.parent), "SEC-ONNX-001")
    assert hit.evidence["domain"] == "com.evil"
    assert hit.evidence["scopes"] == ["function:local.fns.Wrap"]


@pytest.mark.parametrize(
    ("location", "problem"),
    [
        ("/etc/passwd", "absolute path"),
        ("../outside.bin", "'..'"),
        ("sub/../../outside.bin", "'..'"),
        ("C:\\Windows\\win.ini", "absolute path"),
        ("link.bin", "symbolic link"),
    ],
)
def test_onnx_external_data_leaving_the_model_dir_is_critical(
    tmp_path: Path, location: str, problem: str
) -> None:
    root = tmp_path / "model"
    (tmp_path / "outside.bin").write_bytes(b"\0" * 8)
    model = _onnx_model([helper.make_node("Add", ["x", "w"], ["y"])], [_external("w", location)])
    path = _save(model, root / "model.onnx")
    os.symlink(tmp_path / "outside.bin", root / "link.bin")
    hit = _one(onnx_format.scan_onnx(path, Location("model.onnx"), root), "SEC-ONNX-002")
    assert hit.severity == Severity.CRITICAL
    assert problem in hit.evidence["problem"]
    assert hit.evidence["location"] == location
    assert hit.evidence["tensors"] == ["graph:w"]


def test_onnx_missing_or_short_external_data_is_medium(tmp_path: Path) -> None:
    root = tmp_path / "model"
    model = _onnx_model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        [_external("w", "gone.bin"), _external("v", "short.bin")],
    )
    path = _save(model, root / "model.onnx")
    (root / "short.bin").write_bytes(b"\0" * 4)
    findings = onnx_format.scan_onnx(path, Location("model.onnx"), root)
    assert _rules(findings) == [("SEC-ONNX-003", Severity.MEDIUM)] * 2
    problems = sorted(f.evidence["problem"] for f in findings)
    assert problems[0] == "file does not exist"
    assert "past the 4-byte file" in problems[1]


def test_unparseable_onnx_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07\x12\xff\xff\xff\xff\x0f garbage")
    assert _rules(onnx_format.scan_onnx(path, Location("model.onnx"), tmp_path)) == [
        ("SEC-ONNX-004", Severity.HIGH)
    ]
