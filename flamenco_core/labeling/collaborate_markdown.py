"""The collaboration report as Markdown: the same aggregates as ``report.json``, for people."""

from __future__ import annotations

from typing import Any, Optional

import pandas as pd


def _fmt(v: Any) -> str:
    # evaluation imports labeling (its F1 keeps the abstain policy), and labeling's package imports this
    # module: importing the writer at call time keeps either package importable first.
    from flamenco_core.evaluation.tables import format_cell

    return format_cell(v, ".4f", na="-")


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    if not rows:
        return "_(none)_\n"
    # Rows carry more keys than a table shows and a key may be missing from some; object dtype keeps
    # counts as integers where a missing cell would otherwise turn the column to float.
    frame = pd.DataFrame([[r.get(key) for key, _ in columns] for r in rows], columns=[k for k, _ in columns],
                         dtype=object)
    from flamenco_core.evaluation.tables import to_markdown

    return to_markdown(frame, ".4f", index=False, na="-", headings=dict(columns), pad=False)


def _section_md(s: dict, title: str) -> str:
    md = f"## {title}\n\n"
    md += f"- version {s['version']}, group {s.get('group') or '-'}, content hash `{s['content_hash']}`\n"
    stats = "; ".join(f"{f}: {', '.join(v)}" for f, v in s["statistics_used"].items()) or "none"
    md += f"- statistics used (names only): {stats}\n"
    allowed = s["audit"]["allowed_findings"]
    md += "- audit: no findings" + (f" ({allowed} allowed)" if allowed else "") + "\n"
    lm = s["label_model"]
    md += f"- label model: {lm['name']}" + (f" ({lm['fallback_reason']})" if lm.get("fallback_reason") else "")
    md += (f"; error: {lm['error']}" if lm.get("error") else "") + "\n"
    if "rows_without_votes" in lm:
        md += f"- local rows no LF votes on (dropped from training): {lm['rows_without_votes']}\n"
    loc = s["local"]
    md += (f"- local data: coverage {_fmt(loc['coverage'])}, overlap {_fmt(loc['overlap'])}, "
           f"conflict {_fmt(loc['conflict'])}\n\n")
    md += "### LFs on the local data\n\n"
    md += _table(loc["lf_summary"], [("lf", "LF"), ("polarity", "Polarity"), ("coverage", "Coverage"),
                                     ("overlaps", "Overlaps"), ("conflicts", "Conflicts")]) + "\n"
    if "labeled" in s:
        lab = s["labeled"]
        md += f"### LF F1 on the labeled data ({lab['rows']} rows)\n\n"
        md += _table(lab["lf_f1"], [("lf", "LF"), ("coverage", "Coverage"), ("correct", "Correct"),
                                    ("incorrect", "Incorrect"), ("emp_acc", "Emp. Acc."), ("precision", "Precision"),
                                    ("recall", "Recall"), ("f1", "F1")]) + "\n"
        mv = lab["majority_vote"]
        md += f"Majority vote of all LFs: F1 {_fmt(mv['f1'])} (coverage {_fmt(mv['coverage'])}, ties {_fmt(mv['ties'])})"
        if lm.get("labeled"):
            md += f"; {lm['name']}: F1 {_fmt(lm['labeled']['f1'])} (coverage {_fmt(lm['labeled']['coverage'])})"
        md += "\n\n"
    return md


def render_markdown(report: dict) -> str:
    """The report as Markdown (the same aggregates as the JSON, for people)."""
    md = "# Flamenco collaboration report\n\n"
    md += "Aggregates only: no rows, no feature values, no statistic values (thresholds are statistics of the "
    md += "local data; only their names are listed).\n\n"
    md += f"- classes: {', '.join(report['classes'])}\n- local rows: {report['data']['rows']}\n"
    lab: Optional[dict] = report.get("labeled")
    if lab:
        counts = ", ".join(f"{c}: {n}" for c, n in lab["class_counts"].items())
        md += f"- labeled rows: {lab['rows']} ({counts}); rows without a label left out: {lab['rows_without_label']}\n"
    st = report["settings"]
    md += f"- label model: {st['label_model']}, seed {st['seed']}\n"
    if st.get("lf_f1"):
        d = st["lf_f1"]
        target = f"F1 of class {d['positive_class']}" if d["average"] == "binary" else "macro F1"
        md += f"- LF F1: {target}; inconclusive rows (no vote, or a tie) count as `{d['abstain']}`"
        md += (f" (class {d['negative_class']})" if d.get("negative_class") is not None else "") + "\n"
    md += "\n## Comparison\n\n"
    cols = [("name", "pack"), ("lfs", "LFs"), ("coverage", "Coverage"), ("overlap", "Overlap"),
            ("conflict", "Conflict"), ("label_model", "Label model")]
    if lab:
        cols += [("coverage_labeled", "Coverage (labeled)"), ("f1_majority_vote", "F1 (majority vote)"),
                 ("f1_label_model", "F1 (label model)")]
    md += _table(report["comparison"], cols) + "\n"
    for s in report["packs"]:
        md += _section_md(s, f"Pack {s['pack']}")
    comb = report.get("combination")
    if comb:
        md += _section_md(comb, f"Combination {comb['pack']}")
        md += "### Duplicate LFs (same content), dropped from the combination\n\n"
        md += _table(comb.get("duplicates", []), [("kept", "kept"), ("kept_pack", "from"), ("dropped", "dropped"),
                                                  ("dropped_pack", "from")]) + "\n"
        if comb.get("renamed"):
            md += "### Renamed (same name, different content)\n\n"
            md += _table(comb["renamed"], [("pack", "pack"), ("from", "name"), ("to", "renamed to")]) + "\n"
    return md


__all__ = ["render_markdown"]
