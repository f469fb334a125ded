"""No false positives on the models people register (issue 9's bar), in process.

Every estimator `all_estimators()` gives, fitted with defaults, plus the pipelines teams ship
and the xgboost / lightgbm / pandas / scipy / torch objects, each pickled and joblib-dumped
(plain and compressed): none is blocked. A library upgrade that starts emitting a factory we
do not allow fails here, with the fix in the message.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gates.base import Status
from gates.security import scan_path
from gates.security.config import SecurityConfig
from tests.corpus.estimators import write_artifacts

# `make test-fast` leaves these out: builds and scans every estimator and pipeline
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return write_artifacts(tmp_path_factory.mktemp("estimators"))


def test_every_estimator_pipeline_and_library_object_passes(artifacts: list[Path]) -> None:
    estimators = {
        p.name.split(".")[0].split("-", 1)[1] for p in artifacts if p.name.startswith(KINDS_PREFIX)
    }
    assert len(estimators) >= 150, len(estimators)
    for expected in ("KNeighborsClassifier", "SelectKBest", "BisectingKMeans",
                     "FeatureAgglomeration", "Isomap", "GenericUnivariateSelect"):  # fmt: skip
        assert expected in estimators
    blocked = {}
    for path in artifacts:
        result = scan_path(path, SecurityConfig(modelscan=False))
        if result.status != Status.PASS:
            blocked[path.name] = [f.message for f in result.findings if f.severity.rank >= 3]
    assert blocked == {}, (
        f"{len(blocked)} of {len(artifacts)} benign artifacts blocked; if a library now emits "
        "a new factory, run `python -m tests.corpus.library_factories`: "
        f"{list(blocked.items())[:5]}"
    )


KINDS_PREFIX = ("classifier-", "regressor-", "transformer-", "cluster-")


def test_an_unknown_stored_function_names_itself_and_the_allow_entry(tmp_path: Path) -> None:
    """Outside the safe-to-reference tier a stored function is still HIGH, and the finding
    says it is only referenced and which `allow_callables` entry would accept it."""
    import pickle

    body = (
        b"\x80\x04csklearn.feature_selection._univariate_selection\nSelectKBest\n)\x81}(X\n\x00"
        b"\x00\x00score_funccmycompany.scoring\nchi_like\nub."
    )
    path = tmp_path / "selector.pkl"
    path.write_bytes(body)
    assert pickle.dumps  # the file is written from opcodes, never loaded
    result = scan_path(path, SecurityConfig(modelscan=False))
    assert result.status == Status.FAIL
    finding = next(f for f in result.findings if f.rule_id == "SEC-PICKLE-002")
    assert finding.evidence["callable"] == "mycompany.scoring.chi_like"
    assert finding.evidence["called"] is False
    assert "stores a reference to it" in finding.message
    assert 'allow_callables: ["mycompany.scoring.chi_like"]' in finding.message
    allowed = scan_path(
        path, SecurityConfig(modelscan=False, allow_callables=["mycompany.scoring.chi_like"])
    )
    assert allowed.status == Status.PASS


def test_an_unknown_class_the_pickle_constructs_is_a_call(tmp_path: Path) -> None:
    path = tmp_path / "custom.pkl"
    path.write_bytes(b"\x80\x04cmycompany.models\nCustomModel\n)\x81}b.")
    result = scan_path(path, SecurityConfig(modelscan=False))
    finding = next(f for f in result.findings if f.rule_id == "SEC-PICKLE-002")
    assert finding.evidence["called"] is True
    assert "calls it while loading" in finding.message
