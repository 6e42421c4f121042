"""Label models compared on one LF pack and one dataset, for k >= 2 classes (issue 13).

:func:`prepare` splits the labeled rows and applies the pack, :func:`compare` fits each label model and
the baselines and scores them on the test split, :func:`write_outputs` writes the tables and plots. What
is scored and how: docs/cic2019_multiclass.md, section "The comparison"."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flamenco_core.errors import FlamencoError
from flamenco_core.labeling.constants import ABSTAIN
from flamenco_core.labeling.class_map import ClassMap
from flamenco_core.labeling.spec import LFPack, SpecError

SPLITS = ("train", "validation", "test")
BASELINES = ("majority_class", "isolation_forest", "simplest_rule")
#: Raw label column copy kept through the splits (the label column itself may be mapped).
RAW = "__raw_label"
GOLD = "__gold"


class ComparisonError(FlamencoError):
    """The comparison cannot start: no ground truth, too few rows, a class map that does not fit the pack."""


@dataclass
class PreparedComparison:
    """Splits with gold classes, the label matrix of each split and what was used to make them."""

    pack: LFPack
    classes: list[str]
    frames: dict[str, pd.DataFrame]
    L: dict[str, np.ndarray]
    y: dict[str, np.ndarray]
    stats: Any
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def covered_classes(self) -> list[str]:
        """Classes at least one LF votes for on the training split."""
        L = self.L["train"]
        voted = np.unique(L[L != ABSTAIN]) if L.size else np.array([], dtype=np.int64)
        return [self.classes[int(c)] for c in voted]


def _gold(data: pd.DataFrame, classes: list[str], class_map: Optional[ClassMap], column: str) -> tuple[pd.Series, dict[str, Any]]:
    col = class_map.column if class_map is not None else column
    if col not in data.columns:
        raise ComparisonError(f"no ground truth: the data has no {col!r} column")
    raw = data[col]
    if class_map is not None:
        gold = class_map.apply(raw)
    else:
        lookup = {c.lower(): c for c in classes}
        text = raw.astype("string").str.strip()
        gold = text.str.lower().map(lookup).astype("string")
    text = raw.astype("string").str.strip()
    unmapped = text[gold.isna() & text.notna() & (text != "")]
    report = {
        "column": col,
        "class_map": class_map.name if class_map is not None else None,
        "raw_counts": {str(k): int(v) for k, v in text.value_counts().items()},
        "counts": {str(k): int(v) for k, v in gold.value_counts().items()},
        "unmapped": {str(k): int(v) for k, v in unmapped.value_counts().items()},
    }
    return gold, report


def prepare(
    data: pd.DataFrame,
    pack: LFPack,
    class_map: Optional[ClassMap] = None,
    *,
    seed: int = 0,
    test: float = 0.2,
    validation: float = 0.2,
    label_column: str = "label",
) -> PreparedComparison:
    """Ground truth, splits, statistics of the training split and the label matrices (module docstring).

    Without ``class_map`` the label column must hold the pack's class names. Rows whose raw label maps to
    no class leave the comparison (counted in ``meta["ground_truth"]["unmapped"]``).
    """
    from flamenco_core.labeling.applier import apply_lfs, pack_problems
    from flamenco_core.labeling.stats import DataStatistics
    from flamenco_core.preprocess.splits import stratified_splits

    classes = list(pack.classes)
    if class_map is not None:
        class_map.check_classes(classes, where=f"pack {pack.name!r}")  # SpecError: a usage error (exit 2)
    problems = pack_problems(pack, data)
    if problems:  # a pack that does not fit the data is bad input (exit 2), as in flow records
        raise SpecError(str(problems[0]) + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    gold, gt_report = _gold(data, classes, class_map, label_column)
    df = data.reset_index(drop=True).copy()
    df[RAW] = df[gt_report["column"]].astype("string")
    df[GOLD] = gold.reset_index(drop=True)
    labeled = df[df[GOLD].notna()]
    if labeled.empty:
        raise ComparisonError(f"no row has a ground-truth class (raw labels: {gt_report['raw_counts']})")
    time_col = "timestamp" if "timestamp" in df.columns else None
    try:
        splits = stratified_splits(labeled, GOLD, test=test, validation=validation, seed=seed, time_col=time_col)
    except ValueError as exc:
        raise ComparisonError(f"cannot split: {exc}") from None
    frames = {"train": splits.train, "validation": splits.validation, "test": splits.test}
    stats = DataStatistics(frames["train"])
    L: dict[str, np.ndarray] = {}
    meta_apply = None
    for name, frame in frames.items():
        if name == "train":
            L[name], meta_apply = apply_lfs(pack, frame, stats=stats, return_meta=True)
        else:
            L[name] = apply_lfs(pack, frame, stats=stats)
    y = {name: pd.Categorical(f[GOLD].astype(object), categories=classes).codes.astype(np.int64) for name, f in frames.items()}
    meta = {
        "rows": {"input": int(len(df)), "labeled": int(len(labeled)), **{k: int(len(v)) for k, v in frames.items()}},
        "ground_truth": gt_report,
        "splits": splits.meta,
        "pack": {"pack": pack.name, "version": pack.version, "content_hash": pack.content_hash, "lfs": pack.lf_names},
        "statistics_source": "training split",
        "thresholds": meta_apply.thresholds if meta_apply is not None else {},
        "seed": seed,
    }
    return PreparedComparison(pack, classes, frames, L, y, stats, meta)


# ----------------------------------------------------------------------------------------------------
# scoring


def scores(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str], covered: Sequence[str],
           abstain: str = "negative") -> dict[str, Any]:
    """Per-class F1 (``f1_<class>``), ``f1_macro`` (all classes), ``f1_macro_covered`` (the ``covered``
    ones), ``f1_weighted`` (by test support), ``accuracy`` and ``decided`` (share of conclusive rows)."""
    from flamenco_core.evaluation.metrics import classification_scores

    s = classification_scores(y_true, y_pred, list(classes), abstain=abstain)
    per = {c: float(s[f"f1_{c}"]) for c in classes}
    support = np.array([s[f"support_{c}"] for c in classes], dtype=np.float64)
    present = [c for c, n in zip(classes, support) if n > 0]
    cov = [c for c in covered if c in present]
    out: dict[str, Any] = {f"f1_{c}": per[c] for c in classes}
    out["f1_macro"] = float(np.mean([per[c] for c in present])) if present else math.nan
    out["f1_macro_covered"] = float(np.mean([per[c] for c in cov])) if cov else math.nan
    out["f1_weighted"] = float(np.dot(support, [per[c] for c in classes]) / support.sum()) if support.sum() else math.nan
    out["accuracy"] = float(s["accuracy"])
    out["decided"] = float(np.mean(np.asarray(y_pred) != ABSTAIN)) if len(y_pred) else math.nan
    return out


@dataclass
class Comparison:
    """What :func:`compare` found: one row per model in ``table`` (index: model), the fits' records,
    test predictions per model, the chosen label model and the prepared data."""

    prepared: PreparedComparison
    table: pd.DataFrame
    fits: list[dict[str, Any]]
    predictions: dict[str, np.ndarray]
    best_label_model: Optional[str]
    covered: list[str]
    notes: list[str] = field(default_factory=list)

    def per_class(self) -> pd.DataFrame:
        """Per-class F1 (rows: models, columns: classes)."""
        cols = [f"f1_{c}" for c in self.prepared.classes]
        out = self.table[cols].copy()
        out.columns = self.prepared.classes
        return out

    def confusion(self, model: str) -> pd.DataFrame:
        """Confusion matrix of ``model`` on test (true class x predicted class, plus inconclusive)."""
        from flamenco_core.evaluation.metrics import confusion_matrix

        return confusion_matrix(self.prepared.y["test"], self.predictions[model], self.prepared.classes)

    def raw_label_table(self, model: str) -> pd.DataFrame:
        """Test rows by raw label (rows) and ``model``'s predicted class (columns, plus inconclusive)."""
        pred = self.predictions[model]
        names = np.array(self.prepared.classes + ["inconclusive"], dtype=object)
        shown = names[np.where(pred == ABSTAIN, len(self.prepared.classes), pred)]
        raw = self.prepared.frames["test"][RAW].astype(object).to_numpy()
        table = pd.crosstab(pd.Series(raw, name="raw label"), pd.Series(shown, name="predicted"))
        return table.reindex(columns=[c for c in names if c in table.columns])


