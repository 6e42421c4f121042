"""A label model estimated from the labeled rows: naive Bayes over the heuristics' votes.

Snorkel's LabelModel and Flamenco's other label models learn how accurate each LF is without labels. Snuba
has a labeled set, and with the few, high-coverage heuristics it commits, the unsupervised fit is fragile:
Snorkel needs at least three LFs, and majority vote over two heuristics that disagree is a tie (probability
0.5) on exactly the rows that matter. This model makes the same assumption as Snorkel's (heuristics are
conditionally independent given the class) but reads the class-conditional vote rates off the labeled
rows, with add-one smoothing, so it works for any number of heuristics. :func:`generate_lfs` offers it
among the label models that ``label_model="auto"`` chooses from.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from flamenco_core.labeling.constants import ABSTAIN
from flamenco_core.labeling.label_model import LabelModelBase


class LabeledNaiveBayes(LabelModelBase):
    """``P(Y | votes)`` with ``P(vote_j = v | Y = c)`` and ``P(Y = c)`` counted on labeled rows.

    ``fit(L, Y_dev)`` needs ``Y_dev``: the labels (class indices) of the rows of ``L``. ``alpha`` is the
    additive smoothing of every count (1 = Laplace), which keeps a vote never seen with a class from
    ruling that class out. ``columns`` restricts the model to those heuristics (the others are read but
    ignored), so "trust only the best heuristic" is a label model too.
    """

    name = "labeled_naive_bayes"

    def __init__(self, cardinality: int = 2, seed: int = 0, alpha: float = 1.0,
                 columns: Optional[Sequence[int]] = None) -> None:
        super().__init__(cardinality, seed)
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0; got {alpha}")
        self.alpha = float(alpha)
        self.columns = None if columns is None else [int(c) for c in columns]
        self.log_prior_: Optional[np.ndarray] = None
        self.log_cond_: Optional[np.ndarray] = None  # (m, k+1 vote values incl. abstain, k classes)

    def get_params(self) -> dict:
        return {**super().get_params(), "alpha": self.alpha, "columns": self.columns}

    def _cols(self, L: np.ndarray) -> np.ndarray:
        return L if self.columns is None else L[:, self.columns]

    def fit(self, L: np.ndarray, Y_dev: Optional[np.ndarray] = None) -> "LabeledNaiveBayes":
        """Count vote rates per class on the labeled rows ``L`` with labels ``Y_dev``."""
        L = self._check(L, fitting=True)
        if Y_dev is None:
            raise ValueError("LabeledNaiveBayes is fitted on labeled rows: pass their labels as Y_dev")
        y = np.asarray(Y_dev)
        if y.shape != (L.shape[0],):
            raise ValueError(f"Y_dev has shape {y.shape}; expected ({L.shape[0]},)")
        L = self._cols(L)
        k, a = self.cardinality, self.alpha
        onehot = np.stack([y == c for c in range(k)], axis=1).astype(np.float64)  # (n, k)
        class_n = onehot.sum(axis=0)
        self.log_prior_ = np.log((class_n + a) / (class_n.sum() + k * a))
        cond = np.empty((L.shape[1], k + 1, k))
        for v in range(-1, k):  # vote values: abstain, then each class
            hits = (L == v).astype(np.float64)  # (n, m)
            cond[:, v + 1, :] = hits.T @ onehot
        cond = (cond + a) / (class_n[None, None, :] + (k + 1) * a)
        self.log_cond_ = np.log(cond)
        return self

    def predict_proba(self, L: np.ndarray) -> np.ndarray:
        if self.log_cond_ is None or self.log_prior_ is None:
            raise RuntimeError("LabeledNaiveBayes is not fitted; call fit(L, Y_dev) first")
        L = self._cols(self._check(L))
        logits = np.tile(self.log_prior_, (L.shape[0], 1))
        for j in range(L.shape[1]):  # one vectorized gather per heuristic
            logits += self.log_cond_[j, L[:, j] - ABSTAIN, :]
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits
