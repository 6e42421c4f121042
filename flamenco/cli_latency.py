"""``flamenco run latency``: the automatic latency path as a Prefect flow (heavy imports inside)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.text import Text

from flamenco.ui import console, fail, rich_table

LATENCY_FORMATS = ["atlas", "scamper", "warts", "csv", "parquet"]


def latency_cmd(
    inputs: List[Path] = typer.Option(..., "--input", help="input file or folder (its files of the format); "
                                      "repeat --input for several"),
    fmt: str = typer.Option(..., "--format", help=" | ".join(LATENCY_FORMATS)),
    out: Path = typer.Option(..., "--out", help="output folder: labels.parquet, report.json, comparison.*"),
    labels: Optional[Path] = typer.Option(None, "--labels", help="labeled pool joined on src, dst, timestamp (good/noise)"),
    truth: Optional[Path] = typer.Option(None, "--truth", help="ground truth for any rows (good/noise, joined like --labels): "
                                          "adds F1 on the rows outside the labeled pool (f1_unlabeled)"),
    config: Optional[Path] = typer.Option(None, "--config", help="conf/latency.yaml-style settings"),
    experiment: str = typer.Option("flamenco-latency", "--experiment", help="MLflow experiment"),
    runner: Optional[str] = typer.Option(None, "--runner", help="per-pair fan-out: threads | processes | dask (default: config, then threads)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="task-runner workers (default: CPU count)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="an existing Dask scheduler, tcp://host:8786 (implies dask)"),
) -> None:
    """Label RTT noise per SD pair with automatic LFs; compare with unsupervised baselines and the
    rolling-median/MAD rule. Exit 1 with the reason when no SD pair could be labeled."""
    if fmt not in LATENCY_FORMATS:
        typer.echo(f"error: unknown format {fmt!r}; choose one of {', '.join(LATENCY_FORMATS)}", err=True)
        raise typer.Exit(2)
    from flamenco_core.errors import UsageError
    from flamenco_core.experiments.inputs import expand_inputs

    try:
        inputs = expand_inputs(inputs, fmt)
    except UsageError as exc:
        fail(str(exc))
    for p in [*([labels] if labels else []), *([truth] if truth else []), *([config] if config else [])]:
        if not p.is_file():
            typer.echo(f"error: {p}: no such file", err=True)
            raise typer.Exit(2)
    from flamenco_core.env import quiet_prefect_console, setup_environment

    quiet_prefect_console()  # the summary or one error line says how the run went; --debug shows Prefect's log
    try:
        from tasks.runners import resolve

        resolve(runner, workers, scheduler)
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    setup_environment()
    from flamenco_core.errors import FlamencoError
    from flows.latency import latency_flow

    try:
        summary = latency_flow([str(p) for p in inputs], fmt, str(out), labels=str(labels) if labels else None,
                               config=str(config) if config else None, experiment=experiment,
                               runner=runner, workers=workers, scheduler=scheduler, truth=str(truth) if truth else None)
    except FlamencoError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code)
    print_latency_summary(console, summary)
    if summary.get("page"):
        typer.echo(f"page: {summary['page']}")  # plain echo: a path is never wrapped
    if summary["failed"]:
        raise typer.Exit(1)


def outcome_line(summary: dict) -> str:
    """Pairs by outcome and subsets by the level their labels came from, on one line."""
    oc = summary.get("outcomes", {})
    pairs = ", ".join(f"{k} {v}" for k, v in oc.get("pairs", {}).items())
    subsets = ", ".join(f"{k} {v}" for k, v in sorted(oc.get("subsets_by_level", {}).items()))
    return f"pairs: {pairs}; subsets by level: {subsets or 'none'}"


def print_latency_summary(console: Console, summary: dict) -> None:
    avg = summary["average"]
    unl = "f1_unlabeled" in avg
    keys = ("f1_good", "f1_noise", "f1_macro")
    # Short headings (legend below) so that the eight columns fit 80 with every score whole.
    tests = ("test good", "test noise", "test macro")
    heads = ("unl good", "unl noise", "unl macro") if unl else ()
    bu = avg.get("baselines_unlabeled", {})

    pooled = avg.get("f1_unlabeled_pooled") or {}
    # F1 over all unlabeled rows at once (a big pair weighs more), beside the pair average
    pooled_head = ("unl macro all rows",) if pooled else ()

    def row(method, name: str, scores: dict, unlabeled: dict) -> dict:
        return {"method": method, **{h: scores.get(k) for h, k in zip(tests, keys)},
                **{h: unlabeled.get(k) for h, k in zip(heads, keys)},
                **{h: pooled.get(name, {}).get("f1_macro") for h in pooled_head}}

    rows = [row(Text("flamenco", style="bold"), "flamenco", avg, avg.get("f1_unlabeled", {}))]
    rows += [row(m, m, avg["baselines"].get(m, {}), bu.get(m, {})) for m in sorted(set(avg["baselines"]) | set(bu))]
    cols = ("method", *tests, *heads, *pooled_head)
    console.print(rich_table(rows, columns=cols, justify={c: "left" if c == "method" else "right" for c in cols},
                             column_options={"method": {"no_wrap": True, "min_width": 17}},
                             title=f"latency: {avg.get('pairs_scored', 0)} pairs scored (pool: {summary['label_source_of_pool']} labels)"))
    console.print(Text("  F1 per pair, averaged: test = the labeled pool's test split"
                       + ("; unl = rows outside the labeled pool, against --truth; all rows = pooled over every pair's"
                          " unlabeled rows" if unl else "")))
    console.print(Text(outcome_line(summary)))
    if avg.get("vs_rolling_mad"):
        console.print(Text(avg["vs_rolling_mad"]["verdict"]))
