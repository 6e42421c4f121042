"""Snuba-style automatic LF generation (Varma & Ré, VLDB 2018), emitting declarative LF specs.

Definitions and design notes: ``docs/autolf.md``."""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from flamenco_core.labeling import LFPack, LFSpec, apply_lfs
from flamenco_core.labeling.constants import ABSTAIN, LABEL_DTYPE
from flamenco_core.labeling.expr import canonical_stat, format_percentile
from flamenco_core.labeling.label_model import LabelModelBase, make_label_model
from flamenco_core.labeling.spec import LF_NAME_PATTERN
from flamenco_core.labeling.stats import DataStatistics
from flamenco_core.preprocess.windows import WINDOW_STATS, window_feature_names, window_features

from .candidates import (
    F1_AVERAGES,
    MODEL_KINDS,
    SPEC_KINDS,
    Candidate,
    band_votes,
    f1_abstain_as_error,
    jaccard_distance,
    select_beta,
    synthesize,
)
from .labelnb import LabeledNaiveBayes
from .thresholds import PercentileThreshold, percentile_threshold, sorted_finite

STOP_REASONS = ("feedback_empty", "feedback_one_class", "no_new_candidates", "budget")
_OP_WORDS = {"<=": "le", ">": "gt", "<": "lt", ">=": "ge"}
#: Window statistics left out of the default features: ``count`` only says how far into its series a row
#: is (it is the window length everywhere but the first rows), not how the RTT behaves.
DEFAULT_WINDOW_STATS = tuple(s for s in WINDOW_STATS if s != "count")
_LF_NAME_RE = re.compile(LF_NAME_PATTERN)
MAX_NAME = 128


# ---------------------------------------------------------------------------------------------- config


