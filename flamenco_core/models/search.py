"""Hyperparameter search on a held-out validation set in time order (no cross-validation).

Used for the LSTM, whose training is too costly for CV and whose data are a time series: every
configuration trains on the training rows and is scored on the later validation rows, as in the paper.
Works for any estimator with ``fit``/``predict`` and ``set_params``.
"""

from __future__ import annotations

import inspect
import logging
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

#: The paper's LSTM grid (11 x 3 x 4 x 3 = 396 configurations); "cells" is ``hidden``.
PAPER_LSTM_GRID: dict[str, list] = {
    "lr": [0.0001, 0.0003, 0.0005, 0.0008, 0.001, 0.003, 0.005, 0.008, 0.01, 0.03, 0.05],
    "epochs": [20, 25, 30],
    "batch_size": [32, 64, 128, 256],
    "hidden": [32, 64, 128],
}

# Random search needs some cap; sklearn's RandomizedSearchCV uses the same default.
DEFAULT_RANDOM_BUDGET = 10


@dataclass
class SearchResult:
    """Outcome of :func:`search`.

    ``best_estimator`` is the best configuration fitted on the training rows; ``results`` has one row
    per configuration tried (``param_*`` columns, ``score``, ``fit_seconds``, ``n_epochs_run`` where the
    estimator reports it, ``error`` for configurations that failed), in evaluation order.
    """

    best_params: dict
    best_estimator: object
    best_score: float
    results: pd.DataFrame


def candidates(grid: dict, strategy: str = "grid", budget: int | None = None, seed: int = 0) -> list[dict]:
    """The configurations :func:`search` evaluates, in order.

    ``grid``: every combination in ``ParameterGrid`` order, or with a ``budget`` the first ``budget`` of a
    seeded shuffle of all combinations (a uniform subset without repeats, reproducible by seed).
    ``random``: ``budget`` (default 10) draws from ``ParameterSampler`` (lists are sampled without
    replacement; scipy distributions are allowed as values); capped at the grid size for lists.
    """
    from sklearn.model_selection import ParameterGrid, ParameterSampler

    if budget is not None and budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    if strategy == "grid":
        configs = list(ParameterGrid(grid))
        if budget is not None and budget < len(configs):
            order = np.random.default_rng(seed).permutation(len(configs))[:budget]
            configs = [configs[i] for i in order]
        return configs
    if strategy == "random":
        n = DEFAULT_RANDOM_BUDGET if budget is None else budget
        if all(isinstance(v, (list, tuple)) for v in grid.values()):
            n = min(n, len(ParameterGrid(grid)))  # avoids sklearn's "space smaller than n_iter" warning
        return [dict(c) for c in ParameterSampler(grid, n_iter=n, random_state=seed)]
    raise ValueError(f"strategy must be 'grid' or 'random', got {strategy!r}")


def _hard(y) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        return y[:, 0]
    return y.argmax(axis=1) if y.ndim == 2 else y


def search(
    estimator,
    grid: dict,
    X,
    y,
    X_val,
    y_val,
    *,
    strategy: str = "grid",
    budget: int | None = None,
    seed: int = 0,
    scoring: str = "f1_macro",
    early_stopping_on_val: bool = True,
    fit_params: dict | None = None,
) -> SearchResult:
    """Fit a clone of ``estimator`` per configuration on ``(X, y)``, score each on ``(X_val, y_val)``.

    ``X_val`` should be the rows after ``X`` in time order. ``y`` may be probabilistic; ``y_val`` may be
    hard labels or probabilities (argmax taken for scoring, i.e. class indices ``0..k-1``). With
    ``early_stopping_on_val`` and an estimator whose ``fit`` takes ``X_val``/``y_val`` (the LSTM), the
    validation set also drives early stopping, as in the paper. ``scoring`` is a scikit-learn scorer
    name. A configuration that raises is recorded (``error``, score NaN) and the search goes on; if all
    fail, ``ValueError`` is raised.

    The best configuration's fitted model is kept rather than refit: fits are deterministic by seed, so
    a refit on the same rows would reproduce it at the cost of another training.
    """
    from sklearn.base import clone
    from sklearn.metrics import get_scorer

    scorer = get_scorer(scoring)
    yv = _hard(y_val)
    pass_val = early_stopping_on_val and {"X_val", "y_val"} <= set(inspect.signature(estimator.fit).parameters)
    configs = candidates(grid, strategy, budget, seed)
    rows, best, best_score, best_params = [], None, -np.inf, None
    for i, params in enumerate(configs):
        est = clone(estimator).set_params(**params)
        kw = dict(fit_params or {})
        if pass_val:
            kw.update(X_val=X_val, y_val=y_val)
        t0 = time.perf_counter()
        row = {f"param_{k}": v for k, v in params.items()}
        try:
            est.fit(X, y, **kw)
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*ill-defined.*")
                score = float(scorer(est, X_val, yv))
            row.update(score=score, error="")
        except Exception as e:  # one bad configuration must not end the search
            score = float("nan")
            row.update(score=score, error=f"{type(e).__name__}: {e}")
        row["fit_seconds"] = time.perf_counter() - t0
        if hasattr(est, "n_epochs_run_"):
            row["n_epochs_run"] = est.n_epochs_run_
        rows.append(row)
        log.debug("config %d/%d %s score %.4f", i + 1, len(configs), params, score)
        # Strictly greater: ties keep the earlier configuration, so the result is order-stable.
        if np.isfinite(score) and score > best_score:
            best, best_score, best_params = est, score, dict(params)
    results = pd.DataFrame(rows)
    if best is None:
        raise ValueError(f"every configuration failed; first error: {rows[0]['error'] if rows else 'no configurations'}")
    results["rank"] = results["score"].rank(ascending=False, method="min")
    return SearchResult(best_params, best, best_score, results)
