"""The latency flow (issue 4): ingest -> labeled pool -> SD pairs -> one task and MLflow child run per pair
-> labels for every row, report.json, the averaged comparison table and chart on the parent run."""

from __future__ import annotations

import json
from pathlib import Path

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact

from flamenco_core.errors import NoUsableData
from flamenco_core.ingest.pairs import no_pairs_message
from flamenco_core.ingest.pipeline import NoRows, no_rows_message
from tasks import tracking
from tasks.caching import call_cached
from tasks.common import collect_mapped, error_text, fail_parent_run_task, finish_parent_run_task, start_parent_run_task
from tasks.ingest import ingest_task, split_pairs_task
from tasks.latency import attach_labels_task, latency_pair_task, source_level_task
from tasks.report import write_report_task

DEFAULT_EXPERIMENT = "flamenco-latency"


SOURCES = {"atlas": "atlas", "scamper": "ark", "warts": "ark"}


def _assemble(out: Path, labeled_path: str, done: list[dict], config) -> Path:
    """labels.parquet: every row that survived cleaning, from its pair run or, for pairs that were
    skipped or failed, the recorded threshold heuristic."""
    import pandas as pd

    from flamenco_core.experiments.latency import heuristic_labels
    from flamenco_core.outputs import atomic_write_parquet

    frames = [pd.read_parquet(d["labels"]) for d in done]
    df = pd.read_parquet(labeled_path).drop(columns=["truth"], errors="ignore")
    covered = {(d["report"]["src"], d["report"]["dst"]) for d in done}
    rest = df[~pd.MultiIndex.from_frame(df[["src", "dst"]].astype(str)).isin(list(covered))] if covered else df
    if len(rest):
        h = heuristic_labels(rest, config, "pair skipped or failed").drop(columns=["note"])
        frames.append(h.assign(level="heuristic", predicted=h["label"]))
    labels = pd.concat([f for f in frames if len(f)], ignore_index=True) if any(len(f) for f in frames) else frames[0]
    labels = labels.sort_values(["src", "dst", "timestamp"], kind="stable")
    path = out / "labels.parquet"
    # written under a temporary name and renamed: a killed run never leaves a file that looks complete
    atomic_write_parquet(labels, path, index=False)
    return path


