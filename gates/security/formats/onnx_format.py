"""ONNX models: custom operator domains and external data paths (SEC-ONNX-001..004).

An ONNX file is a ``ModelProto`` protobuf. It is parsed with ``onnx.load_model(...,
load_external_data=False)``: a protobuf parse, no operator runs and no external file is
opened.

- SEC-ONNX-001 (HIGH): nodes in a custom operator domain (anything but ``""``,
  ``ai.onnx``, ``ai.onnx.ml``, ``ai.onnx.training``, ``ai.onnx.preview.training`` and
  ``com.microsoft``), in the main graph, nested subgraphs (``If``/``Loop``/``Scan``
  bodies), training graphs or model-local functions, and custom domains declared in
  ``opset_import``. A runtime executes such an op from a native shared library registered
  for that domain (``onnxruntime`` custom-op libraries, ``onnxruntime-extensions``): code
  the model file does not contain and we cannot check. A node that calls a *model-local
  function* (its domain and name match one in ``model.functions``) is not native code and
  is not flagged; the function's own nodes are checked instead.
- SEC-ONNX-002 (CRITICAL): a tensor's ``external_data`` ``location`` that is absolute,
  contains ``..``, resolves outside the model directory (``model_root``), or passes through
  a symbolic link. A runtime opens whatever path it names: ``/etc/passwd``, a private key
  or ``/proc/self/environ`` read into a tensor and echoed by the model (the technique of
  CVE-2024-27318 and CVE-2022-25882 against ONNX's own external-data loader).
- SEC-ONNX-003 (MEDIUM): external data that names no file, a file that does not exist or
  is not a regular file, or an ``offset``/``length`` past the end of the file: the model
  cannot load as shipped.
- SEC-ONNX-004 (HIGH): the file does not parse as an ONNX model. Fail closed.

Findings are aggregated per domain and per external location, with tensor and node names
(up to five) as evidence.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

from gates.base import Finding, Severity
from gates.security import rules
from gates.security.common import Location

STANDARD_DOMAINS = frozenset({
    "", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training", "com.microsoft",
})  # fmt: skip

# ModelProto field number -> wire type (onnx/onnx.proto), for the content sniff.
_MODEL_FIELDS = {1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2}
_MAX_EXAMPLES = 5


def _varint(head: bytes, pos: int) -> tuple[int, int] | None:
    result = shift = 0
    while pos < len(head) and shift < 64:
        byte = head[pos]
        result |= (byte & 0x7F) << shift
        pos += 1
        if not byte & 0x80:
            return result, pos
        shift += 7
    return None


def looks_like_onnx(head: bytes) -> bool:
    """The first bytes parse as a ModelProto: ``ir_version`` 3..32 first, then only
    ModelProto fields with their wire types until the head (or a field in it) ends."""
    parsed = _varint(head, 0)
    if parsed is None or parsed[0] != 0x08:
        return False
    version = _varint(head, parsed[1])
    if version is None or not 3 <= version[0] <= 32:
        return False
    pos, fields_seen = version[1], 0
    while pos < len(head):
        key = _varint(head, pos)
        if key is None:
            break
        number, wire = key[0] >> 3, key[0] & 7
        if _MODEL_FIELDS.get(number) != wire:
            return False
        fields_seen += 1
        value = _varint(head, key[1])
        if value is None:
            break
        pos = value[1] + (value[0] if wire == 2 else 0)
    return fields_seen > 0


def _graphs_in_attribute(attr: Any) -> Iterator[Any]:
    if attr.HasField("g"):
        yield attr.g
    yield from attr.graphs


def _tensors_in_attribute(attr: Any) -> Iterator[Any]:
    if attr.HasField("t"):
        yield attr.t
    yield from attr.tensors
    for sparse in (*([attr.sparse_tensor] if attr.HasField("sparse_tensor") else []),
                   *attr.sparse_tensors):  # fmt: skip
        yield sparse.values
        yield sparse.indices


@dataclass
class _Inventory:
    nodes: list[tuple[Any, str]] = field(default_factory=list)  # (NodeProto, scope)
    tensors: list[tuple[Any, str]] = field(default_factory=list)  # (TensorProto, scope)


def _walk_graph(graph: Any, scope: str, inv: _Inventory) -> None:
    stack = [(graph, scope)]
    while stack:
        current, where = stack.pop()
        inv.tensors.extend((t, where) for t in current.initializer)
        for sparse in current.sparse_initializer:
            inv.tensors += [(sparse.values, where), (sparse.indices, where)]
        for node in current.node:
            inv.nodes.append((node, where))
            for attr in node.attribute:
                inv.tensors.extend((t, where) for t in _tensors_in_attribute(attr))
                stack.extend(
                    (g, f"{where}/{node.name or node.op_type}.{attr.name}")
                    for g in _graphs_in_attribute(attr)
                )


def _inventory(model: Any) -> _Inventory:
    inv = _Inventory()
    _walk_graph(model.graph, "graph", inv)
    for i, info in enumerate(model.training_info):
        _walk_graph(info.initialization, f"training_info[{i}].initialization", inv)
        _walk_graph(info.algorithm, f"training_info[{i}].algorithm", inv)
    for function in model.functions:
        scope = f"function:{function.domain}.{function.name}"
        for node in function.node:
            inv.nodes.append((node, scope))
            for attr in node.attribute:
                inv.tensors.extend((t, scope) for t in _tensors_in_attribute(attr))
                for g in _graphs_in_attribute(attr):
                    _walk_graph(g, f"{scope}/{node.name or node.op_type}.{attr.name}", inv)
    return inv


def _domain_findings(model: Any, inv: _Inventory, where: Location) -> list[Finding]:
    local = {(f.domain, f.name) for f in model.functions}
    local_domains = {f.domain for f in model.functions}
    by_domain: dict[str, dict[str, Any]] = {}
    for node, scope in inv.nodes:
        if node.domain in STANDARD_DOMAINS or (node.domain, node.op_type) in local:
            continue
        entry = by_domain.setdefault(node.domain, {"ops": set(), "nodes": [], "scopes": set()})
        entry["ops"].add(node.op_type)
        entry["scopes"].add(scope)
        if len(entry["nodes"]) < _MAX_EXAMPLES:
            entry["nodes"].append(node.name or f"<unnamed {node.op_type}>")
    imports = [*model.opset_import, *(o for f in model.functions for o in f.opset_import)]
    declared = {o.domain for o in imports if o.domain not in STANDARD_DOMAINS}
    for domain in declared - local_domains:
        by_domain.setdefault(domain, {"ops": set(), "nodes": [], "scopes": set()})
    out = []
    for domain, entry in sorted(by_domain.items()):
        ops = sorted(entry["ops"])
        out.append(
            rules.ONNX_CUSTOM_DOMAIN.finding(
                f"custom operator domain {domain!r}"
                + (f" used by {', '.join(ops[:_MAX_EXAMPLES])}" if ops else " in opset_import")
                + ": runs native code from a library outside the model",
                where,
                {
                    "domain": domain,
                    "op_types": ops,
                    "nodes": entry["nodes"],
                    "scopes": sorted(entry["scopes"])[:_MAX_EXAMPLES],
                    "in_opset_import": domain in declared,
                },
            )
        )
    return out


def _location_problem(location: str, base: Path, root: Path) -> tuple[str, Severity] | None:
    """Why an external data location is unsafe (CRITICAL) or broken (MEDIUM), or None."""
    if not location:
        return "external data names no location", Severity.MEDIUM
    if (
        PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).is_absolute()
        or (PureWindowsPath(location).drive or location.startswith(("\\", "/")))
    ):
        return "absolute path", Severity.CRITICAL
    parts = location.replace("\\", "/").split("/")
    if ".." in parts:
        return "path contains '..'", Severity.CRITICAL
    candidate = base
    for part in parts:
        candidate = candidate / part
        if candidate.is_symlink():
            return f"passes through symbolic link {candidate.name}", Severity.CRITICAL
    resolved = candidate.resolve()
    if not resolved.is_relative_to(root.resolve()):
        return f"resolves to {resolved}, outside the model directory", Severity.CRITICAL
    if not resolved.exists():
        return "file does not exist", Severity.MEDIUM
    if not resolved.is_file():
        return "not a regular file", Severity.MEDIUM
    return None


def _external_findings(inv: _Inventory, base: Path, root: Path, where: Location) -> list[Finding]:
    from onnx import TensorProto

    by_location: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for tensor, scope in inv.tensors:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        name = f"{scope}:{tensor.name}" if tensor.name else scope
        by_location.setdefault(info.get("location", ""), []).append((name, info))
    out = []
    for location, uses in sorted(by_location.items()):
        try:
            problem = _location_problem(location, base, root) or _range_problem(
                base / location, uses
            )
        except (OSError, ValueError) as exc:  # NUL bytes, names too long, loops
            problem = f"unusable path ({exc})", Severity.MEDIUM
        if problem is None:
            continue
        why, severity = problem
        rule = (
            rules.ONNX_EXTERNAL_DATA_ESCAPE
            if severity is Severity.CRITICAL
            else rules.ONNX_EXTERNAL_DATA_BROKEN
        )
        out.append(
            rule.finding(
                f"external data location {location!r}: {why}",
                where,
                {
                    "location": location,
                    "problem": why,
                    "tensors": [name for name, _ in uses[:_MAX_EXAMPLES]],
                    "tensor_count": len(uses),
                },
            )
        )
    return out


def _range_problem(
    path: Path, uses: list[tuple[str, dict[str, str]]]
) -> tuple[str, Severity] | None:
    size = path.stat().st_size
    for name, info in uses:
        try:
            offset = int(info.get("offset", "0") or 0)
            length = int(info.get("length", "0") or 0)
        except ValueError:
            return f"tensor {name}: offset/length are not integers", Severity.MEDIUM
        if offset < 0 or length < 0 or offset + length > size:
            return (
                f"tensor {name}: bytes [{offset}, {offset + length}) past the {size}-byte file",
                Severity.MEDIUM,
            )
    return None


def scan_onnx(path: Path, where: Location, model_root: Path) -> list[Finding]:
    """Findings for one ONNX file; external locations are resolved against its directory
    and must stay inside ``model_root``."""
    import onnx  # deferred: only ONNX files pay for the import

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError, RuntimeError, ValueError, ...
        return [
            rules.ONNX_UNPARSEABLE.finding(
                f"not a parseable ONNX model: {type(exc).__name__}: {exc}"[:300],
                where,
                {"reason": f"{type(exc).__name__}: {exc}"[:300]},
            )
        ]
    if not model.HasField("graph") and model.ir_version == 0:
        return [
            rules.ONNX_UNPARSEABLE.finding(
                "not an ONNX model: the protobuf has neither ir_version nor a graph",
                where,
                {"reason": "no ir_version, no graph"},
            )
        ]
    inv = _inventory(model)
    return [
        *_domain_findings(model, inv, where),
        *_external_findings(inv, path.parent, model_root, where),
    ]
