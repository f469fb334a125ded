"""TensorFlow SavedModel and frozen graphs, read without TensorFlow (SEC-TF-001..003).

``saved_model.pb`` is a protobuf; this module walks its wire format by hand (TensorFlow is
not installed and must not be) along these fields, numbered as in TensorFlow's
``tensorflow/core/protobuf/saved_model.proto``, ``meta_graph.proto`` and
``tensorflow/core/framework/{graph,function,node_def,attr_value}.proto``:

- ``SavedModel``: 1 ``saved_model_schema_version`` (varint), 2 ``meta_graphs`` (MetaGraphDef)
- ``MetaGraphDef``: 2 ``graph_def`` (GraphDef)
- ``GraphDef``: 1 ``node`` (NodeDef), 2 ``library`` (FunctionDefLibrary)
- ``FunctionDefLibrary``: 1 ``function`` (FunctionDef)
- ``FunctionDef``: 1 ``signature`` (OpDef, whose 1 is ``name``), 3 ``node_def`` (NodeDef)
- ``NodeDef``: 1 ``name``, 2 ``op``, 5 ``attr`` (map entry: 1 key, 2 AttrValue; AttrValue 2 ``s``)

A frozen graph (``*.pb`` holding a bare ``GraphDef``) is read the same way, and a
``keras_metadata.pb`` (``SavedMetadata``: 1 ``nodes``, each ``SavedObject`` with 3
``node_path``, 4 ``identifier``, 5 ``metadata`` JSON; from ``saved_metadata.proto``) is
handed to the Keras config scanner, so a Lambda layer there is SEC-KERAS-001.
``fingerprint.pb`` carries only hashes and yields nothing. TensorFlow finds these files by
name, and so does the walker: a name ending ``.pb`` is what sends bytes here.

- SEC-TF-001 (CRITICAL): an op that runs Python when the graph executes: ``PyFunc``,
  ``PyFuncStateless``, ``EagerPyFunc`` (``tf.py_function``/``tf.numpy_function``). The
  function itself is not in the file; whatever is registered under its token runs.
- SEC-TF-002 (HIGH): an op that reads, writes or lists files chosen by the graph:
  ``ReadFile``, ``WriteFile``, ``MatchingFiles``, the V1 checkpoint writers ``Save`` and
  ``SaveSlices``, ``ImmutableConst`` (maps a file), ``DebugIdentityV2``/``V3`` (dump to a
  directory), ``DistributedSave``, and ``PrintV2`` whose ``output_stream`` is a
  ``file://`` path. ``SaveV2``, ``RestoreV2`` and ``MergeV2Checkpoints`` are in every
  SavedModel's saver and are not flagged (a known limit: telling a hostile path from the
  saver's own needs data-flow analysis).
- SEC-TF-003 (HIGH): the protobuf is not well-formed, so its ops cannot be listed.

As a second signal, the raw bytes are searched for each flagged op name encoded as a
``NodeDef.op`` field; an occurrence the structured walk did not account for (an op in a
place the walk does not visit, or in a file it could not parse) is reported with
``confidence: medium`` and ``"signal": "string scan"``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from gates.base import Finding
from gates.security import rules
from gates.security.callables import CallablePolicy
from gates.security.common import Location
from gates.security.formats.keras import scan_keras_config

PYTHON_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
FILE_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "Save", "SaveSlices", "ImmutableConst",
    "DebugIdentityV2", "DebugIdentityV3", "DistributedSave",
})  # fmt: skip

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_MAX_EXAMPLES = 5


class WireError(ValueError):
    """Bytes that are not protobuf wire format."""


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end:
            raise WireError(f"truncated varint at byte {pos}")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise WireError(f"varint longer than 10 bytes at byte {pos}")


def fields(buf: bytes | memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field of one message.

    Values are ints for varint/fixed fields and memoryviews for length-delimited ones.
    Groups (wire types 3/4, deprecated and never used by TensorFlow) are refused.
    """
    view = memoryview(buf)
    pos, end = 0, len(view)
    value: int | memoryview
    while pos < end:
        key, pos = _varint(view, pos, end)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise WireError(f"field number 0 at byte {pos}")
        if wire == VARINT:
            value, pos = _varint(view, pos, end)
        elif wire == I64 or wire == I32:
            size = 8 if wire == I64 else 4
            if pos + size > end:
                raise WireError(f"truncated fixed field at byte {pos}")
            value, pos = int.from_bytes(view[pos : pos + size], "little"), pos + size
        elif wire == LEN:
            size, pos = _varint(view, pos, end)
            if pos + size > end:
                raise WireError(f"length {size} at byte {pos} runs past the message")
            value, pos = view[pos : pos + size], pos + size
        else:
            raise WireError(f"unsupported wire type {wire} at byte {pos}")
        yield number, wire, value


