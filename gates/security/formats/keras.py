"""Keras model configs: ``.keras`` v3 archives, legacy HDF5 ``.h5`` (SEC-KERAS-001..004).

A Keras model is rebuilt from a JSON config: ``config.json`` in a ``.keras`` zip (next to
``metadata.json`` and ``model.weights.h5``), the ``model_config`` (and ``training_config``)
attribute on the root of a legacy ``.h5`` file, or the per-layer JSON in a SavedModel's
``keras_metadata.pb``. Every ``{"module", "class_name", "config", "registered_name"}``
object in it is resolved to a class or function on load, at any depth (Sequential and
Functional models, nested models, wrappers such as ``TimeDistributed`` or
``Bidirectional``, optimizers, losses, initializers). The config is only read, never
deserialized by Keras.

- SEC-KERAS-001 (CRITICAL): a ``Lambda`` layer anywhere, or a ``__lambda__`` object (any
  Python lambda Keras serialized). A Lambda's function is either marshaled Python bytecode
  (base64; ``func_load`` runs it when ``safe_mode`` is off, and legacy ``.h5`` loading has
  no safe mode) or a reference to a function by module and name. Evidence: layer name,
  path in the config, which kind, and for bytecode the printable strings in it (names such
  as ``system`` or ``os`` are visible without unmarshaling).
- SEC-KERAS-002 (CRITICAL when the callable policy calls it dangerous, HIGH when it does
  not know it): a function reference outside Keras (``"class_name": "function"`` with a
  ``module`` that is not ``keras``/``tf_keras``/``tensorflow``, or ``function``/``fn``/
  ``output_shape`` strings next to a ``module``), e.g. ``builtins.eval``,
  ``os.system``, ``subprocess.Popen``; a class reference to a dangerous callable; and Keras/
  TensorFlow APIs abused in published bypasses of ``safe_mode`` because they reach files,
  the network or the loader itself (``get_file``, ``TFSMLayer``, ``load_model``,
  ``enable_unsafe_deserialization``, ``func_load``, ``read_file``/``write_file``,
  ``py_function``/``numpy_function``).
- SEC-KERAS-003 (MEDIUM): a custom object registered outside Keras (a class from another
  module, or a ``registered_name`` like ``"my_pkg>MyLayer"``): loading needs that code,
  which the artifact does not carry; it runs whatever that package defines.
- SEC-KERAS-004 (HIGH): the config or the HDF5 file cannot be read (not JSON, not an
  object, unreadable HDF5). Fail closed.

``.h5`` files are opened with h5py read-only and only root attributes are read; weights are
never touched. ``looks_like_hdf5`` checks the HDF5 signature at offset 0, 512, 1024 or 2048
(the superblock may follow a user block).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gates.base import Finding, Severity
from gates.security import rules
from gates.security.callables import CallablePolicy
from gates.security.common import Limits, Location, ScanLimitExceeded, json_children
from gates.security.rules import Rule

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
KERAS_MODULES = ("keras", "tf_keras", "tensorflow")
H5_CONFIG_ATTRS = ("model_config", "training_config")

# Keras/TensorFlow APIs that reach files, the network or the loader: safe_mode bypasses.
KERAS_GADGETS = frozenset({
    "get_file", "TFSMLayer", "load_model", "load_weights", "enable_unsafe_deserialization",
    "func_load", "read_file", "write_file", "ReadFile", "WriteFile", "py_function",
    "numpy_function", "py_func", "PyFunc", "EagerPyFunc", "GFile", "system",
})  # fmt: skip

# (function-valued key, the sibling key naming its module) in legacy configs.
_FUNCTION_KEYS = (("function", "module"), ("fn", "module"), ("output_shape", "output_shape_module"))
_PRINTABLE = re.compile(rb"[\x20-\x7e]{3,}")
_MAX_CODE_B64 = 1024 * 1024


def looks_like_hdf5(head: bytes) -> bool:
    return any(head[off : off + 8] == HDF5_MAGIC for off in (0, 512, 1024, 2048))


def looks_like_keras_v3(names_in_zip: list[str]) -> bool:
    """A ``.keras`` v3 archive: ``config.json`` and ``metadata.json`` at the zip root."""
    return "config.json" in names_in_zip and "metadata.json" in names_in_zip


def is_keras_module(module: str) -> bool:
    return any(module == m or module.startswith(m + ".") for m in KERAS_MODULES)


@dataclass
class _Scan:
    where: Location
    policy: CallablePolicy
    findings: list[Finding] = field(default_factory=list)
    seen: set[tuple[str, str, str]] = field(default_factory=set)
    lambda_functions: set[int] = field(default_factory=set)

    def add(
        self,
        rule: Rule,
        message: str,
        path: str,
        *,
        severity: Severity | None = None,
        **evidence: Any,
    ) -> None:
        key = (rule.id, message, path)
        if key not in self.seen:
            self.seen.add(key)
            self.findings.append(
                rule.finding(
                    message, self.where, {"config_path": path, **evidence}, severity=severity
                )
            )


def _object(value: Any) -> dict[str, Any]:
    """A JSON object, or an empty one in place of anything else."""
    return value if isinstance(value, dict) else {}


def _bytecode_strings(code: Any) -> list[str]:
    """Printable runs in base64 marshaled bytecode: names it uses, without unmarshaling."""
    if isinstance(code, list | tuple) and code:
        code = code[0]
    if not isinstance(code, str) or len(code) > _MAX_CODE_B64:
        return []
    try:
        raw = base64.b64decode(code, validate=False)
    except (binascii.Error, ValueError):
        return []
    return [m.decode("ascii") for m in _PRINTABLE.findall(raw)][:30]


def _lambda_kind(cfg: dict[str, Any]) -> tuple[str, list[str], Any]:
    """(kind, bytecode strings, the function entry) of a Lambda layer's config."""
    fn = cfg.get("function")
    if isinstance(fn, dict) and fn.get("class_name") == "__lambda__":
        inner = _object(fn.get("config"))
        code = inner.get("code", inner.get("value"))
        return "marshaled bytecode (base64)", _bytecode_strings(code), fn
    if isinstance(fn, dict) and "module" in fn:
        name = fn.get("config") if isinstance(fn.get("config"), str) else fn.get("class_name")
        return f"module reference {fn.get('module')}.{name}", [], fn
    if cfg.get("function_type") == "lambda" or isinstance(fn, list):
        return "marshaled bytecode (base64)", _bytecode_strings(fn), fn
    if isinstance(fn, str):
        return f"module reference {cfg.get('module')}.{fn}", [], fn
    return "unknown", [], fn


