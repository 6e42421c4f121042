"""Sliding windows over time-ordered rows, as the LSTM sees them (padding repeats a series' first row)."""

from __future__ import annotations

import numpy as np

def window_indices(n_rows: int, window: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Row indices of every row's window, shape ``(n_rows, window)``, oldest first.

    Row ``t``'s window is rows ``t-window+1 .. t``. Positions before the start of the series (or of the
    row's group, when ``groups`` labels contiguous series such as SD pairs) repeat the first row: the
    padding then looks like "nothing changed", which is neutral for the statistics an RTT model uses,
    unlike zeros, which after standardization would read as a real (mean) value followed by a jump.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    starts = group_starts(n_rows, groups)
    rows = np.arange(n_rows)[:, None]
    offsets = np.arange(window)[None, :] - (window - 1)
    return np.maximum(rows + offsets, starts[:, None])


def make_windows(X: np.ndarray, window: int, groups: np.ndarray | None = None) -> np.ndarray:
    """Windows of ``X`` (rows in time order), shape ``(n_rows, window, n_features)``.

    Same padding rule as :func:`window_indices`. Without groups this is a strided view (no copy) of the
    padded matrix; with groups it is a gather.
    """
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if groups is None:
        padded = np.concatenate([np.repeat(X[:1], window - 1, axis=0), X], axis=0)
        view = np.lib.stride_tricks.sliding_window_view(padded, window, axis=0)  # (n, f, w)
        return view.transpose(0, 2, 1)
    return X[window_indices(len(X), window, groups)]


def group_starts(n_rows: int, groups: np.ndarray | None) -> np.ndarray:
    """Per row, the index of the first row of its group (all 0 without ``groups``)."""
    if groups is None:
        return np.zeros(n_rows, dtype=np.int64)
    groups = np.asarray(groups)
    if len(groups) != n_rows:
        raise ValueError(f"groups has {len(groups)} entries for {n_rows} rows")
    # A new group starts wherever the label changes; rows of one group must be contiguous (time order
    # within each series), which is how the SD-pair split lays them out.
    change = np.ones(n_rows, dtype=bool)
    change[1:] = groups[1:] != groups[:-1]
    start_pos = np.flatnonzero(change)
    return start_pos[np.cumsum(change) - 1].astype(np.int64)
