"""Per pair: the modality split, the features LFs learn on (deviations from local baselines, the
rarity of the RTT level) and the labeled pool with its validation and test rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from .config import LatencyConfig, resolve_ratios


RZ = "rtt_ms_rz"


#: How common the row's RTT level is in its pair (route levels recur, spikes do not): the KDE rarity.
LEVEL_FEATURE = "rtt_ms_rarity"


#: The envelope's floor for rarity: a level with at most 1% of the busiest level's density.
RARITY_FLOOR = 2.0

#: What LFs see of rarity: under this (a density within 11% of the busiest level's peak) it reads 0, so
#: that no LF cuts across the peak of a busy route. Seed 19 ``route_flapping``, pair 3: a labeled period
#: that barely visited the busiest route taught "rarity > 0.0055 (1.3% under the peak) is noise", 78 false
#: positives (17 with the view). Not higher: the demo's Ark-like noise lies at rarity 0.08-1.0, just off a
#: route's peak, and a view that zeroed everything under 1.0 cost its F1 0.944 -> 0.922. End models and
#: the baselines keep the raw score.
COMMON_LEVEL = 0.05


def lf_view(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` as LFs see it: rarity under :data:`COMMON_LEVEL` is 0 (a copy; ``frame`` is unchanged)."""
    if LEVEL_FEATURE not in frame.columns:
        return frame
    r = frame[LEVEL_FEATURE].to_numpy(dtype="float64")
    return frame.assign(**{LEVEL_FEATURE: np.where(r < COMMON_LEVEL, 0.0, r)})


def window_feature_names(config: LatencyConfig) -> list[str]:
    if config.features == "raw":
        return ["rtt_ms"]
    from flamenco_core.autolf import window_columns

    return ["rtt_ms", *window_columns(config.window)]


def _add_features(df: pd.DataFrame, config: LatencyConfig) -> pd.DataFrame:
    """Window statistics and deviations from the local baseline per subset series, and the deviations
    against the whole pair's baseline (``rtt_ms_pair_*``: they see a spike that landed in another mode)."""
    from flamenco_core.autolf import add_window_features
    from flamenco_core.preprocess.baseline import relative_features, two_sided_features

    out = add_window_features(df, window=config.window) if config.features == "window" else df.copy()
    parts = [out, relative_features(df, window=config.relative_window, by=["subset"]).drop(columns=["rtt_ms_base"]),
             relative_features(df, window=config.relative_window, by=None, prefix="rtt_ms_pair").drop(columns=["rtt_ms_pair_base"])]
    if config.two_sided:
        kw = {"window": config.two_sided_window, "neighbour_window": config.neighbour_window}
        parts += [two_sided_features(df, by=["subset"], **kw), two_sided_features(df, by=None, prefix="rtt_ms_pair", **kw)]
    return pd.concat(parts, axis=1)


def subset_features(config: LatencyConfig) -> list[str]:
    # relative features first: the LF learner breaks ties between equally good features by this order
    return [*pair_features(config, subsets=True), *(window_feature_names(config) if config.absolute_features else [])]


def baseline_features(config: LatencyConfig) -> list[str]:
    # the unsupervised baselines see everything FLAMENCO could: absolute levels, windows and deviations
    return [*window_feature_names(config), *pair_features(config, subsets=True)]


def pair_features(config: LatencyConfig, subsets: bool = False) -> list[str]:
    """Features of the pair- and source-level LFs (with ``subsets``: also the subset series' own, for the
    subset level): only deviations from a local baseline and the distance to route levels, so that LFs
    hold on every mode. The order breaks ties between features that separate the labeled rows equally
    well: two-sided scores first (they do not mistake a route change for a spike)."""
    from flamenco_core.preprocess.baseline import RELATIVE_SUFFIXES

    def cols(prefix: str, excess: str) -> list[str]:
        # With the two-sided scores, the causal ones add only their lag after every route change: they
        # are the features of online labeling (two_sided: false).
        if config.two_sided:
            return [f"{prefix}_{s}" for s in ("crz", "nrz", excess, "rough")]
        return [f"{prefix}_{s}" for s in RELATIVE_SUFFIXES]

    # LFs for many subsets see the excess over the pair's centred median as a share of it (crel), not in
    # ms (cdev): a cut in ms learned on a fast route calls the wider jitter of a slower route noise. LFs
    # learned and applied within one subset keep ms, which are comparable there. Without ``subsets`` the
    # subset series' columns stay out: on a one-mode pair they equal the pair's, and a near-copy of a
    # feature would vote twice in the majority.
    excess = "cdev" if subsets else "crel"
    return [*cols("rtt_ms_pair", excess), *(cols("rtt_ms", "cdev") if subsets else []), LEVEL_FEATURE]


