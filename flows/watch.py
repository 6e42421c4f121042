"""The dump watcher flow: run the latency pipeline (or the ingest flow) on each new dump in a folder, one
subflow per dump, so a corrupt dump fails only itself; a crash resumes where it stopped. What "new" means,
the manifest's states and the output layout: docs/orchestration.md, "The dump watcher"."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable, Optional

from prefect import flow, get_run_logger

from flamenco_core.ingest.manifest import Entry, Manifest, ManifestBusy
from flamenco_core.report import watch as watch_report
from tasks.watch import write_watch_report_task

REPORT_FILE = watch_report.REPORT_FILE
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
        return write_watch_report_task(str(out_p), watch_report.busy(out_p, directory=directory, pipeline=name,
                                                                      reason=str(exc)))
    report = watch_report.assemble(
        out_p, directory=directory, manifest=m.path, pipeline=name, experiment=experiment, processed=processed,
        failed=failed, skipped=dict(scan.skipped), resumed=resumed, counts=m.counts(), seconds=time.time() - started)
    return write_watch_report_task(str(out_p), report)
