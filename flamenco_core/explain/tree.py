"""LF combinations as decision trees: the paper's importance-ordered trees and faithful trees.

A :class:`Tree` is a rooted decision diagram over LF conditions. A *condition node* tests one
condition ``feature op threshold`` (the threshold resolved from the data's statistics, with the
expression it came from kept for display); its ``true`` and ``false`` edges lead to other nodes. A
*leaf* holds a class index, or ``-1`` for **inconclusive**. Nodes may be shared (reached from several
parents): that keeps the paper's "one node per LF condition" for multi-condition LFs and keeps faithful
trees small. :func:`~flamenco_core.explain.render.render_text` prints a shared subtree once.

Conditions are evaluated exactly as the applier does (:func:`flamenco_core.labeling.apply_lfs`): a NaN
feature value, or a NaN threshold, makes a condition false, so it routes to the false branch.

Two modes (:func:`build_tree`):

``"paper"``
    The paper's construction (Section 4.4). LFs are ordered by feature importance (an LF ranks by its
    most important feature, ties keep the given order); each LF becomes a chain of its condition nodes
    (most important first) whose true end is a leaf with the LF's label and whose false edges go to the
    next LF's first node; the last false edge is "inconclusive". This is a first-match decision list:
    where LFs conflict, the more important LF decides, so the tree can disagree with the combination's
    decision (the paper reports prediction differences up to 0.45).

``"faithful"`` (the default, and the mode reports use)
    A tree whose predictions equal the **combination decision** on every row. The combination decision
    is the one :mod:`flamenco_core.labeling.analysis` scores as LF F1: the majority vote of the LFs that
    vote (Snorkel's ``MajorityLabelVoter``); a tie between classes, or no vote at all, is inconclusive
    (:func:`combination_decision`). The construction is a reduced ordered decision diagram over the
    distinct conditions' truth values: conditions are tested in order of feature importance; a branch
    stops at a leaf as soon as the vote is settled (every LF has fired or failed, or one class leads by
    more than the LFs still undecided could change); a condition no undecided LF reads is not tested; a
    condition whose outcome is already implied by earlier tests on the same feature (``src_port <= 6600``
    true implies ``src_port >= 9000`` false) is not tested; identical subtrees are merged (hash-consing),
    and a node whose two branches are the same subtree is dropped. Because each leaf is the decision for
    every data point that reaches it, ``predict(tree, df) == combination_decision(apply_lfs(...))`` holds
    exactly: prediction difference 0 (tested on random packs and data).

    Size: at most ``2**m - 1`` condition nodes for ``m`` distinct conditions (a full binary tree) in the
    worst case. Merging makes the usual case far smaller: when every LF has one condition on a feature
    of its own, the diagram has at most ``m * (n+1)**k`` condition nodes (``n`` LFs, ``k`` classes: a node
    is determined by the condition tested and the vote counts so far); the 7 Worf LFs give 9 nodes, 20
    random two-condition LFs over 5 features about 1,300 (2 s). ``max_nodes`` bounds it; past it
    :func:`build_tree` raises rather than hand back an unreadable tree.

Prediction difference (:func:`prediction_difference`) is the fraction of rows where two prediction
vectors differ, inconclusive (-1) counting as a value of its own.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flamenco_core.evaluation.metrics import prediction_difference
from flamenco_core.labeling.applier import CompiledPack, _condition_mask
from flamenco_core.labeling.constants import ABSTAIN
from flamenco_core.labeling.expr import SpecError
from flamenco_core.labeling.label_model import majority_vote
from flamenco_core.labeling.spec import OPS, LFPack, LFSpec
from flamenco_core.labeling.stats import DataStatistics, Statistics, as_statistics, column_values

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
        return _condition_mask(values, self.op, self.thresholds)


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


def lf_decision(
    lfs_or_pack: Any,
    df: pd.DataFrame,
    stats: Any = None,
    classes: Optional[Sequence[str]] = None,
) -> np.ndarray:
    """Apply the LFs to ``df`` (thresholds from ``stats``, else from ``df``) and return their
    :func:`combination_decision`: what a faithful tree built with the same statistics predicts."""
    from flamenco_core.labeling.applier import apply_lfs

    pack = as_pack(lfs_or_pack, classes)
    source = None if stats is None else _statistics(stats)
    L = apply_lfs(pack, df, stats=source)
    return combination_decision(L, pack.cardinality)


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


# ---------------------------------------------------------------------------------------------- importance


def feature_importance(
    df: pd.DataFrame,
    features: Sequence[str],
    y: Any,
    seed: int = 0,
    method: str = "forest",
    n_estimators: int = 100,
    n_repeats: int = 5,
) -> dict[str, float]:
    """``{feature: score}`` for ordering tree nodes (higher: more important): the ``impurity``
    (``method="forest"``) or ``permutation`` importance of
    :func:`flamenco_core.preprocess.feature_selection.feature_importance`."""
    from flamenco_core.preprocess.feature_selection import feature_importance as ranked

    column = {"forest": "impurity", "permutation": "permutation"}.get(method)
    if column is None:
        raise ValueError(f"method={method!r}; choose forest or permutation")
    features = list(features)
    if not features:
        return {}
    table = ranked(df, y, features, methods=(column,), seed=seed, n_estimators=n_estimators, n_repeats=n_repeats)
    return {f: float(table.loc[f, column]) for f in features}


# ---------------------------------------------------------------------------------------------- building


def as_pack(lfs_or_pack: Any, classes: Optional[Sequence[str]] = None) -> LFPack:
    """One :class:`LFPack` from a pack, or a list of :class:`LFSpec`s and/or packs (their LFs, in order).

    LFs from several packs are taken as given (no de-duplication: a duplicated LF counts twice in a
    majority vote, as it does in the label matrix); their names must be distinct. ``classes`` is needed
    for a list of bare LFSpecs; it defaults to the (first) pack's classes.
    """
    if isinstance(lfs_or_pack, LFPack):
        if classes is not None and list(classes) != list(lfs_or_pack.classes):
            raise ValueError(f"classes {list(classes)} differ from the pack's {lfs_or_pack.classes}")
        return lfs_or_pack
    if isinstance(lfs_or_pack, LFSpec):
        lfs_or_pack = [lfs_or_pack]
    items = list(lfs_or_pack)
    specs: list[LFSpec] = []
    pack_classes: Optional[list[str]] = None
    for it in items:
        if isinstance(it, LFPack):
            if pack_classes is None:
                pack_classes = list(it.classes)
            elif set(it.classes) != set(pack_classes):
                raise ValueError(f"packs disagree on classes: {pack_classes} vs {it.classes}")
            specs.extend(it.lfs)
        elif isinstance(it, LFSpec):
            specs.append(it)
        else:
            raise TypeError(f"expected LFPack or LFSpec items, got {type(it).__name__}")
    cls = list(classes) if classes is not None else pack_classes
    if cls is None:
        raise ValueError("classes are needed for a list of LFSpecs (class index = position in classes)")
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"LF names must be distinct in a combination; repeated: {', '.join(dup)} "
                         "(combine_packs renames clashes)")
    return LFPack.from_dict({"pack": "combination", "classes": cls, "lfs": [s.model_dump(mode="json", exclude_none=True) for s in specs]})


@dataclass
class _Cond:
    feature: str
    op: str
    thresholds: tuple[float, ...]
    is_list: bool
    expression: Any
    lfs: list[str]

    @property
    def threshold(self) -> Threshold:
        return list(self.thresholds) if self.is_list else self.thresholds[0]


def _statistics(stats: Any) -> Statistics:
    if stats is None:
        return as_statistics({})
    if isinstance(stats, pd.DataFrame):
        try:
            return as_statistics(stats)
        except TypeError:
            return DataStatistics(stats)  # raw data, not a profile: statistics of the data itself
    return as_statistics(stats)


def _rank(importance: Any, features: Iterable[str]) -> dict[str, float]:
    """Importance as ``{feature: score}``; a ranked list gives descending scores; unknown features 0."""
    features = list(dict.fromkeys(features))
    if importance is None:
        scores: dict[str, float] = {}
    elif isinstance(importance, Mapping):
        scores = {str(k): float(v) for k, v in importance.items()}
    else:
        ranked = list(importance)
        scores = {str(f): float(len(ranked) - i) for i, f in enumerate(ranked)}
    for f, s in scores.items():
        if math.isnan(s):
            raise ValueError(f"importance of {f!r} is NaN")
    return {f: scores.get(f, 0.0) for f in features}


def build_tree(
    lfs_or_pack: Any,
    stats: Any = None,
    importance: Any = None,
    mode: str = REPORT_MODE,
    classes: Optional[Sequence[str]] = None,
    *,
    display_names: Optional[Mapping[str, str]] = None,
    max_nodes: int = DEFAULT_MAX_NODES,
    never_missing: Iterable[str] = (),
) -> Tree:
    """Map an LF combination to a :class:`Tree` (see the module docstring for both modes).

    ``lfs_or_pack``: an :class:`LFPack` or a list of :class:`LFSpec`s/packs (see :func:`as_pack`).
    ``stats``: the statistics thresholds are resolved from: a profile (dict, profile DataFrame or file),
    a :class:`~flamenco_core.labeling.stats.Statistics`, or raw data as a DataFrame; ``None`` when every
    threshold is a literal. Compare the tree with LFs applied with the same statistics.
    ``importance``: ``{feature: score}`` (see :func:`feature_importance`) or a list of features, most
    important first; ``None`` keeps the LFs' order. ``mode``: ``"faithful"`` (default) or ``"paper"``.
    ``never_missing``: features known to hold no NaN (cleaned data): a missing value makes every
    condition false, so without this the faithful tree must keep the branch where both ``x <= t`` and
    ``x > t`` fail; with it, that branch is unreachable and is not drawn.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}; choose one of {', '.join(MODES)}")
    pack = as_pack(lfs_or_pack, classes)
    source = _statistics(stats)
    compiled = CompiledPack(pack)
    resolved = compiled.resolve(source)
    conds: list[_Cond] = []
    keys: dict[tuple, int] = {}
    lf_conds: list[list[int]] = []
    for spec, per_lf in zip(pack.lfs, resolved):
        mine: list[int] = []
        for c, t in zip(spec.when, per_lf):
            key = (c.feature, c.op, tuple("nan" if math.isnan(v) else v for v in t))
            if key not in keys:
                keys[key] = len(conds)
                conds.append(_Cond(c.feature, c.op, tuple(float(v) for v in t), isinstance(c.value, list), c.value, []))
            j = keys[key]
            if j not in mine:
                mine.append(j)
            if spec.name not in conds[j].lfs:
                conds[j].lfs.append(spec.name)
        lf_conds.append(mine)
    labels = [pack.class_index(spec.label) for spec in pack.lfs]
    scores = _rank(importance, [c.feature for c in conds])
    builder = _Builder(conds, max_nodes)
    if mode == "paper":
        root = _paper(builder, conds, lf_conds, labels, scores)
    else:
        root = _faithful(builder, conds, lf_conds, labels, scores, pack.cardinality, frozenset(never_missing))
    nodes, root = builder.finish(root)
    meta = {
        "lfs": pack.lf_names,
        "lf_labels": {spec.name: spec.label for spec in pack.lfs},
        "decision": COMBINATION_DECISION,
        "stats": source.used(),
        "thresholds": compiled.thresholds_dict(resolved),
    }
    return Tree(nodes, root, list(pack.classes), mode, importance=scores,
                display_names=dict(display_names or {}), meta=meta)


