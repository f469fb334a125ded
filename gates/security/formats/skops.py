"""skops archives: every type the schema names, judged without loading (SEC-SKOPS-001..004).

A ``.skops`` file is a zip of ``schema.json`` (a tree of nodes, each
``{"__class__", "__module__", "__loader__", "content", ...}``) plus ``.npy``/``.npz``/
``.bin`` members. ``skops.io.load`` imports ``__module__`` and resolves ``__class__`` for
every node, then instantiates or calls it according to ``__loader__``: ``ObjectNode`` calls
``cls.__new__`` and ``__setstate__``, ``ConstructorFromReduceNode`` calls ``cls(*args)``,
``FunctionNode``/``TypeNode`` hand back the callable, ``OperatorFuncNode`` calls
``operator.<name>(*attrs)``, ``MethodNode`` does ``getattr(obj, name)``,
``RandomGeneratorNode`` calls the ``numpy.random`` attribute named in its state. skops'
safety is a list of "trusted types" that the *caller* provides; MLflow takes that list from
the model's own MLmodel (``skops_trusted_types``), so a crafted model trusts itself. We
never read that list: each node is judged on its own.

Each (module, name) is judged by the shared callable policy (``callables.py``) and, for the
ones the policy does not know, by skops' own default trusted set (builtins containers and
primitives, numpy arrays/dtypes/ufuncs, ``RandomState``/``Generator``, scipy.special ufuncs,
scikit-learn's internal loss, link and binning types; public sklearn estimators are already
allowed by the policy).

- SEC-SKOPS-002 (CRITICAL): a node reaches a dangerous callable (``builtins.eval``,
  ``os.system``, any ``operator.*`` trampoline, import machinery, ...). Dangerous wins over
  any trust list.
- SEC-SKOPS-001 (HIGH): a type or function trusted neither by our policy nor by skops'
  defaults (e.g. a custom class, ``functools.partial``, a bound method, a
  ``numpy.random`` attribute that is not a bit generator). Extend the policy's
  ``allow_callables`` to accept one knowingly.
- SEC-SKOPS-003 (HIGH): ``schema.json`` cannot be audited: not UTF-8 JSON, not an object,
  nested too deeply, or a node whose module/class is not a string. Fail closed.
- SEC-SKOPS-004 (MEDIUM): a ``__loader__`` this scanner does not know (a newer skops, or a
  tampered file); its type is still judged.

``JsonNode`` and ``SliceNode`` are not judged: skops builds them from literals and never
imports the type they name. Findings are aggregated per callable, with up to five schema
paths as evidence (``$.content.content.steps.content[1]`` style).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gates.base import Finding
from gates.security import rules
from gates.security.callables import CallablePolicy, Verdict
from gates.security.common import Location, json_children

SCHEMA_MEMBER = "schema.json"

KNOWN_LOADERS = frozenset({
    "DictNode", "DefaultDictNode", "ListNode", "SetNode", "TupleNode", "BytesNode",
    "BytearrayNode", "SliceNode", "FunctionNode", "MethodNode", "PartialNode", "TypeNode",
    "ConstructorFromReduceNode", "ObjectNode", "JsonNode", "OperatorFuncNode",
    "NdArrayNode", "MaskedArrayNode", "DTypeNode", "RandomStateNode", "RandomGeneratorNode",
    "SparseMatrixNode", "LossNode", "TreeNode", "_DictWithDeprecatedKeysNode", "CachedNode",
    "QuantileForestNode",
})  # fmt: skip

# Loaders whose __module__/__class__ skops never imports (built from literals).
_NOT_IMPORTED = frozenset({"JsonNode", "SliceNode"})

_BIT_GENERATORS = frozenset({"MT19937", "PCG64", "PCG64DXSM", "Philox", "SFC64"})

_NUMPY_UFUNCS = frozenset(n for n in dir(np) if isinstance(getattr(np, n, None), np.ufunc))
_UFUNC_MODULES = frozenset({
    "numpy", "numpy.core._multiarray_umath", "numpy._core._multiarray_umath",
    "numpy.core.umath", "numpy._core.umath",
})  # fmt: skip
_NUMPY_SCALAR_TYPES = frozenset(f"numpy.{t.__name__}" for t in set(np.sctypeDict.values()))

# skops 0.16 default trusted types (skops/io/_trusted_types.py, node classes), by name.
_SKOPS_TRUSTED = frozenset({
    "builtins.int", "builtins.float", "builtins.str", "builtins.bool", "builtins.list",
    "builtins.set", "builtins.map", "builtins.tuple", "builtins.dict", "builtins.bytes",
    "builtins.bytearray", "builtins.slice", "collections.OrderedDict",
    "collections.defaultdict", "numpy.ndarray", "numpy.dtype", "numpy.ma.core.MaskedArray",
    "numpy.random.mtrand.RandomState", "numpy.random._generator.Generator",
    "sklearn._loss.link.HalfLogitLink", "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval", "sklearn._loss.link.LogitLink", "sklearn._loss.link.LogLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.linear_model._sgd_fast.EpsilonInsensitive", "sklearn.linear_model._sgd_fast.Hinge",
    "sklearn.linear_model._sgd_fast.ModifiedHuber",
    "sklearn.linear_model._sgd_fast.SquaredEpsilonInsensitive",
    "sklearn.linear_model._sgd_fast.SquaredHinge", "sklearn.linear_model._sgd_fast.Huber",
    "sklearn.linear_model._sgd_fast.Log", "sklearn.linear_model._sgd_fast.SquaredLoss",
    *(f"{mod}.Cy{loss}" for mod in ("_loss", "sklearn._loss._loss") for loss in (
        "AbsoluteError", "ExponentialLoss", "HalfBinomialLoss", "HalfGammaLoss",
        "HalfMultinomialLoss", "HalfPoissonLoss", "HalfSquaredError", "HalfTweedieLoss",
        "HalfTweedieLossIdentity", "HuberLoss", "PinballLoss",
    )),
})  # fmt: skip

_MAX_DEPTH = 10_000


def looks_like_skops(names_in_zip: list[str], schema_bytes: bytes) -> bool:
    """A zip with a ``schema.json`` that is made of skops nodes."""
    return (
        SCHEMA_MEMBER in names_in_zip
        and b'"__loader__"' in schema_bytes
        and (b'"_skops_version"' in schema_bytes or b'"protocol"' in schema_bytes)
    )


def skops_trusts(module: str, name: str) -> bool:
    """Whether skops trusts ``module.name`` by default (without any user-given list)."""
    qualified = f"{module}.{name}"
    if qualified in _SKOPS_TRUSTED or qualified in _NUMPY_SCALAR_TYPES:
        return True
    if module in _UFUNC_MODULES and name in _NUMPY_UFUNCS:
        return True
    return module == "scipy.special._ufuncs" and not name.startswith("_") and "." not in name


def judge(module: str, name: str, policy: CallablePolicy) -> Verdict:
    verdict = policy.judge(module, name)
    if verdict.tier == "unknown" and skops_trusts(module, name):
        return Verdict("allowed", "trusted by skops by default")
    return verdict


@dataclass
class _Hit:
    verdict: Verdict
    loader: str
    paths: list[str] = field(default_factory=list)
    count: int = 0


@dataclass
class _Audit:
    policy: CallablePolicy
    hits: dict[str, _Hit] = field(default_factory=dict)
    unknown_loaders: dict[str, list[str]] = field(default_factory=dict)
    malformed: list[str] = field(default_factory=list)

    def note(
        self, module: str, name: str, loader: str, path: str, verdict: Verdict | None = None
    ) -> None:
        """Record ``module.name`` unless allowed; ``verdict`` overrides the policy's."""
        verdict = verdict or judge(module, name, self.policy)
        if verdict.tier == "allowed":
            return
        hit = self.hits.setdefault(f"{module}.{name}", _Hit(verdict, loader))
        hit.count += 1
        if len(hit.paths) < 5:
            hit.paths.append(path)


def _bit_generator_name(node: dict[str, Any]) -> Any:
    """The bit generator class name a RandomGeneratorNode makes skops call (any protocol)."""
    content = node.get("content")
    state = content.get("bit_generator") if isinstance(content, dict) else None
    if not isinstance(state, dict):
        return None
    if isinstance(state.get("bit_generator"), str):  # protocol 0: a plain dict
        return state["bit_generator"]
    inner = state.get("content")
    named = inner.get("bit_generator") if isinstance(inner, dict) else None
    if isinstance(named, dict) and isinstance(named.get("content"), str):
        try:
            return json.loads(named["content"])
        except ValueError:
            return named["content"]
    return None


def _audit_node(node: dict[str, Any], path: str, audit: _Audit) -> None:
    loader = node.get("__loader__")
    module, name = node.get("__module__"), node.get("__class__")
    if not isinstance(loader, str):
        loader = ""
    if loader and loader not in KNOWN_LOADERS:
        audit.unknown_loaders.setdefault(loader, []).append(path)
    if loader in _NOT_IMPORTED:
        return
    if not (isinstance(module, str) and isinstance(name, str)):
        audit.malformed.append(f"{path}: __module__/__class__ are not strings")
        return
    content = node.get("content")
    if loader == "FunctionNode" and isinstance(content, dict) and "module_path" in content:
        fmod, fname = content.get("module_path"), content.get("function")  # protocol 0
        if isinstance(fmod, str) and isinstance(fname, str):
            audit.note(fmod, fname, loader, path)
        else:
            audit.malformed.append(f"{path}: protocol-0 FunctionNode without names")
        return
    if loader == "MethodNode" and isinstance(content, dict):
        owner = content.get("obj")
        if not isinstance(owner, dict):
            owner = {}
        omod, ocls = owner.get("__module__", module), owner.get("__class__", name)
        method = content.get("func")
        if isinstance(omod, str) and isinstance(ocls, str) and isinstance(method, str):
            verdict = judge(omod, f"{ocls}.{method}", audit.policy)
            if verdict.tier != "dangerous":
                verdict = Verdict("unknown", "bound method: skops trusts none by default")
            audit.note(omod, f"{ocls}.{method}", loader, path, verdict)
        else:
            audit.malformed.append(f"{path}: MethodNode without a method name")
        return
    if loader == "PartialNode":
        # skops always builds a plain functools.partial; the wrapped function is a child
        # node judged on its own, so the partial itself is untrusted, not a trampoline.
        reason = "functools.partial: skops trusts none by default; its function is judged apart"
        audit.note("functools", "partial", loader, path, Verdict("unknown", reason))
        return
    if loader == "RandomGeneratorNode":
        bitgen = _bit_generator_name(node)
        if bitgen not in _BIT_GENERATORS:
            verdict = judge("numpy.random", str(bitgen), audit.policy)
            if verdict.tier != "dangerous":
                why = "skops calls this numpy.random attribute as a bit generator at load"
                verdict = Verdict("unknown", why)
            audit.note("numpy.random", str(bitgen), loader, f"{path}.content", verdict)
    audit.note(module, name, loader, path)


