"""A registry of label models behind one interface, for any number of classes k >= 2 and LFs m >= 1.

Build one with :func:`make`; :data:`KINDS` lists them (``majority``, ``snorkel``, crowd-kit's
``dawid_skene``, ``one_coin_ds``, ``mmsr``). How crowd-kit's models are adapted and when a model falls
back: docs/labeling.md, section ``label_models.py``."""

from __future__ import annotations

import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import pandas as pd

from .constants import ABSTAIN
from .label_model import (
    MIN_SNORKEL_LFS,
    LabelModelBase,
    MajorityVote,
    check_label_matrix,
    make_label_model,
)

#: Probabilities below this are clipped before logs (crowd-kit's own epsilon).
EPS = 1e-10
#: Covered rows a crowd-kit model fits on at most (a seeded sample beyond; see the module docstring).
DEFAULT_MAX_FIT_ROWS = 200_000


@dataclass(frozen=True)
class ModelInfo:
    """One registered label model: its ``kind`` (the config / CLI name), what it is, where it comes from,
    and how many LFs it needs before it falls back (``min_lfs``)."""

    kind: str
    summary: str
    source: str
    min_lfs: int


#: The registry, in the order tables list the models.
REGISTRY: dict[str, ModelInfo] = {
    "majority": ModelInfo("majority", "majority vote of the LFs that vote; ties inconclusive", "flamenco", 1),
    "snorkel": ModelInfo("snorkel", "Snorkel's LabelModel (matrix completion over LF agreements)", "snorkel",
                         MIN_SNORKEL_LFS),
    "dawid_skene": ModelInfo("dawid_skene", "Dawid-Skene EM: a confusion matrix per LF", "crowd-kit", 2),
    "one_coin_ds": ModelInfo("one_coin_ds", "one-coin Dawid-Skene EM: one accuracy per LF", "crowd-kit", 2),
    "mmsr": ModelInfo("mmsr", "M-MSR: LF skills from the covariance of their votes, then a weighted vote",
                      "crowd-kit", 2),
}
KINDS: tuple[str, ...] = tuple(REGISTRY)


@contextmanager
def quiet_crowdkit():
    """crowd-kit 1.4.2 calls pandas APIs that pandas 3 deprecates (``copy=``, ``inplace=``): hundreds of
    warnings per fit that say nothing about the data."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"crowdkit\.")
        yield


def crowd_frame(L: np.ndarray) -> pd.DataFrame:
    """crowd-kit's long format: one row per vote (abstains dropped), ``task`` = row, ``worker`` = LF."""
    rows, cols = np.nonzero(L != ABSTAIN)
    return pd.DataFrame({"task": rows.astype(np.int64), "worker": cols.astype(np.int64),
                         "label": L[rows, cols].astype(np.int64)})


