"""Prefect tasks for code-to-data collaboration: run the core ``collaborate`` and log its comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from prefect import task
from prefect.logging import get_run_logger

from tasks import tracking

#: Comparison-row fields logged as MLflow metrics of a pack's (or the combination's) child run.
COMPARISON_METRICS = ("lfs", "coverage", "overlap", "conflict", "coverage_labeled", "f1_majority_vote", "f1_label_model")


def load_pack(path: str):
    """An LF pack from YAML or JSON (``SpecError`` names the file on a bad pack)."""
    from flamenco_core.labeling.spec import LFPack

    return LFPack.load(path)


def read_frame(path: str, columns: Optional[set] = None):
    """A Parquet file/folder or a CSV, reading only ``columns`` that are present."""
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_dir() or p.suffix.lower() == ".parquet":
        import pyarrow.dataset as ds

        present = ds.dataset(p, format="parquet").schema.names
        return pd.read_parquet(p, columns=[c for c in present if columns is None or c in columns])
    present = list(pd.read_csv(p, nrows=0).columns)
    return pd.read_csv(p, usecols=[c for c in present if columns is None or c in columns])


@task(name="collaborate")
def collaborate_task(packs: list[str], data: str, out_dir: str, labeled: Optional[str] = None, *,
                     label_column: str = "label", allow: Optional[list[str]] = None, label_model: str = "snorkel",
                     seed: int = 0, abstain: str = "negative", positive: Optional[str] = None) -> dict:
    """Apply every pack and their combination to the local data; writes ``report.json``/``report.md``
    into ``out_dir`` (aggregates only) and returns the report."""
    from flamenco_core.labeling.collaborate import collaborate

    loaded = [load_pack(p) for p in packs]
    features: set = set()
    for p in loaded:
        features |= p.features()
    df = read_frame(data, features)
    lab = read_frame(labeled, features | {label_column}) if labeled else None
    report = collaborate(loaded, df, lab, out_dir, label_column=label_column, allow=allow or [],
                         label_model=label_model, seed=seed, abstain=abstain,
                         pos_label=positive if positive is not None else 1)
    get_run_logger().info("collaboration of %d pack(s) on %d rows", len(loaded), report["data"]["rows"])
    return report


@task(name="log-collaboration", retries=2, retry_delay_seconds=1)
def log_collaboration_task(report: dict, experiment: str, parent_run_id: str, dataset: str) -> list[dict]:
    """One MLflow child run per comparison row (each pack, and the combination) with the scheme's tags;
    ``flamenco compare`` reads these."""
    packs = {s["pack"]: s for s in report["packs"]}
    comb = report.get("combination")
    out = []
    for row in report["comparison"]:
        section = packs.get(row["name"]) or comb or {}
        is_comb = comb is not None and row["name"] == comb.get("pack")
        tags = tracking.standard_tags(
            pipeline="collaboration", dataset=dataset, lf_pack=row["name"], group=section.get("group"),
            combination=row["name"], item=row["name"], kind="combination" if is_comb else "pack",
        )
        metrics = {k: row[k] for k in COMPARISON_METRICS if isinstance(row.get(k), (int, float)) and not isinstance(row.get(k), bool)}
        run_id = tracking.start_run(
            experiment, row["name"], parent_run_id=parent_run_id,
            params={"pack": row["name"], "version": section.get("version"), "content_hash": section.get("content_hash"),
                    "label_model": row.get("label_model")},
            metrics=metrics, tags=tags,
        )
        tracking.end_run(run_id)
        out.append({"item": row["name"], "run_id": run_id, **metrics})
    return out


@task(name="finish-collaboration-run", retries=2, retry_delay_seconds=1)
def finish_collaboration_run_task(parent_run_id: str, out_dir: str, report: dict) -> None:
    """The parent run's report files and totals; the run ends FINISHED with outcome ``ok``."""
    tracking.log_artifacts(parent_run_id, [Path(out_dir) / "report.json", Path(out_dir) / "report.md"])
    tracking.log(parent_run_id, metrics={"packs": len(report["packs"]), "rows": report["data"]["rows"]})
    tracking.close_run(parent_run_id, "FINISHED", outcome="ok")
