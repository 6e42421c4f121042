"""``flamenco site serve`` and ``flamenco federate``: plain functions with typer-annotated parameters,
registered on the app by :mod:`flamenco.cli`. Both talk to a shared Prefect server (``PREFECT_API_URL``);
Prefect and the federation code are imported inside the commands so ``--help`` stays fast."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import typer
from rich.table import Table
from rich.text import Text

from flamenco.ui import console, err, fail, rich_table


site_app = typer.Typer(no_args_is_help=True, add_completion=False)


def _need_api() -> str:
    url = os.environ.get("PREFECT_API_URL", "")
    if not url:
        fail("PREFECT_API_URL is not set: sites and the coordinator meet on one Prefect server "
             "(e.g. PREFECT_API_URL=http://coordinator:4200/api); see docs/federation.md", 2)
    return url


@site_app.command("serve")
def site_serve_cmd(
    config: Path = typer.Option(Path("conf/site.yaml"), "--config", help="the site's catalog and policy (YAML)"),
    heartbeat: int = typer.Option(10, "--heartbeat", help="seconds between the worker's heartbeats (a coordinator "
                                  "reports the site down after three missed)"),
    poll: float = typer.Option(5.0, "--poll", help="seconds between the worker's looks for new requests"),
) -> None:
    """Serve this site: create its work pool, deploy the site flow to it (flamenco-site/SITE) and run a
    process worker here until Ctrl-C. The worker is the only process that reads the site's data; flow runs
    get the catalog from this process's environment, never from a request, and their logs stay here."""
    from flamenco_core.env import setup_environment

    setup_environment()
    url = _need_api()
    # before Prefect is imported: nothing the site logs leaves it; the worker polls at --poll
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    os.environ["PREFECT_WORKER_QUERY_SECONDS"] = str(poll)
    from flamenco_core.federation.config import load_site_config

    cfg = load_site_config(config)  # UsageError (exit 2) names the file and the field
    missing = [n for n in cfg.datasets if not cfg.dataset_path(n).exists()]
    if missing:
        err.print(Text(f"warning: dataset(s) {', '.join(missing)}: file not found; requests for them will fail", style="yellow"))

    def ready(c, dep_id: str) -> None:
        t = Table(title=f"flamenco site {c.site}", show_header=False)
        t.add_row("Prefect API", url)
        t.add_row("work pool", f"{c.pool} (process; requests cannot set command or env)")
        t.add_row("deployment", f"flamenco-site/{c.site} ({dep_id})")
        t.add_row("datasets", ", ".join(f"{n}{' (ground truth)' if d.ground_truth else ''}" for n, d in c.datasets.items()))
        p = c.policy
        t.add_row("policy", f"k={p.min_group_size}, min rows {p.min_rows}, noise "
                  + (f"epsilon {p.noise.epsilon}" if p.noise else "off")
                  + f", statistics {', '.join(p.allowed_statistics) if p.allowed_statistics is not None else 'any'}")
        console.print(t)
        console.print("worker started; Ctrl-C stops it.")

    from flows.site import serve_site

    try:
        serve_site(str(config), heartbeat_s=heartbeat, on_ready=ready)
    except KeyboardInterrupt:
        console.print("stopped.")


def federate_cmd(
    packs: List[Path] = typer.Option(..., "--pack", help="LF pack (YAML); repeatable"),
    sites: str = typer.Option(..., "--sites", help="comma-separated site names (their deployments flamenco-site/NAME)"),
    dataset: str = typer.Option(..., "--dataset", help="the dataset's name in each site's catalog"),
    out: Path = typer.Option(Path("out/federate"), "--out", help="output folder: report.json, report.md, index.html"),
    timeout: float = typer.Option(600.0, "--timeout", help="seconds to wait for each site"),
    label_model: str = typer.Option("snorkel", "--label-model", help="snorkel | majority (each site's policy may refuse)"),
    seed: int = typer.Option(0, "--seed"),
    experiment: str = typer.Option("flamenco-federate", "--experiment", help="MLflow experiment"),
) -> None:
    """Send the packs to each site's work pool, wait, and combine the aggregates that come back: per-site
    and pooled LF analysis, label-model agreement, which LFs generalise. Sites that are down, refuse or
    time out are listed as such. Exit 1 when no site returned anything usable."""
    from flamenco_core.env import quiet_prefect_console, setup_environment

    names = [s.strip() for s in sites.split(",") if s.strip()]
    if not names:
        fail("--sites names no site", 2)
    if len(set(names)) != len(names):
        fail("--sites names a site twice", 2)
    for p in packs:
        if not p.is_file():
            fail(f"{p}: no such pack file", 2)
    if timeout <= 0:
        fail("--timeout must be positive", 2)
    setup_environment()
    _need_api()
    quiet_prefect_console()
    from flows.federate import federate_flow

    with console.status(f"asking {len(names)} site(s)"):
        report = federate_flow(packs=[str(p) for p in packs], sites=names, dataset=dataset, out_dir=str(out),
                               timeout_s=timeout, label_model=label_model, seed=seed, experiment=experiment)
    style = {"ok": "green", "refused": "yellow", "failed": "red", "down": "red", "timeout": "red"}
    sites_rows = [{"site": s["site"], "status": Text(s["status"], style=style.get(s["status"], "")),
                   "seconds": float(s["seconds"] or 0), "reason": (s["reason"] or "")[:200]} for s in report["sites"]]
    console.print(rich_table(sites_rows, columns=("site", "status", "seconds", "reason"), floatfmt=".1f",
                             title=f"federate {dataset}"))
    if report["generalisation"]:
        console.print(rich_table(report["generalisation"], columns=("pack", "lf", "verdict"), headings={"lf": "LF"},
                                 title="which LFs generalise"))
    console.print(Text(f"{len(report['usable_sites'])} of {len(report['sites'])} site(s) answered; "
                       f"report: {out / 'report.json'}, report.md and index.html; MLflow run {report['mlflow']['parent_run_id']}"))
    if not report["usable_sites"]:
        raise typer.Exit(1)