class CrowdKitLabelModel(LabelModelBase):
    """A crowd-kit aggregator as a label model (see the module docstring for the adaptation).

    ``kind`` is ``dawid_skene``, ``one_coin_ds`` or ``mmsr``; ``n_iter`` and ``tol`` go to crowd-kit
    (MMSR's defaults are its own); ``max_fit_rows`` bounds the covered rows fitted. After :meth:`fit`,
    ``priors_`` (k,) and ``errors_`` (m, k, k: LF, vote, true class) hold the DS parameters, or ``skills_``
    (m,) MMSR's; ``fit_rows_`` the rows fitted.
    """

    _NAMES = {"dawid_skene": "dawid_skene", "one_coin_ds": "one_coin_dawid_skene", "mmsr": "mmsr"}

    def __init__(self, kind: str = "dawid_skene", cardinality: int = 2, seed: int = 0, n_iter: Optional[int] = None,
                 tol: Optional[float] = None, max_fit_rows: int = DEFAULT_MAX_FIT_ROWS) -> None:
        super().__init__(cardinality, seed)
        if kind not in self._NAMES:
            raise ValueError(f"unknown crowd-kit model {kind!r}; choose one of {', '.join(self._NAMES)}")
        self.kind = kind
        self.name = self._NAMES[kind]
        self.requested = self.name
        self.n_iter = n_iter
        self.tol = tol
        self.max_fit_rows = int(max_fit_rows)
        self.fallback_: Optional[LabelModelBase] = None
        self.priors_: Optional[np.ndarray] = None
        self.errors_: Optional[np.ndarray] = None
        self.skills_: Optional[np.ndarray] = None
        self.fit_rows_: int = 0

    def get_params(self) -> dict:
        return {**super().get_params(), "kind": self.kind, "n_iter": self.n_iter, "tol": self.tol,
                "max_fit_rows": self.max_fit_rows}

    def describe(self) -> dict:
        out = super().describe()
        out.update({"requested": self.requested, "fit_rows": self.fit_rows_})
        return out

    # ------------------------------------------------------------------ fitting

    def fit(self, L: np.ndarray, Y_dev: Optional[np.ndarray] = None) -> "CrowdKitLabelModel":
        """Fit on ``L``'s votes (``Y_dev`` is not used: crowd-kit's models here are unsupervised)."""
        L = self._check(L, fitting=True)
        m, k = L.shape[1], self.cardinality
        # a refit starts over: the model and reason of an earlier fit's fallback do not carry over
        self.name, self.fallback_reason = self.requested, None
        self.fallback_ = None
        self.priors_ = self.errors_ = self.skills_ = None
        if m == 1:
            return self._fall_back(L, "single_lf", f"{self.requested} needs at least 2 LFs to estimate their "
                                   "accuracies; with 1 LF the labels are its own votes")
        covered = np.flatnonzero((L != ABSTAIN).any(axis=1))
        if covered.size == 0:
            return self._fall_back(L, "majority_vote", f"no LF votes on any row: {self.requested} has nothing to "
                                   "fit, so majority vote (uniform probabilities)")
        if np.unique(L[covered][L[covered] != ABSTAIN]).size < 2:
            # crowd-kit's models weigh LFs by how they disagree; MMSR divides by (labels - 1)
            return self._fall_back(L, "majority_vote", f"every vote is for one class: {self.requested} has no "
                                   "disagreement to weigh the LFs by, so majority vote")
        if covered.size > self.max_fit_rows:
            rng = np.random.default_rng(self.seed)
            covered = np.sort(rng.choice(covered, size=self.max_fit_rows, replace=False))
        fit_L = L[covered]
        self.fit_rows_ = int(covered.size)
        kind = self.kind
        if kind == "dawid_skene":
            one_class = [j for j in range(m) if np.unique(fit_L[:, j][fit_L[:, j] != ABSTAIN]).size <= 1]
            if one_class:
                # see the module docstring: a one-class worker's DS confusion matrix is flat
                kind = "one_coin_ds"
                self.name = self._NAMES[kind]
                self.fallback_reason = (
                    f"Dawid-Skene learns nothing from an LF that votes one class ({len(one_class)} of {m} LFs do): "
                    "its confusion matrix is 1 whatever the true class once abstains are dropped; so one-coin "
                    "Dawid-Skene (one accuracy per LF)")
        data = crowd_frame(fit_L)
        if kind == "mmsr":
            self._fit_mmsr(data, m)
            if not (self.skills_ > 0).any():
                self.skills_ = None
                return self._fall_back(L, "majority_vote", "M-MSR estimated no LF with a positive skill (LFs that "
                                       "vote one class each rarely agree with each other, and MMSR's skills come from "
                                       "agreements), so majority vote")
        else:
            self._fit_ds(data, kind, m, k)
        return self

    def _fall_back(self, L: np.ndarray, name: str, reason: str) -> "CrowdKitLabelModel":
        mv = MajorityVote(self.cardinality, self.seed)
        mv.fit(L)
        self.fallback_ = mv
        self.name = name
        self.fallback_reason = reason
        return self

    def _kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.n_iter is not None:
            out["n_iter"] = int(self.n_iter)
        if self.tol is not None:
            out["tol"] = float(self.tol)
        return out

    def _fit_ds(self, data: pd.DataFrame, kind: str, m: int, k: int) -> None:
        from crowdkit.aggregation import DawidSkene, OneCoinDawidSkene

        cls = DawidSkene if kind == "dawid_skene" else OneCoinDawidSkene
        model = cls(**{"n_iter": 100, **self._kwargs()})
        with quiet_crowdkit():
            model.fit(data)
        priors = np.full(k, EPS)
        for label, p in model.priors_.items():
            priors[int(label)] = max(float(p), EPS)
        self.priors_ = priors / priors.sum()
        # errors_[worker, vote, true]: a vote the LF never gave on the fitting rows stays at EPS
        errors = np.full((m, k, k), EPS)
        frame = model.errors_
        true_cols = [int(c) for c in frame.columns]
        values = frame.to_numpy(dtype=np.float64)
        for (worker, label), row in zip(frame.index, values):
            errors[int(worker), int(label), true_cols] = np.maximum(row, EPS)
        self.errors_ = errors

    def _fit_mmsr(self, data: pd.DataFrame, m: int) -> None:
        from crowdkit.aggregation import MMSR

        kwargs = self._kwargs()
        model = MMSR(random_state=self.seed, **kwargs)
        with quiet_crowdkit():
            model.fit(data)
        skills = np.zeros(m)
        for worker, s in model.skills_.items():
            skills[int(worker)] = float(s)
        # a negative skill would turn a vote into a vote against its class; read it as no information
        self.skills_ = np.clip(np.nan_to_num(skills, nan=0.0), 0.0, None)

    # ------------------------------------------------------------------ predicting

    def predict_proba(self, L: np.ndarray) -> np.ndarray:
        """``(n, k)`` class probabilities of every row of ``L`` from the fitted parameters."""
        if self.fallback_ is not None:
            return self.fallback_.predict_proba(self._check(L))
        if self.errors_ is None and self.skills_ is None:
            raise RuntimeError(f"{self.name} is not fitted; call fit(L) first")
        L = self._check(L)
        n, k = L.shape[0], self.cardinality
        if self.skills_ is not None:
            scores = np.zeros((n, k))
            for j in range(L.shape[1]):  # one vectorized pass per LF
                v = L[:, j]
                voted = v != ABSTAIN
                np.add.at(scores, (np.flatnonzero(voted), v[voted]), self.skills_[j])
            total = scores.sum(axis=1, keepdims=True)
            return np.divide(scores, total, out=np.full_like(scores, 1.0 / k), where=total > 0)
        logits = np.tile(np.log(self.priors_), (n, 1))
        log_e = np.log(self.errors_)
        for j in range(L.shape[1]):
            v = L[:, j]
            voted = v != ABSTAIN
            logits[voted] += log_e[j, v[voted], :]
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def predict(self, L: np.ndarray, tie_break_policy: str = "abstain") -> np.ndarray:
        """Hard labels; ``-1`` on ties and on rows no LF voted on (their probabilities are only the prior,
        and a label model labels the rows its LFs vote on, as Snorkel's with a uniform prior does)."""
        L = self._check(L)
        pred = super().predict(L, tie_break_policy)
        pred[~(L != ABSTAIN).any(axis=1)] = ABSTAIN
        return pred

    def weights(self) -> np.ndarray:
        """Per-LF accuracy the model learned: ``E_j[c_j, c_j]`` averaged over the classes the LF votes
        (DS, one-coin DS) or the skill (MMSR); 1 for the single-LF fallback."""
        if self.skills_ is not None:
            return self.skills_.copy()
        if self.errors_ is None:
            return np.ones(self.n_lfs_ or 0)
        diag = np.diagonal(self.errors_, axis1=1, axis2=2)
        return np.where(diag > EPS, diag, np.nan).mean(axis=1, where=diag > EPS)