def _check_lambda_layer(node: dict[str, Any], path: str, scan: _Scan) -> None:
    cfg = _object(node.get("config"))
    kind, strings, fn = _lambda_kind(cfg)
    if isinstance(fn, dict):
        scan.lambda_functions.add(id(fn))
    name = cfg.get("name", node.get("name"))
    evidence: dict[str, Any] = {"layer": name, "function_kind": kind}
    if strings:
        evidence["bytecode_strings"] = strings
    scan.add(
        rules.KERAS_LAMBDA,
        f"Lambda layer {name!r} runs Python code on load or call ({kind})",
        path,
        **evidence,
    )


def _check_function(module: str, name: str, path: str, scan: _Scan) -> None:
    """A callable Keras will resolve by module and name."""
    qualified = f"{module}.{name}"
    if is_keras_module(module):
        if name.rsplit(".", 1)[-1] in KERAS_GADGETS:
            scan.add(
                rules.KERAS_FOREIGN_CALLABLE,
                f"config calls {qualified}, a Keras/TensorFlow API that reaches files, the "
                "network or the loader (known safe_mode bypass)",
                path,
                severity=Severity.CRITICAL,
                callable=qualified,
            )
        return
    verdict = scan.policy.judge(module, name)
    if verdict.tier == "allowed":
        return
    dangerous = verdict.tier == "dangerous"
    scan.add(
        rules.KERAS_FOREIGN_CALLABLE,
        f"config references {'dangerous' if dangerous else 'non-Keras'} callable {qualified}",
        path,
        severity=Severity.CRITICAL if dangerous else Severity.HIGH,
        callable=qualified,
        reason=verdict.reason,
    )


def _check_class(module: str, name: str, registered: Any, path: str, scan: _Scan) -> None:
    if is_keras_module(module):
        _check_function(module, name, path, scan)  # only gadgets matter inside Keras
        return
    verdict = scan.policy.judge(module, name)
    if verdict.tier == "dangerous":
        _check_function(module, name, path, scan)
    elif verdict.tier == "unknown":
        _custom_object(f"{module}.{name}", registered, path, scan)


def _custom_object(qualified: str, registered: Any, path: str, scan: _Scan) -> None:
    scan.add(
        rules.KERAS_CUSTOM_OBJECT,
        f"custom object {qualified} registered outside Keras: loading runs that package's code",
        path,
        object=qualified,
        registered_name=registered,
    )


def _check_reference(node: dict[str, Any], path: str, scan: _Scan) -> None:
    module, cls = node.get("module"), node.get("class_name")
    registered = node.get("registered_name")
    if isinstance(module, str) and module and isinstance(cls, str):
        if cls == "function":
            cfg = node.get("config")
            name = cfg if isinstance(cfg, str) else registered
            if isinstance(name, str):
                _check_function(module, name, path, scan)
        else:
            _check_class(module, cls, registered, path, scan)
    elif isinstance(registered, str) and ">" in registered:
        package = registered.split(">", 1)[0]
        if not is_keras_module(package):
            _custom_object(registered, registered, path, scan)


