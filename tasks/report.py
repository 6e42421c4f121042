"""The report page task: ``index.html`` in a run's output folder, and the run's comparison on its MLflow
parent run (table, chart, legend, description). The page is rendered by :mod:`flamenco_core.report`
(pure); MLflow is reached through :mod:`tasks.tracking` only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

from prefect import task

from flamenco_core.report.html import fmt
from tasks import tracking

log_ = logging.getLogger(__name__)


def _flows_comparison(out: Path, rep: dict):
    """Chart (``comparison.png``), table, legend and description of an LF-combination run."""
    from flamenco_core.report.charts import combination_chart, combination_frame
    from flamenco_core.report.legend import legend_text, lf_legend

    records = rep.get("combinations") or []
    legend = lf_legend(records)
    frame = combination_frame(records, legend)
    dataset = rep.get("dataset") or out.name
    test_rows = ((rep.get("preparation") or {}).get("rows") or {}).get("test")
    chart = None
    if len(frame) and frame[["lf_f1", "cls_f1", "tree_f1"]].notna().any().any():
        chart = combination_chart(records, out / "comparison.png", legend=legend,
                                  title=f"{dataset}: F1 per LF combination, test split"
                                        + (f" ({test_rows} rows)" if test_rows else ""))
    s = rep.get("summary") or {}
    best = frame.sort_values("cls_f1", ascending=False, na_position="last").head(1)
    text = (f"LF combinations on **{dataset}**: {s.get('ok', 0)} ok, {s.get('skipped', 0)} skipped, "
            f"{s.get('failed', 0)} failed.")
    if len(best) and best["cls_f1"].notna().all():
        b = best.iloc[0]
        text += f" Best classifier F1 {fmt(b['cls_f1'])}: {b['short_name']} ({b['combination']})."
    text += f"\n\nLegend: {legend_text(legend, sep='; ')}"
    return frame, chart, legend, text


def _latency_comparison(out: Path, rep: dict):
    import pandas as pd

    frame = pd.read_csv(out / "comparison.csv") if (out / "comparison.csv").is_file() else None
    chart = out / "comparison.png"
    avg = rep.get("average") or {}
    pairs = (rep.get("outcomes") or {}).get("pairs") or {}
    text = (f"Latency run **{out.name}**: SD pairs " + ", ".join(f"{k} {v}" for k, v in pairs.items())
            + f". F1 macro {fmt(avg.get('f1_macro'))} on the test split")
    if avg.get("f1_unlabeled"):
        text += f", {fmt(avg['f1_unlabeled'].get('f1_macro'))} on the rows outside the labeled pool"
    text += "."
    if (avg.get("vs_rolling_mad") or {}).get("verdict"):
        text += f" {avg['vs_rolling_mad']['verdict']}"
    return frame, chart if chart.is_file() else None, None, text


def _collaboration_comparison(out: Path, rep: dict):
    import pandas as pd

    frame = pd.DataFrame(rep.get("comparison") or [])
    text = (f"Collaboration of {len(rep.get('packs') or [])} pack(s) on {(rep.get('data') or {}).get('rows')} local "
            "rows; aggregates only.")
    return frame, None, None, text


_COMPARISONS = {"flows": _flows_comparison, "latency": _latency_comparison, "collaboration": _collaboration_comparison}


def write_report(out_dir: str, parent_run_id: Optional[str] = None, *, title: Optional[str] = None) -> Optional[str]:
    """Write ``out_dir/index.html`` (and, for LF combinations, ``comparison.png``); with
    ``parent_run_id``, log the comparison table, chart, legend and description on that run. Returns the
    page's path. The page is a view of files already written: a failure here is logged and returns
    ``None``, it never fails the run whose results it shows."""
    from flamenco_core.report import kind_of, write_index

    out = Path(out_dir)
    try:
        kind, rep = kind_of(out)
        frame = chart = legend = text = None
        if kind in _COMPARISONS and rep is not None:
            frame, chart, legend, text = _COMPARISONS[kind](out, rep)
        page = write_index(out, title=title, commands=[("MLflow UI", tracking.ui_command())])
    except Exception:  # noqa: BLE001 - a view must not fail the run; the warning carries the traceback
        log_.warning("report page of %s not written", out, exc_info=True)
        return None
    if parent_run_id and frame is not None:
        try:
            tracking.log_comparison(parent_run_id, frame, chart, legend=legend, description=text)
        except Exception:  # noqa: BLE001 - the run's own results are logged already
            log_.warning("comparison not logged to MLflow run %s", parent_run_id, exc_info=True)
    return str(page)


@task(name="write-report-page")
def write_report_task(out_dir: str, parent_run_id: Optional[str] = None, title: Optional[str] = None) -> Optional[str]:
    """:func:`write_report` as the last task of a flow."""
    return write_report(out_dir, parent_run_id, title=title)
