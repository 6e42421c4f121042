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
    snuba: dict[str, Any] = Field(default_factory=lambda: {"budget": 6})
    model: ModelConfig = Field(default_factory=ModelConfig)
    baselines: tuple[str, ...] = ("lof", "elliptic_envelope", "robust_covariance", "isolation_forest")
    contamination: Union[Literal["auto"], float] = "auto"
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

    @property
    def scores(self) -> dict[str, float]:
        return _mean_scores([s.scores for s in self.subsets if s.scores])

    @property
    def baseline_scores(self) -> dict[str, dict[str, float]]:
        names = sorted({m for s in self.subsets for m in s.baselines})
        return {m: _mean_scores([s.baselines[m] for s in self.subsets if m in s.baselines]) for m in names}

    def report(self) -> dict[str, Any]:
        """The pair's record of ``report.json`` (issue 4 section 6)."""
        sc = self.scores
        return {
            "src": self.src, "dst": self.dst, "rows": self.rows, "outcome": self.outcome, "reason": self.reason,
            "modality": self.modality.get("label", ""), "n_modes": self.modality.get("n_modes"),
            **{k: sc.get(k, float("nan")) for k in METRIC_KEYS},
            "baselines": {m: {k: v.get(k, float("nan")) for k in METRIC_KEYS} for m, v in self.baseline_scores.items()},
            "label_sources": sorted({s.label_source for s in self.subsets if s.label_source}),
            "models": sorted({s.model for s in self.subsets if s.model}),
            "subsets": [
                {"subset": s.subset, "rows": s.rows, "outcome": s.outcome, "reason": s.reason, "label_source": s.label_source,
                 "model": s.model, **s.scores, "lfs": [h["name"] for h in s.autolf.get("heuristics", [])]}
                for s in self.subsets
            ],
            "seconds": round(self.seconds, 2),
        }

    def write(self, out_dir: Union[str, Path], *, render: bool = True) -> list[Path]:
        """Write the pair's outputs under ``out_dir``: ``labels.parquet``, ``report.json`` and per subset
        the LF pack (``subset<i>_lfs.yaml``) and its tree as text, JSON and (``render``, with Graphviz)
        PNG. Returns the files worth keeping as run artifacts (everything but the labels, plus the KDE
        plot when there is one). A missing Graphviz costs only the PNG: it is logged, not raised."""
        import json
        import logging

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self.labels.to_parquet(out / "labels.parquet")
        (out / "report.json").write_text(json.dumps(self.report(), indent=2, default=str))
        artifacts = [out / "report.json"]
        if self.plot_path:
            artifacts.append(Path(self.plot_path))
        for s in self.subsets:
            for text, suffix in ((s.pack_yaml, "lfs.yaml"), (s.tree_text, "tree.txt"), (s.tree_json, "tree.json")):
                if text:
                    p = out / f"subset{s.subset}_{suffix}"
                    p.write_text(text)
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


def _features(df: pd.DataFrame, config: LatencyConfig) -> list[str]:
    if config.features == "raw":
        return ["rtt_ms"]
    from flamenco_core.autolf import window_columns

    return ["rtt_ms", *window_columns(config.window)]


def _encode(labels: pd.Series) -> np.ndarray:
    return labels.map({c: i for i, c in enumerate(CLASSES)}).to_numpy(dtype="float64")