def _no_pair_reason(split: dict, done: list[dict], failed: list[dict], min_points: int) -> str:
    """Why no SD pair was labeled, and what the user can do about it."""
    if failed and not done:
        return f"every SD pair failed ({len(failed)}; first: {failed[0]['pair']}: {failed[0]['error']})"
    if split.get("skipped") and not done:
        return no_pairs_message(split["skipped"], min_points, "lower min_points in the config (--config) to label them")
    return "no SD pair could be labeled: " + "; ".join(f"{d['report']['src']}->{d['report']['dst']}: "
                                                        f"{d['report']['reason']}" for d in done[:3])


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
    from flamenco_core.evaluation.plots import f1_bar_chart
    from flamenco_core.experiments.latency import comparison_frame, outcome_counts, summarize
    from flamenco_core.outputs import atomic_write_text, json_ready
    from tasks.runners import fan_out

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
    try:
        report, _ = call_cached(ingest_task, sources, fmt, str(out / "ingest"), outputs=lambda r: [r["data_path"]])
        if report["kind"] != "latency":
            raise ValueError(f"{fmt} data is {report['kind']}, not latency: use `flamenco run flows`")
        if not report.get("rows"):
            raise NoRows(no_rows_message(report))
        labeled = attach_labels_task(report["data_path"], labels, str(out / "ingest" / "labeled.parquet"), truth)
        split, _ = call_cached(split_pairs_task, labeled["path"], str(out / "pairs"), cfg.min_points,
                               outputs=lambda r: [p["path"] for p in r["pairs"]])
    except Exception as exc:
        fail_parent_run_task(parent, f"{type(exc).__name__}: {exc}")
        raise
    source = SOURCES.get(fmt, "csv")
    try:
        # LFs learned on every pair's labeled rows at once, for the pairs whose own labels cannot teach
        borrowed = source_level_task(split["pairs"], cfg.model_dump(mode="json", exclude={"runner"}), source)
    except Exception as exc:
        fail_parent_run_task(parent, f"{type(exc).__name__}: {exc}")
        raise
    try:
        outcomes, choice = fan_out(
            latency_pairs_flow, split["pairs"], cfg.model_dump(mode="json", exclude={"runner"}), str(out / "per_pair"),
            experiment, parent, source, borrowed.get("level"), runner=runner, workers=workers, scheduler=scheduler,
            config={"runner": cfg.runner} if cfg.runner else None,
        )
    except Exception as exc:  # the fan-out itself broke (bad runner, unreachable scheduler): no pair ran
        fail_parent_run_task(parent, f"{type(exc).__name__}: {exc}")
        raise
    done = [o for o in outcomes if o["status"] == "ok"]
    failed = [{k: o[k] for k in ("pair", "rows", "error")} for o in outcomes if o["status"] != "ok"]
    summary = summarize([d["report"] for d in done])
    summary["outcomes"] = outcome_counts(summary["pairs"], skipped=len(split["skipped"]), failed=len(failed))
    usable = [d for d in done if d["report"]["outcome"] in ("ok", "partial", "fallback")]
    if not usable:
        reason = _no_pair_reason(split, done, failed, cfg.min_points)
        fail_parent_run_task(parent, reason)
        raise NoUsableData(reason)
    summary["source_level"] = {k: v for k, v in borrowed.items() if k != "level"} | (
        {"pairs": borrowed["level"]["pairs"], "rows": borrowed["level"]["rows"], "counts": borrowed["level"]["counts"]}
        if borrowed.get("level") else {})
    summary.update({"failed": failed, "skipped": split["skipped"], "labeled_rows": labeled["labeled_rows"],
                    "truth_rows": labeled.get("truth_rows", 0),
                    "label_source_of_pool": "user" if labels or labeled["labeled_rows"] else "heuristic",
                    "ingest": {k: report[k] for k in ("input_records", "rows", "dropped", "quarantined")},
                    "parent_run_id": parent, "experiment": experiment, "runner": choice["kind"]})
    try:
        labels_path = _assemble(out, labeled["path"], done, cfg)
        table = comparison_frame(summary)
        table.to_csv(out / "comparison.csv")
        cols = list(table.columns)
        md = "| method | " + " | ".join(cols) + " |\n|" + " --- |" * (len(cols) + 1) + "\n" + "\n".join(
            f"| {m} | " + " | ".join("n/a" if v != v else f"{v:.3f}" for v in r) + " |" for m, r in table.iterrows())
        (out / "comparison.md").write_text(md + "\n")
        if "unlabeled_f1_macro" in table:  # what the labels are for: rows outside the labeled pool
            shown = table[[f"unlabeled_{k}" for k in ("f1_good", "f1_noise", "f1_macro")]]
            shown = shown.rename(columns=lambda c: c.removeprefix("unlabeled_"))
            where = f"rows outside the labeled pool, {summary['average'].get('pairs_with_truth', 0)} pairs"
        else:
            shown, where = table[["f1_good", "f1_noise", "f1_macro"]].dropna(how="all"), f"test split, {summary['average'].get('pairs_scored', 0)} pairs"
        chart = f1_bar_chart(shown.dropna(how="all"), out / "comparison.png", title=f"latency {out.name}: F1 on {where}")
        # the report last, atomically: it is what says the run is complete
        atomic_write_text(out / "report.json", json.dumps(json_ready(summary), indent=2, default=str))
    except Exception as exc:
        fail_parent_run_task(parent, f"{type(exc).__name__}: {exc}")
        raise
    oc = summary["outcomes"]["pairs"]
    create_markdown_artifact(
        f"# Latency: pairs {', '.join(f'{k} {v}' for k, v in oc.items())}\n\n{md}\n\n"
        + "\n".join(f"- failed {f['pair']}: {f['error']}" for f in failed),
        key="latency-summary",
    )
    tracking.log_artifacts(parent, [out / "comparison.csv", out / "comparison.md", Path(chart)])
    avg = summary["average"]
    finish_parent_run_task(
        parent, summary,
        {**tracking.latency_metrics(avg),  # the pairs' keys, so parent and children line up in MLflow
         **{f"pairs_{k}": v for k, v in oc.items()},
         **{f"subsets_{k}": v for k, v in summary["outcomes"]["subsets_by_level"].items()}},
        "FINISHED",
    )
    summary["labels_path"] = str(labels_path)
    summary["page"] = write_report_task(str(out), parent)  # index.html, and the comparison on the parent run
    return summary
