"""Interpretability trees: an LF combination as a decision tree, rendered, traversed per data point.

Public contract::

    from flamenco_core.explain import build_tree, render_dot, render_png, render_text
    tree = build_tree(pack, stats=profile, importance={"src_port": 0.6, "average_packet_size": 0.4})
    pred = tree.predict(df)                       # class indices, -1 = inconclusive
    steps, label, index = tree.path({"src_port": 8888, "average_packet_size": 80})
    tree.to_json("tree.json"); Tree.from_json("tree.json")   # what `flamenco explain --tree` loads

Two modes (details in ``docs/explain.md``): ``"paper"``, the paper's importance-ordered
first-match tree, which can disagree with the LFs where they conflict; and ``"faithful"``, whose
predictions equal the combination's decision (majority vote of the voting LFs, ties and no vote
inconclusive, as LF F1 defines it) on every row. **Reports use the faithful mode** (``REPORT_MODE``,
the default of :func:`build_tree`); :func:`compare_modes` gives both trees and their prediction
difference to the LFs so a report can show what the paper's construction would have changed.

Matplotlib and Graphviz are not imported here: DOT is written as text and images come from the ``dot``
binary (Debian package graphviz).
"""

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
