"""The stages of one LF combination, each a short function over the combination's :class:`Stage` inputs
and its :class:`~flamenco_core.experiments.flow_records.record.CombinationRecord`:
:func:`correlate_features`, :func:`score_lfs`, :func:`build_trees`, :func:`fit_label_model`,
:func:`fit_end_model`, :func:`compare_predictions`; :func:`run_combination` runs them in that order."""

from __future__ import annotations

import contextlib
import itertools
import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
import pandas as pd

from flamenco_core.experiments.flow_records import outputs
from flamenco_core.experiments.flow_records.catalog import Combination
from flamenco_core.experiments.flow_records.config import FlowRecordsConfig
from flamenco_core.experiments.flow_records.prepare import (
    ROW,
    SPLITS,
    Prepared,
    all_rows,
    feature_matrix,
    is_numeric,
)
from flamenco_core.experiments.flow_records.record import CombinationRecord
from flamenco_core.labeling.constants import ABSTAIN

# torch's random number generator is process-wide, so fits in threads would interleave their draws:
# label model and LSTM fits take this lock, which keeps results independent of how many combinations
# run at once.
_TORCH_LOCK = threading.Lock()

#: Record fields that are F1 (or recall) of the positive class: undefined together when the test split
#: holds no row of that class.
POSITIVE_SCORES = ("lf_f1", "lf_recall", "cls_f1", "cls_recall", "tree_f1", "tree_f1_paper")


@dataclass
class Stage:
    """What the stages of one combination read: the prepared experiment, the combination, its label-matrix
    columns per split, test gold labels, its numeric features, the output folder, and stage timings."""

    prep: Prepared
    combo: Combination
    out: Optional[Path]
    L: dict[str, np.ndarray] = field(default_factory=dict)
    y_test: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    features: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    @classmethod
    def of(cls, prep: Prepared, combo: Combination, rec: CombinationRecord, out: Optional[Path]) -> "Stage":
        """The inputs of ``combo``'s stages."""
        cols = prep.columns(combo.lfs)
        train = prep.frames["train"]
        return cls(prep, combo, out, L={s: prep.L[s][:, cols] for s in SPLITS}, y_test=prep.y("test"),
                   features=[f for f in rec.features if f in train.columns and is_numeric(train, f)])

    @property
    def cfg(self) -> FlowRecordsConfig:
        return self.prep.config

    @property
    def k(self) -> int:
        return len(self.prep.classes)

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        """Adds the block's seconds to ``timings[name]``."""
        tick = time.perf_counter()
        yield
        self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - tick


@dataclass
class Training:
    """The label model's training set: rows kept (``None``: no classifier), soft targets, what the record
    says about them, and why no classifier is trained (``None``: one is)."""

    keep: Optional[np.ndarray]
    targets: np.ndarray
    info: dict[str, Any]
    reason: Optional[str]


def correlate_features(st: Stage, rec: CombinationRecord) -> None:
    """Pearson and Spearman correlation of the features the LFs read (train); constant features noted."""
    from flamenco_core.preprocess.feature_selection import correlation_of

    for method in ("pearson", "spearman"):
        corr = st.prep.corr.get(method)
        value = correlation_of(st.features, corr) if corr is not None and st.features else math.nan
        setattr(rec, f"correlation_{method}", value)
    rec.correlation = getattr(rec, f"correlation_{st.cfg.correlation}")
    for f in rec.features:
        if f in st.prep.constant:
            rec.notes.append(f"feature {f!r} is {st.prep.constant[f]} on the training split: its correlations are undefined")