class SnubaConfig(BaseModel):
    """Settings of :func:`generate_lfs` (all recorded with a run; every random step uses ``seed``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_cardinality: int = Field(1, ge=1, le=3, description="largest feature subset; tree depth = subset size")
    models: tuple[str, ...] = Field(("tree",), description="candidate generators: tree, logreg, knn")
    beta_grid: tuple[float, ...] = Field(tuple(float(x) for x in np.linspace(0.25, 0.45, 10)),
                                         description="abstain bands tried per candidate")
    b: float = Field(0.5, gt=0.0, lt=1.0, description="decision centre")
    budget: int = Field(10, ge=1, description="most rounds")
    first_round_keep: int = Field(3, ge=1)
    keep_per_round: int = Field(1, ge=1)
    seed: int = 0
    classes: tuple[str, str] = ("good", "noise")
    positive: str = "noise"
    label_model: Literal["auto", "snorkel", "majority", "labeled_nb"] = Field(
        "auto", description="auto: the best on the labeled rows of Snorkel (two priors), majority vote and "
                            "labeled naive Bayes (see _fit_label_model)")
    label_model_params: dict[str, Any] = Field(default_factory=dict)
    class_balance: Union[Literal["labeled"], None, tuple[float, float]] = Field(
        "labeled", description="label-model prior: estimated from the labeled set, uniform (None), or given")
    lm_columns: Literal["heuristic", "spec"] = "heuristic"
    f1_average: str = Field("macro", description="F1 for beta and score: macro, positive, weighted, micro")
    skip_trivial: bool = Field(True, description="skip heuristics whose labeled F1 does not beat voting one class everywhere")
    emit_specs_only: bool = Field(True, description="only candidates that can be written as LF specs (trees)")
    percentile_decimals: int = Field(2, ge=0, le=6)
    max_percentile_decimals: int = Field(4, ge=0, le=6)
    class_weight: Optional[Literal["balanced"]] = None
    min_samples_leaf: int = Field(1, ge=1)
    knn_neighbors: int = Field(5, ge=1)
    pack_name: str = "snuba-autolf"
    group: Optional[str] = None
    name_prefix: str = Field("snuba", pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=32)

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [m for m in v if m not in MODEL_KINDS]
        if bad or not v:
            raise ValueError(f"models must be a non-empty subset of {MODEL_KINDS}; got {v}")
        return tuple(dict.fromkeys(v))

    @field_validator("beta_grid")
    @classmethod
    def _betas(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not (0.0 < x < 0.5) for x in v):
            raise ValueError("beta_grid needs values in (0, 0.5)")
        return v

    @model_validator(mode="after")
    def _check(self) -> "SnubaConfig":
        if self.positive not in self.classes or self.classes[0] == self.classes[1]:
            raise ValueError(f"positive {self.positive!r} must be one of two distinct classes {self.classes}")
        if self.f1_average not in F1_AVERAGES:
            raise ValueError(f"f1_average must be one of {F1_AVERAGES}")
        if self.max_percentile_decimals < self.percentile_decimals:
            raise ValueError("max_percentile_decimals must be >= percentile_decimals")
        if self.emit_specs_only and any(m not in SPEC_KINDS for m in self.models):
            raise ValueError(
                f"models {[m for m in self.models if m not in SPEC_KINDS]} cannot be written as threshold LF specs "
                "(logistic regression weighs features together; kNN votes by distance to the labeled rows themselves); "
                "set emit_specs_only=False to use them as comparison-only heuristics"
            )
        if isinstance(self.class_balance, tuple) and (min(self.class_balance) <= 0 or abs(sum(self.class_balance) - 1) > 1e-6):
            raise ValueError("class_balance must be two positive numbers summing to 1")
        return self

    @property
    def pos(self) -> int:
        return self.classes.index(self.positive)


# ---------------------------------------------------------------------------------------------- features


def window_columns(window: int = 10, feature: str = "rtt_ms", stats: Sequence[str] = DEFAULT_WINDOW_STATS) -> list[str]:
    """Names of the rolling-window feature columns used as candidate features (``rtt_ms_w10_mean`` ...)."""
    names = dict(zip(WINDOW_STATS, window_feature_names(window, feature)))
    return [names[s] for s in stats]


def feature_sets(window: int = 10, feature: str = "rtt_ms") -> dict[str, list[str]]:
    """The two feature options: ``"raw"`` (Snuba on RTT alone) and ``"window"`` (RTT plus window features)."""
    return {"raw": [feature], "window": [feature] + window_columns(window, feature)}


def add_window_features(df: pd.DataFrame, window: int = 10, feature: str = "rtt_ms", **kwargs: Any) -> pd.DataFrame:
    """``df`` with :func:`~flamenco_core.preprocess.window_features` columns appended.

    Compute them on the whole time-ordered series *before* splitting it into labeled and unlabeled rows:
    a window must hold the points that preceded a row in time, not those that happened to be sampled.
    """
    feats = window_features(df, window=window, feature=feature, **kwargs)
    return pd.concat([df, feats[[c for c in feats.columns if c not in df.columns]]], axis=1)


def default_features(labeled_df: pd.DataFrame, unlabeled_df: pd.DataFrame, feature: str = "rtt_ms") -> list[str]:
    """``rtt_ms`` plus every rolling-window column of it present in both frames (except ``count``)."""
    pat = re.compile(rf"^{re.escape(feature)}_w\d+_({'|'.join(DEFAULT_WINDOW_STATS)})$")
    win = [c for c in labeled_df.columns if pat.match(str(c)) and c in unlabeled_df.columns]
    return [feature] + win


# ---------------------------------------------------------------------------------------------- result


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
        return _lm_matrix(L, self.heuristics, self.pack, self.config, df)

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


# ---------------------------------------------------------------------------------------------- helpers


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


def _numeric(df: pd.DataFrame, features: Sequence[str], what: str) -> np.ndarray:
    missing = [f for f in features if f not in df.columns]
    if missing:
        raise ValueError(f"the {what} frame lacks feature column(s) {missing}")
    bad = [f for f in features if not pd.api.types.is_numeric_dtype(df[f].dtype)]
    if bad:
        raise ValueError(f"feature column(s) {bad} of the {what} frame are not numeric")
    return np.column_stack([df[f].to_numpy(dtype=np.float64, na_value=np.nan) for f in features]) if features else np.empty((len(df), 0))


def _merge(L: np.ndarray) -> np.ndarray:
    """One column from mutually exclusive columns: the vote of whichever voted, ABSTAIN where none did."""
    if L.shape[1] == 1:
        return L[:, 0].copy()
    voted = L != ABSTAIN
    first = voted.argmax(axis=1)
    out = L[np.arange(L.shape[0]), first].astype(LABEL_DTYPE)
    out[~voted.any(axis=1)] = ABSTAIN
    return out


def _lm_matrix(L_pack: np.ndarray, heuristics: list[Heuristic], pack: LFPack, config: SnubaConfig,
               df: pd.DataFrame) -> np.ndarray:
    """The label model's layout from the pack's votes on ``df`` (see ``lm_columns``)."""
    index = {n: i for i, n in enumerate(pack.lf_names)}
    cols: list[np.ndarray] = []
    for h in heuristics:
        if h.specs:
            sub = L_pack[:, [index[s] for s in h.specs]]
            if config.lm_columns == "heuristic":
                cols.append(_merge(sub))
            else:
                cols.extend(sub.T)
        else:
            cols.append(_model_votes(h.candidate, df, config, config.pos))
    return np.column_stack(cols).astype(LABEL_DTYPE)


def _model_votes(cand: Candidate, df: pd.DataFrame, config: SnubaConfig, pos: int) -> np.ndarray:
    """Votes of a comparison-only (non-spec) heuristic on ``df``; rows with a missing feature abstain."""
    X = _numeric(df, cand.features, "data")
    ok = np.isfinite(X).all(axis=1)
    out = np.full(len(df), ABSTAIN, dtype=LABEL_DTYPE)
    if ok.any():
        out[ok] = band_votes(cand.proba(X[ok], pos), cand.beta, config.b, pos, 1 - pos)
    return out


def _name_part(feature: str, th: PercentileThreshold) -> str:
    # Names show at most 2 decimals: the audit reads 3+ digit numbers in a name as restated data values,
    # and the condition itself holds the exact expression (3-4 decimals on large data, see .thresholds).
    stat = th.stat if th.percentile is None else canonical_stat("p" + format_percentile(round(th.percentile, 2)))
    return f"{feature}_{_OP_WORDS[th.op]}_{stat}"


def _spec_name(prefix: str, round_: int, parts: list[str], label: str, taken: set[str]) -> str:
    base = f"{prefix}_r{round_}_{'_and_'.join(parts)}_{label}"
    if len(base) > MAX_NAME - 8 or not _LF_NAME_RE.match(base):
        digest = hashlib.sha256(base.encode()).hexdigest()[:8]
        base = f"{prefix}_r{round_}_{digest}_{label}"[: MAX_NAME - 8]
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def _fmt(x: float) -> str:
    # three decimals keep descriptions readable and below the audit's precise-constant limit
    return f"{x:.3f}".rstrip("0").rstrip(".") if math.isfinite(x) else "nan"


class _ThresholdCache:
    """Percentile rewrites of raw cut points, computed once per (feature, op, threshold)."""

    def __init__(self, unlabeled_df: pd.DataFrame, config: SnubaConfig) -> None:
        self.df = unlabeled_df
        self.config = config
        self.sorted: dict[str, np.ndarray] = {}
        self.cache: dict[tuple[str, str, float], PercentileThreshold] = {}

    def get(self, feature: str, op: str, t: float) -> PercentileThreshold:
        key = (feature, op, t)
        if key not in self.cache:
            if feature not in self.sorted:
                self.sorted[feature] = sorted_finite(self.df[feature].to_numpy(dtype=np.float64, na_value=np.nan))
            self.cache[key] = percentile_threshold(feature, self.sorted[feature], t, op,
                                                   self.config.percentile_decimals, self.config.max_percentile_decimals)
        return self.cache[key]


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


def _tree_specs(cand: Candidate, beta: float, config: SnubaConfig, thresholds: _ThresholdCache, tag: str):
    """Voting leaves of a tree candidate as LF specs (placeholder names), or ``None`` if none can vote."""
    pos, b = config.pos, config.b
    specs, conds, ps = [], [], []
    for j, leaf in enumerate(cand.leaves or []):
        if leaf.p >= b + beta:
            label = config.classes[pos]
        elif leaf.p <= b - beta:
            label = config.classes[1 - pos]
        else:
            continue
        if not leaf.conditions:  # a root-only tree (no split found) says nothing a spec could state
            continue
        when = []
        for f, op, t in leaf.conditions:
            th = thresholds.get(f, op, t)
            when.append({"feature": f, "op": th.op, "value": th.stat})
        specs.append(LFSpec.model_validate({"name": f"{tag}_{j}", "label": label, "when": when}))
        conds.append(leaf.conditions)
        ps.append(leaf.p)
    return (specs, conds, ps) if specs else None


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


def _raw_path_mask(conds: tuple, columns: dict[str, np.ndarray]) -> np.ndarray:
    mask = None
    for f, op, t in conds:
        x = columns[f]
        m = (x <= t) if op == "<=" else (x > t)
        mask = m if mask is None else (mask & m)
    return mask


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
        X_all = _numeric(labeled_df, features, "labeled")
        _numeric(unlabeled_df, features, "unlabeled")
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
        self.thresholds = _ThresholdCache(unlabeled_df, config)
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
            self.label_model, choice = _fit_label_model(L_lm_train, L_lm_lab, self.y, config, self.class_balance,
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
                built = _tree_specs(cand, cand.beta, config, self.thresholds, f"c{ci}")
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
                f1 = f1_abstain_as_error(self.y, _merge(Ll[:, cols]), config.f1_average, pos)
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
            parts = [_name_part(f, self.thresholds.get(f, op, t)) for f, op, t in conds]
            name = _spec_name(config.name_prefix, rnd, parts, spec.label, self.taken)
            self.taken.add(name)
            # the spec must vote where the tree's raw cut points do, on every training row both can judge
            raw = _raw_path_mask(conds, self.train_cols)
            fin = np.isfinite(np.column_stack([self.train_cols[f] for f, _, _ in conds])).all(axis=1)
            fired = m.train_cols[:, j] != ABSTAIN
            drift_rows[name] = self.drift[name] = int((raw[fin] != fired[fin]).sum())
            desc = (
                f"Snuba heuristic {hname} (round {rnd}, {m.cand.kind} of depth {len(m.cand.features)} on "
                f"{', '.join(m.cand.features)}): leaf {j + 1} of {len(m.specs)} voting leaves, leaf "
                f"P({config.positive}) {_fmt(p)}, abstain band beta {_fmt(m.cand.beta)}, labeled F1 {_fmt(m.f1)}; "
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
                    cols.append(_merge(votes))
            out.append(np.column_stack(cols).astype(LABEL_DTYPE))
        return out[0], out[1]

    def _lm_names(self) -> list[str]:
        """Names of the label model's columns: heuristics, or specs with ``lm_columns="spec"``."""
        names: list[str] = []
        for h in self.committed:
            names.extend(h.specs if (h.specs and self.config.lm_columns == "spec") else [h.name])
        return names

    def pack(self) -> LFPack:
        return _build_pack(self.specs, self.config, self.features)


