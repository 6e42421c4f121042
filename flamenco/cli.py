"""``flamenco``: the command line. It parses arguments and calls flows or core functions; no pipeline
logic lives here. Heavy libraries (Prefect, MLflow, torch, tsfresh) are imported inside commands so
``flamenco --help`` answers at once."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.text import Text

from flamenco.errors import DEBUG_ENV, FlamencoGroup
from flamenco.ui import console, err, fail, rich_table

app = typer.Typer(cls=FlamencoGroup, add_completion=False, no_args_is_help=True,
                  help="Weak supervision for Internet measurement data.")


#: Commands that start Prefect (a temporary local server, workers): their children end with them.
_SPAWNING = ("run", "watch-dumps", "demo", "serve", "site")


@app.callback()
def _options(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", envvar=DEBUG_ENV,
                               help="show the Python traceback of a failure (also FLAMENCO_DEBUG=1; accepted anywhere)"),
) -> None:
    """Weak supervision for Internet measurement data. Exit codes: 0 done (partial results counted in the
    summary), 1 nothing usable came out, 2 usage error, 3 output folder in use."""
    import os

    if debug:
        os.environ[DEBUG_ENV] = "1"
    if ctx.invoked_subcommand in _SPAWNING:
        # Prefect stops its temporary server at exit, which a SIGKILL skips: a watchdog ends it instead.
        from flamenco.watchdog import bind_to_this_process

        bind_to_this_process()


from flamenco.cli_lf import lf_app  # noqa: E402  (a light typer sub-app: heavy imports live in its commands)

from flamenco.cli_analysis import analyze_cmd, collaborate_cmd  # noqa: E402
from flamenco.cli_explain import explain_cmd  # noqa: E402

lf_app.command("analyze", help="Coverage, overlaps, conflicts, polarity, accuracy and LF F1 of a pack on data.")(analyze_cmd)
from flamenco.cli_models import compare_models_cmd  # noqa: E402

lf_app.command("compare-models", help="Every label model on a pack and data: per-class and macro F1, coverage, fit time "
               "(table, confusion matrices, MLflow).")(compare_models_cmd)
app.add_typer(lf_app, name="lf", help="Labeling functions: apply, analyze, combine, audit.")
app.command("collaborate", help="Code-to-data: apply each group's pack and their combination to local data; "
            "write a shareable, aggregate-only report.")(collaborate_cmd)
from flamenco.cli_latency import latency_cmd  # noqa: E402
from flamenco.cli_run import run_app  # noqa: E402

run_app.command("latency", help="Automatic latency path: KDE subsets, Snuba LFs, label model, end model, baselines.")(latency_cmd)
app.add_typer(run_app, name="run", help="Run a pipeline: latency (automatic LFs) or flows (manual LF packs).")
from flamenco.cli_ops import compare_cmd, serve_cmd, ui_cmd, watch_dumps_cmd  # noqa: E402

app.command("watch-dumps", help="Process new dump files in DIR: once with --once, else scanning every --interval seconds.")(watch_dumps_cmd)
app.command("serve", help="Start a Prefect server, a worker and an MLflow server on loopback; deploy prefect.yaml.")(serve_cmd)
app.command("ui", help="Start the MLflow UI on the project's tracking store (prints the URL).")(ui_cmd)
app.command("compare", help="Compare runs of an MLflow experiment (LF combinations) by a metric; CSV + Markdown.")(compare_cmd)
app.command("explain", help="Trace a point through an interpretability tree: the path taken and the label.")(explain_cmd)
from flamenco.cli_federate import federate_cmd, site_app  # noqa: E402

app.add_typer(site_app, name="site", help="A federation site: serve a work pool whose worker answers LF packs with aggregates.")
app.command("federate", help="Send LF packs to several sites' work pools; combine the aggregates that come back.")(federate_cmd)

SYNTH_KINDS = ["ark", "atlas", "cic", "worf"]
FORMATS = ["atlas", "scamper", "warts", "cicflowmeter", "nfdump", "csv", "parquet"]


@app.command()
def synth(
    kind: str = typer.Argument(..., help="ark | atlas | cic | worf"),
    scale: float = typer.Option(1.0, "--scale", help="row-count factor: 0.01 tests, 1 paper size, 10+ scale tests"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", help="output folder"),
) -> None:
    """Generate benchmark data with ground truth, in the real file format."""
    if kind not in SYNTH_KINDS:
        fail(f"unknown generator {kind!r}; choose one of {', '.join(SYNTH_KINDS)}", 2)
    if scale <= 0:
        fail("--scale must be positive", 2)
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
        fail(f"{path}: cannot read column map: {exc}", 2)
    if not isinstance(data, dict):
        fail(f"{path}: a column map must be a mapping (canonical name: original name)", 2)
    return data


@app.command()
def ingest(
    sources: List[Path] = typer.Argument(..., metavar="FILE", help="input files (gzip or bzip2 dumps are read as they are)"),
    fmt: str = typer.Option(..., "--format", help=" | ".join(FORMATS)),
    out: Path = typer.Option(..., "--out", help="output folder: data.parquet, quarantine.jsonl, ingest_report.json"),
    column_map: Optional[Path] = typer.Option(None, "--column-map", help="YAML for csv/parquet: {kind:, columns: {canonical: original}}"),
    all_hops: bool = typer.Option(False, "--all-hops", help="traceroutes: every hop's RTT with hop_ttl, not only the destination's"),
    min_points: int = typer.Option(0, "--split-pairs", help="also write SD-pair datasets with at least this many rows (0: no split)"),
) -> None:
    """Ingest files into the canonical table, with an ingest report and a quarantine file. Exit 1 when no
    row came out (the line says why and what to try), 3 when another run writes into --out."""
    if fmt not in FORMATS:
        fail(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}", 2)
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder (for data.parquet, quarantine.jsonl, ingest_report.json)", 2)
    for src in sources:
        if not src.is_file():
            fail(f"{src}: no such file", 2)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from flamenco_core.ingest.pipeline import ingest as run_ingest
    from flamenco_core.outputs import OutputLock, atomic_write_text

    options: dict = {}
    if fmt in ("csv", "parquet"):
        cmap = _load_column_map(column_map)
        if cmap:
            options["column_map"] = cmap.get("columns", cmap)
            if "kind" in cmap:
                options["kind"] = cmap["kind"]
    if fmt in ("atlas", "scamper", "warts") and all_hops:
        options["all_hops"] = True
    # One lock for the ingest and the SD-pair split: a second run into --out is refused (exit 3).
    with OutputLock(out):
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rows"),
                      TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal) as bar:
            tid = bar.add_task(f"ingest {fmt}", total=None)
            report = run_ingest(sources, fmt, out, options=options, on_batch=lambda f, n: bar.advance(tid, n))
        report.require_rows(options)
        _print_report(report.to_dict())
        if min_points and report.kind == "latency":
            from flamenco_core.ingest.pairs import write_pairs

            split = write_pairs(report.data_path, out / "pairs", min_points)
            atomic_write_text(out / "pairs.json", json.dumps(split.to_dict(), indent=2))
            console.print(f"{len(split.pairs)} SD pairs written to {out / 'pairs'}; {len(split.skipped)} skipped (< {min_points} rows)")
            if not split.pairs:
                from flamenco_core.ingest.pairs import no_pairs_message

                fail(no_pairs_message(split.skipped, min_points, "lower --split-pairs", where=str(out / "pairs.json")), 1)


def _print_report(r: dict) -> None:
    def row(name, f: dict) -> dict:
        return {"file": name, "input": f["input_records"], "rows": f["rows"],
                "dropped": ", ".join(f"{k}={v}" for k, v in sorted(f["dropped"].items())) or "-",
                "quarantined": f["quarantined"], "balanced": f["balanced"]}

    rows = [row(Path(f["file"]).name, f) for f in r["files"]] + [row(Text("total", style="bold"), r)]
    console.print(rich_table(rows, title=f"ingest report ({r['format']}, {r['kind']})"))


@app.command()
def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", help="working folder for the demo's data and results"),
    scale: float = typer.Option(0.02, "--scale", help="size of the generated Ark- and CIC-like data (1 = paper size)"),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """The main job on embedded defaults (Prefect local mode, MLflow SQLite): generate Ark-, Atlas- and
    CIC-like data; run the automatic latency pipeline, the manual flow pipeline with the paper's packs and a
    two-group collaboration; print the summary and where to open the results."""
    import os

    from flamenco_core.env import setup_environment

    # Task-level INFO lines drown the summary; every run is in the Prefect and MLflow stores.
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    home = setup_environment()
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from flamenco_core.synth import GENERATORS

    root = Path(__file__).resolve().parents[1]
    conf = root / "conf"
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    steps = [("generate Ark-, Atlas- and CIC-like data", "synth"), ("latency pipeline on Ark-like data", "ark"),
             ("latency pipeline on Atlas-like data", "atlas"), ("flow pipeline on CIC-like data (paper's NTP pack)", "flows"),
             ("two-group collaboration on CIC-like data", "collab")]
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console) as bar:
        overall = bar.add_task("flamenco demo", total=len(steps))
        for text, key in steps:
            tid = bar.add_task(text, total=None)
            if key == "synth":
                # Atlas-like pairs are small at paper size (100-450 pings); 0.3 keeps most above min_points.
                data = {k: GENERATORS[k](out / "raw" / k, scale=sc, seed=seed)
                        for k, sc in (("ark", scale), ("atlas", max(scale, 0.3)), ("cic", scale))}
            elif key in ("ark", "atlas"):
                from flows.latency import latency_flow

                d = data[key]
                import pandas as pd

                from flamenco_core.synth import hold_out_labels

                d = data[key]
                # The user labels the last 35% of each pair; every other row is scored against the truth.
                partial, _ = hold_out_labels(pd.read_parquet(d.labels_path), share=0.35)
                pool = out / "raw" / key / "user_labels.parquet"
                partial.to_parquet(pool)
                results[key] = latency_flow([str(p) for p in d.data_paths], d.format, str(out / f"latency_{key}"),
                                            labels=str(pool), config=str(conf / "demo_latency.yaml"),
                                            experiment="flamenco-demo-latency", run_name=f"demo-{key}-seed{seed}",
                                            truth=str(d.labels_path))
            elif key == "flows":
                from flows.flow_records import flow_records_flow

                d = data["cic"]
                results[key] = flow_records_flow(str(d.data_paths[0]), d.format, [str(conf / "lf_packs" / "cic_ntp.yaml")],
                                                 str(out / "flows_cic"), experiment="flamenco-demo-flows",
                                                 run_name=f"demo-cic-seed{seed}")
            else:
                import pandas as pd

                from flamenco_core.ingest.pipeline import ingest as run_ingest
                from flamenco_core.preprocess import labels_from_column
                from flows.collaboration import collaboration_flow

                # Group A's local data; its CIC labels (BENIGN / attack names) become the labeled pool.
                local = run_ingest(data["cic"].data_paths, "cicflowmeter", out / "collaboration_local")
                df = pd.read_parquet(local.data_path)
                labeled = out / "collaboration_local" / "labeled.parquet"
                df.assign(label=labels_from_column(df, "label").labels).to_parquet(labeled)
                results[key] = collaboration_flow(
                    [str(conf / "lf_packs" / "cic_ntp.yaml"), str(conf / "lf_packs" / "cic_ntp_group_b.yaml")],
                    local.data_path, str(out / "collaboration"), labeled=str(labeled),
                    experiment="flamenco-demo-collaboration", run_name=f"demo-collaboration-seed{seed}")
            bar.update(tid, total=1, completed=1)
            bar.advance(overall)
    _print_demo(results, out, home)
    failed = len(results["ark"]["failed"]) + len(results["atlas"]["failed"])
    if failed:
        raise typer.Exit(1)


def _print_demo(results: dict, out: Path, home: Path) -> None:
    import os

    from flamenco.cli_latency import outcome_line

    keys = ("f1_good", "f1_noise", "f1_macro")
    heads = ("good", "noise", "macro")
    # 80 columns: method names whole (min_width), short numeric headings; the title says what they are
    methods = sorted({m for key in ("ark", "atlas") for m in results[key]["average"]["baselines"]} | {"FLAMENCO"})
    rows = []
    for key in ("ark", "atlas"):
        avg = results[key]["average"]
        unl, bu = avg.get("f1_unlabeled", {}), avg.get("baselines_unlabeled", {})
        rows.append({"data": f"{key}-like\n({avg['pairs_scored']} pairs)", "method": Text("FLAMENCO", style="bold"),
                     **{h: unl.get(k) for h, k in zip(heads, keys)}, "test macro": avg["f1_macro"]})
        for m in sorted(set(avg["baselines"]) | set(bu)):
            rows.append({"data": "", "method": m, **{h: bu.get(m, {}).get(k) for h, k in zip(heads, keys)},
                         "test macro": avg["baselines"].get(m, {}).get("f1_macro")})
    cols = ("data", "method", *heads, "test macro")
    console.print(rich_table(
        rows, columns=cols, justify={c: "left" if c in ("data", "method") else "right" for c in cols},
        column_options={c: {"overflow": "fold", **({"min_width": max(map(len, methods))} if c == "method" else {})} for c in cols},
        title="latency: F1 (good, noise, macro) on the rows outside the labeled pool (the last 35% of each "
              "pair is labeled) and macro F1 on its test split, averaged over SD pairs"))
    for key in ("ark", "atlas"):
        r = results[key]
        console.print(Text(f"  {key}-like: {outcome_line(r)}"))
        if r["average"].get("vs_rolling_mad"):
            console.print(Text(f"    {r['average']['vs_rolling_mad']['verdict']}"))
        if r.get("skipped"):
            console.print(Text(f"    {len(r['skipped'])} pairs skipped: fewer than min_points rows (the largest "
                               f"{max(x['rows'] for x in r['skipped'])}); lower min_points in conf/demo_latency.yaml to label them"))
        for p in r["pairs"]:
            if p["outcome"] in ("partial", "fallback"):
                console.print(Text(f"    {p['src']} -> {p['dst']}: {p['outcome']}: {p['reason'][:300]}"))
    combos = results["flows"]["combinations"]
    from flamenco_core.report import lf_legend, short_name

    letter = lf_legend(combos)  # the same A/B/C names as the MLflow child runs and the report page
    cols = ("LFs", "outcome", "lf_f1", "cls_f1", "tree_f1", "tree vs LF", "coverage")
    rows = [{"LFs": short_name(r.get("lfs") or [], letter) or str(r.get("combination")), "outcome": str(r.get("outcome")),
             **{k: r.get(k) for k in ("lf_f1", "cls_f1", "tree_f1")}, "tree vs LF": r.get("tree_vs_lf_difference"),
             "coverage": r.get("coverage")} for r in combos]
    console.print(rich_table(rows, columns=cols, na="-", justify={c: "left" if c in ("LFs", "outcome") else "right" for c in cols},
                             title="CIC-like NTP: LF combinations (F1 of attack on test; faithful trees)"))
    for k, v in letter.items():  # one per line: a legend wrapped mid-name cannot be read
        console.print(Text(f"  {v} = {k}"))
    collab = results["collab"]
    widest = max((len(str(r["name"])) for r in collab["comparison"]), default=4)
    # pack names whole (min_width) in 80 columns: short headings, spelled out below the table
    cols = {"name": "pack", "lfs": "LFs", "coverage": "coverage", "conflict": "conflict", "f1_majority_vote": "F1 vote",
            "f1_label_model": "F1 model"}
    console.print(rich_table(
        collab["comparison"], columns=list(cols), headings=cols, na="-",
        justify={k: "left" if k == "name" else "right" for k in cols},
        column_options={k: {"overflow": "fold", **({"min_width": widest} if k == "name" else {})} for k in cols},
        title="two-group collaboration (aggregates only: what the groups share)"))
    console.print(Text("  F1 vote: majority vote of the LFs; F1 model: the label model"))
    from flamenco_core.report import write_demo_index
    from tasks.tracking import ui_command

    # Paths and commands print whole, one per line (soft_wrap): a pipe or a narrow window must not break
    # them mid-word, so they copy and run as printed.
    commands = [("MLflow UI", ui_command()), ("MLflow UI, from this folder", f"{_venv_bin('flamenco')} ui")]
    parts = {"latency, Ark-like": "latency_ark", "latency, Atlas-like": "latency_atlas",
             "flow records, CIC-like (NTP pack)": "flows_cic", "two-group collaboration": "collaboration"}
    page = write_demo_index(out, parts, commands=commands)
    console.print(Text(f"\nResults under {out}:"))
    console.print(Text(f"  report page: {page}"))
    for key in ("ark", "atlas"):
        console.print(Text(f"  latency {key}: {out / f'latency_{key}'}/ (index.html, report.json, labels.parquet, "
                           "comparison.png, per_pair/)"))
    console.print(Text(f"  flows: {out / 'flows_cic'}/ (index.html, report.json, tables/, trees/)"))
    console.print(Text(f"  collaboration: {out / 'collaboration'}/ (index.html, report.md)"))
    console.print(Text(f"MLflow runs: {commands[0][1]}"))
    console.print(Text(f"  or, from this folder: {commands[1][1]}"))
    console.print(Text(f"Prefect home: {os.environ['PREFECT_HOME']} (flamenco home {home})"))


def _venv_bin(name: str) -> str:
    """The absolute path of this environment's console script ``name`` (the README's setup puts none on
    PATH), else the bare name."""
    p = Path(sys.executable).with_name(name)
    return str(p) if p.exists() else name


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
