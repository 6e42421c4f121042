"""Preparation of a flow-records experiment, once for all combinations: ground truth, splits, statistics of
the training split, every LF's votes, feature importance and the end classifier's features."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flamenco_core.experiments.flow_records.catalog import (
    Catalog,
    Combination,
    build_catalog,
    experiment_combinations,
    load_packs,
)
from flamenco_core.experiments.flow_records.config import (
    ExperimentFile,
    FlowRecordsConfig,
    GroundTruthConfig,
    PackMismatch,
    PreparationError,
    load_config,
    load_experiment,
)
from flamenco_core.labeling.constants import ABSTAIN, LABEL_DTYPE
from flamenco_core.labeling.spec import LFPack, SpecError
from flamenco_core.outputs import atomic_write_parquet, json_ready, write_json

#: Internal columns of the prepared frames: the row's position in the input, and its gold class name.
ROW = "__row"
GOLD = "__gold"
SPLITS = ("train", "validation", "test")
REPORT_VERSION = 1
WORK_DIR = "work"


@dataclass
class Prepared:
    """Everything the combinations share. ``frames`` holds ``train``, ``validation``, ``test`` (time
    ordered) and ``unlabeled`` (rows without a gold class), each with the data's columns plus ``__row``
    (position in the input) and ``__gold`` (class name). Derived parts (statistics, label matrices, LF
    errors, thresholds, correlations, constant features) are recomputed by :meth:`load` from the frames,
    deterministically; importance (a forest) is stored."""

    config: FlowRecordsConfig
    catalog: Catalog
    combinations: list[Combination]
    frames: dict[str, pd.DataFrame]
    importance: dict[str, float]
    classifier_features: Optional[list[str]]
    meta: dict[str, Any]
    display_names: dict[str, str] = field(default_factory=dict)
    experiment: str = "default"
    dataset: str = "flows"
    stats: Any = None
    L: dict[str, np.ndarray] = field(default_factory=dict)
    lf_errors: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, Any] = field(default_factory=dict)
    corr: dict[str, pd.DataFrame] = field(default_factory=dict)
    constant: dict[str, str] = field(default_factory=dict)
    medians: dict[str, float] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        """Class names; a class's index is its position."""
        return list(self.catalog.classes)

    def y(self, split: str) -> np.ndarray:
        """Gold class indices of a split (int64)."""
        codes = pd.Categorical(self.frames[split][GOLD].astype(object), categories=self.classes).codes
        return np.asarray(codes, dtype=np.int64)

    def columns(self, names: Sequence[str]) -> list[int]:
        """Label-matrix columns of the LFs ``names``."""
        return [self.catalog.index(n) for n in names]

    # ------------------------------------------------------------------ persistence

    def save(self, work_dir: Union[str, Path]) -> Path:
        """Write the frames (Parquet) and ``prepared.json``; :meth:`load` rebuilds the rest."""
        work = Path(work_dir)
        (work / "frames").mkdir(parents=True, exist_ok=True)
        for name, frame in self.frames.items():
            atomic_write_parquet(frame, work / "frames" / f"{name}.parquet", index=False)
        state = {
            "version": REPORT_VERSION,
            "experiment": self.experiment,
            "dataset": self.dataset,
            "config": self.config.model_dump(mode="json"),
            "packs": [p.to_dict() for p in self.catalog.packs],
            "combinations": [c.to_dict() for c in self.combinations],
            "importance": self.importance,
            "classifier_features": self.classifier_features,
            "display_names": self.display_names,
            "meta": self.meta,
        }
        write_json(work / "prepared.json", state, indent=1)
        return work

    @classmethod
    def load(cls, work_dir: Union[str, Path]) -> "Prepared":
        """Read what :meth:`save` wrote and recompute the derived parts."""
        work = Path(work_dir)
        state = json.loads((work / "prepared.json").read_text())
        packs = [LFPack.from_dict(p) for p in state["packs"]]
        frames = {name: pd.read_parquet(work / "frames" / f"{name}.parquet") for name in (*SPLITS, "unlabeled")}
        prep = cls(
            config=FlowRecordsConfig.model_validate(state["config"]),
            catalog=build_catalog(packs),
            combinations=[Combination.from_dict(c) for c in state["combinations"]],
            frames=frames,
            importance={k: float(v) for k, v in (state.get("importance") or {}).items()},
            classifier_features=state.get("classifier_features"),
            meta=state.get("meta") or {},
            display_names=state.get("display_names") or {},
            experiment=state.get("experiment", "default"),
            dataset=state.get("dataset", "flows"),
        )
        _derive(prep)
        return prep


