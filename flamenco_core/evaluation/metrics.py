"""Scores of predictions against gold labels, prediction differences, and the paper's averaging.

Definitions and design notes: ``docs/evaluation.md``."""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flamenco_core.labeling.analysis import ABSTAIN_MODES, DEFAULT_ABSTAIN
from flamenco_core.labeling.constants import ABSTAIN

#: Prediction values read as "inconclusive" besides ``-1`` and missing values (case-insensitive).
INCONCLUSIVE_NAMES = ("inconclusive", "abstain")

#: Metric-name prefixes :func:`average_scores` averages by default.
METRIC_PREFIXES = ("f1", "precision", "recall", "accuracy", "coverage", "lf_f1", "cls_f1", "tree_f1")

LabelRef = Union[int, str]


# ----------------------------------------------------------------------------------------------------
# encoding


def encode_labels(values: Any, classes: Sequence[Any], *, inconclusive: bool = True, what: str = "labels") -> np.ndarray:
    """Class indices (int64) of ``values`` given as indices or as names of ``classes``.

    With ``inconclusive=True`` (predictions) ``-1``, missing values and :data:`INCONCLUSIVE_NAMES` become
    ``-1``; with ``False`` (gold labels) they raise ``ValueError``. Unknown names or out-of-range indices
    raise ``ValueError`` listing them.
    """
    classes = list(classes)
    k = len(classes)
    s = pd.Series(values, copy=False) if not isinstance(values, pd.Series) else values
    s = s.reset_index(drop=True)
    missing = s.isna().to_numpy()
    if pd.api.types.is_bool_dtype(s.dtype) or (pd.api.types.is_numeric_dtype(s.dtype) and not _names_are_numbers(classes, s)):
        num = s.to_numpy(dtype=np.float64, na_value=np.nan)
        if not np.all(np.isnan(num) | (num == np.round(num))):
            raise ValueError(f"{what}: class indices must be integers")
        codes = np.where(missing, ABSTAIN, np.nan_to_num(num, nan=ABSTAIN)).astype(np.int64)
        bad = (codes < ABSTAIN) | (codes >= k)
        if bad.any():
            raise ValueError(f"{what}: {sorted(set(codes[bad].tolist()))[:5]} not class indices 0..{k - 1} (or -1)")
    else:
        codes_u, uniques = pd.factorize(s, use_na_sentinel=True)
        lookup = {str(c): i for i, c in enumerate(classes)}
        mapped = np.empty(len(uniques) + 1, dtype=np.int64)
        unknown = []
        for j, u in enumerate(uniques):
            key = str(u).strip()
            if key in lookup:
                mapped[j] = lookup[key]
            elif key == "" or key.lower() in INCONCLUSIVE_NAMES or key == str(ABSTAIN):
                mapped[j] = ABSTAIN
            else:
                mapped[j] = ABSTAIN
                unknown.append(u)
        if unknown:
            raise ValueError(f"{what}: unknown classes {unknown[:5]} (classes are {classes})")
        mapped[-1] = ABSTAIN  # factorize's NA sentinel is -1, i.e. the last slot
        codes = mapped[codes_u]
    if not inconclusive and (codes == ABSTAIN).any():
        raise ValueError(f"{what}: {int((codes == ABSTAIN).sum())} rows have no class (gold labels must be conclusive)")
    return codes


def _names_are_numbers(classes: list, s: pd.Series) -> bool:
    # classes such as [0, 1] given as ints: numeric values are then names and indices at once; read them
    # as names only when the classes are not simply 0..k-1
    return all(isinstance(c, (int, np.integer)) for c in classes) and list(classes) != list(range(len(classes)))


def _index(ref: Optional[LabelRef], classes: list, what: str) -> Optional[int]:
    if ref is None:
        return None
    if isinstance(ref, (int, np.integer)) and not isinstance(ref, bool) and ref not in classes:
        if not 0 <= int(ref) < len(classes):
            raise ValueError(f"{what} {ref} is not a class index 0..{len(classes) - 1}")
        return int(ref)
    if ref in classes:
        return classes.index(ref)
    raise ValueError(f"{what} {ref!r} is not one of the classes {classes}")


# ----------------------------------------------------------------------------------------------------
# scores


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    """``k x (k+1)`` counts: rows true class, columns predicted class, last column inconclusive."""
    pred = np.where(y_pred == ABSTAIN, k, y_pred)
    return np.bincount(y_true * (k + 1) + pred, minlength=k * (k + 1)).reshape(k, k + 1)


