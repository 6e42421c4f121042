"""Interpretability trees: an LF combination as a decision tree, rendered, traversed per data point.

Reports use the ``"faithful"`` mode (``REPORT_MODE``); the paper's mode, the public calls and an example:
docs/explain.md."""

from .build import as_pack, build_tree, compare_modes, lf_decision, stump_tree
from .render import condition_text, dot_binary, format_number, render_dot, render_image, render_png, render_text
from .tree import (
    COMBINATION_DECISION,
    INCONCLUSIVE,
    MODES,
    REPORT_MODE,
    ConditionNode,
    Leaf,
    PathStep,
    Tree,
    TreePath,
    combination_decision,
    tree_f1,
)
from flamenco_core.evaluation.metrics import prediction_difference

__all__ = [
    "COMBINATION_DECISION",
    "INCONCLUSIVE",
    "MODES",
    "REPORT_MODE",
    "ConditionNode",
    "Leaf",
    "PathStep",
    "Tree",
    "TreePath",
    "as_pack",
    "build_tree",
    "combination_decision",
    "compare_modes",
    "condition_text",
    "dot_binary",
    "format_number",
    "lf_decision",
    "prediction_difference",
    "render_dot",
    "render_image",
    "render_png",
    "render_text",
    "stump_tree",
    "tree_f1",
]
