"""The dump watcher's tasks: the pass's report (JSON, Prefect Markdown artifact, report page)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.artifacts import create_markdown_artifact

from flamenco_core.report import watch as watch_report
from tasks.common import IO_RETRIES
from tasks.report import write_report


@task(name="write-watch-report", **IO_RETRIES)
def write_watch_report_task(out_dir: str, report: dict) -> dict:
    """Write ``out_dir/watch_report.json``, the Markdown artifact and ``index.html`` (linking each dump's own
    page, unless the pass did nothing because another watcher was busy); returns the report."""
    out = Path(out_dir)
    watch_report.write(out, report)
    if not report.get("busy"):
        create_markdown_artifact(watch_report.markdown(report), key="watch-dumps-report")
        write_report(str(out))
    return report
