"""The flow-records flow (issue 5): ingest -> prepare -> one task (and MLflow child run) per LF combination
-> tables, labels and report, logged on the MLflow parent run.

A combination that fails fails only its own task; its record (outcome, error) still reaches the report
and the summary, which lists the failures. A preparation failure (no ground truth, too few rows, a pack
that reads a feature the data lacks: checked once, before the fan-out) ends the flow with every
combination skipped, the reason in ``report.json`` and ``exit_code`` in the summary. An input with no
row raises :class:`~flamenco_core.ingest.pipeline.NoRows`. The output folder is locked for the run, and
the MLflow parent run always ends FINISHED or FAILED with the reason in ``flamenco.error``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact

from flamenco_core.errors import EXIT_UNUSABLE, UsageError
from flamenco_core.ingest.pipeline import NoRows
from flamenco_core.outputs import OutputLock
from tasks.flow_records import (
    combination_task,
    finish_failed_preparation_task,
    finish_task,
    log_failed_combination_task,
    prepare_task,
)
from tasks.ingest import close_failed_parent_run, ingest_task, start_parent_run_task

DEFAULT_EXPERIMENT = "flamenco-flow-records"


def _records(combinations: list[dict], futures, out_dir: str, dataset: str, experiment: str,
             parent_run_id: Optional[str]) -> list[dict]:
    """One record per combination, whatever happened to its task."""
    out = []
    for combo, fut in zip(combinations, futures):
        fut.wait()
        state = fut.state
        if state.is_completed():
            out.append(fut.result())
            continue
        err = state.result(raise_on_failure=False)
        rec = getattr(err, "record", None)
        if rec is None:
            # the record the core wrote before the task died, else a failed record of our own
            from flamenco_core.experiments.flow_records import Combination

            path = Path(out_dir) / "combinations" / Combination.from_dict(combo).slug / "record.json"
            if path.is_file() and json.loads(path.read_text()).get("outcome") == "failed":
                rec = json.loads(path.read_text())
            else:
                rec = log_failed_combination_task(combo, f"{type(err).__name__}: {err}", dataset, experiment, parent_run_id)
        out.append(rec)
    return out


@flow(name="flamenco-flow-records-combinations")
def combinations_flow(combinations: list[dict], work_dir: str, out_dir: str, experiment: str,
                      parent_run_id: Optional[str], dataset: str = "flows") -> list[dict]:
    """Fan out one task per combination (``.map``); returns every combination's record, never raises for one."""
    futures = combination_task.map(
        combinations,
        work_dir=unmapped(work_dir),
        out_dir=unmapped(out_dir),
        experiment=unmapped(experiment),
        parent_run_id=unmapped(parent_run_id),
    )
    return _records(combinations, futures, out_dir, dataset, experiment, parent_run_id)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}" if v == v else "n/a"  # NaN: an undefined score
    return "" if v is None else str(v)


