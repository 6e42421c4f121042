"""The LF-combination chart: LF, classifier and Tree F1 per combination, named by the A/B/C legend."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence, Union

from flamenco_core.report.legend import lf_legend, short_name

#: The three F1 scores of a combination, in bar order, with their legend labels.
COMBINATION_SCORES = {"lf_f1": "LF F1 (majority vote)", "cls_f1": "classifier F1", "tree_f1": "Tree F1"}


def combination_frame(records: Sequence[Mapping[str, Any]], legend: Mapping[str, str] | None = None):
    """One row per combination record, indexed by its short name: outcome, the headline scores and the
    full combination (what the flows' parent run logs as its comparison table)."""
    import pandas as pd

    legend = legend if legend is not None else lf_legend(records)
    rows = []
    for r in records:
        rows.append({"short_name": short_name(r.get("lfs") or r.get("refs") or [], legend, r.get("label")),
                     "outcome": r.get("outcome"),
                     **{k: r.get(k) for k in ("lf_f1", "cls_f1", "tree_f1", "coverage", "tree_vs_lf_difference")},
                     "combination": r.get("combination")})
    frame = pd.DataFrame(rows)
    for k in ("lf_f1", "cls_f1", "tree_f1", "coverage", "tree_vs_lf_difference"):
        frame[k] = pd.to_numeric(frame.get(k), errors="coerce")
    return frame


def combination_chart(records: Sequence[Mapping[str, Any]], path: Union[str, Path], *, title: str,
                      legend: Mapping[str, str] | None = None) -> Path:
    """Grouped bars of LF, classifier and Tree F1 per combination (x labels: the legend's short names),
    the legend's letters spelled out under the title. Saved as PNG at ``path``."""
    from flamenco_core.evaluation.plots import f1_bar_chart
    from flamenco_core.report.legend import legend_text

    legend = legend if legend is not None else lf_legend(records)
    frame = combination_frame(records, legend).set_index("short_name")
    import textwrap

    # the legend under the title, wrapped to the figure's width (f1_bar_chart: 1.3 in per group + 2 in)
    width_chars = int(max(6.0, 1.3 * len(frame) + 2) * 11)
    full = "\n".join([title, *textwrap.wrap(legend_text(legend, sep="; "), width_chars)])
    return f1_bar_chart(frame, path, tuple(COMBINATION_SCORES), title=full, method_labels={},
                        metric_labels=COMBINATION_SCORES)
