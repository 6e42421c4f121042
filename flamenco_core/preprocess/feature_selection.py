"""Feature selection for the flow path (issue 5, Preparation): correlations, importances, selection by
config, and the statistics profile that LF writers read.

- :func:`correlation_matrix` / :func:`correlations`: Pearson and Spearman over numeric features
  (pandas' pairwise-complete ``corr``; non-finite values ignored).
- :func:`feature_importance`: random-forest impurity importance and permutation importance, seeded.
- :func:`select_features`: an explicit list, constant features dropped, one of each highly correlated
  pair dropped, top-k by importance; every dropped feature has a recorded reason.
- :func:`write_profile_csv`: the statistics profile (``count, mean, std, min, p1, p5, q1, median, q3,
  p95, p99, max``) that declarative LF specs' statistics refer to; it loads through
  :func:`flamenco_core.labeling.stats.load_profile`.
- :func:`correlation_of`: the "correlation of the features involved" column of the experiment tables.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flamenco_core.preprocess.profile import PROFILE_STATS, profile

CORRELATION_METHODS = ("pearson", "spearman")
IMPORTANCE_METHODS = ("impurity", "permutation")

#: Percentiles beyond describe()'s quartiles that the written profile holds, as canonical statistic
#: names of :mod:`flamenco_core.labeling.expr` (``pNN``): the tails that LF thresholds tend to use.
PROFILE_EXTRA_PERCENTILES = (1.0, 5.0, 95.0, 99.0)

#: Columns never treated as features by default (identifiers and labels, not measurements).
NON_FEATURES = ("label", "timestamp", "src", "dst", "flow_id", "source", "measurement")


# ----------------------------------------------------------------------------------------------------
# helpers


def numeric_features(df: pd.DataFrame, exclude: Iterable[str] = NON_FEATURES) -> list[str]:
    """Numeric (and boolean) columns of ``df`` in column order, minus ``exclude``."""
    skip = set(exclude)
    return [
        c for c in df.columns
        if c not in skip and (pd.api.types.is_numeric_dtype(df[c].dtype) or pd.api.types.is_bool_dtype(df[c].dtype))
    ]


def _finite_frame(df: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise KeyError(f"features not in the data: {missing}")
    bad = [f for f in features if not (pd.api.types.is_numeric_dtype(df[f].dtype) or pd.api.types.is_bool_dtype(df[f].dtype))]
    if bad:
        raise TypeError(f"features are not numeric: {bad}")
    values = pd.DataFrame({f: df[f].to_numpy(dtype=np.float64, na_value=np.nan) for f in features}, index=df.index)
    # +-inf (CICFlowMeter's Flow Bytes/s on zero-duration flows) would poison means and correlations
    return values.where(np.isfinite(values))


def _sample_rows(n: int, max_rows: Optional[int], seed: int) -> Optional[np.ndarray]:
    if max_rows is None or n <= max_rows:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size=max_rows, replace=False))


# ----------------------------------------------------------------------------------------------------
# correlation


def correlation_matrix(df: pd.DataFrame, features: Optional[Sequence[str]] = None, method: str = "pearson") -> pd.DataFrame:
    """Correlation matrix of ``features`` (default: :func:`numeric_features`) with ``method``
    (``"pearson"`` or ``"spearman"``), equal to ``df[features].corr(method)`` after non-finite values are
    set to NaN (pairwise-complete rows). A constant feature has NaN correlations."""
    if method not in CORRELATION_METHODS:
        raise ValueError(f"method={method!r}; choose one of {', '.join(CORRELATION_METHODS)}")
    features = list(features) if features is not None else numeric_features(df)
    return _finite_frame(df, features).corr(method=method)


def correlations(
    df: pd.DataFrame, features: Optional[Sequence[str]] = None, methods: Sequence[str] = CORRELATION_METHODS
) -> dict[str, pd.DataFrame]:
    """``{method: correlation matrix}`` for each of ``methods`` (default Pearson and Spearman)."""
    return {m: correlation_matrix(df, features, m) for m in methods}


def correlation_of(features: Sequence[str], corr: pd.DataFrame) -> float:
    """Mean absolute pairwise correlation of the distinct ``features`` (an LF combination's features)
    in ``corr``, the value of the experiment tables' correlation column.

    One feature (or none) has no pair: the result is NaN (shown blank), not 1.0, since 1.0 would read as
    "perfectly redundant features" in the pair tables. Pairs with an undefined correlation (a constant
    feature) are skipped; NaN when no pair is defined. A feature not in ``corr`` raises ``KeyError``.
    """
    feats = list(dict.fromkeys(features))
    missing = [f for f in feats if f not in corr.index or f not in corr.columns]
    if missing:
        raise KeyError(f"features not in the correlation matrix: {missing}")
    if len(feats) < 2:
        return math.nan
    sub = corr.loc[feats, feats].to_numpy(dtype=np.float64)
    vals = np.abs(sub[np.triu_indices(len(feats), k=1)])
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if vals.size else math.nan


# ----------------------------------------------------------------------------------------------------
# importance


def feature_importance(
    df: pd.DataFrame,
    y: Union[str, Sequence[Any], pd.Series],
    features: Optional[Sequence[str]] = None,
    *,
    methods: Sequence[str] = IMPORTANCE_METHODS,
    seed: int = 0,
    n_estimators: int = 100,
    n_repeats: int = 5,
    test_size: float = 0.25,
    max_rows: Optional[int] = 200_000,
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Importance of each feature for predicting ``y`` (a column name of ``df`` or labels per row).

    A random forest (``n_estimators`` trees, ``random_state=seed``) is fitted on a stratified
    ``1 - test_size`` part of the labeled rows; ``impurity`` is its mean decrease in impurity,
    ``permutation`` the mean drop in accuracy on the held-out part when a feature is shuffled
    (``n_repeats`` times, seeded; ``permutation_std`` its spread). Held-out rows keep permutation
    importance honest about overfitting; when a class is too small to split, both use all rows
    (``attrs["holdout"]`` is then False). Rows without a label are ignored; NaN/inf features are left to
    the forest's missing-value support. ``max_rows`` caps the rows used (seeded sample) for speed.

    Returns a DataFrame indexed by feature with ``impurity``, ``permutation``, ``permutation_std``
    (those asked for) and ``rank`` (1 = most important by the first of ``methods``), sorted by rank.
    """
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import train_test_split

    bad = [m for m in methods if m not in IMPORTANCE_METHODS]
    if bad or not methods:
        raise ValueError(f"methods {list(methods)}; choose from {', '.join(IMPORTANCE_METHODS)}")
    label_col = y if isinstance(y, str) else None
    labels = df[y] if label_col is not None else pd.Series(np.asarray(y), index=df.index)
    if len(labels) != len(df):
        raise ValueError(f"{len(labels)} labels for {len(df)} rows")
    features = list(features) if features is not None else numeric_features(df, set(NON_FEATURES) | {label_col})
    if not features:
        raise ValueError("no numeric features to rank")
    X = _finite_frame(df, features)
    keep = labels.notna().to_numpy()
    X, labels = X[keep], labels[keep]
    if labels.nunique() < 2:
        raise ValueError(f"feature importance needs at least 2 classes in the labels, got {labels.unique().tolist()}")
    pick = _sample_rows(len(X), max_rows, seed)
    if pick is not None:
        X, labels = X.iloc[pick], labels.iloc[pick]
    yv = labels.astype(str).to_numpy()
    try:
        X_fit, X_eval, y_fit, y_eval = train_test_split(X, yv, test_size=test_size, stratify=yv, random_state=seed)
        holdout = True
    except ValueError:
        X_fit, X_eval, y_fit, y_eval, holdout = X, X, yv, yv, False
    forest = RandomForestClassifier(n_estimators=n_estimators, random_state=seed, n_jobs=n_jobs)
    forest.fit(X_fit, y_fit)
    out = pd.DataFrame(index=pd.Index(features, name="feature"))
    for m in methods:
        if m == "impurity":
            out["impurity"] = forest.feature_importances_
        else:
            perm = permutation_importance(forest, X_eval, y_eval, n_repeats=n_repeats, random_state=seed, n_jobs=n_jobs)
            out["permutation"] = perm.importances_mean
            out["permutation_std"] = perm.importances_std
    primary = methods[0]
    # stable ordering on ties (column order) so ranks are reproducible
    order = np.argsort(-out[primary].to_numpy(), kind="stable")
    out["rank"] = 0
    out.iloc[order, out.columns.get_loc("rank")] = np.arange(1, len(out) + 1)
    out = out.sort_values("rank")
    out.attrs.update({"seed": seed, "methods": list(methods), "rows": int(len(X)), "holdout": holdout,
                      "n_estimators": n_estimators, "n_repeats": n_repeats})
    return out


# ----------------------------------------------------------------------------------------------------
# selection


@dataclass
class FeatureSelectionConfig:
    """How :func:`select_features` chooses features (a mapping with these keys is accepted too).

    - ``features``: explicit list to start from (default: every numeric column but ``exclude``,
      :data:`NON_FEATURES` and ``label``); a listed feature missing from the data raises ``KeyError``.
    - ``exclude``: features never selected.
    - ``label``: the label column, for importances (``None``: no labels).
    - ``drop_constant``: drop features with fewer than 2 distinct finite values.
    - ``corr_threshold``: drop one feature of each pair with ``|corr| > corr_threshold``
      (``corr_method``); the more important one is kept when labels exist, else the earlier column.
    - ``top_k``: keep the ``top_k`` most important features (needs labels), by ``importance``
      (``"impurity"`` or ``"permutation"``).
    - ``rank``: compute importances whenever labels exist, for the report, even when no step needs
      them (``False`` skips the forest unless ``corr_threshold`` or ``top_k`` uses it).
    - ``seed``, ``n_estimators``, ``max_rows``: for the importances (seeded forest, row cap).
    """

    features: Optional[list[str]] = None
    exclude: list[str] = field(default_factory=list)
    label: Optional[str] = "label"
    drop_constant: bool = True
    corr_threshold: Optional[float] = None
    corr_method: str = "pearson"
    top_k: Optional[int] = None
    importance: str = "impurity"
    rank: bool = True
    seed: int = 0
    n_estimators: int = 100
    max_rows: Optional[int] = 200_000

    @classmethod
    def from_mapping(cls, config: Union["FeatureSelectionConfig", Mapping[str, Any], None]) -> "FeatureSelectionConfig":
        """A config from a mapping (unknown keys raise ``ValueError`` naming them)."""
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise ValueError(f"unknown feature-selection keys {unknown}; known: {sorted(known)}")
        return cls(**dict(config))

    def validate(self) -> None:
        if self.corr_method not in CORRELATION_METHODS:
            raise ValueError(f"corr_method={self.corr_method!r}; choose one of {', '.join(CORRELATION_METHODS)}")
        if self.importance not in IMPORTANCE_METHODS:
            raise ValueError(f"importance={self.importance!r}; choose one of {', '.join(IMPORTANCE_METHODS)}")
        if self.corr_threshold is not None and not (0.0 <= self.corr_threshold <= 1.0):
            raise ValueError(f"corr_threshold must be in [0, 1], got {self.corr_threshold}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")


@dataclass
class FeatureSelection:
    """What :func:`select_features` chose: ``selected`` (in data column order), ``dropped``
    (``{feature: reason}``), the ``importance`` table (None without labels), the ``correlation`` matrix
    of the candidates (None when no threshold was asked) and the ``config`` used."""

    selected: list[str]
    dropped: dict[str, str]
    importance: Optional[pd.DataFrame]
    correlation: Optional[pd.DataFrame]
    config: FeatureSelectionConfig

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able record for run tracking."""
        return {
            "selected": list(self.selected),
            "dropped": dict(self.dropped),
            "importance": None if self.importance is None else self.importance.reset_index().to_dict(orient="records"),
            "config": asdict(self.config),
        }


def constant_features(df: pd.DataFrame, features: Sequence[str]) -> dict[str, str]:
    """``{feature: reason}`` for features with fewer than 2 distinct finite values."""
    values = _finite_frame(df, features)
    n_unique = values.nunique(dropna=True)
    out = {}
    for f in features:
        u = int(n_unique[f])
        if u == 0:
            out[f] = "constant: no finite values"
        elif u == 1:
            out[f] = f"constant: every finite value is {values[f].dropna().iloc[0]:g}"
    return out


def select_features(
    df: pd.DataFrame,
    config: Union[FeatureSelectionConfig, Mapping[str, Any], None] = None,
    y: Optional[Union[Sequence[Any], pd.Series]] = None,
) -> FeatureSelection:
    """Choose features by ``config`` (:class:`FeatureSelectionConfig` or a mapping of its fields).

    Steps, each recording why a feature left: candidates (explicit list, or all numeric columns) minus
    ``exclude``; constant features; one of each pair with ``|corr| > corr_threshold`` (greedy: features in
    order of importance when labels exist, else column order, each kept unless it correlates above the
    threshold with a feature already kept); ``top_k`` by importance. Labels come from ``y`` or the
    ``label`` column; a step that needs them raises ``ValueError`` without them.
    """
    cfg = FeatureSelectionConfig.from_mapping(config)
    cfg.validate()
    labels = None
    if y is not None:
        labels = pd.Series(np.asarray(y), index=df.index)
    elif cfg.label and cfg.label in df.columns:
        labels = df[cfg.label]
    if cfg.features is not None:
        missing = [f for f in cfg.features if f not in df.columns]
        if missing:
            raise KeyError(f"features listed in the config are not in the data: {missing}")
        candidates = list(dict.fromkeys(cfg.features))
    else:
        candidates = numeric_features(df, set(NON_FEATURES) | ({cfg.label} if cfg.label else set()))
    dropped: dict[str, str] = {f: "excluded by config" for f in candidates if f in set(cfg.exclude)}
    candidates = [f for f in candidates if f not in dropped]
    if cfg.drop_constant and candidates:
        const = constant_features(df, candidates)
        dropped.update(const)
        candidates = [f for f in candidates if f not in const]

    needs_labels = cfg.top_k is not None
    importance = None
    if labels is not None and labels.notna().any() and labels.nunique() >= 2 and candidates and (
        cfg.rank or needs_labels or cfg.corr_threshold is not None
    ):
        importance = feature_importance(
            df, labels, candidates, methods=(cfg.importance,), seed=cfg.seed,
            n_estimators=cfg.n_estimators, max_rows=cfg.max_rows,
        )
    elif needs_labels:
        raise ValueError("top_k selection ranks features by importance and needs labels with 2 or more classes "
                         f"(column {cfg.label!r} or y=)")

    corr = None
    if cfg.corr_threshold is not None and len(candidates) > 1:
        corr = correlation_matrix(df, candidates, cfg.corr_method)
        order = list(importance.index) if importance is not None else candidates
        a = np.abs(corr.loc[order, order].to_numpy(dtype=np.float64))
        a = np.nan_to_num(a, nan=0.0)  # undefined correlation: no evidence of redundancy
        kept_idx: list[int] = []
        for i, f in enumerate(order):
            if kept_idx:
                row = a[i, kept_idx]
                j = int(np.argmax(row))
                if row[j] > cfg.corr_threshold:
                    dropped[f] = (f"|{cfg.corr_method} corr| = {row[j]:.3f} with {order[kept_idx[j]]!r} "
                                  f"> {cfg.corr_threshold}")
                    continue
            kept_idx.append(i)
        candidates = [f for f in candidates if f not in dropped]

    if cfg.top_k is not None and len(candidates) > cfg.top_k:
        ranked = [f for f in importance.index if f in set(candidates)]
        for r, f in enumerate(ranked[cfg.top_k:], start=cfg.top_k + 1):
            dropped[f] = f"not in top {cfg.top_k} by {cfg.importance} importance (rank {r} of {len(ranked)})"
        candidates = [f for f in candidates if f not in dropped]
    return FeatureSelection(candidates, dropped, importance, corr, cfg)


# ----------------------------------------------------------------------------------------------------
# profile


def _pct_name(q: float) -> str:
    from flamenco_core.labeling.expr import canonical_stat, format_percentile

    return canonical_stat("p" + format_percentile(q)) or f"p{format_percentile(q)}"


def extended_profile(
    df: pd.DataFrame,
    features: Optional[Sequence[str]] = None,
    percentiles: Sequence[float] = PROFILE_EXTRA_PERCENTILES,
) -> pd.DataFrame:
    """:func:`~flamenco_core.preprocess.profile.profile` (``count, mean, std, min, q1, median, q3, max``)
    plus the ``percentiles`` (0-100; default p1, p5, p95, p99), one row per feature, columns in
    increasing order of the statistic (``count, mean, std, min, p1, p5, q1, median, q3, p95, p99,
    max``). Same conventions as ``describe()``: non-finite values ignored, sample std, linear
    interpolation; column names are the canonical statistic names of the LF expression language."""
    features = list(features) if features is not None else numeric_features(df)
    base = profile(df, features)
    extra_q = sorted({float(q) for q in percentiles} - {0.0, 25.0, 50.0, 75.0, 100.0})
    if any(not 0.0 < q < 100.0 for q in extra_q):
        raise ValueError(f"percentiles must be in (0, 100), got {list(percentiles)}")
    names = [_pct_name(q) for q in extra_q]
    if extra_q:
        values = _finite_frame(df, features)
        qs = values.quantile([q / 100.0 for q in extra_q], interpolation="linear").T
        qs.columns = names
        base = base.join(qs)
    order_key = {"count": -3.0, "mean": -2.0, "std": -1.0, "min": 0.0, "q1": 25.0, "median": 50.0, "q3": 75.0, "max": 100.0}
    order_key.update(dict(zip(names, extra_q)))
    cols = sorted(list(PROFILE_STATS) + names, key=lambda c: order_key[c])
    out = base[cols]
    out.index.name = "feature"
    return out


def write_profile_csv(
    df: pd.DataFrame,
    path: Union[str, Path],
    features: Optional[Sequence[str]] = None,
    percentiles: Sequence[float] = PROFILE_EXTRA_PERCENTILES,
) -> Path:
    """Write :func:`extended_profile` as CSV (first column ``feature``, full float precision): the profile
    LF writers read and that declarative specs' statistics refer to. It loads back with
    :func:`flamenco_core.labeling.stats.load_profile` (``q1``/``median``/``q3`` and ``pNN`` columns are its
    canonical names). Returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extended_profile(df, features, percentiles).to_csv(path, index=True, float_format="%.17g")
    return path
