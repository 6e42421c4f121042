"""What a Snuba run returns (:class:`AutoLFResult`, :class:`Heuristic`) and the label-model input layout."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import pandas as pd

from flamenco_core.labeling import LFPack, apply_lfs
from flamenco_core.labeling.constants import ABSTAIN, LABEL_DTYPE
from flamenco_core.labeling.label_model import LabelModelBase

from .candidates import Candidate, band_votes
from .config import SnubaConfig
from .features import numeric_matrix

@dataclass
class Heuristic:
    """A committed heuristic: where it came from, how it scored, and the columns it owns."""

    name: str
    kind: str
    features: tuple[str, ...]
    round: int
    beta: float
    f1: float
    diversity: float
    score: float
    specs: list[str]  # names of its LF specs in the pack (empty for comparison-only kinds)
    drift_rows: dict[str, int] = field(default_factory=dict)
    candidate: Optional[Candidate] = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record (the candidate model left out)."""
        return {
            "name": self.name, "kind": self.kind, "features": list(self.features), "round": self.round,
            "beta": self.beta, "f1": self.f1, "diversity": self.diversity, "score": self.score,
            "specs": list(self.specs), "drift_rows": dict(self.drift_rows),
        }


@dataclass
class AutoLFResult:
    """What :func:`generate_lfs` produced.

    * ``pack``: the committed tree heuristics as declarative LF specs (classes as configured).
    * ``rounds``: one record per round: ``round``, ``n_fit_points`` (labeled rows the candidates were fitted
      on), ``candidates_evaluated``, ``committed`` (list of ``{name, kind, features, f1, diversity, score,
      beta, specs}``), ``skipped_constant``/``skipped_trivial`` (candidates not committable), ``gamma`` and
      ``n_feedback_points`` (the feedback set it computed for the next round), ``label_model`` (``{name,
      chosen, labeled_f1}``: the model chosen and the labeled F1 of every option tried).
    * ``label_model``: combines the committed heuristics' votes, in the layout of :meth:`label_matrix`;
      Snorkel's and majority vote are fitted on the training votes, :class:`~.labelnb.LabeledNaiveBayes` on
      the labeled rows' votes. ``train_probs``: its ``(n_unlabeled, 2)`` probabilities for the training rows.
    * ``heuristics``: the committed heuristics in commit order (their specs, F1, diversity, score, beta).
    * ``L_train`` / ``L_labeled``: the pack's votes (``apply_lfs`` order) on the unlabeled and labeled rows
      (thresholds resolved on the unlabeled data); ``L_lm_train``: the label model's input.
    * ``stop_reason``: one of :data:`STOP_REASONS`; ``drift``: per spec, training rows where the
      percentile threshold votes differently from the tree's raw cut point (0 when exact).
    * ``labeled_index``: index of the labeled rows used (rows with a missing label or feature dropped,
      counted in ``dropped_labeled``), in the row order of ``L_labeled``.
    """

    pack: LFPack
    rounds: list[dict[str, Any]]
    label_model: LabelModelBase
    train_probs: np.ndarray
    stop_reason: str
    heuristics: list[Heuristic]
    features: list[str]
    config: SnubaConfig
    L_train: np.ndarray
    L_labeled: np.ndarray
    L_lm_train: np.ndarray
    drift: dict[str, int]
    n_labeled: int
    n_unlabeled: int
    dropped_labeled: dict[str, int]
    labeled_index: Optional[pd.Index] = field(repr=False, default=None)

    def label_matrix(self, df: pd.DataFrame, stats: Any = None) -> np.ndarray:
        """The label model's input for ``df``: the pack applied (thresholds from ``df`` unless ``stats``),
        merged per heuristic when ``lm_columns == "heuristic"``, plus comparison-only heuristics."""
        L = apply_lfs(self.pack, df, stats=stats)
        return lm_matrix(L, self.heuristics, self.pack, self.config, df)

    def predict_proba(self, df: pd.DataFrame, stats: Any = None) -> np.ndarray:
        """Label-model probabilities ``(n, 2)`` for ``df`` (classes in ``pack.classes`` order)."""
        return self.label_model.predict_proba(self.label_matrix(df, stats))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record for run tracking (no arrays)."""
        return {
            "config": self.config.model_dump(mode="json"),
            "features": list(self.features),
            "pack": self.pack.name,
            "pack_hash": self.pack.content_hash,
            "n_specs": len(self.pack.lfs),
            "heuristics": [h.to_dict() for h in self.heuristics],
            "rounds": self.rounds,
            "stop_reason": self.stop_reason,
            "label_model": self.label_model.describe(),
            "drift": dict(self.drift),
            "n_labeled": self.n_labeled,
            "n_unlabeled": self.n_unlabeled,
            "dropped_labeled": dict(self.dropped_labeled),
        }


def merge_votes(L: np.ndarray) -> np.ndarray:
    """One column from mutually exclusive columns: the vote of whichever voted, ABSTAIN where none did."""
    if L.shape[1] == 1:
        return L[:, 0].copy()
    voted = L != ABSTAIN
    first = voted.argmax(axis=1)
    out = L[np.arange(L.shape[0]), first].astype(LABEL_DTYPE)
    out[~voted.any(axis=1)] = ABSTAIN
    return out


def lm_matrix(L_pack: np.ndarray, heuristics: list[Heuristic], pack: LFPack, config: SnubaConfig,
              df: pd.DataFrame) -> np.ndarray:
    """The label model's layout from the pack's votes on ``df`` (see ``lm_columns``)."""
    index = {n: i for i, n in enumerate(pack.lf_names)}
    cols: list[np.ndarray] = []
    for h in heuristics:
        if h.specs:
            sub = L_pack[:, [index[s] for s in h.specs]]
            if config.lm_columns == "heuristic":
                cols.append(merge_votes(sub))
            else:
                cols.extend(sub.T)
        else:
            cols.append(model_votes(h.candidate, df, config, config.pos))
    return np.column_stack(cols).astype(LABEL_DTYPE)


def model_votes(cand: Candidate, df: pd.DataFrame, config: SnubaConfig, pos: int) -> np.ndarray:
    """Votes of a comparison-only (non-spec) heuristic on ``df``; rows with a missing feature abstain."""
    X = numeric_matrix(df, cand.features, "data")
    ok = np.isfinite(X).all(axis=1)
    out = np.full(len(df), ABSTAIN, dtype=LABEL_DTYPE)
    if ok.any():
        out[ok] = band_votes(cand.proba(X[ok], pos), cand.beta, config.b, pos, 1 - pos)
    return out
