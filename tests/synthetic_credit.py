"""A synthetic credit data set for the evaluation gates, fair or with one group treated worse.

Applicants have income, debt ratio, age and years employed; `approved` follows a
creditworthiness score built from those alone. In the biased variant, women (`gender == "F"`)
need a much higher score to be approved, so a model that sees gender learns to approve them
about 0.6 times as often as men with the same profile: the textbook disparate-impact case.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC_FEATURES = ["income", "debt_ratio", "age", "years_employed"]
SENSITIVE_FEATURES = ["gender", "age_band"]
TARGET = "approved"
AGE_BANDS = (("18-29", 30), ("30-44", 45), ("45-59", 60), ("60+", 200))
# extra score an applicant from group F needs in the biased variant (score sd is about 1.5)
BIAS_PENALTY = 0.7


def age_band(age: pd.Series) -> pd.Series:
    bands = np.select([age < upper for _, upper in AGE_BANDS], [b for b, _ in AGE_BANDS])
    return pd.Series(bands, index=age.index, name="age_band")


def make_credit_data(n: int = 5000, seed: int = 0, biased: bool = False) -> pd.DataFrame:
    """`n` applicants; `biased` makes group F approved much less often at the same profile."""
    rng = np.random.default_rng(seed)
    gender = rng.choice(np.array(["F", "M"]), size=n)
    age = rng.integers(18, 76, size=n)
    income = np.round(np.exp(rng.normal(10.6, 0.45, size=n)), -1)
    debt_ratio = np.round(rng.beta(2.0, 5.0, size=n), 3)
    years_employed = np.minimum(rng.poisson(6.0, size=n), age - 17)
    score = (
        (np.log(income) - 10.6) / 0.45
        - (debt_ratio - 2.0 / 7.0) / 0.16
        + 0.3 * (years_employed - 6.0) / 2.45
        + rng.normal(0.0, 0.5, size=n)
    )
    if biased:
        score = score - BIAS_PENALTY * (gender == "F")
    frame = pd.DataFrame(
        {
            "income": income,
            "debt_ratio": debt_ratio,
            "age": age,
            "years_employed": years_employed,
            "gender": gender,
        }
    )
    frame["age_band"] = age_band(frame["age"])
    frame[TARGET] = (score > 0.0).astype(int)
    return frame


def train_model(df: pd.DataFrame, include_gender: bool = True, max_iter: int = 1000) -> Pipeline:
    """Logistic regression on the numeric features plus one-hot `gender` (so bias is learnable)."""
    categorical = ["gender"] if include_gender else []
    encode = ColumnTransformer(
        [
            ("numeric", StandardScaler(), NUMERIC_FEATURES),
            ("onehot", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
    model = Pipeline([("encode", encode), ("classify", LogisticRegression(max_iter=max_iter))])
    model.fit(df[NUMERIC_FEATURES + categorical], df[TARGET])
    return model