def _fit_label_model(
    L_train: np.ndarray, L_lab: np.ndarray, y: np.ndarray, config: SnubaConfig,
    class_balance: Optional[list[float]], names: Sequence[str],
) -> tuple[LabelModelBase, dict[str, Any]]:
    """The label model on the committed heuristics' votes, and a record of how it was chosen.

    ``"auto"`` (the default) fits, in this order: Snorkel's LabelModel with the labeled set's class
    balance and with a uniform prior, and majority vote (below 3 columns only
    :func:`make_label_model`'s fallback: majority vote, or the single LF's own votes), all on the
    training votes; then :class:`~.labelnb.LabeledNaiveBayes` on the labeled rows' votes, over all
    heuristics and over the one with the best labeled F1 alone. It keeps the first with the best F1 of
    its labels on the labeled rows. Why: with the few, high-coverage heuristics Snuba commits, Snorkel's
    fit is fragile and which prior works flips between series (one burst series: F1 0.19 with the labeled
    prior, 0.81 uniform), majority vote over two disagreeing heuristics is a tie, and on small subsets a
    perfect heuristic can be outvoted by two weaker ones. Measured (``benchmarks/autolf.py``, F1(noise) of
    the training labels, window features): plain Snuba's Snorkel label model without the trivial-heuristic
    filter 0.17 / 0.61 / 0.24 on spikes / bursts / Ark-like subsets, this 0.92 / 0.78 / 1.00. The
    naive-Bayes options are scored on the rows they were counted on, so their labeled F1 is optimistic
    (3 parameters per heuristic and class); the benchmark's held-out columns are the check on that.
    """
    params = dict(config.label_model_params)
    n = L_train.shape[1]
    options: list[tuple[Optional[str], str, dict[str, Any]]] = []
    if config.label_model in ("auto", "snorkel"):
        if n >= 3:
            options.append(("snorkel_labeled_prior" if config.label_model == "auto" else None, "snorkel",
                            {"class_balance": class_balance}))
            if config.label_model == "auto":
                options += [("snorkel_uniform_prior", "snorkel", {"class_balance": None}), (None, "majority", {})]
        else:
            options.append((None, "snorkel", {}))  # make_label_model's fallback below 3 LFs
    if config.label_model == "majority":
        options.append((None, "majority", {}))
    if config.label_model in ("auto", "labeled_nb"):
        options.append((None, "labeled_nb", {}))
    if config.label_model == "auto" and n > 1:
        solo = [f1_abstain_as_error(y, L_lab[:, j], config.f1_average, config.pos) for j in range(n)]
        best_j = int(np.argmax(solo))
        options.append((f"labeled_naive_bayes[{names[best_j]}]", "labeled_nb", {"columns": [best_j]}))
    best, best_f1, scores = None, -1.0, {}
    for label, kind, extra in options:
        if kind == "labeled_nb":
            lm: LabelModelBase = LabeledNaiveBayes(2, config.seed, **extra).fit(L_lab, y)
        else:
            kw = {**params, **extra} if kind == "snorkel" else {}
            lm = make_label_model(kind, n_lfs=n, cardinality=2, seed=config.seed, **kw).fit(L_train)
        label = label or lm.name
        f1 = f1_abstain_as_error(y, lm.predict(L_lab), config.f1_average, config.pos)
        scores[label] = float(f1)
        if f1 > best_f1 + 1e-12:
            best, best_f1 = (label, lm), f1
    assert best is not None
    return best[1], {"name": best[1].name, "chosen": best[0], "labeled_f1": scores}


def _build_pack(specs: list[LFSpec], config: SnubaConfig, features: Sequence[str]) -> LFPack:
    desc = (
        f"Automatic LFs (Snuba-style) over features {', '.join(features)}: one spec per voting leaf of each "
        f"committed decision tree; a spec's description names its heuristic. Thresholds are percentiles of "
        f"the local data."
    )
    data: dict[str, Any] = {"pack": config.pack_name, "version": 1, "classes": list(config.classes),
                            "description": desc, "lfs": [s.model_dump(mode="json", exclude_none=True) for s in specs]}
    if config.group:
        data["group"] = config.group
    return LFPack.from_dict(data)