def score_lfs(st: Stage, rec: CombinationRecord) -> np.ndarray:
    """LF F1 (majority vote of the LFs; inconclusive rows as ``abstain`` says), coverage, overlap and
    conflicts on test; returns the LFs' decision per test row."""
    from flamenco_core.explain.tree import combination_decision
    from flamenco_core.labeling.analysis import combination_f1, label_summary

    L_te = st.L["test"]
    table = combination_f1(L_te, st.y_test, [list(range(L_te.shape[1]))], list(st.combo.lfs),
                           classes=st.prep.classes, abstain=st.cfg.abstain)
    row = table.iloc[0]
    summary = label_summary(L_te)
    rec.lf_f1, rec.lf_precision, rec.lf_recall = float(row["F1"]), float(row["Precision"]), float(row["Recall"])
    rec.decision_coverage, rec.ties = float(row["Coverage"]), float(row["Ties"])
    rec.coverage, rec.overlap, rec.conflicts = summary["coverage"], summary["overlap"], summary["conflict"]
    rec.coverage_train = label_summary(st.L["train"])["coverage"]
    rec.f1_definition = table.attrs["f1_definition"]
    if summary["coverage"] == 0:
        rec.notes.append(f"the LFs cover no test row: LF F1 is 0 (inconclusive rows count as {st.cfg.abstain})")
    decision = combination_decision(L_te, st.k)
    if st.k > 2:
        L_tr = st.L["train"]
        rec.covered_classes = [c for i, c in enumerate(st.prep.classes) if (L_tr == i).any()]
        _multiclass_scores(st, rec, "lf", decision)
    return decision


def _multiclass_scores(st: Stage, rec: CombinationRecord, prefix: str, pred: np.ndarray) -> None:
    """Per-class F1, macro F1 over the covered classes and weighted F1 of ``pred`` on test (k > 2), read
    as F1 reads inconclusive rows (``abstain``)."""
    from flamenco_core.experiments.label_model_comparison import scores

    classes = st.prep.classes
    s = scores(st.y_test, pred, classes, rec.covered_classes or [], st.cfg.abstain)
    setattr(rec, f"{prefix}_f1_per_class", {c: s[f"f1_{c}"] for c in classes})
    setattr(rec, f"{prefix}_f1_macro_covered", s["f1_macro_covered"])
    setattr(rec, f"{prefix}_f1_weighted", s["f1_weighted"])


def build_trees(st: Stage, rec: CombinationRecord) -> np.ndarray:
    """Both interpretability trees (faithful and the paper's), Tree F1 of each and their difference to the
    LFs on test; writes the trees. Returns the faithful tree's test predictions."""
    from flamenco_core.explain.build import compare_modes
    from flamenco_core.explain.tree import tree_f1

    prep, cfg, test = st.prep, st.cfg, st.prep.frames["test"]
    modes = compare_modes(prep.catalog.pack_of(list(st.combo.lfs)), test, stats=prep.stats,
                          importance=prep.importance or None, display_names=prep.display_names,
                          max_nodes=cfg.tree.max_nodes)
    tree = modes["faithful"]["tree"]
    rec.tree_f1 = tree_f1(tree, test, st.y_test, abstain=cfg.abstain)
    rec.tree_f1_paper = tree_f1(modes["paper"]["tree"], test, st.y_test, abstain=cfg.abstain)
    rec.tree_vs_lf_difference = float(modes["faithful"]["difference"])
    rec.tree_vs_lf_difference_paper = float(modes["paper"]["difference"])
    rec.tree_conditions, rec.tree_depth = int(modes["faithful"]["conditions"]), int(modes["faithful"]["depth"])
    if st.out is not None:
        outputs.write_trees(rec, modes, st.combo, st.out, cfg.tree.png)
    return tree.predict(test)


def fit_label_model(st: Stage, rec: CombinationRecord) -> tuple[Any, Training]:
    """The label model of ``label_model.kind`` on the training votes (its fallbacks recorded: Snorkel under
    3 LFs, crowd-kit's models per :mod:`flamenco_core.labeling.label_models`), and the training set it gives
    the end classifier (:func:`training_targets`)."""
    from flamenco_core.labeling.label_models import make

    cfg = st.cfg
    kwargs = dict(cfg.label_model.params) if cfg.label_model.kind == "snorkel" else {}
    lm = make(cfg.label_model.kind, n_lfs=st.L["train"].shape[1], cardinality=st.k, seed=cfg.seed, **kwargs)
    with _TORCH_LOCK if lm.name == "snorkel_label_model" else contextlib.nullcontext():
        lm.fit(st.L["train"])
    rec.label_model, rec.label_model_name, rec.label_model_fallback = lm.describe(), lm.name, lm.fallback_reason or ""
    training = training_targets(cfg, st.L["train"], lm.predict_proba(st.L["train"]), st.prep.classes)
    return lm, training