def make(kind: str = "snorkel", n_lfs: Optional[int] = None, cardinality: int = 2, seed: int = 0,
         **params: Any) -> LabelModelBase:
    """The label model ``kind`` (one of :data:`KINDS`) for ``n_lfs`` LFs and ``cardinality`` classes.

    ``params`` are the model's own (Snorkel's ``n_epochs``, ``lr``...; crowd-kit's ``n_iter``, ``tol``,
    ``max_fit_rows``; majority vote's ``proba``). Fallbacks (module docstring) are decided here when they
    depend on ``n_lfs`` (Snorkel) and in ``fit`` when they depend on the votes (crowd-kit).
    """
    if kind not in REGISTRY:
        raise ValueError(f"unknown label model {kind!r}; choose one of {', '.join(KINDS)}")
    if n_lfs is not None and n_lfs < 1:
        raise ValueError(f"a label model needs at least one LF; got n_lfs={n_lfs}")
    if kind in ("majority", "snorkel"):
        return make_label_model(kind, n_lfs=n_lfs, cardinality=cardinality, seed=seed, **params)
    return CrowdKitLabelModel(kind, cardinality=cardinality, seed=seed, **params)


@dataclass
class FitResult:
    """A fitted model of :func:`fit_all` and what it cost: ``seconds`` of ``fit``, or the ``error``
    that stopped it (then ``model`` is ``None``)."""

    kind: str
    model: Optional[LabelModelBase]
    seconds: float
    error: Optional[str] = None

    def describe(self) -> dict[str, Any]:
        """The record of the fit: requested kind, model used, fallback, parameters, seconds, error."""
        base = self.model.describe() if self.model is not None else {"name": None, "fallback_reason": None, "params": {}}
        return {"kind": self.kind, **base, "fit_seconds": round(self.seconds, 4), "error": self.error}


def fit_all(L: np.ndarray, cardinality: int, kinds: Optional[list[str]] = None, seed: int = 0,
            params: Optional[dict[str, dict[str, Any]]] = None) -> list[FitResult]:
    """Fit each label model of ``kinds`` (default: all of :data:`KINDS`) on ``L``, timing each fit.

    ``params`` maps a kind to its parameters. A model whose fit raises is recorded with the error; the
    others still run.
    """
    L = check_label_matrix(L, cardinality)
    out = []
    for kind in kinds or list(KINDS):
        model = make(kind, n_lfs=L.shape[1], cardinality=cardinality, seed=seed, **(params or {}).get(kind, {}))
        t0 = time.perf_counter()
        try:
            model.fit(L)
        except Exception as exc:  # one model's failure is its record, never the comparison's
            out.append(FitResult(kind, None, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"))
            continue
        out.append(FitResult(kind, model, time.perf_counter() - t0))
    return out


__all__ = ["CrowdKitLabelModel", "DEFAULT_MAX_FIT_ROWS", "FitResult", "KINDS", "ModelInfo", "REGISTRY", "crowd_frame", "fit_all",
           "make", "quiet_crowdkit"]
