"""Random-forest end classifier: randomized search with time-series cross-validation.

The paper used it for small SD pairs (its 100-450-point Atlas pairs). Folds come from
``TimeSeriesSplit``: every validation fold lies after its training rows, so no future leaks into
training.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

#: The paper's random-forest search space.
FOREST_GRID: dict[str, list] = {
    "n_estimators": [50, 100, 150, 200],
    "max_depth": [2, 5, 10, None],
    "bootstrap": [True, False],
}

# Each validation fold keeps at least this many rows; fewer makes f1_macro a coin toss.
MIN_FOLD_ROWS = 2


@dataclass
class ForestSearchResult:
    """Outcome of :func:`fit_forest_timeseries`.

    ``cv`` is the splitter used (None when too few rows allowed no cross-validation), ``n_splits`` the
    number of folds actually used, ``note`` why it differs from the requested one (empty otherwise).
    """

    best_estimator: object
    best_params: dict
    best_score: float
    cv_results: pd.DataFrame
    cv: object | None
    n_splits: int
    note: str = ""
    classes: np.ndarray = field(default_factory=lambda: np.array([]))


def hard_labels(y, confidence_weights: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """Hard labels from hard or probabilistic labels, and optional confidence weights.

    Probabilistic labels (n, k) become ``argmax`` class indices; with ``confidence_weights`` each row
    is weighted by its max probability, so rows the label model is unsure about count less.
    Hard labels pass through (weights None).
    """
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 2:
        return y.argmax(axis=1), (y.max(axis=1) if confidence_weights else None)
    return y, None


def effective_splits(n_rows: int, n_splits: int) -> int:
    """Folds usable for ``n_rows``: at most ``n_splits``, with validation folds of >= 2 rows.

    ``TimeSeriesSplit`` cuts ``n_rows // (n_splits + 1)`` rows per validation fold; splits are reduced
    until that is at least ``MIN_FOLD_ROWS``. Below 2 folds no cross-validation is possible (returns
    the number anyway, the caller falls back).
    """
    return max(0, min(n_splits, n_rows // MIN_FOLD_ROWS - 1))


def fit_forest_timeseries(
    X,
    y,
    *,
    n_splits: int = 5,
    n_iter: int = 10,
    seed: int = 0,
    class_weight: str | dict | None = None,
    confidence_weights: bool = False,
    sample_weight=None,
    scoring: str = "f1_macro",
    param_distributions: dict | None = None,
    n_jobs: int | None = None,
) -> ForestSearchResult:
    """Randomized search over :data:`FOREST_GRID` with ``TimeSeriesSplit`` CV; returns the refit best.

    ``X`` rows must be in time order. ``y`` is hard labels or probabilistic labels (argmax taken; with
    ``confidence_weights`` rows are weighted by their max probability, multiplied into any explicit
    ``sample_weight``; weights apply to training, the CV score is unweighted). ``class_weight`` is passed to the forest ("balanced", "balanced_subsample",
    dict or None). ``n_iter`` is capped at the size of the grid.

    Too few rows for ``n_splits`` reduce the number of folds (see :func:`effective_splits`, recorded
    in ``note``); with fewer than 2 possible folds (under 6 rows) no search is run and a forest with
    scikit-learn's default parameters is fitted on all rows (``cv`` None, ``note`` says so).

    Raises ``ValueError`` when the training labels hold a single class: there is nothing to learn,
    and the caller records that outcome.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import ParameterGrid, RandomizedSearchCV, TimeSeriesSplit

    X = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    yh, conf = hard_labels(y, confidence_weights)
    if len(yh) != len(X):
        raise ValueError(f"X has {len(X)} rows, y has {len(yh)}")
    classes = np.unique(yh)
    if len(classes) < 2:
        raise ValueError(f"training labels contain a single class ({classes.tolist()}); a classifier needs two")
    sw = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    if conf is not None:
        sw = conf if sw is None else sw * conf

    grid = param_distributions or FOREST_GRID
    base = RandomForestClassifier(random_state=seed, class_weight=class_weight, n_jobs=n_jobs)
    fit_params = {} if sw is None else {"sample_weight": sw}
    k = effective_splits(len(X), n_splits)
    note = "" if k == n_splits else f"{len(X)} rows allow {k} time-series folds of >= {MIN_FOLD_ROWS} rows, not {n_splits}"

    if k < 2:
        est = base.fit(X, yh, **fit_params)
        note = f"{len(X)} rows: too few for time-series CV; fitted default parameters without search"
        return ForestSearchResult(est, {}, float("nan"), pd.DataFrame(), None, 0, note, classes)

    cv = TimeSeriesSplit(n_splits=k)
    n_candidates = len(ParameterGrid(grid)) if all(isinstance(v, list) for v in grid.values()) else n_iter
    search = RandomizedSearchCV(
        base,
        grid,
        n_iter=min(n_iter, n_candidates),
        scoring=scoring,
        cv=cv,
        random_state=seed,
        refit=True,
        n_jobs=None,  # parallelism lives in the forest (n_jobs); nesting both oversubscribes cores
    )
    with warnings.catch_warnings():
        # Early time-series folds often hold one class: f1 of the absent class is then undefined (0),
        # which is the honest score; the warnings would only flood the logs.
        warnings.filterwarnings("ignore", message=".*(ill-defined|UndefinedMetric|least populated|only one label).*")
        warnings.filterwarnings("ignore", category=UserWarning, module="sklearn.metrics")
        search.fit(X, yh, **fit_params)
    results = pd.DataFrame(search.cv_results_)
    return ForestSearchResult(
        search.best_estimator_, dict(search.best_params_), float(search.best_score_), results, cv, k, note, classes
    )


