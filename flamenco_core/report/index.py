"""``index.html`` for an output folder: what a researcher opens first after a run.

:func:`write_index` reads what the run left in its folder (``report.json`` or ``watch_report.json``, the
comparison files, plots, trees) and writes one self-contained page beside them: the summary, the outcome
counts, the comparison tables, every plot and tree (images stay where they are, referenced relatively,
so the folder can be moved or copied whole) and links to the files. It only reads and renders: the page
is derived from the run's files, never the other way round, so a page can be rebuilt at any time. Pure
(standard library, pandas for CSV tables); the page holds no script and loads nothing from the network.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from flamenco_core.outputs import atomic_write_text, is_temporary, LOCK_NAME
from flamenco_core.report.federation import federation_sections
from flamenco_core.report.html import (
    Raw, artifact_path, badge, definitions, esc, figure, fmt, frame_table, link, outcome_badges, page, section,
    table,
)
from flamenco_core.report.label_models import label_model_sections
from flamenco_core.report.legend import lf_legend, legend_text, short_name
from flamenco_core.report.watch import outcome_rows as watch_outcome_rows

INDEX = "index.html"
#: At most this many files are listed by name per folder in the file list (the rest are counted).
MAX_LISTED = 40


def _load(path: Path) -> Optional[dict]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _files(folder: Path) -> str:
    """Links to the folder's files: top-level files by name, each subfolder with its files (up to
    :data:`MAX_LISTED`, then a count)."""
    def visible(p: Path) -> bool:
        return not (p.name.startswith(".") or is_temporary(p.name) or p.name in (LOCK_NAME, INDEX))

    top = sorted(p for p in folder.iterdir() if visible(p) and p.is_file())
    parts = ['<ul class="files">' + "".join(f"<li>{link(p, folder, p.name)}</li>" for p in top) + "</ul>"]
    for sub in sorted(p for p in folder.iterdir() if visible(p) and p.is_dir()):
        files = sorted(f for f in sub.rglob("*")
                       if f.is_file() and all(visible(Path(x)) for x in f.relative_to(folder).parts))
        if (sub / INDEX).is_file():
            files = [sub / INDEX] + files
        shown = "".join(f"<li>{link(f, folder)}</li>" for f in files[:MAX_LISTED])
        more = f"<li>... and {len(files) - MAX_LISTED} more</li>" if len(files) > MAX_LISTED else ""
        parts.append(f"<details><summary>{esc(sub.name)}/ ({len(files)} files)</summary>"
                     f'<ul class="files">{shown}{more}</ul></details>')
    return "".join(parts)


def _num(v: Any) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


# ---------------------------------------------------------------------------------------------- latency


def _latency(folder: Path, rep: dict) -> tuple[str, str, list[str]]:
    avg = rep.get("average", {})
    oc = rep.get("outcomes", {})
    name = folder.name
    sections = [section("Summary", definitions([
        ("dataset (output folder)", name),
        ("MLflow", f"experiment {rep.get('experiment')}, parent run {rep.get('parent_run_id')}"),
        ("labeled pool", f"{rep.get('labeled_rows')} rows ({rep.get('label_source_of_pool')} labels)"),
        ("rows with truth", rep.get("truth_rows")),
        ("ingest", ", ".join(f"{k} {v}" for k, v in (rep.get("ingest") or {}).items())),
        ("pairs scored", avg.get("pairs_scored")),
        ("vs rolling median/MAD", (avg.get("vs_rolling_mad") or {}).get("verdict")),
        ("source level", (rep.get("source_level") or {}).get("reason") or
         (f"LFs from {rep['source_level'].get('pairs')} pairs" if (rep.get("source_level") or {}).get("used") else None)),
        ("runner", rep.get("runner")),
    ]), "summary")]
    body = "<h3>SD pairs</h3>" + outcome_badges(oc.get("pairs", {}))
    body += "<h3>Subsets by the level their labels came from</h3>" + (outcome_badges(oc.get("subsets_by_level", {})) or "none")
    for f in rep.get("failed") or []:
        body += f"<p>{badge('failed', 'failed')} {esc(f.get('pair'))}: {esc(f.get('error'))}</p>"
    if rep.get("skipped"):
        body += f"<p>{len(rep['skipped'])} pair(s) skipped (fewer than min_points rows).</p>"
    sections.append(section("Outcomes", body, "outcomes"))

    comp = folder / "comparison.csv"
    body = ""
    if comp.is_file():
        import pandas as pd

        body += ("<p class=\"note\">F1 averaged over SD pairs (unweighted); <code>unlabeled_*</code>: on the rows "
                 "outside the labeled pool, scored against the truth; the others: on the test split.</p>")
        body += frame_table(pd.read_csv(comp, index_col=0), "method")
    if (folder / "comparison.png").is_file():
        body += figure(folder / "comparison.png", folder, f"latency {name}: F1 per method (comparison.png)")
    if body:
        sections.append(section("Comparison with the baselines", body, "comparison"))

    rows = []
    for p in rep.get("pairs", []):
        unl = p.get("f1_unlabeled") or {}
        rows.append({"pair": f"{p.get('src')} -> {p.get('dst')}", "rows": p.get("rows"), "outcome": p.get("outcome"),
                     "modality": p.get("modality"), "levels": ", ".join(f"{k} {v}" for k, v in (p.get("levels") or {}).items()),
                     "f1_macro": p.get("f1_macro"), "f1_unlabeled_macro": unl.get("f1_macro"),
                     "rolling_mad": ((p.get("baselines_unlabeled") or p.get("baselines") or {}).get("rolling_mad") or {}).get("f1_macro"),
                     "reason": p.get("reason")})
    if rows:
        sections.append(section("Per SD pair", table(rows, [
            ("pair", "pair"), ("rows", "rows"), ("outcome", "outcome"), ("modality", "modality"), ("levels", "levels"),
            ("f1_macro", "F1 macro (test)"), ("f1_unlabeled_macro", "F1 macro (unlabeled)"),
            ("rolling_mad", "rolling MAD F1 macro"), ("reason", "note")]), "pairs"))

    per_pair = folder / "per_pair"
    if per_pair.is_dir():
        plots, trees = [], []
        for i, d in enumerate(sorted(x for x in per_pair.iterdir() if x.is_dir())):
            pair = d.name.replace("__", " -> ")
            for png in sorted(d.glob("*_kde.png")):
                plots.append(figure(png, folder, f"{name}: {pair}, all rows: RTT density and the KDE's subsets"))
            for png in sorted(d.glob("subset*_tree.png")):
                subset = png.name.split("_")[0]
                trees.append(figure(png, folder, f"{name}: {pair}, {subset}: tree of the automatic LFs (train split)"))
        if plots:
            sections.append(section("Plots: RTT per SD pair", f'<div class="grid">{"".join(plots)}</div>', "plots"))
        if trees:
            sections.append(section("Trees", f'<div class="grid">{"".join(trees)}</div>', "trees"))
    title = f"Flamenco latency run: {name}"
    sub = f"{sum((oc.get('pairs') or {}).values())} SD pairs: " + ", ".join(f"{k} {v}" for k, v in (oc.get("pairs") or {}).items())
    return title, sub, sections


# ------------------------------------------------------------------------------------------------ flows

#: The headline scores of an LF combination, in table order.
FLOW_METRICS = (("lf_f1", "LF F1"), ("cls_f1", "classifier F1"), ("tree_f1", "Tree F1"),
                ("tree_vs_lf_difference", "tree vs LF"), ("coverage", "coverage"), ("conflicts", "conflicts"))


def _flows(folder: Path, rep: dict) -> tuple[str, str, list[str]]:
    records = rep.get("combinations") or []
    legend = lf_legend(records)
    prep = rep.get("preparation") or {}
    s = rep.get("summary") or {}
    dataset = rep.get("dataset") or (prep.get("sources") or {}).get("dataset") or folder.name
    rows_info = prep.get("rows") or {}
    sections = [section("Summary", definitions([
        ("dataset", dataset), ("experiment", rep.get("experiment")), ("classes", ", ".join(rep.get("classes") or [])),
        ("rows", ", ".join(f"{k} {v}" for k, v in rows_info.items())),
        ("ground truth", (prep.get("ground_truth") or {}).get("method")),
        ("seed", rep.get("seed")), ("trees", rep.get("tree_mode")),
        ("MLflow", f"experiment {(rep.get('mlflow') or {}).get('experiment')}, parent run "
                   f"{(rep.get('mlflow') or {}).get('parent_run_id')}" if rep.get("mlflow") else None),
        ("preparation", prep.get("outcome") if prep.get("outcome") == "ok" else f"{prep.get('outcome')}: {prep.get('error')}"),
        ("labels", (rep.get("labels") or {}).get("by_label") and
         ", ".join(f"{k} {v}" for k, v in rep["labels"]["by_label"].items())),
    ]), "summary")]
    body = "<h3>LF combinations</h3>" + outcome_badges({k: s.get(k, 0) for k in ("ok", "skipped", "failed")})
    for f in s.get("failures") or []:
        body += f"<p>{badge('failed', 'failed')} {esc(f.get('combination'))}: {esc(f.get('error'))}</p>"
    for f in s.get("skips") or []:
        body += f"<p>{badge('skipped', 'skipped')} {esc(f.get('combination'))}: {esc(f.get('reason'))}</p>"
    sections.append(section("Outcomes", body, "outcomes"))

    rows = [{"short": short_name(r.get("lfs") or r.get("refs") or [], legend, r.get("label")),
             "outcome": r.get("outcome"), **{k: r.get(k) for k, _ in FLOW_METRICS}, "combination": r.get("combination")}
            for r in records]
    body = table(rows, [("short", "LFs"), ("outcome", "outcome"), *FLOW_METRICS, ("combination", "combination")])
    body += f'<p class="legend">{esc(legend_text(legend))}</p>'
    defs = rep.get("definitions") or {}
    if defs:
        body += "<details><summary>What the scores mean</summary>" + definitions(defs.items()) + "</details>"
    if (folder / "comparison.png").is_file():
        body += figure(folder / "comparison.png", folder, f"{dataset}: F1 per LF combination (test split)")
    sections.append(section("LF combinations", body, "comparison"))

    tables = rep.get("tables") or {}
    if tables:
        import pandas as pd

        body = ""
        for tname, paths in tables.items():
            csv = Path(str(paths.get("csv", "")))
            csv = csv if csv.is_absolute() else folder / csv
            if csv.is_file():
                body += f"<h3>{esc(tname.replace('_', ' '))} ({link(csv, folder, csv.name)})</h3>"
                body += frame_table(pd.read_csv(csv))
        sections.append(section("Tables", body, "tables"))

    plots, trees = [], []
    for r in records:
        short = short_name(r.get("lfs") or r.get("refs") or [], legend, r.get("label"))
        arts = r.get("artifacts") or {}
        for key, what in (("confusion_lf_png", "LFs (majority vote)"), ("confusion_cls_png", "classifier"),
                          ("confusion_tree_png", "tree")):
            p = artifact_path(arts.get(key), folder)
            if p:
                plots.append(figure(p, folder, f"{dataset}: {short}: confusion of the {what}, test split"))
        p = artifact_path(arts.get("tree_png"), folder)
        if p:
            trees.append(figure(p, folder, f"{dataset}: {short}: faithful tree ({r.get('combination')})"))
    if plots:
        sections.append(section("Plots: confusion matrices", f'<div class="grid">{"".join(plots)}</div>', "plots"))
    if trees:
        sections.append(section("Trees", f'<div class="grid">{"".join(trees)}</div>', "trees"))
    title = f"Flamenco flow records: {dataset}"
    sub = f"{len(records)} LF combinations: {s.get('ok', 0)} ok, {s.get('skipped', 0)} skipped, {s.get('failed', 0)} failed"
    return title, sub, sections


# ---------------------------------------------------------------------------------------- collaboration


def _collaboration(folder: Path, rep: dict) -> tuple[str, str, list[str]]:
    lab = rep.get("labeled") or {}
    st = rep.get("settings") or {}
    sections = [section("Summary", definitions([
        ("classes", ", ".join(rep.get("classes") or [])), ("local rows", (rep.get("data") or {}).get("rows")),
        ("labeled rows", lab.get("rows")), ("label model", st.get("label_model")), ("seed", st.get("seed")),
        ("privacy", (rep.get("privacy") or {}).get("contents")),
    ]), "summary")]
    cols = [("name", "pack"), ("lfs", "LFs"), ("coverage", "coverage"), ("overlap", "overlap"), ("conflict", "conflict"),
            ("label_model", "label model")]
    if lab:
        cols += [("coverage_labeled", "coverage (labeled)"), ("f1_majority_vote", "F1 majority vote"),
                 ("f1_label_model", "F1 label model")]
    sections.append(section("Packs and their combination", table(rep.get("comparison") or [], cols), "comparison"))
    audits = []
    for p in (rep.get("packs") or []) + ([rep["combination"]] if rep.get("combination") else []):
        findings = p.get("audit") or p.get("findings") or []
        audits.append({"pack": p.get("pack"), "group": p.get("group"), "version": p.get("version"),
                       "findings": len(findings) if isinstance(findings, list) else findings})
    if audits:
        sections.append(section("Outcomes", table(audits, [("pack", "pack"), ("group", "group"), ("version", "version"),
                                                           ("findings", "audit findings")]), "outcomes"))
    n = len(rep.get("packs") or [])
    return "Flamenco collaboration report", f"{n} pack(s) on {(rep.get('data') or {}).get('rows')} local rows (aggregates only)", sections


# ------------------------------------------------------------------------------------------------ watch


def _watch(folder: Path, rep: dict) -> tuple[str, str, list[str]]:
    sections = [section("Summary", definitions([
        ("folder watched", rep.get("directory")), ("pipeline", rep.get("pipeline")), ("experiment", rep.get("experiment")),
        ("manifest", rep.get("manifest")), ("seconds", rep.get("seconds")), ("busy", rep.get("busy")),
    ]), "summary")]
    counts = {"processed": len(rep.get("processed") or []), "failed": len(rep.get("failed") or []),
              "skipped": len(rep.get("skipped") or [])}
    body = "".join(badge(f"{k} {v}", {"processed": "ok"}.get(k, k)) for k, v in counts.items())
    if rep.get("counts"):
        body += "<h3>Manifest</h3>" + outcome_badges(rep["counts"])
    sections.append(section("Outcomes", body, "outcomes"))
    rows = watch_outcome_rows(rep)
    sections.append(section("Dumps", table(rows, [("file", "file"), ("outcome", "outcome"), ("detail", "detail")]), "dumps"))
    pages = sorted((folder / "dumps").glob(f"*/{INDEX}")) if (folder / "dumps").is_dir() else []
    if pages:
        sections.append(section("Report per dump", "<ul>" + "".join(
            f"<li>{link(p, folder, p.parent.name)}</li>" for p in pages) + "</ul>", "parts"))
    return "Flamenco dump watcher", f"{counts['processed']} processed, {counts['failed']} failed, {counts['skipped']} skipped", sections


# ----------------------------------------------------------------------------------------------- writer


def kind_of(folder: Path) -> tuple[str, Optional[dict]]:
    """What produced ``folder``: ``("latency" | "flows" | "label_models" | "federation" | "collaboration" |
    "watch" | "files", report)``."""
    watch = _load(folder / "watch_report.json")
    if watch is not None:
        return "watch", watch
    rep = _load(folder / "report.json")
    if rep is None:
        return "files", None
    if rep.get("pipeline") == "flow_records":
        return "flows", rep
    if rep.get("pipeline") == "label_model_comparison":
        return "label_models", rep
    from flamenco_core.federation.combine import REPORT_FORMAT

    if rep.get("report") == REPORT_FORMAT:
        return "federation", rep
    if "pairs" in rep and "average" in rep:
        return "latency", rep
    if "comparison" in rep and "packs" in rep:
        return "collaboration", rep
    return "files", rep


_RENDER = {"latency": _latency, "flows": _flows, "label_models": label_model_sections,
           "federation": federation_sections,
           "collaboration": _collaboration, "watch": _watch}


def render_index(folder: str | Path, *, title: Optional[str] = None, commands: Sequence[tuple[str, str]] = ()) -> str:
    """The HTML of ``folder``'s page (see the module docstring). ``commands``: ``(what, command line)``
    shown in a "How to look further" section (the MLflow UI, the CLI)."""
    folder = Path(folder).resolve()
    kind, rep = kind_of(folder)
    if kind in _RENDER:
        head, sub, sections = _RENDER[kind](folder, rep)
    else:
        head, sub, sections = f"Flamenco output: {folder.name}", "files of the run", []
    if commands:
        sections.append(section("How to look further", definitions((w, Raw(f"<code>{esc(c)}</code>")) for w, c in commands),
                                "commands"))
    sections.append(section("Files", _files(folder), "files"))
    return page(title or head, sub, sections)


def write_index(folder: str | Path, *, title: Optional[str] = None, commands: Sequence[tuple[str, str]] = ()) -> Path:
    """Write ``folder/index.html`` (atomically) from the run's files; returns its path."""
    folder = Path(folder)
    return atomic_write_text(folder / INDEX, render_index(folder, title=title, commands=commands))


