"""LF analysis: how much each labeling function (LF) covers, where LFs overlap and conflict, and, given
gold labels, how often they are right and their **LF F1**.

Definitions and design notes: ``docs/labeling.md``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flamenco_core.labeling.label_model import ABSTAIN, check_label_matrix, majority_vote

ABSTAIN_MODES = ("negative", "exclude", "wrong")
DEFAULT_ABSTAIN = "negative"
AVERAGES = ("binary", "macro")

LabelRef = Union[int, str]


# ----------------------------------------------------------------------------------------------------
# inputs


def _names(L: np.ndarray, names: Optional[Sequence[str]]) -> list:
    if names is None:
        return [f"lf_{j}" for j in range(L.shape[1])]
    names = [str(n) for n in names]
    if len(names) != L.shape[1]:
        raise ValueError(f"{len(names)} LF names for a label matrix with {L.shape[1]} columns")
    return names


def _cardinality(L: np.ndarray, Y: Optional[np.ndarray], classes: Optional[Sequence[str]]) -> int:
    if classes is not None:
        return len(classes)
    hi = int(L.max()) if L.size else 0
    if Y is not None and Y.size:
        hi = max(hi, int(Y.max()))
    return max(2, hi + 1)


def _check_gold(Y: Any, n: int, k: int) -> np.ndarray:
    Y = np.asarray(Y)
    if Y.ndim == 2 and Y.shape[1] == 1:
        Y = Y[:, 0]
    if Y.ndim != 1 or Y.shape[0] != n:
        raise ValueError(f"gold labels must be one per row ({n}); got shape {Y.shape}")
    if Y.size and not np.issubdtype(Y.dtype, np.integer):
        raise ValueError(f"gold labels must be class indices (ints); got dtype {Y.dtype}")
    if Y.size and (Y.min() < 0 or Y.max() >= k):
        bad = Y[(Y < 0) | (Y >= k)][0]
        raise ValueError(f"gold label {bad} is not a class index 0..{k - 1} (unlabeled rows must be removed first)")
    return Y.astype(np.int64, copy=False)


def _label_index(ref: Optional[LabelRef], classes: Optional[Sequence[str]], k: int, what: str) -> Optional[int]:
    if ref is None:
        return None
    if isinstance(ref, str):
        if classes is None or ref not in list(classes):
            raise ValueError(f"{what} {ref!r} is not one of the classes {list(classes or [])}")
        return list(classes).index(ref)
    if not 0 <= int(ref) < k:
        raise ValueError(f"{what} {ref} is not a class index 0..{k - 1}")
    return int(ref)


# ----------------------------------------------------------------------------------------------------
# Snorkel's statistics


def _row_stats(L: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if L.shape[1] == 0:
        none = np.zeros(L.shape[0], dtype=bool)
        return none, none, none
    voted = L != ABSTAIN
    n_votes = voted.sum(axis=1)
    hi = L.max(axis=1)  # ABSTAIN is the smallest value, so this is the largest vote where there is one
    lo = np.where(voted, L, np.iinfo(L.dtype).max).min(axis=1)
    covered = n_votes > 0
    overlapped = n_votes > 1
    conflicted = covered & (lo != hi)
    return covered, overlapped, conflicted


def label_summary(L: np.ndarray) -> dict:
    """Matrix-level aggregates: rows, LFs, and the fraction of rows covered by at least one LF, by two
    or more (overlap), and with disagreeing votes (conflict); Snorkel's ``label_coverage``,
    ``label_overlap``, ``label_conflict``."""
    L = check_label_matrix(L)
    n = L.shape[0]
    covered, overlapped, conflicted = _row_stats(L)
    frac = (lambda x: float(x.sum() / n)) if n else (lambda x: 0.0)
    return {
        "rows": int(n),
        "lfs": int(L.shape[1]),
        "coverage": frac(covered),
        "overlap": frac(overlapped),
        "conflict": frac(conflicted),
    }


def lf_summary(
    L: np.ndarray,
    names: Optional[Sequence[str]] = None,
    Y: Optional[np.ndarray] = None,
    classes: Optional[Sequence[str]] = None,
    *,
    pos_label: LabelRef = 1,
    abstain: str = DEFAULT_ABSTAIN,
    negative_label: Optional[LabelRef] = None,
    average: Optional[str] = None,
    est_weights: Optional[np.ndarray] = None,
) -> pd.DataFrame:
    """Per-LF statistics, one row per LF (index: LF names), with Snorkel's ``lf_summary`` columns
    ``j, Polarity, Coverage, Overlaps, Conflicts`` and, given ``Y``, ``Correct, Incorrect, Emp. Acc.``
    plus ``F1`` (see the module docstring for its definition and the keyword arguments).
    ``est_weights`` adds Snorkel's ``Learned Weight`` column. Polarity holds class indices; renderers
    show class names when ``classes`` is given (kept in ``attrs["classes"]``).
    """
    L = check_label_matrix(L)
    names = _names(L, names)
    n, m = L.shape
    k = _cardinality(L, None if Y is None else np.asarray(Y), classes)
    check_label_matrix(L, k)
    voted = L != ABSTAIN
    covered, overlapped, conflicted = _row_stats(L)
    denom = n if n else 1
    n_voted = voted.sum(axis=0)
    values = np.unique(L[voted]) if voted.any() else np.array([], dtype=np.int64)
    present = np.stack([(L == v).any(axis=0) for v in values], axis=1) if values.size else np.zeros((m, 0), bool)
    d: dict[str, Any] = {
        "j": list(range(m)),
        "Polarity": [[int(v) for v in values[present[j]]] for j in range(m)],
        "Coverage": n_voted / denom,
        "Overlaps": (voted & overlapped[:, None]).sum(axis=0) / denom,
        "Conflicts": (voted & conflicted[:, None]).sum(axis=0) / denom,
    }
    if Y is not None:
        Y = _check_gold(Y, n, k)
        right = L == Y[:, None]
        correct = right.sum(axis=0)
        incorrect = n_voted - correct
        # Snorkel's formula, 0.5 * ((correct - incorrect) / voted + 1), kept so values match to the bit
        with np.errstate(divide="ignore", invalid="ignore"):
            acc = np.nan_to_num(0.5 * ((correct - incorrect) / n_voted + 1))
        d["Correct"] = correct
        d["Incorrect"] = incorrect
        d["Emp. Acc."] = acc
        f1 = lf_f1(L, Y, names, classes=classes, pos_label=pos_label, abstain=abstain,
                   negative_label=negative_label, average=average)
        d["F1"] = f1["F1"].to_numpy()
    if est_weights is not None:
        d["Learned Weight"] = np.asarray(est_weights)
    out = pd.DataFrame(d, index=names)
    out.attrs["classes"] = list(classes) if classes is not None else None
    if Y is not None:
        out.attrs["f1_definition"] = f1.attrs["f1_definition"]
    return out


# ----------------------------------------------------------------------------------------------------
# F1


def f1_definition(k: int, classes, pos: int, neg: Optional[int], abstain: str, average: str) -> dict:
    """The choices behind an F1 figure (abstain policy, average, classes), recorded with it."""
    name = (lambda i: classes[i] if classes is not None else i)
    return {
        "abstain": abstain,
        "average": average,
        "positive_class": name(pos) if average == "binary" else None,
        "negative_class": name(neg) if abstain == "negative" else None,
        "combination_decision": "majority vote of the LFs; ties and all-abstain rows are inconclusive",
        "zero_division": 0.0,
    }


def resolve_f1_args(k, classes, pos_label, abstain, negative_label, average):
    """Validate the F1 arguments; ``(positive index, negative index, average)``."""
    if abstain not in ABSTAIN_MODES:
        raise ValueError(f"abstain={abstain!r}; choose one of {', '.join(ABSTAIN_MODES)}")
    average = average or ("binary" if k == 2 else "macro")
    if average not in AVERAGES:
        raise ValueError(f"average={average!r}; choose one of {', '.join(AVERAGES)}")
    pos = _label_index(pos_label, classes, k, "positive class")
    neg = _label_index(negative_label, classes, k, "negative class")
    if neg is None:
        neg = (1 - pos) if k == 2 else 0
    if abstain == "negative" and average == "binary" and neg == pos:
        raise ValueError(f"the negative class for abstains equals the positive class ({pos})")
    return pos, neg, average


def _score(P: np.ndarray, Y: np.ndarray, k: int, pos: int, neg: int, abstain: str, average: str) -> pd.DataFrame:
    """Precision, recall, F1 of each column of the decision matrix ``P`` (rows x scorers, -1 =
    inconclusive) against ``Y``: the one F1 kernel
    (:func:`flamenco_core.evaluation.metrics.abstain_prfs`) per column, averaged over the scored classes."""
    from flamenco_core.evaluation.metrics import abstain_prfs

    n = P.shape[0]
    conclusive = P != ABSTAIN
    counted = conclusive if abstain == "exclude" else np.ones_like(conclusive)
    labels = [pos] if average == "binary" else list(range(k))
    prf = np.array([[m[labels].mean() for m in abstain_prfs(Y, P[:, j], k, abstain=abstain, negative=neg)[:3]]
                    for j in range(P.shape[1])], dtype=np.float64).reshape(-1, 3)
    denom = n if n else 1
    return pd.DataFrame(
        {
            "Coverage": conclusive.sum(axis=0) / denom,
            "Evaluated": counted.sum(axis=0),
            "Precision": prf[:, 0],
            "Recall": prf[:, 1],
            "F1": prf[:, 2],
        }
    )


def lf_f1(
    L: np.ndarray,
    Y: np.ndarray,
    names: Optional[Sequence[str]] = None,
    *,
    classes: Optional[Sequence[str]] = None,
    pos_label: LabelRef = 1,
    abstain: str = DEFAULT_ABSTAIN,
    negative_label: Optional[LabelRef] = None,
    average: Optional[str] = None,
) -> pd.DataFrame:
    """LF F1 of each LF on gold labels ``Y`` (index: LF names; columns Coverage, Evaluated, Precision,
    Recall, F1). ``abstain``, ``pos_label``, ``negative_label`` and ``average`` are defined in the
    module docstring; the choices made are in ``attrs["f1_definition"]``."""
    L, Y, names, k, pos, neg, average = _gold_args(L, Y, names, classes, pos_label, abstain, negative_label, average)
    out = _score(L, Y, k, pos, neg, abstain, average)
    out.index = names
    return _described(out, k, classes, pos, neg, abstain, average)


def _gold_args(L, Y, names, classes, pos_label, abstain, negative_label, average):
    """The checked label matrix, gold labels and LF names, the cardinality and the resolved F1 arguments."""
    L = check_label_matrix(L)
    names = _names(L, names)
    k = _cardinality(L, np.asarray(Y), classes)
    check_label_matrix(L, k)
    Y = _check_gold(Y, L.shape[0], k)
    pos, neg, average = resolve_f1_args(k, classes, pos_label, abstain, negative_label, average)
    return L, Y, names, k, pos, neg, average


def _described(out: pd.DataFrame, k, classes, pos, neg, abstain, average) -> pd.DataFrame:
    """``out`` with the F1 definition and the class names in its ``attrs``."""
    out.attrs["f1_definition"] = f1_definition(k, classes, pos, neg, abstain, average)
    out.attrs["classes"] = list(classes) if classes is not None else None
    return out


def _combo_columns(combo: Sequence[LabelRef] | LabelRef, names: list) -> list[int]:
    if isinstance(combo, (int, np.integer, str)):
        combo = (combo,)
    cols = []
    for ref in combo:
        if isinstance(ref, str):
            if ref not in names:
                raise ValueError(f"unknown LF {ref!r} in combination; LFs are {names}")
            cols.append(names.index(ref))
        else:
            if not 0 <= int(ref) < len(names):
                raise ValueError(f"LF index {ref} out of range 0..{len(names) - 1}")
            cols.append(int(ref))
    if not cols:
        raise ValueError("a combination needs at least one LF")
    if len(set(cols)) != len(cols):
        raise ValueError(f"combination {list(combo)} names an LF twice")
    return cols


def combination_f1(
    L: np.ndarray,
    Y: np.ndarray,
    combos: Sequence[Sequence[LabelRef] | LabelRef],
    names: Optional[Sequence[str]] = None,
    *,
    classes: Optional[Sequence[str]] = None,
    pos_label: LabelRef = 1,
    abstain: str = DEFAULT_ABSTAIN,
    negative_label: Optional[LabelRef] = None,
    average: Optional[str] = None,
) -> pd.DataFrame:
    """LF F1 of combinations of LFs (each a tuple of LF indices or names): the decision is the majority
    vote of the combination's LFs, ties inconclusive. Index: the LF names joined by " + "; columns LFs
    (count), Coverage, Ties, Evaluated, Precision, Recall, F1."""
    L, Y, names, k, pos, neg, average = _gold_args(L, Y, names, classes, pos_label, abstain, negative_label, average)
    col_sets = [_combo_columns(c, names) for c in combos]
    n = L.shape[0]
    P = np.empty((n, len(col_sets)), dtype=np.int64)
    ties = np.zeros(len(col_sets))
    for i, cols in enumerate(col_sets):  # one vectorized vote per combination
        sub = L[:, cols]
        P[:, i] = majority_vote(sub, k)
        ties[i] = ((P[:, i] == ABSTAIN) & (sub != ABSTAIN).any(axis=1)).sum() / (n if n else 1)
    out = _score(P, Y, k, pos, neg, abstain, average)
    out.insert(0, "LFs", [len(c) for c in col_sets])
    out.insert(2, "Ties", ties)
    out.index = [" + ".join(names[j] for j in cols) for cols in col_sets]
    return _described(out, k, classes, pos, neg, abstain, average)


# ----------------------------------------------------------------------------------------------------
# output


def _cell(value: Any, column: str, classes: Optional[Sequence[str]], floatfmt: str) -> str:
    if column == "Polarity" and isinstance(value, (list, tuple)):
        return ", ".join(str(classes[v]) if classes is not None and 0 <= v < len(classes) else str(v) for v in value)
    if isinstance(value, (float, np.floating)):
        return format(float(value), floatfmt)
    return str(value)


def to_csv(df: pd.DataFrame, path: Union[str, Path], index_label: str = "lf") -> Path:
    """Write an analysis table as CSV (Polarity as class names joined by ", " when known)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = df.copy()
    if "Polarity" in out.columns:
        out["Polarity"] = [_cell(v, "Polarity", df.attrs.get("classes"), "") for v in out["Polarity"]]
    out.to_csv(path, index_label=index_label)
    return path


def display_frame(df: pd.DataFrame, floatfmt: str = ".4f", index_name: str = "LF") -> pd.DataFrame:
    """An analysis table ready for a table writer: Polarity as class names (when known), the index the
    LF names as text under ``index_name``; the numbers stay numbers, for the writer to format."""
    out = df.copy()
    if "Polarity" in out.columns:
        out["Polarity"] = [_cell(v, "Polarity", df.attrs.get("classes"), floatfmt) for v in out["Polarity"]]
    out.index = out.index.map(str).rename(index_name)
    return out


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4f", index_name: str = "LF") -> str:
    """An analysis table as a GitHub-flavoured Markdown table (floats with ``floatfmt``, Polarity as class
    names), through the project's one Markdown writer."""
    from flamenco_core.evaluation.tables import to_markdown as markdown_table

    return markdown_table(display_frame(df, floatfmt, index_name), floatfmt, headings=None, na="nan", pad=False)