def fit_end_model(st: Stage, rec: CombinationRecord, lm: Any, training: Training) -> tuple[Any, Optional[np.ndarray]]:
    """The end classifier on the label model's soft labels, scored on test like LF F1; skips the
    combination when there is nothing to train on. Returns ``(estimator, test predictions)`` or ``(None, None)``."""
    features = classifier_features(st)
    info = training.info
    info["features"] = list(features)
    rec.training = info
    reason = training.reason
    if reason is None and not features:
        reason = "no classifier features (classifier_features selected none, or the LFs read no numeric feature)"
    if reason is not None:
        rec.skip(reason)
        return None, None
    with st.timed("classifier"):
        return _train_classifier(st, rec, lm, training, features)


def _train_classifier(st: Stage, rec: CombinationRecord, lm: Any, training: Training,
                      features: list[str]) -> tuple[Any, np.ndarray]:
    from flamenco_core.evaluation.metrics import classification_scores

    prep, cfg, classes, info = st.prep, st.cfg, st.prep.classes, training.info
    X_tr, bad_tr = feature_matrix(prep, prep.frames["train"], features)
    X_va, _ = feature_matrix(prep, prep.frames["validation"], features)
    X_te, bad_te = feature_matrix(prep, prep.frames["test"], features)
    info["imputed_values"] = bad_tr + bad_te
    val = training_targets(cfg, st.L["validation"], lm.predict_proba(st.L["validation"]), classes)
    X_val, P_val = (X_va[val.keep], val.targets[val.keep]) if val.keep is not None else (None, None)
    constant = info.get("constant_class")
    est = _fit_classifier(cfg, X_tr[training.keep], training.targets[training.keep], X_val, P_val, constant)
    if constant is not None:
        rec.notes.append(info["single_class_fallback"])
    cls_pred, _ = predict(est, X_te, st.k)
    scores = classification_scores(st.y_test, cls_pred, classes, abstain=cfg.abstain)
    rec.cls_f1, rec.cls_f1_macro, rec.cls_accuracy = scores["f1"], scores["f1_macro"], scores["accuracy"]
    rec.cls_precision = scores.get(f"precision_{classes[-1]}", math.nan)
    rec.cls_recall = scores.get(f"recall_{classes[-1]}", math.nan)
    if st.k > 2:
        _multiclass_scores(st, rec, "cls", cls_pred)
    rec.classifier = {"kind": "constant" if constant is not None else cfg.model.kind,
                      "params": {} if constant is not None else cfg.model.params(),
                      "epochs_run": getattr(est, "n_epochs_run_", None),
                      "best_params": getattr(est, "best_params_", None)}
    return est, cls_pred


def compare_predictions(st: Stage, rec: CombinationRecord, preds: dict[str, Optional[np.ndarray]]) -> None:
    """Pairwise prediction differences of LF / classifier / tree on a seeded sample of test, read as F1
    reads them (under ``abstain: negative`` an inconclusive decision is the negative class, else a value
    of its own); writes the confusion and difference matrices."""
    from flamenco_core.evaluation.metrics import prediction_difference_matrix

    cfg = st.cfg
    preds = {n: p for n, p in preds.items() if p is not None}
    read = {n: (np.where(p == ABSTAIN, 0, p) if cfg.abstain == "negative" else p) for n, p in preds.items()}
    matrix = prediction_difference_matrix(read, sample_frac=cfg.sample_fraction, seed=cfg.seed)
    rec.prediction_differences = {f"{a}_vs_{b}": float(matrix.loc[a, b])
                                  for a, b in itertools.combinations(matrix.index, 2)}
    rec.diff_lf_cls = rec.prediction_differences.get("lf_vs_cls", math.nan)
    rec.diff_lf_tree = rec.prediction_differences.get("lf_vs_tree", math.nan)
    rec.diff_cls_tree = rec.prediction_differences.get("cls_vs_tree", math.nan)
    rec.difference_sample_rows = int(matrix.attrs["rows"])
    if st.out is not None:
        with st.timed("artifacts"):
            outputs.write_matrices(st.prep, rec, st.combo, st.out, st.y_test, preds, matrix)


