"""``flamenco lf analyze`` and ``flamenco collaborate``: plain functions with typer-annotated parameters,
registered on the app by :mod:`flamenco.cli`.

Heavy imports (pandas, the labeling core, torch via the label model) happen inside the commands so
``--help`` stays fast. Exit codes: 0 ok, 1 audit findings (collaboration refused), 2 bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.text import Text

from flamenco.ui import console, err, fail, rich_table


ABSTAIN_HELP = "how rows without a conclusive vote count in LF F1: negative | exclude | wrong"


def _load_pack(path: Path):
    from flamenco_core.labeling.expr import SpecError
    from flamenco_core.labeling.spec import LFPack

    try:
        return LFPack.from_json(path) if path.suffix.lower() == ".json" else LFPack.from_yaml(path)
    except SpecError as exc:
        fail(f"{path}: {exc}")


def _columns_of(path: Path) -> list[str]:
    import pandas as pd

    if path.is_dir() or path.suffix.lower() == ".parquet":
        import pyarrow.dataset as ds

        return list(ds.dataset(path, format="parquet").schema.names)
    return list(pd.read_csv(path, nrows=0).columns)


def read_table(path: Path, columns: Optional[set] = None):
    """A Parquet file/folder or a CSV as a DataFrame, reading only ``columns`` (those present; a missing
    feature is reported by the applier with the LF that needs it)."""
    import pandas as pd

    if not path.exists():
        fail(f"{path}: no such file or folder")
    try:
        present = _columns_of(path)
        use = [c for c in present if columns is None or c in columns]
        if path.is_dir() or path.suffix.lower() == ".parquet":
            return pd.read_parquet(path, columns=use)
        return pd.read_csv(path, usecols=use)
    except (OSError, ValueError) as exc:
        fail(f"{path}: cannot read data: {exc}")


def _labels(labeled_df, path: Path, classes, label_column: str):
    from flamenco_core.labeling.collaborate import class_indices

    if label_column not in labeled_df.columns:
        fail(f"{path}: no {label_column!r} column (the labeled file needs one with class names {list(classes)})")
    try:
        return class_indices(labeled_df[label_column], classes, source=str(path))
    except ValueError as exc:
        fail(str(exc))


def _analysis_table(df, title: str):
    from flamenco_core.labeling.analysis import display_frame

    # "nan", as the analysis Markdown shows an undefined score
    return rich_table(display_frame(df, ".3f"), title=title, index=True, na="nan", justify={"LF": "left"})


def analyze_cmd(
    pack: Path = typer.Argument(..., metavar="PACK.yaml", help="LF pack (YAML or JSON)"),
    data: Path = typer.Option(..., "--data", help="data the LFs run on (Parquet file/folder or CSV); thresholds are its statistics"),
    labeled: Optional[Path] = typer.Option(None, "--labeled", help="labeled data (e.g. the test split) with a label column of class names: adds accuracy and LF F1"),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV to write (default: <pack stem>.analysis.csv in the current folder)"),
    label_column: str = typer.Option("label", "--label-column", help="column of class names in --labeled"),
    abstain: str = typer.Option("negative", "--abstain", help=ABSTAIN_HELP),
    positive: Optional[str] = typer.Option(None, "--positive", help="class whose F1 is reported (binary; default the pack's second class)"),
) -> None:
    """Coverage, overlaps, conflicts and polarity of each LF on the data; with --labeled also correct,
    incorrect, empirical accuracy and LF F1. Prints a table and writes CSV."""
    from flamenco_core.labeling.analysis import ABSTAIN_MODES, combination_f1, label_summary, lf_f1, lf_summary, to_csv
    from flamenco_core.labeling.applier import apply_lfs
    from flamenco_core.labeling.expr import SpecError

    if abstain not in ABSTAIN_MODES:
        fail(f"--abstain {abstain!r}: choose one of {', '.join(ABSTAIN_MODES)}")
    p = _load_pack(pack)
    if positive is not None and positive not in p.classes:
        fail(f"--positive {positive!r} is not one of the pack's classes {p.classes}")
    if not p.lfs:
        fail(f"{pack}: the pack has no LFs")
    names = p.lf_names
    df = read_table(data, p.features())
    try:
        L, meta = apply_lfs(p, df, return_meta=True)
    except SpecError as exc:
        fail(f"{data}: {exc}")
    table = lf_summary(L, names, classes=p.classes)
    overall = label_summary(L)
    console.print(_analysis_table(table, f"{p.name} v{p.version} on {data.name}: {overall['rows']} rows"))
    console.print(Text(f"all LFs: coverage {overall['coverage']:.3f}, overlap {overall['overlap']:.3f}, conflict {overall['conflict']:.3f}"))

    if labeled is not None:
        lab = read_table(labeled, p.features() | {label_column})
        Y = _labels(lab, labeled, p.classes, label_column)
        keep = Y >= 0
        if not keep.any():
            fail(f"{labeled}: no row has a label")
        lab, Y = lab.loc[keep], Y[keep]
        try:
            L_lab = apply_lfs(p, lab, stats=meta.stats)
        except SpecError as exc:
            fail(f"{labeled}: {exc}")
        kw = dict(classes=p.classes, pos_label=positive if positive is not None else 1, abstain=abstain)
        acc = lf_summary(L_lab, names, Y, **kw)
        f1 = lf_f1(L_lab, Y, names, **kw)
        scored = f1.rename(columns={"Coverage": "Labeled Coverage"}).join(acc[["Correct", "Incorrect", "Emp. Acc."]])
        scored.attrs = f1.attrs
        d = f1.attrs["f1_definition"]
        what = f"F1 of {d['positive_class']}" if d["average"] == "binary" else "macro F1"
        console.print(_analysis_table(scored, f"on {labeled.name}: {len(Y)} labeled rows ({what}, inconclusive = {abstain})"))
        mv = combination_f1(L_lab, Y, [tuple(range(len(names)))], names, **kw).iloc[0]
        console.print(Text(f"majority vote of all LFs: F1 {mv['F1']:.3f} (coverage {mv['Coverage']:.3f}, ties {mv['Ties']:.3f})"))
        table = table.join(scored)
        table.attrs["classes"] = list(p.classes)
        if int((~keep).sum()):
            console.print(Text(f"{int((~keep).sum())} row(s) without a label left out", style="yellow"))
    from flamenco_core.outputs import atomic_path

    target = out or Path(f"{pack.stem}.analysis.csv")
    with atomic_path(target) as tmp:
        to_csv(table, tmp)
    console.print(Text(f"wrote {target}"))


def collaborate_cmd(
    pack: List[Path] = typer.Option(..., "--pack", help="a group's LF pack; repeat for each group"),
    data: Path = typer.Option(..., "--data", help="local data (Parquet file/folder or CSV); never leaves this machine"),
    labeled: Optional[Path] = typer.Option(None, "--labeled", help="local labeled data (e.g. the test split) with a label column: adds LF F1"),
    out: Path = typer.Option(..., "--out", help="folder for the shareable report (report.json, report.md)"),
    allow: List[str] = typer.Option([], "--allow", help="accept audit findings of this LF (or pack, for pack-level findings); repeatable"),
    label_model: str = typer.Option("snorkel", "--label-model", help="snorkel | majority (snorkel falls back to majority vote below 3 LFs)"),
    seed: int = typer.Option(0, "--seed", help="label model seed"),
    label_column: str = typer.Option("label", "--label-column", help="column of class names in --labeled"),
    abstain: str = typer.Option("negative", "--abstain", help=ABSTAIN_HELP),
    positive: Optional[str] = typer.Option(None, "--positive", help="class whose F1 is reported (binary; default the second class)"),
) -> None:
    """Apply each group's pack and their combination to local data; write a report of aggregates only
    (coverage, conflicts, LF F1), safe to send back to the groups. Audits every pack first."""
    from flamenco_core.labeling.analysis import ABSTAIN_MODES
    from flamenco_core.labeling.collaborate import CollaborationRefused, collaborate
    from flamenco_core.labeling.expr import SpecError
    from flamenco_core.labeling.label_model import LABEL_MODEL_KINDS

    if abstain not in ABSTAIN_MODES:
        fail(f"--abstain {abstain!r}: choose one of {', '.join(ABSTAIN_MODES)}")
    if label_model not in LABEL_MODEL_KINDS:
        fail(f"--label-model {label_model!r}: choose one of {', '.join(LABEL_MODEL_KINDS)}")
    packs = [_load_pack(p) for p in pack]
    if positive is not None and positive not in packs[0].classes:
        fail(f"--positive {positive!r} is not one of the classes {packs[0].classes}")
    features: set = set()
    for p in packs:
        features |= p.features()
    df = read_table(data, features)
    lab = None
    if labeled is not None:
        lab = read_table(labeled, features | {label_column})
        _labels(lab, labeled, packs[0].classes, label_column)  # names the file on an unknown label
    try:
        report = collaborate(
            packs, df, lab, out, label_column=label_column, allow=allow, label_model=label_model, seed=seed,
            abstain=abstain, pos_label=positive if positive is not None else 1,
        )
    except CollaborationRefused as exc:
        err.print(Text.assemble(("refused: ", "bold red"), str(exc)))
        raise typer.Exit(1)
    except (SpecError, ValueError) as exc:
        fail(str(exc))

    cols = {"name": "pack", "lfs": "LFs", "coverage": "coverage", "conflict": "conflict", "label_model": "label model"}
    if report.get("labeled"):
        cols.update(f1_majority_vote="F1 majority", f1_label_model="F1 label model")
    console.print(rich_table(report["comparison"], title=f"collaboration on {report['data']['rows']} local rows",
                             columns=list(cols), headings=cols, na="-",
                             justify={k: "left" if k in ("name", "label_model") else "right" for k in cols}))
    comb = report.get("combination")
    if comb and comb.get("duplicates"):
        console.print(Text(f"{len(comb['duplicates'])} duplicate LF(s) by content dropped from the combination"))
    from flamenco_core.report import write_index

    page = write_index(out)  # the report as a page beside it (aggregates only, like the report)
    console.print(Text(f"wrote {out / 'report.json'}, {out / 'report.md'} and {page} (aggregates only)"))