def _check_function_strings(node: dict[str, Any], path: str, scan: _Scan) -> None:
    """Legacy configs: ``"function": "system", "module": "os"`` or a dotted name."""
    for key, module_key in _FUNCTION_KEYS:
        value, module = node.get(key), node.get(module_key)
        if not isinstance(value, str) or not value:
            continue
        if node.get("function_type") == "lambda" and key == "function":
            continue  # base64 bytecode, reported as SEC-KERAS-001
        if node.get(f"{key}_type") == "lambda":
            continue
        if isinstance(module, str) and module:
            _check_function(module, value, f"{path}.{key}", scan)
        elif "." in value and re.fullmatch(r"[A-Za-z_][\w.]*", value):
            mod, name = value.rsplit(".", 1)
            _check_function(mod, name, f"{path}.{key}", scan)


def scan_keras_config(
    config: dict[str, Any], where: Location, policy: CallablePolicy
) -> list[Finding]:
    """Findings for one Keras config object (``config.json``, ``model_config``, metadata)."""
    scan = _Scan(where, policy)
    stack: list[tuple[Any, str]] = [(config, "$")]
    while stack:
        obj, path = stack.pop()
        if isinstance(obj, dict):
            cls = obj.get("class_name")
            if cls == "Lambda":
                _check_lambda_layer(obj, path, scan)
            elif cls == "__lambda__" and id(obj) not in scan.lambda_functions:
                inner = _object(obj.get("config"))
                strings = _bytecode_strings(inner.get("value", inner.get("code")))
                scan.add(
                    rules.KERAS_LAMBDA,
                    "serialized Python lambda (marshaled bytecode) outside a Lambda layer",
                    path,
                    function_kind="marshaled bytecode (base64)",
                    bytecode_strings=strings,
                )
            _check_reference(obj, path, scan)
            _check_function_strings(obj, path, scan)
        # push in reverse so findings come out in document order
        stack.extend(reversed(list(json_children(obj, path))))
    return scan.findings


def scan_keras_json(data: bytes, where: Location, policy: CallablePolicy) -> list[Finding]:
    """Parse then scan a JSON config (``config.json`` of a ``.keras`` archive)."""
    try:
        config = json.loads(data.decode("utf-8") if isinstance(data, bytes) else data)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return [_unreadable(where, f"config is not UTF-8 JSON ({type(exc).__name__})")]
    if not isinstance(config, dict):
        return [_unreadable(where, f"config is a JSON {type(config).__name__}, not an object")]
    return scan_keras_config(config, where, policy)


def _unreadable(where: Location, why: str, **evidence: Any) -> Finding:
    return rules.KERAS_UNREADABLE.finding(
        f"Keras model cannot be audited: {why}",
        where,
        {"reason": why, **evidence},
    )


def _attr_text(value: Any) -> str:
    if hasattr(value, "tobytes") and not isinstance(value, bytes | str):
        value = value.tobytes() if getattr(value, "ndim", 0) == 0 else value
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    raise ValueError(f"attribute is a {type(value).__name__}, not text")


def scan_h5(path: Path, where: Location, policy: CallablePolicy, limits: Limits) -> list[Finding]:
    """Findings for a legacy Keras ``.h5`` (or any HDF5 file): root config attributes only.

    Raises ScanLimitExceeded when a config attribute is larger than ``max_header_bytes``.
    """
    import h5py  # deferred: only HDF5 files pay for the import

    findings: list[Finding] = []
    try:
        with h5py.File(path, "r", locking=False) as h5:
            for attr in H5_CONFIG_ATTRS:
                if attr not in h5.attrs:
                    continue
                size = h5.attrs.get_id(attr).get_storage_size()
                if size > limits.max_header_bytes:
                    raise ScanLimitExceeded("header_size", f"HDF5 attribute {attr} is {size} bytes")
                try:
                    text = _attr_text(h5.attrs[attr])
                except (ValueError, UnicodeDecodeError, OSError, TypeError) as exc:
                    findings.append(_unreadable(where, f"{attr}: {exc}", attribute=attr))
                    continue
                for item in scan_keras_json(text.encode("utf-8"), where, policy):
                    findings.append(_with_attribute(item, attr))
    except (OSError, ValueError, RuntimeError) as exc:
        return [_unreadable(where, f"HDF5 file cannot be read ({exc})"[:300])]
    return findings


def _with_attribute(item: Finding, attr: str) -> Finding:
    return replace(item, evidence={**item.evidence, "hdf5_attribute": attr})