def read_input(path: Union[str, Path], fmt: str, out_dir: Union[str, Path]) -> tuple[pd.DataFrame, dict[str, str], dict[str, Any]]:
    """Ingest one input file (:func:`~flamenco_core.ingest.pipeline.ingest`: cleaning, accounting) into
    ``out_dir`` and read the canonical table back: ``(frame, display names, ingest report)``."""
    from flamenco_core.ingest.pipeline import ingest, read_canonical

    report = ingest([path], fmt, out_dir)
    if report.data_path is None:
        raise PreparationError(f"{path}: no rows survived ingest ({report.to_dict()['dropped']} dropped, "
                               f"{report.quarantined} quarantined)")
    df, names = read_canonical(report.data_path)
    return df, names, report.to_dict()


def is_numeric(frame: pd.DataFrame, col: str) -> bool:
    """Whether column ``col`` is numeric or boolean (what an LF threshold or a classifier can read)."""
    dt = frame[col].dtype
    return bool(pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt))


def _ground_truth(df: pd.DataFrame, gcfg: GroundTruthConfig, classes: list[str], alerts: Any) -> tuple[pd.Series, dict[str, Any]]:
    from flamenco_core.preprocess.ground_truth import AlertWindowError, labels_from_alerts, labels_from_column

    if alerts is not None:
        if len(classes) != 2:
            raise PreparationError(f"alert windows label two classes; the packs have {classes}")
        try:
            gt = labels_from_alerts(df, alerts, positive=classes[1], negative=classes[0], closed=gcfg.closed, tz=gcfg.tz)
        except (AlertWindowError, KeyError, ValueError) as exc:
            raise PreparationError(f"alert windows: {exc.args[0] if exc.args else exc}") from None
        report = dict(gt.report)
        if gcfg.column in df.columns:
            report["label_column_ignored"] = gcfg.column
        return gt.labels, report
    source = df
    unknown: dict[str, int] = {}
    try:
        from flamenco_core.preprocess.ground_truth import find_column

        col = find_column(df, gcfg.column)
    except KeyError:
        raise PreparationError(f"no ground truth: the data has no {gcfg.column!r} column and no alert windows were "
                               "given (--alerts)") from None
    if gcfg.default is None:
        text = df[col].astype("string").str.strip()
        known = {str(k).strip().lower() for k in gcfg.mapping} | {c.lower() for c in classes}
        mask = (text.notna() & (text != "") & ~text.str.lower().isin(known)).fillna(False).to_numpy(dtype=bool)
        if mask.any():
            unknown = {str(k): int(v) for k, v in text[mask].value_counts().items()}
            listed = ", ".join(f"{k!r} ({v} rows)" for k, v in list(unknown.items())[:10])
            if gcfg.unknown == "fail":
                raise PreparationError(f"label column {col!r} holds labels with no class: {listed}")
            source = pd.DataFrame({col: text.mask(mask)}, index=df.index)
    try:
        gt = labels_from_column(source, col, mapping=gcfg.mapping, default=gcfg.default, classes=classes)
    except ValueError as exc:
        raise PreparationError(f"ground truth: {exc}") from None
    report = dict(gt.report)
    report["unknown_labels"] = unknown
    report["unknown_rows"] = int(sum(unknown.values()))
    return gt.labels, report


