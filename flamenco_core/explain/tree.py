"""The interpretability tree: condition nodes and leaves, prediction, per-point paths, JSON; the LF
combination's decision and Tree F1. How trees are built: :mod:`flamenco_core.explain.build` and
``docs/explain.md``."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Optional, Union

import numpy as np
import pandas as pd

from flamenco_core.labeling.applier import condition_mask
from flamenco_core.labeling.constants import ABSTAIN
from flamenco_core.labeling.expr import SpecError
from flamenco_core.labeling.label_model import majority_vote
from flamenco_core.labeling.spec import OPS
from flamenco_core.labeling.stats import column_values

MODES = ("paper", "faithful")
#: The mode whose trees the experiment reports (Tree F1, tree-vs-LF difference) use.
REPORT_MODE = "faithful"
INCONCLUSIVE = "inconclusive"
DEFAULT_MAX_NODES = 100_000
TREE_FORMAT = "flamenco-tree"
TREE_FORMAT_VERSION = 1
#: Loading refuses bigger files: a tree is read from disk and may come from elsewhere.
MAX_JSON_NODES = 2_000_000
COMBINATION_DECISION = "majority vote of the LFs that vote; a tie between classes, or no vote, is inconclusive"

Threshold = Union[float, list]


# ---------------------------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class ConditionNode:
    """A test ``feature op threshold``; ``true``/``false`` are the ids of the next nodes.

    ``threshold`` is the resolved number (a list for ``in``/``between``; NaN where a statistic was NaN),
    ``expression`` the value as the LF wrote it (``"0.5*p75"``, ``6600``), ``lfs`` the LFs that use it.
    """

    id: int
    feature: str
    op: str
    threshold: Threshold
    expression: Any
    lfs: tuple[str, ...]
    true: int
    false: int

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The threshold as the tuple the applier's condition evaluator takes."""
        return tuple(self.threshold) if isinstance(self.threshold, list) else (self.threshold,)

    def evaluate(self, values: np.ndarray) -> np.ndarray:
        """Boolean mask of this condition over float64 ``values`` (NaN is false, as in the applier)."""
        return condition_mask(values, self.op, self.thresholds)


@dataclass(frozen=True)
class Leaf:
    """A decision: ``label`` is a class index, or ``-1`` for inconclusive."""

    id: int
    label: int


Node = Union[ConditionNode, Leaf]


class PathStep(NamedTuple):
    """One test on the way from the root to a leaf: ``value`` is ``None`` when the point lacks it."""

    node: int
    feature: str
    op: str
    threshold: Threshold
    expression: Any
    value: Optional[float]
    outcome: bool
    lfs: tuple[str, ...]


class TreePath(NamedTuple):
    """``steps, label, index = tree.path(point)``: the tests taken, the label name and its index."""

    steps: list[PathStep]
    label: str
    index: int


# ---------------------------------------------------------------------------------------------- the tree