class _Builder:
    """Hash-consed node store: equal (condition, true, false) triples and equal leaves are one node."""

    def __init__(self, conds: list[_Cond], max_nodes: int) -> None:
        self.conds = conds
        self.max_nodes = max_nodes
        self.items: list[tuple] = []
        self.index: dict[tuple, int] = {}

    def leaf(self, label: int) -> int:
        return self._add(("leaf", int(label)))

    def node(self, cond: int, true: int, false: int, reduce: bool = True) -> int:
        if reduce and true == false:
            return true
        return self._add(("cond", cond, true, false))

    def _add(self, item: tuple) -> int:
        i = self.index.get(item)
        if i is None:
            if len(self.items) >= self.max_nodes:
                raise ValueError(
                    f"the tree needs more than max_nodes={self.max_nodes} nodes; use mode='paper', fewer LFs, "
                    "or a larger max_nodes")
            i = self.index[item] = len(self.items)
            self.items.append(item)
        return i

    def finish(self, root: int) -> tuple[list[Node], int]:
        """Renumber the nodes reachable from ``root`` breadth-first (true before false): root is 0."""
        order: list[int] = []
        seen = {root}
        queue = [root]
        while queue:
            i = queue.pop(0)
            order.append(i)
            item = self.items[i]
            if item[0] == "cond":
                for child in (item[2], item[3]):
                    if child not in seen:
                        seen.add(child)
                        queue.append(child)
        new = {old: k for k, old in enumerate(order)}
        nodes: list[Node] = []
        for old in order:
            item = self.items[old]
            if item[0] == "leaf":
                nodes.append(Leaf(new[old], item[1]))
            else:
                c = self.conds[item[1]]
                nodes.append(ConditionNode(new[old], c.feature, c.op, c.threshold, c.expression, tuple(c.lfs),
                                           new[item[2]], new[item[3]]))
        return nodes, 0


