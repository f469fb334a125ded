"""ONNX models (SEC-ONNX-*): standard models and real external data pass, custom operator
domains and external data leaving the model directory are caught.

Every malicious sample is built from bytes, JSON or protobuf fields; none is ever loaded by
the library it targets.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from gates.base import Severity
from gates.security.common import Location
from gates.security.formats import onnx_format
from tests.unit.format_helpers import (
    OS_SYSTEM_PICKLE,
    SAVED_MODEL_HEAD,
    benign_safetensors,
    one_finding,
    rule_pairs,
)


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
    for other in (OS_SYSTEM_PICKLE, b"PK\x03\x04", SAVED_MODEL_HEAD, benign_safetensors()):
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
    hit = one_finding(
        onnx_format.scan_onnx(path, Location("model.onnx"), path.parent), "SEC-ONNX-001"
    )
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
    hit = one_finding(onnx_format.scan_onnx(path, Location("model.onnx"), root), "SEC-ONNX-002")
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
    assert rule_pairs(findings) == [("SEC-ONNX-003", Severity.MEDIUM)] * 2
    problems = sorted(f.evidence["problem"] for f in findings)
    assert problems[0] == "file does not exist"
    assert "past the 4-byte file" in problems[1]


def test_unparseable_onnx_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07\x12\xff\xff\xff\xff\x0f garbage")
    assert rule_pairs(onnx_format.scan_onnx(path, Location("model.onnx"), tmp_path)) == [
        ("SEC-ONNX-004", Severity.HIGH)
    ]
