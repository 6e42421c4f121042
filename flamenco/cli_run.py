"""``flamenco run``: run pipelines as Prefect flows logged to MLflow. Mounted by :mod:`flamenco.cli`.

``run_app`` is a light typer sub-app: Prefect, MLflow, pandas and the core are imported inside the
commands, so ``flamenco --help`` stays fast. Exit codes (README, "Exit codes and outcomes"): 0 the
pipeline ran (failed combinations are counted in the summary, not fatal), 1 nothing usable (no row, no
ground truth, no combination succeeded), 2 bad input (arguments, packs that do not fit the data,
experiment or config files), 3 the output folder is in use. A failure prints one line; ``--debug``
shows the traceback and Prefect's log.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from flamenco.ui import console, fail, rich_table
from rich.text import Text

run_app = typer.Typer(
    help="Run pipelines as Prefect flows, logged to MLflow.",
    no_args_is_help=True,
    add_completion=False,
)

FLOW_FORMATS = ("cicflowmeter", "nfdump", "csv", "parquet")


def _overrides(config: Optional[Path], class_map: Optional[Path], label_model: Optional[str], classes: list) -> Optional[dict]:
    """The config overrides of ``--config`` plus ``--class-map`` (the ground truth's mapping) and
    ``--label-model``, as one mapping; ``None`` when neither option is given (the file goes as it is)."""
    if class_map is None and label_model is None:
        return None
    import yaml

    from flamenco_core.labeling.class_map import load_class_map

    data = (yaml.safe_load(config.read_text()) or {}) if config is not None else {}
    if not isinstance(data, dict):
        raise ValueError(f"{config}: expected a mapping of settings")
    if class_map is not None:
        cmap = load_class_map(class_map)
        cmap.check_classes(classes, where="the LF packs")
        data["ground_truth"] = {**(data.get("ground_truth") or {}), **cmap.ground_truth()}
    if label_model is not None:
        data["label_model"] = {**(data.get("label_model") or {}), "kind": label_model}
    return data


@run_app.command("flows")
def flows_cmd(
    input_paths: List[Path] = typer.Option(..., "--input", help="flows file (CICFlowMeter CSV, nfdump export, CSV or "
                                           "Parquet) or a folder of them; repeat: several files read as one dataset"),
    fmt: str = typer.Option(..., "--format", help=" | ".join(FLOW_FORMATS)),
    lfs: List[Path] = typer.Option(..., "--lfs", help="LF pack (YAML/JSON); repeat for packs of several groups"),
    experiments: Optional[Path] = typer.Option(None, "--experiments", help="experiment file: LF combinations to compare "
                                                "(default: every single LF, every pair, the whole pack)"),
    alerts: Optional[Path] = typer.Option(None, "--alerts", help="alert windows (CSV/YAML: start, end, optional target and port) "
                                           "as ground truth instead of the label column"),
    out: Path = typer.Option(..., "--out", help="output folder: labels.parquet, report.json, tables/, trees/"),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML overrides of conf/flow_records.yaml"),
    runner: Optional[str] = typer.Option(None, "--runner", help="per-combination fan-out: threads | processes | dask"),
    workers: Optional[int] = typer.Option(None, "--workers", help="task-runner workers (default: CPU count)"),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="an existing Dask scheduler, tcp://host:8786 (implies dask)"),
    class_map: Optional[Path] = typer.Option(None, "--class-map", help="YAML map from raw labels to the packs' classes "
                                             "(conf/class_maps/; several raw labels may map to one class)"),
    label_model: Optional[str] = typer.Option(None, "--label-model", help="majority | snorkel | dawid_skene | one_coin_ds "
                                              "| mmsr (default: the config's, snorkel)"),
) -> None:
    """LF-combination experiment on flow records: LF F1, classifier F1, Tree F1 per combination, the paper's
    tables, interpretability trees and labels for every flow."""
    if fmt not in FLOW_FORMATS:
        fail(f"unknown format {fmt!r}; choose one of {', '.join(FLOW_FORMATS)}")
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder (for labels.parquet, report.json, tables/, trees/)")
    for path in input_paths:
        if not path.exists():
            fail(f"input {path}: no such file or folder")
    for path, what in [*[(p, "LF pack") for p in lfs], (experiments, "experiment file"),
                       (alerts, "alerts file"), (config, "config file"), (class_map, "class map")]:
        if path is not None and not path.is_file():
            fail(f"{what} {path}: no such file")
    from flamenco_core.experiments.flow_records import load_config, load_experiment, load_packs
    from flamenco_core.labeling import SpecError

    try:
        from tasks.runners import resolve

        resolve(runner, workers, scheduler)
        packs = load_packs(lfs)
        exp = load_experiment(experiments)
        overrides = _overrides(config, class_map, label_model, packs[0].classes)
        load_config(exp.config if exp else None, overrides if overrides is not None else config)
    except (SpecError, ValueError) as exc:
        fail(str(exc))

    import os

    from flamenco_core.env import quiet_prefect_console, setup_environment

    # task-level INFO lines drown the summary; every run is in the Prefect and MLflow stores
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    quiet_prefect_console()
    setup_environment()
    from flows.flow_records import flow_records_flow

    # Unusable input (NoRows), a folder in use (OutputInUse), I/O errors: one line and the exit code of
    # the outcome policy, from the app's error handler (flamenco.errors).
    inputs = str(input_paths[0]) if len(input_paths) == 1 else [str(p) for p in input_paths]
    summary = flow_records_flow(inputs, fmt, [str(p) for p in lfs], str(out),
                                experiments=str(experiments) if experiments else None,
                                alerts=str(alerts) if alerts else None,
                                config=overrides if overrides is not None else (str(config) if config else None),
                                runner=runner, workers=workers, scheduler=scheduler)
    if summary.get("preparation") != "ok":
        # a pack that does not fit the data, no ground truth, too few rows: one line, no table of skips
        fail(f"{summary.get('error')} (report: {summary['report']})", summary.get("exit_code", 1))

    from flamenco_core.experiments.flow_records.record import SUMMARY_COLUMNS

    from flamenco_core.report import lf_legend, short_name

    # n/a: a score undefined (NaN, e.g. F1 of a class with no test row) or never computed.
    # Combinations by their A/B/C letters (spelled out below, one LF per line), as `flamenco compare` and
    # the MLflow child runs name them: full names would squeeze the scores out of 80 columns.
    text_cols = ("combination", "outcome")
    legend = lf_legend(summary["combinations"])  # every summary record carries its "lfs"
    rows = [{**r, "combination": short_name(r["lfs"], legend)} for r in summary["combinations"]]
    console.print(rich_table(
        rows, columns=list(SUMMARY_COLUMNS), headings={**SUMMARY_COLUMNS, "combination": "LFs"},
        justify={k: "left" if k in text_cols else "right" for k in SUMMARY_COLUMNS},
        title=f"flow records: {summary.get('dataset', '')}"))
    for name, letter in legend.items():
        console.print(Text(f"  {letter} = {name}"))
    s = summary["summary"]
    console.print(f"{s['ok']} ok, {s['skipped']} skipped, {s['failed']} failed")
    for f in s.get("failures", []):
        console.print(Text(f"failed: {f['combination']}: {f['error']}"))
    undefined = next((r["f1_undefined"] for r in summary["combinations"] if r.get("f1_undefined")), None)
    if undefined:
        console.print(Text(f"n/a: {undefined} in the test split"))
    console.print(Text(f"report: {summary['report']}"))  # paths whole, never wrapped mid-word
    if summary.get("page"):
        console.print(Text(f"page: {summary['page']}"))
    if summary.get("labels"):
        console.print(Text(f"labels: {summary['labels']['path']} ({json.dumps(summary['labels']['by_source'])})"))
        console.print(Text(f"tables: {Path(out) / 'tables'}   trees: {Path(out) / 'trees'}"))
    console.print(Text(f"MLflow: experiment {summary['experiment']}, parent run {summary['parent_run_id']}"))
    if s["ok"] + s["skipped"] == 0:
        fail(f"every combination failed; nothing usable (report: {summary['report']})", 1)