def _features(train: pd.DataFrame) -> list[str]:
    from flamenco_core.labeling.audit import is_identifier_feature
    from flamenco_core.preprocess.feature_selection import NON_FEATURES, numeric_features

    skip = set(NON_FEATURES) | {RAW, GOLD}
    feats = [f for f in numeric_features(train, skip) if not is_identifier_feature(f)]
    values = train[feats].to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.where(np.isfinite(values), values, np.nan)
    varying = np.nanstd(finite, axis=0) > 0
    return [f for f, v in zip(feats, varying) if v]


def _matrix(frame: pd.DataFrame, features: Sequence[str], medians: np.ndarray) -> np.ndarray:
    X = frame[list(features)].to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(X)
    # CICFlowMeter's Infinity rates: the training median stands in (as the flow-records pipeline does)
    return np.where(bad, medians[None, :], X)


def _label_model_predictions(model: Any, L: np.ndarray) -> np.ndarray:
    pred = np.asarray(model.predict(L), dtype=np.int64)
    pred[~(L != ABSTAIN).any(axis=1)] = ABSTAIN
    return pred


def compare(
    prep: PreparedComparison,
    kinds: Optional[Sequence[str]] = None,
    *,
    params: Optional[Mapping[str, Mapping[str, Any]]] = None,
    abstain: str = "negative",
    end_model: Optional[str] = "random_forest",
    end_model_params: Optional[Mapping[str, Any]] = None,
    baselines: bool = True,
    seed: int = 0,
) -> Comparison:
    """Fit and score every label model of ``kinds`` (default: all), the baselines and the end classifier
    (``end_model=None`` skips it). See the module docstring."""
    from flamenco_core.labeling.label_models import KINDS, fit_all
    from flamenco_core.labeling.label_model import labeled_mask

    classes = prep.classes
    k = len(classes)
    covered = prep.covered_classes
    y_te, y_va = prep.y["test"], prep.y["validation"]
    L_tr, L_va, L_te = prep.L["train"], prep.L["validation"], prep.L["test"]
    rows: dict[str, dict[str, Any]] = {}
    predictions: dict[str, np.ndarray] = {}
    notes: list[str] = []
    fits = fit_all(L_tr, k, kinds=list(kinds or KINDS), seed=seed, params={kk: dict(v) for kk, v in (params or {}).items()})
    fit_records = []
    val_scores: dict[str, float] = {}
    for r in fits:
        rec = r.describe()
        fit_records.append(rec)
        row = {"kind": "label_model", "model": rec["name"], "fallback": rec["fallback_reason"] or "",
               "fit_seconds": r.seconds, "coverage": float(labeled_mask(L_te).mean()) if len(L_te) else math.nan,
               "error": r.error or ""}
        if r.model is not None:
            t0 = time.perf_counter()
            pred = _label_model_predictions(r.model, L_te)
            row["predict_seconds"] = time.perf_counter() - t0
            predictions[r.kind] = pred
            row.update(scores(y_te, pred, classes, covered, abstain))
            val_scores[r.kind] = scores(y_va, _label_model_predictions(r.model, L_va), classes, covered, abstain)["f1_macro_covered"]
        rows[r.kind] = row
    ok = {kk: v for kk, v in val_scores.items() if v == v}
    best = max(ok, key=lambda kk: (ok[kk], -list(val_scores).index(kk))) if ok else None

    if baselines:
        train = prep.frames["train"]
        y_tr = prep.y["train"]
        majority = int(np.bincount(y_tr, minlength=k).argmax())
        predictions["majority_class"] = np.full(len(y_te), majority, dtype=np.int64)
        rows["majority_class"] = {"kind": "baseline", "model": f"always {classes[majority]}", "fallback": "",
                                  "fit_seconds": 0.0, "coverage": 1.0, "error": "",
                                  **scores(y_te, predictions["majority_class"], classes, covered, abstain)}
        feats = _features(train)
        if feats:
            from sklearn.ensemble import IsolationForest

            med = np.nanmedian(np.where(np.isfinite(train[feats].to_numpy(dtype=np.float64, na_value=np.nan)),
                                        train[feats].to_numpy(dtype=np.float64, na_value=np.nan), np.nan), axis=0)
            med = np.nan_to_num(med)
            t0 = time.perf_counter()
            iso = IsolationForest(random_state=seed, n_estimators=100).fit(_matrix(train, feats, med))
            seconds = time.perf_counter() - t0
            counts = np.bincount(y_tr, minlength=k)
            counts[0] = -1
            other = int(counts.argmax())
            out = iso.predict(_matrix(prep.frames["test"], feats, med)) == -1
            predictions["isolation_forest"] = np.where(out, other, 0).astype(np.int64)
            rows["isolation_forest"] = {"kind": "baseline", "model": f"inlier {classes[0]}, outlier {classes[other]}",
                                        "fallback": "", "fit_seconds": seconds, "coverage": 1.0, "error": "",
                                        **scores(y_te, predictions["isolation_forest"], classes, covered, abstain)}
        literal = [j for j, lf in enumerate(prep.pack.lfs)
                   if all(not isinstance(v, str) for c in lf.when for v in c.values)]
        if literal:
            from flamenco_core.labeling.label_model import majority_vote

            pred = majority_vote(L_te[:, literal], k)
            predictions["simplest_rule"] = pred
            names = [prep.pack.lfs[j].name for j in literal]
            rows["simplest_rule"] = {"kind": "baseline", "model": f"{len(literal)} literal LFs (ports, protocol), majority vote",
                                     "fallback": "", "fit_seconds": 0.0,
                                     "coverage": float(labeled_mask(L_te[:, literal]).mean()) if len(L_te) else math.nan,
                                     "error": "", **scores(y_te, pred, classes, covered, abstain)}
            notes.append(f"simplest_rule: {', '.join(names)}")
        else:
            notes.append("simplest_rule: the pack has no LF with literal thresholds only")

    if end_model is not None and best is not None:
        model = next(r.model for r in fits if r.kind == best)
        _end_classifier(prep, model, best, end_model, dict(end_model_params or {}), seed, covered, abstain,
                        rows, predictions, notes)
    elif end_model is not None:
        notes.append("end_classifier: no label model could be fitted")

    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "model_key"
    return Comparison(prep, table, fit_records, predictions, best, covered, notes)


