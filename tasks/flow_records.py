"""Prefect tasks of the flow-records pipeline: thin wrappers of :mod:`flamenco_core.experiments.flow_records`
with retries on I/O errors only, and their MLflow logging (through :mod:`tasks.tracking`).

A combination task logs one MLflow child run and then, when the combination failed, raises
:class:`CombinationFailed` carrying the record: Prefect marks that one task failed, the flow still gets
the record, and the other combinations are untouched.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Optional, Union

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NONE
from prefect.logging import get_run_logger

from flamenco_core.errors import EXIT_UNUSABLE
from flamenco_core.experiments import flow_records as fr
from flamenco_core.experiments.flow_records import record as fr_record
from tasks import tracking
from tasks.common import IO_RETRIES, collect_mapped, error_text

PIPELINE = "flow_records"
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


# Kept for speed, not correctness: Prepared.load re-applies every LF to every split, which costs as much
# as a combination; the combination tasks of one process share one load (keyed on prepared.json's mtime,
# so a new preparation in the same folder is read again).
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


def _tag(text: Any) -> str:
    s = str(text)
    return s if len(s) <= _TAG_MAX else s[: _TAG_MAX - 3] + "..."


@task(name="flow-records-prepare", **IO_RETRIES, cache_policy=NONE)
def prepare_task(ingest_report: dict, input_path: Union[str, list[str]], fmt: str, packs: list[str], out_dir: str,
                 experiments: Optional[str], alerts: Optional[str], config: Any) -> dict:
    """Ground truth, splits, statistics and LF votes, written to ``out_dir/work``. A preparation failure is
    returned (``outcome: failed``, with the report of skipped combinations), not raised."""
    from flamenco_core.ingest.pipeline import read_canonical

    log = get_run_logger()
    data_path = ingest_report["data_path"]
    sources = fr.describe_sources(input_path, fmt, ingest_report, packs, experiments, alerts)
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


def log_combination_run(rec: dict, experiment: str, parent_run_id: Optional[str],
                        legend: Optional[dict] = None) -> str:
    """One MLflow child run for a combination record: params, metrics, tags (so MLflow's compare view
    lines combinations up), artifacts; ended FAILED when the combination failed. Returns the run id.
    With the experiment's ``legend`` (:func:`flamenco_core.report.lf_legend`) the run is named by its
    letters ("A+B"), readable in MLflow's narrow name column; the full combination is in its tag and
    description."""
    from flamenco_core.report.legend import legend_text, short_name

    params = fr_record.params(rec)
    metrics = fr_record.metrics(rec)
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
    description = f"LF combination: {rec.get('combination', '')}"
    if legend:
        name = short_name(rec.get("lfs") or rec.get("refs") or [], legend, rec.get("label"))
        tags[tracking.TAG_SHORT_NAME] = name
        description = f"**{name}** = {rec.get('combination', '')}\n\nLegend: {legend_text(legend, sep='; ')}"
    description += f"\n\nOutcome: {rec.get('outcome')}" + (f": {rec['reason']}" if rec.get("reason") else "")
    run_id = tracking.start_run(experiment, name, parent_run_id=parent_run_id, params=params,
                                metrics=metrics, tags=tags, description=description)
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


@task(name="flow-records-combination", **IO_RETRIES, cache_policy=NONE)
def combination_task(combination: dict, work_dir: str, out_dir: str, experiment: str, parent_run_id: Optional[str]) -> dict:
    """Evaluate one LF combination and log its MLflow child run; fails (only this task) when the
    combination failed, with the record on the exception."""
    prep = load_prepared(work_dir)
    combo = fr.Combination.from_dict(combination)
    rec = fr.run_combination(prep, combo, out_dir)
    from flamenco_core.report.legend import lf_legend

    rec["run_id"] = log_combination_run(rec, experiment, parent_run_id, lf_legend(prep.combinations))
    log = get_run_logger()
    if rec["outcome"] == "failed":
        log.error("combination %s failed: %s", rec["combination"], rec["error"])
        raise CombinationFailed(f"combination {rec['combination']!r} failed: {rec['error']}", rec)
    log.info("combination %s: %s lf_f1=%s cls_f1=%s tree_f1=%s", rec["combination"], rec["outcome"],
             rec.get("lf_f1"), rec.get("cls_f1"), rec.get("tree_f1"))
    return rec


def combination_records(combinations: list[dict], futures: list, out_dir: str, dataset: str, experiment: str,
                        parent_run_id: Optional[str]) -> list[dict]:
    """One record per combination, whatever happened to its mapped task: its result; the record on its
    :class:`CombinationFailed`; the record the core wrote before the task died; else a failed record of
    our own (with its MLflow child run)."""
    out = []
    for combo, (rec, err) in zip(combinations, collect_mapped(futures)):
        if err is not None:
            rec = getattr(err, "record", None)
        if rec is None:
            path = Path(out_dir) / "combinations" / fr.Combination.from_dict(combo).slug / "record.json"
            written = json.loads(path.read_text()) if path.is_file() else {}
            rec = written if written.get("outcome") == "failed" else log_failed_combination_task(
                combo, error_text(err), dataset, experiment, parent_run_id)
        out.append(rec)
    return out


@task(name="flow-records-log-failed", cache_policy=NONE)
def log_failed_combination_task(combination: dict, error: str, dataset: str, experiment: str,
                                parent_run_id: Optional[str]) -> dict:
    """The record and MLflow child run of a combination whose task died outside the core (e.g. I/O that
    outlived its retries)."""
    rec = fr.failed_record(fr.Combination.from_dict(combination), error, dataset)
    rec["run_id"] = log_combination_run(rec, experiment, parent_run_id)
    return rec


@task(name="flow-records-finish", **IO_RETRIES, cache_policy=NONE)
def finish_task(work_dir: str, out_dir: str, records: list[dict], experiment: str, parent_run_id: str) -> dict:
    """Tables, ``labels.parquet`` and ``report.json``; the parent run gets the tables, the report and the
    counts, and ends; the run's summary goes to a Markdown artifact. Returns the flow's result."""
    prep = load_prepared(work_dir)
    report = fr.write_outputs(prep, records, out_dir, {"mlflow": {"experiment": experiment, "parent_run_id": parent_run_id}})
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
    create_markdown_artifact(fr.summary_markdown(
        f"Flow records ({prep.dataset}): {summary['ok']} ok, {summary['skipped']} skipped, {summary['failed']} failed",
        report["combinations"]), key="flow-records-summary")
    return {
        "experiment": experiment, "parent_run_id": parent_run_id, "out_dir": str(out_dir), "preparation": "ok",
        "dataset": prep.dataset, "summary": summary,
        "combinations": [{k: r.get(k) for k in fr.SUMMARY_KEYS} for r in report["combinations"]],
        "report": str(Path(out_dir) / "report.json"), "labels": report["labels"], "tables": report["tables"],
    }


@task(name="flow-records-finish-failed", cache_policy=NONE)
def finish_failed_preparation_task(prepared: dict, out_dir: str, experiment: str, parent_run_id: str) -> dict:
    """Close the parent run of an experiment whose preparation failed (``prepared``: what
    :func:`prepare_task` returned), with its report; the reason is in ``flamenco.error`` (and
    ``flamenco.reason``). Returns the flow's result, with the exit code of the failure."""
    error, report = prepared["error"], prepared["report"]
    tracking.log(parent_run_id, tags={"flamenco.reason": _tag(error)})
    path = Path(out_dir) / "report.json"
    if path.is_file():
        tracking.log_artifacts(parent_run_id, [str(path)])
    tracking.close_run(parent_run_id, "FAILED", error=error)
    create_markdown_artifact(fr.summary_markdown(f"Flow records: preparation failed: {error}", report["combinations"]),
                             key="flow-records-summary")
    return {"experiment": experiment, "parent_run_id": parent_run_id, "out_dir": str(out_dir), "preparation": "failed",
            "error": error, "exit_code": prepared.get("exit_code", EXIT_UNUSABLE), "summary": report["summary"],
            "combinations": report["combinations"], "report": str(path), "labels": None}
