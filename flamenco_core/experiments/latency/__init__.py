"""The automatic latency path (issue 4, issue 10): each SD pair split into RTT modes, LFs learned from the
user's labels on features relative to the local baseline, a label model and an end model, scored on the
test split and, with the truth, on the rows outside the labeled pool. Design and measurements:
docs/latency.md. ``run_pair`` never raises for a degenerate pair: every case ends in a recorded outcome."""

from .config import CLASSES, METRIC_KEYS, LatencyConfig, ModalityConfig, ModelConfig, ThresholdConfig, resolve_ratios
from .levels import SourceLevel, fit_source_level, needs_source_level
from .pair import heuristic_labels, preload, run_pair
from .pool import attach_labels, attach_truth
from .results import PairResult, SubsetResult, comparison_frame, mean_scores, outcome_counts, score_labels, summarize

__all__ = [
    "CLASSES", "METRIC_KEYS", "LatencyConfig", "ModalityConfig", "ModelConfig", "ThresholdConfig", "resolve_ratios",
    "SourceLevel", "fit_source_level", "needs_source_level", "heuristic_labels", "preload", "run_pair", "attach_labels",
    "attach_truth", "PairResult", "SubsetResult", "comparison_frame", "mean_scores", "outcome_counts", "score_labels",
    "summarize",
]
