"""Applying LFs: declarative packs (vectorized), vectorized Python LFs and Snorkel LabelingFunctions.

The result is always Snorkel's label matrix (``int8``, rows x LFs, ``ABSTAIN`` where an LF does not vote);
a NaN feature or threshold makes a condition false. How it is fast, and the Parquet and Python-LF paths:
docs/labeling.md, section ``applier.py``."""

from __future__ import annotations

from typing import Any, Iterable, Sequence, Union

import numpy as np
import pandas as pd

from .apply_meta import ApplyMeta, vote_counts
from .compiled import DEFAULT_BLOCK_ROWS, CompiledPack, Thresholds, condition_mask, unknown_feature
from .expr import SpecError
from .parquet_apply import DEFAULT_BATCH_ROWS, apply_lfs_parquet
from .python_lfs import VectorizedLF, apply_python, vectorized_lf
from .spec import LFPack
from .stats import DataStatistics, Statistics, as_statistics, column_values

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "DEFAULT_BLOCK_ROWS",
    "ApplyMeta",
    "CompiledPack",
    "Thresholds",
    "VectorizedLF",
    "apply_lfs",
    "apply_lfs_parquet",
    "condition_mask",
    "label_matrix_frame",
    "pack_problems",
    "resolved_thresholds",
    "vectorized_lf",
]


def resolved_thresholds(pack: LFPack, stats: Any) -> dict[str, dict[str, Any]]:
    """``{LF name: {condition: threshold}}`` for ``pack`` against ``stats``.

    ``stats`` is a profile (dict ``{feature: {stat: value}}``, e.g. from :func:`compute_stats`, or a
    profile-shaped DataFrame/file) or a :class:`~flamenco_core.labeling.stats.Statistics`. Conditions
    are keyed as written (``"bytes <= 0.5*p75"``); ``in``/``between`` give a list.
    """
    compiled = CompiledPack(pack)
    return compiled.thresholds_dict(compiled.resolve(as_statistics(stats)))


def pack_problems(pack: LFPack, data: Union[pd.DataFrame, Iterable[str]], where: str = "data") -> list[SpecError]:
    """Every reason ``pack`` cannot run on ``data`` (a DataFrame, or just its column names), found before
    any LF runs: a feature that is not a column (with "did you mean" hints, as :func:`apply_lfs` words
    it) and, given a DataFrame, a feature column that is not numeric. Empty when the pack fits."""
    compiled = CompiledPack(pack)
    frame = data if isinstance(data, pd.DataFrame) else None
    columns = list(frame.columns) if frame is not None else list(data)
    avail = set(columns)
    out: list[SpecError] = []
    for feature, lf in compiled.feature_users().items():
        if feature not in avail:
            out.append(unknown_feature(feature, avail, where, pack.name, lf))
        elif frame is not None:
            dt = frame[feature].dtype
            if not (pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt)):
                out.append(SpecError(f"feature {feature!r} is not numeric in the {where} (dtype {dt})",
                                     pack=pack.name, lf=lf, token=feature))
    return out


def apply_lfs(
    lfs: Union[LFPack, Sequence[Any]],
    df: pd.DataFrame,
    stats: Any = None,
    *,
    n_jobs: int = 1,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    return_meta: bool = False,
) -> Union[np.ndarray, tuple[np.ndarray, ApplyMeta]]:
    """Label ``df``: an int8 matrix, rows x LFs, in pack (or list) order.

    ``lfs`` is an :class:`LFPack`, or a list of Snorkel ``LabelingFunction``s and/or
    :class:`VectorizedLF`s. For a pack, thresholds are statistics of ``df`` unless ``stats`` gives a
    profile (dict, profile-shaped DataFrame, path, or Statistics). ``n_jobs > 1`` labels row blocks on
    threads. With ``return_meta=True`` also returns an :class:`ApplyMeta` (statistics and resolved
    thresholds used, vote counts) to record with the run.
    """
    if isinstance(lfs, LFPack):
        return _apply_pack(lfs, df, stats, n_jobs=n_jobs, block_rows=block_rows, return_meta=return_meta)
    if stats is not None:
        raise TypeError("stats apply to LF packs only; Python LFs compute their own thresholds")
    return apply_python(list(lfs), df, n_jobs=n_jobs, return_meta=return_meta)


def _apply_pack(pack: LFPack, df: pd.DataFrame, stats: Any, *, n_jobs: int, block_rows: int, return_meta: bool):
    compiled = CompiledPack(pack)
    compiled.check_features(df.columns, "data")
    columns: dict[str, np.ndarray] = {}
    users = compiled.feature_users()
    for feature in users:
        try:
            columns[feature] = column_values(df, feature)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"feature {feature!r} cannot be compared as a number: {exc}", pack=pack.name, lf=users[feature], token=feature) from None
    if stats is None:
        source: Statistics = DataStatistics(columns)
        kind = "data"
    else:
        source = as_statistics(stats)
        kind = "profile"
    resolved = compiled.resolve(source, n_jobs=n_jobs)
    L = compiled.label(columns, resolved, len(df), n_jobs=n_jobs, block_rows=block_rows)
    if not return_meta:
        return L
    meta = ApplyMeta(
        lf_names=compiled.lf_names, n_rows=len(df), pack=pack.name, pack_version=pack.version, pack_hash=pack.content_hash,
        stats_source=kind, stats=source.used(), thresholds=compiled.thresholds_dict(resolved), votes=vote_counts(L, compiled.lf_names),
    )
    return L, meta



def label_matrix_frame(L: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """The matrix as a DataFrame of int8 columns named by the LFs (the on-disk form)."""
    return pd.DataFrame({n: L[:, j] for j, n in enumerate(names)}, columns=list(names))
