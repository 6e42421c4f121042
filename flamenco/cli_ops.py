"""``flamenco watch-dumps``, ``flamenco serve``, ``flamenco ui`` and ``flamenco compare``: plain functions
with typer-annotated parameters, registered on the app by :mod:`flamenco.cli`; the servers they start
come from :mod:`flamenco.services`."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table
from rich.text import Text

from flamenco.ui import console, err, fail, rich_table
from flamenco.services import WORK_POOL, port_in_use, serve_stack, tool


# ------------------------------------------------------------------------------------------ watch-dumps


def watch_dumps_cmd(
    directory: Path = typer.Argument(..., help="folder of dumps (warts, scamper JSON, RIPE Atlas JSON; gz/bz2 or not)"),
    out: Path = typer.Option(..., "--out", help="output folder: watch_report.json, manifest.json, dumps/<name>-<hash>/"),
    once: bool = typer.Option(False, "--once", help="process the new dumps once and exit (default: keep watching)"),
    interval: float = typer.Option(300.0, "--interval", help="seconds between scans when watching"),
    experiment: str = typer.Option("flamenco-watch", "--experiment", help="MLflow experiment of the per-dump runs"),
    pipeline: str = typer.Option("auto", "--pipeline", help="auto (latency when available) | latency | ingest"),
    config: Optional[Path] = typer.Option(None, "--config", help="latency pipeline config (YAML)"),
    min_points: int = typer.Option(100, "--min-points", help="ingest fallback: smallest SD pair kept"),
    min_age: float = typer.Option(0.0, "--min-age", help="leave files modified less than this many seconds ago"),
    retry_failed: bool = typer.Option(False, "--retry-failed", help="run dumps that failed before again"),
    recursive: bool = typer.Option(False, "--recursive", help="also look in subfolders"),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="manifest file (default OUT/manifest.json)"),
    runner: Optional[str] = typer.Option(None, "--runner", help="threads | processes | dask: the per-pair fan-out of each dump's pipeline"),
    workers: Optional[int] = typer.Option(None, "--workers", help="task-runner workers"),
) -> None:
    """Run the latency pipeline on each new dump in DIR (new = content never seen, by SHA-256); write
    OUT/watch_report.json with the files processed, skipped and failed. Exit code 1 when a dump failed."""
    import logging

    from flamenco_core.env import setup_environment

    if pipeline not in ("auto", "latency", "ingest"):
        fail(f"--pipeline {pipeline!r}: choose auto, latency or ingest")
    if not directory.is_dir():
        fail(f"{directory}: no such folder")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flamenco_core.env import quiet_prefect_console

    quiet_prefect_console()  # failed dumps are listed in the table; --debug shows Prefect's log
    setup_environment()
    from flows.watch import watch_dumps_flow

    params = dict(directory=str(directory), out=str(out), experiment=experiment, pipeline=pipeline,
                  min_points=min_points, min_age_s=min_age, retry_failed=retry_failed, recursive=recursive,
                  manifest=str(manifest) if manifest else None, config=str(config) if config else None,
                  runner=runner, workers=workers)
    any_failed = False
    try:
        while True:
            with console.status(f"processing new dumps in {directory}"):
                report = watch_dumps_flow(**params)
            if once and report.get("busy"):  # another watcher holds this manifest: nothing was done
                fail(f"{report['busy']}; nothing done", 3)
            _print_watch(report, out, directory)
            any_failed |= bool(report["failed"])
            if once:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        logging.getLogger(__name__).info("stopped")
    if any_failed:
        raise typer.Exit(1)


def _print_watch(report: dict, out: Path, directory: Path) -> None:
    from flamenco_core.report import watch as watch_report

    if report.get("busy"):
        console.print(Text(f"{report['busy']}: nothing done", style="yellow"))
        return
    style = {"processed": "green", "failed": "red", "skipped": ""}
    rows = [{**r, "outcome": Text(r["outcome"], style=style[r["outcome"]])}
            for r in watch_report.outcome_rows(report, detail_chars=200)]
    console.print(rich_table(rows, columns=watch_report.OUTCOME_COLUMNS, na="",
                             title=f"dumps in {directory} ({report['pipeline']} pipeline)"))
    console.print(Text(f"{watch_report.headline(report)}; report: {out / watch_report.REPORT_FILE}"))


# ----------------------------------------------------------------------------------------------- serve


def serve_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on (loopback by default)"),
    prefect_port: int = typer.Option(4200, "--prefect-port", help="Prefect server and UI port"),
    mlflow_port: int = typer.Option(5000, "--mlflow-port", help="MLflow server and UI port"),
    deploy: List[str] = typer.Option([], "--deploy", help="deployment to create (repeatable; default: all whose flow exists)"),
    no_deploy: bool = typer.Option(False, "--no-deploy", help="start the servers and the worker only"),
    no_worker: bool = typer.Option(False, "--no-worker", help="do not start a worker"),
) -> None:
    """Start a real Prefect server, an MLflow server and a process worker on loopback (SQLite stores under
    FLAMENCO_HOME), create the flamenco-process work pool and deploy from prefect.yaml; print the UI URLs
    and run until Ctrl-C, then stop everything."""
    from flamenco_core.env import setup_environment

    home = setup_environment()
    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(Text(f"warning: listening on {host}: the servers have no authentication", style="yellow"))
    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    # SIGTERM ends the wait like Ctrl-C, so the finally clause tears down; SIGINT is set explicitly because
    # a shell starting us in the background leaves it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    try:
        with console.status("starting the Prefect and MLflow servers (first start migrates the databases)"):
            ctx = serve_stack(home, host=host, prefect_port=prefect_port, mlflow_port=mlflow_port,
                              deploy=[] if no_deploy else (deploy or None), worker=not no_worker)
            stack = ctx.__enter__()
        try:
            t = Table(title="flamenco serve", show_header=False)
            t.add_row("Prefect UI", stack.prefect_url)
            t.add_row("MLflow UI", stack.mlflow_url)
            t.add_row("work pool", f"{WORK_POOL} (process)" + ("" if no_worker else ", one worker"))
            t.add_row("deployments", ", ".join(stack.deployed) or "-")
            if stack.not_deployed:
                t.add_row("not deployed", ", ".join(stack.not_deployed))
            t.add_row("stores", f"{home / 'prefect'} (Prefect), {home / 'mlflow.db'} (MLflow)")
            t.add_row("logs", str(home / "logs"))
            console.print(t)
            console.print(f"Run a deployment: PREFECT_API_URL={stack.api_url} prefect deployment run 'flamenco-ingest/ingest' "
                          "--params '{\"sources\": [\"FILE\"], \"fmt\": \"scamper\", \"out_dir\": \"out/ingest\"}'")
            console.print("Ctrl-C stops everything.")
            while True:
                dead = [s for s in stack.services if not s.alive()]
                if dead:
                    err.print(Text(f"{dead[0].name} exited ({dead[0].proc.returncode}):\n{dead[0].tail(20)}", style="red"))
                    raise typer.Exit(1)
                time.sleep(1)
        finally:
            with console.status("stopping the worker and the servers"):
                ctx.__exit__(None, None, None)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how `serve` is stopped; the finally block above already tore the stack down
    except RuntimeError as exc:
        fail(str(exc), 1)
    console.print("stopped.")


# -------------------------------------------------------------------------------------------------- ui


def ui_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="interface to listen on (loopback by default)"),
    port: int = typer.Option(5000, "--port", help="port of the MLflow UI"),
) -> None:
    """Start the MLflow UI on this project's tracking store (FLAMENCO_HOME's SQLite, or
    MLFLOW_TRACKING_URI) and run until Ctrl-C; prints the URL first."""
    from flamenco_core.env import setup_environment

    setup_environment()
    uri = os.environ["MLFLOW_TRACKING_URI"]
    if port_in_use(host, port):
        fail(f"{host}:{port} is already in use (pick another --port)", 1)
    cmd = [tool("mlflow"), "ui", "--backend-store-uri", uri, "--host", host, "--port", str(port), "--workers", "1"]
    env = dict(os.environ, MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")  # no GenAI job runner: nothing uses it
    console.print(Text(f"MLflow UI on http://{host}:{port} (store {uri}); Ctrl-C stops it"))
    proc = subprocess.Popen(cmd, env=env)
    try:
        raise typer.Exit(proc.wait())
    except KeyboardInterrupt:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)


# --------------------------------------------------------------------------------------------- compare


def comparison_markdown(table, metric: str, experiment: str) -> str:
    """The comparison as a Markdown table (what ``compare`` writes to ``compare.md``), through the project's
    one Markdown writer; undefined values show "-"."""
    from flamenco_core.evaluation.tables import to_markdown

    body = to_markdown(table.drop(columns=["lf_pack"], errors="ignore"), index=False, na="-", headings=None, pad=False)
    return f"# LF-combination comparison: {experiment} (by {metric})\n\n{body}"


def compare_legend(table) -> dict[str, str]:
    """The A/B/C legend of the compared combinations (LF names split on " + ")."""
    from flamenco_core.report import lf_legend

    return lf_legend(str(c).split(" + ") for c in table["combination"])


def comparison_figure(table, metric: str, path: Path, experiment: str = "") -> Path:
    """A horizontal bar chart of the metric per combination (one panel per dataset; bars named by the
    legend, which is spelled out under the title), saved to ``path``."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from flamenco_core.report import legend_text, short_name

    legend = compare_legend(table)
    datasets = list(dict.fromkeys(table["dataset"]))
    heights = [max(1, int((table["dataset"] == d).sum())) for d in datasets]
    lines = textwrap.wrap(legend_text(legend, sep="; "), 95)
    fig, axes = plt.subplots(len(datasets), 1, figsize=(8, 1.6 + 0.2 * len(lines) + 0.35 * sum(heights)), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, d in zip(axes[:, 0], datasets):
        sub = table[table["dataset"] == d].iloc[::-1]
        ax.barh([short_name(str(c).split(" + "), legend) for c in sub["combination"]], sub[metric].fillna(0.0),
                xerr=sub[f"{metric}_std"].fillna(0.0), color="#4477aa")
        n = int(sub["runs"].sum()) if "runs" in sub else len(sub)
        ax.set_title(f"dataset {d or '(no dataset tag)'}: {n} runs", fontsize=10)
        ax.set_xlabel(f"{metric} (mean and std over runs)")
        ax.set_xlim(0, max(1.0, float(sub[metric].max() or 0) * 1.05))
    fig.suptitle("\n".join([f"{experiment}: {metric} per LF combination".strip(": "), *lines]), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")  # the format named: an atomic write's temporary name has no suffix
    plt.close(fig)
    return path


def compare_cmd(
    experiment: str = typer.Option(..., "--experiment", help="MLflow experiment"),
    metric: str = typer.Option("cls_f1", "--metric", help="metric to rank combinations by"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder for compare.csv, compare_runs.csv, compare.md, compare.png (default ./compare-<experiment>)"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="only runs of this dataset (tag flamenco.dataset)"),
    log: bool = typer.Option(False, "--log", help="also log the table and figure to a 'compare' run in the experiment"),
) -> None:
    """Compare LF combinations across the runs of an experiment (MLflow search_runs): print the table,
    export CSV and Markdown, and draw the metric per combination."""
    from flamenco_core.env import setup_environment

    setup_environment()
    from tasks import tracking

    try:
        runs, table = tracking.comparison(experiment, metric, dataset)
    except ValueError as exc:
        fail(str(exc))
    from flamenco_core.outputs import atomic_path, atomic_write_text

    target = out or Path(f"compare-{experiment}")
    if target.exists() and not target.is_dir():
        fail(f"--out {target} is a file; give a folder")
    target.mkdir(parents=True, exist_ok=True)
    for name, frame in (("compare.csv", table), ("compare_runs.csv", runs)):
        with atomic_path(target / name) as tmp:
            frame.to_csv(tmp, index=False)
    atomic_write_text(target / "compare.md", comparison_markdown(table, metric, experiment))
    with atomic_path(target / "compare.png") as tmp:
        comparison_figure(table, metric, tmp, experiment)
    fig = target / "compare.png"

    from flamenco_core.report import short_name

    # 80 columns: combinations by their legend letters (spelled out below), at most three other metrics,
    # one table per dataset; the full table is in compare.csv.
    legend = compare_legend(table)
    others = [c for c in tracking.COMPARE_METRICS if c in table.columns and c != metric][:3]
    shown = ["rank", "LFs", "runs", metric, "std", *others]
    for d, sub in table.groupby("dataset", sort=False):
        view = sub[["rank", "combination", "runs", metric, f"{metric}_std", *others]].copy()
        view["combination"] = [short_name(str(c).split(" + "), legend) for c in sub["combination"]]
        view.columns = shown
        console.print(rich_table(view, na="-", justify={c: "left" if c == "LFs" else "right" for c in shown},
                                 column_options={c: {"overflow": "fold"} for c in shown},
                                 title=f"{experiment} / {d or '-'}: by {metric}", min_width=40))
    for name, letter in legend.items():  # one per line: a wrapped LF name cannot be read or copied
        console.print(Text(f"  {letter} = {name}"))
    console.print(Text(f"{len(runs)} runs"))
    if log:
        key = tracking.run_key("flamenco-compare", None, {"experiment": experiment, "metric": metric, "dataset": dataset})
        rid = tracking.start_run(experiment, f"compare-{metric}", key=key, params={"metric": metric, "dataset": dataset},
                                 tags=tracking.standard_tags(pipeline="compare"))
        tracking.log_artifacts(rid, [target / "compare.csv", target / "compare.md"])
        tracking.log_figure(rid, fig, "compare.png")
        tracking.end_run(rid)
        console.print(Text(f"logged to run {rid}"))
    for f in ("compare.csv", "compare_runs.csv", "compare.md", "compare.png"):
        console.print(Text(f"wrote {target / f}"))
