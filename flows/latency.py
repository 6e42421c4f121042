"""The latency flow (issue 4): ingest -> labeled pool -> SD pairs -> one task and MLflow child run per pair
-> labels for every row, report.json, the averaged comparison table and chart on the parent run."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact

from tasks import tracking
from tasks.caching import call_cached
from tasks.ingest import fail_parent_run_task, finish_parent_run_task, ingest_task, split_pairs_task, start_parent_run_task
from tasks.latency import attach_labels_task, latency_pair_task

DEFAULT_EXPERIMENT = "flamenco-latency"
SOURCES = {"atlas": "atlas", "scamper": "ark", "warts": "ark"}


def _assemble(out: Path, labeled_path: str, done: list[dict], config) -> Path:
    """labels.parquet: every row that survived cleaning, from its pair run or, for pairs that were
    skipped or failed, the recorded threshold heuristic."""
    import pandas as pd

    from flamenco_core.experiments.latency import heuristic_labels

    frames = [pd.read_parquet(d["labels"]) for d in done]
    df = pd.read_parquet(labeled_path)
    covered = {(d["report"]["src"], d["report"]["dst"]) for d in done}
    rest = df[~pd.MultiIndex.from_frame(df[["src", "dst"]].astype(str)).isin(list(covered))] if covered else df
    if len(rest):
        frames.append(heuristic_labels(rest, config, "pair skipped or failed").drop(columns=["note"]))
    labels = pd.concat(frames, ignore_index=True).sort_values(["src", "dst", "timestamp"], kind="stable")
    path = out / "labels.parquet"
    labels.to_parquet(path, index=False)
    return path


@flow(name="flamenco-latency-pairs")
def latency_pairs_flow(items: list[dict], config: dict, out_dir: str, experiment: str, parent_run_id: str,
                       source: str) -> list[dict]:
    """Fan out one task (and MLflow child run) per SD pair; returns per-pair outcomes, never raises for one."""
    futures = latency_pair_task.map(
        items, config=unmapped(config), out_dir=unmapped(out_dir), experiment=unmapped(experiment),
        parent_run_id=unmapped(parent_run_id), source=unmapped(source),
    )
    out = []
    for item, fut in zip(items, futures):
        fut.wait()
        if fut.state.is_completed():
            out.append({"status": "ok", **fut.result()})
        else:
            err = fut.state.result(raise_on_failure=False)
            out.append({"status": "failed", "pair": item["pair_id"], "rows": item["rows"], "error": f"{type(err).__name__}: {err}"})
    return out


@flow(name="flamenco-latency")
def latency_flow(
    sources: list[str],
    fmt: str,
    out_dir: str,
    labels: str | None = None,
    config: str | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: str | None = None,
    runner: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
) -> dict:
    """Run the automatic latency path on ``sources``; writes ``out_dir/labels.parquet`` and
    ``out_dir/report.json`` and returns the summary (pairs, average, outcomes).

    ``runner`` (threads | processes | dask), ``workers`` and ``scheduler`` (a Dask scheduler address) pick
    the per-pair fan-out's task runner; else the config's ``runner``, else the environment
    (``tasks/runners.py``). The runner changes where pairs run, never their results."""
    from flamenco_core.evaluation.plots import f1_bar_chart
    from flamenco_core.experiments.latency import LatencyConfig, comparison_frame, summarize
    from tasks.runners import fan_out

    cfg = LatencyConfig.from_yaml(config)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Where pairs run is not what the run is: the runner stays out of the params and the run identity.
    params = {"format": fmt, "sources": [str(s) for s in sources], "labels": labels or "",
              "config": cfg.model_dump(mode="json", exclude={"runner"})}
    # The run's identity covers the inputs' content, so a retry reuses its runs and changed data gets new ones.
    key = tracking.run_key("flamenco-latency", [s for s in [*sources, labels] if s and Path(s).is_file()],
                           {k: v for k, v in params.items() if k != "sources"} | {"out_dir": str(out.resolve()), "run_name": run_name})
    parent = start_parent_run_task(
        experiment, run_name or f"latency-{fmt}-{out.name}", params=params,
        tags={"flamenco.pipeline": "latency", "flamenco.format": fmt, "flamenco.dataset": out.name}, key=key,
    )
    try:
        report, _ = call_cached(ingest_task, sources, fmt, str(out / "ingest"), outputs=lambda r: [r["data_path"]])
        if report["kind"] != "latency":
            raise ValueError(f"{fmt} data is {report['kind']}, not latency: use `flamenco run flows`")
        labeled = attach_labels_task(report["data_path"], labels, str(out / "ingest" / "labeled.parquet"))
        split, _ = call_cached(split_pairs_task, labeled["path"], str(out / "pairs"), cfg.min_points,
                               outputs=lambda r: [p["path"] for p in r["pairs"]])
    except Exception as exc:
        fail_parent_run_task(parent, f"{type(exc).__name__}: {exc}")
        raise
    source = SOURCES.get(fmt, "csv")
    try:
        outcomes, choice = fan_out(
            latency_pairs_flow, split["pairs"], cfg.model_dump(mode="json", exclude={"runner"}), str(out / "per_pair"),
            experiment, parent, source, runner=runner, workers=workers, scheduler=scheduler,
            config={"runner": cfg.runner} if cfg.runner else None,
        )
    except Exception as exc:  # the fan-out itself broke (bad runner, unreachable scheduler): no pair ran
        fail_parent_run_task(parent, f"{type(exc).__name__}: {exc}")
        raise
    done = [o for o in outcomes if o["status"] == "ok"]
    failed = [{k: o[k] for k in ("pair", "rows", "error")} for o in outcomes if o["status"] != "ok"]
    summary = summarize([d["report"] for d in done])
    summary.update({"failed": failed, "skipped": split["skipped"], "labeled_rows": labeled["labeled_rows"],
                    "label_source_of_pool": "user" if labels or labeled["labeled_rows"] else "heuristic",
                    "ingest": {k: report[k] for k in ("input_records", "rows", "dropped", "quarantined")},
                    "parent_run_id": parent, "experiment": experiment, "runner": choice["kind"]})
    labels_path = _assemble(out, labeled["path"], done, cfg)
    (out / "report.json").write_text(json.dumps(summary, indent=2, default=str))
    table = comparison_frame(summary)
    table.to_csv(out / "comparison.csv")
    md = "| method | f1_good | f1_noise | f1_macro |\n| --- | --- | --- | --- |\n" + "\n".join(
        f"| {m} | {r.f1_good:.3f} | {r.f1_noise:.3f} | {r.f1_macro:.3f} |" for m, r in table.iterrows())
    (out / "comparison.md").write_text(md + "\n")
    chart = f1_bar_chart(table, out / "comparison.png")
    create_markdown_artifact(
        f"# Latency: {len(done)} pairs ok, {len(failed)} failed, {len(split['skipped'])} skipped\n\n{md}\n\n"
        + "\n".join(f"- failed {f['pair']}: {f['error']}" for f in failed),
        key="latency-summary",
    )
    tracking.log_artifacts(parent, [out / "comparison.csv", out / "comparison.md", Path(chart)])
    avg = summary["average"]
    finish_parent_run_task(
        parent, summary,
        {"f1_good": avg["f1_good"], "f1_noise": avg["f1_noise"], "f1_macro": avg["f1_macro"], "pairs_ok": len(done),
         "pairs_failed": len(failed), "pairs_skipped": len(split["skipped"]),
         **{f"{m}.f1_macro": v["f1_macro"] for m, v in avg["baselines"].items()}},
        "FINISHED",
    )
    summary["labels_path"] = str(labels_path)
    return summary
