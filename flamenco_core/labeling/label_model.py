"""Label models: turn a label matrix ``L`` (int8, rows x LFs, ABSTAIN = -1, classes 0..k-1) into
probabilistic labels, behind one scikit-learn-style interface.

Definitions and design notes: ``docs/labeling.md``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import pandas as pd

from flamenco_core.labeling.constants import ABSTAIN

TIE_BREAK_POLICIES = ("abstain", "random")
# Snorkel's probs_to_preds: probabilities closer than this to the row maximum are tied.
TIE_TOL = 1e-5
MIN_SNORKEL_LFS = 3


def check_label_matrix(L: Any, cardinality: Optional[int] = None) -> np.ndarray:
    """Validate a label matrix and return it as a 2-D integer array (no copy if already one).

    Raises ``ValueError`` naming the problem: not 2-D, not integer, or votes outside -1..k-1.
    """
    L = np.asarray(L)
    if L.ndim != 2:
        raise ValueError(f"a label matrix must be 2-D (rows x LFs); got shape {L.shape}")
    if L.size and not np.issubdtype(L.dtype, np.integer):
        if not np.all(np.equal(np.mod(L, 1), 0)):
            raise ValueError(f"a label matrix holds integer votes; got dtype {L.dtype} with fractions")
        L = L.astype(np.int64)
    if L.size:
        lo, hi = int(L.min()), int(L.max())
        if lo < ABSTAIN:
            raise ValueError(f"label matrix holds {lo}; votes are -1 (abstain) or classes 0..k-1")
        if cardinality is not None and hi >= cardinality:
            raise ValueError(f"label matrix holds class {hi} but cardinality is {cardinality} (classes 0..{cardinality - 1})")
    return L


def vote_counts(L: np.ndarray, cardinality: int) -> np.ndarray:
    """``(n, k)`` int32: how many LFs voted for each class on each row."""
    L = np.asarray(L)
    counts = np.empty((L.shape[0], cardinality), dtype=np.int32)
    for c in range(cardinality):  # k is small; each pass is one vectorized reduction over LFs
        counts[:, c] = (L == c).sum(axis=1, dtype=np.int32)
    return counts


def majority_vote(L: np.ndarray, cardinality: int) -> np.ndarray:
    """Majority-vote decision per row (int64): the class with most votes; -1 on ties and where every
    LF abstains. Identical to ``MajorityLabelVoter().predict(L, tie_break_policy="abstain")``."""
    counts = vote_counts(L, cardinality)
    return preds_from_probs(counts.astype(np.float64), "abstain")


def preds_from_probs(
    probs: np.ndarray, tie_break_policy: str = "abstain", tol: float = TIE_TOL, seed: int = 0
) -> np.ndarray:
    """Vectorized ``snorkel.utils.probs_to_preds``: argmax per row; entries within ``tol`` of the row
    maximum are tied and resolved by ``tie_break_policy`` (see the module docstring)."""
    if tie_break_policy not in TIE_BREAK_POLICIES:
        raise ValueError(f"tie_break_policy={tie_break_policy!r}; choose one of {', '.join(TIE_BREAK_POLICIES)}")
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"probs must be (n, k) with k >= 2; got shape {probs.shape}")
    is_max = np.abs(probs - probs.max(axis=1, keepdims=True)) < tol
    n_max = is_max.sum(axis=1)
    preds = is_max.argmax(axis=1).astype(np.int64)
    tied = n_max > 1
    if tied.any():
        if tie_break_policy == "abstain":
            preds[tied] = ABSTAIN
        else:
            rng = np.random.default_rng(seed)
            sub = is_max[tied]
            pick = np.floor(rng.random(sub.shape[0]) * n_max[tied]).astype(np.int64)
            # the pick-th (0-based) tied column of each row: where the running count of maxima reaches pick+1
            preds[tied] = (sub & (np.cumsum(sub, axis=1) == pick[:, None] + 1)).argmax(axis=1)
    return preds


class LabelModelBase:
    """The interface shared by every label model (scikit-learn style: ``fit`` returns ``self``)."""

    name: str = "base"

    def __init__(self, cardinality: int = 2, seed: int = 0) -> None:
        if cardinality < 2:
            raise ValueError(f"cardinality must be >= 2; got {cardinality}")
        self.cardinality = int(cardinality)
        self.seed = int(seed)
        self.fallback_reason: Optional[str] = None
        self.n_lfs_: Optional[int] = None

    def fit(self, L: np.ndarray, Y_dev: Optional[np.ndarray] = None) -> "LabelModelBase":
        raise NotImplementedError

    def predict_proba(self, L: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict(self, L: np.ndarray, tie_break_policy: str = "abstain") -> np.ndarray:
        """Hard labels (int64, -1 for unresolved ties) from :meth:`predict_proba`."""
        return preds_from_probs(self.predict_proba(L), tie_break_policy, seed=self.seed)

    def _check(self, L: np.ndarray, fitting: bool = False) -> np.ndarray:
        L = check_label_matrix(L, self.cardinality)
        if fitting:
            self.n_lfs_ = L.shape[1]
        elif self.n_lfs_ is not None and L.shape[1] != self.n_lfs_:
            raise ValueError(f"{self.name} was fitted on {self.n_lfs_} LFs; got a label matrix with {L.shape[1]}")
        return L

    def describe(self) -> dict:
        """What a run records about the model: its name, why it was chosen, and its parameters."""
        return {"name": self.name, "fallback_reason": self.fallback_reason, "params": self.get_params()}

    def get_params(self) -> dict:
        return {"cardinality": self.cardinality, "seed": self.seed}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"


class MajorityVote(LabelModelBase):
    """Majority vote over non-abstaining LFs (Snorkel's ``MajorityLabelVoter`` decisions).

    ``proba="fraction"`` (default): each class's share of the votes cast on the row, uniform where no LF
    voted. ``proba="snorkel"``: 1 on the class(es) with most votes, split evenly among ties, exactly as
    ``MajorityLabelVoter.predict_proba``. Both give the same ``predict``.
    """

    name = "majority_vote"

    def __init__(self, cardinality: int = 2, seed: int = 0, proba: str = "fraction") -> None:
        super().__init__(cardinality, seed)
        if proba not in ("fraction", "snorkel"):
            raise ValueError(f"proba={proba!r}; choose 'fraction' or 'snorkel'")
        self.proba = proba

    def get_params(self) -> dict:
        return {**super().get_params(), "proba": self.proba}

    def fit(self, L: np.ndarray, Y_dev: Optional[np.ndarray] = None) -> "MajorityVote":
        """Nothing to learn; validates ``L`` and records the number of LFs."""
        self._check(L, fitting=True)
        return self

    def predict_proba(self, L: np.ndarray) -> np.ndarray:
        counts = vote_counts(self._check(L), self.cardinality).astype(np.float64)
        if self.proba == "snorkel":
            counts = (counts == counts.max(axis=1, keepdims=True)).astype(np.float64)
        total = counts.sum(axis=1, keepdims=True)
        # rows without votes: every class is equally likely (Snorkel's voter gives the same)
        return np.divide(counts, total, out=np.full_like(counts, 1.0 / self.cardinality), where=total > 0)

    def predict(self, L: np.ndarray, tie_break_policy: str = "abstain") -> np.ndarray:
        # integer counts decide ties exactly, whatever the probability flavour
        counts = vote_counts(self._check(L), self.cardinality).astype(np.float64)
        return preds_from_probs(counts, tie_break_policy, tol=0.5, seed=self.seed)


_COMPRESSED_CLS = None


@contextmanager
def torch_single_thread():
    """The label model optimizes (m*k) x (m*k) matrices: threads buy nothing there, and on a busy
    machine torch's spinning worker threads made a 1,000-row fit 10-40x slower (seen: 0.4 s vs 15 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _encode_rows(L_shift: np.ndarray, base: int) -> Optional[np.ndarray]:
    """One int64 code per row of a shifted label matrix (values 0..k), or ``None`` if the rows do not
    fit in 62 bits (then callers take a path that does not compress)."""
    n, m = L_shift.shape
    if m * np.log2(base) > 62:
        return None
    codes = np.zeros(n, dtype=np.int64)
    for j in range(m):  # one pass per LF keeps the temporary at n int64s
        codes += L_shift[:, j].astype(np.int64) * (base**j)
    return codes


def _distinct_rows(codes: np.ndarray, base: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows (decoded, U x m, values 0..k), their counts, and each input row's index into them."""
    space = base**m
    if space <= 1 << 22:
        # a dense count table is O(n) where sorting is O(n log n)
        counts = np.bincount(codes, minlength=space)
        uniq = np.flatnonzero(counts)
        counts = counts[uniq]
        lut = np.empty(space, dtype=np.int64)
        lut[uniq] = np.arange(uniq.size)
        inverse = lut[codes]
    else:
        uniq, inverse, counts = np.unique(codes, return_inverse=True, return_counts=True)
    digits = (uniq[:, None] // (base ** np.arange(m, dtype=np.int64))[None, :]) % base
    return digits, counts, inverse


def weighted_unary_overlap(model, patterns: np.ndarray, weights: np.ndarray) -> None:
    """Set Snorkel's unary-clique bookkeeping (``c_data``, ``d``) and overlap matrix ``O`` on a LabelModel
    from distinct vote patterns (0 = abstain, 1..k = class + 1) weighted by how many rows hold each.
    Integer counts summed in float64 are exact, so ``O`` is bit-identical to Snorkel's ``L_aug.T @ L_aug / n``
    on the full matrix (``model.n`` must already be the number of rows, not of patterns)."""
    import torch
    from snorkel.labeling.model.label_model import _CliqueData

    k = model.cardinality
    model.c_data = {
        i: _CliqueData(start_index=i * k, end_index=(i + 1) * k,
                       max_cliques={j for j in model.c_tree.nodes() if i in model.c_tree.nodes[j]["members"]})
        for i in range(model.m)
    }
    L_ind = np.zeros((patterns.shape[0], model.m * k))
    for y in range(1, k + 1):  # k columns per LF, not per row: vectorised over rows
        L_ind[:, (y - 1)::k] = patterns == y
    model.d = L_ind.shape[1]
    O = (L_ind.T * np.asarray(weights, dtype=np.float64)) @ L_ind / model.n
    model.O = torch.from_numpy(O).float().to(model.config.device)


def compressed_label_model_cls():
    """Snorkel's LabelModel with ``_generate_O`` computed from distinct rows (built lazily so importing
    this module does not import torch)."""
    global _COMPRESSED_CLS
    if _COMPRESSED_CLS is not None:
        return _COMPRESSED_CLS
    from snorkel.labeling.model.label_model import LabelModel

    class _CompressedLabelModel(LabelModel):
        def _generate_O(self, L: np.ndarray, higher_order: bool = False) -> None:
            codes = None if higher_order else _encode_rows(L, self.cardinality + 1)
            if codes is None:
                return super()._generate_O(L, higher_order=higher_order)
            uniq, counts, _ = _distinct_rows(codes, self.cardinality + 1, self.m)
            weighted_unary_overlap(self, uniq, counts)

    _COMPRESSED_CLS = _CompressedLabelModel
    return _COMPRESSED_CLS


class SnorkelLabelModel(LabelModelBase):
    """Snorkel's ``LabelModel`` (conditionally independent LFs, matrix-completion fit).

    Parameters are Snorkel's: ``class_balance`` (a prior per class, ``None`` = uniform, or estimated
    from ``Y_dev`` passed to :meth:`fit`), ``n_epochs``, ``lr``, ``l2``, ``optimizer``, ``prec_init``;
    ``seed`` is passed to Snorkel's ``fit`` (which seeds Python, numpy and torch with it), so the same
    ``L`` and seed give the same model. ``fit_kwargs`` go to Snorkel's ``fit`` unchanged.
    Needs at least 3 LFs (use :func:`make_label_model` for a fallback).
    """

    name = "snorkel_label_model"

    def __init__(
        self,
        cardinality: int = 2,
        seed: int = 0,
        class_balance: Optional[Sequence[float]] = None,
        n_epochs: int = 100,
        lr: float = 0.01,
        l2: float = 0.0,
        optimizer: str = "sgd",
        prec_init: float = 0.7,
        **fit_kwargs: Any,
    ) -> None:
        super().__init__(cardinality, seed)
        if class_balance is not None:
            class_balance = [float(x) for x in class_balance]
            if len(class_balance) != cardinality:
                raise ValueError(f"class_balance has {len(class_balance)} entries; cardinality is {cardinality}")
            if min(class_balance) <= 0 or abs(sum(class_balance) - 1.0) > 1e-6:
                raise ValueError(f"class_balance must be positive and sum to 1; got {class_balance}")
        self.class_balance = class_balance
        self.n_epochs = int(n_epochs)
        self.lr = float(lr)
        self.l2 = float(l2)
        self.optimizer = optimizer
        self.prec_init = prec_init
        self.fit_kwargs = fit_kwargs
        self.model_ = None

    def get_params(self) -> dict:
        return {
            **super().get_params(),
            "class_balance": self.class_balance,
            "n_epochs": self.n_epochs,
            "lr": self.lr,
            "l2": self.l2,
            "optimizer": self.optimizer,
            "prec_init": self.prec_init,
            **self.fit_kwargs,
        }

    def fit(self, L: np.ndarray, Y_dev: Optional[np.ndarray] = None) -> "SnorkelLabelModel":
        """Fit Snorkel's LabelModel on ``L`` (rows where every LF abstains carry no signal but are kept, as
        Snorkel does; filter them from end-model training with :func:`filter_unlabeled`)."""
        L = self._check(L, fitting=True)
        if L.shape[1] < MIN_SNORKEL_LFS:
            raise ValueError(
                f"Snorkel's LabelModel needs at least {MIN_SNORKEL_LFS} LFs; got {L.shape[1]} "
                "(use make_label_model for a majority-vote fallback)"
            )
        if L.shape[0] == 0:
            raise ValueError("cannot fit a label model on an empty label matrix")
        return self.fit_snorkel(compressed_label_model_cls()(cardinality=self.cardinality, verbose=False), L, Y_dev)

    def fit_snorkel(self, model: Any, L: np.ndarray, Y_dev: Optional[np.ndarray] = None) -> "SnorkelLabelModel":
        """Fit the Snorkel ``LabelModel`` instance ``model`` on ``L`` with this estimator's settings and keep
        it as ``model_``; the one place that calls Snorkel's ``fit`` (also for pattern-weighted fits)."""
        with torch_single_thread():
            model.fit(
                L,
                Y_dev=None if Y_dev is None else np.asarray(Y_dev),
                class_balance=self.class_balance,
                progress_bar=False,
                n_epochs=self.n_epochs,
                lr=self.lr,
                l2=self.l2,
                optimizer=self.optimizer,
                prec_init=self.prec_init,
                seed=self.seed,
                **self.fit_kwargs,
            )
        self.model_ = model
        return self

    def _fitted(self):
        if self.model_ is None:
            raise RuntimeError("SnorkelLabelModel is not fitted; call fit(L) first")
        return self.model_

    def predict_proba(self, L: np.ndarray) -> np.ndarray:
        """``P(Y | votes)``: Snorkel's formula (abstains contribute nothing), vectorized per LF."""
        probs, inverse = self._distinct_proba(L)
        return probs if inverse is None else probs[inverse]

    def predict(self, L: np.ndarray, tie_break_policy: str = "abstain") -> np.ndarray:
        probs, inverse = self._distinct_proba(L)
        if inverse is None or tie_break_policy != "abstain":
            full = probs if inverse is None else probs[inverse]
            return preds_from_probs(full, tie_break_policy, seed=self.seed)
        # equal vote patterns get equal probabilities, so decide once per distinct row
        return preds_from_probs(probs, "abstain")[inverse]

    def _distinct_proba(self, L: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
        """Probabilities per distinct row of ``L`` and each row's index into them (``None``: one per row)."""
        model = self._fitted()
        L = self._check(L)
        k = self.cardinality
        codes = _encode_rows(L + 1, k + 1)
        if codes is None:
            return self._proba_rows(model, L), None
        # a matrix of 10 LFs has at most 3^10 distinct rows: score those once, then gather
        uniq, _, inverse = _distinct_rows(codes, k + 1, L.shape[1])
        return self._proba_rows(model, uniq - 1), inverse

    def _proba_rows(self, model, L: np.ndarray) -> np.ndarray:
        k = self.cardinality
        # float32 logs as Snorkel takes them, accumulated in float64
        log_mu = np.log(model.mu.detach().cpu().numpy())
        logits = np.empty((L.shape[0], k), dtype=np.float64)
        logits[:] = np.log(np.asarray(model.p, dtype=np.float64))
        for j in range(L.shape[1]):
            # int64: with int8 votes, j*k + vote overflows once m*k passes 127 (18 LFs x 10 classes)
            votes = L[:, j].astype(np.int64)
            voted = votes != ABSTAIN
            rows = log_mu[j * k + np.where(voted, votes, 0)]
            logits += np.where(voted[:, None], rows, 0.0)
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def weights(self) -> np.ndarray:
        """Learned LF accuracies (Snorkel's ``get_weights``), one per LF."""
        return self._fitted().get_weights()


LABEL_MODEL_KINDS = ("snorkel", "majority")


def make_label_model(
    kind: str = "snorkel", n_lfs: Optional[int] = None, cardinality: int = 2, seed: int = 0, **kwargs: Any
) -> LabelModelBase:
    """The label model to use for ``n_lfs`` LFs.

    ``kind="snorkel"`` gives :class:`SnorkelLabelModel` (``kwargs`` are its parameters) when there are at
    least 3 LFs; with 2 it falls back to :class:`MajorityVote` (``name == "majority_vote"``) and with 1 to
    that LF's own votes (``name == "single_lf"``), setting ``fallback_reason``. ``kind="majority"`` is
    majority vote without fallback (``kwargs``: ``proba``).
    """
    if kind not in LABEL_MODEL_KINDS:
        raise ValueError(f"unknown label model {kind!r}; choose one of {', '.join(LABEL_MODEL_KINDS)}")
    if n_lfs is not None and n_lfs < 1:
        raise ValueError(f"a label model needs at least one LF; got n_lfs={n_lfs}")
    if kind == "majority":
        return MajorityVote(cardinality, seed, **kwargs)
    if n_lfs is not None and n_lfs < MIN_SNORKEL_LFS:
        mv = MajorityVote(cardinality, seed, proba=kwargs.pop("proba", "fraction"))
        if n_lfs == 1:
            mv.name = "single_lf"
            mv.fallback_reason = "Snorkel's LabelModel needs at least 3 LFs; with 1 LF the labels are its own votes"
        else:
            mv.fallback_reason = f"Snorkel's LabelModel needs at least 3 LFs; got {n_lfs}, so majority vote"
        return mv
    return SnorkelLabelModel(cardinality, seed, **kwargs)


def labeled_mask(L: np.ndarray) -> np.ndarray:
    """True on rows where at least one LF voted."""
    return (np.asarray(L) != ABSTAIN).any(axis=1)


class Filtered(NamedTuple):
    X: Any
    probs: np.ndarray
    dropped: int


def filter_unlabeled(X: Any, probs: np.ndarray, L: np.ndarray, enabled: bool = True) -> Filtered:
    """Drop the rows every LF abstained on (they hold no training signal, only the prior).

    ``X`` is a DataFrame (index kept) or an array-like with rows first. Returns ``(X, probs, dropped)``;
    with ``enabled=False`` nothing is dropped and ``dropped`` is 0.
    """
    L = np.asarray(L)
    probs = np.asarray(probs)
    if not (len(X) == probs.shape[0] == L.shape[0]):
        raise ValueError(f"row counts differ: X {len(X)}, probs {probs.shape[0]}, L {L.shape[0]}")
    if not enabled:
        return Filtered(X, probs, 0)
    keep = labeled_mask(L)
    dropped = int(keep.size - keep.sum())
    if dropped == 0:
        return Filtered(X, probs, 0)
    X_kept = X.loc[keep] if isinstance(X, (pd.DataFrame, pd.Series)) else np.asarray(X)[keep]
    return Filtered(X_kept, probs[keep], dropped)