def _pool(df: pd.DataFrame, config: LatencyConfig, ratios, user: bool) -> tuple[pd.Series, str, pd.Index, pd.Index]:
    """The labeled pool (class names, NA elsewhere), its source, and its validation and test rows.

    With user labels the pool is every labeled row, wherever it lies in time; without, the latest
    (validation + test) share of each subset gets the heuristic's labels (rolling robust z above
    ``heuristic_k``). The pool is cut in time order into validation (Snuba fits on it) and test (scored)."""
    from flamenco_core.preprocess.splits import RATIOS

    r = RATIOS[ratios] if isinstance(ratios, str) else tuple(ratios)
    if user:
        pool = df["label"].astype("string")
        source = "user"
    else:
        share = (r[1] + r[2]) or 0.35
        pos = df.groupby("subset").cumcount() / df.groupby("subset")["subset"].transform("size")
        late = pos >= 1.0 - share
        lab = np.where(df[RZ].to_numpy() > config.heuristic_k, "noise", "good")
        pool = pd.Series(lab, index=df.index, dtype="string").where(late)
        source = "heuristic"
    idx = pool.dropna().index
    n_val = int(round(len(idx) * (r[1] / max(r[1] + r[2], 1e-9))))
    if len(idx) >= 2:
        n_val = min(max(n_val, 1), len(idx) - 1)
    return pool, source, idx[:n_val], idx[n_val:]


@dataclass
class _Prepared:
    rtt: np.ndarray
    modality: dict
    plot: Optional[str]
    split: Any
    work: pd.DataFrame
    pool: pd.Series
    pool_source: str
    val_idx: pd.Index
    test_idx: pd.Index
    train_idx: pd.Index
    unlabeled: pd.Index


def prepare_pair(df: pd.DataFrame, config: LatencyConfig, source: str, has_labels: bool, *, plot_dir=None,
             name=("", "")) -> _Prepared:
    """Modality split, features and the labeled pool of one time-ordered pair (``df`` from run_pair)."""
    from flamenco_core.ingest.pairs import pair_id
    from flamenco_core.preprocess import detect_modes, plot_modality, split_by_modes
    from flamenco_core.preprocess.baseline import rarity

    rtt = df["rtt_ms"].to_numpy(dtype="float64")
    mod = detect_modes(rtt, min_height=config.modality.min_height, bw_method=config.modality.bw_method, seed=config.seed)
    modality = mod.to_dict() if hasattr(mod, "to_dict") else {"n_modes": mod.n_modes}
    modality = {k: v for k, v in modality.items() if k not in ("grid", "density")}
    modality["label"] = mod.label
    plot = None
    if plot_dir is not None and config.modality.plot:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
        plot = str(plot_modality(rtt, mod, Path(plot_dir) / f"{pair_id(*name)}_kde.png", title=f"{source}: {name[0]} -> {name[1]}, all {len(rtt)} rows"))
    split = split_by_modes(df, mod, min_subset=config.modality.min_subset, tiny=config.modality.tiny)
    modality["subsets"] = split.outcomes
    subset_of = pd.Series(-1, index=df.index, dtype="int64")
    for i, sub in enumerate(split.subsets):
        subset_of.loc[sub.index] = i
    kept = subset_of >= 0
    work = _add_features(df[kept].assign(subset=subset_of[kept]), config)
    work["rtt_ms_rarity"] = rarity(work["rtt_ms"].to_numpy(), mod.grid, mod.density)
    pool, pool_source, val_idx, test_idx = _pool(work, config, resolve_ratios(config, source), has_labels)
    unlabeled = work.index.difference(pool.dropna().index)
    # The LFs' unlabeled data: the rows without a label; a fully labeled pair lends its own rows.
    train_idx = unlabeled if len(unlabeled) >= config.window else work.index
    return _Prepared(rtt, modality, plot, split, work, pool, pool_source, val_idx, test_idx, train_idx, unlabeled)
