"""One SD pair end to end: every modality subset labeled at the best level its labeled rows support,
scored against the unsupervised baselines and the rolling-median/MAD rule."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import pandas as pd

from .config import CLASSES, LatencyConfig
from .features import baseline_features, pair_features, prepare_pair, subset_features
from .levels import (Learner, SourceLevel, describe_subset, deviation_floor, envelope_labels, guard_labels, learn_level,
                     learnable)
from .results import PairResult, SubsetResult, class_scores, confusion, encode_labels, labels_frame, score_labels


def preload(threads: Optional[int] = 1) -> None:
    """Import what :func:`run_pair` needs (scipy's KDE and peaks, scikit-learn's estimators, torch) and,
    with ``threads``, cap the BLAS/OpenMP pools at that many threads: a worker process's initializer,
    so that the import cost (seconds) is paid once per worker, before its first pair, and parallel
    workers do not oversubscribe the cores."""
    import importlib

    for name in ("scipy.signal", "scipy.stats", "sklearn.ensemble", "sklearn.neighbors", "sklearn.covariance",
                 "sklearn.model_selection", "torch", "flamenco_core.autolf", "flamenco_core.labeling",
                 "flamenco_core.explain", "flamenco_core.models.lstm", "flamenco_core.models.forest",
                 "flamenco_core.models.baselines", "flamenco_core.preprocess"):
        importlib.import_module(name)
    if threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)


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
        res = PairResult(src, dst, len(df), outcome, reason, modality, subsets, labels_frame(df, labels),
                         time.perf_counter() - t0, plot)
        res.extra = extra or {}
        return res

    if len(df) < config.min_points:
        return done("skipped", f"{len(df)} rows, fewer than min_points={config.min_points}: lower min_points in the "
                               "config to label it", {}, [], empty)
    prep = prepare_pair(df, config, source, has_labels, plot_dir=plot_dir, name=(src, dst))
    rtt, modality, plot, split, work = prep.rtt, prep.modality, prep.plot, prep.split, prep.work
    pool, pool_source, val_idx, test_idx, train_idx, unlabeled = (prep.pool, prep.pool_source, prep.val_idx, prep.test_idx,
                                                                   prep.train_idx, prep.unlabeled)

    # The pair level: LFs on relative features only, learned from every subset's labeled rows, for
    # subsets whose own labeled rows are too few or one-class. Learned on first need: when every subset
    # learns its own, the pair level's Snuba run and end-model search would be thrown away.
    pair = _PairLevel(work, pool, val_idx, train_idx, borrowed, config)
    # The labeled good rows bound normal behaviour: far beyond that bound is noise whatever the learned
    # LFs say (they learned their cuts from the labeled noise, which may not show every kind of noise).
    envelope = envelope_labels(work, pool, config)
    floor = deviation_floor(work, pool, config)

    labels = empty.copy()
    predicted = pd.Series(pd.NA, index=df.index, dtype="string")
    results = []
    base_cols: dict[str, pd.Series] = {}
    for i in range(len(split.subsets)):
        rows = work[work["subset"] == i]
        r, lab = _run_subset(i, rows, pool, val_idx, test_idx, train_idx, pair, pool_source, config, envelope,
                             floor)
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
            y_true = encode_labels(pool.loc[t])
            r.baselines["rolling_mad"] = class_scores(y_true, base_cols["rolling_mad"].loc[t].astype("float64").to_numpy())
    if has_labels:
        given = df["label"].notna()
        labels.loc[given, "label"] = df.loc[given, "label"].astype(str)
        labels.loc[given, "label_source"] = "user"
        labels.loc[given, "probability"] = (df.loc[given, "label"] == "noise").astype(float)
    extra = {"pool_source": pool_source, "pair_reason": pair.reason,
             "pool_rows": int(pool.notna().sum()), "unlabeled_rows": int(len(unlabeled)),
             "deviation_floor": floor.to_dict()}
    if truth is not None:
        outside = (pool.reindex(df.index).isna() & truth.notna()).to_numpy()
        extra["truth_rows"] = int(outside.sum())
        if outside.any():
            t_true = truth[outside].to_numpy()
            ours = predicted[outside].fillna("good").to_numpy()
            theirs = {m: np.where(col[outside].fillna(0).to_numpy() == 1, "noise", "good")
                      for m, col in base_cols.items() if col[outside].notna().any()}
            extra["f1_unlabeled"] = score_labels(t_true, ours)
            extra["baselines_unlabeled"] = {m: score_labels(t_true, v) for m, v in theirs.items()}
            extra["confusion_unlabeled"] = {m: confusion(t_true, v) for m, v in {"flamenco": ours, **theirs}.items()}
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


def _run_subset(i: int, rows: pd.DataFrame, pool: pd.Series, val_idx, test_idx, train_idx, pair: "_PairLevel",
                pool_source: str, config: LatencyConfig, envelope,
                floor=None) -> tuple[SubsetResult, pd.DataFrame]:
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
    subset_feats = subset_features(config)
    learner = None
    ok_sub, why = learnable(pool.loc[v], config)
    if ok_sub and len(tr) >= config.window:
        learner, fail = learn_level("subset", rows.loc[v].assign(label=pool.loc[v]), rows.loc[tr], subset_feats, config, len(rows))
        if learner is None:
            why = fail
    elif ok_sub:
        why = f"{len(tr)} unlabeled rows, fewer than the window of {config.window}"
    if learner is not None:
        lab, p, src = guard_labels(*learner.predict(rows), envelope, rows, res, config, floor)
        res.model, res.level, res.trials = learner.kind, "subset", learner.trials
        if learner.reason:
            res.reason = learner.reason
        describe_subset(res, learner, rows.loc[tr])
    elif pair.learner is not None:
        pair_learner = pair.learner
        mine = pair.pred.loc[rows.index]
        lab, p, src = guard_labels(mine["label"].to_numpy(), mine["probability"].to_numpy(), mine["label_source"].to_numpy(),
                                   envelope, rows, res, config, floor)
        res.model, res.level = pair_learner.kind, pair_learner.level
        res.trials = list(getattr(pair_learner, "trials", []))
        res.reason = f"learned at the {pair_learner.level} level ({why})"
        if isinstance(pair_learner, Learner):
            describe_subset(res, pair_learner, rows.loc[tr])
        else:
            res.pack_yaml = pair_learner.pack_yaml
    else:
        lab = envelope[0].loc[rows.index].to_numpy()
        p = lab.astype(float)
        src = np.full(len(rows), "envelope", dtype=object)
        res.model, res.level, res.outcome = "envelope", "envelope", "fallback"
        res.reason = f"no level could learn ({why}; {pair.reason}): noise where {envelope[1]}"
    out["label"] = np.array(CLASSES)[np.asarray(lab, dtype=int)]
    out["probability"] = np.asarray(p, dtype="float64")
    out["label_source"] = np.asarray(src, dtype=object)
    out["level"] = res.level
    from flamenco_core.models import run_baselines

    # each unsupervised method sees the whole subset; its labels are scored on the test rows here and on
    # the rows outside the pool by run_pair
    res.baseline_labels = run_baselines(rows[baseline_features(config)].to_numpy(dtype="float64"), list(config.baselines),
                                        config.contamination, config.seed, index=rows.index)
    used = learner if learner is not None else pair.learner
    res.notes = [n for n in (getattr(used, "note", ""),) if n]
    res.notes += [f"{m}: {part}" for m, o in res.baseline_labels.attrs.get("outcomes", {}).items()
                  for part in o.get("reason", "").split("; ") if "subsample" in part]
    if len(t):
        y_true = encode_labels(pool.loc[t])
        res.scores = class_scores(y_true, encode_labels(out.loc[t, "label"]))
        for m in res.baseline_labels.columns:
            col = res.baseline_labels.loc[t, m]
            if not col.isna().all():
                res.baselines[m] = class_scores(y_true, col.astype("float64").to_numpy())
    return res, out


class _PairLevel:
    """The pair level of one pair, learned on first use (``learner``): LFs on the pair's relative features
    from every subset's labeled rows, or the source level's when the pair's own cannot teach them."""

    def __init__(self, work: pd.DataFrame, pool: pd.Series, val_idx, train_idx, borrowed, config: LatencyConfig):
        self._args = (work, pool, val_idx, train_idx, borrowed, config)
        self._done = False
        self._learner = None
        self.pred: Optional[pd.DataFrame] = None
        ok, why = learnable(pool.loc[val_idx], config)
        # Until it is needed, the report says why it was not learned.
        self.reason = "pair level not needed: every subset learned its own LFs" if ok else f"pair level: {why}"
        self._learnable = ok
        if not ok and borrowed is None:
            self._done = True  # nothing to learn and nothing to borrow

    @property
    def learner(self):
        if not self._done:
            self._learn()
        return self._learner

    def _learn(self) -> None:
        work, pool, val_idx, train_idx, borrowed, config = self._args
        self._done = True
        if self._learnable:
            self._learner, self.reason = learn_level("pair", work.loc[val_idx].assign(label=pool.loc[val_idx]),
                                                     work.loc[train_idx], pair_features(config), config, len(work))
        if self._learner is None and borrowed is not None:
            # relative features transfer across pairs: LFs learned on the source's pooled labeled rows
            self._learner = borrowed if isinstance(borrowed, SourceLevel) else SourceLevel.from_dict(borrowed)
            self.reason += f"; LFs learned on {self._learner.pairs} pairs of the same source"
        if self._learner is not None:
            self.pred = pd.DataFrame(dict(zip(("label", "probability", "label_source"), self._learner.predict(work))),
                                     index=work.index)


def _threshold(rtt: np.ndarray, config: LatencyConfig) -> dict[str, Any]:
    from flamenco_core.preprocess import threshold_stats

    return threshold_stats(rtt, method=config.thresholds.method, k=config.thresholds.k)


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
    out = labels_frame(df, labels)
    out["note"] = reason
    return out