def _paper(builder: _Builder, conds, lf_conds, labels, scores) -> int:
    # Positions break importance ties, so equal importances keep the pack's order.
    def lf_key(j: int) -> tuple:
        return (-max((scores[conds[c].feature] for c in lf_conds[j]), default=0.0), j)

    order = sorted(range(len(lf_conds)), key=lf_key)
    nxt = builder.leaf(ABSTAIN)
    for j in reversed(order):
        chain = sorted(lf_conds[j], key=lambda c: (-scores[conds[c].feature], lf_conds[j].index(c)))
        node = builder.leaf(labels[j])
        for c in reversed(chain):
            # no reduction: the paper's tree keeps one node per LF condition even where both branches agree
            node = builder.node(c, node, nxt, reduce=False)
        nxt = node
    return nxt


def _decide(counts: Sequence[int]) -> int:
    """Majority vote from per-class vote counts (the :func:`majority_vote` rule)."""
    top = max(counts)
    if top == 0 or sum(1 for c in counts if c == top) > 1:
        return ABSTAIN
    return int(counts.index(top))


def _representatives(thresholds: list[float], missing: bool = True) -> np.ndarray:
    """One value from each region on which every condition of a feature is constant.

    The finite thresholds cut the line into points and open intervals; a condition (any op) is
    constant on each piece, and NaN is a piece of its own. +-inf behave like the outer intervals.
    """
    ts = sorted({t for t in thresholds if math.isfinite(t)})
    if not ts:
        return np.array([0.0, math.nan] if missing else [0.0])
    reps = [float(np.nextafter(ts[0], -math.inf))]
    for a, b in zip(ts, ts[1:]):
        reps.append(a)
        between = float(np.nextafter(a, math.inf))
        if between < b:
            reps.append(between)
    reps.append(ts[-1])
    reps.append(float(np.nextafter(ts[-1], math.inf)))
    if missing:
        reps.append(math.nan)
    return np.array(reps, dtype=np.float64)


