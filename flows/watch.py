"""The dump watcher: find new measurement dumps in a folder and run the latency pipeline on each.

New means new content (``flamenco_core.ingest.manifest``: keyed by SHA-256, states pending ->
processing -> done | failed, saved atomically at each step). Each dump runs as its own subflow, so a
corrupt dump fails only itself: it is marked ``failed`` with the error and the others go on. A crash
mid-way (the process dies) leaves the dump it was on ``processing``; the next run does it first, and
does not redo the ``done`` ones. Reprocessing that dump is cheap and clean: ingest results are cached
on the dump's content and MLflow runs are found by their deterministic identity, not duplicated.

The pipeline is ``flows/latency.py:latency_flow`` when that module exists, else the ingest flow (ingest,
SD-pair split, per-pair profiles), with a logged note.

Output, in ``out``: ``manifest.json`` (unless ``manifest`` says otherwise), ``dumps/<name>-<hash8>/`` per
dump, and ``watch_report.json``: ``processed`` and ``skipped`` (file names), ``failed`` (``{file, error}``),
``skipped_reasons`` and the manifest's counts.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Callable, Optional

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flamenco_core.ingest.manifest import Entry, Manifest, ManifestBusy, atomic_write_text
from tasks.report import write_report_task

REPORT_FILE = "watch_report.json"
MANIFEST_FILE = "manifest.json"
DEFAULT_EXPERIMENT = "flamenco-watch"
_SAFE = re.compile(r"[^0-9A-Za-z._-]+")


def pipeline_for_dumps(prefer: str = "auto") -> tuple[str, Callable]:
    """``(name, flow)``: the latency flow (``prefer`` ``auto`` or ``latency``), else the ingest flow."""
    if prefer in ("auto", "latency"):
        from flows.latency import latency_flow

        return "latency", latency_flow
    from flows.ingest import ingest_flow

    return "ingest", ingest_flow


def _dump_dir(out: Path, e: Entry) -> Path:
    stem = _SAFE.sub("-", Path(e.file).name.split(".")[0]) or "dump"
    return out / "dumps" / f"{stem}-{e.sha256[:8]}"


def _small(result) -> dict:
    """What of a pipeline's summary goes into the manifest: ids and counts, not per-item lists."""
    if not isinstance(result, dict):
        return {}
    keep = {}
    for k, v in result.items():
        if isinstance(v, (str, int, float, bool)) or v is None:
            keep[k] = v
        elif k == "report" and isinstance(v, dict):
            keep[k] = {kk: vv for kk, vv in v.items() if isinstance(vv, (str, int, float, bool))}
    return keep


def _error_of(state) -> str:
    err = state.result(raise_on_failure=False)
    if isinstance(err, BaseException):
        return f"{type(err).__name__}: {err}"
    return state.message or state.name or "failed"


def run_dump(pipeline: str, pipeline_flow: Callable, e: Entry, out_dir: Path, experiment: str,
             min_points: int, config: Optional[str], runner: Optional[str], workers: Optional[int]):
    """Run the pipeline on one dump as a subflow; returns its final Prefect state (never raises for a
    failure inside the pipeline)."""
    name = f"{Path(e.file).name.split('.')[0]}-{e.sha256[:8]}"
    run_name = f"watch-{e.format}-{name}"
    sub = pipeline_flow.with_options(flow_run_name=f"{pipeline}-{name}")
    if pipeline == "latency":
        kwargs = {"config": config, "experiment": experiment, "run_name": run_name, "runner": runner, "workers": workers}
        return sub([e.path], e.format, str(out_dir), return_state=True, **{k: v for k, v in kwargs.items() if v is not None})
    return sub([e.path], e.format, str(out_dir), min_points=min_points, experiment=experiment, run_name=run_name,
               runner=runner, workers=workers, return_state=True)


def _markdown(report: dict) -> str:
    lines = [f"# Dump watcher: {len(report['processed'])} processed, {len(report['failed'])} failed, "
             f"{len(report['skipped'])} skipped", "", f"folder `{report['directory']}`, pipeline `{report['pipeline']}`",
             "", "| file | outcome | detail |", "| --- | --- | --- |"]
    lines += [f"| {f} | processed | |" for f in report["processed"]]
    lines += [f"| {f['file']} | failed | {f['error'][:300]} |" for f in report["failed"]]
    lines += [f"| {f} | skipped | {report['skipped_reasons'].get(f, '')} |" for f in report["skipped"]]
    return "\n".join(lines)


