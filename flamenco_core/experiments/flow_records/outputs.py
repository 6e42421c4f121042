"""What a flow-records run writes: trees, matrices and records per combination; the paper's tables,
``labels.parquet`` and ``report.json`` (last: its presence says the outputs are complete)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flamenco_core.experiments.flow_records.catalog import (
    Combination,
    build_catalog,
    experiment_combinations,
    load_packs,
)
from flamenco_core.experiments.flow_records.config import load_experiment
from flamenco_core.experiments.flow_records.prepare import GOLD, REPORT_VERSION, ROW, Prepared, all_rows
from flamenco_core.experiments.flow_records.record import OUTCOMES, SUMMARY_COLUMNS, CombinationRecord
from flamenco_core.outputs import atomic_write_parquet, json_ready, write_json

#: Columns copied to ``labels.parquet`` (where present) so labels join back to the flows.
KEY_COLUMNS = ("timestamp", "src", "dst", "src_port", "dst_port", "protocol")


def write_trees(rec: CombinationRecord, modes: dict[str, Any], combo: Combination, out: Path, png: bool) -> None:
    from flamenco_core.explain.render import render_dot, render_png, render_text

    folder = out / "trees"
    folder.mkdir(parents=True, exist_ok=True)
    arts = rec.artifacts
    for mode, suffix in (("faithful", ""), ("paper", ".paper")):
        tree = modes[mode]["tree"]
        stem = folder / f"{combo.slug}{suffix}"
        tree.to_json(f"{stem}.json")
        arts[f"tree{suffix.replace('.', '_')}_json"] = f"{stem}.json"
        if mode == "faithful":
            Path(f"{stem}.dot").write_text(render_dot(tree, title=combo.name))
            Path(f"{stem}.txt").write_text(render_text(tree))
            arts["tree_dot"], arts["tree_text"] = f"{stem}.dot", f"{stem}.txt"
        if png:
            try:
                # titled with the dataset: a tree PNG is also read alone (MLflow artifact, shared file)
                render_png(tree, f"{stem}.png", title=f"{rec.dataset}: {combo.name} ({mode} tree)")
                arts[f"tree{suffix.replace('.', '_')}_png"] = f"{stem}.png"
            except RuntimeError as exc:  # Graphviz missing or failing: the JSON/DOT still hold the tree
                rec.notes.append(f"tree PNG not rendered: {exc}")


def write_matrices(prep: Prepared, rec: CombinationRecord, combo: Combination, out: Path, y_te: np.ndarray,
                    preds: Mapping[str, np.ndarray], matrix: pd.DataFrame) -> None:
    from flamenco_core.evaluation.metrics import confusion_matrix
    from flamenco_core.evaluation.plots import confusion_matrix_plot
    from flamenco_core.evaluation.tables import difference_matrix_table

    folder = out / "combinations" / combo.slug
    folder.mkdir(parents=True, exist_ok=True)
    arts = rec.artifacts
    titles = {"lf": "LFs (majority vote)", "cls": "classifier", "tree": "tree (faithful)"}
    for name, pred in preds.items():
        cm = confusion_matrix(y_te, pred, prep.classes)
        cm.to_csv(folder / f"confusion_{name}.csv")
        arts[f"confusion_{name}_csv"] = str(folder / f"confusion_{name}.csv")
        if prep.config.plots:
            title = f"{prep.dataset}: {titles[name]}, test split ({len(y_te)} rows)\n{combo.name[:90]}"
            path = confusion_matrix_plot(cm, folder / f"confusion_{name}.png", title=title)
            arts[f"confusion_{name}_png"] = str(path)
    difference_matrix_table(matrix).to_csv(folder / "prediction_differences.csv")
    arts["prediction_differences_csv"] = str(folder / "prediction_differences.csv")


def skipped_records(combinations: Sequence[Combination], reason: str, dataset: str = "flows") -> list[dict[str, Any]]:
    """Records for combinations that never ran (e.g. the preparation failed)."""
    return [CombinationRecord.not_run(c, "skipped", reason, dataset).to_dict() for c in combinations]


def failed_record(combo: Combination, error: str, dataset: str = "flows") -> dict[str, Any]:
    """A record for a combination whose task died outside :func:`run_combination` (e.g. I/O after retries)."""
    return CombinationRecord.not_run(combo, "failed", error, dataset).to_dict()


def write_record(rec: CombinationRecord, out: Path) -> None:
    """``combinations/<slug>/record.json`` (the record names it among its artifacts)."""
    folder = out / "combinations" / rec.slug
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "record.json"
    rec.artifacts["record"] = str(path)
    write_json(path, rec.to_dict(), root=out)  # paths relative to the output folder: it can move


def write_all_rows(frame: pd.DataFrame, rec: CombinationRecord, out: Path) -> None:
    """The whole pack's label-model and classifier predictions on every input row, for ``labels.parquet``."""
    path = out / "combinations" / rec.slug / "all_rows.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_parquet(frame, path, index=False)
    rec.artifacts["all_rows"] = str(path)


