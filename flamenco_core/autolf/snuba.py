"""Snuba-style automatic LF generation (Varma & Ré, VLDB 2018), emitting declarative LF specs: the loop.

Definitions and design notes: ``docs/autolf.md``. The settings, features, result types, spec emission and
verifier live in the sibling modules; their public names are re-exported here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from flamenco_core.labeling import LFPack, LFSpec, apply_lfs
from flamenco_core.labeling.constants import ABSTAIN, LABEL_DTYPE
from flamenco_core.labeling.label_model import LabelModelBase
from flamenco_core.labeling.stats import DataStatistics

from .candidates import (
    SPEC_KINDS,
    Candidate,
    band_votes,
    f1_abstain_as_error,
    jaccard_distance,
    select_beta,
    synthesize,
)
from .config import STOP_REASONS, SnubaConfig
from .features import (
    DEFAULT_WINDOW_STATS,
    add_window_features,
    default_features,
    feature_sets,
    numeric_matrix,
    window_columns,
)
from .result import AutoLFResult, Heuristic, lm_matrix, merge_votes, model_votes
from .specs import (
    MAX_NAME,
    ThresholdCache,
    build_pack,
    name_part,
    raw_path_mask,
    short_number,
    spec_name,
    tree_specs,
)
from .verify import fit_label_model

__all__ = [
    "DEFAULT_WINDOW_STATS",
    "MAX_NAME",
    "STOP_REASONS",
    "AutoLFResult",
    "Heuristic",
    "SnubaConfig",
    "ThresholdCache",
    "add_window_features",
    "build_pack",
    "default_features",
    "feature_sets",
    "fit_label_model",
    "generate_lfs",
    "lm_matrix",
    "merge_votes",
    "model_votes",
    "name_part",
    "numeric_matrix",
    "raw_path_mask",
    "short_number",
    "spec_name",
    "tree_specs",
    "window_columns",
]


def _encode_labels(values: pd.Series, classes: Sequence[str]) -> np.ndarray:
    """Class indices (int64, -1 for a missing label); ValueError for values that are not classes."""
    s = pd.Series(values)
    missing = s.isna().to_numpy()
    out = np.full(len(s), -1, dtype=np.int64)
    present = s[~missing]
    if pd.api.types.is_numeric_dtype(present.dtype) and not pd.api.types.is_bool_dtype(present.dtype):
        vals = present.to_numpy(dtype=np.float64)
        ok = np.isin(vals, np.arange(len(classes)))
        if not ok.all():
            raise ValueError(f"label values {sorted(set(vals[~ok].tolist()))[:5]} are not class indices 0..{len(classes) - 1} "
                             f"of classes {list(classes)}")
        out[~missing] = vals.astype(np.int64)
        return out
    text = present.astype(str)
    unknown = sorted(set(text) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not among the classes {list(classes)}")
    lookup = {c: i for i, c in enumerate(classes)}
    out[~missing] = text.map(lookup).to_numpy(dtype=np.int64)
    return out


@dataclass
class _Materialized:
    cand: Candidate
    specs: list[LFSpec]  # placeholder names until committed
    leaf_conds: list[tuple]  # raw conditions per spec, for the drift check
    leaf_p: list[float]
    train_cols: np.ndarray  # (n_train, n_specs) votes, or (n_train, 1) for model heuristics
    lab_cols: np.ndarray
    f1: float  # F1 of the committed form's votes on the labeled set
    signature: tuple


def _is_constant(m: "_Materialized", train_cols: dict[str, np.ndarray]) -> bool:
    """True when ``m`` votes a single class on every training row where its features are finite."""
    votes = m.train_cols
    voted = votes[votes != ABSTAIN]
    if voted.size == 0:
        return False  # silent: dropped later as adding no coverage
    if np.unique(voted).size > 1:
        return False
    finite = np.isfinite(np.column_stack([train_cols[f] for f in m.cand.features])).all(axis=1)
    return bool((votes != ABSTAIN).any(axis=1)[finite].all())


# ---------------------------------------------------------------------------------------------- main loop


def generate_lfs(
    labeled_df: pd.DataFrame,
    unlabeled_df: pd.DataFrame,
    features: Optional[Sequence[str]] = None,
    label_col: str = "label",
    config: Optional[SnubaConfig] = None,
) -> AutoLFResult:
    """Generate LFs Snuba-style from a small labeled set and emit them as a declarative :class:`LFPack`.

    ``labeled_df`` holds the labeled rows (``label_col``: class names from ``config.classes`` or their
    indices; rows with a missing label or a missing feature value are dropped and counted in
    ``result.dropped_labeled``); ``unlabeled_df`` is the training data the LFs label and whose statistics
    the thresholds are percentiles of. ``features`` default to :func:`default_features` (``rtt_ms`` plus
    any window-feature columns present in both frames). Raises ``ValueError`` naming the problem when the
    labeled set holds fewer than two classes, a feature is missing or not numeric, a label is not a class,
    or no heuristic can vote. See the module docstring for the loop.
    """
    return _Snuba(labeled_df, unlabeled_df, features, label_col, config or SnubaConfig()).run()


class _Snuba:
    """State of one run: the data, the committed heuristics and their votes."""

    def __init__(self, labeled_df, unlabeled_df, features, label_col, config: SnubaConfig) -> None:
        self.config = config
        self.classes = list(config.classes)
        self.pos, self.neg = config.pos, 1 - config.pos
        features = list(features) if features is not None else default_features(labeled_df, unlabeled_df)
        if not features:
            raise ValueError("no candidate features given")
        if len(set(features)) != len(features):
            raise ValueError(f"features repeat: {features}")
        if label_col not in labeled_df.columns:
            raise ValueError(f"the labeled frame has no label column {label_col!r}")
        if len(unlabeled_df) == 0:
            raise ValueError("the unlabeled (training) frame is empty: there is nothing to label")
        self.features = features

        y_all = _encode_labels(labeled_df[label_col], self.classes)
        X_all = numeric_matrix(labeled_df, features, "labeled")
        numeric_matrix(unlabeled_df, features, "unlabeled")
        finite = np.isfinite(X_all).all(axis=1)
        keep = (y_all >= 0) & finite
        self.dropped = {"missing_label": int((y_all < 0).sum()),
                        "missing_feature": int(((y_all >= 0) & ~finite).sum())}
        self.lab_df = labeled_df.iloc[np.flatnonzero(keep)]
        self.X_lab, self.y = X_all[keep], y_all[keep]
        counts = np.bincount(self.y, minlength=2)
        if (counts > 0).sum() < 2:
            present = [f"{self.classes[i]}: {int(c)} rows" for i, c in enumerate(counts) if c > 0] or ["no labeled rows"]
            raise ValueError(
                f"the labeled set holds one class only ({', '.join(present)}); Snuba needs labeled examples of "
                f"both classes {self.classes} to learn thresholds that separate them"
            )
        if config.class_balance == "labeled":
            share = np.clip(counts / counts.sum(), 0.01, 0.99)
            self.class_balance: Optional[list[float]] = [float(x) for x in share / share.sum()]
        elif config.class_balance is None:
            self.class_balance = None
        else:
            self.class_balance = [float(x) for x in config.class_balance]
        # the F1 of the best constant heuristic (one class on every row): what a heuristic must beat to count
        self.trivial_f1 = max(f1_abstain_as_error(self.y, np.full(self.y.shape, c), config.f1_average, self.pos)
                              for c in range(2))

        self.unlabeled_df = unlabeled_df
        self.n_train = len(unlabeled_df)
        self.thresholds = ThresholdCache(unlabeled_df, config)
        # one statistics source for every application to the training data: each percentile computed once
        self.train_stats = DataStatistics(unlabeled_df)
        self.train_cols = {f: unlabeled_df[f].to_numpy(dtype=np.float64, na_value=np.nan) for f in features}
        self._X_train: Optional[np.ndarray] = None

        self.committed: list[Heuristic] = []
        self.mats: list[_Materialized] = []  # parallel to committed
        self.specs: list[LFSpec] = []
        self.taken: set[str] = set()
        self.signatures: set[tuple] = set()
        self.covered = np.zeros(self.n_train, dtype=bool)
        self.drift: dict[str, int] = {}
        self.label_model: Optional[LabelModelBase] = None

    # ------------------------------------------------------------------------------------ the loop

    def run(self) -> AutoLFResult:
        config = self.config
        rounds: list[dict[str, Any]] = []
        fit_rows = np.arange(self.y.size)
        stop_reason = "budget"
        for rnd in range(1, config.budget + 1):
            if np.unique(self.y[fit_rows]).size < 2:
                stop_reason = "feedback_one_class"
                break
            cands = synthesize(self.X_lab, self.y, fit_rows, self.features, config.max_cardinality, config.models,
                               self.pos, seed=config.seed, class_weight=config.class_weight,
                               min_samples_leaf=config.min_samples_leaf, knn_neighbors=config.knn_neighbors)
            record: dict[str, Any] = {"round": rnd, "n_fit_points": int(fit_rows.size),
                                      "candidates_evaluated": len(cands), "committed": []}
            mats = self._filter(self._materialize(cands), record)
            chosen = self._select(mats, rnd) if mats else []
            if not chosen:
                stop_reason = "no_new_candidates"
                rounds.append(record)
                break
            for m, div, score in chosen:
                record["committed"].append(self._commit(m, div, score, rnd))
            # verifier: the label model on the committed heuristics' votes; its marginals on the labeled rows
            L_lm_train, L_lm_lab = self._lm_inputs()
            self.label_model, choice = fit_label_model(L_lm_train, L_lm_lab, self.y, config, self.class_balance,
                                                       self._lm_names())
            marg = self.label_model.predict_proba(L_lm_lab)[:, self.pos]
            gamma = 0.5 - 1.0 / len(self.committed) ** 1.5
            feedback = np.flatnonzero(np.abs(marg - config.b) <= gamma)
            record.update({"gamma": float(gamma), "n_feedback_points": int(feedback.size), "label_model": choice})
            rounds.append(record)
            if feedback.size == 0:
                stop_reason = "feedback_empty"
                break
            fit_rows = feedback
        if not self.committed:
            raise ValueError("no candidate heuristic could vote on the training data: every tree was a single leaf, "
                             "voted one class everywhere, or did no better than that; the features do not separate "
                             "the classes on the labeled set")
        pack = self.pack()
        L_lm_train, _ = self._lm_inputs()
        assert self.label_model is not None and self.label_model.n_lfs_ == L_lm_train.shape[1]
        return AutoLFResult(
            pack=pack, rounds=rounds, label_model=self.label_model,
            train_probs=self.label_model.predict_proba(L_lm_train), stop_reason=stop_reason,
            heuristics=self.committed, features=self.features, config=config, L_train=self._pack_votes("train"),
            L_labeled=self._pack_votes("lab"), L_lm_train=L_lm_train, drift=dict(self.drift),
            n_labeled=int(self.y.size), n_unlabeled=self.n_train, dropped_labeled=self.dropped,
            labeled_index=self.lab_df.index,
        )

    # ------------------------------------------------------------------------------------ steps

    def _materialize(self, cands: list[Candidate]) -> list[_Materialized]:
        """Beta per candidate, then each candidate in its committed form with its votes on both sets."""
        config, pos, neg = self.config, self.pos, self.neg
        out: list[_Materialized] = []
        round_specs: list[LFSpec] = []
        owners: list[int] = []
        trees: list[tuple[Candidate, tuple]] = []
        for ci, cand in enumerate(cands):
            cand.beta, cand.f1, _ = select_beta(cand.p_labeled, self.y, config.beta_grid, config.b,
                                                config.f1_average, pos, neg)
            if cand.kind in SPEC_KINDS:
                built = tree_specs(cand, cand.beta, config, self.thresholds, f"c{ci}")
                if built is not None:
                    trees.append((cand, built))
                    round_specs.extend(built[0])
                    owners.extend([len(trees) - 1] * len(built[0]))
                continue
            sub = self._x_train()[:, cand.extra["columns"]]
            ok = np.isfinite(sub).all(axis=1)
            v = np.full(self.n_train, ABSTAIN, dtype=LABEL_DTYPE)
            v[ok] = band_votes(cand.proba(sub[ok], pos), cand.beta, config.b, pos, neg)
            vl = band_votes(cand.p_labeled, cand.beta, config.b, pos, neg)
            out.append(_Materialized(cand, [], [], [], v[:, None], vl[:, None], cand.f1,
                                     ("model", cand.kind, cand.features, v.tobytes())))
        if round_specs:
            # every tree candidate's specs in one pack: the applier resolves each percentile once per feature
            rpack = LFPack.model_validate({"pack": "snuba-round", "classes": self.classes, "lfs": round_specs})
            Lt = apply_lfs(rpack, self.unlabeled_df, stats=self.train_stats)
            Ll = apply_lfs(rpack, self.lab_df, stats=self.train_stats)
            owners_arr = np.asarray(owners)
            for k, (cand, (sp, conds, ps)) in enumerate(trees):
                cols = np.flatnonzero(owners_arr == k)
                # scored as it will be used: the specs' votes, thresholds resolved on the training data
                f1 = f1_abstain_as_error(self.y, merge_votes(Ll[:, cols]), config.f1_average, pos)
                sig = ("tree", tuple(sorted(x.content_hash for x in sp)))
                out.append(_Materialized(cand, sp, conds, ps, Lt[:, cols], Ll[:, cols], f1, sig))
        return out

    def _filter(self, mats: list[_Materialized], record: dict[str, Any]) -> list[_Materialized]:
        """Drop constant and trivial heuristics (counted in ``record``).

        A heuristic that votes one class on every row it can judge says nothing about the label, yet its
        F1 (0.48 macro for "always good" at 6% noise) can win one of the first round's 3 slots, and the
        label model then reads it as strong evidence for the majority class (seen: F1 0.92 -> 0.0).
        Likewise a heuristic no better on the labeled set than voting one class everywhere.
        """
        constant = [_is_constant(m, self.train_cols) for m in mats]
        trivial = [self.config.skip_trivial and m.f1 <= self.trivial_f1 + 1e-12 for m in mats]
        record["skipped_constant"] = int(sum(constant))
        record["skipped_trivial"] = int(sum(t and not c for t, c in zip(trivial, constant)))
        return [m for m, c, t in zip(mats, constant, trivial) if not (c or t)]

    def _select(self, mats: list[_Materialized], rnd: int) -> list[tuple[_Materialized, float, float]]:
        """Snuba's pruner: top ``0.5*F1 + 0.5*diversity``, skipping duplicates and silent heuristics."""
        cov = np.column_stack([(m.train_cols != ABSTAIN).any(axis=1) for m in mats])
        f1s = np.asarray([m.f1 for m in mats])
        div = jaccard_distance(cov, self.covered) if self.committed else np.ones(len(mats))
        score = 0.5 * f1s + 0.5 * div
        want = self.config.first_round_keep if rnd == 1 else self.config.keep_per_round
        chosen: list[tuple[_Materialized, float, float]] = []
        for i in np.argsort(-score, kind="stable"):  # stable: ties go to the earlier candidate, every run
            m = mats[i]
            if m.signature in self.signatures or not cov[:, i].any():
                continue  # an exact duplicate double-counts in the label model; a silent one adds nothing
            self.signatures.add(m.signature)
            chosen.append((m, float(div[i]), float(score[i])))
            if len(chosen) == want:
                break
        return chosen

    def _commit(self, m: _Materialized, div: float, score: float, rnd: int) -> dict[str, Any]:
        """Name the heuristic's specs, check them against the raw tree, and record the heuristic."""
        config = self.config
        hname = f"{config.name_prefix}_r{rnd}_h{len(self.committed) + 1}"
        spec_names: list[str] = []
        drift_rows: dict[str, int] = {}
        for j, (spec, conds, p) in enumerate(zip(m.specs, m.leaf_conds, m.leaf_p)):
            parts = [name_part(f, self.thresholds.get(f, op, t)) for f, op, t in conds]
            name = spec_name(config.name_prefix, rnd, parts, spec.label, self.taken)
            self.taken.add(name)
            # the spec must vote where the tree's raw cut points do, on every training row both can judge
            raw = raw_path_mask(conds, self.train_cols)
            fin = np.isfinite(np.column_stack([self.train_cols[f] for f, _, _ in conds])).all(axis=1)
            fired = m.train_cols[:, j] != ABSTAIN
            drift_rows[name] = self.drift[name] = int((raw[fin] != fired[fin]).sum())
            desc = (
                f"Snuba heuristic {hname} (round {rnd}, {m.cand.kind} of depth {len(m.cand.features)} on "
                f"{', '.join(m.cand.features)}): leaf {j + 1} of {len(m.specs)} voting leaves, leaf "
                f"P({config.positive}) {short_number(p)}, abstain band beta {short_number(m.cand.beta)}, labeled F1 {short_number(m.f1)}; "
                "thresholds are percentiles of the training data"
            )
            spec_names.append(name)
            self.specs.append(spec.model_copy(update={"name": name, "description": desc, "group": config.group}))
        h = Heuristic(hname, m.cand.kind, m.cand.features, rnd, float(m.cand.beta), float(m.f1), div, score,
                      spec_names, drift_rows, m.cand)
        self.committed.append(h)
        self.mats.append(m)
        self.covered |= (m.train_cols != ABSTAIN).any(axis=1)
        return {"name": hname, "kind": h.kind, "features": list(h.features), "f1": h.f1, "diversity": div,
                "score": score, "beta": h.beta, "specs": spec_names}

    # ------------------------------------------------------------------------------------ matrices

    def _x_train(self) -> np.ndarray:
        if self._X_train is None:  # only comparison-only heuristics need the dense matrix
            self._X_train = np.column_stack([self.train_cols[f] for f in self.features])
        return self._X_train

    def _pack_votes(self, which: str) -> np.ndarray:
        """The pack's votes (its column order) on the training (``"train"``) or labeled (``"lab"``) rows."""
        n = self.n_train if which == "train" else self.y.size
        cols = [m.train_cols if which == "train" else m.lab_cols for m in self.mats if m.specs]
        return np.column_stack(cols).astype(LABEL_DTYPE) if cols else np.empty((n, 0), dtype=LABEL_DTYPE)

    def _lm_inputs(self) -> tuple[np.ndarray, np.ndarray]:
        """The label model's inputs on the training and labeled rows (layout of ``lm_columns``)."""
        out = []
        for which in ("train", "lab"):
            cols: list[np.ndarray] = []
            for m in self.mats:
                votes = m.train_cols if which == "train" else m.lab_cols
                if m.specs and self.config.lm_columns == "spec":
                    cols.extend(votes.T)
                else:
                    cols.append(merge_votes(votes))
            out.append(np.column_stack(cols).astype(LABEL_DTYPE))
        return out[0], out[1]

    def _lm_names(self) -> list[str]:
        """Names of the label model's columns: heuristics, or specs with ``lm_columns="spec"``."""
        names: list[str] = []
        for h in self.committed:
            names.extend(h.specs if (h.specs and self.config.lm_columns == "spec") else [h.name])
        return names

    def pack(self) -> LFPack:
        return build_pack(self.specs, self.config, self.features)
