"""Label conventions: Snorkel's class indices and ``ABSTAIN`` inside, the paper's ``{1, -1, 0}`` votes at
the edge (binary tasks only). The mapping: docs/labeling.md, section ``constants.py``."""

from __future__ import annotations

import numpy as np

#: The vote of an LF that does not label a data point (Snorkel's convention).
ABSTAIN: int = -1

#: The dtype of every label matrix: rows x LFs, values ``-1 .. k-1`` (k <= 127).
LABEL_DTYPE = np.int8

#: The paper's abstain vote.
PAPER_ABSTAIN: int = 0


def to_paper_votes(L: np.ndarray, positive_index: int = 1) -> np.ndarray:
    """Map a binary Snorkel-convention matrix (``-1, 0, 1``) to the paper's ``{1, -1, 0}``.

    ``positive_index`` is the class index that the paper writes as ``+1`` (default: the second class,
    the event of interest). Values other than ``-1, 0, 1`` raise ``ValueError``.
    """
    if positive_index not in (0, 1):
        raise ValueError("positive_index must be 0 or 1 (the paper's convention is binary)")
    L = np.asarray(L)
    if L.size and (L.min() < ABSTAIN or L.max() > 1):
        raise ValueError("the paper's {1, -1, 0} form exists only for binary label matrices")
    out = np.zeros(L.shape, dtype=LABEL_DTYPE)
    out[L == positive_index] = 1
    out[L == 1 - positive_index] = -1
    return out


def from_paper_votes(P: np.ndarray, positive_index: int = 1) -> np.ndarray:
    """Inverse of :func:`to_paper_votes`: paper votes ``{1, -1, 0}`` to Snorkel ints."""
    if positive_index not in (0, 1):
        raise ValueError("positive_index must be 0 or 1 (the paper's convention is binary)")
    P = np.asarray(P)
    if P.size and not np.isin(P, (-1, 0, 1)).all():
        raise ValueError("paper votes must be 1, -1 or 0")
    out = np.full(P.shape, ABSTAIN, dtype=LABEL_DTYPE)
    out[P == 1] = positive_index
    out[P == -1] = 1 - positive_index
    return out