def _faithful(builder: _Builder, conds, lf_conds, labels, scores, k: int, never_missing: frozenset = frozenset()) -> int:
    m = len(conds)
    order = sorted(range(m), key=lambda c: (-scores[conds[c].feature], c))
    pos = {c: i for i, c in enumerate(order)}
    features = list(dict.fromkeys(conds[c].feature for c in order))
    fidx = {f: i for i, f in enumerate(features)}
    reps = {f: _representatives([t for c in conds if c.feature == f for t in c.thresholds], f not in never_missing)
            for f in features}
    truth = [_condition_mask(reps[conds[c].feature], conds[c].op, conds[c].thresholds) for c in order]
    cfeat = [fidx[conds[c].feature] for c in order]
    # last[f]: the last position testing feature f; past it, f's feasible set no longer matters
    last = {}
    for i, c in enumerate(order):
        last[cfeat[i]] = i
    users: list[list[int]] = [[] for _ in range(m)]
    lf_last = []
    for j, cs in enumerate(lf_conds):
        ps = sorted(pos[c] for c in cs)
        for p in ps:
            users[p].append(j)
        lf_last.append(ps[-1] if ps else -1)
    n_lfs = len(lf_conds)
    # an LF with no condition cannot occur (specs need >= 1), so every LF starts undecided
    memo: dict[tuple, int] = {}

    def build(i: int, counts: tuple[int, ...], alive: frozenset, feas: tuple) -> int:
        if not alive:
            return builder.leaf(_decide(list(counts)))
        pending = [0] * k
        for j in alive:
            pending[labels[j]] += 1
        for a in range(k):
            if all(counts[a] > counts[c] + pending[c] for c in range(k) if c != a):
                return builder.leaf(a)
        while i < m and not any(j in alive for j in users[i]):
            i += 1
        key = (i, counts, alive, tuple(fm.tobytes() if last[f] >= i else b"" for f, fm in enumerate(feas)))
        hit = memo.get(key)
        if hit is not None:
            return hit
        f = cfeat[i]
        possible = truth[i][feas[f]]
        can_true, can_false = bool(possible.any()), bool(not possible.all())
        t_node = f_node = None
        if can_true:
            fired = [j for j in users[i] if j in alive and lf_last[j] == i]
            c2 = list(counts)
            for j in fired:
                c2[labels[j]] += 1
            feas_t = feas[:f] + (feas[f] & truth[i],) + feas[f + 1:]
            t_node = build(i + 1, tuple(c2), alive - frozenset(fired), feas_t)
        if can_false:
            dead = frozenset(j for j in users[i] if j in alive)
            feas_f = feas[:f] + (feas[f] & ~truth[i],) + feas[f + 1:]
            f_node = build(i + 1, counts, alive - dead, feas_f)
        if t_node is None:
            result = f_node
        elif f_node is None:
            result = t_node  # implied by earlier tests on this feature: no node needed
        else:
            result = builder.node(order[i], t_node, f_node)
        memo[key] = result
        return result

    start_feas = tuple(np.ones(len(reps[f]), dtype=bool) for f in features)
    return build(0, (0,) * k, frozenset(range(n_lfs)), start_feas)


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


