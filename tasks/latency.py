"""Prefect tasks for the latency path (issue 4): label attachment and one task per SD pair."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.logging import get_run_logger

from flamenco_core.experiments.latency import (
    LatencyConfig,
    attach_labels,
    attach_truth,
    fit_source_level,
    needs_source_level,
    run_pair,
)
from flamenco_core.errors import NoUsableData
from flamenco_core.ingest.pipeline import NoRows, file_sha256, no_rows_message
from tasks import tracking
from tasks.common import IO_RETRIES


def check_latency_input(report: dict) -> None:
    """Refuse an ingest that holds no latency rows, with what to do instead."""
    if report["kind"] != "latency":
        raise ValueError(f"{report.get('format')} data is {report['kind']}, not latency: use `flamenco run flows`")
    if not report.get("rows"):
        raise NoRows(no_rows_message(report))


@task(name="attach-labels", **IO_RETRIES)
def attach_labels_task(data_path: str, labels_path: str | None, out_path: str, truth_path: str | None = None) -> dict:
    import pandas as pd

    def read(path):
        return pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)

    df = pd.read_parquet(data_path)
    out = attach_labels(df, read(labels_path) if labels_path else None, name=labels_path or data_path)
    if truth_path:
        out = attach_truth(out, read(truth_path), name=truth_path)
    out.to_parquet(out_path)
    n = int(out["label"].notna().sum())
    get_run_logger().info("labeled pool: %d of %d rows", n, len(out))
    return {"path": out_path, "labeled_rows": n, "rows": len(out),
            "truth_rows": int(out["truth"].notna().sum()) if "truth" in out else 0}


@task(name="latency-source-level", **IO_RETRIES)
def source_level_task(items: list[dict], config: dict, source: str) -> dict:
    """LFs on the pooled labeled rows of every pair, when some pair's own labels cannot teach LFs:
    ``{"level": SourceLevel as a dict or None, "used": bool, "reason": str}``."""
    import pandas as pd

    cfg = LatencyConfig.model_validate(config)
    frames = [pd.read_parquet(it["path"]) for it in items]
    if not needs_source_level(frames, cfg):
        return {"level": None, "used": False, "reason": "every labeled pair can learn its own LFs"}
    level, reason = fit_source_level(frames, cfg, source)
    get_run_logger().info("source level: %s", reason or f"LFs from {level.pairs} pairs, {level.rows} labeled rows")
    return {"level": level.to_dict() if level else None, "used": level is not None, "reason": reason}


@task(name="latency-pair", **IO_RETRIES)
def latency_pair_task(item: dict, config: dict, out_dir: str, experiment: str, parent_run_id: str, source: str,
                      borrowed: dict | None = None) -> dict:
    """Run the latency path on one SD pair; log its MLflow child run; write its labels and artifacts."""
    import pandas as pd

    cfg = LatencyConfig.model_validate(config)
    out = Path(out_dir) / item["pair_id"]
    out.mkdir(parents=True, exist_ok=True)
    df = pd.read_parquet(item["path"])
    result = run_pair(df, cfg, source=source, plot_dir=out, borrowed=borrowed)
    artifacts = result.write(out)
    labels_path = out / "labels.parquet"
    rep = result.report()
    metrics = tracking.latency_metrics(rep)  # the parent's keys: runs compare column by column
    params = {
        "source": source, "pair": item["pair_id"], "src": result.src, "dst": result.dst, "rows": result.rows,
        "modality": rep["modality"], "n_modes": rep["n_modes"], "models": rep["models"],
        "label_sources": rep["label_sources"], "levels": rep.get("levels", {}), "thresholds": [s.threshold for s in result.subsets],
        "lfs": [h["name"] for s in result.subsets for h in s.autolf.get("heuristics", [])],
        "config": cfg.model_dump(mode="json"), "input_sha256": file_sha256(item["path"]),
    }
    run_id = tracking.start_run(
        experiment, item["pair_id"], parent_run_id=parent_run_id, params=params,
        metrics=metrics,
        tags={"flamenco.pipeline": "latency", "flamenco.item": item["pair_id"], "flamenco.outcome": result.outcome},
        description=f"SD pair {result.src} -> {result.dst} ({source}): {result.outcome}. {rep.get('reason') or ''}".strip(),
    )
    tracking.log_artifacts(run_id, artifacts)
    # Each hyperparameter trial of the end model is a run nested under its pair's, so MLflow compares them.
    trials, logged = [], set()
    for s in result.subsets:
        for t in s.trials:
            key = (s.level, t["model"], t["trial"])
            if s.level in ("pair", "source") and key in logged:
                continue  # one pair-level search serves several subsets: log it once
            logged.add(key)
            trials.append({
                "name": f"{item['pair_id']}-{s.level if s.level != 'subset' else f'subset{s.subset}'}-trial{t['trial']}",
                "params": {"model": t["model"], "level": s.level, "subset": s.subset, **t["params"]},
                "metrics": {k: t[k] for k in ("score", "seconds") if t[k] == t[k]},
                "tags": {"flamenco.pipeline": "latency", "flamenco.kind": "trial", "flamenco.item": item["pair_id"]}})
    tracking.log_finished_children(experiment, run_id, trials)
    tracking.end_run(run_id)
    get_run_logger().info("%s: %s, F1 macro %.3f in %.1f s", item["pair_id"], result.outcome, rep["f1_macro"], result.seconds)
    return {"pair_id": item["pair_id"], "run_id": run_id, "labels": str(labels_path), "report": rep}


@task(name="latency-outputs", **IO_RETRIES)
def write_latency_outputs_task(out_dir: str, labeled_path: str, done: list[dict], summary: dict, config: dict,
                               parent_run_id: str) -> dict:
    """The run's files (a label for every row, the comparison table and chart, report.json last) and the
    comparison on the MLflow parent run. Returns the labels' path and the Markdown table."""
    import pandas as pd

    from flamenco_core.experiments.latency.outputs import assemble_labels, write_run_outputs

    data = pd.read_parquet(labeled_path).drop(columns=["truth"], errors="ignore")
    labels = assemble_labels(data, [pd.read_parquet(d["labels"]) for d in done], LatencyConfig.model_validate(config))
    files = write_run_outputs(Path(out_dir), summary, labels)
    tracking.log_artifacts(parent_run_id, [files["csv"], files["md"], files["chart"]])
    return {"labels_path": str(files["labels"]), "markdown": files["markdown"]}