def run_subset(sub: pd.DataFrame, subset_id: int, config: LatencyConfig, ratios, has_user_labels: bool) -> tuple[SubsetResult, pd.DataFrame]:
    """Label one unimodal subset; returns its result and its per-row labels (index of ``sub``)."""
    from flamenco_core.autolf import SnubaConfig, add_window_features, generate_lfs
    from flamenco_core.labeling import DataStatistics, filter_unlabeled
    from flamenco_core.models import build_model, choose_model
    from flamenco_core.preprocess import threshold_stats, time_splits

    res = SubsetResult(subset=subset_id, rows=len(sub), outcome="ok")
    out = pd.DataFrame(index=sub.index, data={"label": pd.Series(pd.NA, index=sub.index, dtype="string"),
                                               "probability": np.nan, "label_source": pd.Series(pd.NA, index=sub.index, dtype="string")})
    rtt = sub["rtt_ms"].to_numpy(dtype="float64")
    if np.unique(rtt).size < 2:
        res.outcome, res.reason = "skipped", "constant series: nothing to separate"
        out["label"], out["label_source"], out["probability"] = "good", "constant", 0.0
        return res, out
    if len(sub) < config.window:
        res.outcome, res.reason = "skipped", f"{len(sub)} points, fewer than the window of {config.window}"
        return res, out
    df = add_window_features(sub, window=config.window) if config.features == "window" else sub.copy()
    try:
        splits = time_splits(df, ratios)
    except ValueError as exc:
        res.outcome, res.reason = "skipped", f"cannot split: {exc}"
        return res, out
    train, val, test = splits.train, splits.validation, splits.test
    # The labeled pool is validation + test. Without user labels the threshold heuristic proposes them
    # from the training data's statistics, and every report says so.
    th = threshold_stats(train["rtt_ms"], method=config.thresholds.method, k=config.thresholds.k)
    res.threshold = {k: (float(v) if isinstance(v, (int, float, np.floating)) else v) for k, v in th.items()}
    user = has_user_labels and val["label"].notna().any() and test["label"].notna().any()
    if user:
        y_val, y_test = val["label"].astype("string"), test["label"].astype("string")
        res.label_source = "user"
    else:
        cut = th["threshold"]
        y_val = pd.Series(np.where(val["rtt_ms"] > cut, "noise", "good"), index=val.index, dtype="string")
        y_test = pd.Series(np.where(test["rtt_ms"] > cut, "noise", "good"), index=test.index, dtype="string")
        res.label_source = "heuristic"
    feats = _features(df, config)
    pool = pd.concat([y_val, y_test]).dropna()
    if pool.nunique() == 1:
        # The labeled pool of this subset holds one class (typically the lowest route of a multimodal pair,
        # whose noise lands above it in another subset): it is labeled that class, as the labels say.
        only = str(pool.iloc[0])
        res.outcome, res.reason = "fallback", f"labeled pool holds only {only!r} ({len(pool)} rows): subset labeled {only!r}"
        res.model = "labeled_pool"
        out["label"], out["label_source"], out["probability"] = only, "labeled_pool", float(only == "noise")
        y_true = _encode(y_test)
        res.scores = _scores(y_true, np.full(len(y_true), CLASSES.index(only), dtype="float64"))
        res.baselines = _baselines(df, feats, test.index, y_true, config)
        return res, out
    train_stats = DataStatistics(train)  # thresholds resolve on the training split, for every row
    labeled = val.assign(label=y_val)
    scfg = SnubaConfig(**{"seed": config.seed, "classes": CLASSES, "positive": "noise", **config.snuba})
    try:
        auto = generate_lfs(labeled, train, feats, "label", scfg)
    except ValueError as exc:
        res.outcome, res.reason = "fallback", f"automatic LFs: {exc}"
        auto = None
    if auto is None:
        # One class in the labeled pool (or no usable heuristic): the threshold heuristic labels the rows.
        cut = th["threshold"]
        lab = np.where(df["rtt_ms"] > cut, "noise", "good")
        out["label"], out["label_source"], out["probability"] = lab, "heuristic", (lab == "noise").astype(float)
        pred_test = _encode(pd.Series(np.where(test["rtt_ms"] > cut, "noise", "good"), index=test.index))
        res.model = "threshold"
        y_true = _encode(y_test)
        res.scores = _scores(y_true, pred_test)
        res.baselines = _baselines(df, feats, test.index, y_true, config)
        return res, out
    res.autolf = auto.to_dict()
    res.pack_yaml = auto.pack.to_yaml() if hasattr(auto.pack, "to_yaml") else ""
    # End model on the training rows the LFs covered, with the label model's probabilities.
    X_train = train[feats].to_numpy(dtype="float64")
    probs = auto.train_probs
    X_fit, p_fit, dropped = filter_unlabeled(X_train, probs, auto.L_train)
    choice = choose_model(len(sub), {"model": config.model.model, "small_threshold": config.model.small_threshold})
    params = dict(config.model.lstm if choice.kind == "lstm" else config.model.forest)
    if choice.kind == "lstm":
        params.setdefault("window", config.window)
    res.model = choice.kind
    X_val = val[feats].to_numpy(dtype="float64")
    X_test = test[feats].to_numpy(dtype="float64")
    y_val_i = _encode(y_val)
    try:
        if len(np.unique(p_fit.argmax(axis=1))) < 2:
            raise ValueError("the label model gave one class to every covered training row")
        if choice.kind == "lstm" and config.model.search:
            from flamenco_core.models.search import PAPER_LSTM_GRID, search

            found = search(build_model("lstm", params, config.seed), PAPER_LSTM_GRID, X_fit, p_fit, X_val,
                           y_val_i.astype(int), seed=config.seed, **config.model.search)
            model = found.best_estimator
        else:
            model = build_model(choice.kind, params, config.seed)
            if choice.kind == "lstm":
                model.fit(X_fit, p_fit, X_val=X_val, y_val=y_val_i.astype(int))
            else:
                model.fit(X_fit, p_fit)
        pred_test = np.asarray(model.predict(X_test), dtype="float64")
        all_pred = np.asarray(model.predict(df[feats].to_numpy(dtype="float64")))
        all_proba = np.asarray(model.predict_proba(df[feats].to_numpy(dtype="float64")))[:, 1]
    except ValueError as exc:
        # The end model cannot train (one class): the label model labels what the LFs cover.
        res.outcome, res.reason = "fallback", f"end model: {exc}; label-model labels only"
        res.model = "label_model"
        lm_test = auto.predict_proba(test, stats=train_stats)
        covered = (auto.label_matrix(test, stats=train_stats) != -1).any(axis=1)
        pred_test = np.where(covered, lm_test.argmax(axis=1), 0).astype("float64")
        all_pred = np.zeros(len(df), dtype=int)
        all_proba = np.zeros(len(df))
    y_true = _encode(y_test)
    res.scores = _scores(y_true, pred_test)
    res.baselines = _baselines(df, feats, test.index, y_true, config)
    # A label for every row: the label model's where the LFs voted (thresholds from the train split),
    # the classifier's where they all abstained, the user's where given.
    L_all = auto.label_matrix(df, stats=train_stats)
    covered = (L_all != -1).any(axis=1)
    lm = auto.label_model.predict_proba(L_all)[:, 1]
    p_noise = np.where(covered, lm, all_proba)
    lab = np.where(covered, (lm >= 0.5).astype(int), all_pred)
    out["label"] = np.array(CLASSES)[lab]
    out["probability"] = p_noise
    out["label_source"] = np.where(covered, "label_model", "classifier")
    if user:
        given = df["label"].notna().to_numpy()
        out.loc[given, "label"] = df.loc[given, "label"].astype(str).to_numpy()
        out.loc[given, "label_source"] = "user"
        out.loc[given, "probability"] = (df.loc[given, "label"] == "noise").astype(float).to_numpy()
    try:
        from flamenco_core.explain import build_tree, render_text

        tree = build_tree(auto.pack, train, importance=_importance(auto), mode="faithful")
        res.tree_text = render_text(tree)
        res.tree_json = tree.to_json()
    except Exception as exc:  # the tree is an explanation, not a result: record and go on
        res.tree_text = f"(tree not built: {type(exc).__name__}: {exc})"
    res.autolf["dropped_unlabeled_train_rows"] = int(dropped)
    return res, out


