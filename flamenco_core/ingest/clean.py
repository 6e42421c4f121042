"""Cleaning as in the paper: drop NaN, inf and duplicates, sort by time. Every drop is counted by reason."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

#: Columns that may legitimately be missing in a canonical row.
NULLABLE = {"hop_ttl", "label", "src_port", "dst_port", "protocol"}


def drop_invalid(df: pd.DataFrame) -> tuple[pd.DataFrame, Counter]:
    """Drop rows with NaN/None (reason ``nan``) or +-inf (reason ``inf``) in any non-nullable column.

    A row with both counts once, as ``nan``: the first reason that disqualifies it.
    """
    counts: Counter = Counter()
    cols = [c for c in df.columns if c not in NULLABLE]
    nan_mask = df[cols].isna().any(axis=1).to_numpy()
    numeric = [c for c in cols if pd.api.types.is_float_dtype(df[c])]
    inf_mask = np.zeros(len(df), dtype=bool)
    if numeric:
        inf_mask = np.isinf(df[numeric].to_numpy(dtype="float64", na_value=0.0)).any(axis=1)
    inf_mask &= ~nan_mask
    counts["nan"] = int(nan_mask.sum())
    counts["inf"] = int(inf_mask.sum())
    keep = ~(nan_mask | inf_mask)
    return df.loc[keep], +counts


def dedupe_and_sort(df: pd.DataFrame, ignore: tuple[str, ...] = ()) -> tuple[pd.DataFrame, int, pd.Series]:
    """Drop exact duplicate rows (all columns but ``ignore``) keeping the first, then stable-sort by time.

    Returns the frame, the number of duplicates, and the boolean duplicate mask over the input (so a
    caller can attribute drops to files).
    """
    cols = [c for c in df.columns if c not in ignore]
    dup = df.duplicated(subset=cols, keep="first")
    out = df.loc[~dup.to_numpy()].sort_values("timestamp", kind="stable").reset_index(drop=True)
    return out, int(dup.sum()), dup


def drop_invalid_arrow(table):
    """:func:`drop_invalid` for a canonical Arrow table (same rules and reasons, no pandas round trip).

    Returns ``(table, Counter)``; the table is returned as is when no row is invalid (the common case
    costs one null count and one NaN/inf scan per column)."""
    import pyarrow as pa

    counts: Counter = Counter()
    n = table.num_rows
    nan_mask = np.zeros(n, dtype=bool)
    inf_mask = np.zeros(n, dtype=bool)
    for name in table.column_names:
        if name in NULLABLE:
            continue
        col = table[name]
        if col.null_count:
            nan_mask |= col.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_floating(col.type):
            vals = col.to_numpy()
            if np.isfinite(vals).all():  # one pass for the common column; masks only where needed
                continue
            nan_mask |= np.isnan(vals)
            inf_mask |= np.isinf(vals)
    inf_mask &= ~nan_mask
    counts["nan"] = int(nan_mask.sum())
    counts["inf"] = int(inf_mask.sum())
    bad = nan_mask | inf_mask
    if bad.any():
        table = table.filter(pa.array(~bad))
    return table, +counts
