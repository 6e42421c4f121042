"""End models: LSTM and random-forest classifiers, hyperparameter search, model choice, unsupervised baselines.

- :mod:`.lstm`: :class:`LSTMClassifier`, trained on probabilistic labels with a noise-aware loss.
- :mod:`.forest`: :func:`fit_forest_timeseries` / :class:`TimeSeriesForest`, randomized search with
  ``TimeSeriesSplit``.
- :mod:`.search`: ``search.search`` over :data:`PAPER_LSTM_GRID` (grid or random, with a budget); the
  function is not re-exported here because the name ``search`` is the submodule's.
- :mod:`.select`: :func:`choose_model` (forest for small datasets, LSTM for large) and :func:`build_model`.
- :mod:`.baselines`: :func:`unsupervised_labels`, :func:`run_baselines`, :data:`BASELINES`.

Names are resolved lazily: importing this package loads neither torch nor scikit-learn (together
several seconds), so the CLI starts fast; the first use of a name imports its module.
"""

from __future__ import annotations

from flamenco_core.lazy import lazy_exports

_EXPORTS = {
    "LSTMClassifier": "lstm",
    "make_windows": "lstm",
    "window_indices": "lstm",
    "FOREST_GRID": "forest",
    "ForestSearchResult": "forest",
    "TimeSeriesForest": "forest",
    "fit_forest_timeseries": "forest",
    "PAPER_LSTM_GRID": "search",
    "SearchResult": "search",
    "candidates": "search",
    "DEFAULT_SMALL_THRESHOLD": "select",
    "ModelChoice": "select",
    "build_model": "select",
    "choose_model": "select",
    "BASELINES": "baselines",
    "BASELINE_NAMES": "baselines",
    "BaselineResult": "baselines",
    "detect": "baselines",
    "run_baselines": "baselines",
    "unsupervised_labels": "baselines",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
