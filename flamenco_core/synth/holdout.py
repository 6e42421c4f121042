"""A user's partial labels from full ground truth: the labeled pool a user would give, and the truth
to score every other row against.

The generators write a label for every RTT. A user labels a stretch of each series, not all of it;
:func:`hold_out_labels` keeps the labels of the latest (or earliest) ``share`` of each SD pair in time
and returns the full truth beside it, so a run can be scored on rows its labels did not come from.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd


def hold_out_labels(labels: pd.DataFrame, share: float = 0.35, where: Literal["end", "start"] = "end",
                    by: tuple[str, ...] = ("src", "dst")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(partial, truth)``: ``partial`` holds the rows of ``labels`` in the last (``where="end"``) or first
    ``share`` of each group by ``timestamp``; ``truth`` is ``labels`` unchanged. Both keep every key column."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"share must be in (0, 1], got {share}")
    if where not in ("end", "start"):
        raise ValueError(f"where must be 'end' or 'start', got {where!r}")
    keys = [c for c in by if c in labels.columns]
    ordered = labels.sort_values([*keys, "timestamp"], kind="stable")
    g = ordered.groupby(keys, sort=False) if keys else None
    pos = (g.cumcount() if g is not None else pd.Series(range(len(ordered)), index=ordered.index))
    size = (g["timestamp"].transform("size") if g is not None else pd.Series(len(ordered), index=ordered.index))
    frac = pos / size
    keep = frac >= 1.0 - share if where == "end" else frac < share
    return ordered[keep].sort_index(), labels
