"""Automatic LF generation, Snuba-style, emitting declarative LF specs.

Public contract::

    from flamenco_core.autolf import SnubaConfig, generate_lfs, add_window_features
    df = add_window_features(series_df)              # before splitting: windows follow time order
    result = generate_lfs(labeled_df, unlabeled_df, config=SnubaConfig(seed=0))
    result.pack.to_yaml("autolf.yaml")               # shareable, auditable specs (thresholds: percentiles)
    probs = result.train_probs                       # label model's probabilities for unlabeled_df
    L = apply_lfs(result.pack, unlabeled_df)         # == result.L_train

The loop is :mod:`flamenco_core.autolf.snuba`; the spec encoding and the choices made: ``docs/autolf.md``.
"""

from .candidates import (
    Candidate,
    Leaf,
    band_votes,
    f1_abstain_as_error,
    jaccard_distance,
    select_beta,
    synthesize,
    tree_leaves,
)
from .config import STOP_REASONS, SnubaConfig
from .features import DEFAULT_WINDOW_STATS, add_window_features, default_features, feature_sets, window_columns
from .result import AutoLFResult, Heuristic
from .snuba import generate_lfs
from .labelnb import LabeledNaiveBayes
from .thresholds import PercentileThreshold, percentile_threshold, sorted_finite

__all__ = [
    "DEFAULT_WINDOW_STATS",
    "STOP_REASONS",
    "AutoLFResult",
    "Candidate",
    "Heuristic",
    "LabeledNaiveBayes",
    "Leaf",
    "PercentileThreshold",
    "SnubaConfig",
    "add_window_features",
    "band_votes",
    "default_features",
    "f1_abstain_as_error",
    "feature_sets",
    "generate_lfs",
    "jaccard_distance",
    "percentile_threshold",
    "select_beta",
    "sorted_finite",
    "synthesize",
    "tree_leaves",
    "window_columns",
]