def label_all_rows(st: Stage, rec: CombinationRecord, lm: Any, est: Any) -> None:
    """The whole pack's label model and classifier on every input row (for ``labels.parquet``)."""
    prep = st.prep
    rows, L_all = all_rows(prep)
    L = L_all[:, prep.columns(st.combo.lfs)]
    lm_prob = lm.predict_proba(L)
    lm_dec = lm.predict(L)
    frame = pd.DataFrame({ROW: rows[ROW].to_numpy(), "lm_label": lm_dec,
                          "lm_probability": lm_prob[np.arange(len(L)), np.maximum(lm_dec, 0)]})
    if est is not None:
        # one time-ordered pass: the LSTM's windows then hold each row's true predecessors
        X, _ = feature_matrix(prep, rows, classifier_features(st))
        cls, proba = predict(est, X, st.k)
        frame["cls_label"] = cls
        frame["cls_probability"] = proba[np.arange(len(X)), cls]
    rec.labels_rows = int(len(frame))
    if st.out is not None:
        outputs.write_all_rows(frame, rec, st.out)


def mark_undefined_f1(st: Stage, rec: CombinationRecord, cls_pred: Optional[np.ndarray]) -> None:
    """An F1 with no positive test row is undefined: NaN in the record (``null`` in JSON, "n/a" in
    tables), never a 0 that reads as "found none"; the macro F1 then averages the classes that have
    test rows. The reason goes to ``f1_undefined`` and the notes."""
    from flamenco_core.evaluation.metrics import classification_scores, undefined_f1

    classes = st.prep.classes
    reason = undefined_f1(st.y_test, classes)
    if reason is None:
        return
    for k in POSITIVE_SCORES:
        if rec.has(k):
            setattr(rec, k, math.nan)
    if cls_pred is not None:
        scores = classification_scores(st.y_test, cls_pred, classes, abstain=st.cfg.abstain)
        present = [c for c in classes if scores[f"support_{c}"] > 0]
        rec.cls_f1_macro = float(np.mean([scores[f"f1_{c}"] for c in present])) if present else math.nan
    rec.f1_undefined = reason
    rec.notes.append(f"test split: {reason}; LF, classifier and tree F1 are null (undefined), not 0")


def evaluate(st: Stage, rec: CombinationRecord) -> None:
    """Every stage of one combination, in the paper's order: label, train, evaluate, explain."""
    with st.timed("lf"):
        correlate_features(st, rec)
        lf_pred = score_lfs(st, rec)
    with st.timed("tree"):
        tree_pred = build_trees(st, rec)
    with st.timed("label_model"):
        lm, training = fit_label_model(st, rec)
    est, cls_pred = fit_end_model(st, rec, lm, training)
    compare_predictions(st, rec, {"lf": lf_pred, "cls": cls_pred, "tree": tree_pred})
    if st.combo.role == "whole_pack":
        label_all_rows(st, rec, lm, est)
    rec.timings = {k: round(v, 3) for k, v in st.timings.items()}
    mark_undefined_f1(st, rec, cls_pred)


def run_combination(prep: Prepared, combo: Combination, out_dir: Union[str, Path, None] = None) -> dict[str, Any]:
    """Evaluate one combination; returns its record (dict form) and, with ``out_dir``, writes its trees
    (``trees/``), confusion and difference matrices and ``record.json`` (``combinations/<slug>/``). Never
    raises for a bad combination: the record says ``failed`` and why. ``OSError`` propagates (retryable I/O)."""
    t0 = time.perf_counter()
    entries = [prep.catalog.entry(n) for n in combo.lfs if n in prep.catalog.names]
    features = prep.catalog.features([e.name for e in entries]) if entries else []
    rec = CombinationRecord.start(combo, prep.dataset, prep.experiment, entries, features)
    out = Path(out_dir) if out_dir is not None else None
    try:
        broken = {n: prep.lf_errors[n] for n in combo.lfs if n in prep.lf_errors}
        if combo.error:
            rec.fail(combo.error)
        elif broken:
            rec.fail("; ".join(f"LF {n!r} cannot be applied: {e}" for n, e in broken.items()))
        else:
            evaluate(Stage.of(prep, combo, rec, out), rec)
    except OSError:
        raise
    except Exception as exc:  # one combination's failure is its record, never the experiment's
        rec.fail(f"{type(exc).__name__}: {exc}")
    rec.seconds = round(time.perf_counter() - t0, 3)
    if out is not None:
        outputs.write_record(rec, out)
    return rec.to_dict()


def classifier_features(st: Stage) -> list[str]:
    """The end classifier's features: the experiment's selection, else the combination's own."""
    return st.prep.classifier_features if st.prep.classifier_features is not None else st.features


