"""Which dataset columns hold text: the ones the secret and PII scans read."""

from __future__ import annotations

import pandas as pd


def is_text_column(series: pd.Series) -> bool:
    """Object, string and categorical columns; numbers, dates and booleans hold no text."""
    dtype = series.dtype
    return (
        pd.api.types.is_object_dtype(dtype)
        or pd.api.types.is_string_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    )