def confusion_matrix(
    y_true: Any, y_pred: Any, classes: Sequence[Any], *, inconclusive_column: bool = True
) -> pd.DataFrame:
    """Confusion matrix as a DataFrame (index: true class, columns: predicted class, plus an
    ``inconclusive`` column when ``inconclusive_column``; counts of dropped inconclusive rows are then
    lost)."""
    classes = list(classes)
    yt = encode_labels(y_true, classes, inconclusive=False, what="y_true")
    yp = encode_labels(y_pred, classes, what="y_pred")
    _same_length(yt, yp)
    cm = confusion_counts(yt, yp, len(classes))
    cols = [str(c) for c in classes] + ["inconclusive"]
    out = pd.DataFrame(cm, index=pd.Index([str(c) for c in classes], name="true"), columns=pd.Index(cols, name="predicted"))
    return out if inconclusive_column else out.iloc[:, :-1]


def _same_length(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"y_true has {a.shape[0]} rows, y_pred {b.shape[0]}")


def abstain_prfs(y_true: np.ndarray, y_pred: np.ndarray, k: int, *, abstain: str = DEFAULT_ABSTAIN,
                 negative: Optional[int] = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The one F1 kernel: per-class precision, recall, F1 and support (arrays of ``k``) of class-index
    predictions (``-1`` inconclusive) against gold class indices, under the ``abstain`` policy, by
    scikit-learn's ``precision_recall_fscore_support`` (``zero_division=0``).

    ``negative``: an inconclusive row predicts class ``negative``; ``exclude``: inconclusive rows are not
    counted; ``wrong``: an inconclusive row is a FN for its class and a FP for every other class (scored
    as multilabel indicators: every class but the true one). No row: zeros.
    """
    from sklearn.metrics import precision_recall_fscore_support

    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    inconclusive = y_pred == ABSTAIN
    if abstain == "negative":
        yt, yp = y_true, np.where(inconclusive, negative, y_pred)
    elif abstain == "exclude":
        yt, yp = y_true[~inconclusive], y_pred[~inconclusive]
    elif abstain == "wrong":
        eye = np.eye(k, dtype=np.int8)
        yt = eye[y_true]
        yp = np.where(inconclusive[:, None], 1 - yt, eye[np.maximum(y_pred, 0)])
    else:
        raise ValueError(f"abstain={abstain!r}; choose one of {', '.join(ABSTAIN_MODES)}")
    if len(yt) == 0:
        zeros = np.zeros(k)
        return zeros, zeros.copy(), zeros.copy(), np.zeros(k, dtype=np.int64)
    return precision_recall_fscore_support(yt, yp, labels=np.arange(k), average=None, zero_division=0)


def classification_scores(
    y_true: Any,
    y_pred: Any,
    classes: Sequence[Any],
    positive: Optional[LabelRef] = None,
    *,
    abstain: str = DEFAULT_ABSTAIN,
    negative: Optional[LabelRef] = None,
) -> dict[str, float]:
    """Per-class and macro precision, recall and F1, support and accuracy of ``y_pred`` against ``y_true``.

    ``classes`` names the classes in pack order (``["good", "noise"]``, ``["benign", "attack"]``);
    labels are indices or names (module docstring). Keys: ``f1_<class>``, ``precision_<class>``,
    ``recall_<class>``, ``support_<class>`` for every class; ``f1_macro``, ``precision_macro``,
    ``recall_macro`` (unweighted means over the classes); ``accuracy``; ``f1`` (the F1 the paper tables
    report, as :func:`flamenco_core.labeling.analysis.lf_f1` defines it: F1 of ``positive`` for binary
    tasks, default the second class; for k > 2 ``f1_macro`` unless ``positive`` is given);
    ``coverage`` (fraction of rows with a conclusive prediction); ``n`` (rows) and ``evaluated`` (rows
    counted, fewer than ``n`` only under ``abstain="exclude"``).

    ``abstain`` and ``negative`` are defined in the module docstring. An empty input gives 0 scores and
    NaN accuracy.
    """
    classes = list(classes)
    k = len(classes)
    if k < 2:
        raise ValueError(f"need at least 2 classes, got {classes}")
    if abstain not in ABSTAIN_MODES:
        raise ValueError(f"abstain={abstain!r}; choose one of {', '.join(ABSTAIN_MODES)}")
    pos = _index(positive, classes, "positive class")
    if pos is None:
        pos = 1 if k == 2 else None
    neg = _index(negative, classes, "negative class")
    if neg is None:
        neg = (1 - pos) if k == 2 else 0
    if k == 2 and neg == pos:
        raise ValueError(f"the negative class for inconclusive rows equals the positive class ({classes[pos]!r})")
    yt = encode_labels(y_true, classes, inconclusive=False, what="y_true")
    yp = encode_labels(y_pred, classes, what="y_pred")
    _same_length(yt, yp)
    n = int(yt.shape[0])
    precision, recall, f1, support = abstain_prfs(yt, yp, k, abstain=abstain, negative=neg)
    conclusive = yp != ABSTAIN
    if abstain == "negative":
        correct, evaluated = int((np.where(conclusive, yp, neg) == yt).sum()), n
    elif abstain == "exclude":
        correct, evaluated = int((yp == yt).sum()), int(conclusive.sum())
    else:
        correct, evaluated = int((yp == yt).sum()), n
    out: dict[str, float] = {}
    for i, c in enumerate(classes):
        out[f"f1_{c}"] = float(f1[i])
    out["f1_macro"] = float(f1.mean())
    for i, c in enumerate(classes):
        out[f"precision_{c}"] = float(precision[i])
    out["precision_macro"] = float(precision.mean())
    for i, c in enumerate(classes):
        out[f"recall_{c}"] = float(recall[i])
    out["recall_macro"] = float(recall.mean())
    for i, c in enumerate(classes):
        out[f"support_{c}"] = int(support[i])
    out["accuracy"] = float(correct / evaluated) if evaluated else math.nan
    out["f1"] = float(f1[pos]) if pos is not None else out["f1_macro"]
    out["coverage"] = float((yp != ABSTAIN).sum() / n) if n else 0.0
    out["n"] = n
    out["evaluated"] = int(evaluated)
    return out


def undefined_f1(y_true: Any, classes: Sequence[Any], positive: Optional[LabelRef] = None) -> Optional[str]:
    """Why the F1 a table reports (binary: of ``positive``, default the second class) is undefined on gold
    labels ``y_true``, or ``None`` when it is defined.

    F1 is the harmonic mean of precision and recall; with no gold row of the positive class its recall
    is 0/0, so F1 has no value: a benign-only test split says nothing about how well attacks are found.
    :func:`classification_scores` and LF F1 keep scikit-learn's ``zero_division=0`` and report 0 there;
    reports call this to show such a score as undefined (JSON ``null``, "n/a") instead of 0. For k > 2
    (macro F1) ``None``: classes without gold rows are one term among several.
    """
    classes = list(classes)
    if len(classes) != 2:
        return None
    pos = _index(positive, classes, "positive class")
    pos = 1 if pos is None else pos
    yt = encode_labels(y_true, classes, inconclusive=False, what="y_true")
    if (yt == pos).any():
        return None
    return f"F1 of {classes[pos]!r} is undefined: no gold row of class {classes[pos]!r} among {len(yt)} rows"


# ----------------------------------------------------------------------------------------------------
# prediction differences


def _as_codes(values: Any, classes: Optional[Sequence[Any]], name: str) -> np.ndarray:
    if classes is not None:
        return encode_labels(values, classes, what=name)
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: predictions must be 1-D, got shape {arr.shape}")
    return arr


def prediction_difference(a: Any, b: Any, classes: Optional[Sequence[Any]] = None) -> float:
    """Fraction of rows where predictions ``a`` and ``b`` differ (NaN for no rows).

    Inconclusive is a value of its own: two inconclusive predictions agree, inconclusive vs a class
    differs (this is what makes a faithful tree's difference to its LFs 0). Give ``classes`` to compare
    predictions written differently (indices vs names); without it values are compared as they are, and
    mixing numbers with strings raises ``TypeError`` rather than reporting everything as different.
    """
    x = _as_codes(a, classes, "a")
    y = _as_codes(b, classes, "b")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"predictions have {x.shape[0]} and {y.shape[0]} rows")
    if classes is None and (np.issubdtype(x.dtype, np.number) != np.issubdtype(y.dtype, np.number)):
        raise TypeError(f"cannot compare predictions of dtypes {x.dtype} and {y.dtype}; pass classes=")
    if x.shape[0] == 0:
        return math.nan
    return float(np.mean(x != y))


def prediction_difference_matrix(
    preds: Mapping[str, Any],
    sample_frac: Optional[float] = 0.2,
    seed: int = 0,
    classes: Optional[Sequence[Any]] = None,
) -> pd.DataFrame:
    """Pairwise :func:`prediction_difference` of named predictions on one random sample of rows.

    ``preds`` maps a name (``"lf"``, ``"classifier"``, ``"tree"``) to predictions for the same rows.
    Issue 5 computes the matrix on a 20% sample of test: ``sample_frac`` of the rows (at least 1) drawn
    once without replacement with ``seed``, the same rows for every pair; ``None`` or ``1.0`` uses every
    row. Returns a symmetric DataFrame (rows and columns in ``preds`` order, diagonal 0);
    ``attrs`` holds ``rows`` (sampled), ``total_rows``, ``sample_frac`` and ``seed``.
    """
    names = list(preds)
    if not names:
        raise ValueError("no predictions to compare")
    arrays = [_as_codes(preds[nm], classes, nm) for nm in names]
    n = arrays[0].shape[0]
    for nm, arr in zip(names, arrays):
        if arr.shape[0] != n:
            raise ValueError(f"predictions {nm!r} have {arr.shape[0]} rows, {names[0]!r} {n}")
    if sample_frac is not None and not (0.0 < sample_frac <= 1.0):
        raise ValueError(f"sample_frac must be in (0, 1], got {sample_frac}")
    if sample_frac is None or sample_frac >= 1.0 or n == 0:
        idx = np.arange(n)
    else:
        size = max(1, int(round(sample_frac * n)))
        idx = np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))
    sampled = [arr[idx] for arr in arrays]
    m = len(names)
    mat = np.zeros((m, m))
    for i in range(m):
        for j in range(i + 1, m):
            mat[i, j] = mat[j, i] = prediction_difference(sampled[i], sampled[j])
    out = pd.DataFrame(mat, index=pd.Index(names), columns=pd.Index(names))
    out.attrs.update({"rows": int(idx.size), "total_rows": int(n), "sample_frac": sample_frac, "seed": seed})
    return out


# ----------------------------------------------------------------------------------------------------
# averaging


def _default_metrics(df: pd.DataFrame, exclude: set) -> list[str]:
    numeric = [c for c in df.columns if c not in exclude and pd.api.types.is_numeric_dtype(df[c].dtype)]
    named = [c for c in numeric if str(c).startswith(METRIC_PREFIXES)]
    return named or numeric


def dataset_scores(
    per_subset: pd.DataFrame,
    by: Sequence[str] = ("src", "dst"),
    metrics: Optional[Sequence[str]] = None,
    group: Optional[str] = "method",
) -> pd.DataFrame:
    """First level of :func:`average_scores`: the unweighted mean of each metric over the subsets of each
    dataset (``by``; with ``group`` also per method). Adds ``n_subsets``."""
    keys = list(by) + ([group] if group and group in per_subset.columns else [])
    missing = [c for c in keys if c not in per_subset.columns]
    if missing:
        raise ValueError(f"per-subset scores lack the columns {missing}")
    metrics = list(metrics) if metrics is not None else _default_metrics(per_subset, set(keys) | {"subset"})
    g = per_subset.groupby(keys, sort=False, dropna=False)
    out = g[metrics].mean()  # NaN (e.g. an F1 undefined on a subset) skipped, as pandas does
    out["n_subsets"] = g.size()
    return out.reset_index()


def average_scores(
    per_subset: pd.DataFrame,
    by: Sequence[str] = ("src", "dst"),
    metrics: Optional[Sequence[str]] = None,
    group: Optional[str] = "method",
) -> pd.DataFrame:
    """Average scores the way the paper does: subset scores are averaged per dataset, then the
    datasets are averaged.

    ``per_subset`` has one row per scored subset (a unimodal subset of an SD pair) with the dataset keys
    ``by`` (default the SD pair ``src``, ``dst``), optionally a ``group`` column (``method``: FLAMENCO or
    a baseline) and metric columns (default: numeric columns named ``f1*``, ``precision*``, ``recall*``,
    ``accuracy``, ``coverage``, ``*_f1``). Both levels are **unweighted** means: a dataset counts once
    whatever its number of subsets, a subset counts once whatever its number of rows, so a large SD pair
    split into three modes does not outweigh a small unimodal one. NaN scores are skipped at both levels.

    Returns one row per ``group`` value (index ``group``; a single row ``"all"`` without it) with the
    metrics, ``n_datasets`` and ``n_subsets``.
    """
    has_group = bool(group) and group in per_subset.columns
    per_dataset = dataset_scores(per_subset, by, metrics, group if has_group else None)
    keys = set(by) | ({group} if has_group else set()) | {"n_subsets"}
    metric_cols = [c for c in per_dataset.columns if c not in keys]
    if has_group:
        g = per_dataset.groupby(group, sort=False, dropna=False)
        out = g[metric_cols].mean()
        out["n_datasets"] = g.size()
        out["n_subsets"] = g["n_subsets"].sum()
    else:
        out = per_dataset[metric_cols].mean().to_frame("all").T
        out["n_datasets"] = len(per_dataset)
        out["n_subsets"] = int(per_dataset["n_subsets"].sum())
        out.index.name = "group"
    out["n_datasets"] = out["n_datasets"].astype(int)
    out["n_subsets"] = out["n_subsets"].astype(int)
    out.attrs["averaging"] = "unweighted mean over subsets per dataset, then unweighted mean over datasets"
    return out