def _end_classifier(prep: PreparedComparison, model: Any, best: str, kind: str, params: dict[str, Any], seed: int,
                    covered: list[str], abstain: str, rows: dict, predictions: dict, notes: list[str]) -> None:
    from flamenco_core.labeling.label_model import labeled_mask
    from flamenco_core.models.select import build_model

    classes = prep.classes
    k = len(classes)
    train = prep.frames["train"]
    feats = _features(train)
    keep = labeled_mask(prep.L["train"])
    if not feats or keep.sum() < 2:
        notes.append("end_classifier: no features or fewer than 2 covered training rows")
        return
    P = model.predict_proba(prep.L["train"])[keep]
    if len(np.unique(P.argmax(axis=1))) < 2:
        notes.append("end_classifier: the label model's training labels hold one class")
        return
    raw = train[feats].to_numpy(dtype=np.float64, na_value=np.nan)
    med = np.nan_to_num(np.nanmedian(np.where(np.isfinite(raw), raw, np.nan), axis=0))
    defaults = {"n_iter": 3, "n_splits": 3, "class_weight": "balanced",
                "param_distributions": {"n_estimators": [50, 100], "max_depth": [8, None], "bootstrap": [True]}}
    est = build_model(kind, {**defaults, **params} if kind == "random_forest" else params, seed=seed)
    t0 = time.perf_counter()
    est.fit(_matrix(train, feats, med)[keep], P)
    seconds = time.perf_counter() - t0
    proba = np.asarray(est.predict_proba(_matrix(prep.frames["test"], feats, med)), dtype=np.float64)
    full = np.zeros((len(proba), k))
    full[:, np.asarray(est.classes_, dtype=np.int64)] = proba
    pred = full.argmax(axis=1).astype(np.int64)
    predictions["end_classifier"] = pred
    rows["end_classifier"] = {"kind": "end_model", "model": f"{kind} on {best}'s labels ({len(feats)} features)",
                              "fallback": "", "fit_seconds": seconds, "coverage": 1.0, "error": "",
                              **scores(prep.y["test"], pred, classes, covered, abstain)}


