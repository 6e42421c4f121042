"""Prefect tasks for ingest: read + clean, SD-pair split, per-pair statistics profile."""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from flamenco_core.ingest.pairs import validate_latency, write_pairs
from flamenco_core.ingest.pipeline import file_sha256, ingest
from flamenco_core.preprocess.profile import profile
from tasks import tracking
from tasks.caching import cached


def _transient(task, task_run, state) -> bool:
    """Retry only I/O hiccups; a malformed input fails the same way every time."""
    try:
        state.result()
    except OSError:
        return True
    except Exception:
        return False
    return False


# Preprocessing is cached on the inputs' content, the task's and the readers' source (tasks/caching.py):
# a rerun on an unchanged dump reuses the canonical table and the SD-pair split.
@task(name="ingest", retries=2, retry_delay_seconds=1, retry_condition_fn=_transient,
      **cached(files=("sources",), code=("flamenco_core.ingest",)))
def ingest_task(sources: list[str], fmt: str, out_dir: str, options: dict | None = None) -> dict:
    report = ingest(sources, fmt, out_dir, options=options)
    get_run_logger().info(
        "ingested %d records -> %d rows, dropped %s, quarantined %d",
        report.input_records, report.rows, report.dropped, report.quarantined,
    )
    return report.to_dict()


@task(name="split-sd-pairs", retries=2, retry_delay_seconds=1, retry_condition_fn=_transient,
      **cached(files=("data_path",), code=("flamenco_core.ingest.pairs", "flamenco_core.ingest.schema")))
def split_pairs_task(data_path: str, out_dir: str, min_points: int) -> dict:
    split = write_pairs(data_path, out_dir, min_points)
    get_run_logger().info("%d SD pairs kept, %d skipped (< %d rows)", len(split.pairs), len(split.skipped), min_points)
    return split.to_dict()


@task(name="profile-pair", retries=2, retry_delay_seconds=1, retry_condition_fn=_transient)
def profile_pair_task(item: dict, out_dir: str, experiment: str, parent_run_id: str, source: str) -> dict:
    """Profile one SD pair (or a whole flows table), write its CSV, log one MLflow child run."""
    import pandas as pd

    path = Path(item["path"])
    df = pd.read_parquet(path)
    if "rtt_ms" in df.columns:
        validate_latency(df, str(path))
        prof = profile(df, ["rtt_ms"])
    else:
        prof = profile(df.drop(columns=[c for c in ("src_port", "dst_port", "protocol") if c in df.columns]))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv = out / f"{item['pair_id']}_profile.csv"
    prof.to_csv(csv)
    metrics = {f"{feat}.{stat}" if len(prof) > 1 else stat: v for feat, row in prof.iterrows() for stat, v in row.items()}
    run_id = tracking.start_run(
        experiment,
        item["pair_id"],
        parent_run_id=parent_run_id,
        params={"source": source, "pair": item["pair_id"], "src": item.get("src", ""), "dst": item.get("dst", ""),
                "rows": len(df), "input_sha256": file_sha256(path)},
        metrics=metrics,
        tags={"flamenco.item": item["pair_id"], "flamenco.pipeline": "ingest"},
    )
    tracking.log_artifacts(run_id, [csv])
    tracking.end_run(run_id)
    return {"pair_id": item["pair_id"], "rows": len(df), "profile": str(csv), "run_id": run_id}


@task(name="start-parent-run", retries=2, retry_delay_seconds=1)
def start_parent_run_task(experiment: str, run_name: str, params: dict, tags: dict, key: str | None = None) -> str:
    """Open the flow's parent MLflow run; ``key`` (``tracking.run_key``) makes reruns reuse it."""
    return tracking.start_run(experiment, run_name, params=params, tags=tags, key=key)


@task(name="fail-parent-run", retries=2, retry_delay_seconds=1)
def fail_parent_run_task(run_id: str, error: str) -> None:
    """End the parent run FAILED with the error as a tag, so MLflow shows why (the flow then re-raises)."""
    tracking.close_run(run_id, "FAILED", error=error)


def close_failed_parent_run(run_id: str, exc: BaseException) -> None:
    """End the parent run FAILED with ``exc`` as the reason, from an ``except`` block of a flow: a plain
    call (no task: the flow may be being cancelled or interrupted) that never hides the original error."""
    try:
        tracking.close_run(run_id, "FAILED", error=f"{type(exc).__name__}: {exc}")
    except Exception:  # the tracking store itself may be what failed; the flow re-raises the cause
        logging.getLogger(__name__).warning("could not mark MLflow run %s FAILED", run_id, exc_info=True)


@task(name="finish-parent-run")
def finish_parent_run_task(run_id: str, summary: dict, metrics: dict, status: str, outcome: str | None = None) -> None:
    """Log the summary and metrics, end the parent run (``status`` FINISHED or FAILED) with its outcome."""
    tracking.log(run_id, metrics=metrics)
    tracking.log_json(run_id, summary, "summary.json")
    tracking.close_run(run_id, status, outcome=outcome, error=summary.get("error") if status == "FAILED" else None)
