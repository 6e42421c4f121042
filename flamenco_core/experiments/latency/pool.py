"""The user's labels and the ground truth joined onto measurement rows."""

from __future__ import annotations

from typing import Optional

import pandas as pd

from .config import CLASSES


def attach_labels(df: pd.DataFrame, labels: Optional[pd.DataFrame], *, name: str = "labels") -> pd.DataFrame:
    """The labeled pool: a ``label`` column with good/noise where known, NA elsewhere.

    ``labels`` is joined on ``src, dst, timestamp`` (plus ``reply`` for Atlas replies sharing a timestamp,
    see :func:`flamenco_core.synth.join_labels`); without it an existing ``label`` column (blanks for
    unlabeled rows) is used. Values other than good/noise raise ``ValueError`` naming ``name`` and them.
    """
    from flamenco_core.synth import join_labels

    out = df
    if labels is not None:
        out = join_labels(df.drop(columns=["label"], errors="ignore"), labels, require_all=False)
    if "label" not in out.columns:
        return out.assign(label=pd.Series(pd.NA, index=out.index, dtype="string"))
    lab = out["label"].astype("string").str.strip().str.lower().replace("", pd.NA)
    bad = sorted(set(lab.dropna().unique()) - set(CLASSES))
    if bad:
        raise ValueError(f"{name}: label values {bad[:5]} are not one of {list(CLASSES)}")
    return out.assign(label=lab)


def attach_truth(df: pd.DataFrame, truth: Optional[pd.DataFrame], *, name: str = "truth") -> pd.DataFrame:
    """``df`` with a ``truth`` column (good/noise, NA where the truth file has no row) joined like
    :func:`attach_labels`. The truth only scores rows outside the labeled pool; no step learns from it."""
    if truth is None:
        return df
    if "label" not in truth.columns:
        raise ValueError(f"{name}: the truth file needs a 'label' column (good/noise)")
    t = attach_labels(df.drop(columns=["label"], errors="ignore"), truth, name=name)["label"]
    if t.notna().sum() == 0:
        raise ValueError(f"{name}: no row of the truth file matched the data on src, dst, timestamp")
    return df.assign(truth=t.to_numpy())