def stump_tree(
    feature: str,
    threshold_expr: Union[str, int, float],
    stats: Any = None,
    label_above: str = "noise",
    label_below: str = "good",
    *,
    op: str = ">",
    display_names: Optional[Mapping[str, str]] = None,
) -> Tree:
    """A one-split tree: ``feature op threshold`` -> ``label_above``, otherwise ``label_below``.

    The per-pair tree of learned latency LFs (root: RTT above a threshold -> noise). ``threshold_expr``
    is a number or a threshold expression (``"q3 + 1.5*iqr"``) resolved from ``stats`` like an LF's.
    Classes are ``[label_below, label_above]`` (the latency packs' ``[good, noise]``). A NaN value fails
    the test, so it goes to ``label_below``.
    """
    if op not in ("<", "<=", ">", ">="):
        raise ValueError(f"a stump splits with <, <=, > or >=, not {op!r}")
    spec = LFSpec.model_validate({"name": f"{feature}_{'above' if '>' in op else 'below'}", "label": label_above,
                                  "when": [{"feature": feature, "op": op, "value": threshold_expr}]})
    tree = build_tree([spec], stats, mode="paper", classes=[label_below, label_above], display_names=display_names)
    # the paper chain ends in "inconclusive"; a stump's other side is the other class
    nodes = [Leaf(n.id, 0) if isinstance(n, Leaf) and n.label == ABSTAIN else n for n in tree.nodes]
    return Tree(nodes, tree.root, tree.classes, "paper", importance=tree.importance,
                display_names=tree.display_names, meta={**tree.meta, "stump": True})


def compare_modes(
    lfs_or_pack: Any,
    df: pd.DataFrame,
    stats: Any = None,
    importance: Any = None,
    classes: Optional[Sequence[str]] = None,
    *,
    display_names: Optional[Mapping[str, str]] = None,
    max_nodes: int = DEFAULT_MAX_NODES,
) -> dict[str, Any]:
    """Both modes' trees for one LF combination and their prediction difference to the LFs on ``df``.

    Returns ``{"report_mode": "faithful", "decision": <definition>, "paper": {...}, "faithful": {...}}``,
    each mode ``{"tree", "difference", "conditions", "leaves", "depth"}``. ``stats`` defaults to ``df``
    itself; the LFs are applied with the same statistics as the trees.
    """
    source = _statistics(df if stats is None else stats)
    pack = as_pack(lfs_or_pack, classes)
    decision = lf_decision(pack, df, source)
    out: dict[str, Any] = {"report_mode": REPORT_MODE, "decision": COMBINATION_DECISION}
    for mode in MODES:
        tree = build_tree(pack, source, importance, mode, display_names=display_names, max_nodes=max_nodes)
        out[mode] = {
            "tree": tree,
            "difference": prediction_difference(tree.predict(df), decision),
            "conditions": tree.n_conditions,
            "leaves": tree.n_leaves,
            "depth": tree.depth,
        }
    return out
