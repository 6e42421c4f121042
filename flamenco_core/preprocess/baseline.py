"""Each RTT against its local baseline (features that transfer across modes and time) and the
``rolling_mad`` rule a user would write by hand; see docs/preprocess.md, ``baseline.py``."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

#: Consistency constant: 1.4826 x MAD estimates the standard deviation of normal data.
MAD_TO_STD = 1.4826
RELATIVE_SUFFIXES: tuple[str, ...] = ("dev", "ratio", "rz")
#: Two-sided deviations (see :func:`two_sided_features`).
TWO_SIDED_SUFFIXES: tuple[str, ...] = ("cdev", "crz", "nrz", "rough", "crel")
#: Successive differences in the centred roughness window (see :func:`two_sided_features`).
ROUGH_WINDOW = 7


def relative_columns(feature: str = "rtt_ms", prefix: str | None = None, two_sided: bool = False) -> list[str]:
    """Names of the columns :func:`relative_features` adds, base excluded (it is an absolute level);
    with ``two_sided`` those of :func:`two_sided_features` too."""
    p = prefix or feature
    return [f"{p}_{s}" for s in RELATIVE_SUFFIXES + (TWO_SIDED_SUFFIXES if two_sided else ())]


def _causal_median(x: pd.Series, window: int) -> np.ndarray:
    # shift(1): the window ends at the previous row, so a spike is never part of its own baseline
    return x.shift(1).rolling(window, min_periods=1).median().to_numpy(dtype="float64", copy=True)


def _series_features(x: np.ndarray, window: int, floor_frac: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = pd.Series(x)
    base = _causal_median(s, window)
    base[0] = x[0] if x.size else np.nan
    base = np.where(np.isnan(base), x, base)
    resid = np.abs(x - base)
    mad = _causal_median(pd.Series(resid), window)
    mad = np.where(np.isnan(mad), 0.0, mad)
    # The floor keeps a flat or quantised stretch (MAD 0) from calling a 0.1 ms wiggle a 50-sigma spike:
    # a share of the series' overall residual spread, and a share of the level itself.
    overall = MAD_TO_STD * float(np.median(resid)) if resid.size else 0.0
    scale = np.maximum.reduce([MAD_TO_STD * mad, np.full_like(mad, floor_frac * overall),
                               1e-3 * np.abs(base), np.full_like(mad, 1e-6)])
    return base, x - base, scale


def relative_features(df: pd.DataFrame, window: int = 30, feature: str = "rtt_ms",
                      by: Sequence[str] | str | None = "auto", time_col: str = "timestamp",
                      floor_frac: float = 0.5, prefix: str | None = None) -> pd.DataFrame:
    """Columns ``{prefix}_base``, ``_dev``, ``_ratio``, ``_rz`` for every row of ``df`` (aligned to its index).

    ``by``: the series' key columns (``"auto"``: src, dst and subset where present, like the window
    features; ``None``: ``df`` is one series). Rows are ordered by ``time_col`` within a series.
    Vectorised per series with pandas' rolling median; no per-row Python loop.
    """
    from flamenco_core.preprocess.windows import group_columns, ordered_positions

    if feature not in df.columns:
        raise ValueError(f"relative_features: column {feature!r} not in the data (columns: {list(df.columns)[:12]})")
    if window < 2:
        raise ValueError(f"relative_features: window must be >= 2, got {window}")
    p = prefix or feature
    n = len(df)
    groups = group_columns(df, by)
    order, codes = ordered_positions(df, groups, time_col if time_col in df.columns else None)
    x = df[feature].to_numpy(dtype="float64")[order]
    base = np.empty(n)
    dev = np.empty(n)
    scale = np.empty(n)
    if n:
        cuts = np.flatnonzero(np.diff(codes)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, n]):  # one pass per series, vectorised within it
            base[lo:hi], dev[lo:hi], scale[lo:hi] = _series_features(x[lo:hi], window, floor_frac)
    with np.errstate(divide="ignore", invalid="ignore"):
        # a zero baseline (an RTT of 0 ms, which cleaning should have removed) has no ratio: 1 = "as usual"
        ratio = np.where(base != 0, x / np.where(base != 0, base, 1.0), 1.0)
    out = np.empty((n, 4))
    out[order] = np.column_stack([base, dev, ratio, dev / scale])
    return pd.DataFrame(out, index=df.index, columns=[f"{p}_base", *relative_columns(feature, p)])


def _series_two_sided(x: np.ndarray, window: int, floor_frac: float, neighbour_window: int) -> np.ndarray:
    s = pd.Series(x)
    med = s.rolling(window, center=True, min_periods=1).median().to_numpy()
    resid = np.abs(x - med)
    mad = pd.Series(resid).rolling(window, center=True, min_periods=1).median().to_numpy()
    overall = MAD_TO_STD * float(np.median(resid)) if resid.size else 0.0
    scale = np.maximum.reduce([MAD_TO_STD * mad, np.full_like(mad, floor_frac * overall), 1e-3 * np.abs(med),
                               np.full_like(mad, 1e-6)])
    # Neighbour baseline: the lower of the medians just before and just after the row (itself excluded).
    # A burst of spikes longer than half a centred window pulls a centred median up; it cannot pull up
    # the side that lies outside the burst. The price: the first half-window after an upward route change
    # also stands out (its past side is the old route), which the distance to route levels resolves.
    h = max(neighbour_window // 2, 1)
    past = s.shift(1).rolling(h, min_periods=1).median().to_numpy()
    fut = s[::-1].shift(1).rolling(h, min_periods=1).median().to_numpy()[::-1]
    nb = np.fmin(np.where(np.isnan(past), np.inf, past), np.where(np.isnan(fut), np.inf, fut))
    nb = np.where(np.isfinite(nb), nb, x)
    nres = np.abs(x - nb)
    nscale = max(floor_frac * MAD_TO_STD * float(np.median(nres)) if nres.size else 0.0, 1e-6)
    nscale = np.maximum(nscale, 1e-3 * np.abs(nb))
    # Roughness: the median jump between successive RTTs around the row, in units of the series' median
    # jump. One route change is one jump (the median ignores it); a burst of spikes, each with its own
    # delay, is many.
    d = np.abs(np.diff(x, prepend=x[:1]))
    rough = pd.Series(d).rolling(ROUGH_WINDOW, center=True, min_periods=1).median().to_numpy()
    rough = rough / max(float(np.median(d)) if d.size else 0.0, 1e-3 * float(np.median(np.abs(x))) if x.size else 0.0, 1e-9)
    # crel: the excess as a share of the centred median, comparable across routes whose jitter grows with the level
    crel = (x - med) / np.maximum(np.abs(med), 1e-9)
    return np.column_stack([x - med, (x - med) / scale, (x - nb) / nscale, rough, crel])


def two_sided_features(df: pd.DataFrame, window: int = 21, feature: str = "rtt_ms",
                       by: Sequence[str] | str | None = "auto", time_col: str = "timestamp",
                       floor_frac: float = 0.5, prefix: str | None = None,
                       neighbour_window: int | None = None) -> pd.DataFrame:
    """Deviations that look both ways in time, for labeling history (every column of
    :data:`TWO_SIDED_SUFFIXES`): ``cdev``/``crz``, the deviation and robust z against a centred rolling
    median and MAD (the Hampel filter's statistics), and ``nrz``, the robust z against the lower of the
    medians of the ``neighbour_window // 2`` points before and after the row (default ``window``; robust to
    bursts of spikes up to that many points; like a causal score, it flags the first quarter of that window
    after an upward route change), and
    ``rough``, the median jump between successive values in a centred window of :data:`ROUGH_WINDOW`
    points over the series' median jump (high inside a burst of spikes, blind to a lone spike and to a
    route change).

    Why both ways: a causal baseline cannot know that a route changed until points after the change have
    arrived, so on a flapping path every upward route change looks like a spike for half a window. Use
    :func:`relative_features` alone where labels must be computed online.
    """
    from flamenco_core.preprocess.windows import group_columns, ordered_positions

    if feature not in df.columns:
        raise ValueError(f"two_sided_features: column {feature!r} not in the data")
    p = prefix or feature
    n = len(df)
    order, codes = ordered_positions(df, group_columns(df, by), time_col if time_col in df.columns else None)
    x = df[feature].to_numpy(dtype="float64")[order]
    k = len(TWO_SIDED_SUFFIXES)
    vals = np.empty((n, k))
    if n:
        cuts = np.flatnonzero(np.diff(codes)) + 1
        for lo, hi in zip(np.r_[0, cuts], np.r_[cuts, n]):
            vals[lo:hi] = _series_two_sided(x[lo:hi], window, floor_frac, neighbour_window or window)
    out = np.empty((n, k))
    out[order] = vals
    return pd.DataFrame(out, index=df.index, columns=[f"{p}_{s}" for s in TWO_SIDED_SUFFIXES])


def rarity(values, grid, density) -> np.ndarray:
    """How rare each value's RTT level is in its pair: ``-log10(kde(x) / max kde)`` on the pair's KDE
    (``grid``/``density`` of :func:`~flamenco_core.preprocess.modality.detect_modes`). 0 at the busiest
    level; every order of magnitude less density adds 1.

    Routes, however they drift or flap, keep returning to levels that many RTTs share; a spike lands where
    few do. Unlike a distance to the modes' medians, a level held for a while counts as common even when
    the KDE split merged it with a neighbouring one."""
    x = np.asarray(values, dtype="float64")
    g = np.asarray(grid, dtype="float64")
    d = np.asarray(density, dtype="float64")
    if x.size == 0 or g.size < 2 or not np.isfinite(d).any() or np.nanmax(d) <= 0:
        return np.zeros(x.size)
    rel = np.interp(x, g, d, left=0.0, right=0.0) / np.nanmax(d)
    # below 1e-6 of the peak every value is "never seen": cap so that one far spike is not infinitely rarer
    return -np.log10(np.clip(rel, 1e-6, 1.0))


def rolling_mad(values, window: int = 21, k: float = 3.5, center: bool = True, side: str = "upper") -> np.ndarray:
    """The plain rolling-median/MAD rule: 1 (noise) where a value lies more than ``k`` robust standard
    deviations (1.4826 x rolling MAD) from the rolling median of ``window`` points, else 0 (int8).

    ``values`` is one series in time order. ``center=True`` is the classic Hampel filter (the window is
    centred on the row: what a user labeling history would write); ``center=False`` looks back only.
    ``side``: ``"upper"`` (RTT noise is delay added on top of the path's latency) or ``"both"``.
    """
    x = pd.Series(np.asarray(values, dtype="float64"))
    if side not in ("upper", "both"):
        raise ValueError(f"rolling_mad: side must be 'upper' or 'both', got {side!r}")
    if x.size == 0:
        return np.zeros(0, dtype=np.int8)
    med = x.rolling(window, center=center, min_periods=1).median()
    mad = (x - med).abs().rolling(window, center=center, min_periods=1).median()
    overall = float((x - med).abs().median())
    scale = np.maximum(MAD_TO_STD * mad.to_numpy(), max(0.5 * MAD_TO_STD * overall, 1e-9))
    dev = (x - med).to_numpy()
    hit = dev > k * scale if side == "upper" else np.abs(dev) > k * scale
    return hit.astype(np.int8)
