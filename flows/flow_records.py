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

from pathlib import Path
from typing import Any, Optional, Union

from prefect import flow, unmapped

from flamenco_core.errors import UsageError
from flamenco_core.ingest.pipeline import NoRows
from flamenco_core.outputs import OutputLock
from tasks.common import close_failed_parent_run, start_parent_run_task
from tasks.flow_records import (
    combination_records,
    combination_task,
    finish_failed_preparation_task,
    finish_task,
    prepare_task,
)
from flows.ingest import ingest_sources
from tasks.report import write_report_task

DEFAULT_EXPERIMENT = "flamenco-flow-records"


@flow(name="flamenco-flow-records-combinations")
def combinations_flow(combinations: list[dict], work_dir: str, out_dir: str, experiment: str,
                      parent_run_id: Optional[str], dataset: str = "flows") -> list[dict]:
    """Fan out one task per combination (``.map``): each labels (LF F1, label model), trains (the end
    classifier), evaluates (classifier F1, prediction differences) and explains (trees). Returns every
    combination's record; never raises for one."""
    futures = combination_task.map(
        combinations,
        work_dir=unmapped(work_dir),
        out_dir=unmapped(out_dir),
        experiment=unmapped(experiment),
        parent_run_id=unmapped(parent_run_id),
    )
    return combination_records(combinations, futures, out_dir, dataset, experiment, parent_run_id)


@flow(name="flamenco-flow-records")
def flow_records_flow(
    input_path: Union[str, list[str]],
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
    """Run the LF-combination experiment on a flows file, or on several read as one dataset.

    ``input_path``: a file, a folder (its files of the format) or a list of both (issue 13).

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
        summary = _flow_records(input_path, fmt, packs, out, experiments, alerts, config, experiment, run_name,
                                runner, workers, scheduler)
        summary["page"] = write_report_task(str(out), summary.get("parent_run_id"))  # index.html, MLflow comparison
        return summary


def _flow_records(input_path, fmt, packs, out: Path, experiments, alerts, config, experiment, run_name,
                  runner, workers, scheduler) -> dict:
    # Whatever ends the flow early (unusable input, a broken fan-out, an interrupt), the parent run ends
    # FAILED with the reason in flamenco.error: a run left RUNNING says nothing.
    params = {"input": str(input_path), "format": fmt, "packs": [str(p) for p in packs],
              "experiments": str(experiments or ""), "alerts": str(alerts or ""),
              "config": config if isinstance(config, dict) else str(config or "")}
    one = input_path if isinstance(input_path, str) else (input_path[0] if len(input_path) == 1 else None)
    name = Path(str(one)).stem if one is not None else Path(str(input_path[0])).parent.name
    parent = start_parent_run_task(experiment, run_name or f"flow-records-{name}", params=params,
                                   tags={"flamenco.pipeline": "flow_records", "flamenco.format": fmt})
    try:
        return _flow_records_body(input_path, fmt, packs, out, experiments, alerts, config, experiment, parent,
                                  runner, workers, scheduler)
    except BaseException as exc:
        close_failed_parent_run(parent, exc)
        raise


def _flow_records_body(input_path, fmt, packs, out: Path, experiments, alerts, config, experiment, parent,
                       runner, workers, scheduler) -> dict:
    from flamenco_core.ingest.pipeline import no_rows_message
    from tasks.runners import fan_out

    from flamenco_core.experiments.inputs import expand_inputs

    # several inputs (or a folder) are ingested together: one canonical table, one dataset
    paths = [str(p) for p in expand_inputs([input_path] if isinstance(input_path, str) else input_path, fmt)]
    report, _ = ingest_sources(paths, fmt, str(out / "ingest"), None, runner=runner, workers=workers, scheduler=scheduler)
    if not report["rows"]:
        raise NoRows(no_rows_message(report))
    packs = [str(p) for p in packs]
    source = str(input_path) if isinstance(input_path, str) else [str(p) for p in input_path]
    prep = prepare_task(report, source, fmt, packs, str(out), experiments, alerts, config)
    if prep["outcome"] != "ok":
        return finish_failed_preparation_task(prep, str(out), experiment, parent)
    records, _ = fan_out(combinations_flow, prep["combinations"], prep["work_dir"], str(out), experiment, parent,
                         prep["dataset"], runner=runner, workers=workers, scheduler=scheduler,
                         config={"runner": prep["runner"]} if prep.get("runner") else None)
    return finish_task(prep["work_dir"], str(out), records, experiment, parent)
