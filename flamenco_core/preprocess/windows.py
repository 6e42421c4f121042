"""Rolling-window statistics of an RTT series in time order (the paper's feature augmentation),
defined as tsfresh's calculators; see docs/preprocess.md, ``windows.py``."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

#: Statistic names, in the order of ``profile.PROFILE_STATS``.
WINDOW_STATS: tuple[str, ...] = ("count", "mean", "std", "min", "q1", "median", "q3", "max")
DEFAULT_GROUP_COLS: tuple[str, ...] = ("src", "dst", "subset")
#: tsfresh settings that compute the same statistics (``length`` is ``count``).
TSFRESH_EQUIVALENT: dict[str, object] = {
    "length": None,
    "minimum": None,
    "mean": None,
    "standard_deviation": None,
    "quantile": [{"q": 0.25}, {"q": 0.75}],
    "median": None,
    "maximum": None,
}
#: tsfresh column suffix -> our statistic name.
TSFRESH_NAMES: dict[str, str] = {
    "length": "count",
    "minimum": "min",
    "mean": "mean",
    "standard_deviation": "std",
    "quantile__q_0.25": "q1",
    "median": "median",
    "quantile__q_0.75": "q3",
    "maximum": "max",
}
# Rows per chunk are chosen so a chunk's sorted windows stay around 32 MiB whatever the window length.
_CHUNK_ELEMENTS = 1 << 22


def window_feature_names(window: int, feature: str = "rtt_ms", prefix: str | None = None) -> list[str]:
    """Column names :func:`window_features` produces: ``f"{feature}_w{window}_{stat}"`` by default."""
    p = f"{feature}_w{window}_" if prefix is None else prefix
    return [p + s for s in WINDOW_STATS]


def group_columns(df: pd.DataFrame, by) -> list[str]:
    """The grouping columns ``by`` names: ``"auto"`` the default ones ``df`` has, ``None`` none."""
    if by == "auto":
        return [c for c in DEFAULT_GROUP_COLS if c in df.columns]
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def ordered_positions(df: pd.DataFrame, groups: list[str], time_col: str | None):
    """Row positions of ``df`` sorted by (group, time), and the group code of each sorted row."""
    n = len(df)
    if groups:
        codes = df.groupby(groups, sort=True, dropna=False).ngroup().to_numpy()
    else:
        codes = np.zeros(n, dtype=np.int64)
    keys = [codes]
    if time_col is not None and time_col in df.columns:
        t = df[time_col]
        if t.isna().any():
            raise ValueError(f"column {time_col!r} has missing values; cannot order rows in time")
        # tz-aware columns would come out as an object array of Timestamps: sort on UTC datetime64.
        tk = t.to_numpy(dtype="datetime64[ns]") if pd.api.types.is_datetime64_any_dtype(t) else t.to_numpy()
        keys = [tk, codes]  # lexsort: last key is primary, and the sort is stable
    order = np.lexsort(keys) if n else np.zeros(0, dtype=np.int64)
    return order, codes[order]


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    # numpy's quantile interpolation formula (numpy/lib/_function_base_impl.py::_lerp), reproduced so
    # results agree with np.quantile to the last bit in most cases, not only to allclose.
    diff = b - a
    out = a + diff * t
    return np.where(t >= 0.5, b - diff * (1 - t), out)


def _stats_from_sorted(s: np.ndarray, c: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    rows = np.arange(s.shape[0])
    last = c - 1
    res = np.empty((s.shape[0], len(WINDOW_STATS)))
    res[:, 0] = c
    res[:, 1] = mean
    res[:, 2] = std
    res[:, 3] = s[:, 0]
    uniform = bool(c.size) and bool((c == c[0]).all())
    for col, q in ((4, 0.25), (5, 0.5), (6, 0.75)):
        if uniform:  # full windows: same positions in every row, so plain column slices
            p = q * (int(c[0]) - 1)
            b = int(np.floor(p))
            a = min(b + 1, int(c[0]) - 1)
            res[:, col] = _lerp(s[:, b], s[:, a], np.full(s.shape[0], p - b))
        else:
            p = q * last
            below = np.floor(p).astype(np.int64)
            above = np.minimum(below + 1, last)
            res[:, col] = _lerp(s[rows, below], s[rows, above], p - below)
    res[:, 7] = s[:, int(c[0]) - 1] if uniform else s[rows, last]
    return res


def rolling_stats(values: np.ndarray, starts: np.ndarray, window: int, min_periods: int = 1) -> np.ndarray:
    """Vectorized core: ``(n, 8)`` array of :data:`WINDOW_STATS` for a concatenation of series.

    ``values`` are the series back to back, each in time order; ``starts[i]`` is the position where row
    ``i``'s series begins. Rows with fewer than ``min_periods`` points in their window are NaN.
    """
    x = np.asarray(values, dtype="float64")
    n = x.size
    out = np.full((n, len(WINDOW_STATS)), np.nan)
    if n == 0:
        return out
    w = int(window)
    pos = np.arange(n)
    count = np.minimum(w, pos - np.asarray(starts) + 1)
    # Pad the front so every row has a full-length window view; entries before the row's series start
    # (the pad or an earlier series) are masked out below.
    padded = np.concatenate([np.full(w - 1, np.nan), x])
    view = sliding_window_view(padded, w)  # row i = x[i-w+1 .. i]
    offs = np.arange(w)
    chunk = max(1, _CHUNK_ELEMENTS // w)
    # Full windows (the bulk) take the plain path; only the first w-1 rows of each series need masking.
    full_rows = np.flatnonzero(count == w)
    part_rows = np.flatnonzero(count < w)
    for rows_all, full in ((full_rows, True), (part_rows, False)):
        for lo in range(0, rows_all.size, chunk):
            idx = rows_all[lo : lo + chunk]
            c = count[idx]
            win = view[idx]  # fancy indexing copies: safe to sort in place
            if full:
                mean = win.mean(axis=1)
                std = win.std(axis=1)
                win.sort(axis=1)
                s = win
            else:
                valid = offs[None, :] >= (w - c)[:, None]
                zeroed = np.where(valid, win, 0.0)
                mean = zeroed.sum(axis=1) / c
                dev = np.where(valid, win - mean[:, None], 0.0)
                std = np.sqrt((dev * dev).sum(axis=1) / c)
                s = np.where(valid, win, np.inf)  # inf sorts after every valid value
                s.sort(axis=1)
            out[idx] = _stats_from_sorted(s, c, mean, std)
    out[count < min_periods] = np.nan
    return out


def window_features(
    df: pd.DataFrame,
    window: int = 10,
    *,
    feature: str = "rtt_ms",
    min_periods: int = 1,
    by: str | Sequence[str] | None = "auto",
    time_col: str | None = "timestamp",
    prefix: str | None = None,
) -> pd.DataFrame:
    """Rolling :data:`WINDOW_STATS` of ``feature`` over the last ``window`` points (vectorized).

    Returns a float64 frame on ``df``'s index with :func:`window_feature_names` columns; see the module
    docstring for ordering, grouping (``by="auto"``: the present columns of :data:`DEFAULT_GROUP_COLS`;
    ``None``: one series) and the first ``window - 1`` rows (``min_periods``). Per-series outcomes are in
    ``result.attrs["window_outcomes"]``: ``{"group", "rows", "status", "reason"}`` with status ``ok``,
    ``short`` (fewer rows than ``window``: expanding windows only) or ``skipped`` (fewer rows than
    ``min_periods``: all NaN).
    """
    window, min_periods = int(window), int(min_periods)
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if not 1 <= min_periods <= window:
        raise ValueError(f"min_periods must be in [1, window={window}], got {min_periods}")
    if feature not in df.columns:
        raise ValueError(f"window_features needs a {feature!r} column")
    groups = group_columns(df, by)
    order, codes = ordered_positions(df, groups, time_col)
    x = pd.to_numeric(df[feature]).to_numpy(dtype="float64")[order]
    if not np.isfinite(x).all():
        # A NaN would silently poison w windows; cleaning should have removed it.
        raise ValueError(f"{feature!r} has {int((~np.isfinite(x)).sum())} non-finite values; clean them first")
    n = x.size
    new = np.ones(n, dtype=bool)
    new[1:] = codes[1:] != codes[:-1]
    start_pos = np.flatnonzero(new)
    starts = np.repeat(start_pos, np.diff(np.append(start_pos, n)))
    stats = rolling_stats(x, starts, window, min_periods)
    result = np.empty_like(stats)
    result[order] = stats
    out = pd.DataFrame(result, index=df.index, columns=window_feature_names(window, feature, prefix))
    out.attrs["window_outcomes"] = _outcomes(df, groups, order, start_pos, n, window, min_periods)
    return out


def _outcomes(df, groups, order, start_pos, n, window, min_periods) -> list[dict]:
    lengths = np.diff(np.append(start_pos, n))
    keys = df[groups].iloc[order[start_pos]].to_dict("records") if groups else [{} for _ in start_pos]
    outcomes = []
    for key, length in zip(keys, lengths.tolist()):
        if length >= window:
            status, reason = "ok", None
        elif length >= min_periods:
            status, reason = "short", f"{length} points < window {window}: expanding windows only"
        else:
            status, reason = "skipped", f"{length} points < min_periods {min_periods}: features are NaN"
        outcomes.append({"group": {k: _plain(v) for k, v in key.items()}, "rows": length, "status": status,
                         "reason": reason})
    return outcomes


def _plain(v):
    return v.item() if hasattr(v, "item") else v


def tsfresh_features(
    df: pd.DataFrame,
    window: int = 10,
    fc_parameters: str | dict = "minimal",
    *,
    feature: str = "rtt_ms",
    min_periods: int = 1,
    by: str | Sequence[str] | None = "auto",
    time_col: str | None = "timestamp",
    n_jobs: int = 0,
) -> pd.DataFrame:
    """tsfresh features of ``feature`` over the same rolling windows as :func:`window_features`.

    Uses ``roll_time_series(max_timeshift=window-1, min_timeshift=min_periods-1)`` and
    ``extract_features``, single-process by default (``n_jobs=0``) and without progress bars.
    ``fc_parameters``: ``"minimal"``, ``"efficient"``, ``"comprehensive"``, ``"paper"`` (the 8 statistics
    of the fast path, :data:`TSFRESH_EQUIVALENT`) or a tsfresh settings dict. Returns tsfresh's column
    names (``rtt_ms__mean``, ...) on ``df``'s index; rows with fewer than ``min_periods`` points are NaN.
    NaNs that tsfresh itself produces are left as they are (no imputation). Slow (about 1,000 points/s
    here): use the fast path for the paper's statistics.
    """
    from tsfresh import extract_features  # lazy: tsfresh takes seconds to import
    from tsfresh.feature_extraction import settings
    from tsfresh.utilities.dataframe_functions import roll_time_series

    window, min_periods = int(window), int(min_periods)
    if window < 1 or not 1 <= min_periods <= window:
        raise ValueError(f"need window >= 1 and 1 <= min_periods <= window, got {window}, {min_periods}")
    if isinstance(fc_parameters, str):
        presets = {
            "minimal": settings.MinimalFCParameters,
            "efficient": settings.EfficientFCParameters,
            "comprehensive": settings.ComprehensiveFCParameters,
        }
        if fc_parameters == "paper":
            fc = dict(TSFRESH_EQUIVALENT)
        elif fc_parameters in presets:
            fc = presets[fc_parameters]()
        else:
            raise ValueError(f"unknown fc_parameters {fc_parameters!r}; use {sorted(presets) + ['paper']} or a dict")
    else:
        fc = fc_parameters
    groups = group_columns(df, by)
    order, codes = ordered_positions(df, groups, time_col)
    x = pd.to_numeric(df[feature]).to_numpy(dtype="float64")[order]
    # Integer positions as the sort column: tsfresh names each window after its last sort value, which
    # maps straight back to a row; timestamps could repeat.
    long = pd.DataFrame({"_gid": codes, "_pos": np.arange(x.size), feature: x})
    rolled = roll_time_series(
        long,
        column_id="_gid",
        column_sort="_pos",
        max_timeshift=window - 1,
        min_timeshift=min_periods - 1,
        n_jobs=n_jobs,
        disable_progressbar=True,
    )
    if rolled.empty:
        return pd.DataFrame(index=df.index)
    feats = extract_features(
        rolled.drop(columns="_gid"),
        column_id="id",
        column_sort="_pos",
        default_fc_parameters=fc,
        n_jobs=n_jobs,
        disable_progressbar=True,
        show_warnings=False,
    )
    last_pos = np.asarray([k[1] for k in feats.index], dtype=np.int64)
    result = pd.DataFrame(np.nan, index=np.arange(x.size), columns=feats.columns)
    result.iloc[last_pos] = feats.to_numpy()
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    result = result.iloc[inverse]
    result.index = df.index
    return result