def prepare(
    data: pd.DataFrame,
    packs: Sequence[Union[LFPack, str, Path]],
    config: Any = None,
    experiment: Union[ExperimentFile, str, Path, Mapping, None] = None,
    *,
    alerts: Any = None,
    display_names: Optional[Mapping[str, str]] = None,
    sources: Optional[Mapping[str, Any]] = None,
    out_dir: Union[str, Path, None] = None,
) -> Prepared:
    """Ground truth, splits, statistics, LF votes, importance and features for one experiment.

    ``config`` overrides (mapping, YAML path or :class:`FlowRecordsConfig`) apply over the experiment
    file's ``config``, which applies over the defaults. ``alerts`` (a file, frame or records) replaces the
    label column as ground truth. ``sources`` (input files, hashes) is recorded as is. With ``out_dir`` the
    training-split profile (``profile_train.csv``, for LF writers) and the work folder are written there.
    Raises :class:`PreparationError` when the experiment cannot start.
    """
    from flamenco_core.preprocess.feature_selection import (
        NON_FEATURES,
        feature_importance,
        numeric_features,
        select_features,
        write_profile_csv,
    )
    from flamenco_core.preprocess.splits import stratified_splits
    from flamenco_core.labeling.audit import is_identifier_feature

    t0 = time.perf_counter()
    pack_list = load_packs(packs)
    catalog = build_catalog(pack_list)
    check_packs(packs, pack_list, data)
    exp = load_experiment(experiment)
    try:
        cfg = load_config(exp.config if exp else None, config)
    except ValueError as exc:
        raise PreparationError(str(exc)) from None
    combos, notes = experiment_combinations(exp, catalog)
    classes = catalog.classes
    gcol = cfg.ground_truth.column
    for reserved in (ROW, GOLD):
        if reserved in data.columns:
            raise PreparationError(f"the data has a column named {reserved!r}, which the pipeline reserves")

    df = data.reset_index(drop=True).copy()
    df[ROW] = np.arange(len(df), dtype=np.int64)
    gold, gt_report = _ground_truth(df, cfg.ground_truth, classes, alerts)
    df[GOLD] = gold.to_numpy()
    has_gold = gold.notna().to_numpy()
    labeled, unlabeled = df[has_gold], df[~has_gold]
    if labeled.empty:
        raise PreparationError(f"no row has a ground-truth class ({gt_report.get('counts')})")
    time_col = "timestamp" if "timestamp" in df.columns else None
    try:
        splits = stratified_splits(labeled, GOLD, test=cfg.splits.test, validation=cfg.splits.validation,
                                   seed=cfg.seed, time_col=time_col)
    except ValueError as exc:
        raise PreparationError(f"cannot split: {exc}") from None
    frames = {"train": splits.train, "validation": splits.validation, "test": splits.test,
              "unlabeled": _time_sorted(unlabeled, time_col)}
    train = frames["train"]
    skip = set(NON_FEATURES) | {gcol, ROW, GOLD}
    lf_feats = [f for f in catalog.features() if f in train.columns and is_numeric(train, f) and f not in skip]

    importance: dict[str, float] = {}
    importance_note = f"{cfg.importance.method} importance of a seeded random forest on the training split (ground truth)"
    if lf_feats:
        try:
            table = feature_importance(train, train[GOLD].astype(str), lf_feats, methods=(cfg.importance.method,),
                                       seed=cfg.seed, n_estimators=cfg.importance.n_estimators)
            importance = {f: float(table.loc[f, cfg.importance.method]) for f in lf_feats}
        except ValueError as exc:
            importance_note = f"not computed ({exc}); trees keep the LFs' order"

    selection: dict[str, Any] = {}
    classifier_features: Optional[list[str]]
    if cfg.classifier_features == "selected":
        candidates = numeric_features(train, skip)
        ids = [c for c in candidates if is_identifier_feature(c)]
        candidates = [c for c in candidates if c not in ids]
        sel = select_features(train, {**cfg.feature_selection, "features": candidates, "label": None})
        classifier_features = sel.selected
        selection = sel.to_dict()
        selection["dropped"].update({c: "identifier (addresses, ids, times): would memorize, not generalize" for c in ids})
    elif cfg.classifier_features == "lf":
        classifier_features = None
    else:
        missing = [f for f in cfg.classifier_features if f not in train.columns or not is_numeric(train, f)]
        if missing:
            raise PreparationError(f"classifier_features not numeric columns of the data: {missing}")
        classifier_features = list(cfg.classifier_features)

    dataset = cfg.dataset or (exp.dataset if exp and exp.dataset else None) or str((sources or {}).get("dataset") or "flows")
    prep = Prepared(
        config=cfg, catalog=catalog, combinations=combos, frames=frames, importance=importance,
        classifier_features=classifier_features, meta={}, display_names=dict(display_names or {}),
        experiment=exp.experiment if exp else "default", dataset=dataset,
    )
    _derive(prep)
    prep.meta = {
        "sources": json_ready(dict(sources or {})),
        "rows": {"input": int(len(df)), "labeled": int(has_gold.sum()), "unlabeled": int((~has_gold).sum()),
                 **{k: int(len(v)) for k, v in frames.items()}},
        "ground_truth": gt_report,
        "splits": splits.meta,
        "packs": [{"pack": p.name, "version": p.version, "group": p.group, "content_hash": p.content_hash,
                   "lfs": p.lf_names} for p in pack_list],
        "combine": catalog.combine_report,
        "lfs": [{"name": e.name, "ref": e.ref, "pack": e.pack, "group": e.group, "label": e.spec.label,
                 "features": e.features} for e in catalog.entries],
        "lf_errors": dict(prep.lf_errors),
        "statistics_source": "training split",
        "statistics": prep.stats.used(),
        "thresholds": prep.thresholds,
        "constant_features": dict(prep.constant),
        "importance": importance,
        "importance_source": importance_note,
        "classifier_features": cfg.classifier_features if classifier_features is None else classifier_features,
        "feature_selection": selection,
        "notes": notes,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if out_dir is not None:
        out = Path(out_dir)
        profile_feats = numeric_features(train, skip)
        if profile_feats:
            write_profile_csv(train, out / "profile_train.csv", profile_feats)
        prep.save(out / WORK_DIR)
    return prep


def check_packs(sources: Sequence[Any], packs: Sequence[LFPack], data: pd.DataFrame) -> None:
    """Raise :class:`PackMismatch` when a pack reads a feature the data lacks (with "did you mean") or
    one that is not numeric: one line naming the pack file, the LF and the feature, and how many more
    problems there are."""
    from flamenco_core.labeling.applier import pack_problems

    problems: list[str] = []
    for src, pack in zip(sources, packs):
        where = "" if isinstance(src, LFPack) else f"{src}: "
        problems += [f"{where}{p}" for p in pack_problems(pack, data)]
    if problems:
        more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
        raise PackMismatch(problems[0] + more)


def _time_sorted(frame: pd.DataFrame, time_col: Optional[str]) -> pd.DataFrame:
    return frame.sort_values(time_col, kind="stable") if time_col is not None else frame


def _derive(prep: Prepared) -> None:
    """Statistics of train, per-LF votes on every frame, LF errors, thresholds, correlations, constants."""
    from flamenco_core.labeling.applier import apply_lfs
    from flamenco_core.labeling.stats import DataStatistics
    from flamenco_core.preprocess.feature_selection import constant_features, correlations

    train = prep.frames["train"]
    stats = DataStatistics(train)
    m = len(prep.catalog.entries)
    L = {name: np.full((len(f), m), ABSTAIN, dtype=LABEL_DTYPE) for name, f in prep.frames.items()}
    errors: dict[str, str] = {}
    thresholds: dict[str, Any] = {}
    for j, entry in enumerate(prep.catalog.entries):
        # one LF at a time: an LF that cannot run fails alone
        one = prep.catalog.pack_of([entry.name], entry.pack)
        try:
            col, meta = apply_lfs(one, train, stats=stats, return_meta=True)
        except (SpecError, TypeError, ValueError) as exc:
            errors[entry.name] = f"{type(exc).__name__}: {exc}"
            continue
        L["train"][:, j] = col[:, 0]
        thresholds[entry.name] = meta.thresholds[entry.name]
        for name, frame in prep.frames.items():
            if name != "train":
                L[name][:, j] = apply_lfs(one, frame, stats=stats)[:, 0]
    skip = {prep.config.ground_truth.column, ROW, GOLD}
    feats = [f for f in prep.catalog.features() if f in train.columns and is_numeric(train, f) and f not in skip]
    prep.stats = stats
    prep.L = L
    prep.lf_errors = errors
    prep.thresholds = thresholds
    prep.constant = constant_features(train, feats) if feats else {}
    prep.corr = correlations(train, feats) if feats else {}
    used = set(prep.classifier_features or []) | set(feats)
    prep.medians = {f: _finite_median(train[f]) for f in used if f in train.columns and is_numeric(train, f)}


def _finite_median(s: pd.Series) -> float:
    v = s.to_numpy(dtype=np.float64, na_value=np.nan)
    v = v[np.isfinite(v)]
    return float(np.median(v)) if v.size else 0.0


def feature_matrix(prep: Prepared, frame: pd.DataFrame, features: Sequence[str]) -> tuple[np.ndarray, int]:
    """Classifier input: float64 features, non-finite values replaced by the training median (counted)."""
    X = np.column_stack([frame[f].to_numpy(dtype=np.float64, na_value=np.nan) for f in features]) if features else np.empty((len(frame), 0))
    bad = ~np.isfinite(X)
    n_bad = int(bad.sum())
    if n_bad:
        med = np.array([prep.medians.get(f, 0.0) for f in features])
        X = np.where(bad, med[None, :], X)
    return X, n_bad


def all_rows(prep: Prepared) -> tuple[pd.DataFrame, np.ndarray]:
    """Every row of the input in input order (``__row``), with its split name; and the label matrix."""
    parts, mats = [], []
    for name in (*SPLITS, "unlabeled"):
        frame = prep.frames[name]
        parts.append(frame.assign(__split=name))
        mats.append(prep.L[name])
    rows = pd.concat(parts, ignore_index=True)
    L = np.concatenate(mats) if mats else np.empty((0, len(prep.catalog.entries)), dtype=LABEL_DTYPE)
    order = np.argsort(rows[ROW].to_numpy(), kind="stable")
    return rows.iloc[order].reset_index(drop=True), L[order]


def describe_sources(input_path: Union[str, Path, Sequence[Union[str, Path]]], fmt: str, ingest_report: Mapping[str, Any],
                     packs: Sequence[Any], experiments: Optional[Union[str, Path]] = None,
                     alerts: Optional[Union[str, Path]] = None) -> dict[str, Any]:
    """What a run read, with content hashes (recorded with every run): the input(s) and their ingest
    counts, the packs, the experiment file and the alert windows. Several inputs (a list, or a folder's
    files) are one dataset named after their folder; ``inputs`` then lists every file with its hash."""
    from flamenco_core.ingest.pipeline import file_sha256

    paths = [Path(p) for p in input_path] if isinstance(input_path, (list, tuple)) else [Path(input_path)]
    files = list(ingest_report["files"])
    if len(paths) == 1 and not paths[0].is_dir():
        dataset = paths[0].stem
    else:
        parents = {Path(f["file"]).parent.name for f in files} or {p.name for p in paths}
        dataset = parents.pop() if len(parents) == 1 else "+".join(sorted(p.stem for p in paths))
    out = {
        "input": str(paths[0]) if len(paths) == 1 else [str(p) for p in paths], "format": fmt,
        "input_sha256": files[0]["sha256"] if files else None,
        "ingest": {k: ingest_report[k] for k in ("input_records", "rows", "dropped", "quarantined")},
        "packs": [{"path": str(p), "sha256": file_sha256(p)} for p in packs],
        "experiments": {"path": str(experiments), "sha256": file_sha256(experiments)} if experiments else None,
        "alerts": {"path": str(alerts), "sha256": file_sha256(alerts)} if alerts else None,
        "dataset": dataset,
    }
    if len(files) > 1:  # one file's record stays as it was
        out["inputs"] = [{"file": f["file"], "sha256": f["sha256"]} for f in files]
    return out
