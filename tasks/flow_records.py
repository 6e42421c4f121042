"""Prefect tasks of the flow-records pipeline (issue 5): thin wrappers of
:mod:`flamenco_core.experiments.flow_records` with retries on I/O errors only, and their MLflow logging
(through :mod:`tasks.tracking`, the one place that talks to MLflow).

A combination task logs one MLflow child run (params, metrics, tags, artifacts) and then, when the
combination failed, raises :class:`CombinationFailed` carrying the record: Prefect marks that one task
failed, the flow still gets the record, and the other combinations are untouched.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import Any, Optional

from prefect import task
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger

from flamenco_core.experiments import flow_records as fr
from tasks import tracking
from tasks.ingest import _transient

PIPELINE = "flow_records"

#: Numeric record fields logged as MLflow metrics of a combination's child run.
METRIC_KEYS = (
    "lf_f1", "lf_precision", "lf_recall", "cls_f1", "cls_f1_macro", "cls_accuracy", "tree_f1", "tree_f1_paper",
    "tree_vs_lf_difference", "tree_vs_lf_difference_paper", "coverage", "overlap", "conflicts",
    "decision_coverage", "ties", "coverage_train", "correlation", "correlation_pearson", "correlation_spearman",
    "diff_lf_cls", "diff_lf_tree", "diff_cls_tree", "tree_conditions", "tree_depth", "seconds",
)
#: Artifacts of a child run and the folder they go to in MLflow.
ARTIFACT_FOLDERS = {
    "tree_png": "trees", "tree_paper_png": "trees", "tree_json": "trees", "tree_paper_json": "trees",
    "confusion_lf_png": "confusion", "confusion_cls_png": "confusion", "confusion_tree_png": "confusion",
    "prediction_differences_csv": "", "record": "",
}
# MLflow tags hold at most 8000 characters (5000 on some backends); combination names of big packs are long.
_TAG_MAX = 5000


class CombinationFailed(RuntimeError):
    """A combination whose record says ``failed``; ``record`` is that record (with its MLflow run id)."""

    def __init__(self, message: str, record: Optional[dict] = None) -> None:
        super().__init__(message, record)
        self.record = record

    def __str__(self) -> str:
        return str(self.args[0])


_CACHE: dict[str, tuple[float, fr.Prepared]] = {}
_CACHE_LOCK = threading.Lock()


def load_prepared(work_dir: str) -> fr.Prepared:
    """The prepared experiment in ``work_dir``, loaded once per process (combination tasks share it)."""
    path = Path(work_dir).resolve()
    stamp = (path / "prepared.json").stat().st_mtime
    with _CACHE_LOCK:  # one load; concurrent tasks wait for it instead of loading in parallel
        hit = _CACHE.get(str(path))
        if hit is None or hit[0] != stamp:
            hit = (stamp, fr.Prepared.load(path))
            _CACHE[str(path)] = hit
        return hit[1]


def _number(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(float(v)) else None


def _tag(text: Any) -> str:
    s = str(text)
    return s if len(s) <= _TAG_MAX else s[: _TAG_MAX - 3] + "..."


@task(name="flow-records-prepare", retries=2, retry_delay_seconds=1, retry_condition_fn=_transient, cache_policy=NONE)
def prepare_task(data_path: Optional[str], packs: list[str], out_dir: str, experiments: Optional[str],
                 alerts: Optional[str], config: Any, sources: dict) -> dict:
    """Ground truth, splits, statistics and LF votes, written to ``out_dir/work``. A preparation failure is
    returned (``outcome: failed``, with the report of skipped combinations), not raised."""
    from flamenco_core.ingest.pipeline import read_canonical

    log = get_run_logger()
    try:
        if data_path is None:
            raise fr.PreparationError("no rows survived ingest")
        df, names = read_canonical(data_path)
        prep = fr.prepare(df, packs, config, experiments, alerts=alerts, display_names=names, sources=sources,
                          out_dir=out_dir)
    except fr.PreparationError as exc:
        log.error("preparation failed: %s", exc)
        report = fr.write_failed_preparation(packs, experiments, str(exc), out_dir, sources=sources)
        return {"outcome": "failed", "error": str(exc), "exit_code": exc.exit_code, "report": report}
    log.info("prepared %s: rows %s, %d combinations, LF errors %s", prep.dataset, prep.meta["rows"],
             len(prep.combinations), prep.lf_errors or "none")
    return {
        "outcome": "ok",
        "work_dir": str(Path(out_dir) / fr.WORK_DIR),
        "combinations": [c.to_dict() for c in prep.combinations],
        "dataset": prep.dataset,
        "experiment": prep.experiment,
        "rows": prep.meta["rows"],
        "lf_errors": dict(prep.lf_errors),
        "packs": prep.meta["packs"],
        "runner": prep.config.runner,
    }


def log_combination_run(rec: dict, experiment: str, parent_run_id: Optional[str]) -> str:
    """One MLflow child run for a combination record: params, metrics, tags (so MLflow's compare view
    lines combinations up), artifacts; ended FAILED when the combination failed. Returns the run id."""
    training = rec.get("training") or {}
    classifier = rec.get("classifier") or {}
    params = {
        "lfs": rec.get("lfs", []),
        "refs": rec.get("refs", []),
        "groups": rec.get("groups", []),
        "features": rec.get("features", []),
        "n_lfs": rec.get("n_lfs"),
        "correlation": rec.get("correlation"),
        "label_model": rec.get("label_model_name", ""),
        "label_model_fallback": rec.get("label_model_fallback", ""),
        "classifier": classifier.get("kind", ""),
        "classifier_features": training.get("features", []),
        "single_class_fallback": training.get("single_class_fallback") or "",
        "tree_mode": rec.get("tree_mode", "faithful"),
        "role": rec.get("role", ""),
    }
    params = {k: v for k, v in params.items() if v is not None}
    metrics = {k: _number(rec.get(k)) for k in METRIC_KEYS}
    tags = {
        "flamenco.pipeline": PIPELINE,
        "flamenco.combination": _tag(rec.get("combination", "")),
        "flamenco.groups": _tag("+".join(rec.get("groups") or [])),
        "flamenco.dataset": rec.get("dataset", ""),
        "flamenco.experiment": rec.get("experiment", ""),
        "flamenco.n_lfs": rec.get("n_lfs", ""),
        "flamenco.outcome": rec.get("outcome", ""),
        "flamenco.role": rec.get("role", ""),
    }
    if rec.get("reason"):
        tags["flamenco.reason"] = _tag(rec["reason"])
    name = str(rec.get("label") or rec.get("combination") or rec.get("slug"))[:250]
    run_id = tracking.start_run(experiment, name, parent_run_id=parent_run_id, params=params,
                                metrics={k: v for k, v in metrics.items() if v is not None}, tags=tags)
    arts = rec.get("artifacts") or {}
    by_folder: dict[str, list[str]] = {}
    for key, folder in ARTIFACT_FOLDERS.items():
        path = arts.get(key)
        if path and Path(path).is_file():
            by_folder.setdefault(folder, []).append(path)
    for folder, paths in by_folder.items():
        tracking.log_artifacts(run_id, paths, folder or None)
    tracking.end_run(run_id, "FAILED" if rec.get("outcome") == "failed" else "FINISHED")
    return run_id


@task(name="flow-records-combination", retries=2, retry_delay_seconds=1, retry_condition_fn=_transient,
      cache_policy=NONE)
def combination_task(combination: dict, work_dir: str, out_dir: str, experiment: str, parent_run_id: Optional[str]) -> dict:
    """Evaluate one LF combination and log its MLflow child run; fails (only this task) when the
    combination failed, with the record on the exception."""
    prep = load_prepared(work_dir)
    combo = fr.Combination.from_dict(combination)
    rec = fr.run_combination(prep, combo, out_dir)
    rec["run_id"] = log_combination_run(rec, experiment, parent_run_id)
    log = get_run_logger()
    if rec["outcome"] == "failed":
        log.error("combination %s failed: %s", rec["combination"], rec["error"])
        raise CombinationFailed(f"combination {rec['combination']!r} failed: {rec['error']}", rec)
    log.info("combination %s: %s lf_f1=%s cls_f1=%s tree_f1=%s", rec["combination"], rec["outcome"],
             rec.get("lf_f1"), rec.get("cls_f1"), rec.get("tree_f1"))
    return rec


@task(name="flow-records-log-failed", cache_policy=NONE)
def log_failed_combination_task(combination: dict, error: str, dataset: str, experiment: str,
                                parent_run_id: Optional[str]) -> dict:
    """The record and MLflow child run of a combination whose task died outside the core (e.g. I/O that
    outlived its retries)."""
    rec = fr.failed_record(fr.Combination.from_dict(combination), error, dataset)
    rec["run_id"] = log_combination_run(rec, experiment, parent_run_id)
    return rec


@task(name="flow-records-finish", retries=2, retry_delay_seconds=1, retry_condition_fn=_transient, cache_policy=NONE)
def finish_task(work_dir: str, out_dir: str, records: list[dict], parent_run_id: str, extra: Optional[dict] = None) -> dict:
    """Tables, ``labels.parquet`` and ``report.json``; the parent run gets the tables, the report and the
    counts, and ends."""
    prep = load_prepared(work_dir)
    report = fr.write_outputs(prep, records, out_dir, extra)
    summary = report["summary"]
    tracking.log(
        parent_run_id,
        params={"dataset": prep.dataset, "experiment_name": prep.experiment, "seed": prep.config.seed,
                "pack_hashes": {p["pack"]: p["content_hash"] for p in prep.meta.get("packs", [])},
                "model": prep.config.model.kind, "label_model": prep.config.label_model.kind},
        metrics={"combinations_ok": summary["ok"], "combinations_skipped": summary["skipped"],
                 "combinations_failed": summary["failed"], **{f"rows_{k}": v for k, v in prep.meta["rows"].items()}},
        tags={"flamenco.dataset": prep.dataset, "flamenco.experiment": prep.experiment},
    )
    table_files = [p for t in report["tables"].values() for p in (t["csv"], t["markdown"])]
    records_csv = Path(out_dir) / "tables" / "records.csv"
    if records_csv.is_file():
        table_files.append(str(records_csv))
    tracking.log_artifacts(parent_run_id, table_files, "tables")
    tracking.log_artifacts(parent_run_id, [str(Path(out_dir) / "report.json")])
    # Nothing usable when no combination produced a result: the run says so (the CLI exits 1).
    usable = summary["ok"] + summary["skipped"]
    outcome = "ok" if not summary["failed"] else ("partial" if usable else "failed")
    first = (summary.get("failures") or [{}])[0]
    tracking.close_run(parent_run_id, "FINISHED" if usable else "FAILED", outcome=outcome,
                       error=f"every combination failed; first: {first.get('combination')}: {first.get('error')}")
    get_run_logger().info("flow records: %d ok, %d skipped, %d failed", summary["ok"], summary["skipped"], summary["failed"])
    return report


@task(name="flow-records-finish-failed", cache_policy=NONE)
def finish_failed_preparation_task(parent_run_id: str, out_dir: str, error: str) -> None:
    """Close the parent run of an experiment whose preparation failed, with its report; the reason is in
    ``flamenco.error`` (and ``flamenco.reason``, as before)."""
    tracking.log(parent_run_id, tags={"flamenco.reason": _tag(error)})
    report = Path(out_dir) / "report.json"
    if report.is_file():
        tracking.log_artifacts(parent_run_id, [str(report)])
    tracking.close_run(parent_run_id, "FAILED", error=error)
