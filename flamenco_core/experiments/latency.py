"""The automatic latency path for one SD pair, end to end (issue 4): modality split, window features,
time splits, labels for the labeled pool, Snuba-style LFs, label model, end classifier, unsupervised
baselines, evaluation, the LF tree, and a label for every row.

Per pair::

    rows (time order) --KDE--> unimodal subsets --per subset--> window features (look-back only)
      -> train / validation / test in time order
      -> validation+test labels: the user's (``label`` column) or, clearly marked, the threshold heuristic's
      -> Snuba on (validation labels, train rows) -> LF pack (percentile thresholds) + label model
      -> end model (random forest for small pairs, LSTM for large) on the train probabilities
      -> F1 on test for FLAMENCO and for LOF / Elliptic Envelope / robust covariance / Isolation Forest

Pair scores are the unweighted mean of its subsets' scores (the paper averages subsets per dataset,
then datasets). Every degenerate case (constant series, one class in the labels, fewer points than a
window, a tiny subset) ends in a recorded outcome, never an exception that would sink other pairs:
:func:`run_pair` raises only for programming errors and unreadable input.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

CLASSES = ("good", "noise")
METRIC_KEYS = ("f1_good", "f1_noise", "f1_macro")


class ModalityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_height: float = Field(0.10, gt=0, lt=1, description="peak height relative to the highest peak")
    bw_method: Union[str, float, None] = Field("robust", description="KDE bandwidth: scott, silverman, robust or a factor")
    min_subset: int = Field(30, ge=1)
    tiny: Literal["merge", "skip"] = "merge"
    plot: bool = True


class ThresholdConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["median_mad", "iqr", "std"] = "median_mad"
    k: Optional[float] = None


class ModelConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: Literal["auto", "lstm", "random_forest"] = "auto"
    # The paper chose the forest for its 100-450-ping Atlas pairs (300-1,350 replies); Ark pairs are larger.
    small_threshold: int = Field(2000, ge=1, description="pairs with fewer rows get the random forest")
    lstm: dict[str, Any] = Field(default_factory=lambda: {"epochs": 30, "hidden": 32, "batch_size": 128, "lr": 0.003})
    forest: dict[str, Any] = Field(default_factory=lambda: {"n_iter": 4, "n_splits": 3})
    search: Optional[dict[str, Any]] = Field(None, description="LSTM hyperparameter search: {strategy, budget}")


class LatencyConfig(BaseModel):
    """Settings of the latency path (``conf/latency.yaml``); recorded with every run."""

    model_config = ConfigDict(extra="forbid")
    splits: Union[Literal["auto", "ark", "atlas"], tuple[float, float, float]] = Field(
        "auto", description="auto: ark (65/25/10) for scamper/warts data, atlas (55/20/25) for Atlas")
    min_points: int = Field(100, ge=1)
    window: int = Field(10, ge=2)
    features: Literal["window", "raw"] = "window"
    modality: ModalityConfig = Field(default_factory=ModalityConfig)
    thresholds: ThresholdConfig = Field(default_factory=ThresholdConfig)
    # Majority vote, not the labeled-F1 choice: when every LF separates the labeled rows perfectly (usual
    # on relative features) that choice is a tie, and Snorkel's model then follows the most conservative
    # LF on the unlabeled rows. Depth-2 trees let one LF say "far from the local baseline AND from every
    # route level", which separates spikes from route flapping (benchmarks/latency_robustness.py).
    # min_samples_leaf: a leaf voted by two or three labeled rows (say, a noise spike that happened to sit
    # below a lagging baseline) is a coincidence, not a rule.
    snuba: dict[str, Any] = Field(default_factory=lambda: {"budget": 6, "label_model": "majority", "max_cardinality": 2,
                                                           "min_samples_leaf": 5})
    model: ModelConfig = Field(default_factory=ModelConfig)
    baselines: tuple[str, ...] = ("lof", "elliptic_envelope", "robust_covariance", "isolation_forest")
    contamination: Union[Literal["auto"], float] = "auto"
    relative_window: int = Field(30, ge=2, description="past points in the local baseline of the relative features")
    absolute_features: bool = Field(False, description="also offer rtt_ms and its window statistics (absolute "
                                    "levels, which do not transfer to a new route or a level shift) to the subset-level LFs")
    two_sided: bool = Field(True, description="also deviations that look both ways in time (history labeling); "
                                              "false: causal features only, for online use")
    two_sided_window: int = Field(21, ge=3, description="points in the centred window of the two-sided features")
    min_class_rows: int = Field(5, ge=1, description="labeled rows of each class a level needs to learn LFs")
    heuristic_k: float = Field(3.5, gt=0, description="without user labels: robust z above which the heuristic pool says noise")
    envelope_guard: bool = Field(True, description="rows beyond the envelope of the labeled good rows are noise even "
                                                   "where the learned LFs say good")
    envelope_floor: float = Field(6.0, gt=0, description="the envelope never calls noise a row less than this many "
                                  "robust standard deviations above its baseline (a small pool's highest good row "
                                  "underestimates the highest of many more)")
    envelope_margin: float = Field(1.5, ge=1, description="envelope: noise beyond this multiple of the labeled good rows' highest robust z")
    seed: int = 0
    runner: Union[None, Literal["threads", "processes", "dask"], dict[str, Any]] = Field(
        None, description="the per-pair fan-out's task runner: a kind, or {kind, workers, address}; the CLI's "
                          "--runner/--workers/--scheduler win over it (tasks/runners.py)")

    @classmethod
    def from_yaml(cls, path: Union[str, Path, None]) -> "LatencyConfig":
        import yaml

        if path is None:
            return cls()
        data = yaml.safe_load(Path(path).read_text()) or {}
        try:
            return cls.model_validate(data)
        except Exception as exc:
            raise ValueError(f"{path}: invalid latency config: {exc}") from exc


@dataclass
class SubsetResult:
    subset: int
    rows: int
    outcome: str  # ok | skipped | fallback
    reason: str = ""
    label_source: str = ""  # user | heuristic
    model: str = ""
    scores: dict[str, float] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    autolf: dict[str, Any] = field(default_factory=dict)
    pack_yaml: str = ""
    tree_text: str = ""
    tree_json: str = ""
    threshold: dict[str, Any] = field(default_factory=dict)
    level: str = ""  # subset | pair | source | envelope | constant: where the LFs that labeled it were learned
    trials: list[dict[str, Any]] = field(default_factory=list)  # the end model's hyperparameter search
    test_index: Any = field(default=None, repr=False)
    baseline_labels: Any = field(default=None, repr=False)


@dataclass
class PairResult:
    """One pair's outcome: per-subset results, pair-level scores, and the per-row labels frame."""

    src: str
    dst: str
    rows: int
    outcome: str
    reason: str
    modality: dict[str, Any]
    subsets: list[SubsetResult]
    labels: pd.DataFrame
    seconds: float = 0.0
    plot_path: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def scores(self) -> dict[str, float]:
        return _mean_scores([s.scores for s in self.subsets if s.scores])

    @property
    def baseline_scores(self) -> dict[str, dict[str, float]]:
        names = sorted({m for s in self.subsets for m in s.baselines})
        return {m: _mean_scores([s.baselines[m] for s in self.subsets if m in s.baselines]) for m in names}

    def report(self) -> dict[str, Any]:
        """The pair's record of ``report.json``: test-split F1 of FLAMENCO and each baseline, F1 on the
        rows outside the labeled pool when the truth was given (``f1_unlabeled``), and per subset its
        outcome, label source and the level its LFs were learned at."""
        sc = self.scores
        nan3 = {k: float("nan") for k in METRIC_KEYS}
        levels: dict[str, int] = {}
        for s in self.subsets:
            if s.level:
                levels[s.level] = levels.get(s.level, 0) + 1
        rec = {
            "src": self.src, "dst": self.dst, "rows": self.rows, "outcome": self.outcome, "reason": self.reason,
            "modality": self.modality.get("label", ""), "n_modes": self.modality.get("n_modes"),
            **{k: sc.get(k, float("nan")) for k in METRIC_KEYS},
            "baselines": {m: {k: v.get(k, float("nan")) for k in METRIC_KEYS} for m, v in self.baseline_scores.items()},
            "label_sources": sorted({s.label_source for s in self.subsets if s.label_source}),
            "levels": levels,
            "models": sorted({s.model for s in self.subsets if s.model}),
            "subsets": [
                {"subset": s.subset, "rows": s.rows, "outcome": s.outcome, "reason": s.reason, "label_source": s.label_source,
                 "level": s.level, "model": s.model, **s.scores, "lfs": [h["name"] for h in s.autolf.get("heuristics", [])],
                 "envelope_added": int(s.autolf.get("envelope_added", 0))}
                for s in self.subsets
            ],
            "seconds": round(self.seconds, 2),
        }
        for k in ("pool_source", "pool_rows", "unlabeled_rows", "pair_reason", "truth_rows"):
            if k in self.extra:
                rec[k] = self.extra[k]
        if "truth_rows" in self.extra:
            fu = self.extra.get("f1_unlabeled", nan3)
            rec["f1_unlabeled"] = {k: fu.get(k, float("nan")) for k in METRIC_KEYS}
            rec["baselines_unlabeled"] = {m: {k: v.get(k, float("nan")) for k in METRIC_KEYS}
                                          for m, v in self.extra.get("baselines_unlabeled", {}).items()}
        return rec

    def write(self, out_dir: Union[str, Path], *, render: bool = True) -> list[Path]:
        """Write the pair's outputs under ``out_dir``: ``labels.parquet``, ``report.json`` and per subset
        the LF pack (``subset<i>_lfs.yaml``) and its tree as text, JSON and (``render``, with Graphviz)
        PNG. Returns the files worth keeping as run artifacts (everything but the labels, plus the KDE
        plot when there is one). A missing Graphviz costs only the PNG: it is logged, not raised."""
        import json
        import logging

        from flamenco_core.outputs import atomic_write_parquet, atomic_write_text, json_ready

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        # temporary names and renames, the report last: a killed task never leaves a file that looks complete
        atomic_write_parquet(self.labels, out / "labels.parquet")
        atomic_write_text(out / "report.json", json.dumps(json_ready(self.report()), indent=2, default=str))
        artifacts = [out / "report.json"]
        if self.plot_path:
            artifacts.append(Path(self.plot_path))
        for s in self.subsets:
            for text, suffix in ((s.pack_yaml, "lfs.yaml"), (s.tree_text, "tree.txt"), (s.tree_json, "tree.json")):
                if text:
                    p = out / f"subset{s.subset}_{suffix}"
                    atomic_write_text(p, text)
                    artifacts.append(p)
            if s.tree_json and render:
                from flamenco_core.explain import Tree, render_png

                try:
                    artifacts.append(Path(render_png(Tree.from_json(s.tree_json), out / f"subset{s.subset}_tree.png")))
                except (RuntimeError, OSError) as exc:
                    logging.getLogger(__name__).warning("%s -> %s: tree not rendered: %s", self.src, self.dst, exc)
        return artifacts


