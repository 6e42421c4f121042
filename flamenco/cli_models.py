"""``flamenco lf compare-models``: every label model on one pack and one dataset (issue 13).

Heavy imports (pandas, the labeling core, crowd-kit, MLflow) happen inside the command so ``--help``
stays fast. Exit codes: 0 compared, 1 nothing usable (no row, no ground truth), 2 bad input (paths,
pack, class map, a model name).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.text import Text

from flamenco.ui import console, fail, rich_table

INPUT_FORMATS = ("cicflowmeter", "nfdump", "csv", "parquet")


#: Column names of the per-class table.
#: Per-class table headings, at most four characters so that nine models and the class fit 80 columns.
SHORT = {"majority": "MV", "snorkel": "Snk", "dawid_skene": "DS", "one_coin_ds": "DS1", "mmsr": "MMSR",
         "end_classifier": "end", "majority_class": "maj", "isolation_forest": "IF", "simplest_rule": "rule"}
LONG = {"majority": "majority vote", "snorkel": "Snorkel LabelModel", "dawid_skene": "Dawid-Skene",
        "one_coin_ds": "one-coin Dawid-Skene", "mmsr": "MMSR", "end_classifier": "end classifier",
        "majority_class": "majority class", "isolation_forest": "Isolation Forest", "simplest_rule": "simplest rule"}


def compare_models_cmd(
    pack_path: Path = typer.Argument(..., metavar="PACK.yaml", help="LF pack (YAML or JSON)"),
    data: List[Path] = typer.Option(..., "--data", "--input", help="input file or folder; repeat for several (read as one dataset)"),
    fmt: str = typer.Option("cicflowmeter", "--format", help=" | ".join(INPUT_FORMATS)),
    out: Path = typer.Option(..., "--out", help="output folder: comparison.{csv,md}, per_class_f1.*, confusion_*.{csv,png}, report.json"),
    class_map: Optional[Path] = typer.Option(None, "--class-map", help="YAML map from raw labels to the pack's classes "
                                             "(default: the label column holds class names)"),
    label_model: List[str] = typer.Option([], "--label-model", help="a label model to compare; repeatable (default: all)"),
    seed: int = typer.Option(0, "--seed", help="seed of the splits and the models"),
    end_model: bool = typer.Option(True, "--end-model/--no-end-model", help="train a random forest on the best label model's labels"),
    mlflow: bool = typer.Option(True, "--mlflow/--no-mlflow", help="log the comparison to MLflow"),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="dataset name in MLflow (default: the first input's name)"),
) -> None:
    """Per-class and macro F1 (ground truth), coverage and fit time of every label model on a pack, against a
    majority-class baseline, an Isolation Forest, the pack's literal rules and an end classifier."""
    from flamenco_core.labeling.label_models import KINDS

    if fmt not in INPUT_FORMATS:
        fail(f"unknown format {fmt!r}; choose one of {', '.join(INPUT_FORMATS)}", 2)
    unknown = [m for m in label_model if m not in KINDS]
    if unknown:
        fail(f"unknown label model {unknown[0]!r}; choose from {', '.join(KINDS)}", 2)
    if out.exists() and not out.is_dir():
        fail(f"--out {out} is a file; give a folder", 2)
    for path, what in [(pack_path, "LF pack"), (class_map, "class map")]:
        if path is not None and not path.is_file():
            fail(f"{what} {path}: no such file", 2)

    from flamenco_core.errors import FlamencoError
    from flamenco_core.experiments.inputs import expand_inputs, read_inputs
    from flamenco_core.experiments.label_model_comparison import ComparisonError, compare, prepare, write_outputs
    from flamenco_core.labeling.class_map import load_class_map
    from flamenco_core.labeling.spec import LFPack, SpecError

    try:
        pack = LFPack.from_json(pack_path) if pack_path.suffix.lower() == ".json" else LFPack.from_yaml(pack_path)
        cmap = load_class_map(class_map) if class_map is not None else None
        files = expand_inputs(data, fmt)
    except SpecError as exc:
        msg = str(exc)
        fail(msg if msg.startswith(str(pack_path)) or class_map and msg.startswith(str(class_map)) else f"{pack_path}: {msg}", 2)
    except FlamencoError as exc:
        fail(str(exc), exc.exit_code)
    from flamenco_core.outputs import OutputLock

    out.mkdir(parents=True, exist_ok=True)
    try:
        # a second comparison into the same folder is refused (OutputInUse, exit 3), not interleaved
        with OutputLock(out):
            if fmt == "parquet":
                import pandas as pd

                df = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
            else:
                df, _, _ = read_inputs(files, fmt, out / "ingest")
            prep = prepare(df, pack, cmap, seed=seed)
            comp = compare(prep, label_model or None, end_model="random_forest" if end_model else None, seed=seed)
            report = write_outputs(comp, out)
            from flamenco_core.report import write_index

            write_index(out)  # the report as a page beside it
    except ComparisonError as exc:
        fail(str(exc), 1)
    except FlamencoError as exc:  # SpecError (a class map that does not fit the pack), NoUsableData, OutputInUse
        fail(str(exc), exc.exit_code)

    # Every table fits 80 columns with nothing cut (the console prints every line whole).
    rows = [{"model": str(key), "F1 covered": row.get("f1_macro_covered"), "F1 all": row.get("f1_macro"),
             "weighted": row.get("f1_weighted"), "coverage": row.get("coverage"),
             "fit s": float(row.get("fit_seconds", 0.0))} for key, row in comp.table.iterrows()]
    cols = ("model", "F1 covered", "F1 all", "weighted", "coverage", "fit s")
    console.print(rich_table(rows, columns=cols, floatfmt={c: ".2f" if c == "fit s" else ".3f" for c in cols},
                             justify={c: "left" if c == "model" else "right" for c in cols},
                             column_options={"model": {"no_wrap": True, "min_width": 16}},
                             title=f"label models: {pack.name} on {len(files)} file(s), {prep.meta['rows']['test']} test rows"))
    console.print(Text("  F1: macro F1 over the covered classes / over all classes, weighted F1"))
    for key, row in comp.table.iterrows():
        if row.get("fallback") or row.get("kind") != "label_model":
            used = f"{row.get('model')}" + (f" (fallback: {row.get('fallback')})" if row.get("fallback") else "")
            console.print(Text(f"  {key}: {used}"))
    # classes as rows, models as columns: a table that stays readable in 80 columns
    per = comp.per_class().T
    from rich import box

    models = [str(key) for key in per.columns]
    rows = [{"class": cls + ("" if cls in comp.covered else " *"), **dict(zip(models, row))} for cls, row in per.iterrows()]
    console.print(rich_table(rows, columns=["class", *models], headings=SHORT, floatfmt=".2f",
                             justify={"class": "left", **{m: "right" for m in models}},
                             column_options={"class": {"no_wrap": True}, **{m: {"min_width": 5, "no_wrap": True} for m in models}},
                             title="F1 per class (test split)", box=box.SIMPLE, padding=(0, 0), pad_edge=False))
    console.print(Text("  " + ", ".join(f"{SHORT.get(m, m)} = {LONG.get(m, m)}" for m in models)))
    console.print(Text("* not covered: no LF of the pack votes for the class on the training split"))
    uncovered = report["uncovered_classes"]
    console.print(Text(f"covered classes: {', '.join(comp.covered) or 'none'}; not covered: {', '.join(uncovered) or 'none'}"))
    console.print(Text(f"best label model (chosen on validation): {comp.best_label_model}"))
    for name in ("report.json", "comparison.md", "per_class_f1.md", "index.html"):
        console.print(Text(f"wrote {out / name}"))
    if mlflow:
        from tasks.label_models import log_label_model_comparison
        from tasks.tracking import input_hashes

        pngs = [out / p for k, p in report["artifacts"].items() if k.endswith("_png")]
        name = dataset or (files[0].parent.name if len(files) > 1 else files[0].stem)
        run_id = log_label_model_comparison(
            report, dataset=name,
            inputs=input_hashes(files),
            artifacts=[out / "comparison.csv", out / "per_class_f1.csv", out / "report.json", *pngs])
        console.print(Text(f"MLflow: experiment flamenco-label-models, parent run {run_id}"))
