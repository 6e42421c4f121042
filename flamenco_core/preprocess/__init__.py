"""Preprocessing: statistics profiles, modality, oversampling, thresholds, window features, splits."""

from flamenco_core.preprocess.feature_selection import (
    PROFILE_EXTRA_PERCENTILES,
    FeatureSelection,
    FeatureSelectionConfig,
    correlation_matrix,
    correlation_of,
    correlations,
    extended_profile,
    feature_importance,
    select_features,
    write_profile_csv,
)
from flamenco_core.preprocess.ground_truth import (
    FLOW_CLASSES,
    AlertWindowError,
    GroundTruth,
    ground_truth,
    labels_from_alerts,
    labels_from_column,
    load_alert_windows,
)
from flamenco_core.preprocess.modality import ModalityResult, ModeSplit, detect_modes, plot_modality, split_by_modes
from flamenco_core.preprocess.oversample import oversample
from flamenco_core.preprocess.profile import PROFILE_STATS, profile
from flamenco_core.preprocess.splits import RATIOS, Splits, split_sizes, stratified_splits, time_splits
from flamenco_core.preprocess.thresholds import DEFAULT_K, HEURISTIC, propose_labels, threshold, threshold_stats
from flamenco_core.preprocess.windows import (
    TSFRESH_EQUIVALENT,
    WINDOW_STATS,
    tsfresh_features,
    window_feature_names,
    window_features,
)

__all__ = [
    "FLOW_CLASSES", "PROFILE_EXTRA_PERCENTILES", "AlertWindowError", "FeatureSelection", "FeatureSelectionConfig",
    "GroundTruth", "correlation_matrix", "correlation_of", "correlations", "extended_profile", "feature_importance",
    "ground_truth", "labels_from_alerts", "labels_from_column", "load_alert_windows", "select_features",
    "write_profile_csv",
    "DEFAULT_K", "HEURISTIC", "PROFILE_STATS", "RATIOS", "TSFRESH_EQUIVALENT", "WINDOW_STATS",
    "ModalityResult", "ModeSplit", "Splits", "detect_modes", "oversample", "plot_modality", "profile",
    "propose_labels", "split_by_modes", "split_sizes", "stratified_splits", "threshold", "threshold_stats",
    "time_splits", "tsfresh_features", "window_feature_names", "window_features",
]
