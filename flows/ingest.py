"""The ingest flow: ingest a source, split SD pairs, fan out one profiling task per pair, log to MLflow."""

from __future__ import annotations

from pathlib import Path

from prefect import flow, unmapped

from flamenco_core.errors import NoUsableData, UsageError
from flamenco_core.ingest.pairs import no_pairs_message
from flamenco_core.ingest.pipeline import NoRows
from flamenco_core.outputs import OutputLock
from tasks import tracking
from tasks.caching import call_cached
from tasks.common import (
    close_failed_parent_run,
    collect_mapped,
    error_text,
    finish_parent_run_task,
    start_parent_run_task,
)
from tasks.ingest import (
    ingest_file_task,
    ingest_task,
    merge_ingest_task,
    profile_pair_task,
    split_pairs_task,
    summarize_ingest_task,
)

DEFAULT_EXPERIMENT = "flamenco-ingest"


def _outcomes(items: list[dict], futures) -> list[dict]:
    """Per-item outcome (ok / failed with the error); a failed item never raises here."""
    out = []
    for item, (result, err) in zip(items, collect_mapped(futures)):
        if err is None:
            out.append({"item": item["pair_id"], "status": "ok", "rows": item.get("rows"), "run_id": result["run_id"]})
        else:
            out.append({"item": item["pair_id"], "status": "failed", "rows": item.get("rows"), "error": error_text(err)})
    return out


@flow(name="flamenco-profile-items")
def profile_items_flow(items: list[dict], out_dir: str, experiment: str, parent_run_id: str, source: str) -> list[dict]:
    """Fan out one profiling task per item (SD pair); returns per-item outcomes, never raises for one item."""
    futures = profile_pair_task.map(
        items,
        out_dir=unmapped(out_dir),
        experiment=unmapped(experiment),
        parent_run_id=unmapped(parent_run_id),
        source=unmapped(source),
    )
    return _outcomes(items, futures)


@flow(name="flamenco-ingest-files")
def ingest_files_flow(sources: list[str], fmt: str, parts_dir: str, options: dict | None = None) -> list:
    """Fan out one reading task per file; the first file that fails fails the ingest, as it would read in
    sequence (an ingest is one table: a missing file is not a partial result)."""
    futures = ingest_file_task.map(sources, list(range(len(sources))), fmt=unmapped(fmt),
                                   parts_dir=unmapped(parts_dir), options=unmapped(options))
    results = collect_mapped(futures)
    for result, err in results:
        if err is not None:
            raise err
    return [result for result, _ in results]


def ingest_sources(sources: list[str], fmt: str, out_dir: str, options: dict | None = None, *,
                   fan_out_files: bool = False, runner: str | None = None, workers: int | None = None,
                   scheduler: str | None = None, config: dict | None = None) -> tuple[dict, bool]:
    """Ingest ``sources`` into ``out_dir`` for a flow; returns ``(report dict, cached)``.

    By default one task reads the files in sequence, cached on the inputs' content. With ``fan_out_files``
    and two files or more, one task per file runs on the runner (``tasks/runners.py``: threads, processes,
    a Dask cluster), then one merge task; the outputs are the same. Opt-in: on a 2-core machine the
    sequential ingest already keeps both cores busy, and the fan-out was slower there (the parts written
    and read back, the workers' start-up; docs/ingest.md); it pays where workers have cores of their own."""
    from flamenco_core.outputs import temp_name
    from tasks.runners import fan_out

    if not fan_out_files or len(sources) < 2:
        return call_cached(ingest_task, sources, fmt, out_dir, options, outputs=lambda r: [r["data_path"]])
    parts_dir = str(Path(out_dir) / temp_name("ingest-parts"))
    parts, _ = fan_out(ingest_files_flow, [str(s) for s in sources], fmt, parts_dir, options,
                       runner=runner, workers=workers, scheduler=scheduler, config=config)
    return merge_ingest_task(parts, fmt, out_dir, parts_dir), False