@dataclass
class Tree:
    """A decision diagram mapping data points to class indices (-1: inconclusive). See the module doc.

    ``nodes[i].id == i``; ``root`` is the first node tested. ``importance`` is the ranking used to order
    the nodes, ``display_names`` optional names for renderers, ``meta`` what the tree was built from (LF
    names, statistics and resolved thresholds), recorded with a run.
    """

    nodes: list[Node]
    root: int
    classes: list[str]
    mode: str
    importance: dict[str, float] = field(default_factory=dict)
    display_names: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._order = _topological_order(self.nodes, self.root)

    # ------------------------------------------------------------------ shape

    @property
    def features(self) -> list[str]:
        """Features tested, in the order they are first met from the root."""
        return list(dict.fromkeys(self.nodes[i].feature for i in self._order if isinstance(self.nodes[i], ConditionNode)))

    @property
    def n_conditions(self) -> int:
        """Condition nodes reachable from the root."""
        return sum(isinstance(self.nodes[i], ConditionNode) for i in self._order)

    @property
    def n_leaves(self) -> int:
        return sum(isinstance(self.nodes[i], Leaf) for i in self._order)

    @property
    def depth(self) -> int:
        """Most condition tests on one root-to-leaf path."""
        d: dict[int, int] = {}
        for i in reversed(self._order):
            n = self.nodes[i]
            d[i] = 0 if isinstance(n, Leaf) else 1 + max(d[n.true], d[n.false])
        return d[self.root]

    def label_name(self, index: int) -> str:
        """Class name of a class index; ``"inconclusive"`` for -1."""
        return INCONCLUSIVE if index == ABSTAIN else self.classes[index]

    def display(self, feature: str) -> str:
        return self.display_names.get(feature, feature)

    # ------------------------------------------------------------------ traversal

    def predict(self, df: Union[pd.DataFrame, Mapping[str, Any]]) -> np.ndarray:
        """Class index per row (int64), -1 where the tree ends in "inconclusive" (SpecError when a tested
        feature is not a column).

        Vectorized: each node receives the row indices that reach it, evaluates its condition on them
        once and hands each child its share; nodes run in topological order, so a shared node gathers
        the rows of all its parents before it runs. No per-row Python loop.
        """
        n = _n_rows(df)
        out = np.full(n, ABSTAIN, dtype=np.int64)
        columns = {f: _column(df, f) for f in self.features}
        arriving: dict[int, list[np.ndarray]] = {self.root: [np.arange(n)]}
        for i in self._order:
            parts = arriving.pop(i, None)
            if not parts:
                continue
            idx = parts[0] if len(parts) == 1 else np.concatenate(parts)
            node = self.nodes[i]
            if isinstance(node, Leaf):
                out[idx] = node.label
                continue
            mask = node.evaluate(columns[node.feature][idx])
            arriving.setdefault(node.true, []).append(idx[mask])
            arriving.setdefault(node.false, []).append(idx[~mask])
        return out

    def path(self, point: Mapping[str, Any]) -> TreePath:
        """The tests one data point passes through and the label it gets.

        A feature the point lacks (or holds as ``None``/NaN) is NaN: its conditions are false, the step
        records ``value=None``. The label equals :meth:`predict` on a one-row frame of the point.
        """
        steps: list[PathStep] = []
        node = self.nodes[self.root]
        while isinstance(node, ConditionNode):
            raw = point.get(node.feature)
            value = _point_value(raw, node.feature)
            outcome = bool(node.evaluate(np.array([value], dtype=np.float64))[0])
            steps.append(PathStep(node.id, node.feature, node.op, node.threshold, node.expression,
                                  None if math.isnan(value) else value, outcome, node.lfs))
            node = self.nodes[node.true if outcome else node.false]
        return TreePath(steps, self.label_name(node.label), node.label)

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        """The tree as plain JSON-able data (NaN thresholds as ``null``)."""
        nodes = []
        for n in self.nodes:
            if isinstance(n, Leaf):
                nodes.append({"id": n.id, "type": "leaf", "class": n.label, "label": self.label_name(n.label)})
            else:
                nodes.append({
                    "id": n.id, "type": "condition", "feature": n.feature, "op": n.op,
                    "threshold": _json_number(n.threshold), "expression": n.expression, "lfs": list(n.lfs),
                    "true": n.true, "false": n.false,
                })
        return {
            "format": TREE_FORMAT, "version": TREE_FORMAT_VERSION, "mode": self.mode, "classes": list(self.classes),
            "root": self.root, "nodes": nodes, "importance": dict(self.importance),
            "display_names": dict(self.display_names), "meta": _json_number(self.meta),
        }

    def to_json(self, path: Union[str, Path, None] = None, indent: Optional[int] = 2) -> str:
        """JSON text of :meth:`to_dict`; also written to ``path`` when given. Never pickle: a tree file
        is data another group may load (``flamenco explain --tree``)."""
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: Any) -> "Tree":
        """Validate and build a tree from :meth:`to_dict` data; ``ValueError`` names what is wrong."""
        return _tree_from_dict(data)

    @classmethod
    def from_json(cls, path_or_text: Union[str, Path]) -> "Tree":
        """Load a tree from a JSON file or JSON text (``json.loads`` only)."""
        if isinstance(path_or_text, str) and path_or_text.lstrip().startswith("{"):
            text = path_or_text
        else:
            try:
                text = Path(path_or_text).read_text()
            except OSError as exc:
                raise ValueError(f"cannot read tree file {path_or_text}: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not a tree: invalid JSON: {exc}") from None
        return cls.from_dict(data)