def _headline(kind: str, rep: dict) -> str:
    """A part's result in one line (latency, flows) or its small table (collaboration), for the demo page."""
    if kind == "latency":
        avg = rep.get("average") or {}
        unl, base = avg.get("f1_unlabeled") or {}, (avg.get("baselines_unlabeled") or {}).get("rolling_mad") or {}
        if unl:
            return (f"<p>FLAMENCO macro F1 on the rows outside the labeled pool: <b>{esc(fmt(unl.get('f1_macro')))}</b>"
                    f" (rolling median/MAD rule {esc(fmt(base.get('f1_macro')))})</p>")
        return f"<p>FLAMENCO macro F1 on the test split: <b>{esc(fmt(avg.get('f1_macro')))}</b></p>"
    if kind == "flows":
        records = [r for r in rep.get("combinations") or [] if _num(r.get("cls_f1")) is not None]
        if records:
            best = max(records, key=lambda r: r["cls_f1"])
            name = short_name(best.get("lfs") or [], lf_legend(rep.get("combinations") or []), best.get("label"))
            return (f"<p>best classifier F1 <b>{esc(fmt(best['cls_f1']))}</b>: {esc(name)} "
                    f"({esc(best.get('combination'))})</p>")
    if kind == "collaboration":
        return table(rep.get("comparison") or [], [("name", "pack"), ("lfs", "LFs"), ("coverage", "coverage"),
                                                   ("conflict", "conflict"), ("f1_majority_vote", "F1 majority vote"),
                                                   ("f1_label_model", "F1 label model")])
    return ""


