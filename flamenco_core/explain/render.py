"""Rendering trees: text (terminal, logs), Graphviz DOT, and PNG/SVG/PDF through Graphviz's ``dot``.

DOT is written here as text (no Python binding needed); images come from the ``dot`` binary of the
Debian package ``graphviz``. Condition nodes show the feature (display name when the tree or the call
gives one), the operator, the resolved threshold and, when the LF wrote a statistic, the expression
(``bytes <= 1250 (0.5*p75)``). Decision nodes shared by several parents are drawn once; leaves are drawn
once per incoming edge, as scikit-learn draws trees, so edges do not converge on one "inconclusive" box.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from .tree import INCONCLUSIVE, ConditionNode, Leaf, Tree

#: Leaf fill colours by class position (inconclusive is grey); cycled for many classes.
_PALETTE = ("#b7e1a1", "#f4a6a6", "#a6c8f4", "#f4d8a6", "#d5b3f0", "#a6f0e6")
_INCONCLUSIVE_COLOUR = "#dddddd"
DOT_TIMEOUT_S = 120


def format_number(x: float) -> str:
    """A threshold for people: integers without ``.0``, others to 6 significant digits, NaN as ``nan``."""
    if isinstance(x, float) and math.isnan(x):
        return "nan"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}"


def _threshold_text(node: ConditionNode) -> str:
    if isinstance(node.threshold, list):
        return "[" + ", ".join(format_number(v) for v in node.threshold) + "]"
    return format_number(node.threshold)


def _expression_text(node: ConditionNode) -> Optional[str]:
    """The written value when it differs from the number shown (a statistic, not a literal)."""
    values = node.expression if isinstance(node.expression, list) else [node.expression]
    if not any(isinstance(v, str) for v in values):
        return None
    return ", ".join(str(v) for v in values) if isinstance(node.expression, list) else str(node.expression)


def condition_text(tree: Tree, node: ConditionNode, display_names: Optional[Mapping[str, str]] = None) -> str:
    """``"<feature> <op> <threshold> (<expression>)"`` with the feature's display name."""
    names = {**tree.display_names, **(display_names or {})}
    text = f"{names.get(node.feature, node.feature)} {node.op} {_threshold_text(node)}"
    expr = _expression_text(node)
    return f"{text} ({expr})" if expr else text


def render_text(tree: Tree, display_names: Optional[Mapping[str, str]] = None, show_lfs: bool = True) -> str:
    """The tree as indented text, true branch first. A shared decision node is printed in full the first
    time and referred to as ``-> see [id]`` after."""
    lines = [f"{tree.mode} tree over {tree.n_conditions} condition(s); classes: {', '.join(tree.classes)}"]
    printed: set[int] = set()
    # explicit stack instead of recursion: faithful trees over many conditions can be deep
    stack: list[tuple[int, str, str]] = [(tree.root, "", "")]
    while stack:
        i, lead, rest = stack.pop()
        node = tree.nodes[i]
        if isinstance(node, Leaf):
            lines.append(f"{lead}-> {tree.label_name(node.label)}")
            continue
        if i in printed:
            lines.append(f"{lead}-> see [{i}]")
            continue
        printed.add(i)
        lfs = f"   (LF: {', '.join(node.lfs)})" if show_lfs and node.lfs else ""
        lines.append(f"{lead}[{i}] {condition_text(tree, node, display_names)}{lfs}")
        stack.append((node.false, rest + "└─ false: ", rest + "   "))
        stack.append((node.true, rest + "├─ true:  ", rest + "│  "))
    return "\n".join(lines) + "\n"


def _dot_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _leaf_colour(tree: Tree, label: int) -> str:
    return _INCONCLUSIVE_COLOUR if label < 0 else _PALETTE[label % len(_PALETTE)]


def render_dot(
    tree: Tree,
    display_names: Optional[Mapping[str, str]] = None,
    title: Optional[str] = None,
    show_lfs: bool = True,
) -> str:
    """The tree as Graphviz DOT text: boxes for conditions (with the LFs using them), coloured ellipses
    for leaves, edges labelled true/false. ``display_names`` (feature -> shown name) adds to the tree's."""
    out = [
        "digraph flamenco_tree {",
        '  graph [rankdir=TB, fontname="Helvetica"' + (f', label="{_dot_escape(title)}", labelloc=t' if title else "") + "];",
        '  node [fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=10];',
    ]
    leaf_count = 0
    for i in tree._order:
        node = tree.nodes[i]
        if not isinstance(node, ConditionNode):
            continue
        label = condition_text(tree, node, display_names)
        if show_lfs and node.lfs:
            label += "\n" + ", ".join(node.lfs)
        out.append(f'  n{i} [shape=box, style="rounded", label="{_dot_escape(label)}"];')
        for child, word in ((node.true, "true"), (node.false, "false")):
            target = tree.nodes[child]
            if isinstance(target, Leaf):
                name = f"leaf{leaf_count}"
                leaf_count += 1
                text = tree.label_name(target.label)
                style = "filled,dashed" if text == INCONCLUSIVE and target.label < 0 else "filled"
                out.append(f'  {name} [shape=ellipse, style="{style}", fillcolor="{_leaf_colour(tree, target.label)}", '
                           f'label="{_dot_escape(text)}"];')
            else:
                name = f"n{child}"
            out.append(f'  n{i} -> {name} [label="{word}"];')
    root = tree.nodes[tree.root]
    if isinstance(root, Leaf):  # a tree of no conditions: one decision for every point
        out.append(f'  leaf0 [shape=ellipse, style="filled", fillcolor="{_leaf_colour(tree, root.label)}", '
                   f'label="{_dot_escape(tree.label_name(root.label))}"];')
    out.append("}")
    return "\n".join(out) + "\n"


def dot_binary() -> str:
    """Path of Graphviz's ``dot``; ``RuntimeError`` naming the Debian package when it is missing."""
    path = shutil.which("dot")
    if path is None:
        raise RuntimeError("Graphviz's `dot` program was not found on PATH; install the Debian package graphviz "
                           "(sudo apt-get install graphviz) to render trees as images")
    return path


def render_image(tree: Tree, path: Union[str, Path], fmt: Optional[str] = None, **dot_kwargs: Any) -> Path:
    """Render the tree with ``dot`` to ``path``; ``fmt`` (png, svg, pdf, ...) defaults to the suffix."""
    path = Path(path)
    fmt = (fmt or path.suffix.lstrip(".") or "png").lower()
    if not fmt.isalnum():
        raise ValueError(f"bad output format {fmt!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        proc = subprocess.run([dot_binary(), f"-T{fmt}", "-o", str(path)], input=render_dot(tree, **dot_kwargs).encode(),
                              capture_output=True, timeout=DOT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"dot did not finish within {DOT_TIMEOUT_S} s (tree of {tree.n_conditions} conditions)") from None
    if proc.returncode != 0:
        raise RuntimeError(f"dot failed (exit {proc.returncode}): {proc.stderr.decode(errors='replace').strip()}")
    return path


def render_png(tree: Tree, path: Union[str, Path], **dot_kwargs: Any) -> Path:
    """Render the tree as a PNG with Graphviz's ``dot`` (Debian package graphviz); returns ``path``."""
    return render_image(tree, path, "png", **dot_kwargs)