def _summary_markdown(title: str, records: list[dict]) -> str:
    lines = [f"# {title}", "", "| combination | outcome | LF F1 | classifier F1 | Tree F1 | coverage | detail |",
             "| --- | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in records:
        detail = (r.get("reason") or "").replace("|", "\\|")[:200]
        lines.append(f"| {r.get('combination', '')} | {r.get('outcome')} | {_fmt(r.get('lf_f1'))} | {_fmt(r.get('cls_f1'))} | "
                     f"{_fmt(r.get('tree_f1'))} | {_fmt(r.get('coverage'))} | {detail} |")
    return "\n".join(lines)


@flow(name="flamenco-flow-records")
def flow_records_flow(
    input_path: str,
    fmt: str,
    packs: list[str],
    out_dir: str,
    experiments: Optional[str] = None,
    alerts: Optional[str] = None,
    config: Any = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: Optional[str] = None,
    runner: Optional[str] = None,
    workers: Optional[int] = None,
    scheduler: Optional[str] = None,
) -> dict:
    """Run the LF-combination experiment on one flows file.

    ``fmt``: cicflowmeter, nfdump, csv or parquet; ``packs``: LF pack files; ``experiments``: an
    experiment file (default: every single LF, every pair, the whole pack); ``alerts``: alert windows
    as ground truth instead of the label column; ``config``: overrides of ``conf/flow_records.yaml`` (a
    YAML path or a mapping). Writes ``out_dir/labels.parquet``, ``report.json``, ``tables/``, ``trees/``;
    logs an MLflow parent run (``experiment``) with one child run per combination. Returns a summary.
    ``runner``/``workers``/``scheduler``: the per-combination fan-out's task runner (else the config's
    ``runner``, else the environment; ``tasks/runners.py``).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: the output folder is a file; give a folder")
    with OutputLock(out):  # a second run into the same folder gets OutputInUse, not interleaved files
        return _flow_records(input_path, fmt, packs, out, experiments, alerts, config, experiment, run_name,
                             runner, workers, scheduler)


def _flow_records(input_path, fmt, packs, out: Path, experiments, alerts, config, experiment, run_name,
                  runner, workers, scheduler) -> dict:
    # Whatever ends the flow early (unusable input, a broken fan-out, an interrupt), the parent run ends
    # FAILED with the reason in flamenco.error: a run left RUNNING says nothing.
    params = {"input": str(input_path), "format": fmt, "packs": [str(p) for p in packs],
              "experiments": str(experiments or ""), "alerts": str(alerts or ""),
              "config": config if isinstance(config, dict) else str(config or "")}
    parent = start_parent_run_task(experiment, run_name or f"flow-records-{Path(input_path).stem}", params=params,
                                   tags={"flamenco.pipeline": "flow_records", "flamenco.format": fmt})
    try:
        return _flow_records_body(input_path, fmt, packs, out, experiments, alerts, config, experiment, parent,
                                  runner, workers, scheduler)
    except BaseException as exc:
        close_failed_parent_run(parent, exc)
        raise


def _flow_records_body(input_path, fmt, packs, out: Path, experiments, alerts, config, experiment, parent,
                       runner, workers, scheduler) -> dict:
    from flamenco_core.ingest.pipeline import file_sha256, no_rows_message
    from tasks.runners import fan_out

    report = ingest_task([str(input_path)], fmt, str(out / "ingest"), None)
    if not report["rows"]:
        raise NoRows(no_rows_message(report))
    sources = {
        "input": str(input_path), "format": fmt, "input_sha256": report["files"][0]["sha256"],
        "ingest": {k: report[k] for k in ("input_records", "rows", "dropped", "quarantined")},
        "packs": [{"path": str(p), "sha256": file_sha256(p)} for p in packs],
        "experiments": {"path": str(experiments), "sha256": file_sha256(experiments)} if experiments else None,
        "alerts": {"path": str(alerts), "sha256": file_sha256(alerts)} if alerts else None,
        "dataset": Path(input_path).stem,
    }
    prep = prepare_task(report["data_path"], [str(p) for p in packs], str(out), experiments, alerts, config, sources)
    if prep["outcome"] != "ok":
        finish_failed_preparation_task(parent, str(out), prep["error"])
        records = prep["report"]["combinations"]
        create_markdown_artifact(_summary_markdown(f"Flow records: preparation failed: {prep['error']}", records),
                                 key="flow-records-summary")
        return {"experiment": experiment, "parent_run_id": parent, "out_dir": str(out), "preparation": "failed",
                "error": prep["error"], "exit_code": prep.get("exit_code", EXIT_UNUSABLE),
                "summary": prep["report"]["summary"], "combinations": records,
                "report": str(out / "report.json"), "labels": None}
    records, _ = fan_out(combinations_flow, prep["combinations"], prep["work_dir"], str(out), experiment, parent,
                         prep["dataset"], runner=runner, workers=workers, scheduler=scheduler,
                         config={"runner": prep["runner"]} if prep.get("runner") else None)
    final = finish_task(prep["work_dir"], str(out), records, parent,
                        {"mlflow": {"experiment": experiment, "parent_run_id": parent}})
    s = final["summary"]
    create_markdown_artifact(
        _summary_markdown(f"Flow records ({prep['dataset']}): {s['ok']} ok, {s['skipped']} skipped, {s['failed']} failed",
                          final["combinations"]),
        key="flow-records-summary",
    )
    return {
        "experiment": experiment,
        "parent_run_id": parent,
        "out_dir": str(out),
        "preparation": "ok",
        "dataset": prep["dataset"],
        "summary": s,
        "combinations": [
            {k: r.get(k) for k in ("combination", "lfs", "outcome", "reason", "lf_f1", "cls_f1", "tree_f1",
                                   "tree_vs_lf_difference", "coverage", "f1_undefined", "run_id")}
            for r in final["combinations"]
        ],
        "report": str(out / "report.json"),
        "labels": final["labels"],
        "tables": final["tables"],
    }