def write_demo_index(folder: str | Path, parts: Mapping[str, str], *, commands: Sequence[tuple[str, str]] = ()) -> Path:
    """The demo's top page: one card per part (``{title: subfolder}``) with its headline and a link to the
    part's own ``index.html``, then the commands and the files. Each part's page is written first when
    missing."""
    folder = Path(folder).resolve()
    cards = []
    for what, sub in parts.items():
        part = folder / sub
        if not part.is_dir():
            cards.append(section(what, f"<p>{badge('missing', 'failed')} {esc(sub)}/ was not written</p>"))
            continue
        page_path = part / INDEX
        if not page_path.is_file():
            write_index(part)
        kind, rep = kind_of(part)
        _, sub_line, _ = _RENDER[kind](part, rep) if kind in _RENDER else ("", "", [])
        body = f"<p>{esc(sub_line)}</p>{_headline(kind, rep or {})}<p>{link(page_path, folder, f'open {sub}/index.html')}</p>"
        if (part / "comparison.png").is_file():
            body += figure(part / "comparison.png", folder, f"{what}: comparison.png")
        cards.append(section(what, body, sub))
    rest = []
    if commands:
        rest.append(section("How to look further", definitions((w, Raw(f"<code>{esc(c)}</code>")) for w, c in commands),
                            "commands"))
    rest.append(section("Files", _files(folder), "files"))
    html_text = page("Flamenco demo", f"{len(parts)} parts: " + "; ".join(parts),
                     [f'<div class="cards">{"".join(cards)}</div>', *rest])
    return atomic_write_text(folder / INDEX, html_text)
