"""Statistics profiles: the per-feature summary that LF writers read and that LF specs' thresholds
refer to. Statistics follow pandas' ``describe()``: sample std (ddof=1), linearly interpolated
percentiles."""

from __future__ import annotations

from typing import Iterable

import numpy as np
import pandas as pd

PROFILE_STATS = ["count", "mean", "std", "min", "q1", "median", "q3", "max"]


def profile(df: pd.DataFrame, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """One row per numeric column with :data:`PROFILE_STATS`.

    ``columns`` defaults to every numeric column. Non-finite values are ignored, as cleaning would.
    """
    cols = list(columns) if columns is not None else [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    if not cols:
        raise ValueError("profile needs at least one numeric column")
    values = df[cols].apply(pd.to_numeric, errors="raise").astype("float64")
    values = values.where(np.isfinite(values))
    desc = values.describe(percentiles=[0.25, 0.5, 0.75]).T
    out = desc.rename(columns={"25%": "q1", "50%": "median", "75%": "q3"})[PROFILE_STATS]
    out.index.name = "feature"
    return out
