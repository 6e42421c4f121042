"""Snuba's synthesizer: candidate heuristics, their abstain band, and decision-tree paths.

Only decision trees become LF specs; logistic regression and kNN candidates are kept for comparison.
See docs/autolf.md (the loop, steps 1-2, and "Logistic regression and kNN")."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Optional, Sequence

import numpy as np

from flamenco_core.labeling.constants import ABSTAIN, LABEL_DTYPE

MODEL_KINDS = ("tree", "logreg", "knn")
#: Kinds whose heuristics can be written as LF specs.
SPEC_KINDS = ("tree",)
F1_AVERAGES = ("macro", "positive", "weighted", "micro")


# ---------------------------------------------------------------------------------------------- votes, F1, beta


def band_votes(p: np.ndarray, beta: float, b: float = 0.5, pos: int = 1, neg: int = 0) -> np.ndarray:
    """Votes from probabilities ``p`` of the positive class: ``pos`` where ``p >= b + beta``, ``neg`` where
    ``p <= b - beta``, :data:`ABSTAIN` in between (int8)."""
    p = np.asarray(p, dtype=np.float64)
    out = np.full(p.shape, ABSTAIN, dtype=LABEL_DTYPE)
    out[p <= b - beta] = neg
    out[p >= b + beta] = pos  # beta > 0 keeps the two sets disjoint
    return out


def f1_abstain_as_error(
    y: np.ndarray, votes: np.ndarray, average: str = "macro", pos: int = 1, cardinality: int = 2
) -> np.ndarray:
    """F1 of ``votes`` (int, ABSTAIN = -1) against ``y``, abstains counted as errors.

    An abstain is no prediction for any class, so it lowers the recall of its row's true class and
    nothing else (as ``sklearn.metrics.f1_score(y, votes, labels=range(k))`` treats an unknown label).
    ``votes`` may be 2-D (rows x settings): one F1 per column. ``average``: ``"macro"`` (mean over
    classes), ``"positive"`` (the ``pos`` class only), ``"weighted"`` (by support) or ``"micro"``.
    """
    if average not in F1_AVERAGES:
        raise ValueError(f"average={average!r}; choose one of {', '.join(F1_AVERAGES)}")
    # Not the shared kernel (evaluation.metrics.abstain_prfs): Snuba scores thousands of candidate columns
    # per iteration, and one vectorized reduction per class over all of them is what keeps the search fast;
    # tests/test_autolf.py checks it equals scikit-learn's f1_score.
    y = np.asarray(y)
    v = np.asarray(votes)
    one = v.ndim == 1
    if one:
        v = v[:, None]
    n = y.shape[0]
    per_class = []
    tps, pps, sups = [], [], []
    for c in range(cardinality):  # k is 2 here; each pass is one vectorized reduction over rows
        hit = v == c
        truth = (y == c)[:, None]
        tp = (hit & truth).sum(axis=0).astype(np.float64)
        pp = hit.sum(axis=0).astype(np.float64)
        sup = float(truth.sum())
        denom = pp + sup
        per_class.append(np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0))
        tps.append(tp), pps.append(pp), sups.append(sup)
    if average == "macro":
        out = np.mean(per_class, axis=0)
    elif average == "positive":
        out = per_class[pos]
    elif average == "weighted":
        out = sum(f * s for f, s in zip(per_class, sups)) / max(n, 1)
    else:
        tp, pp = sum(tps), sum(pps)
        denom = pp + n
        out = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    return float(out[0]) if one else out


def select_beta(
    p: np.ndarray,
    y: np.ndarray,
    betas: Sequence[float],
    b: float = 0.5,
    average: str = "macro",
    pos: int = 1,
    neg: int = 0,
) -> tuple[float, float, np.ndarray]:
    """Snuba's beta optimizer: the band in ``betas`` whose votes have the highest F1 on ``(p, y)``.

    Abstains count as errors (:func:`f1_abstain_as_error`). Ties go to the first (narrowest) band, which
    votes on the most rows. Returns ``(beta, f1, f1 per beta)``.
    """
    betas = np.asarray(betas, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)[:, None]
    votes = np.full((p.shape[0], betas.size), ABSTAIN, dtype=LABEL_DTYPE)
    votes[np.broadcast_to(p <= b - betas, votes.shape)] = neg
    votes[np.broadcast_to(p >= b + betas, votes.shape)] = pos
    f1 = f1_abstain_as_error(y, votes, average=average, pos=pos)
    i = int(np.argmax(f1))
    return float(betas[i]), float(f1[i]), f1


def jaccard_distance(candidate: np.ndarray, committed: np.ndarray) -> np.ndarray:
    """``1 - |A & B| / |A | B|`` between each candidate's coverage ``A`` and the committed coverage ``B``.

    ``candidate`` is a boolean vector (one candidate) or matrix (rows x candidates): True where the
    candidate votes. ``committed`` is a boolean vector: True where any committed heuristic votes. When
    both cover nothing the distance is 0: a candidate that votes nowhere adds no diversity.
    """
    a = np.asarray(candidate, dtype=bool)
    bvec = np.asarray(committed, dtype=bool)
    one = a.ndim == 1
    if one:
        a = a[:, None]
    inter = (a & bvec[:, None]).sum(axis=0)
    union = (a | bvec[:, None]).sum(axis=0)
    d = 1.0 - np.divide(inter, union, out=np.ones(inter.shape, dtype=np.float64), where=union > 0)
    return float(d[0]) if one else d


# ---------------------------------------------------------------------------------------------- trees


@dataclass(frozen=True)
class Leaf:
    """A root-to-leaf path of a fitted tree: ``conditions`` (feature, ``"<="``/``">"``, raw threshold),
    the leaf's probability ``p`` of the positive class and the number of fit rows it holds."""

    conditions: tuple[tuple[str, str, float], ...]
    p: float
    n: int