@flow(name="flamenco-watch-dumps")
def watch_dumps_flow(
    directory: str,
    out: str,
    experiment: str = DEFAULT_EXPERIMENT,
    pipeline: str = "auto",
    min_points: int = 100,
    min_age_s: float = 0.0,
    retry_failed: bool = False,
    recursive: bool = False,
    manifest: Optional[str] = None,
    config: Optional[str] = None,
    runner: Optional[str] = None,
    workers: Optional[int] = None,
) -> dict:
    """Process the new dumps in ``directory`` once (see the module docstring); returns the report also
    written to ``out/watch_report.json``.

    ``pipeline``: ``auto`` (latency when available, else ingest), ``latency`` or ``ingest``;
    ``min_age_s``: leave files modified more recently alone (they may still be copied in);
    ``retry_failed``: run dumps that failed before again; ``config``: the latency pipeline's config file;
    ``runner``/``workers``: the per-pair fan-out runner of the pipeline (latency or the ingest fallback).
    """
    logger = get_run_logger()
    out_p = Path(out)
    out_p.mkdir(parents=True, exist_ok=True)
    name, pipeline_flow = pipeline_for_dumps(pipeline)
    if name != "latency":
        logger.info("flows/latency.py not found (or pipeline=%r): running the ingest flow on each dump", pipeline)
    m = Manifest.load(manifest or out_p / MANIFEST_FILE)
    started = time.time()
    processed: list[str] = []
    failed: list[dict] = []
    try:
        with m.lock():
            scan = m.scan(directory, min_age_s=min_age_s, retry_failed=retry_failed, recursive=recursive)
            resumed = [e.file for e in scan.todo if e.state == "processing"]
            if resumed:
                logger.info("resuming %d dump(s) interrupted by a crash: %s", len(resumed), ", ".join(resumed))
            for e in scan.todo:
                m.start(e.sha256)
                logger.info("dump %s (%s, %s)", e.file, e.format, e.sha256[:12])
                state = run_dump(name, pipeline_flow, e, _dump_dir(out_p, e), experiment, min_points, config,
                                 runner, workers)
                if state.is_completed():
                    result = state.result()
                    m.finish(e.sha256, {**_small(result), "out_dir": str(_dump_dir(out_p, e))})
                    processed.append(e.file)
                    bad = result.get("failed") if isinstance(result, dict) else None
                    if bad:
                        logger.warning("dump %s: %s item(s) failed inside the pipeline (see its summary)", e.file, bad)
                else:
                    err = _error_of(state)
                    m.fail(e.sha256, err)
                    failed.append({"file": e.file, "error": err})
                    logger.error("dump %s failed: %s", e.file, err)
    except ManifestBusy as exc:
        # A scheduled run overlapping a manual one (or the reverse): the other one does the work.
        logger.warning("%s: nothing done", exc)
        report = {"directory": str(directory), "pipeline": name, "processed": [], "skipped": [], "failed": [],
                  "skipped_reasons": {}, "busy": str(exc)}
        atomic_write_text(out_p / REPORT_FILE, json.dumps(report, indent=2) + "\n")
        return report
    report = {
        "directory": str(Path(directory).resolve()),
        "manifest": str(m.path.resolve()),
        "pipeline": name,
        "experiment": experiment,
        "processed": processed,
        "skipped": [f for f, _ in scan.skipped],
        "failed": failed,
        "skipped_reasons": dict(scan.skipped),
        "resumed": resumed,
        "counts": m.counts(),
        "seconds": round(time.time() - started, 3),
    }
    atomic_write_text(out_p / REPORT_FILE, json.dumps(report, indent=2, allow_nan=False) + "\n")
    create_markdown_artifact(_markdown(report), key="watch-dumps-report")
    write_report_task(str(out_p))  # index.html linking each dump's own page
    return report
