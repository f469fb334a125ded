"""The models people actually register, made by the real libraries: every estimator that
`sklearn.utils.all_estimators()` lists (classifiers, regressors, transformers, clusterers),
fitted with defaults on a small table, the pipelines teams ship, xgboost / lightgbm wrappers,
pandas objects, scipy sparse matrices and a torch state dict; each written with `pickle` and
with `joblib` (plain and compressed). A security gate that blocks any of them blocks good
models (issue 9's bar: none blocked).

    python -m tests.corpus.estimators OUT_DIR    # writes the files, prints the count
"""

from __future__ import annotations

import pickle
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np

KINDS = ("classifier", "regressor", "transformer", "cluster")


def _data() -> dict[str, Any]:
    from sklearn.datasets import make_classification

    X, y = make_classification(n_samples=80, n_features=6, n_informative=3, random_state=0)
    X = np.abs(X)
    yr = X @ np.arange(1, 7) + 1.0
    return {"X": X, "y": y, "yr": yr, "Y2": np.column_stack([yr, 2 * yr + 1])}


def _special_fits(d: dict[str, Any]) -> dict[str, Callable[[Any], Any]]:
    """Estimators whose defaults need an input of their own shape."""
    X, y = d["X"], d["y"]
    wide = np.abs(np.random.default_rng(0).normal(size=(20, 3000)))
    return {
        "DictVectorizer": lambda e: e.fit([{"a": 1.0, "b": "x"}, {"a": 2.0, "b": "y"}]),
        "LabelBinarizer": lambda e: e.fit(y),
        "LabelEncoder": lambda e: e.fit(y),
        "MultiLabelBinarizer": lambda e: e.fit([[1, 2], [3]]),
        "GaussianRandomProjection": lambda e: e.fit(wide),
        "SparseRandomProjection": lambda e: e.fit(wide),
        "KernelCenterer": lambda e: e.fit(X @ X.T),
    }


def _fit(name: str, estimator: Any, kind: str, d: dict[str, Any]) -> Any:
    special = _special_fits(d).get(name)
    if special is not None:
        return special(estimator)
    X = d["X"]
    attempts = [(X, d["y"]), (X, d["yr"]), (X, d["Y2"]), (X[:, 0], d["yr"])]
    if kind == "regressor":
        attempts = [attempts[1], attempts[2], attempts[3], attempts[0]]
    error: Exception | None = None
    for features, target in attempts:
        try:
            return estimator.fit(features, target)
        except Exception as exc:  # try the next input shape
            error = exc
    raise RuntimeError(f"{name} could not be fitted: {error!r}")


def all_estimators_fitted() -> Iterator[tuple[str, Any]]:
    """(kind-Name, fitted estimator) for every estimator constructible with defaults."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.semi_supervised import SelfTrainingClassifier
    from sklearn.utils import all_estimators

    d = _data()
    seen: set[str] = set()
    for kind in KINDS:
        for name, cls in all_estimators(type_filter=kind):
            if name in seen:
                continue
            if cls is SelfTrainingClassifier:  # constructs without, but fit needs, an estimator
                estimator = cls(LogisticRegression())
            else:
                try:
                    estimator = cls()
                except TypeError:
                    continue  # meta-estimators that need an estimator: see pipelines()
            seen.add(name)
            yield f"{kind}-{name}", _fit(name, estimator, kind, d)


def pipelines() -> Iterator[tuple[str, Any]]:
    """The shapes teams ship: selectors, FunctionTransformer, ColumnTransformer, searches."""
    import pandas as pd
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.cluster import FeatureAgglomeration
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import RandomForestClassifier, VotingClassifier
    from sklearn.feature_selection import SelectKBest, f_classif, mutual_info_classif
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    d = _data()
    X, y = d["X"], d["y"]
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)]).assign(
        country=np.where(y == 1, "NL", "DE")
    )
    columns = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="ignore"), ["country"])], remainder="passthrough"
    )
    yield (
        "pipe-selectkbest-f_classif",
        make_pipeline(StandardScaler(), SelectKBest(f_classif, k=3), LogisticRegression()).fit(
            X, y
        ),
    )
    yield (
        "pipe-selectkbest-mutual_info",
        make_pipeline(SelectKBest(mutual_info_classif, k=3), LogisticRegression()).fit(X, y),
    )
    for func in (np.log1p, np.sqrt, np.exp, np.abs):
        yield (
            f"pipe-functiontransformer-{func.__name__}",
            make_pipeline(FunctionTransformer(func), LogisticRegression()).fit(X, y),
        )
    yield "pipe-featureagglomeration-mean", FeatureAgglomeration(pooling_func=np.mean).fit(X)
    yield (
        "pipe-columntransformer-onehot",
        make_pipeline(
            columns, SimpleImputer(), RandomForestClassifier(n_estimators=5, random_state=0)
        ).fit(frame, y),
    )
    yield (
        "pipe-gridsearch-knn",
        GridSearchCV(KNeighborsClassifier(), {"n_neighbors": [3, 5]}, cv=3).fit(X, y),
    )
    yield "pipe-calibrated", CalibratedClassifierCV(LogisticRegression(), cv=3).fit(X, y)
    yield (
        "pipe-voting-knn",
        VotingClassifier(
            [("knn", KNeighborsClassifier()), ("lr", LogisticRegression())], voting="soft"
        ).fit(X, y),
    )


def library_objects() -> Iterator[tuple[str, Any]]:
    """xgboost / lightgbm sklearn wrappers, pandas objects, scipy sparse matrices."""
    import lightgbm
    import pandas as pd
    import scipy.sparse
    import xgboost

    d = _data()
    X, y = d["X"], d["y"]
    yield "xgboost-classifier", xgboost.XGBClassifier(n_estimators=5).fit(X, y)
    yield "lightgbm-classifier", lightgbm.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, y)
    frame = pd.DataFrame(X, columns=list("abcdef")).assign(
        when=pd.date_range("2026-01-01", periods=len(X)), cat=pd.Categorical(y)
    )
    yield "pandas-dataframe", frame
    yield "pandas-series", frame["a"]
    yield "scipy-csr", scipy.sparse.csr_matrix(X)
    yield "scipy-coo", scipy.sparse.coo_matrix(X)


def write_artifacts(out_dir: Path) -> list[Path]:
    """Every object above as `NAME.pkl`, `NAME.joblib` and (pipelines) `NAME.z.joblib`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for source in (all_estimators_fitted, pipelines, library_objects):
            for name, obj in source():
                pkl = out_dir / f"{name}.pkl"
                pkl.write_bytes(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
                joblib.dump(obj, out_dir / f"{name}.joblib")
                written += [pkl, out_dir / f"{name}.joblib"]
                if source is not all_estimators_fitted:
                    joblib.dump(obj, out_dir / f"{name}.z.joblib", compress=3)
                    written.append(out_dir / f"{name}.z.joblib")
        written.append(_torch_state_dict(out_dir / "torch-state-dict.pt"))
    return written


def _torch_state_dict(path: Path) -> Path:
    import torch

    model = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    torch.save(model.state_dict(), path)
    return path


if __name__ == "__main__":
    files = write_artifacts(Path(sys.argv[1]))
    print(f"{len(files)} files")