@flow(name="flamenco-ingest")
def ingest_flow(
    sources: list[str],
    fmt: str,
    out_dir: str,
    min_points: int = 100,
    experiment: str = DEFAULT_EXPERIMENT,
    options: dict | None = None,
    run_name: str | None = None,
    runner: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    fan_out_files: bool = False,
) -> dict:
    """Ingest ``sources`` (format ``fmt``) into ``out_dir``, split latency data into SD pairs, profile each
    pair in its own task and MLflow child run. ``fan_out_files``: read each file in its own task on the
    runner, then merge (:func:`ingest_sources`). Returns the summary (also a Prefect artifact and the MLflow
    parent run's ``summary.json``).

    ``runner`` (threads | processes | dask), ``workers`` and ``scheduler`` (a Dask scheduler address) pick
    the task runner of the per-pair fan-out (``tasks/runners.py``). Ingest and split are cached on the
    inputs' content (``tasks/caching.py``); the parent run's identity is the flow name, the inputs' hashes
    and the parameters, so a retry or a rerun logs into the same MLflow runs.

    ``out_dir`` is locked for the run (:class:`~flamenco_core.outputs.OutputInUse` for a second writer).
    The parent run always ends: FINISHED with ``flamenco.outcome`` ok or partial, or FAILED with the
    reason in ``flamenco.error`` (no row ingested, no SD pair of ``min_points`` rows, every item failed,
    or anything that stops the flow), and the flow then raises."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: the output folder is a file; give a folder")
    with OutputLock(out):  # a second run into the same folder gets OutputInUse, not interleaved files
        return _ingest_flow(sources, fmt, out, min_points, experiment, options, run_name, runner, workers, scheduler,
                            fan_out_files)


def _ingest_flow(sources, fmt, out: Path, min_points, experiment, options, run_name, runner, workers, scheduler,
                 fan_out_files) -> dict:
    from flamenco_core.ingest.pipeline import no_rows_message
    from tasks.runners import fan_out

    params = {"format": fmt, "sources": [str(s) for s in sources], "min_points": min_points, "options": options or {}}
    key = tracking.run_key(
        "flamenco-ingest",
        [s for s in sources if Path(s).is_file()],
        {k: v for k, v in params.items() if k != "sources"} | {"out_dir": str(out.resolve()), "run_name": run_name},
    )
    parent = start_parent_run_task(
        experiment,
        run_name or f"ingest-{fmt}-{out.name}",
        params=params,
        tags={"flamenco.pipeline": "ingest", "flamenco.format": fmt},
        key=key,
    )
    # Whatever ends the flow early (unusable input, a broken fan-out, an interrupt), the parent run ends
    # FAILED with the reason: a run left RUNNING says nothing.
    try:
        report, ingest_cached = ingest_sources(sources, fmt, str(out), options, fan_out_files=fan_out_files,
                                               runner=runner, workers=workers, scheduler=scheduler)
        if not report["rows"]:
            raise NoRows(no_rows_message(report, options))
        split_cached = False
        if report["kind"] == "latency":
            split, split_cached = call_cached(split_pairs_task, report["data_path"], str(out / "pairs"), min_points,
                                              outputs=lambda r: [p["path"] for p in r["pairs"]])
            items, skipped = split["pairs"], split["skipped"]
            if not items:
                raise NoUsableData(no_pairs_message(skipped, min_points, "lower min_points", where=str(out / "pairs")))
        else:
            items = [{"pair_id": "all", "rows": report["rows"], "path": report["data_path"]}]
            skipped = []
        outcomes, choice = fan_out(profile_items_flow, items, str(out / "profiles"), experiment, parent, fmt,
                                   runner=runner, workers=workers, scheduler=scheduler)
        summary = summarize_ingest_task(report, outcomes, skipped, {
            "experiment": experiment, "parent_run_id": parent, "out_dir": str(out), "runner": choice["kind"],
            "cached": {"ingest": ingest_cached, "split": split_cached}})
        outcome, n_failed = summary["outcome"], summary["failed"]
        finish_parent_run_task(
            parent,
            summary,
            {"input_records": report["input_records"], "rows": report["rows"], "quarantined": report["quarantined"],
             "items_ok": len(outcomes) - n_failed, "items_failed": n_failed, "items_skipped": len(skipped)},
            "FAILED" if outcome == "failed" else "FINISHED",
            outcome,
        )
    except BaseException as exc:
        close_failed_parent_run(parent, exc)
        raise
    if outcome == "failed":  # the parent run already says so; the caller (CLI, watcher) must hear it too
        raise NoUsableData(summary["error"])
    return summary