def _messages(buf: memoryview, number: int) -> Iterator[memoryview]:
    for num, wire, value in fields(buf):
        if num == number and wire == LEN:
            yield value


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8", errors="replace")


@dataclass
class OpUse:
    op: str
    node: str
    scope: str
    attrs: dict[str, str] = field(default_factory=dict)


def _node(buf: memoryview, scope: str) -> OpUse:
    name = op = ""
    attrs: dict[str, str] = {}
    for num, wire, value in fields(buf):
        if wire != LEN:
            continue
        if num == 1:
            name = _text(value)
        elif num == 2:
            op = _text(value)
        elif num == 5:
            key, text = "", None
            for enum, ewire, evalue in fields(value):
                if enum == 1 and ewire == LEN:
                    key = _text(evalue)
                elif enum == 2 and ewire == LEN:
                    text = next(
                        (_text(v) for n, w, v in fields(evalue) if n == 2 and w == LEN), None
                    )
            if text is not None and key in ("output_stream", "token", "file_pattern", "filename"):
                attrs[key] = text[:200]
    return OpUse(op, name, scope, attrs)


def _graph_ops(graph: memoryview, scope: str) -> Iterator[OpUse]:
    for num, wire, value in fields(graph):
        if num == 1 and wire == LEN:
            yield _node(value, scope)
        elif num == 2 and wire == LEN:
            for function in _messages(value, 1):
                yield from _function_ops(function, scope)


def _function_ops(function: memoryview, scope: str) -> Iterator[OpUse]:
    fname = ""
    for num, wire, value in fields(function):
        if num == 1 and wire == LEN:
            fname = next((_text(v) for n, w, v in fields(value) if n == 1 and w == LEN), "")
    for node in _messages(function, 3):
        yield _node(node, f"{scope}/function:{fname}")


def saved_model_ops(data: bytes) -> list[OpUse]:
    """Every NodeDef in every meta graph and function of a SavedModel (raises WireError)."""
    ops: list[OpUse] = []
    for index, meta in enumerate(_messages(memoryview(data), 2)):
        for graph in _messages(meta, 2):
            ops.extend(_graph_ops(graph, f"meta_graph[{index}]"))
    return ops


def graph_def_ops(data: bytes) -> list[OpUse]:
    """Every NodeDef of a bare GraphDef (frozen graph) (raises WireError)."""
    return list(_graph_ops(memoryview(data), "graph"))


def _kind(data: bytes) -> str:
    """'saved_model', 'graph_def' or 'keras_metadata' (raises WireError)."""
    top = list(fields(data))
    if any(num == 1 and wire == VARINT for num, wire, _ in top):
        return "saved_model"
    first = next((value for num, wire, value in top if num == 1 and wire == LEN), None)
    if first is None:
        return "saved_model"
    try:
        inner = list(fields(first))
    except WireError:
        return "graph_def"
    for num, wire, value in inner:
        if num == 2 and wire == VARINT:
            return "keras_metadata"  # SavedObject.node_id; NodeDef.op is a string
        if num == 4 and wire == LEN and bytes(value[:9]) == b"_tf_keras":
            return "keras_metadata"  # SavedObject.identifier
        if num == 5 and wire == LEN and bytes(value[:1]) == b"{":
            return "keras_metadata"  # SavedObject.metadata JSON; NodeDef.attr is a message
    return "graph_def"


