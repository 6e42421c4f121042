"""The dump watcher's report: one home for its fields, its per-dump outcome rows (which the Markdown
artifact, the terminal table and the HTML page all show) and its file, so the three views cannot drift."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from flamenco_core.outputs import write_json

REPORT_FILE = "watch_report.json"
#: Columns of the per-dump outcome table, in order.
OUTCOME_COLUMNS = ("file", "outcome", "detail")


def relative_to(path: Any, folder: Path) -> str:
    """``path`` as seen from ``folder`` (POSIX separators): reports name what they point at relative to
    where they lie, so a copied or shared output folder does not reveal or depend on the machine's layout."""
    return Path(os.path.relpath(Path(path).resolve(), Path(folder).resolve())).as_posix()


def assemble(out_dir: Path, *, directory: Any, manifest: Any, pipeline: str, experiment: str,
             processed: Sequence[str], failed: Sequence[Mapping[str, str]], skipped: Mapping[str, str],
             resumed: Sequence[str], counts: Mapping[str, int], seconds: float) -> dict:
    """The report of one watcher pass: what was processed, failed (with the error) and skipped (with the
    reason), the manifest's counts and the paths relative to ``out_dir``."""
    return {
        "directory": relative_to(directory, out_dir),
        "manifest": relative_to(manifest, out_dir),
        "pipeline": pipeline,
        "experiment": experiment,
        "processed": list(processed),
        "skipped": list(skipped),
        "failed": [dict(f) for f in failed],
        "skipped_reasons": dict(skipped),
        "resumed": list(resumed),
        "counts": dict(counts),
        "seconds": round(seconds, 3),
    }


def busy(out_dir: Path, *, directory: Any, pipeline: str, reason: str) -> dict:
    """The report of a pass that did nothing because another watcher holds the manifest."""
    return {"directory": relative_to(directory, out_dir), "pipeline": pipeline, "processed": [], "skipped": [],
            "failed": [], "skipped_reasons": {}, "busy": reason}


def outcome_rows(report: Mapping[str, Any], detail_chars: Optional[int] = None) -> list[dict]:
    """One row per dump (processed, failed, skipped) with its detail: the resumption, the error or the
    skip reason; ``detail_chars`` cuts long errors for narrow views."""
    resumed = set(report.get("resumed") or ())
    reasons = report.get("skipped_reasons") or {}
    rows = [{"file": f, "outcome": "processed", "detail": "resumed after a crash" if f in resumed else ""}
            for f in report.get("processed") or ()]
    rows += [{"file": f.get("file"), "outcome": "failed", "detail": f.get("error") or ""}
             for f in report.get("failed") or ()]
    rows += [{"file": f, "outcome": "skipped", "detail": reasons.get(f, "")} for f in report.get("skipped") or ()]
    if detail_chars is not None:
        for r in rows:
            r["detail"] = r["detail"][:detail_chars]
    return rows


def headline(report: Mapping[str, Any]) -> str:
    """``N processed, N failed, N skipped``."""
    return ", ".join(f"{len(report.get(k) or ())} {k}" for k in ("processed", "failed", "skipped"))


def markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown (the Prefect artifact)."""
    import pandas as pd

    from flamenco_core.evaluation.tables import to_markdown

    rows = pd.DataFrame(outcome_rows(report, detail_chars=300), columns=list(OUTCOME_COLUMNS))
    head = f"# Dump watcher: {headline(report)}\n\nfolder `{report.get('directory')}`, pipeline `{report.get('pipeline')}`\n\n"
    return head + to_markdown(rows, index=False, headings=None, na="")


def write(out_dir: Path, report: Mapping[str, Any]) -> Path:
    """Write ``out_dir/watch_report.json`` atomically (strict JSON); returns its path."""
    return write_json(Path(out_dir) / REPORT_FILE, dict(report))