def _importance(auto) -> dict[str, float]:
    """Tree node order: the committed heuristics' order (Snuba commits the best-scoring first)."""
    order: dict[str, float] = {}
    for rank, h in enumerate(auto.heuristics):
        for f in h.features:
            order.setdefault(f, float(len(auto.heuristics) - rank))
    return order


def _baselines(df: pd.DataFrame, feats: Sequence[str], test_index, y_true: np.ndarray, config: LatencyConfig) -> dict:
    """Each unsupervised method sees the whole subset (no labels) and is scored on its test rows."""
    from flamenco_core.models import run_baselines

    X = df[list(feats)].to_numpy(dtype="float64")
    labels = run_baselines(X, list(config.baselines), config.contamination, config.seed, index=df.index)
    out = {}
    for m in labels.columns:
        col = labels.loc[test_index, m]
        if col.isna().all():
            continue
        out[m] = _scores(y_true, col.astype("float64").to_numpy())
    return out


def run_pair(df: pd.DataFrame, config: LatencyConfig, *, source: str = "ark", plot_dir: Optional[Path] = None) -> PairResult:
    """Run the latency path on one SD pair (rows of one src/dst, any order)."""
    from flamenco_core.ingest.pairs import pair_id
    from flamenco_core.preprocess import detect_modes, plot_modality, split_by_modes

    t0 = time.perf_counter()
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    src, dst = str(df["src"].iloc[0]), str(df["dst"].iloc[0])
    has_labels = "label" in df.columns and df["label"].notna().any()
    if not has_labels and "label" in df.columns:
        df = df.drop(columns=["label"])
    empty = pd.DataFrame(index=df.index, data={"label": pd.Series(pd.NA, index=df.index, dtype="string"),
                                               "probability": np.nan, "label_source": pd.Series(pd.NA, index=df.index, dtype="string")})

    def done(outcome, reason, modality, subsets, labels, plot=None):
        return PairResult(src, dst, len(df), outcome, reason, modality, subsets, _labels_frame(df, labels),
                          time.perf_counter() - t0, plot)

    if len(df) < config.min_points:
        return done("skipped", f"{len(df)} rows, fewer than min_points={config.min_points}", {}, [], empty)
    rtt = df["rtt_ms"].to_numpy(dtype="float64")
    mod = detect_modes(rtt, min_height=config.modality.min_height, bw_method=config.modality.bw_method, seed=config.seed)
    modality = mod.to_dict() if hasattr(mod, "to_dict") else {"n_modes": mod.n_modes}
    modality = {k: v for k, v in modality.items() if k not in ("grid", "density")}
    modality["label"] = mod.label
    plot = None
    if plot_dir is not None and config.modality.plot:
        Path(plot_dir).mkdir(parents=True, exist_ok=True)
        plot = str(plot_modality(rtt, mod, Path(plot_dir) / f"{pair_id(src, dst)}_kde.png", title=f"{src} -> {dst}"))
    split = split_by_modes(df, mod, min_subset=config.modality.min_subset, tiny=config.modality.tiny)
    modality["subsets"] = split.outcomes
    ratios = resolve_ratios(config, source)
    results, frames = [], []
    for i, sub in enumerate(split.subsets):
        r, lab = run_subset(sub.sort_values("timestamp", kind="stable"), i, config, ratios, has_labels)
        results.append(r)
        frames.append(lab)
    labels = pd.concat(frames).reindex(df.index) if frames else empty
    ok = [r for r in results if r.scores]
    outcome = "ok" if ok and all(r.outcome == "ok" for r in results) else ("partial" if ok else "skipped")
    reason = "; ".join(f"subset {r.subset}: {r.reason}" for r in results if r.reason)
    return done(outcome, reason, modality, results, labels, plot)