def _op_findings(ops: list[OpUse], where: Location) -> list[Finding]:
    grouped: dict[str, list[OpUse]] = {}
    for use in ops:
        if use.op in PYTHON_OPS or use.op in FILE_OPS:
            grouped.setdefault(use.op, []).append(use)
        elif use.op == "PrintV2" and use.attrs.get("output_stream", "").startswith("file://"):
            grouped.setdefault("PrintV2", []).append(use)
    out: list[Finding] = []
    for op, uses in sorted(grouped.items()):
        python = op in PYTHON_OPS
        evidence: dict[str, Any] = {
            "op": op,
            "count": len(uses),
            "nodes": [u.node for u in uses[:_MAX_EXAMPLES]],
            "scopes": sorted({u.scope for u in uses})[:_MAX_EXAMPLES],
        }
        attrs = [u.attrs for u in uses[:_MAX_EXAMPLES] if u.attrs]
        if attrs:
            evidence["attrs"] = attrs
        what = "runs Python code" if python else "touches files the graph chooses"
        rule = rules.TF_PYTHON_OP if python else rules.TF_FILE_OP
        out.append(
            rule.finding(
                f"TensorFlow op {op} {what} ({len(uses)} node(s))",
                where,
                evidence,
            )
        )
    return out


def _encoded_op(op: str) -> bytes:
    raw = op.encode()
    return b"\x12" + bytes([len(raw)]) + raw  # NodeDef field 2 (op), length < 128


def _string_scan(data: bytes, ops: list[OpUse], where: Location) -> list[Finding]:
    """Second signal: flagged op names encoded as NodeDef.op that the walk did not see."""
    seen: dict[str, int] = {}
    for use in ops:
        seen[use.op] = seen.get(use.op, 0) + 1
    out: list[Finding] = []
    for op in sorted(PYTHON_OPS | FILE_OPS):
        hits = data.count(_encoded_op(op))
        if hits > seen.get(op, 0):
            rule = rules.TF_PYTHON_OP if op in PYTHON_OPS else rules.TF_FILE_OP
            out.append(
                rule.finding(
                    f"TensorFlow op name {op} found {hits - seen.get(op, 0)} time(s) outside "
                    "the graph and functions the parser walked",
                    where,
                    {"op": op, "signal": "string scan", "first_offset": data.find(_encoded_op(op))},
                    confidence="medium",
                )
            )
    return out


def scan_keras_metadata_pb(data: bytes, where: Location, policy: CallablePolicy) -> list[Finding]:
    """Keras layer configs in ``keras_metadata.pb``, each scanned as a Keras config."""
    findings: list[Finding] = []
    for obj in _messages(memoryview(data), 1):
        node_path, metadata = "", None
        for num, wire, value in fields(obj):
            if num == 3 and wire == LEN:
                node_path = _text(value)
            elif num == 5 and wire == LEN:
                metadata = _text(value)
        if not metadata:
            continue
        try:
            config = json.loads(metadata)
        except (ValueError, RecursionError):
            findings.append(
                rules.KERAS_UNREADABLE.finding(
                    f"Keras metadata for {node_path!r} is not JSON",
                    where,
                    {"node_path": node_path},
                )
            )
            continue
        if isinstance(config, dict):
            for item in scan_keras_config(config, where, policy):
                findings.append(
                    dataclasses.replace(item, evidence={**item.evidence, "node_path": node_path})
                )
    return findings


def scan_saved_model_pb(
    data: bytes, where: Location, policy: CallablePolicy | None = None
) -> list[Finding]:
    """Findings for a ``saved_model.pb``, a frozen-graph ``.pb`` or a ``keras_metadata.pb``."""
    ops: list[OpUse] = []
    findings: list[Finding] = []
    try:
        kind = _kind(data)
        if kind == "keras_metadata":
            return scan_keras_metadata_pb(data, where, policy or CallablePolicy())
        ops = saved_model_ops(data) if kind == "saved_model" else graph_def_ops(data)
    except WireError as exc:
        findings.append(
            rules.TF_UNPARSEABLE.finding(
                f"TensorFlow protobuf cannot be parsed: {exc}",
                where,
                {"reason": str(exc), "size": len(data)},
            )
        )
    findings += _op_findings(ops, where)
    findings += _string_scan(data, ops, where)
    return findings