def _winners(P: np.ndarray) -> set[int]:
    """Classes that are the strict most probable class of at least one row."""
    if len(P) == 0:
        return set()
    top = P.max(axis=1)
    strict = (P == top[:, None]).sum(axis=1) == 1
    return set(np.unique(P[strict].argmax(axis=1)).tolist())


def training_targets(cfg: FlowRecordsConfig, L: np.ndarray, P: np.ndarray, classes: list[str]) -> Training:
    """Rows and soft targets the classifier trains on. When the labels hold a single class, the rows no LF
    voted on are read as the negative class, exactly as LF F1 reads them (``single_class: negative``); if
    they still hold one class, the classifier is the constant predictor of that class (``constant_class``);
    ``single_class: skip`` skips the classifier instead."""
    from flamenco_core.labeling.label_model import filter_unlabeled, labeled_mask

    n = len(L)
    covered = labeled_mask(L) if n else np.zeros(0, dtype=bool)
    kept = filter_unlabeled(np.arange(n), P, L, enabled=cfg.filter_unlabeled)
    keep = np.zeros(n, dtype=bool)
    keep[np.asarray(kept.X, dtype=np.int64)] = True
    targets = P.copy()
    info: dict[str, Any] = {"rows": int(n), "covered": int(covered.sum()), "dropped_unlabeled": int(kept.dropped),
                            "single_class_fallback": None}
    if not covered.any():
        return Training(None, targets, info, "the LFs vote on no training row: no labels to train the classifier on")
    winners = _winners(targets[keep])
    if len(winners) < 2 and cfg.single_class == "negative" and (~covered).any():
        # the rule the LFs state ("port <= 6600 means attack") says nothing of other rows; LF F1 reads
        # them as the negative class, and so does the training set here
        neg = 0
        targets[~covered] = 0.0
        targets[~covered, neg] = 1.0
        keep = np.ones(n, dtype=bool)
        only = classes[next(iter(winners))] if winners else "none"
        info["single_class_fallback"] = (f"the LFs' labels on training rows hold one class ({only}); the "
                                         f"{int((~covered).sum())} rows no LF voted on are read as {classes[neg]}")
        info["dropped_unlabeled"] = 0
        winners = _winners(targets)
    if len(winners) < 2:
        only = ", ".join(classes[w] for w in sorted(winners)) or "none"
        if cfg.single_class == "skip" or not winners:
            return Training(None, targets, info, f"training labels hold one class ({only}): a classifier needs two")
        # nothing to tell classes apart: the only model these labels support predicts their one class
        info["constant_class"] = next(iter(winners))
        info["single_class_fallback"] = ((info["single_class_fallback"] + "; ") if info["single_class_fallback"] else "") + (
            f"the training labels hold one class ({only}) even so: the classifier is the constant {only}")
    info["train_rows"] = int(keep.sum())
    info["class_mass"] = {c: float(targets[keep, i].sum()) for i, c in enumerate(classes)}
    return Training(keep, targets, info, None)


def _fit_classifier(cfg: FlowRecordsConfig, X: np.ndarray, P: np.ndarray, X_val: Optional[np.ndarray],
                    P_val: Optional[np.ndarray], constant: Optional[int] = None) -> Any:
    from sklearn.dummy import DummyClassifier

    from flamenco_core.models.select import build_model

    if constant is not None:
        # the model labels of one class support: that class everywhere, so the combination still gets a
        # classifier F1 (0 when that class is the negative one), as its LF F1 does
        return DummyClassifier(strategy="constant", constant=int(constant)).fit(X, np.full(len(X), int(constant)))
    est = build_model(cfg.model.kind, cfg.model.params(), seed=cfg.seed)
    kwargs: dict[str, Any] = {}
    if cfg.model.kind == "lstm" and X_val is not None and len(X_val):
        kwargs = {"X_val": X_val, "y_val": P_val}
    with _TORCH_LOCK if cfg.model.kind == "lstm" else contextlib.nullcontext():
        est.fit(X, P, **kwargs)
    return est


def predict(est: Any, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Class indices and an (n, k) probability matrix in class-index order."""
    proba = np.asarray(est.predict_proba(X), dtype=np.float64)
    cls = np.asarray(est.classes_, dtype=np.int64)
    full = np.zeros((len(X), k))
    full[:, cls] = proba
    return full.argmax(axis=1).astype(np.int64), full
