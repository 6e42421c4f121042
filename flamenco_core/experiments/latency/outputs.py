"""A latency run's files: a label for every row, the summary, the comparison table (CSV, Markdown, chart)
and ``report.json``, written last because it is what says the run is complete."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import pandas as pd

from .config import LatencyConfig
from .pair import heuristic_labels
from .results import comparison_frame, outcome_counts, summarize


def assemble_labels(data: pd.DataFrame, pair_labels: Sequence[pd.DataFrame], config: LatencyConfig) -> pd.DataFrame:
    """Every row that survived cleaning (``data``), labeled by its pair run (``pair_labels``) or, for pairs
    that were skipped or failed, by the threshold heuristic, marked ``heuristic``; sorted by pair and time."""
    frames = [f for f in pair_labels if len(f)]
    covered = pd.concat([f[["src", "dst"]] for f in frames]).drop_duplicates() if frames else None
    keys = pd.MultiIndex.from_frame(data[["src", "dst"]].astype(str))
    rest = data[~keys.isin(pd.MultiIndex.from_frame(covered.astype(str)))] if covered is not None else data
    if len(rest):
        h = heuristic_labels(rest, config, "pair skipped or failed").drop(columns=["note"])
        frames.append(h.assign(level="heuristic", predicted=h["label"]))
    if not frames:
        raise ValueError("no rows to label: the cleaned data is empty")
    return pd.concat(frames, ignore_index=True).sort_values(["src", "dst", "timestamp"], kind="stable")


def no_pair_reason(split: dict, done: list[dict], failed: list[dict], min_points: int) -> str:
    """Why no SD pair was labeled, and what the user can do about it."""
    from flamenco_core.ingest.pairs import no_pairs_message

    if failed and not done:
        return f"every SD pair failed ({len(failed)}; first: {failed[0]['pair']}: {failed[0]['error']})"
    if split.get("skipped") and not done:
        return no_pairs_message(split["skipped"], min_points, "lower min_points in the config (--config) to label them")
    return "no SD pair could be labeled: " + "; ".join(f"{d['report']['src']}->{d['report']['dst']}: "
                                                        f"{d['report']['reason']}" for d in done[:3])


def usable(reports: Sequence[dict]) -> bool:
    """Whether any pair produced labels a user can use (ok, partial or fallback, never only skipped)."""
    return any(r.get("outcome") in ("ok", "partial", "fallback") for r in reports)


def run_summary(reports: Sequence[dict], *, failed: list[dict], skipped: list[dict], borrowed: dict,
                context: dict[str, Any]) -> dict:
    """``report.json``'s body for a whole run: :func:`summarize` over the pairs' reports, the outcome counts
    with the pairs that were skipped before running or failed, the source level's record, and ``context``
    (ingest counts, labeled rows, the MLflow run...)."""
    summary = summarize(list(reports))
    summary["outcomes"] = outcome_counts(summary["pairs"], skipped=len(skipped), failed=len(failed))
    level = borrowed.get("level")
    summary["source_level"] = {k: v for k, v in borrowed.items() if k != "level"} | (
        {"pairs": level["pairs"], "rows": level["rows"], "counts": level["counts"]} if level else {})
    summary.update({"failed": failed, "skipped": skipped, **context})
    return summary


def headline_table(summary: dict) -> tuple[pd.DataFrame, str]:
    """The F1 columns a reader compares first, and where they were measured: the rows outside the labeled
    pool when the truth was given (what the labels are for), else the labeled pool's test split."""
    table = comparison_frame(summary)
    avg = summary["average"]
    if "unlabeled_f1_macro" in table:
        shown = table[[f"unlabeled_{k}" for k in ("f1_good", "f1_noise", "f1_macro")]]
        return shown.rename(columns=lambda c: c.removeprefix("unlabeled_")), \
            f"rows outside the labeled pool, {avg.get('pairs_with_truth', 0)} pairs"
    return table[["f1_good", "f1_noise", "f1_macro"]], f"test split, {avg.get('pairs_scored', 0)} pairs"


def write_run_outputs(out: Path, summary: dict, labels: Optional[pd.DataFrame] = None) -> dict[str, Any]:
    """Write ``labels.parquet`` (when given), ``comparison.csv``/``.md``/``.png`` and, last,
    ``report.json`` under ``out``, each atomically. Returns the paths and the Markdown table."""
    from flamenco_core.evaluation.plots import f1_bar_chart
    from flamenco_core.evaluation.tables import to_csv, to_markdown
    from flamenco_core.outputs import atomic_path, atomic_write_parquet, atomic_write_text, write_json

    out = Path(out)
    files: dict[str, Any] = {}
    if labels is not None:
        files["labels"] = atomic_write_parquet(labels, out / "labels.parquet", index=False)
    table = comparison_frame(summary)
    with atomic_path(out / "comparison.csv") as tmp:
        to_csv(table, tmp)
    files["csv"] = out / "comparison.csv"
    md = to_markdown(table, na="n/a", headings=None)
    files["md"] = atomic_write_text(out / "comparison.md", md)
    shown, where = headline_table(summary)
    files["chart"] = Path(f1_bar_chart(shown.dropna(how="all"), out / "comparison.png",
                                       title=f"latency {out.name}: F1 on {where}"))
    files["report"] = write_json(out / "report.json", summary)
    files["markdown"] = md
    return files
