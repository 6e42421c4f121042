"""Snuba's candidate features: rolling-window columns of RTT and the numeric matrices read from frames."""

from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from flamenco_core.preprocess.windows import WINDOW_STATS, window_feature_names, window_features

#: Window statistics left out of the default features: ``count`` only says how far into its series a row
#: is (it is the window length everywhere but the first rows), not how the RTT behaves.
DEFAULT_WINDOW_STATS = tuple(s for s in WINDOW_STATS if s != "count")


def window_columns(window: int = 10, feature: str = "rtt_ms", stats: Sequence[str] = DEFAULT_WINDOW_STATS) -> list[str]:
    """Names of the rolling-window feature columns used as candidate features (``rtt_ms_w10_mean`` ...)."""
    names = dict(zip(WINDOW_STATS, window_feature_names(window, feature)))
    return [names[s] for s in stats]


def feature_sets(window: int = 10, feature: str = "rtt_ms") -> dict[str, list[str]]:
    """The two feature options: ``"raw"`` (Snuba on RTT alone) and ``"window"`` (RTT plus window features)."""
    return {"raw": [feature], "window": [feature] + window_columns(window, feature)}


def add_window_features(df: pd.DataFrame, window: int = 10, feature: str = "rtt_ms", **kwargs: Any) -> pd.DataFrame:
    """``df`` with :func:`~flamenco_core.preprocess.window_features` columns appended.

    Compute them on the whole time-ordered series *before* splitting it into labeled and unlabeled rows:
    a window must hold the points that preceded a row in time, not those that happened to be sampled.
    """
    feats = window_features(df, window=window, feature=feature, **kwargs)
    return pd.concat([df, feats[[c for c in feats.columns if c not in df.columns]]], axis=1)


def default_features(labeled_df: pd.DataFrame, unlabeled_df: pd.DataFrame, feature: str = "rtt_ms") -> list[str]:
    """``rtt_ms`` plus every rolling-window column of it present in both frames (except ``count``)."""
    pat = re.compile(rf"^{re.escape(feature)}_w\d+_({'|'.join(DEFAULT_WINDOW_STATS)})$")
    win = [c for c in labeled_df.columns if pat.match(str(c)) and c in unlabeled_df.columns]
    return [feature] + win


def numeric_matrix(df: pd.DataFrame, features: Sequence[str], what: str) -> np.ndarray:
    """``df[features]`` as a float64 matrix (NaN for missing); ValueError naming the ``what`` frame when a
    feature column is missing or not numeric."""
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise ValueError(f"the {what} frame lacks feature column(s) {missing}")
    bad = [f for f in features if not pd.api.types.is_numeric_dtype(df[f].dtype)]
    if bad:
        raise ValueError(f"feature column(s) {bad} of the {what} frame are not numeric")
    return np.column_stack([df[f].to_numpy(dtype=np.float64, na_value=np.nan) for f in features]) if features else np.empty((len(df), 0))
