"""Prefect tasks for ingest: read + clean, SD-pair split, per-pair statistics profile."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from flamenco_core.ingest.fileparts import FilePart, ingest_file, merge_files
from flamenco_core.ingest.pairs import validate_latency, write_pairs
from flamenco_core.ingest.pipeline import file_sha256, ingest
from flamenco_core.preprocess.profile import profile
from tasks import tracking
from tasks.caching import cached
from tasks.common import IO_RETRIES


# Preprocessing is cached on the inputs' content, the task's and the readers' source (tasks/caching.py):
# a rerun on an unchanged dump reuses the canonical table and the SD-pair split.
@task(name="ingest", **IO_RETRIES,
      **cached(files=("sources",), code=("flamenco_core.ingest",)))
def ingest_task(sources: list[str], fmt: str, out_dir: str, options: dict | None = None) -> dict:
    report = ingest(sources, fmt, out_dir, options=options)
    get_run_logger().info(
        "ingested %d records -> %d rows, dropped %s, quarantined %d",
        report.input_records, report.rows, report.dropped, report.quarantined,
    )
    return report.to_dict()


@task(name="ingest-file", **IO_RETRIES)
def ingest_file_task(path: str, index: int, fmt: str, parts_dir: str, options: dict | None = None) -> FilePart:
    """Read one file of a fanned-out ingest into its part (``flamenco_core.ingest.fileparts``)."""
    part = ingest_file(path, index, fmt, parts_dir, options=options)
    r = part.report
    get_run_logger().info("%s: %d records -> %d rows, dropped %s, quarantined %d",
                          Path(path).name, r.input_records, r.rows, r.dropped, r.quarantined)
    return part


@task(name="merge-ingest", **IO_RETRIES)
def merge_ingest_task(parts: list[FilePart], fmt: str, out_dir: str, parts_dir: str) -> dict:
    """Merge the files' parts into the ingest's outputs (de-duplication and time order across files), then
    remove the parts."""
    import shutil

    report = merge_files(parts, fmt, out_dir)
    shutil.rmtree(parts_dir, ignore_errors=True)
    get_run_logger().info(
        "merged %d files: %d records -> %d rows, dropped %s, quarantined %d",
        len(parts), report.input_records, report.rows, report.dropped, report.quarantined,
    )
    return report.to_dict()


@task(name="split-sd-pairs", **IO_RETRIES,
      **cached(files=("data_path",), code=("flamenco_core.ingest.pairs", "flamenco_core.ingest.schema")))
def split_pairs_task(data_path: str, out_dir: str, min_points: int) -> dict:
    split = write_pairs(data_path, out_dir, min_points)
    get_run_logger().info("%d SD pairs kept, %d skipped (< %d rows)", len(split.pairs), len(split.skipped), min_points)
    return split.to_dict()


@task(name="profile-pair", **IO_RETRIES)
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


def ingest_markdown(title: str, outcomes: list[dict], skipped: list[dict]) -> str:
    """The ingest flow's summary as Markdown: one row per item (ok or failed, with the error) and per SD pair
    skipped for having fewer than ``min_points`` rows, through the project's one table writer."""
    import pandas as pd

    from flamenco_core.evaluation.tables import to_markdown

    rows = [{"item": o["item"], "status": o["status"], "rows": o.get("rows"), "detail": o.get("error", "")}
            for o in outcomes]
    rows += [{"item": f"{s['src']} -> {s['dst']}", "status": "skipped", "rows": s["rows"],
              "detail": "fewer rows than min_points"} for s in skipped]
    table = pd.DataFrame(rows, columns=["item", "status", "rows", "detail"])
    return f"# {title}\n\n" + to_markdown(table, index=False, headings=None, na="")


@task(name="ingest-summary")
def summarize_ingest_task(report: dict, outcomes: list[dict], skipped: list[dict], context: dict) -> dict:
    """The ingest flow's summary (outcome ok, partial or failed, with the error when every item failed) and
    its Markdown artifact; ``context``: the run's ids, output folder, cache hits and runner."""
    from prefect.artifacts import create_markdown_artifact

    failed = [o for o in outcomes if o["status"] != "ok"]
    outcome = "ok" if not failed else ("partial" if len(failed) < len(outcomes) else "failed")
    summary = {**{k: context[k] for k in ("experiment", "parent_run_id")}, "outcome": outcome,
               "report": {k: report[k] for k in ("format", "kind", "input_records", "rows", "dropped", "quarantined")},
               "items": outcomes, "skipped": skipped, "failed": len(failed),
               **{k: context[k] for k in ("out_dir", "cached", "runner")}}
    if outcome == "failed":
        summary["error"] = f"every item failed; first: {failed[0]['item']}: {failed[0].get('error')}"
    title = f"Ingest {report['format']}: {len(outcomes) - len(failed)} ok, {len(failed)} failed, {len(skipped)} skipped"
    create_markdown_artifact(ingest_markdown(title, outcomes, skipped), key="ingest-summary")
    return summary
