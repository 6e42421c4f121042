"""``flamenco lf``: apply, combine and audit LF packs. Mounted by :mod:`flamenco.cli`.

Heavy imports (pandas, pyarrow, the labeling core) happen inside commands so ``--help`` stays fast.
Exit codes: 0 ok, 1 audit findings (or refusal to combine because of them), 2 bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich.text import Text

from flamenco.ui import console, err, fail, rich_table

lf_app = typer.Typer(
    help="Labeling-function packs: apply them to data, combine groups' packs, audit what a pack reveals.",
    no_args_is_help=True,
    add_completion=False,
)


def _load_pack(path: Path):
    from flamenco_core.labeling import LFPack, SpecError

    try:
        return LFPack.load(path)
    except SpecError as exc:
        fail(str(exc))


def _print_findings(title: str, findings) -> None:
    # One line per finding: its message is a paragraph, which a four-column table folded into dozens of
    # 20-character lines; a line copies and greps whole.
    console.print(Text(title, style="bold"))
    for f in findings:
        console.print(Text(f"- {f.lf or '(pack)'} [{f.kind}] {f.field}: {f.message}"))


def _print_escaped(text: str) -> None:
    # plain echo: no markup interpretation and no line wrapping (JSON must stay parseable)
    typer.echo(text)


@lf_app.command()
def apply(
    pack_path: Path = typer.Argument(..., metavar="PACK.yaml", help="LF pack (YAML or JSON)"),
    data: Path = typer.Option(..., "--data", help="data to label: Parquet file/folder or CSV"),
    out: Path = typer.Option(..., "--out", help="label matrix as Parquet: one int8 column per LF, named by the LF"),
    profile: Optional[Path] = typer.Option(None, "--profile", help="take statistics from this profile (CSV/JSON/YAML) instead of the data"),
    meta: Optional[Path] = typer.Option(None, "--meta", help="where to record statistics and thresholds used (default: OUT with .meta.json)"),
    batch_rows: int = typer.Option(1_048_576, "--batch-rows", help="rows per Parquet record batch"),
    jobs: int = typer.Option(1, "--jobs", "-j", help="threads labeling row blocks in parallel"),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Parquet data only: also fit the label model on the distinct vote patterns and write LABELS (Parquet: label, p_<class>), streaming by batches"),
    label_model: str = typer.Option("snorkel", "--label-model", help="with --labels: snorkel or majority"),
    seed: int = typer.Option(0, "--seed", help="with --labels: the label model's seed"),
) -> None:
    """Apply a pack to data and write the label matrix (ABSTAIN = -1, classes by position)."""
    from flamenco_core.labeling import SpecError, apply_lfs, apply_lfs_parquet, label_matrix_frame

    pack = _load_pack(pack_path)
    if not data.exists():
        fail(f"{data}: no such file or folder")
    stats = None
    if profile is not None:
        from flamenco_core.labeling import load_profile

        try:
            stats = load_profile(profile)
        except (OSError, ValueError, TypeError) as exc:
            fail(f"{profile}: cannot read profile: {exc}")
    from flamenco_core.outputs import atomic_path, atomic_write_text, sweep_temporaries, temp_name

    if out.is_dir():
        fail(f"--out {out} is a folder; give the label matrix's file name")
    out.parent.mkdir(parents=True, exist_ok=True)
    # the output's folder may be shared with other work, so it is not locked; what a killed `lf apply`
    # left there (temporaries of processes that are gone) is removed before this run writes
    for folder in {out.parent} | ({labels.parent} if labels is not None else set()):
        sweep_temporaries(folder, recursive=False)  # a missing folder holds nothing to sweep
    try:
        streamed = None
        if labels is not None and not (data.is_dir() or data.suffix.lower() == ".parquet"):
            fail("--labels streams Parquet data; convert the CSV with `flamenco ingest` first")
        if labels is not None:
            from flamenco_core.labeling.stream import label_parquet

            import shutil

            # memory bounded by a batch: the matrix, the vote-pattern counts and the labels stream
            with atomic_path(out) as tmp, atomic_path(labels) as tmp_labels:
                work = tmp_labels.parent / temp_name("labels-work")  # a temporary name: swept after a kill
                work.mkdir()
                try:
                    streamed = label_parquet(pack, data, work, stats=stats, label_model=label_model, seed=seed,
                                             batch_rows=batch_rows, n_jobs=jobs, matrix_path=tmp)
                    Path(streamed.labels_path).replace(tmp_labels)
                finally:
                    shutil.rmtree(work, ignore_errors=True)
            info = streamed.meta
        elif data.is_dir() or data.suffix.lower() == ".parquet":
            with atomic_path(out) as tmp:  # a killed run leaves no truncated matrix
                _, info = apply_lfs_parquet(pack, data, stats=stats, batch_rows=batch_rows, out=tmp, n_jobs=jobs,
                                            return_meta=True)
        else:
            import pandas as pd
            import pyarrow as pa
            import pyarrow.parquet as pq

            try:
                header = pd.read_csv(data, nrows=0).columns
                usecols = [c for c in header if c in pack.features()]
                df = pd.read_csv(data, usecols=usecols)
            except (OSError, ValueError) as exc:
                fail(f"{data}: cannot read CSV: {exc}")
            L, info = apply_lfs(pack, df, stats=stats, n_jobs=jobs, return_meta=True)
            table = pa.Table.from_pandas(label_matrix_frame(L, pack.lf_names), preserve_index=False)
            table = table.replace_schema_metadata(
                {b"flamenco.pack": pack.name.encode(), b"flamenco.pack_hash": pack.content_hash.encode()}
            )
            with atomic_path(out) as tmp:
                pq.write_table(table, tmp)
    except SpecError as exc:
        fail(str(exc))
    except FileNotFoundError as exc:
        fail(f"{exc}")
    meta_path = meta or out.with_name(out.name + ".meta.json")
    record = {"data": str(data), "out": str(out), "profile": str(profile) if profile else None, **info.to_dict()}
    if streamed is not None:
        record["labels"] = {"path": str(labels), "label_model": streamed.label_model,
                            "params": streamed.label_model_params, "fallback_reason": streamed.fallback_reason,
                            "distinct_patterns": streamed.n_patterns, "label_counts": streamed.label_counts}
    atomic_write_text(meta_path, json.dumps(record, indent=2))

    rows = [{"LF": lf.name, "label": lf.label, "votes": info.votes.get(lf.name, 0),
             "coverage": info.votes.get(lf.name, 0) / info.n_rows if info.n_rows else None} for lf in pack.lfs]
    console.print(rich_table(rows, columns=("LF", "label", "votes", "coverage"), floatfmt=".1%", na="-",
                             justify={"votes": "right", "coverage": "right"},
                             title=f"{pack.name} v{pack.version} on {data.name}: {info.n_rows} rows"))
    _print_escaped(f"wrote {out}; statistics ({info.stats_source}) and thresholds recorded in {meta_path}")
    if streamed is not None:
        _print_escaped(f"wrote {labels}: {streamed.label_model} fitted on {streamed.n_patterns} distinct vote "
                       f"patterns; {streamed.label_counts}")


@lf_app.command()
def combine(
    packs: List[Path] = typer.Argument(..., metavar="A.yaml B.yaml ...", help="packs to merge"),
    out: Path = typer.Option(..., "--out", "-o", help="merged pack (YAML)"),
    name: Optional[str] = typer.Option(None, "--name", help="name of the merged pack (default: the output file's stem)"),
    version: int = typer.Option(1, "--version", help="version of the merged pack"),
    allow: List[str] = typer.Option([], "--allow", help="accept audit findings of this LF (or pack, for pack-level findings); repeatable"),
) -> None:
    """Merge packs; report duplicate LFs (same content) and name clashes. Audits every input first."""
    from flamenco_core.labeling import SpecError, audit_pack, combine_packs

    loaded = [_load_pack(p) for p in packs]
    refused = False
    for path, pack in zip(packs, loaded):
        findings = audit_pack(pack, allow=allow)
        if findings:
            refused = True
            _print_findings(f"audit of {path.name} ({pack.name}): {len(findings)} finding(s)", findings)
    if refused:
        err.print("[bold red]refusing to combine:[/] resolve the findings above or pass --allow NAME for accepted ones")
        raise typer.Exit(1)
    try:
        merged, report = combine_packs(loaded, name=name or out.stem, version=version)
    except SpecError as exc:
        fail(str(exc))
    from flamenco_core.outputs import atomic_path

    with atomic_path(out) as tmp:
        merged.to_yaml(tmp)

    if report.duplicates:
        cols = ("kept", "kept_pack", "dropped", "dropped_pack", "content hash")
        rows = [dict(zip(cols, (kept, kp, dropped, dp, h[:12]))) for kept, kp, dropped, dp, h in report.duplicates]
        console.print(rich_table(rows, columns=cols, headings={"kept_pack": "from pack", "dropped_pack": "from pack"},
                                 title=f"{len(report.duplicates)} duplicate LF(s) dropped (same content hash)"))
    if report.renamed:
        cols = ("pack", "name", "renamed to")
        console.print(rich_table([dict(zip(cols, r)) for r in report.renamed], columns=cols,
                                 title=f"{len(report.renamed)} name clash(es): same name, different content, renamed"))
    _print_escaped(
        f"wrote {out}: pack {merged.name!r} with {len(merged.lfs)} LF(s) from {len(loaded)} pack(s); "
        f"{len(report.duplicates)} duplicate(s), {len(report.renamed)} renamed; content hash {merged.content_hash}"
    )


@lf_app.command()
def audit(
    pack_path: Path = typer.Argument(..., metavar="PACK.yaml", help="LF pack (YAML or JSON)"),
    allow: List[str] = typer.Option([], "--allow", help="accept findings of this LF (or pack, for pack-level findings); repeatable"),
    as_json: bool = typer.Option(False, "--json", help="print findings as JSON"),
) -> None:
    """Report what a pack reveals about its owner's data; exit 1 on any finding not allowed."""
    from flamenco_core.labeling import audit_pack

    pack = _load_pack(pack_path)
    findings = audit_pack(pack, allow=allow)
    if as_json:
        _print_escaped(json.dumps([f.to_dict() for f in findings], indent=2))
    elif findings:
        _print_findings(f"audit of {pack.name}: {len(findings)} finding(s)", findings)
    else:
        console.print(Text(f"audit of {pack.name}: no findings" + (f" (allowed: {', '.join(allow)})" if allow else ""), style="green"))
    if findings:
        raise typer.Exit(1)