def write_failed_preparation(packs: Sequence[Any], experiment: Any, error: str, out_dir: Union[str, Path],
                             *, sources: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """The report of an experiment whose preparation failed: every combination skipped with the reason."""
    catalog = build_catalog(load_packs(packs))
    exp = load_experiment(experiment)
    combos, notes = experiment_combinations(exp, catalog)
    records = skipped_records(combos, f"preparation failed: {error}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "pipeline": "flow_records", "version": REPORT_VERSION,
        "experiment": exp.experiment if exp else "default",
        "preparation": {"outcome": "failed", "error": error, "notes": notes, "sources": json_ready(dict(sources or {}))},
        "combinations": records, "summary": summarize(records), "labels": None, "tables": {},
    }
    write_json(out / "report.json", report, root=out)
    return report


def summarize(records: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    counts = {o: sum(1 for r in records if r.get("outcome") == o) for o in OUTCOMES}
    return {
        **counts,
        "total": len(records),
        "failures": [{"combination": r.get("combination"), "error": r.get("error")} for r in records if r.get("outcome") == "failed"],
        "skips": [{"combination": r.get("combination"), "reason": r.get("reason")} for r in records if r.get("outcome") == "skipped"],
    }


def write_outputs(prep: Prepared, records: Sequence[Mapping[str, Any]], out_dir: Union[str, Path],
                  extra: Optional[Mapping[str, Any]] = None) -> dict[str, Any]:
    """Write the tables (``tables/*.csv`` and ``*.md``, one record per combination in ``records.csv``),
    ``labels.parquet`` and ``report.json``; return the report."""
    from flamenco_core.evaluation.tables import paper_tables, records_frame, to_csv, to_markdown, write_tables

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # The report is what says the outputs are complete: the old one goes before anything is replaced,
    # and the new one comes last.
    (out / "report.json").unlink(missing_ok=True)
    records = sorted((dict(r) for r in records), key=lambda r: r.get("index", 0))
    frame = records_frame(records)
    tables = paper_tables(frame)
    modes = _tree_modes_table(frame)
    if len(modes):
        tables["tree_modes"] = modes
    per_class = _per_class_table(records, prep.classes)
    if len(per_class):
        tables["per_class_f1"] = per_class
    written = write_tables(tables, out / "tables", na="n/a")
    to_csv(frame, out / "tables" / "records.csv", index=False)
    markdown = {name: to_markdown(t) for name, t in tables.items()}
    labels = _write_labels(prep, records, out)
    report = {
        "pipeline": "flow_records",
        "version": REPORT_VERSION,
        "experiment": prep.experiment,
        "dataset": prep.dataset,
        "classes": prep.classes,
        "seed": prep.config.seed,
        "config": prep.config.model_dump(mode="json"),
        "tree_mode": "faithful",
        "definitions": {
            "lf_f1": "majority vote of the combination's LFs on test; ties and no vote inconclusive; "
                     f"inconclusive rows count as abstain={prep.config.abstain!r} (flamenco_core.labeling.analysis)",
            "cls_f1": "end classifier trained on the label model's labels (train split), scored on test like LF F1",
            "tree_f1": "faithful interpretability tree on test, scored like LF F1",
            "tree_vs_lf_difference": "fraction of test rows where the faithful tree and the LFs' decision differ "
                                     "(0 by construction); tree_vs_lf_difference_paper: the paper's construction",
            "coverage": "fraction of test rows at least one of the combination's LFs votes on",
            "conflicts": "fraction of test rows where the voting LFs disagree",
            "prediction_differences": f"fraction of differing predictions on a seeded {prep.config.sample_fraction:.0%} "
                                      "sample of test; " + ("an inconclusive decision counts as the negative class "
                                      "(abstain=negative)" if prep.config.abstain == "negative"
                                      else "inconclusive is a value of its own"),
            "correlation": f"mean absolute pairwise {prep.config.correlation} correlation of the features on train "
                           "(blank for one feature)",
        },
        "preparation": {"outcome": "ok", **prep.meta},
        "combinations": records,
        "summary": summarize(records),
        "tables": {name: {"csv": str(p["csv"]), "markdown": str(p["markdown"])} for name, p in written.items()},
        "tables_markdown": markdown,
        "labels": labels,
        **dict(extra or {}),
    }
    write_json(out / "report.json", report, root=out)
    return report


def _tree_modes_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per combination, Tree F1 and the tree-vs-LF difference of both tree modes (reports use faithful)."""
    cols = ["tree_f1", "tree_vs_lf_difference", "tree_f1_paper", "tree_vs_lf_difference_paper", "tree_conditions"]
    present = [c for c in cols if c in frame.columns]
    if "tree_vs_lf_difference" not in present:
        return pd.DataFrame()
    out = frame.set_index("combination")[["n_lfs", *present]]
    return out.rename(columns={"tree_f1": "tree_f1_faithful", "tree_vs_lf_difference": "difference_faithful",
                               "tree_vs_lf_difference_paper": "difference_paper", "tree_conditions": "conditions_faithful"})


def _per_class_table(records: Sequence[Mapping[str, Any]], classes: Sequence[str]) -> pd.DataFrame:
    """k > 2 only (binary runs write no such table): per combination, the F1 of each class for the LFs'
    decision and the classifier, with the macro F1 over the classes the combination's LFs vote for
    ("covered"), the weighted F1 and the classes no LF of the combination votes for."""
    rows = []
    for r in records:
        covered = set(r.get("covered_classes") or [])
        for scorer, prefix in (("LFs", "lf"), ("classifier", "cls")):
            per = r.get(f"{prefix}_f1_per_class")
            if not per:
                continue
            row = {"combination": r.get("combination"), "scorer": scorer}
            row.update({c: per.get(c) for c in classes})
            row["macro (covered)"] = r.get(f"{prefix}_f1_macro_covered")
            row["weighted"] = r.get(f"{prefix}_f1_weighted")
            row["not covered"] = ", ".join(c for c in classes if c not in covered)
            rows.append(row)
    if not rows:
        return pd.DataFrame()
    return pd.DataFrame(rows).set_index(["combination", "scorer"])


def _write_labels(prep: Prepared, records: Sequence[Mapping[str, Any]], out: Path) -> dict[str, Any]:
    """``labels.parquet``: every input row's label from the whole pack (see the module docstring)."""
    rows, _ = all_rows(prep)
    n = len(rows)
    whole = next((r for r in records if r.get("role") == "whole_pack"), None)
    classes = np.array(prep.classes, dtype=object)
    label = np.full(n, -1, dtype=np.int64)
    prob = np.full(n, np.nan)
    source = np.full(n, "none", dtype=object)
    part_path = (whole or {}).get("artifacts", {}).get("all_rows")
    if part_path and Path(part_path).is_file():
        part = pd.read_parquet(part_path).set_index(ROW).reindex(rows[ROW].to_numpy())
        lm = part["lm_label"].to_numpy()
        decided = lm >= 0
        label[decided] = lm[decided]
        prob[decided] = part["lm_probability"].to_numpy()[decided]
        source[decided] = "label_model"
        if "cls_label" in part.columns:
            rest = ~decided
            label[rest] = part["cls_label"].to_numpy()[rest]
            prob[rest] = part["cls_probability"].to_numpy()[rest]
            source[rest] = "classifier"
    gold = pd.Categorical(rows[GOLD].astype(object), categories=prep.classes).codes
    fallback = (source == "none") & (gold >= 0)
    label[fallback] = gold[fallback]
    prob[fallback] = 1.0
    source[fallback] = "ground_truth"
    frame = rows[[c for c in KEY_COLUMNS if c in rows.columns]].copy()
    frame["split"] = rows["__split"].to_numpy()
    frame["label"] = pd.array(np.where(label >= 0, classes[np.maximum(label, 0)], None), dtype="string")
    frame["probability"] = prob
    frame["label_source"] = pd.array(source, dtype="string")
    path = out / "labels.parquet"
    atomic_write_parquet(frame, path, index=False)
    return {
        "path": str(path),
        "rows": int(n),
        "source_combination": (whole or {}).get("combination"),
        "source_outcome": (whole or {}).get("outcome"),
        "by_source": {s: int(c) for s, c in pd.Series(source).value_counts().items()},
        "by_label": {str(s): int(c) for s, c in frame["label"].value_counts(dropna=False).items()},
    }


def summary_frame(records: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per combination with the summary columns (:data:`SUMMARY_COLUMNS`) and the reason, for
    run summaries (the flow's Markdown artifact, the CLI's table)."""
    cols = [*SUMMARY_COLUMNS, "reason"]
    rows = [{c: r.get(c) for c in cols} for r in records]
    frame = pd.DataFrame(rows, columns=cols).set_index("combination")
    scores = [c for c in SUMMARY_COLUMNS if c not in ("combination", "outcome")]
    frame[scores] = frame[scores].astype("float64")
    frame["reason"] = frame["reason"].fillna("").astype(str).str.slice(0, 200)
    return frame


def summary_markdown(title: str, records: Sequence[Mapping[str, Any]]) -> str:
    """A run summary in Markdown: a title and one table row per combination (undefined scores "n/a")."""
    from flamenco_core.evaluation.tables import to_markdown

    headings = {**SUMMARY_COLUMNS, "reason": "detail"}
    return f"# {title}\n\n" + to_markdown(summary_frame(records), ".3f", na="n/a", headings=headings)
