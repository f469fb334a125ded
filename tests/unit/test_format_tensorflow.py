"""TensorFlow protobufs (SEC-TF-*, and SEC-KERAS-* in keras_metadata.pb), encoded by hand:
ordinary graphs pass, Python and file ops are caught, broken protobufs fail closed.

Every malicious sample is built from bytes, JSON or protobuf fields; none is ever loaded by
the library it targets.
"""

from __future__ import annotations

import json
from typing import Any

from gates.base import Severity
from gates.security.common import Location
from gates.security.formats import tensorflow as tf_format
from tests.unit.format_helpers import lambda_bytecode, one_finding, rule_pairs


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
    assert rule_pairs(findings) == [
        ("SEC-TF-001", Severity.CRITICAL),
        ("SEC-TF-002", Severity.HIGH),
        ("SEC-TF-002", Severity.HIGH),
    ]
    py = one_finding(findings, "SEC-TF-001")
    assert py.evidence["nodes"] == ["py"]
    assert py.evidence["scopes"] == ["meta_graph[0]/function:__inference_call_7"]
    assert py.evidence["attrs"] == [{"token": "pyfunc_0"}]
    ops = {f.evidence["op"]: f for f in findings}
    assert ops["ReadFile"].evidence["nodes"] == ["leak"]
    assert ops["PrintV2"].evidence["attrs"] == [{"output_stream": "file:///tmp/stolen"}]


def test_frozen_graph_def_is_read_too() -> None:
    data = _graph_def(_node_def("a", "Placeholder"), _node_def("b", "EagerPyFunc"))
    hit = one_finding(tf_format.scan_saved_model_pb(data, Location("frozen.pb")), "SEC-TF-001")
    assert hit.evidence["scopes"] == ["graph"]


def test_truncated_saved_model_fails_closed_and_string_scan_still_sees_pyfunc() -> None:
    data = _saved_model(_graph_def(_node_def("x", "Const"), _node_def("py", "PyFunc")))
    findings = tf_format.scan_saved_model_pb(data[:-3] + b"\xff", Location("saved_model.pb"))
    assert one_finding(findings, "SEC-TF-003").severity == Severity.HIGH
    signal = one_finding(findings, "SEC-TF-001")
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
            "function": [lambda_bytecode(), None, None],
            "function_type": "lambda",
        },
    }
    dense = {"class_name": "Dense", "name": "dense", "config": {"name": "dense", "units": 3}}
    clean = _len(1, saved_object(1, "root.layer-0", dense))
    assert tf_format.scan_saved_model_pb(clean, Location("keras_metadata.pb")) == []
    data = clean + _len(1, saved_object(2, "root.layer-1", lam))
    hit = one_finding(
        tf_format.scan_saved_model_pb(data, Location("keras_metadata.pb")), "SEC-KERAS-001"
    )
    assert (hit.severity, hit.evidence["node_path"], hit.evidence["layer"]) == (
        Severity.CRITICAL,
        "root.layer-1",
        "lam",
    )


def test_fingerprint_pb_yields_nothing() -> None:
    fingerprint = _int(1, 2**60) + _int(2, 12345) + _int(3, 6789) + _len(6, _int(1, 1))
    assert tf_format.scan_saved_model_pb(fingerprint, Location("fingerprint.pb")) == []


# -- onnx -------------------------------------------------------------------------------
