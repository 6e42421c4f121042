"""What a latency run reports: per-subset and per-pair results, F1 with the latency path's
conventions, outcome counts and the run's summary and comparison table."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .config import CLASSES, METRIC_KEYS


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
    notes: list[str] = field(default_factory=list)  # estimators fitted on a sample of the rows (end model, baselines)
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
        return mean_scores([s.scores for s in self.subsets if s.scores])

    @property
    def baseline_scores(self) -> dict[str, dict[str, float]]:
        names = sorted({m for s in self.subsets for m in s.baselines})
        return {m: mean_scores([s.baselines[m] for s in self.subsets if m in s.baselines]) for m in names}

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
                 "envelope_added": int(s.autolf.get("envelope_added", 0)),
                 "deviation_floor_removed": int(s.autolf.get("deviation_floor_removed", 0)), "notes": list(s.notes)}
                for s in self.subsets
            ],
            "seconds": round(self.seconds, 2),
        }
        for k in ("pool_source", "pool_rows", "unlabeled_rows", "pair_reason", "truth_rows", "deviation_floor"):
            if k in self.extra:
                rec[k] = self.extra[k]
        if "truth_rows" in self.extra:
            fu = self.extra.get("f1_unlabeled", nan3)
            rec["f1_unlabeled"] = {k: fu.get(k, float("nan")) for k in METRIC_KEYS}
            rec["baselines_unlabeled"] = {m: {k: v.get(k, float("nan")) for k in METRIC_KEYS}
                                          for m, v in self.extra.get("baselines_unlabeled", {}).items()}
            if "confusion_unlabeled" in self.extra:
                rec["confusion_unlabeled"] = self.extra["confusion_unlabeled"]
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


def mean_scores(items: list[dict[str, float]]) -> dict[str, float]:
    if not items:
        return {}
    keys = [k for k in METRIC_KEYS if any(k in d for d in items)]
    out = {}
    for k in keys:
        v = np.array([d.get(k, np.nan) for d in items], dtype="float64")
        # An F1 undefined in every subset (no test point of that class) stays NaN, without numpy's warning.
        out[k] = float(v[~np.isnan(v)].mean()) if (~np.isnan(v)).any() else float("nan")
    return out


def class_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
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
    return class_scores(encode_labels(pd.Series(np.asarray(truth, dtype=object))), encode_labels(pd.Series(np.asarray(pred, dtype=object))))


def confusion(truth, pred) -> list[list[int]]:
    """Row counts ``[true class][predicted class]`` (classes in :data:`CLASSES` order) of class-name arrays,
    what pooled F1 adds up over pairs. Rows without a truth are left out; a prediction that is missing
    counts as "good", the abstain-is-negative policy of :func:`score_labels`."""
    t = encode_labels(pd.Series(np.asarray(truth, dtype=object)))
    p = encode_labels(pd.Series(np.asarray(pred, dtype=object)))
    keep = ~np.isnan(t)
    cells = t[keep].astype(np.int64) * len(CLASSES) + np.nan_to_num(p[keep], nan=0.0).astype(np.int64)
    counts = np.bincount(cells, minlength=len(CLASSES) ** 2).reshape(len(CLASSES), len(CLASSES))
    return counts.tolist()


def pooled_scores(matrices: Sequence[Sequence[Sequence[int]]]) -> dict[str, float]:
    """F1 (good, noise, macro) over every row of the :func:`confusion` matrices together: each row counts
    once, so a pair of 100 rows weighs a hundredth of one of 10,000 (the pair average weighs them alike).
    Scored by the same kernel as :func:`score_labels`, on the rows the counts stand for."""
    total = np.sum(np.asarray(matrices, dtype=np.int64).reshape(-1, len(CLASSES), len(CLASSES)), axis=0)
    k = len(CLASSES)
    y_true = np.repeat(np.repeat(np.arange(k), k), total.ravel()).astype("float64")
    y_pred = np.repeat(np.tile(np.arange(k), k), total.ravel()).astype("float64")
    return {**class_scores(y_true, y_pred), "rows": int(total.sum())}


def encode_labels(labels: pd.Series) -> np.ndarray:
    return labels.map({c: i for i, c in enumerate(CLASSES)}).to_numpy(dtype="float64")


def labels_frame(df: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
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
        conf = [r["confusion_unlabeled"] for r in truth if r.get("confusion_unlabeled")]
        if conf:
            # beside the pair average: F1 over all the rows at once, where a big pair weighs more
            methods = sorted({m for c in conf for m in c}, key=lambda m: (m != "flamenco", m))
            avg["f1_unlabeled_pooled"] = {m: pooled_scores([c[m] for c in conf if m in c]) for m in methods}
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
        pooled = avg.get("f1_unlabeled_pooled") or {}
        if pooled:
            for k in ("f1_noise", "f1_macro"):
                table[f"pooled_{k}"] = [pooled.get(m, {}).get(k, float("nan")) for m in table.index]
    return table
