"""skops schemas (SEC-SKOPS-*): real dumps of scikit-learn estimators pass, injected dangerous
or untrusted nodes are caught, unreadable schemas fail closed.

Every malicious sample is built from bytes, JSON or protobuf fields; none is ever loaded by
the library it targets.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gates.base import Severity
from gates.security.callables import CallablePolicy
from gates.security.common import Location
from gates.security.formats import skops
from tests.unit.format_helpers import POLICY, one_finding, rule_pairs


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
    hit = one_finding(findings, "SEC-SKOPS-002")
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
    hit = one_finding(findings, "SEC-SKOPS-001")
    assert hit.severity == Severity.HIGH
    assert hit.evidence["callable"] == callable_name


def test_skops_policy_extension_allows_a_custom_type(tmp_path: Path) -> None:
    node = {"__class__": "MyModel", "__module__": "my_pkg", "__loader__": "ObjectNode"}
    data = _inject(_lr_schema(tmp_path), node)
    assert skops.scan_skops_schema(data, Location("m"), CallablePolicy(("my_pkg.*",))) == []


def test_skops_unknown_loader_and_unreadable_schema(tmp_path: Path) -> None:
    node = {"__class__": "dict", "__module__": "builtins", "__loader__": "TimeMachineNode"}
    findings = skops.scan_skops_schema(_inject(_lr_schema(tmp_path), node), Location("m"), POLICY)
    assert rule_pairs(findings) == [("SEC-SKOPS-004", Severity.MEDIUM)]
    for bad in (b"{not json", b"[]", b"\xff\xfe"):
        assert rule_pairs(skops.scan_skops_schema(bad, Location("m"), POLICY)) == [
            ("SEC-SKOPS-003", Severity.HIGH)
        ]


def test_looks_like_skops_needs_the_schema() -> None:
    assert not skops.looks_like_skops(["config.json"], b"{}")
    assert not skops.looks_like_skops(["schema.json"], b'{"type": "object"}')


# -- keras ------------------------------------------------------------------------------