# ---------------------------------------------------------------------------------------------- decisions


def combination_decision(L: np.ndarray, cardinality: int) -> np.ndarray:
    """The LF combination's decision per row: majority vote of the LFs that vote, -1 (inconclusive) on
    ties and where every LF abstains. The definition LF F1 uses (:mod:`flamenco_core.labeling.analysis`)."""
    L = np.asarray(L)
    if L.ndim != 2:
        raise ValueError(f"a label matrix must be 2-D; got shape {L.shape}")
    if L.shape[1] == 0:
        return np.full(L.shape[0], ABSTAIN, dtype=np.int64)
    return majority_vote(L, cardinality)


def tree_f1(
    tree: Tree,
    df: pd.DataFrame,
    y: Any,
    *,
    pos_label: Union[int, str] = 1,
    abstain: str = "negative",
    negative_label: Union[int, str, None] = None,
    average: Optional[str] = None,
) -> float:
    """Tree F1: the tree's predictions on ``df`` scored against gold ``y`` (class indices or names)
    exactly as LF F1 is (:func:`flamenco_core.labeling.analysis.lf_f1`: same ``abstain`` modes for
    inconclusive rows, positive class, binary/macro average)."""
    from flamenco_core.labeling.analysis import lf_f1

    pred = tree.predict(df)
    Y = _gold_indices(y, tree.classes)
    table = lf_f1(pred[:, None], Y, ["tree"], classes=tree.classes, pos_label=pos_label, abstain=abstain,
                  negative_label=negative_label, average=average)
    return float(table["F1"].iloc[0])


# ---------------------------------------------------------------------------------------------- helpers


def _topological_order(nodes: list[Node], root: int) -> list[int]:
    """Nodes reachable from ``root``, every node before its children (iterative DFS; ValueError on a cycle)."""
    state: dict[int, int] = {}
    post: list[int] = []
    stack: list[tuple[int, int]] = [(root, 0)]
    while stack:
        i, phase = stack.pop()
        if phase == 1:
            state[i] = 2
            post.append(i)
            continue
        if state.get(i) == 2:
            continue
        if state.get(i) == 1:
            raise ValueError(f"the tree has a cycle through node {i}")
        state[i] = 1
        stack.append((i, 1))
        node = nodes[i]
        if isinstance(node, ConditionNode):
            for child in (node.false, node.true):
                s = state.get(child)
                if s == 1:
                    raise ValueError(f"the tree has a cycle through node {child}")
                if s is None:
                    stack.append((child, 0))
    return post[::-1]


def _n_rows(df: Any) -> int:
    if isinstance(df, pd.DataFrame):
        return len(df)
    lengths = {len(np.asarray(v)) for v in df.values()}
    if len(lengths) > 1:
        raise ValueError("columns differ in length")
    return lengths.pop() if lengths else 0


def _column(df: Any, feature: str) -> np.ndarray:
    try:
        if isinstance(df, pd.DataFrame):
            if feature not in df.columns:
                raise KeyError(feature)
            return column_values(df, feature)
        return np.asarray(df[feature], dtype=np.float64)
    except KeyError:
        raise SpecError(f"the tree tests feature {feature!r}, which is not a column of the data", token=feature) from None
    except (TypeError, ValueError) as exc:
        raise SpecError(f"feature {feature!r} cannot be compared as a number: {exc}", token=feature) from None


def _point_value(raw: Any, feature: str) -> float:
    if raw is None:
        return math.nan
    if isinstance(raw, bool) or not isinstance(raw, (int, float, np.integer, np.floating)):
        if isinstance(raw, str):
            try:
                return float(raw)
            except ValueError:
                pass
        raise ValueError(f"value of {feature!r} must be a number, got {raw!r}")
    return float(raw)


def _gold_indices(y: Any, classes: list[str]) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind in "OUS":
        lookup = {c: i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in y if v not in lookup})
        if unknown:
            raise ValueError(f"gold labels {unknown[:5]} are not classes {classes}")
        return np.array([lookup[v] for v in y], dtype=np.int64)
    return y.astype(np.int64)


