"""Noise thresholds (upper bounds) from the statistics of a unimodal RTT dataset, and the heuristic
labels they give; see docs/preprocess.md, ``thresholds.py``."""

from __future__ import annotations

import math
from typing import Literal, Sequence

import numpy as np
import pandas as pd

Method = Literal["median_mad", "iqr", "std"]
METHODS: tuple[str, ...] = ("median_mad", "iqr", "std")
DEFAULT_K: dict[str, float] = {"median_mad": 3.0, "iqr": 1.5, "std": 3.0}
MAD_SCALE = 1.4826
HEURISTIC = "heuristic"
GOOD, NOISE = "good", "noise"


def _finite(values) -> np.ndarray:
    x = np.asarray(values, dtype="float64").ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        raise ValueError("threshold needs at least one finite value")
    return x


def threshold(
    values,
    method: Method = "median_mad",
    k: float | None = None,
    *,
    scaled_mad: bool = True,
    ddof: int = 1,
) -> float:
    """Upper noise threshold of ``values`` by ``method`` (see the module docstring).

    ``k`` (finite, >= 0) defaults to :data:`DEFAULT_K` for the method. The threshold never decreases as
    ``k`` grows.
    """
    if method not in METHODS:
        raise ValueError(f"unknown threshold method {method!r}; choose one of {METHODS}")
    k = DEFAULT_K[method] if k is None else float(k)
    if not math.isfinite(k) or k < 0:
        raise ValueError(f"k must be finite and >= 0, got {k}")
    x = _finite(values)
    if method == "median_mad":
        med = float(np.median(x))
        mad = float(np.median(np.abs(x - med)))
        if scaled_mad:
            mad *= MAD_SCALE
        return med + k * mad
    if method == "iqr":
        q1, q3 = np.quantile(x, [0.25, 0.75])
        return float(q3 + k * (q3 - q1))
    if x.size <= ddof:
        raise ValueError(f"std threshold with ddof={ddof} needs more than {ddof} finite values, got {x.size}")
    return float(x.mean() + k * x.std(ddof=ddof))


def threshold_stats(values, method: Method = "median_mad", k: float | None = None, **kwargs) -> dict:
    """The threshold with what it was computed from (method, k, n and the statistics), for run records."""
    x = _finite(values)
    k_used = DEFAULT_K.get(method, float("nan")) if k is None else float(k)
    t = threshold(x, method, k_used, **kwargs)
    q1, med, q3 = np.quantile(x, [0.25, 0.5, 0.75])
    return {
        "method": method,
        "k": k_used,
        "threshold": t,
        "n": int(x.size),
        "median": float(med),
        "mad": float(np.median(np.abs(x - med))),
        "q1": float(q1),
        "q3": float(q3),
        "mean": float(x.mean()),
        "std": float(x.std(ddof=1)) if x.size > 1 else float("nan"),
    }


def propose_labels(
    df: pd.DataFrame,
    method: Method = "median_mad",
    k: float | None = None,
    *,
    feature: str = "rtt_ms",
    by: str | Sequence[str] | None = None,
    **kwargs,
) -> pd.DataFrame:
    """Heuristic labels for ``df``: ``noise`` where ``feature`` is strictly above the threshold, ``good``
    otherwise.

    Returns a frame on ``df``'s index with ``label`` (``good``/``noise``; ``<NA>`` where the value is not
    finite), ``label_source`` (always ``"heuristic"``) and ``threshold`` (the value used for that row, so
    the statistic travels with the labels). With ``by`` (e.g. ``"subset"``) each group gets its own
    threshold: call it on unimodal data. ``kwargs`` go to :func:`threshold`.
    """
    if feature not in df.columns:
        raise ValueError(f"propose_labels needs a {feature!r} column")
    x = pd.to_numeric(df[feature]).astype("float64")
    if by is None:
        thr = pd.Series(threshold(x.to_numpy(), method, k, **kwargs), index=df.index)
    else:
        keys = [by] if isinstance(by, str) else list(by)
        per_group = x.groupby([df[c] for c in keys], dropna=False, sort=False).transform(
            lambda s: threshold(s.to_numpy(), method, k, **kwargs)
        )
        thr = per_group.astype("float64")
    finite = np.isfinite(x.to_numpy())
    label = np.where(x.to_numpy() > thr.to_numpy(), NOISE, GOOD).astype(object)
    label[~finite] = None
    return pd.DataFrame(
        {
            "label": pd.array(label, dtype="string"),
            "label_source": pd.array([HEURISTIC] * len(df), dtype="string"),
            "threshold": thr.to_numpy(),
        },
        index=df.index,
    )
