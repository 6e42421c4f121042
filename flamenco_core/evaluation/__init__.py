"""Evaluation: scores (per-class and macro F1, precision, recall), prediction differences, the paper's
two-level averaging, result tables (CSV + Markdown) and figures.

- :mod:`.metrics`: :func:`classification_scores`, :func:`confusion_matrix`, :func:`prediction_difference`,
  :func:`prediction_difference_matrix`, :func:`average_scores`.
- :mod:`.tables`: the latency :func:`comparison_table` and the flow path's LF-combination tables
  (:func:`single_lf_table`, :func:`pair_table`, :func:`group_combination_table`,
  :func:`prediction_difference_table`, :func:`paper_tables`), writers :func:`to_csv`, :func:`to_markdown`.
- :mod:`.plots`: :func:`f1_bar_chart` (Figures 7 and 9), :func:`confusion_matrix_plot` (matplotlib is
  imported only when a plot is drawn).
"""

from flamenco_core.evaluation.metrics import (
    INCONCLUSIVE_NAMES,
    average_scores,
    classification_scores,
    confusion_matrix,
    dataset_scores,
    encode_labels,
    prediction_difference,
    prediction_difference_matrix,
)
from flamenco_core.evaluation.plots import confusion_matrix_plot, f1_bar_chart
from flamenco_core.evaluation.tables import (
    COMPARISON_METRICS,
    FLAMENCO,
    METHOD_LABELS,
    METHOD_ORDER,
    comparison_table,
    difference_columns,
    difference_matrix_table,
    group_combination_table,
    pair_table,
    paper_tables,
    prediction_difference_table,
    records_frame,
    scores_long,
    single_lf_table,
    to_csv,
    to_markdown,
    write_tables,
)

__all__ = [
    "COMPARISON_METRICS", "FLAMENCO", "INCONCLUSIVE_NAMES", "METHOD_LABELS", "METHOD_ORDER",
    "average_scores", "classification_scores", "comparison_table", "confusion_matrix",
    "confusion_matrix_plot", "dataset_scores", "difference_columns", "difference_matrix_table",
    "encode_labels", "f1_bar_chart", "group_combination_table", "pair_table", "paper_tables",
    "prediction_difference", "prediction_difference_matrix", "prediction_difference_table",
    "records_frame", "scores_long", "single_lf_table", "to_csv", "to_markdown", "write_tables",
]
