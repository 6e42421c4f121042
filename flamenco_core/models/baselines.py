"""Unsupervised baselines that label training data without labeling functions, for comparison.

Definitions and design notes: ``docs/models.md``."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

#: Baseline names as used in reports.
BASELINE_NAMES = ("lof", "elliptic_envelope", "robust_covariance", "isolation_forest")

# EllipticEnvelope has no "auto" contamination; scikit-learn's default is 0.1.
_ENVELOPE_AUTO = 0.1
# "auto" for robust covariance: rows beyond the 97.5% quantile of chi2(p) are outliers (the usual
# cutoff for robust Mahalanobis distances, Rousseeuw & Van Zomeren 1990).
_CHI2_QUANTILE = 0.975
# In units of each column's std. scikit-learn's MCD treats a support covariance within 1e-8 of 0 as
# zero (np.allclose), so the jitter's variance must clear that: 1e-3 gives 1e-6.
_JITTER = 1e-3
#: The Minimum Covariance Determinant is fitted on at most this many rows (a seeded subsample beyond).
#: FastMCD's cost barely depends on the rows beyond 1,500 (its trials run on 300-row subsets) but its
#: final steps do; 2,000 rows cost a third of 10,000 (17 columns) and flag 1% of rows differently.
MCD_MAX_ROWS = 2_000
#: LOF is fitted on at most this many rows (a seeded subsample beyond; the other rows are scored against
#: it as new points): its neighbour search grows faster than the rows.
LOF_MAX_ROWS = 50_000
# kd-trees find the same neighbours as brute force; up to this many columns (the latency path's
# correlated window and deviation features) they are several times faster at 30k+ rows, beyond it
# scikit-learn's own choice of search is kept.
_KD_TREE_MAX_FEATURES = 20
# Rows scored per block when LOF scores rows outside its fit: bounds the neighbour arrays' memory.
_LOF_CHUNK = 65_536


class _Singular(Exception):
    pass


@dataclass
class BaselineResult:
    """Labels (int8, 1 = anomaly) of one method, anomaly scores (higher = more anomalous, or None),
    and the outcome: ``ok``, or ``fallback`` with ``reason``."""

    method: str
    labels: np.ndarray
    scores: np.ndarray | None
    outcome: str = "ok"
    reason: str = ""


def _check_contamination(c, method):
    if c == "auto":
        return c
    c = float(c)
    if not 0.0 < c <= 0.5:
        raise ValueError(f"{method}: contamination must be 'auto' or in (0, 0.5], got {c}")
    return c


def _knn_graph(tree, Q: np.ndarray, k: int, n_fit: int):
    """Each row of ``Q``'s ``k`` nearest fit rows as a sparse distance graph (scikit-learn's ``precomputed``
    neighbours format: rows sorted by distance)."""
    from scipy import sparse

    d, i = tree.query(Q, k=k)
    n = len(Q)
    return sparse.csr_matrix((d.reshape(n, k).ravel(), i.reshape(n, k).ravel(), np.arange(0, n * k + 1, k)),
                             shape=(n, n_fit))


def _lof(X, contamination, seed, n_neighbors: int = 20, _notes=None):
    from sklearn.neighbors import LocalOutlierFactor

    big = len(X) > LOF_MAX_ROWS
    rows = np.sort(np.random.default_rng(seed).choice(len(X), LOF_MAX_ROWS, replace=False)) if big else None
    fit = X[rows] if big else X
    k = min(n_neighbors, len(fit) - 1)
    if X.shape[1] <= _KD_TREE_MAX_FEATURES:
        # scipy's kd-tree (unbalanced: faster to build and query on these correlated columns) finds the
        # neighbours, scikit-learn's LOF takes them precomputed: the same LOF as scikit-learn's own kd-tree
        # (scores within 1e-15, labels equal on a 110k-row Ark-like pair) in less than half the time.
        from scipy.spatial import cKDTree

        tree = cKDTree(fit, balanced_tree=False, compact_nodes=False)
        m = LocalOutlierFactor(n_neighbors=k, contamination=contamination, metric="precomputed", novelty=big)
        # k + 1 from the fit rows themselves: scikit-learn drops each row from its own neighbours
        fit_in = _knn_graph(tree, fit, k + 1, len(fit))
        query = lambda part: _knn_graph(tree, part, k, len(fit))  # noqa: E731
    else:
        m = LocalOutlierFactor(n_neighbors=k, contamination=contamination, novelty=big)
        fit_in = fit
        query = lambda part: part  # noqa: E731
    if not big:
        pred = m.fit_predict(fit_in)
        return (pred == -1), -m.negative_outlier_factor_
    # The fit rows keep their LOF within the sample (as fit_predict would give them); every other row is
    # scored as a new point against the sample, in blocks, with the same offset.
    m.fit(fit_in)
    nof = np.empty(len(X))
    nof[rows] = m.negative_outlier_factor_
    rest = np.setdiff1d(np.arange(len(X)), rows, assume_unique=True)
    for lo in range(0, len(rest), _LOF_CHUNK):
        part = rest[lo:lo + _LOF_CHUNK]
        nof[part] = m.score_samples(query(X[part]))
    if _notes is not None:
        _notes.append(f"LOF fitted on a seeded subsample of {LOF_MAX_ROWS} of {len(X)} rows; the others scored against it")
    return nof < m.offset_, -nof


def _isolation_forest(X, contamination, seed, n_estimators: int = 100):
    from sklearn.ensemble import IsolationForest

    m = IsolationForest(n_estimators=n_estimators, contamination=contamination, random_state=seed).fit(X)
    return (m.predict(X) == -1), -m.score_samples(X)


def _check_cov(cov):
    eig = np.linalg.eigvalsh(np.atleast_2d(cov))
    if not np.isfinite(eig).all() or eig.min() <= 1e-12 * max(eig.max(), 1e-300):
        raise _Singular("singular covariance")


def _fit_cov(make, X):
    with warnings.catch_warnings():
        # Only the warnings that mean singular data become errors; MCD's benign numerical notes
        # ("Determinant has increased") must not turn a usable fit into a fallback.
        warnings.filterwarnings("error", message=".*(singular|full rank|divide by zero|invalid value).*")
        try:
            m = make().fit(X)
        except (ValueError, np.linalg.LinAlgError, RuntimeWarning, UserWarning) as e:
            raise _Singular(str(e)) from e
    _check_cov(m.covariance_)
    return m


def _mcd(X, seed, cache: dict | None, notes: list | None):
    """The MinCovDet fit of ``X`` (at most :data:`MCD_MAX_ROWS` rows, else a seeded subsample) and whether
    it was subsampled; reused from ``cache`` when the same ``X`` and seed were fitted before (the envelope
    and robust covariance share it). A singular fit raises :class:`_Singular`, cached too."""
    import hashlib

    from sklearn.covariance import MinCovDet

    key = (hashlib.blake2b(np.ascontiguousarray(X).tobytes(), digest_size=16).digest(), X.shape, seed, MCD_MAX_ROWS)
    if cache is None or key not in cache:
        fit_x, sub = X, False
        if len(X) > MCD_MAX_ROWS:
            rows = np.sort(np.random.default_rng(seed).choice(len(X), MCD_MAX_ROWS, replace=False))
            fit_x, sub = X[rows], True
        try:
            _collinear(fit_x)
            hit = (_fit_cov(lambda: MinCovDet(random_state=seed), fit_x), sub)
        except _Singular as e:
            hit = e
        if cache is not None:
            cache[key] = hit
    else:
        hit = cache[key]
    if isinstance(hit, _Singular):
        raise hit
    if hit[1] and notes is not None:
        notes.append(f"MCD fitted on a seeded subsample of {MCD_MAX_ROWS} of {len(X)} rows")
    return hit


def _collinear(X) -> None:
    """Raise :class:`_Singular` when the columns of ``X`` are exactly dependent (a column repeated, or the
    empirical covariance singular to rounding): every subset of rows, MCD's support included, is then
    singular too, so the fit could only fail, after its full cost."""
    if X.shape[1] < 2:
        return
    if np.unique(X, axis=1).shape[1] < X.shape[1]:
        raise _Singular("singular covariance: repeated columns")
    eig = np.linalg.eigvalsh(np.atleast_2d(np.cov(X, rowvar=False)))
    # far below _check_cov's 1e-12: only what rounding leaves of an exact dependence
    if eig.min() <= 1e-15 * max(eig.max(), 1e-300):
        raise _Singular("singular covariance: collinear columns")


def _elliptic_envelope(X, contamination, seed, _cache=None, _notes=None):
    c = _ENVELOPE_AUTO if contamination == "auto" else contamination
    m, sub = _mcd(X, seed, _cache, _notes)
    d2 = m.mahalanobis(X)  # squared robust distances
    # EllipticEnvelope: offset_ = percentile(-dist_, 100 c) over the fit rows, inlier iff -d2 - offset_ >= 0
    offset = np.percentile(-(d2 if sub else m.dist_), 100.0 * c)
    return ~(-d2 - offset >= 0), d2


def _robust_covariance(X, contamination, seed, _cache=None, _notes=None):
    from scipy.stats import chi2

    m, _ = _mcd(X, seed, _cache, _notes)
    d2 = m.mahalanobis(X)  # squared robust distances
    if contamination == "auto":
        cut = chi2.ppf(_CHI2_QUANTILE, df=X.shape[1])
    else:
        cut = np.quantile(d2, 1.0 - contamination)
    return d2 > cut, d2


#: name -> function ``(X, contamination, seed, **kwargs) -> (is_anomaly bool array, scores)`` on clean,
#: standardized, non-constant input. Use :func:`detect` / :func:`unsupervised_labels` for raw input.
BASELINES: dict[str, Callable] = {
    "lof": _lof,
    "elliptic_envelope": _elliptic_envelope,
    "robust_covariance": _robust_covariance,
    "isolation_forest": _isolation_forest,
}
_COVARIANCE = {"elliptic_envelope", "robust_covariance"}


def _as_matrix(X) -> np.ndarray:
    X = np.asarray(X.to_numpy() if hasattr(X, "to_numpy") else X, dtype=np.float64)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise ValueError(f"X must be 1-D or 2-D, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError("X contains NaN or infinite values; clean or impute before the baselines")
    return X


def detect(X, method: str, contamination="auto", seed: int = 0, *, mcd_cache: dict | None = None,
           **kwargs) -> BaselineResult:
    """Run one baseline on ``X`` (rows x features, or a 1-D series) and say how it went.

    ``contamination``: "auto" (LOF and Isolation Forest: scikit-learn's "auto" offsets; Elliptic
    Envelope: 0.1; robust covariance: chi2 97.5% cutoff) or the expected anomaly fraction in (0, 0.5].
    Features are standardized (z-score) first so distance-based LOF weighs them alike. ``kwargs`` go to
    the method (``n_neighbors`` for LOF, ``n_estimators`` for Isolation Forest). ``mcd_cache``: a dict
    shared between calls on the same ``X`` so that the covariance methods fit MCD once (module docstring).
    Raises ``ValueError`` for unknown methods, bad contamination, NaN input, or a covariance method that
    fails even after jitter.
    """
    if method not in BASELINES:
        raise ValueError(f"unknown baseline {method!r}; choose from {list(BASELINES)}")
    contamination = _check_contamination(contamination, method)
    X = _as_matrix(X)
    n = len(X)
    zeros = np.zeros(n, dtype=np.int8)
    if n < 3:
        return BaselineResult(method, zeros, None, "fallback", f"{n} rows: too few to call any row an outlier")
    std = X.std(axis=0)
    keep = std > 0
    notes = []
    if not keep.all():
        notes.append(f"dropped {int((~keep).sum())} constant column(s)")
    if not keep.any():
        return BaselineResult(method, zeros, None, "fallback", "all features constant: no row can be an outlier")
    Xs = (X[:, keep] - X[:, keep].mean(axis=0)) / std[keep]

    fn = BASELINES[method]
    if method in _COVARIANCE:
        kwargs = {**kwargs, "_cache": mcd_cache if mcd_cache is not None else {}, "_notes": notes}
    elif method == "lof":
        kwargs = {**kwargs, "_notes": notes}
    fallback = bool(notes)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            flags, scores = fn(Xs, contamination, seed, **kwargs)
        except _Singular as e:
            if method not in _COVARIANCE:
                raise ValueError(f"{method}: {e}") from e
            rng = np.random.default_rng(seed)
            # Xs has unit std per column, so this is 1e-3 of each column's spread: enough for an
            # invertible covariance, far below the differences the baselines are meant to find.
            jittered = Xs + rng.normal(scale=_JITTER, size=Xs.shape)
            try:
                flags, scores = fn(jittered, contamination, seed, **kwargs)
            except _Singular as e2:
                raise ValueError(f"{method}: singular covariance even after jitter ({e2})") from e2
            notes.append(f"singular covariance ({e}); refit with seeded jitter {_JITTER:g} x std")
            fallback = True
    notes.extend(dict.fromkeys(f"warning: {w.message}" for w in caught))
    return BaselineResult(
        method,
        flags.astype(np.int8),
        np.asarray(scores, dtype=np.float64),
        "fallback" if fallback else "ok",
        "; ".join(dict.fromkeys(notes)),
    )


def unsupervised_labels(X, method: str, contamination="auto", seed: int = 0, **kwargs) -> np.ndarray:
    """Labels of baseline ``method`` for every row of ``X``: 1 = noise/anomaly, 0 = good (int8).

    See :func:`detect` for the options and the degenerate-input handling.
    """
    return detect(X, method, contamination, seed, **kwargs).labels


def run_baselines(
    X, methods: Sequence[str] | None = None, contamination="auto", seed: int = 0, index=None
) -> pd.DataFrame:
    """Labels of every baseline, one nullable Int8 column per method, rows aligned with ``X``.

    A method that fails gets an all-NA column; it never stops the others. ``df.attrs["outcomes"]``
    maps each method to ``{"outcome": "ok" | "fallback" | "failed", "reason": str}`` for the run
    record. ``index`` defaults to ``X``'s index for a DataFrame, else a RangeIndex.
    """
    methods = list(methods or BASELINE_NAMES)
    if index is None and isinstance(X, (pd.DataFrame, pd.Series)):
        index = X.index
    n = len(X)
    cols, outcomes = {}, {}
    mcd: dict = {}  # one MCD fit serves the envelope and robust covariance
    for m in methods:
        try:
            r = detect(X, m, contamination, seed, mcd_cache=mcd)
            cols[m] = pd.array(r.labels, dtype="Int8")
            outcomes[m] = {"outcome": r.outcome, "reason": r.reason}
        except Exception as e:  # recorded per method: one baseline's failure must not abort the rest
            cols[m] = pd.array([pd.NA] * n, dtype="Int8")
            outcomes[m] = {"outcome": "failed", "reason": f"{type(e).__name__}: {e}"}
    df = pd.DataFrame(cols, index=index)
    df.attrs["outcomes"] = outcomes
    return df
