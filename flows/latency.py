"""The latency flow (issue 4): ingest -> labeled pool -> SD pairs -> one task and MLflow child run per pair
-> labels for every row, report.json, the averaged comparison table and chart on the parent run."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, unmapped

from tasks import tracking
from tasks.caching import call_cached
from tasks.common import close_failed_parent_run, collect_mapped, error_text, finish_parent_run_task, start_parent_run_task
from flows.ingest import ingest_sources
from tasks.ingest import split_pairs_task
from tasks.latency import (
    attach_labels_task,
    check_latency_input,
    latency_pair_task,
    publish_summary_task,
    source_level_task,
    summarize_run_task,
    write_latency_outputs_task,
)
from tasks.report import write_report_task

DEFAULT_EXPERIMENT = "flamenco-latency"


SOURCES = {"atlas": "atlas", "scamper": "ark", "warts": "ark"}


@flow(name="flamenco-latency-pairs")
def latency_pairs_flow(items: list[dict], config: dict, out_dir: str, experiment: str, parent_run_id: str,
                       source: str, borrowed: dict | None = None) -> list[dict]:
    """Fan out one task (and MLflow child run) per SD pair; returns per-pair outcomes, never raises for one.
    ``borrowed``: the source level's LFs (plain data) for pairs that cannot learn their own."""
    futures = latency_pair_task.map(
        items, config=unmapped(config), out_dir=unmapped(out_dir), experiment=unmapped(experiment),
        parent_run_id=unmapped(parent_run_id), source=unmapped(source), borrowed=unmapped(borrowed),
    )
    out = []
    for item, (result, err) in zip(items, collect_mapped(futures)):
        if err is None:
            out.append({"status": "ok", **result})
        else:
            out.append({"status": "failed", "pair": item["pair_id"], "rows": item["rows"], "error": error_text(err)})
    return out


@flow(name="flamenco-latency")
def latency_flow(
    sources: list[str],
    fmt: str,
    out_dir: str,
    labels: str | None = None,
    config: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    truth: str | None = None,
    run_name: str | None = None,
    runner: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> dict:
    """Run the automatic latency path on ``sources``; writes ``out_dir/labels.parquet`` and
    ``out_dir/report.json`` and returns the summary (pairs, average, outcomes).

    ``truth`` (good/noise for any rows, joined like ``labels``) scores the rows outside the labeled pool:
    ``f1_unlabeled`` per pair and on average. A run in which no SD pair could be labeled ends the MLflow
    parent run FAILED and raises :class:`~flamenco_core.errors.NoUsableData` with the reason and the fix.

    ``runner`` (threads | processes | dask), ``workers`` and ``scheduler`` (a Dask scheduler address) pick
    the per-pair fan-out's task runner; else the config's ``runner``, else the environment
    (``tasks/runners.py``). The runner changes where pairs run, never their results."""
    from flamenco_core.experiments.latency import LatencyConfig
    from flamenco_core.outputs import OutputLock

    cfg = LatencyConfig.from_yaml(config)
    out = Path(out_dir)
    # One run per output folder: a second writer gets OutputInUse (exit 3) before it touches anything.
    with OutputLock(out):
        return _latency_run(sources, fmt, out, cfg, labels, config, experiment, truth, run_name, runner, workers, scheduler)


def _latency_run(sources, fmt, out: Path, cfg, labels, config, experiment, truth, run_name, runner, workers, scheduler) -> dict:
    # Where pairs run is not what the run is: the runner stays out of the params and the run identity.
    params = {"format": fmt, "sources": [str(s) for s in sources], "labels": labels or "", "truth": truth or "",
              "config": cfg.model_dump(mode="json", exclude={"runner"})}
    # The run's identity covers the inputs' content, so a retry reuses its runs and changed data gets new ones.
    key = tracking.run_key("flamenco-latency", [s for s in [*sources, labels, truth] if s and Path(s).is_file()],
                           {k: v for k, v in params.items() if k != "sources"} | {"out_dir": str(out.resolve()), "run_name": run_name})
    parent = start_parent_run_task(
        experiment, run_name or f"latency-{fmt}-{out.name}", params=params,
        tags={"flamenco.pipeline": "latency", "flamenco.format": fmt, "flamenco.dataset": out.name}, key=key,
    )
    # Whatever ends the run early (unusable input, no usable pair, a broken fan-out, an interrupt), the parent
    # run ends FAILED with the reason in flamenco.error: a run left RUNNING says nothing.
    try:
        return _latency_pipeline(sources, fmt, out, cfg, labels, experiment, truth, parent, runner, workers, scheduler)
    except BaseException as exc:
        close_failed_parent_run(parent, exc)
        raise


def _latency_pipeline(sources, fmt, out: Path, cfg, labels, experiment, truth, parent, runner, workers, scheduler) -> dict:
    from tasks.runners import fan_out

    settings = cfg.model_dump(mode="json", exclude={"runner"})
    report, _ = ingest_sources(sources, fmt, str(out / "ingest"), runner=runner, workers=workers, scheduler=scheduler,
                               config={"runner": cfg.runner} if cfg.runner else None)
    check_latency_input(report)
    labeled = attach_labels_task(report["data_path"], labels, str(out / "ingest" / "labeled.parquet"), truth)
    split, _ = call_cached(split_pairs_task, labeled["path"], str(out / "pairs"), cfg.min_points,
                           outputs=lambda r: [p["path"] for p in r["pairs"]])
    source = SOURCES.get(fmt, "csv")
    # LFs learned on every pair's labeled rows at once, for the pairs whose own labels cannot teach
    borrowed = source_level_task(split["pairs"], settings, source)
    outcomes, choice = fan_out(
        latency_pairs_flow, split["pairs"], settings, str(out / "per_pair"), experiment, parent, source,
        borrowed.get("level"), runner=runner, workers=workers, scheduler=scheduler,
        config={"runner": cfg.runner} if cfg.runner else None,
    )
    context = {"labeled_rows": labeled["labeled_rows"], "truth_rows": labeled.get("truth_rows", 0),
               "label_source_of_pool": "user" if labels or labeled["labeled_rows"] else "heuristic",
               "ingest": {k: report[k] for k in ("input_records", "rows", "dropped", "quarantined")},
               "parent_run_id": parent, "experiment": experiment, "runner": choice["kind"]}
    run = summarize_run_task(split, outcomes, context, borrowed, cfg.min_points)
    summary = run["summary"]
    written = write_latency_outputs_task(str(out), labeled["path"], run["done"], summary, settings, parent)
    finish_parent_run_task(parent, summary, publish_summary_task(summary, written["markdown"]), "FINISHED")
    summary["labels_path"] = written["labels_path"]
    summary["page"] = write_report_task(str(out), parent)  # index.html, and the comparison on the parent run
    return summary