def _json_number(obj: Any) -> Any:
    # JSON has no NaN: a NaN threshold (a statistic of no values) is written as null
    if isinstance(obj, dict):
        return {k: _json_number(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_number(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else str(obj)
    return obj


def _threshold_from_json(value: Any, op: str, where: str) -> Threshold:
    def num(v: Any) -> float:
        if v is None:
            return math.nan
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{where}: threshold values must be numbers or null, got {v!r}")
        return float(v)

    if op in ("in", "between"):
        if not isinstance(value, list) or not value or (op == "between" and len(value) != 2):
            raise ValueError(f"{where}: op {op!r} needs a list threshold")
        return [num(v) for v in value]
    if isinstance(value, list):
        raise ValueError(f"{where}: op {op!r} takes one threshold, not a list")
    return num(value)


def _tree_from_dict(data: Any) -> Tree:
    if not isinstance(data, dict):
        raise ValueError("not a tree: expected a JSON object")
    if data.get("format") != TREE_FORMAT:
        raise ValueError(f"not a tree: 'format' must be {TREE_FORMAT!r}")
    if data.get("version") != TREE_FORMAT_VERSION:
        raise ValueError(f"unsupported tree format version {data.get('version')!r} (this is {TREE_FORMAT_VERSION})")
    classes = data.get("classes")
    if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) and c for c in classes):
        raise ValueError("tree: 'classes' must be a list of at least two class names")
    mode = data.get("mode")
    if mode not in MODES:
        raise ValueError(f"tree: 'mode' must be one of {', '.join(MODES)}")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        raise ValueError("tree: 'nodes' must be a non-empty list")
    if len(raw_nodes) > MAX_JSON_NODES:
        raise ValueError(f"tree: more than {MAX_JSON_NODES} nodes")
    n = len(raw_nodes)
    nodes: list[Node] = []
    for i, r in enumerate(raw_nodes):
        where = f"tree node {i}"
        if not isinstance(r, dict) or r.get("id") != i:
            raise ValueError(f"{where}: must be an object with 'id' {i}")
        kind = r.get("type")
        if kind == "leaf":
            label = r.get("class")
            if isinstance(label, bool) or not isinstance(label, int) or not ABSTAIN <= label < len(classes):
                raise ValueError(f"{where}: 'class' must be -1 (inconclusive) or a class index 0..{len(classes) - 1}")
            nodes.append(Leaf(i, label))
        elif kind == "condition":
            feature, op = r.get("feature"), r.get("op")
            if not isinstance(feature, str) or not feature:
                raise ValueError(f"{where}: 'feature' must be a name")
            if op not in OPS:
                raise ValueError(f"{where}: 'op' must be one of {', '.join(OPS)}")
            kids = (r.get("true"), r.get("false"))
            if any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < n for c in kids):
                raise ValueError(f"{where}: 'true'/'false' must be node ids 0..{n - 1}")
            lfs = r.get("lfs", [])
            if not isinstance(lfs, list) or not all(isinstance(x, str) for x in lfs):
                raise ValueError(f"{where}: 'lfs' must be a list of LF names")
            nodes.append(ConditionNode(i, feature, op, _threshold_from_json(r.get("threshold"), op, where),
                                       r.get("expression"), tuple(lfs), kids[0], kids[1]))
        else:
            raise ValueError(f"{where}: 'type' must be 'leaf' or 'condition'")
    root = data.get("root")
    if isinstance(root, bool) or not isinstance(root, int) or not 0 <= root < n:
        raise ValueError("tree: 'root' must be a node id")

    def str_map(key: str, number: bool) -> dict:
        v = data.get(key) or {}
        if not isinstance(v, dict):
            raise ValueError(f"tree: {key!r} must be an object")
        for name, x in v.items():
            ok = isinstance(x, (int, float)) and not isinstance(x, bool) if number else isinstance(x, str)
            if not ok:
                raise ValueError(f"tree: {key!r} has a bad value for {name!r}")
        return {str(k): (float(x) if number else x) for k, x in v.items()}

    meta = data.get("meta") or {}
    if not isinstance(meta, dict):
        raise ValueError("tree: 'meta' must be an object")
    return Tree(nodes, root, list(classes), mode, importance=str_map("importance", True),
                display_names=str_map("display_names", False), meta=meta)