def _mean_scores(items: list[dict[str, float]]) -> dict[str, float]:
    if not items:
        return {}
    keys = [k for k in METRIC_KEYS if any(k in d for d in items)]
    out = {}
    for k in keys:
        v = np.array([d.get(k, np.nan) for d in items], dtype="float64")
        # An F1 undefined in every subset (no test point of that class) stays NaN, without numpy's warning.
        out[k] = float(v[~np.isnan(v)].mean()) if (~np.isnan(v)).any() else float("nan")
    return out


def resolve_ratios(config: LatencyConfig, source: str) -> Union[str, tuple[float, float, float]]:
    if config.splits != "auto":
        return config.splits
    return "atlas" if source == "atlas" else "ark"


def _scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Per-class and macro F1 on a test split. A class absent from both truth and predictions has no
    F1 (NaN, left out of averages): a noise-free subset predicted noise-free is not a 0 for noise."""
    from flamenco_core.evaluation.metrics import classification_scores

    s = classification_scores(y_true, y_pred, list(CLASSES), positive="noise", abstain="negative")
    out = {f"f1_{c}": float(s[f"f1_{c}"]) for c in CLASSES}
    for i, c in enumerate(CLASSES):
        if not (np.asarray(y_true) == i).any() and not (np.asarray(y_pred) == i).any():
            out[f"f1_{c}"] = float("nan")
    out["f1_macro"] = float(np.nanmean([out[f"f1_{c}"] for c in CLASSES])) if any(
        not np.isnan(out[f"f1_{c}"]) for c in CLASSES) else float("nan")
    return out


def score_labels(truth, pred) -> dict[str, float]:
    """F1 of good, noise and their macro mean for class-name arrays (``"good"``/``"noise"``), with the
    latency path's convention: a class absent from both truth and predictions has no F1 (NaN)."""
    return _scores(_encode(pd.Series(np.asarray(truth, dtype=object))), _encode(pd.Series(np.asarray(pred, dtype=object))))


def _features(config: LatencyConfig) -> list[str]:
    if config.features == "raw":
        return ["rtt_ms"]
    from flamenco_core.autolf import window_columns

    return ["rtt_ms", *window_columns(config.window)]


def _encode(labels: pd.Series) -> np.ndarray:
    return labels.map({c: i for i, c in enumerate(CLASSES)}).to_numpy(dtype="float64")


