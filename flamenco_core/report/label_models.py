"""The page of a label-model comparison (``flamenco lf compare-models``): the summary, each model's
outcome (fallbacks and failures named), the models table, F1 per class and the confusion plots."""

from __future__ import annotations

from pathlib import Path

from flamenco_core.report.html import (
    artifact_path, badge, definitions, esc, figure, frame_table, link, outcome_badges, section, table,
)


#: The comparison's columns on the page, in order (``lf compare-models``' report).
MODEL_COLUMNS = (("model_key", "model"), ("kind", "kind"), ("model", "implementation"), ("f1_macro_covered", "F1 covered"),
                 ("f1_macro", "F1 all"), ("f1_weighted", "F1 weighted"), ("coverage", "coverage"),
                 ("fit_seconds", "fit s"), ("fallback", "fallback"), ("error", "error"))


def label_model_sections(folder: Path, rep: dict) -> tuple[str, str, list[str]]:
    """Title, subtitle and sections of the page of ``flamenco lf compare-models``' output folder."""
    prep = rep.get("preparation") or {}
    pack = (prep.get("pack") or {}).get("pack")
    gt = prep.get("ground_truth") or {}
    models = rep.get("models") or []
    sections = [section("Summary", definitions([
        ("pack", pack), ("classes", ", ".join(rep.get("classes") or [])),
        ("covered classes", ", ".join(rep.get("covered_classes") or []) or "none"),
        ("not covered", ", ".join(rep.get("uncovered_classes") or []) or "none"),
        ("rows", ", ".join(f"{k} {v}" for k, v in (prep.get("rows") or {}).items())),
        ("ground truth", f"column {gt.get('column')}, class map {gt.get('class_map')}" if gt else None),
        ("seed", prep.get("seed")),
        ("best label model", f"{rep.get('best_label_model')} (chosen on the {rep.get('best_label_model_chosen_on')})"),
    ]), "summary")]
    kinds: dict[str, int] = {}
    for m in models:
        k = "failed" if m.get("error") else ("fallback" if m.get("fallback") else "ok")
        kinds[k] = kinds.get(k, 0) + 1
    body = "<h3>Models</h3>" + outcome_badges(kinds)
    for m in models:
        if m.get("error"):
            body += f"<p>{badge('failed', 'failed')} {esc(m.get('model_key'))}: {esc(m.get('error'))}</p>"
        elif m.get("fallback"):
            body += f"<p>{badge('fallback', 'fallback')} {esc(m.get('model_key'))}: {esc(m.get('fallback'))}</p>"
    for note in rep.get("notes") or []:
        body += f'<p class="note">{esc(note)}</p>'
    sections.append(section("Outcomes", body, "outcomes"))
    body = table(models, MODEL_COLUMNS)
    defs = rep.get("definitions") or {}
    if defs:
        body += "<details><summary>What the scores mean</summary>" + definitions(defs.items()) + "</details>"
    per = folder / "per_class_f1.csv"
    if per.is_file():
        import pandas as pd

        body += f"<h3>F1 per class, test split ({link(per, folder, per.name)})</h3>"
        body += frame_table(pd.read_csv(per, index_col=0).T, "class")
    sections.append(section("Label models and baselines", body, "comparison"))
    plots = []
    for key, path in (rep.get("artifacts") or {}).items():
        p = artifact_path(path, folder) if key.endswith("_png") else None
        if p:
            model = key[len("confusion_"):-len("_png")] if key.startswith("confusion_") else key
            plots.append(figure(p, folder, f"{pack}: confusion of {model}, test split"))
    if plots:
        sections.append(section("Plots: confusion matrices", f'<div class="grid">{"".join(plots)}</div>', "plots"))
    return (f"Flamenco label models: {pack}", f"{len(models)} models and baselines on {(prep.get('rows') or {}).get('test')} "
            f"test rows; best label model {rep.get('best_label_model')}", sections)


__all__ = ["MODEL_COLUMNS", "label_model_sections"]