def _labels_frame(df: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "timestamp": df["timestamp"].to_numpy(), "src": df["src"].astype(str).to_numpy(),
        "dst": df["dst"].astype(str).to_numpy(), "rtt_ms": df["rtt_ms"].to_numpy(),
        "label": labels["label"].astype("string").to_numpy(), "probability": labels["probability"].to_numpy(dtype="float64"),
        "label_source": labels["label_source"].astype("string").to_numpy(),
    })


def summarize(pairs: Sequence[Union[PairResult, dict]]) -> dict[str, Any]:
    """``report.json``'s body: the pair records (:meth:`PairResult.report`) and their unweighted average."""
    records = [p.report() if isinstance(p, PairResult) else p for p in pairs]
    scored = [r for r in records if not np.isnan(r.get("f1_macro", np.nan))]
    avg = {k: float(np.nanmean([r[k] for r in scored])) if scored else float("nan") for k in METRIC_KEYS}
    methods = sorted({m for r in scored for m in r["baselines"]})
    avg["baselines"] = {
        m: {k: float(np.nanmean([r["baselines"][m][k] for r in scored if m in r["baselines"]])) for k in METRIC_KEYS}
        for m in methods
    }
    avg["pairs_scored"] = len(scored)
    return {"pairs": records, "average": avg}


def comparison_frame(summary: dict[str, Any]) -> pd.DataFrame:
    """Method x (f1_good, f1_noise, f1_macro) from :func:`summarize`'s average: FLAMENCO first."""
    avg = summary["average"]
    rows = [{"method": "flamenco", **{k: avg[k] for k in METRIC_KEYS}}]
    rows += [{"method": m, **v} for m, v in avg["baselines"].items()]
    return pd.DataFrame(rows).set_index("method")


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