@task(name="latency-summary")
def summarize_run_task(split: dict, outcomes: list[dict], context: dict, borrowed: dict, min_points: int) -> dict:
    """``{"summary": report.json's body, "done": the pairs that ran}`` from the fan-out's outcomes. Raises
    :class:`~flamenco_core.errors.NoUsableData` with the reason and the fix when no pair produced labels."""
    from flamenco_core.experiments.latency.outputs import no_pair_reason, run_summary, usable

    done = [o for o in outcomes if o["status"] == "ok"]
    failed = [{k: o[k] for k in ("pair", "rows", "error")} for o in outcomes if o["status"] != "ok"]
    if not usable([d["report"] for d in done]):
        raise NoUsableData(no_pair_reason(split, done, failed, min_points))
    summary = run_summary([d["report"] for d in done], failed=failed, skipped=split["skipped"], borrowed=borrowed,
                          context=context)
    return {"summary": summary, "done": done}


@task(name="latency-publish")
def publish_summary_task(summary: dict, markdown: str) -> dict:
    """The run's Markdown artifact (outcome counts, the comparison, the failed pairs); returns the parent
    run's metrics: the pairs' keys (so parent and children line up in MLflow) and the outcome counts."""
    from prefect.artifacts import create_markdown_artifact

    oc = summary["outcomes"]["pairs"]
    create_markdown_artifact(
        f"# Latency: pairs {', '.join(f'{k} {v}' for k, v in oc.items())}\n\n{markdown}\n\n"
        + "\n".join(f"- failed {f['pair']}: {f['error']}" for f in summary.get("failed") or []),
        key="latency-summary",
    )
    return {**tracking.latency_metrics(summary["average"]), **{f"pairs_{k}": v for k, v in oc.items()},
            **{f"subsets_{k}": v for k, v in summary["outcomes"]["subsets_by_level"].items()}}