# ----------------------------------------------------------------------------------------------------
# outputs


SUMMARY_COLUMNS = ("kind", "model", "f1_macro_covered", "f1_macro", "f1_weighted", "accuracy", "coverage",
                   "decided", "fit_seconds", "fallback")


def summary_table(comp: Comparison) -> pd.DataFrame:
    """The comparison's headline columns (one row per model; ``used``: the model that produced the labels,
    which differs from the row's name after a fallback)."""
    return comp.table[[c for c in SUMMARY_COLUMNS if c in comp.table.columns]].rename(columns={"model": "used"})


def _markdown(df: pd.DataFrame, index_name: str) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, (float, np.floating)):
            return "n/a" if v != v else f"{float(v):.3f}"
        return str(v).replace("|", "\\|")

    header = [index_name] + [str(c) for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] + ["---:"] * len(df.columns)) + " |"]
    lines += ["| " + " | ".join([str(i)] + [cell(v) for v in row]) + " |" for i, row in zip(df.index, df.itertuples(index=False))]
    return "\n".join(lines) + "\n"


def write_outputs(comp: Comparison, out_dir: Union[str, Path], *, plots: bool = True) -> dict[str, Any]:
    """``comparison.csv``/``.md`` (all columns), ``per_class_f1.csv``/``.md``, per model a confusion matrix
    (``confusion_<model>.csv``, ``.png`` for the best label model, the end classifier and the baselines
    when ``plots``), ``raw_labels_<model>.csv`` and ``report.json`` last (its ``artifacts``: paths relative to
    ``out_dir``). Returns the report."""
    from flamenco_core.outputs import atomic_write_text, json_ready

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").unlink(missing_ok=True)
    arts: dict[str, str] = {}
    # every file goes to a temporary name first and is renamed when complete; the report comes last
    atomic_write_text(out / "comparison.csv", comp.table.to_csv())
    atomic_write_text(out / "comparison.md", _markdown(summary_table(comp), "model"))
    per = comp.per_class()
    atomic_write_text(out / "per_class_f1.csv", per.to_csv())
    atomic_write_text(out / "per_class_f1.md", _markdown(per, "model"))
    # artifact paths relative to the folder, as in every other report: the folder can be moved whole
    arts.update({"comparison_csv": "comparison.csv", "comparison_md": "comparison.md",
                 "per_class_csv": "per_class_f1.csv", "per_class_md": "per_class_f1.md"})
    pngs = {m for m in (comp.best_label_model, "end_classifier", "majority_class", "isolation_forest") if m}
    for name in comp.predictions:
        cm = comp.confusion(name)
        atomic_write_text(out / f"confusion_{name}.csv", cm.to_csv())
        atomic_write_text(out / f"raw_labels_{name}.csv", comp.raw_label_table(name).to_csv())
        arts[f"confusion_{name}_csv"] = f"confusion_{name}.csv"
        if plots and name in pngs:
            from flamenco_core.evaluation.plots import confusion_matrix_plot

            path = confusion_matrix_plot(cm, out / f"confusion_{name}.png", title=f"{name} on test"[:90])
            arts[f"confusion_{name}_png"] = Path(path).name
    report = {
        "pipeline": "label_model_comparison",
        "classes": comp.prepared.classes,
        "covered_classes": comp.covered,
        "uncovered_classes": [c for c in comp.prepared.classes if c not in comp.covered],
        "best_label_model": comp.best_label_model,
        "best_label_model_chosen_on": "validation split, macro F1 over the covered classes",
        "definitions": {
            "f1_macro_covered": "mean per-class F1 over the classes at least one LF votes for on the training split",
            "f1_macro": "mean per-class F1 over the classes with test rows",
            "coverage": "share of test rows at least one LF votes on",
            "inconclusive": "a row no LF votes on, or a tie; counted as the first class (abstain=negative)",
        },
        "models": comp.table.reset_index().to_dict(orient="records"),
        "fits": comp.fits,
        "notes": comp.notes,
        "preparation": comp.prepared.meta,
        "artifacts": arts,
    }
    atomic_write_text(out / "report.json", json.dumps(json_ready(report), indent=2))
    return report


__all__ = ["BASELINES", "Comparison", "ComparisonError", "PreparedComparison", "compare", "prepare", "scores",
           "summary_table", "write_outputs"]
