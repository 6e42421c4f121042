"""Evaluation figures: grouped F1 bars in the style of the paper's Figures 7 and 9, confusion matrices.

matplotlib is imported inside the functions (importing this module stays cheap) and used through its
object API on an Agg canvas (``Figure`` + ``FigureCanvasAgg``): no pyplot, no global backend or figure
state, so plotting is safe in worker threads and never opens a window.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flamenco_core.evaluation.tables import COMPARISON_METRICS, METHOD_LABELS

METRIC_LABELS = {"f1_good": "F1 good", "f1_noise": "F1 noise", "f1_macro": "F1 macro",
                 "f1_benign": "F1 benign", "f1_attack": "F1 attack"}


def _figure(size: tuple[float, float], dpi: int):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Union[str, Path]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def f1_bar_chart(
    table: pd.DataFrame,
    path: Union[str, Path],
    metrics: Sequence[str] = COMPARISON_METRICS,
    *,
    title: Optional[str] = None,
    method_labels: Optional[Mapping[Any, str]] = METHOD_LABELS,
    metric_labels: Optional[Mapping[str, str]] = METRIC_LABELS,
    dpi: int = 120,
) -> Path:
    """Grouped bar chart of ``table`` (rows: methods, e.g. :func:`~flamenco_core.evaluation.tables.comparison_table`;
    columns: ``metrics``): one group per method, one bar per metric (F1 of each class and macro F1),
    values written above the bars, y from 0 to 1. Saved as PNG at ``path``; returns the path.
    NaN scores are drawn as missing bars."""
    missing = [m for m in metrics if m not in table.columns]
    if missing:
        raise ValueError(f"table lacks the metric columns {missing}")
    if table.empty:
        raise ValueError("nothing to plot: the table has no rows")
    method_labels = method_labels or {}
    metric_labels = metric_labels or {}
    values = table[list(metrics)].to_numpy(dtype=np.float64)
    n_methods, n_metrics = values.shape
    fig = _figure((max(6.0, 1.3 * n_methods + 2), 4.2), dpi)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / n_metrics
    x = np.arange(n_methods)
    for j, metric in enumerate(metrics):
        pos = x - 0.4 + width * (j + 0.5)
        heights = np.nan_to_num(values[:, j], nan=0.0)
        bars = ax.bar(pos, heights, width, label=metric_labels.get(metric, metric))
        for bar, v in zip(bars, values[:, j]):
            if np.isfinite(v):
                ax.annotate(f"{v:.2f}", (bar.get_x() + bar.get_width() / 2, v), xytext=(0, 2),
                            textcoords="offset points", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x)
    ax.set_xticklabels([method_labels.get(m, str(m)) for m in table.index], rotation=15, ha="right")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("F1 score")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=n_metrics, frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)


def confusion_matrix_plot(
    matrix: pd.DataFrame,
    path: Union[str, Path],
    *,
    normalize: bool = False,
    title: Optional[str] = None,
    dpi: int = 120,
) -> Path:
    """Confusion matrix heat map (``matrix``: index true class, columns predicted class, as
    :func:`~flamenco_core.evaluation.metrics.confusion_matrix` returns, an ``inconclusive`` column
    included when present). ``normalize`` divides each row by its total (row = true class). Saved as
    PNG at ``path``; returns the path."""
    counts = matrix.to_numpy(dtype=np.float64)
    if counts.ndim != 2 or counts.size == 0:
        raise ValueError("confusion matrix is empty")
    if normalize:
        totals = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
    else:
        shown = counts
    n_rows, n_cols = shown.shape
    fig = _figure((1.3 * n_cols + 2.2, 1.1 * n_rows + 1.6), dpi)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else max(1.0, shown.max()))
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(np.arange(n_cols))
    ax.set_xticklabels([str(c) for c in matrix.columns])
    ax.set_yticks(np.arange(n_rows))
    ax.set_yticklabels([str(i) for i in matrix.index])
    ax.set_xlabel(str(matrix.columns.name or "predicted"))
    ax.set_ylabel(str(matrix.index.name or "true"))
    threshold = (1 if normalize else shown.max()) / 2
    for i in range(n_rows):
        for j in range(n_cols):
            text = f"{shown[i, j]:.2f}" if normalize else f"{int(counts[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color="white" if shown[i, j] > threshold else "black")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return _save(fig, path)
