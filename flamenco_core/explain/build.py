"""Building interpretability trees from an LF combination: the paper's importance-ordered first-match
tree and the faithful tree (a reduced ordered decision diagram whose predictions equal the combination's
decision); see ``docs/explain.md`` for both constructions and their size bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flamenco_core.evaluation.metrics import prediction_difference
from flamenco_core.explain.tree import (
    COMBINATION_DECISION,
    DEFAULT_MAX_NODES,
    MODES,
    REPORT_MODE,
    ConditionNode,
    Leaf,
    Node,
    Threshold,
    Tree,
    combination_decision,
)
from flamenco_core.labeling.applier import CompiledPack, condition_mask
from flamenco_core.labeling.constants import ABSTAIN
from flamenco_core.labeling.spec import LFPack, LFSpec
from flamenco_core.labeling.stats import DataStatistics, Statistics, as_statistics


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
    ``importance``: ``{feature: score}`` (e.g. a column of
    :func:`flamenco_core.preprocess.feature_selection.feature_importance`) or a list of features, most
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
    truth = [condition_mask(reps[conds[c].feature], conds[c].op, conds[c].thresholds) for c in order]
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