# ---------------------------------------------------------------------------------------------- learning levels


@dataclass
class _Learner:
    """LFs, label model and end model learned at one level (a subset, or the whole pair)."""

    level: str  # subset | pair
    auto: Any
    stats: Any
    feats: list[str]
    model: Any = None
    kind: str = ""
    reason: str = ""
    dropped: int = 0
    trials: list[dict[str, Any]] = field(default_factory=list)

    def predict(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(class index, P(noise), source) for ``rows``: the label model where an LF voted, the end model
        where all abstained (or the label model's prior when there is no end model)."""
        L = self.auto.label_matrix(rows, stats=self.stats)
        covered = (L != -1).any(axis=1)
        lm = self.auto.label_model.predict_proba(L)[:, 1]
        if self.model is not None and len(rows):
            X = rows[self.feats].to_numpy(dtype="float64")
            proba = np.asarray(self.model.predict_proba(X))[:, 1]
            cls = np.asarray(self.model.predict(X)).astype(int)
        else:
            proba, cls = lm, (lm >= 0.5).astype(int)
        p = np.where(covered, lm, proba)
        lab = np.where(covered, (lm >= 0.5).astype(int), cls)
        src = np.where(covered, "label_model", "classifier" if self.model is not None else "label_model")
        return lab, p, src


def _learn(level: str, labeled: pd.DataFrame, train: pd.DataFrame, feats: list[str], config: LatencyConfig,
           size: int, end_model: bool = True) -> tuple[Optional[_Learner], str]:
    """Snuba LFs on ``labeled`` (validation rows, class names in ``label``) over ``train`` (the unlabeled
    rows), the label model, and the end model on the covered training rows. ``(None, reason)`` when the LFs
    cannot be learned; an end model that cannot train leaves the label model alone, with the reason."""
    from flamenco_core.autolf import SnubaConfig, generate_lfs
    from flamenco_core.labeling import DataStatistics, filter_unlabeled
    from flamenco_core.models import build_model, choose_model

    scfg = SnubaConfig(**{"seed": config.seed, "classes": CLASSES, "positive": "noise", **config.snuba})
    feats = _distinct(feats, pd.concat([labeled[feats], train[feats]]))
    try:
        auto = generate_lfs(labeled, train, feats, "label", scfg)
    except ValueError as exc:
        return None, f"automatic LFs at the {level} level: {exc}"
    learner = _Learner(level, auto, DataStatistics(train), feats)
    if not end_model:
        return learner, ""
    X_fit, p_fit, learner.dropped = filter_unlabeled(train[feats].to_numpy(dtype="float64"), auto.train_probs, auto.L_train)
    choice = choose_model(size, {"model": config.model.model, "small_threshold": config.model.small_threshold})
    params = dict(config.model.lstm if choice.kind == "lstm" else config.model.forest)
    if choice.kind == "lstm":
        params.setdefault("window", config.window)
    X_val = labeled[feats].to_numpy(dtype="float64")
    # Every validation row is labeled (the pool is the labeled rows only), so this cast cannot meet a NaN.
    y_val = _encode(labeled["label"]).astype(int)
    try:
        if len(p_fit) == 0 or len(np.unique(p_fit.argmax(axis=1))) < 2:
            raise ValueError("the label model gave one class to every covered training row")
        if choice.kind == "lstm" and config.model.search:
            from flamenco_core.models.search import PAPER_LSTM_GRID, search

            found = search(build_model("lstm", params, config.seed), PAPER_LSTM_GRID, X_fit, p_fit, X_val, y_val,
                           seed=config.seed, **config.model.search)
            model = found.best_estimator
            learner.trials = _trials(found.results, "score", "lstm")
        else:
            model = build_model(choice.kind, params, config.seed)
            if choice.kind == "lstm":
                model.fit(X_fit, p_fit, X_val=X_val, y_val=y_val)
            else:
                model.fit(X_fit, p_fit)
                learner.trials = _trials(getattr(model, "cv_results_", None), "mean_test_score", "random_forest")
        learner.model, learner.kind = model, choice.kind
    except ValueError as exc:
        learner.kind, learner.reason = "label_model", f"end model: {exc}; label-model labels only"
    return learner, ""


def _distinct(feats: list[str], frame: pd.DataFrame) -> list[str]:
    """``feats`` without columns equal to an earlier one (a one-mode pair's subset features are its pair
    features): a copy would count twice in a majority vote."""
    out: list[str] = []
    for f in feats:
        x = frame[f].to_numpy()
        if not any(np.array_equal(x, frame[g].to_numpy(), equal_nan=True) for g in out):
            out.append(f)
    return out


def _trials(results: Optional[pd.DataFrame], score: str, kind: str) -> list[dict[str, Any]]:
    """One record per hyperparameter configuration tried: ``{model, params, score, seconds}``."""
    if results is None or not len(results) or score not in results.columns:
        return []
    pcols = [c for c in results.columns if c.startswith("param_") and c != "params"]
    secs = next((c for c in ("fit_seconds", "mean_fit_time") if c in results.columns), None)
    out = []
    for i, (_, r) in enumerate(results.iterrows()):  # a handful of rows: the search's own budget
        out.append({"trial": i, "model": kind, "params": {c.removeprefix("param_"): _plain(r[c]) for c in pcols},
                    "score": float(r[score]) if pd.notna(r[score]) else float("nan"),
                    "seconds": float(r[secs]) if secs and pd.notna(r[secs]) else float("nan")})
    return out


def _plain(v):
    return v.item() if hasattr(v, "item") else (None if v is pd.NA else v)


def _class_counts(labels: pd.Series) -> dict[str, int]:
    vc = labels.dropna().astype(str).value_counts()
    return {c: int(vc.get(c, 0)) for c in CLASSES}


def _learnable(labeled: pd.Series, config: LatencyConfig) -> tuple[bool, str]:
    counts = _class_counts(labeled)
    if min(counts.values()) >= config.min_class_rows:
        return True, ""
    return False, (f"labeled rows hold {counts['good']} good and {counts['noise']} noise "
                   f"(fewer than min_class_rows={config.min_class_rows} of a class)")


def _envelope(work: pd.DataFrame, pool: pd.Series, config: LatencyConfig) -> tuple[np.ndarray, str]:
    """Labels where no level could learn (the labeled rows hold one class, or too few of one), and the
    guard on learned labels: each row's deviation from its local baseline against what the pair's labeled
    rows showed.

    The labeled good rows bound how far good RTTs stray: per score, ``envelope_margin`` times the highest
    of them (at least ``envelope_floor``); a few labeled noise rows lower a bound to midway between the two
    classes where they do not overlap. A row is noise when it lies beyond the bound of every score of one
    of :func:`_envelope_rules`. A pool of good rows whose range covers the data therefore labels it all
    good, which is then what the evidence says, not a default. Returns 0/1 per row (a Series on ``work``'s
    index) and the rule in words."""
    lab = pool.reindex(work.index)
    good = (lab == "good").fillna(False).to_numpy()
    noise = (lab == "noise").fillna(False).to_numpy()
    hit = np.zeros(len(work), dtype=bool)
    words, bounds = [], {}
    for rule in _envelope_rules(config):
        both = np.ones(len(work), dtype=bool)
        parts = []
        for f in rule:
            x = work[f].to_numpy(dtype="float64")
            # z-scores are floored in robust sigmas; rarity in decades of density below the busiest level
            floor = RARITY_FLOOR if f == LEVEL_FEATURE else config.envelope_floor
            if f not in bounds:
                if good.any():
                    top = float(np.nanmax(x[good]))
                    bound = max(floor, config.envelope_margin * top)
                    how = f"{config.envelope_margin:g} x the highest of {int(good.sum())} labeled good rows"
                    if noise.any() and float(np.nanmin(x[noise])) > top:
                        bound = min(bound, max(floor, (top + float(np.nanmin(x[noise]))) / 2))
                        how = f"midway between {int(good.sum())} labeled good and {int(noise.sum())} labeled noise rows"
                else:
                    bound, how = floor, "the floor: no labeled good rows to bound it"
                bounds[f] = (bound, how)
            bound, how = bounds[f]
            both &= x > bound
            parts.append(f"{f} > {bound:.2f} ({how})")
        hit |= both
        words.append(" and ".join(parts))
    return pd.Series(hit.astype(int), index=work.index), " or ".join(f"[{w}]" for w in words)


def _envelope_rules(config: LatencyConfig) -> list[tuple[str, ...]]:
    """Conjunctions of scores, any of which makes a row noise: the pair's centred robust z; the neighbour
    score with the rarity of the RTT's level (the neighbour score alone also fires on the first rows after
    a route change, which lie on a common level); the neighbour score with roughness (inside a burst of
    spikes every RTT jumps, so the centred z, whose median the burst pulled up, misses them)."""
    if config.two_sided:
        return [("rtt_ms_pair_crz",), ("rtt_ms_pair_nrz", LEVEL_FEATURE), ("rtt_ms_pair_nrz", "rtt_ms_pair_rough")]
    return [("rtt_ms_pair_rz", LEVEL_FEATURE)]


RZ = "rtt_ms_rz"
#: How common the row's RTT level is in its pair (route levels recur, spikes do not): the KDE rarity.
LEVEL_FEATURE = "rtt_ms_rarity"
#: The envelope's floor for rarity: a level with at most 1% of the busiest level's density.
RARITY_FLOOR = 2.0


def _add_features(df: pd.DataFrame, config: LatencyConfig) -> pd.DataFrame:
    """Window statistics and deviations from the local baseline per subset series, and the deviations
    against the whole pair's baseline (``rtt_ms_pair_*``: they see a spike that landed in another mode)."""
    from flamenco_core.autolf import add_window_features
    from flamenco_core.preprocess.baseline import relative_features, two_sided_features

    out = add_window_features(df, window=config.window) if config.features == "window" else df.copy()
    parts = [out, relative_features(df, window=config.relative_window, by=["subset"]).drop(columns=["rtt_ms_base"]),
             relative_features(df, window=config.relative_window, by=None, prefix="rtt_ms_pair").drop(columns=["rtt_ms_pair_base"])]
    if config.two_sided:
        parts += [two_sided_features(df, window=config.two_sided_window, by=["subset"]),
                  two_sided_features(df, window=config.two_sided_window, by=None, prefix="rtt_ms_pair")]
    return pd.concat(parts, axis=1)


def _subset_features(config: LatencyConfig) -> list[str]:
    # relative features first: the LF learner breaks ties between equally good features by this order
    return [*_pair_features(config, subsets=True), *(_features(config) if config.absolute_features else [])]


def _baseline_features(config: LatencyConfig) -> list[str]:
    # the unsupervised baselines see everything FLAMENCO could: absolute levels, windows and deviations
    return [*_features(config), *_pair_features(config, subsets=True)]


def _pair_features(config: LatencyConfig, subsets: bool = False) -> list[str]:
    """Features of the pair- and source-level LFs (with ``subsets``: also the subset series' own, for the
    subset level): only deviations from a local baseline and the distance to route levels, so that LFs
    hold on every mode. The order breaks ties between features that separate the labeled rows equally
    well: two-sided scores first (they do not mistake a route change for a spike)."""
    from flamenco_core.preprocess.baseline import RELATIVE_SUFFIXES

    def cols(prefix: str) -> list[str]:
        # With the two-sided scores, the causal ones add only their lag after every route change: they
        # are the features of online labeling (two_sided: false).
        if config.two_sided:
            return [f"{prefix}_{s}" for s in ("crz", "nrz", "cdev", "rough")]
        return [f"{prefix}_{s}" for s in RELATIVE_SUFFIXES]

    # Without ``subsets`` the subset series' columns stay out: on a one-mode pair they equal the pair's,
    # and a near-copy of a feature would vote twice in the majority.
    return [*cols("rtt_ms_pair"), *(cols("rtt_ms") if subsets else []), LEVEL_FEATURE]


def _pool(df: pd.DataFrame, config: LatencyConfig, ratios, user: bool) -> tuple[pd.Series, str, pd.Index, pd.Index]:
    """The labeled pool (class names, NA elsewhere), its source, and its validation and test rows.

    With user labels the pool is every labeled row, wherever it lies in time; without, the latest
    (validation + test) share of each subset gets the heuristic's labels (rolling robust z above
    ``heuristic_k``). The pool is cut in time order into validation (Snuba fits on it) and test (scored)."""
    from flamenco_core.preprocess.splits import RATIOS

    r = RATIOS[ratios] if isinstance(ratios, str) else tuple(ratios)
    if user:
        pool = df["label"].astype("string")
        source = "user"
    else:
        share = (r[1] + r[2]) or 0.35
        pos = df.groupby("subset").cumcount() / df.groupby("subset")["subset"].transform("size")
        late = pos >= 1.0 - share
        lab = np.where(df[RZ].to_numpy() > config.heuristic_k, "noise", "good")
        pool = pd.Series(lab, index=df.index, dtype="string").where(late)
        source = "heuristic"
    idx = pool.dropna().index
    n_val = int(round(len(idx) * (r[1] / max(r[1] + r[2], 1e-9))))
    if len(idx) >= 2:
        n_val = min(max(n_val, 1), len(idx) - 1)
    return pool, source, idx[:n_val], idx[n_val:]


@dataclass
class _Prepared:
    rtt: np.ndarray
    modality: dict
    plot: Optional[str]
    split: Any
    work: pd.DataFrame
    pool: pd.Series
    pool_source: str
    val_idx: pd.Index
    test_idx: pd.Index
    train_idx: pd.Index
    unlabeled: pd.Index


def _prepare(df: pd.DataFrame, config: LatencyConfig, source: str, has_labels: bool, *, plot_dir=None,
             name=("", "")) -> _Prepared:
    """Modality split, features and the labeled pool of one time-ordered pair (``df`` from run_pair)."""
    from flamenco_core.ingest.pairs import pair_id
    from flamenco_core.preprocess import detect_modes, plot_modality, split_by_modes
    from flamenco_core.preprocess.baseline import rarity

    rtt = df["rtt_ms"].to_numpy(dtype="float64")
    mod = detect_modes(rtt, min_height=config.modality.min_height, bw_method=config.modality.bw_method, seed=config.seed)
    modality = mod.to_dict() if hasattr(mod, "to_dict") else {"n_modes": mod.n_modes}
    modality = {k: v for k, v in modality.items() if k not in ("grid", "density")}
    modality["label"] = mod.label
    plot = None
    if plot_dir is not None and config.modality.plot:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
        plot = str(plot_modality(rtt, mod, Path(plot_dir) / f"{pair_id(*name)}_kde.png", title=f"{name[0]} -> {name[1]}"))
    split = split_by_modes(df, mod, min_subset=config.modality.min_subset, tiny=config.modality.tiny)
    modality["subsets"] = split.outcomes
    subset_of = pd.Series(-1, index=df.index, dtype="int64")
    for i, sub in enumerate(split.subsets):
        subset_of.loc[sub.index] = i
    kept = subset_of >= 0
    work = _add_features(df[kept].assign(subset=subset_of[kept]), config)
    work["rtt_ms_rarity"] = rarity(work["rtt_ms"].to_numpy(), mod.grid, mod.density)
    pool, pool_source, val_idx, test_idx = _pool(work, config, resolve_ratios(config, source), has_labels)
    unlabeled = work.index.difference(pool.dropna().index)
    # The LFs' unlabeled data: the rows without a label; a fully labeled pair lends its own rows.
    train_idx = unlabeled if len(unlabeled) >= config.window else work.index
    return _Prepared(rtt, modality, plot, split, work, pool, pool_source, val_idx, test_idx, train_idx, unlabeled)


@dataclass
class SourceLevel:
    """LFs learned on the pooled labeled rows of many pairs of one source, for pairs too small or too
    one-sided to learn their own. Plain data (a pack and the statistics its percentiles resolve to), so it
    travels to any worker as JSON; votes are combined by majority."""

    pack_yaml: str
    stats: dict[str, dict[str, float]]
    pairs: int
    rows: int
    counts: dict[str, int]
    level: str = "source"
    kind: str = "label_model"

    def to_dict(self) -> dict[str, Any]:
        return {"pack_yaml": self.pack_yaml, "stats": self.stats, "pairs": self.pairs, "rows": self.rows, "counts": self.counts}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SourceLevel":
        return cls(d["pack_yaml"], d["stats"], int(d["pairs"]), int(d["rows"]), dict(d["counts"]))

    @property
    def pack(self):
        from flamenco_core.labeling import LFPack

        import yaml

        return LFPack.from_dict(yaml.safe_load(self.pack_yaml))

    def predict(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        from flamenco_core.labeling import apply_lfs
        from flamenco_core.labeling.stats import as_statistics

        L = apply_lfs(self.pack, rows, stats=as_statistics(self.stats))
        noise = (L == 1).sum(axis=1)
        votes = (L != -1).sum(axis=1)
        p = np.where(votes > 0, noise / np.maximum(votes, 1), 0.0)
        return (p > 0.5).astype(int), p, np.full(len(rows), "label_model", dtype=object)


def needs_source_level(frames: Sequence[pd.DataFrame], config: LatencyConfig) -> bool:
    """Whether some pair with labels has too few of a class to learn its own LFs (the pair-level check
    on all its labeled rows; cheap: reads the label column only)."""
    for df in frames:
        if len(df) >= config.min_points and "label" in df.columns and df["label"].notna().any():
            if min(_class_counts(df["label"]).values()) < 2 * config.min_class_rows:
                return True
    return False


def fit_source_level(frames: Sequence[pd.DataFrame], config: LatencyConfig, source: str = "ark") -> tuple[Optional[SourceLevel], str]:
    """Pool the labeled rows of ``frames`` (pairs of one source, as given to :func:`run_pair`) and learn LFs
    on their relative features. ``(None, reason)`` when the pooled labels still cannot teach both classes."""
    from flamenco_core.labeling import compute_stats

    labeled, train, used = [], [], 0
    for df in frames:
        df = df.sort_values("timestamp", kind="stable").reset_index(drop=True).drop(columns=["truth"], errors="ignore")
        if len(df) < config.min_points or "label" not in df.columns or df["label"].isna().all():
            continue
        prep = _prepare(df, config, source, True)
        feats = _pair_features(config)
        labeled.append(prep.work.loc[prep.val_idx, feats].assign(label=prep.pool.loc[prep.val_idx]))
        train.append(prep.work.loc[prep.train_idx, feats])
        used += 1
    if not labeled:
        return None, "source level: no pair with labels"
    lab = pd.concat(labeled, ignore_index=True)
    tr = pd.concat(train, ignore_index=True)
    ok, why = _learnable(lab["label"], config)
    if not ok:
        return None, f"source level ({used} pairs): {why}"
    learner, why = _learn("source", lab, tr, _pair_features(config), config, 0, end_model=False)
    if learner is None:
        return None, why
    pack = learner.auto.pack
    stats = compute_stats(tr, needed=pack.needed_stats())
    return SourceLevel(pack.to_yaml(), {f: {k: float(v) for k, v in d.items()} for f, d in stats.items()}, used, len(lab),
                       _class_counts(lab["label"])), ""


def run_pair(df: pd.DataFrame, config: LatencyConfig, *, source: str = "ark", plot_dir: Optional[Path] = None,
             borrowed: Union["SourceLevel", dict, None] = None) -> PairResult:
    """Run the latency path on one SD pair (rows of one src/dst, any order).

    A ``label`` column holds the user's labels (NA where unknown); a ``truth`` column, when present, is
    never read by the learning: it only scores the rows outside the labeled pool (``f1_unlabeled``).
    ``borrowed`` (:func:`fit_source_level`) labels the pair when its own labeled rows cannot teach LFs.
    """
    from flamenco_core.preprocess.baseline import rolling_mad

    t0 = time.perf_counter()
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    truth = df.pop("truth").astype("string") if "truth" in df.columns else None
    src, dst = str(df["src"].iloc[0]), str(df["dst"].iloc[0])
    has_labels = "label" in df.columns and df["label"].notna().any()
    if not has_labels and "label" in df.columns:
        df = df.drop(columns=["label"])
    empty = pd.DataFrame(index=df.index, data={"label": pd.Series(pd.NA, index=df.index, dtype="string"),
                                               "probability": np.nan, "label_source": pd.Series(pd.NA, index=df.index, dtype="string"),
                                               "level": pd.Series(pd.NA, index=df.index, dtype="string")})

    def done(outcome, reason, modality, subsets, labels, plot=None, extra=None):
        res = PairResult(src, dst, len(df), outcome, reason, modality, subsets, _labels_frame(df, labels),
                         time.perf_counter() - t0, plot)
        res.extra = extra or {}
        return res

    if len(df) < config.min_points:
        return done("skipped", f"{len(df)} rows, fewer than min_points={config.min_points}: lower min_points in the "
                               "config to label it", {}, [], empty)
    prep = _prepare(df, config, source, has_labels, plot_dir=plot_dir, name=(src, dst))
    rtt, modality, plot, split, work = prep.rtt, prep.modality, prep.plot, prep.split, prep.work
    pool, pool_source, val_idx, test_idx, train_idx, unlabeled = (prep.pool, prep.pool_source, prep.val_idx, prep.test_idx,
                                                                   prep.train_idx, prep.unlabeled)

    # The pair level: LFs on relative features only, learned from every subset's labeled rows. Subsets
    # whose own labeled rows are too few or one-class borrow it.
    pair_learner, pair_reason = None, ""
    ok_pair, why = _learnable(pool.loc[val_idx], config)
    if ok_pair:
        pair_learner, pair_reason = _learn("pair", work.loc[val_idx].assign(label=pool.loc[val_idx]),
                                           work.loc[train_idx], _pair_features(config), config, len(work))
    else:
        pair_reason = f"pair level: {why}"
    if pair_learner is None and borrowed is not None:
        # relative features transfer across pairs: LFs learned on the source's pooled labeled rows
        pair_learner = borrowed if isinstance(borrowed, SourceLevel) else SourceLevel.from_dict(borrowed)
        pair_reason += f"; LFs learned on {pair_learner.pairs} pairs of the same source"
    pair_pred = None
    if pair_learner is not None:
        pair_pred = pd.DataFrame(dict(zip(("label", "probability", "label_source"), pair_learner.predict(work))),
                                 index=work.index)
    # The labeled good rows bound normal behaviour: far beyond that bound is noise whatever the learned
    # LFs say (they learned their cuts from the labeled noise, which may not show every kind of noise).
    envelope = _envelope(work, pool, config) if config.envelope_guard or pair_learner is None else None

    labels = empty.copy()
    predicted = pd.Series(pd.NA, index=df.index, dtype="string")
    results = []
    base_cols: dict[str, pd.Series] = {}
    for i in range(len(split.subsets)):
        rows = work[work["subset"] == i]
        r, lab = _run_subset(i, rows, pool, val_idx, test_idx, train_idx, pair_learner, pair_pred, pair_reason,
                             pool_source, config, envelope)
        results.append(r)
        labels.loc[lab.index, ["label", "probability", "label_source", "level"]] = lab[["label", "probability", "label_source", "level"]]
        predicted.loc[lab.index] = lab["label"].astype("string")
        if r.baseline_labels is not None:
            for m in r.baseline_labels.columns:
                base_cols.setdefault(m, pd.Series(pd.NA, index=df.index, dtype="Int8"))
                base_cols[m].loc[rows.index] = r.baseline_labels[m]
    base_cols["rolling_mad"] = pd.Series(rolling_mad(rtt), index=df.index, dtype="Int8")
    # rolling_mad is the rule a user would write: scored on every subset's test rows like the others
    for r in results:
        t = r.test_index
        if t is not None and len(t):
            y_true = _encode(pool.loc[t])
            r.baselines["rolling_mad"] = _scores(y_true, base_cols["rolling_mad"].loc[t].astype("float64").to_numpy())
    if has_labels:
        given = df["label"].notna()
        labels.loc[given, "label"] = df.loc[given, "label"].astype(str)
        labels.loc[given, "label_source"] = "user"
        labels.loc[given, "probability"] = (df.loc[given, "label"] == "noise").astype(float)
    extra = {"pool_source": pool_source, "pair_reason": pair_reason,
             "pool_rows": int(pool.notna().sum()), "unlabeled_rows": int(len(unlabeled))}
    if truth is not None:
        outside = (pool.reindex(df.index).isna() & truth.notna()).to_numpy()
        extra["truth_rows"] = int(outside.sum())
        if outside.any():
            t_true = truth[outside].to_numpy()
            extra["f1_unlabeled"] = score_labels(t_true, predicted[outside].fillna("good").to_numpy())
            extra["baselines_unlabeled"] = {
                m: score_labels(t_true, np.where(col[outside].fillna(0).to_numpy() == 1, "noise", "good"))
                for m, col in base_cols.items() if col[outside].notna().any()}
    ok = [r for r in results if r.outcome == "ok"]
    labeled = [r for r in results if r.outcome in ("ok", "fallback")]
    if ok and len(ok) == len(results):
        outcome = "ok"
    elif ok:
        outcome = "partial"
    elif labeled:
        outcome = "fallback"
    else:
        outcome = "skipped"
    reason = "; ".join(f"subset {r.subset}: {r.reason}" for r in results if r.reason)
    res = done(outcome, reason, modality, results, labels, plot, extra)
    res.labels["predicted"] = predicted.to_numpy()
    return res


def _run_subset(i: int, rows: pd.DataFrame, pool: pd.Series, val_idx, test_idx, train_idx, pair_learner, pair_pred,
                pair_reason: str, pool_source: str, config: LatencyConfig, envelope) -> tuple[SubsetResult, pd.DataFrame]:
    """Label one modality subset at the best level its labeled rows support."""
    res = SubsetResult(subset=i, rows=len(rows), outcome="ok", label_source=pool_source)
    out = pd.DataFrame(index=rows.index, data={"label": pd.Series(pd.NA, index=rows.index, dtype="string"),
                                                "probability": np.nan, "label_source": pd.Series(pd.NA, index=rows.index, dtype="string"),
                                                "level": pd.Series(pd.NA, index=rows.index, dtype="string")})
    rtt = rows["rtt_ms"].to_numpy(dtype="float64")
    res.threshold = {k: (float(v) if isinstance(v, (int, float, np.floating)) else v)
                     for k, v in _threshold(rtt, config).items()}
    if np.unique(rtt).size < 2:
        res.outcome, res.reason, res.level = "skipped", "constant series: nothing to separate", "constant"
        out["label"], out["label_source"], out["probability"], out["level"] = "good", "constant", 0.0, "constant"
        return res, out
    v = val_idx.intersection(rows.index)
    t = test_idx.intersection(rows.index)
    tr = train_idx.intersection(rows.index)
    res.test_index = t
    subset_feats = _subset_features(config)
    learner = None
    ok_sub, why = _learnable(pool.loc[v], config)
    if ok_sub and len(tr) >= config.window:
        learner, fail = _learn("subset", rows.loc[v].assign(label=pool.loc[v]), rows.loc[tr], subset_feats, config, len(rows))
        if learner is None:
            why = fail
    elif ok_sub:
        why = f"{len(tr)} unlabeled rows, fewer than the window of {config.window}"
    if learner is not None:
        lab, p, src = _guard(*learner.predict(rows), envelope, rows, res, config)
        res.model, res.level, res.trials = learner.kind, "subset", learner.trials
        if learner.reason:
            res.reason = learner.reason
        _describe(res, learner, rows.loc[tr])
    elif pair_learner is not None:
        mine = pair_pred.loc[rows.index]
        lab, p, src = _guard(mine["label"].to_numpy(), mine["probability"].to_numpy(), mine["label_source"].to_numpy(),
                             envelope, rows, res, config)
        res.model, res.level = pair_learner.kind, pair_learner.level
        res.trials = list(getattr(pair_learner, "trials", []))
        res.reason = f"learned at the {pair_learner.level} level ({why})"
        if isinstance(pair_learner, _Learner):
            _describe(res, pair_learner, rows.loc[tr])
        else:
            res.pack_yaml = pair_learner.pack_yaml
    else:
        lab = envelope[0].loc[rows.index].to_numpy()
        p = lab.astype(float)
        src = np.full(len(rows), "envelope", dtype=object)
        res.model, res.level, res.outcome = "envelope", "envelope", "fallback"
        res.reason = f"no level could learn ({why}; {pair_reason}): noise where {envelope[1]}"
    out["label"] = np.array(CLASSES)[np.asarray(lab, dtype=int)]
    out["probability"] = np.asarray(p, dtype="float64")
    out["label_source"] = np.asarray(src, dtype=object)
    out["level"] = res.level
    from flamenco_core.models import run_baselines

    # each unsupervised method sees the whole subset; its labels are scored on the test rows here and on
    # the rows outside the pool by run_pair
    res.baseline_labels = run_baselines(rows[_baseline_features(config)].to_numpy(dtype="float64"), list(config.baselines),
                                        config.contamination, config.seed, index=rows.index)
    if len(t):
        y_true = _encode(pool.loc[t])
        res.scores = _scores(y_true, _encode(out.loc[t, "label"]))
        for m in res.baseline_labels.columns:
            col = res.baseline_labels.loc[t, m]
            if not col.isna().all():
                res.baselines[m] = _scores(y_true, col.astype("float64").to_numpy())
    return res, out


def _guard(lab, p, src, envelope, rows, res: SubsetResult, config: LatencyConfig):
    """Learned labels, with the envelope's noise added (see ``LatencyConfig.envelope_guard``)."""
    if envelope is None or not config.envelope_guard:
        return lab, p, src
    env = envelope[0].loc[rows.index].to_numpy().astype(bool)
    add = env & (np.asarray(lab) == 0)
    res.autolf["envelope_added"] = int(add.sum())
    lab = np.where(add, 1, lab)
    p = np.where(add, 1.0, p)
    src = np.where(add, "envelope", src)
    return lab, p, src


def _threshold(rtt: np.ndarray, config: LatencyConfig) -> dict[str, Any]:
    from flamenco_core.preprocess import threshold_stats

    return threshold_stats(rtt, method=config.thresholds.method, k=config.thresholds.k)


def _describe(res: SubsetResult, learner: _Learner, train: pd.DataFrame) -> None:
    """The subset's record of the LFs that labeled it: pack, Snuba's record, and the LF tree."""
    auto = learner.auto
    # keeps what the subset already recorded (the envelope guard's count)
    res.autolf = {**auto.to_dict(), "level": learner.level, "dropped_unlabeled_train_rows": int(learner.dropped), **res.autolf}
    res.pack_yaml = auto.pack.to_yaml() if hasattr(auto.pack, "to_yaml") else ""
    try:
        from flamenco_core.explain import build_tree, render_text

        feats = sorted({c.feature for spec in auto.pack.lfs for c in spec.when})
        complete = [f for f in feats if f in train.columns and train[f].notna().all()]
        tree = build_tree(auto.pack, learner.stats, importance=_importance(auto), mode="faithful", never_missing=complete)
        res.tree_text = render_text(tree)
        res.tree_json = tree.to_json()
    except Exception as exc:  # the tree is an explanation, not a result: record and go on
        res.tree_text = f"(tree not built: {type(exc).__name__}: {exc})"


def _importance(auto) -> dict[str, float]:
    """Tree node order: the committed heuristics' order (Snuba commits the best-scoring first)."""
    order: dict[str, float] = {}
    for rank, h in enumerate(auto.heuristics):
        for f in h.features:
            order.setdefault(f, float(len(auto.heuristics) - rank))
    return order


def _labels_frame(df: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "timestamp": df["timestamp"].to_numpy(), "src": df["src"].astype(str).to_numpy(),
        "dst": df["dst"].astype(str).to_numpy(), "rtt_ms": df["rtt_ms"].to_numpy(),
        "label": labels["label"].astype("string").to_numpy(), "probability": labels["probability"].to_numpy(dtype="float64"),
        "label_source": labels["label_source"].astype("string").to_numpy(),
        "level": (labels["level"] if "level" in labels else pd.Series(pd.NA, index=labels.index)).astype("string").to_numpy(),
    })


def _nanmean(values) -> float:
    v = np.array([np.nan if x is None else x for x in values], dtype="float64")
    return float(v[~np.isnan(v)].mean()) if (~np.isnan(v)).any() else float("nan")


def outcome_counts(records: Sequence[dict], skipped: int = 0, failed: int = 0) -> dict[str, Any]:
    """Pairs by outcome (ok / partial / fallback / skipped / failed) and subsets by level and label
    source: the honest summary every report, table and MLflow run shows."""
    pairs = {k: 0 for k in ("ok", "partial", "fallback", "skipped", "failed")}
    for r in records:
        pairs[r.get("outcome", "skipped")] = pairs.get(r.get("outcome", "skipped"), 0) + 1
    pairs["skipped"] += int(skipped)
    pairs["failed"] += int(failed)
    levels: dict[str, int] = {}
    for r in records:
        for s in r.get("subsets", []):
            key = s.get("level") or s.get("outcome") or "unknown"
            levels[key] = levels.get(key, 0) + 1
    return {"pairs": pairs, "subsets_by_level": levels}


def summarize(pairs: Sequence[Union[PairResult, dict]]) -> dict[str, Any]:
    """``report.json``'s body: the pair records (:meth:`PairResult.report`) and their unweighted average
    (test-split F1, and F1 on unlabeled rows where the truth was given), with the outcome counts."""
    records = [p.report() if isinstance(p, PairResult) else p for p in pairs]
    scored = [r for r in records if not np.isnan(r.get("f1_macro", np.nan))]
    avg = {k: _nanmean([r[k] for r in scored]) if scored else float("nan") for k in METRIC_KEYS}
    methods = sorted({m for r in scored for m in r["baselines"]})
    avg["baselines"] = {
        m: {k: _nanmean([r["baselines"][m][k] for r in scored if m in r["baselines"]]) for k in METRIC_KEYS}
        for m in methods
    }
    avg["pairs_scored"] = len(scored)
    truth = [r for r in records if "f1_unlabeled" in r and r.get("truth_rows")]
    if truth:
        avg["f1_unlabeled"] = {k: _nanmean([r["f1_unlabeled"][k] for r in truth]) for k in METRIC_KEYS}
        um = sorted({m for r in truth for m in r.get("baselines_unlabeled", {})})
        avg["baselines_unlabeled"] = {
            m: {k: _nanmean([r["baselines_unlabeled"][m][k] for r in truth if m in r["baselines_unlabeled"]]) for k in METRIC_KEYS}
            for m in um}
        avg["pairs_with_truth"] = len(truth)
        ours, rule = avg["f1_unlabeled"]["f1_macro"], avg["baselines_unlabeled"].get("rolling_mad", {}).get("f1_macro")
        if rule is not None and ours == ours and rule == rule:
            below = [f"{r['src']}->{r['dst']}" for r in truth
                     if r["f1_unlabeled"]["f1_macro"] < r.get("baselines_unlabeled", {}).get("rolling_mad", {}).get("f1_macro", -1) - 0.01]
            avg["vs_rolling_mad"] = {
                "flamenco": ours, "rolling_mad": rule, "difference": ours - rule, "pairs_below": below,
                "verdict": (f"FLAMENCO's macro F1 on unlabeled rows ({ours:.3f}) is below the rolling_mad rule's ({rule:.3f})"
                            if ours < rule - 0.01 else
                            f"FLAMENCO's macro F1 on unlabeled rows ({ours:.3f}) matches or beats the rolling_mad rule's ({rule:.3f})")
                           + (f"; below it on {len(below)} of {len(truth)} pairs" if below else "")}
    return {"pairs": records, "average": avg, "outcomes": outcome_counts(records)}


def comparison_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """Method x (f1_good, f1_noise, f1_macro) from :func:`summarize`'s average: FLAMENCO first."""
    avg = summary["average"]
    rows = [{"method": "flamenco", **{k: avg[k] for k in METRIC_KEYS}}]
    rows += [{"method": m, **v} for m, v in avg["baselines"].items()]
    table = pd.DataFrame(rows).set_index("method")
    if "f1_unlabeled" in avg:
        # F1 on rows outside the labeled pool: what the labels are for, beside the test split's
        unl = {"flamenco": avg["f1_unlabeled"], **avg.get("baselines_unlabeled", {})}
        for k in METRIC_KEYS:
            table[f"unlabeled_{k}"] = [unl.get(m, {}).get(k, float("nan")) for m in table.index]
        for m in unl:
            if m not in table.index:
                table.loc[m] = [float("nan")] * len(METRIC_KEYS) + [unl[m].get(k, float("nan")) for k in METRIC_KEYS]
    return table


def attach_labels(df: pd.DataFrame, labels: Optional[pd.DataFrame], *, name: str = "labels") -> pd.DataFrame:
    """The labeled pool: a ``label`` column with good/noise where known, NA elsewhere.

    ``labels`` is joined on ``src, dst, timestamp`` (plus ``reply`` for Atlas replies sharing a timestamp,
    see :func:`flamenco_core.synth.join_labels`); without it an existing ``label`` column (blanks for
    unlabeled rows) is used. Values other than good/noise raise ``ValueError`` naming ``name`` and them.
    """
    from flamenco_core.synth import join_labels

    out = df
    if labels is not None:
        out = join_labels(df.drop(columns=["label"], errors="ignore"), labels, require_all=False)
    if "label" not in out.columns:
        return out.assign(label=pd.Series(pd.NA, index=out.index, dtype="string"))
    lab = out["label"].astype("string").str.strip().str.lower().replace("", pd.NA)
    bad = sorted(set(lab.dropna().unique()) - set(CLASSES))
    if bad:
        raise ValueError(f"{name}: label values {bad[:5]} are not one of {list(CLASSES)}")
    return out.assign(label=lab)


def attach_truth(df: pd.DataFrame, truth: Optional[pd.DataFrame], *, name: str = "truth") -> pd.DataFrame:
    """``df`` with a ``truth`` column (good/noise, NA where the truth file has no row) joined like
    :func:`attach_labels`. The truth only scores rows outside the labeled pool; no step learns from it."""
    if truth is None:
        return df
    if "label" not in truth.columns:
        raise ValueError(f"{name}: the truth file needs a 'label' column (good/noise)")
    t = attach_labels(df.drop(columns=["label"], errors="ignore"), truth, name=name)["label"]
    if t.notna().sum() == 0:
        raise ValueError(f"{name}: no row of the truth file matched the data on src, dst, timestamp")
    return df.assign(truth=t.to_numpy())


def heuristic_labels(df: pd.DataFrame, config: LatencyConfig, reason: str) -> pd.DataFrame:
    """Labels for rows no pair run labeled (pairs under ``min_points``, failed pairs): the threshold
    heuristic on the pair's own RTTs, marked ``heuristic``; the user's label where given."""
    from flamenco_core.preprocess import propose_labels

    prop = propose_labels(df, method=config.thresholds.method, k=config.thresholds.k, by=["src", "dst"])
    labels = pd.DataFrame({"label": prop["label"].astype("string"), "probability": (prop["label"] == "noise").astype(float),
                           "label_source": pd.Series("heuristic", index=df.index, dtype="string")}, index=df.index)
    if "label" in df.columns:
        given = df["label"].notna()
        labels.loc[given, "label"] = df.loc[given, "label"].astype(str)
        labels.loc[given, "label_source"] = "user"
        labels.loc[given, "probability"] = (df.loc[given, "label"] == "noise").astype(float)
    out = _labels_frame(df, labels)
    out["note"] = reason
    return out