class TimeSeriesForest(ClassifierMixin, BaseEstimator):
    """Estimator wrapper of :func:`fit_forest_timeseries`: ``fit`` runs the search, predictions use the best.

    Interchangeable with :class:`~flamenco_core.models.lstm.LSTMClassifier` (``fit(X, y)`` with hard or
    probabilistic labels, ``predict``, ``predict_proba``). Extra fit keywords the LSTM takes
    (``X_val``, ``y_val``, ``groups``) are accepted and ignored: the forest validates by time-series CV
    on the training rows. ``param_distributions`` defaults to :data:`FOREST_GRID`.
    """

    def __init__(
        self,
        n_splits: int = 5,
        n_iter: int = 10,
        random_state: int = 0,
        class_weight: str | dict | None = None,
        confidence_weights: bool = False,
        scoring: str = "f1_macro",
        n_jobs: int | None = None,
        param_distributions: dict | None = None,
    ):
        self.n_splits = n_splits
        self.n_iter = n_iter
        self.random_state = random_state
        self.class_weight = class_weight
        self.confidence_weights = confidence_weights
        self.scoring = scoring
        self.n_jobs = n_jobs
        self.param_distributions = param_distributions

    def fit(self, X, y, *, sample_weight=None, X_val=None, y_val=None, groups=None, groups_val=None):
        """Search and fit on ``X`` (rows in time order); see :func:`fit_forest_timeseries`."""
        res = fit_forest_timeseries(
            X,
            y,
            n_splits=self.n_splits,
            n_iter=self.n_iter,
            seed=self.random_state,
            class_weight=self.class_weight,
            confidence_weights=self.confidence_weights,
            sample_weight=sample_weight,
            scoring=self.scoring,
            n_jobs=self.n_jobs,
            param_distributions=self.param_distributions,
        )
        self.search_ = res
        self.best_estimator_ = res.best_estimator
        self.best_params_ = res.best_params
        self.cv_results_ = res.cv_results
        self.classes_ = res.best_estimator.classes_
        self.n_features_in_ = res.best_estimator.n_features_in_
        return self

    def _X(self, X):
        X = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X, dtype=np.float64)
        return X[:, None] if X.ndim == 1 else X

    def predict_proba(self, X, groups=None) -> np.ndarray:
        """Class probabilities of the best forest, columns in ``classes_`` order."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict_proba(self._X(X))

    def predict(self, X, groups=None) -> np.ndarray:
        """Predicted classes of the best forest."""
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_.predict(self._X(X))