def _walk(schema: Any, audit: _Audit) -> None:
    stack: list[tuple[Any, str, int]] = [(schema, "$", 0)]
    while stack:
        obj, path, depth = stack.pop()
        if depth > _MAX_DEPTH:
            audit.malformed.append(f"{path}: nested deeper than {_MAX_DEPTH}")
            return
        if isinstance(obj, dict) and ("__loader__" in obj or "__module__" in obj):
            _audit_node(obj, path, audit)
        stack.extend((child, cpath, depth + 1) for child, cpath in json_children(obj, path))


def _findings(audit: _Audit, where: Location) -> list[Finding]:
    out: list[Finding] = []
    for qualified, hit in sorted(audit.hits.items()):
        dangerous = hit.verdict.tier == "dangerous"
        rule = rules.SKOPS_DANGEROUS_CALLABLE if dangerous else rules.SKOPS_UNTRUSTED_TYPE
        out.append(
            rule.finding(
                f"skops schema {'reaches dangerous' if dangerous else 'uses untrusted'} "
                f"{qualified} ({hit.loader or 'no loader'})",
                where,
                {
                    "callable": qualified,
                    "loader": hit.loader,
                    "reason": hit.verdict.reason,
                    "schema_paths": hit.paths,
                    "occurrences": hit.count,
                },
            )
        )
    for loader, paths in sorted(audit.unknown_loaders.items()):
        out.append(
            rules.SKOPS_UNKNOWN_LOADER.finding(
                f"unknown skops loader {loader!r}: cannot tell what it constructs",
                where,
                {"loader": loader, "schema_paths": paths[:5], "occurrences": len(paths)},
            )
        )
    if audit.malformed:
        out.append(_unauditable(where, "; ".join(audit.malformed[:5]), len(audit.malformed)))
    return out


def _unauditable(where: Location, why: str, count: int = 1) -> Finding:
    return rules.SKOPS_UNAUDITABLE.finding(
        f"skops schema.json cannot be audited: {why}",
        where,
        {"reason": why, "problem_count": count, "member": SCHEMA_MEMBER},
    )


def scan_skops_schema(
    schema_bytes: bytes, where: Location, policy: CallablePolicy
) -> list[Finding]:
    """Findings for one skops ``schema.json`` (``where`` is the .skops file or zip member)."""
    try:
        schema = json.loads(schema_bytes.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        return [_unauditable(where, f"not UTF-8 JSON ({type(exc).__name__}: {exc})"[:300])]
    if not isinstance(schema, dict):
        return [_unauditable(where, f"top level is a {type(schema).__name__}, not a node")]
    audit = _Audit(policy)
    _walk(schema, audit)
    return _findings(audit, where)
