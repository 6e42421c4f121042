"""``flamenco run latency``: the automatic latency path as a Prefect flow (heavy imports inside)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

LATENCY_FORMATS = ["atlas", "scamper", "warts", "csv", "parquet"]


def latency_cmd(
    inputs: List[Path] = typer.Option(..., "--input", help="input file(s); repeat --input for several"),
    fmt: str = typer.Option(..., "--format", help=" | ".join(LATENCY_FORMATS)),
    out: Path = typer.Option(..., "--out", help="output folder: labels.parquet, report.json, comparison.*"),
    labels: Optional[Path] = typer.Option(None, "--labels", help="labeled pool joined on src, dst, timestamp (good/noise)"),
    config: Optional[Path] = typer.Option(None, "--config", help="conf/latency.yaml-style settings"),
    experiment: str = typer.Option("flamenco-latency", "--experiment", help="MLflow experiment"),
    runner: Optional[str] = typer.Option(None, "--runner", help="per-pair fan-out: threads | processes | dask (default: config, then threads)"),
    workers: Optional[int] = typer.Option(None, "--workers", help="task-runner workers (default: CPU count)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="an existing Dask scheduler, tcp://host:8786 (implies dask)"),
) -> None:
    """Label RTT noise per SD pair with automatic LFs; compare with unsupervised baselines."""
    console = Console()
    if fmt not in LATENCY_FORMATS:
        console.print(f"[red]error:[/] unknown format {fmt!r}; choose one of {', '.join(LATENCY_FORMATS)}")
        raise typer.Exit(2)
    for p in [*inputs, *([labels] if labels else []), *([config] if config else [])]:
        if not p.is_file():
            console.print(f"[red]error:[/] {p}: no such file")
            raise typer.Exit(2)
    from flamenco.env import setup_environment

    try:
        from tasks.runners import resolve

        resolve(runner, workers, scheduler)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2)
    setup_environment()
    from flows.latency import latency_flow

    summary = latency_flow([str(p) for p in inputs], fmt, str(out), labels=str(labels) if labels else None,
                           config=str(config) if config else None, experiment=experiment,
                           runner=runner, workers=workers, scheduler=scheduler)
    print_latency_summary(console, summary)
    if summary["failed"]:
        raise typer.Exit(1)


def print_latency_summary(console: Console, summary: dict) -> None:
    t = Table(title=f"latency: {len(summary['pairs'])} pairs, {len(summary['failed'])} failed, "
                    f"{len(summary['skipped'])} skipped (pool: {summary['label_source_of_pool']} labels)")
    for c in ("method", "f1_good", "f1_noise", "f1_macro"):
        t.add_column(c, justify="left" if c == "method" else "right")
    avg = summary["average"]
    t.add_row("[b]flamenco", *(f"{avg[k]:.3f}" for k in ("f1_good", "f1_noise", "f1_macro")))
    for m, v in avg["baselines"].items():
        t.add_row(m, *(f"{v[k]:.3f}" for k in ("f1_good", "f1_noise", "f1_macro")))
    console.print(t)
