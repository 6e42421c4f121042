"""``flamenco``: the command line. It parses arguments and calls flows or core functions; no pipeline
logic lives here. Heavy libraries (Prefect, MLflow, torch, tsfresh) are imported inside commands so
``flamenco --help`` answers at once."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Weak supervision for Internet measurement data.")
console = Console()
err = Console(stderr=True)

from flamenco.cli_lf import lf_app  # noqa: E402  (a light typer sub-app: heavy imports live in its commands)

from flamenco.cli_analysis import analyze_cmd, collaborate_cmd  # noqa: E402
from flamenco.cli_explain import explain_cmd  # noqa: E402

lf_app.command("analyze", help="Coverage, overlaps, conflicts, polarity, accuracy and LF F1 of a pack on data.")(analyze_cmd)
app.add_typer(lf_app, name="lf", help="Labeling functions: apply, analyze, combine, audit.")
app.command("collaborate", help="Code-to-data: apply each group's pack and their combination to local data; "
            "write a shareable, aggregate-only report.")(collaborate_cmd)
app.command("explain", help="Trace a point through an interpretability tree: the path taken and the label.")(explain_cmd)

SYNTH_KINDS = ["ark", "atlas", "cic", "worf"]
FORMATS = ["atlas", "scamper", "warts", "cicflowmeter", "nfdump", "csv", "parquet"]


def _fail(msg: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(code)


@app.command()
def synth(
    kind: str = typer.Argument(..., help="ark | atlas | cic | worf"),
    scale: float = typer.Option(1.0, "--scale", help="row-count factor: 0.01 tests, 1 paper size, 10+ scale tests"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", help="output folder"),
) -> None:
    """Generate benchmark data with ground truth, in the real file format."""
    if kind not in SYNTH_KINDS:
        _fail(f"unknown generator {kind!r}; choose one of {', '.join(SYNTH_KINDS)}", 2)
    if scale <= 0:
        _fail("--scale must be positive", 2)
    from flamenco_core.synth import GENERATORS

    with console.status(f"generating {kind} data (scale {scale}, seed {seed})"):
        res = GENERATORS[kind](out, scale=scale, seed=seed)
    console.print(f"[green]wrote[/] {len(res.data_paths)} {res.format} file(s) and labels {res.labels_path}")
    console.print_json(json.dumps(res.summary, default=str))


def _load_column_map(path: Optional[Path]) -> dict:
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        _fail(f"{path}: cannot read column map: {exc}", 2)
    if not isinstance(data, dict):
        _fail(f"{path}: a column map must be a mapping (canonical name: original name)", 2)
    return data


@app.command()
def ingest(
    sources: List[Path] = typer.Argument(..., help="input files"),
    fmt: str = typer.Option(..., "--format", help=" | ".join(FORMATS)),
    out: Path = typer.Option(..., "--out", help="output folder: data.parquet, quarantine.jsonl, ingest_report.json"),
    column_map: Optional[Path] = typer.Option(None, "--column-map", help="YAML for csv/parquet: {kind:, columns: {canonical: original}}"),
    all_hops: bool = typer.Option(False, "--all-hops", help="traceroutes: every hop's RTT with hop_ttl, not only the destination's"),
    min_points: int = typer.Option(0, "--split-pairs", help="also write SD-pair datasets with at least this many rows (0: no split)"),
) -> None:
    """Ingest files into the canonical table, with an ingest report and a quarantine file."""
    if fmt not in FORMATS:
        _fail(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}", 2)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flamenco_core.ingest.base import IngestError
    from flamenco_core.ingest.pipeline import ingest as run_ingest

    options: dict = {}
    if fmt in ("csv", "parquet"):
        cmap = _load_column_map(column_map)
        if cmap:
            options["column_map"] = cmap.get("columns", cmap)
            if "kind" in cmap:
                options["kind"] = cmap["kind"]
    if fmt in ("atlas", "scamper", "warts") and all_hops:
        options["all_hops"] = True
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"), TimeElapsedColumn(), console=err) as bar:
        tid = bar.add_task(f"ingest {fmt}", total=None)
        try:
            report = run_ingest(sources, fmt, out, options=options, on_batch=lambda f, n: bar.advance(tid, n))
        except IngestError as exc:
            _fail(str(exc))
    _print_report(report.to_dict())
    if min_points and report.kind == "latency":
        from flamenco_core.ingest.pairs import write_pairs

        split = write_pairs(report.data_path, out / "pairs", min_points)
        (out / "pairs.json").write_text(json.dumps(split.to_dict(), indent=2))
        console.print(f"{len(split.pairs)} SD pairs written to {out / 'pairs'}; {len(split.skipped)} skipped (< {min_points} rows)")


def _print_report(r: dict) -> None:
    t = Table(title=f"ingest report ({r['format']}, {r['kind']})")
    for col in ("file", "input", "rows", "dropped", "quarantined", "balanced"):
        t.add_column(col, justify="left" if col in ("file", "dropped") else "right")
    for f in r["files"]:
        t.add_row(Path(f["file"]).name, str(f["input_records"]), str(f["rows"]),
                  ", ".join(f"{k}={v}" for k, v in sorted(f["dropped"].items())) or "-", str(f["quarantined"]), str(f["balanced"]))
    t.add_row("[b]total", str(r["input_records"]), str(r["rows"]),
              ", ".join(f"{k}={v}" for k, v in sorted(r["dropped"].items())) or "-", str(r["quarantined"]), str(r["balanced"]))
    console.print(t)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="working folder for the demo's data and results"),
    scale: float = typer.Option(0.02, "--scale", help="size of the generated data"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """The main job on embedded defaults: synthetic Ark/Atlas/CIC data -> ingest flows -> MLflow."""
    import os

    from flamenco.env import setup_environment

    # Task-level INFO lines drown the summary; the runs are all in the Prefect and MLflow stores.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    home = setup_environment()
    from flamenco_core.synth import GENERATORS
    from flows.ingest import ingest_flow

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    # Atlas-like data is small at paper size (25 pairs of 100-450 pings), so the demo keeps its scale 1.
    for kind, kind_scale in (("ark", scale), ("atlas", 1.0), ("cic", scale)):
        with console.status(f"generating {kind}-like data"):
            res = GENERATORS[kind](out / "raw" / kind, scale=kind_scale, seed=seed)
        console.print(f"[cyan]{kind}[/]: running the ingest flow on {len(res.data_paths)} {res.format} file(s)")
        summary = ingest_flow([str(p) for p in res.data_paths], res.format, str(out / kind), min_points=100,
                              experiment="flamenco-demo", run_name=f"demo-{kind}-seed{seed}")
        rep = summary["report"]
        ok = sum(1 for o in summary["items"] if o["status"] == "ok")
        rows.append((kind, res.format, rep["input_records"], rep["rows"], sum(rep["dropped"].values()), rep["quarantined"],
                     ok, summary["failed"], len(summary["skipped"])))
    t = Table(title="flamenco demo: ingest")
    for col in ("data", "format", "input", "rows", "dropped", "quarantined", "items ok", "failed", "skipped"):
        t.add_column(col, justify="left" if col in ("data", "format") else "right")
    for r in rows:
        t.add_row(*map(str, r))
    console.print(t)
    console.print(f"Results: {out.resolve()}  (profiles under */profiles, SD pairs under */pairs)")
    console.print(f"MLflow runs (experiment 'flamenco-demo'): mlflow ui --backend-store-uri {os.environ['MLFLOW_TRACKING_URI']}")
    console.print(f"Prefect home: {os.environ['PREFECT_HOME']} (flamenco home {home})")
    if any(r[7] for r in rows):
        raise typer.Exit(1)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