def _simplify(conds: list[tuple[str, str, float]]) -> tuple[tuple[str, str, float], ...]:
    # a deeper split on the same feature and direction makes the shallower one redundant: keep the tightest
    tight: dict[tuple[str, str], float] = {}
    for f, op, t in conds:
        key = (f, op)
        if key not in tight:
            tight[key] = t
        else:
            tight[key] = min(tight[key], t) if op == "<=" else max(tight[key], t)
    return tuple((f, op, t) for (f, op), t in tight.items())


def tree_leaves(tree: Any, features: Sequence[str], pos: int) -> list[Leaf]:
    """The leaves of a fitted ``DecisionTreeClassifier`` as :class:`Leaf` paths (left child: ``<=``).

    The tree has at most ``2**depth`` leaves, so walking it in Python costs nothing next to the fit.
    """
    t = tree.tree_
    classes = list(tree.classes_)
    col = classes.index(pos) if pos in classes else None
    out: list[Leaf] = []
    stack: list[tuple[int, list[tuple[str, str, float]]]] = [(0, [])]
    while stack:
        node, conds = stack.pop()
        left, right = t.children_left[node], t.children_right[node]
        if left == right:  # a leaf
            value = t.value[node, 0]
            total = float(value.sum())
            p = float(value[col] / total) if (col is not None and total > 0) else 0.0
            out.append(Leaf(_simplify(conds), p, int(t.n_node_samples[node])))
            continue
        f, thr = features[t.feature[node]], float(t.threshold[node])
        stack.append((right, conds + [(f, ">", thr)]))
        stack.append((left, conds + [(f, "<=", thr)]))
    return out


# ---------------------------------------------------------------------------------------------- synthesis


@dataclass
class Candidate:
    """One synthesized heuristic: a model on ``features`` with its probabilities on the labeled rows."""

    kind: str
    features: tuple[str, ...]
    model: Any
    p_labeled: np.ndarray
    leaves: Optional[list[Leaf]] = None
    beta: float = float("nan")
    f1: float = float("nan")
    extra: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kind}[{', '.join(self.features)}]"

    def proba(self, X: np.ndarray, pos: int) -> np.ndarray:
        """P(positive) for rows ``X`` (columns in ``features`` order)."""
        classes = list(self.model.classes_)
        if pos not in classes:
            return np.zeros(X.shape[0])
        return self.model.predict_proba(X)[:, classes.index(pos)]


def _make_model(kind: str, depth: int, n_fit: int, seed: int, class_weight: Optional[str], min_samples_leaf: int,
                knn_neighbors: int):
    if kind == "tree":
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(max_depth=depth, random_state=seed, class_weight=class_weight,
                                      min_samples_leaf=min_samples_leaf)
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression

        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, class_weight=class_weight,
                                                                  random_state=seed))
    if kind == "knn":
        from sklearn.neighbors import KNeighborsClassifier

        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=max(1, min(knn_neighbors, n_fit))))
    raise ValueError(f"unknown candidate model {kind!r}; choose from {', '.join(MODEL_KINDS)}")


def synthesize(
    X_labeled: np.ndarray,
    y_labeled: np.ndarray,
    fit_rows: np.ndarray,
    features: Sequence[str],
    max_cardinality: int,
    models: Sequence[str],
    pos: int,
    seed: int = 0,
    class_weight: Optional[str] = None,
    min_samples_leaf: int = 1,
    knn_neighbors: int = 5,
) -> list[Candidate]:
    """One candidate per model kind and feature subset of size 1..``max_cardinality``.

    Models are fitted on ``X_labeled[fit_rows]`` (Snuba's feedback set) and give probabilities on every
    labeled row, so the abstain band is chosen on the whole labeled set. Trees get depth = subset size
    (a stump for one feature). Candidates come out in a fixed order (kind, then subset) so that ties in
    the score are broken the same way every run.
    """
    X_fit, y_fit = X_labeled[fit_rows], y_labeled[fit_rows]
    out: list[Candidate] = []
    for kind in models:
        for size in range(1, max_cardinality + 1):
            for combo in combinations(range(len(features)), size):
                cols = list(combo)
                model = _make_model(kind, size, len(fit_rows), seed, class_weight, min_samples_leaf, knn_neighbors)
                model.fit(X_fit[:, cols], y_fit)
                names = tuple(features[c] for c in cols)
                cand = Candidate(kind, names, model, np.empty(0))
                cand.p_labeled = cand.proba(X_labeled[:, cols], pos)
                cand.extra["columns"] = cols
                if kind == "tree":
                    cand.leaves = tree_leaves(model, names, pos)
                out.append(cand)
    return out
