"""Interpretability trees: paper and faithful modes, traversal, JSON, rendering, the explain command."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import typer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from builders import EXAMPLE_PACK as EXAMPLE
from builders import ROOT
from flamenco.cli_explain import explain_cmd
from flamenco_core.explain import (
    REPORT_MODE,
    ConditionNode,
    Leaf,
    Tree,
    build_tree,
    combination_decision,
    compare_modes,
    lf_decision,
    prediction_difference,
    render_dot,
    render_png,
    render_text,
    stump_tree,
    tree_f1,
)
from flamenco_core.labeling import ABSTAIN, LFPack, apply_lfs, compute_stats
from flamenco_core.labeling.analysis import combination_f1
from flamenco_core.preprocess.feature_selection import feature_importance

IN_CI = os.environ.get("CI") == "true"

# The paper's CIC NTP LFs (issue 5), written as a pack.
CIC = LFPack.from_dict({
    "pack": "cic-ntp", "classes": ["benign", "attack"], "universal_features": ["src_port"],
    "lfs": [
        {"name": "port_le_6600_attack", "label": "attack", "when": [{"feature": "src_port", "op": "<=", "value": 6600}]},
        {"name": "port_ge_9000_benign", "label": "benign", "when": [{"feature": "src_port", "op": ">=", "value": 9000}]},
        {"name": "small_packets_benign", "label": "benign", "when": [{"feature": "average_packet_size", "op": "<", "value": 100}]},
    ],
})


def flows(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({
        "src_port": rng.integers(0, 20000, n).astype(float),
        "average_packet_size": rng.uniform(20, 500, n),
        "bytes": rng.exponential(1000, n),
        "packets": rng.integers(1, 50, n).astype(float),
    })
    df.loc[::17, "bytes"] = np.nan
    df.loc[::23, "average_packet_size"] = np.nan
    return df


def cond_nodes(tree: Tree) -> list[ConditionNode]:
    return [tree.nodes[i] for i in tree._order if isinstance(tree.nodes[i], ConditionNode)]


# ---------------------------------------------------------------------------------------------- paper mode


def test_example_pack_paper_tree_orders_nodes_by_importance_and_renders_thresholds():
    pack = LFPack.from_yaml(EXAMPLE)
    df = flows()
    stats = compute_stats(df, needed=pack.needed_stats())
    imp = {"packets": 0.5, "bytes": 0.3, "src_port": 0.2}
    tree = build_tree(pack, stats, imp, mode="paper")
    # the two-condition LF ranks by its most important feature (packets) and chains packets -> bytes;
    # both of its false edges go to the next LF's node; the last false edge is inconclusive
    root = tree.nodes[tree.root]
    assert (root.feature, root.op, root.expression) == ("packets", "<=", "mean")
    second = tree.nodes[root.true]
    assert (second.feature, second.expression) == ("bytes", "0.5*p75")
    third = tree.nodes[root.false]
    assert third.feature == "src_port" and third.threshold == 6600
    assert second.false == root.false
    assert tree.nodes[second.true] == Leaf(second.true, 0)
    assert tree.nodes[third.true].label == 1 and tree.nodes[third.false].label == ABSTAIN
    assert tree.n_conditions == 3  # one node per LF condition
    assert [n.feature for n in cond_nodes(tree)] == ["packets", "bytes", "src_port"]

    mean = stats["packets"]["mean"]
    half_p75 = 0.5 * compute_stats(df, ["bytes"], ["q3"])["bytes"]["q3"]
    assert root.threshold == pytest.approx(mean) and second.threshold == pytest.approx(half_p75)
    text, dot = render_text(tree), render_dot(tree, display_names={"packets": "Total packets"})
    for shown in (f"{mean:.6g}", f"{half_p75:.6g}", "6600", "0.5*p75", "mean"):
        assert shown in text and shown in dot
    assert "Total packets <= " in dot and "digraph" in dot
    assert "inconclusive" in text and "see [" in text  # the shared src_port node is printed once

    # another ranking, another order
    tree2 = build_tree(pack, stats, ["src_port", "bytes"], mode="paper")
    assert [n.feature for n in cond_nodes(tree2)] == ["src_port", "bytes", "packets"]


def test_paper_mode_can_disagree_with_the_lfs_and_faithful_does_not():
    df = flows(400)
    imp = {"average_packet_size": 0.7, "src_port": 0.3}
    res = compare_modes(CIC, df, importance=imp)
    assert res["report_mode"] == REPORT_MODE == "faithful"
    # port <= 6600 (attack) and size < 100 (benign) tie: the LFs are inconclusive, the paper's tree says benign
    assert res["paper"]["difference"] > 0
    assert res["faithful"]["difference"] == 0
    point = pd.DataFrame({"src_port": [100.0], "average_packet_size": [50.0]})
    assert res["paper"]["tree"].predict(point)[0] == 0
    assert res["faithful"]["tree"].predict(point)[0] == ABSTAIN == lf_decision(CIC, point, df)[0]


def test_faithful_tree_skips_tests_implied_by_earlier_ones():
    tree = build_tree(CIC, None, {"src_port": 1.0, "average_packet_size": 0.5})
    root = tree.nodes[tree.root]
    assert (root.feature, root.op) == ("src_port", "<=")
    # src_port <= 6600 true: src_port >= 9000 cannot hold, so it is never tested below
    below = [tree.nodes[i] for i in _reachable(tree, root.true)]
    assert all(not (isinstance(n, ConditionNode) and n.op == ">=") for n in below)
    assert tree.n_conditions <= 4


def test_complementary_stumps_draw_no_unreachable_branch_on_complete_features():
    """A Snuba stump becomes ``x <= t -> good`` and ``x > t -> noise``. Under the false branch of ``x <= t``
    only a missing x could fail ``x > t`` too; on cleaned latency features that branch cannot be reached
    and must not be drawn (it was: "rtt_ms > 40.44" under "rtt_ms <= 40.44", false, with a dead leaf)."""
    pack = LFPack.from_dict({"pack": "stumps", "classes": ["good", "noise"], "lfs": [
        {"name": "a_le_good", "label": "good", "when": [{"feature": "a", "op": "<=", "value": 40.44}]},
        {"name": "a_gt_noise", "label": "noise", "when": [{"feature": "a", "op": ">", "value": 40.44}]},
        {"name": "b_le_good", "label": "good", "when": [{"feature": "b", "op": "<=", "value": 2.0}]},
        {"name": "b_gt_noise", "label": "noise", "when": [{"feature": "b", "op": ">", "value": 2.0}]},
    ]})
    with_nan = build_tree(pack, None, ["a", "b"])
    complete = build_tree(pack, None, ["a", "b"], never_missing=["a", "b"])
    # one test per feature on every path: the second stump of a feature is implied by the first
    def depth(tree, i=None):
        n = tree.nodes[tree.root if i is None else i]
        return 1 + max(depth(tree, n.true), depth(tree, n.false)) if isinstance(n, ConditionNode) else 0
    assert depth(complete) == 2 and depth(with_nan) > 2
    assert "a > 40.44" not in render_text(complete) and "b > 2" not in render_text(complete)
    # and it decides every complete point as the LFs do
    pts = pd.DataFrame({"a": [10.0, 50.0, 10.0, 50.0], "b": [1.0, 1.0, 3.0, 3.0]})
    np.testing.assert_array_equal(complete.predict(pts), combination_decision(apply_lfs(pack, pts), pack.cardinality))


def _reachable(tree: Tree, start: int) -> list[int]:
    seen, stack = set(), [start]
    while stack:
        i = stack.pop()
        if i in seen:
            continue
        seen.add(i)
        n = tree.nodes[i]
        if isinstance(n, ConditionNode):
            stack += [n.true, n.false]
    return sorted(seen)


# ---------------------------------------------------------------------------------------------- faithful (property)

FEATURES = ["f0", "f1", "f2"]
STAT_VALUES = ["mean", "median", "q1", "q3", "p90", "0.5*q3", "min", "max", "mean + std"]
OPS = ["<=", "<", ">=", ">", "==", "!=", "in", "between"]
scalar = st.one_of(st.integers(-1, 6), st.sampled_from(STAT_VALUES))


@st.composite
def condition(draw):
    op = draw(st.sampled_from(OPS))
    if op == "in":
        value = draw(st.lists(scalar, min_size=1, max_size=3))
    elif op == "between":
        value = [draw(scalar), draw(scalar)]
    else:
        value = draw(scalar)
    return {"feature": draw(st.sampled_from(FEATURES)), "op": op, "value": value}


@st.composite
def pack_and_data(draw):
    k = draw(st.integers(2, 3))
    classes = ["c0", "c1", "c2"][:k]
    n_lfs = draw(st.integers(1, 4))
    lfs = [{"name": f"lf{j}", "label": draw(st.sampled_from(classes)),
            "when": draw(st.lists(condition(), min_size=1, max_size=2))} for j in range(n_lfs)]
    pack = LFPack.from_dict({"pack": "random", "classes": classes, "lfs": lfs})
    n = draw(st.integers(0, 40))
    cell = st.one_of(st.integers(-1, 6).map(float), st.just(np.nan), st.just(np.inf), st.just(-np.inf), st.floats(-2, 7, allow_nan=False))
    data = {f: draw(st.lists(cell, min_size=n, max_size=n)) for f in FEATURES}
    df = pd.DataFrame(data, columns=FEATURES, dtype=float)
    importance = {f: draw(st.floats(0, 1)) for f in FEATURES}
    return pack, df, importance


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pack_and_data())
def test_faithful_tree_reproduces_the_combination_decision_exactly(case):
    pack, df, importance = case
    L = apply_lfs(pack, df)  # statistics of df, as the tree's
    decision = combination_decision(L, pack.cardinality)
    tree = build_tree(pack, df, importance, mode="faithful")
    pred = tree.predict(df)
    np.testing.assert_array_equal(pred, decision)
    if len(df):
        assert prediction_difference(pred, decision) == 0.0
    # the paper's tree is a valid tree too: it agrees wherever at most one LF votes
    paper = build_tree(pack, df, importance, mode="paper").predict(df)
    single = (L != ABSTAIN).sum(axis=1) <= 1
    assert np.array_equal(paper[single], decision[single])
    # one row through path() ends where predict() does
    if len(df):
        row = df.iloc[len(df) // 2].to_dict()
        assert tree.path(row).index == pred[len(df) // 2]
    # and the tree survives JSON
    assert np.array_equal(Tree.from_json(tree.to_json()).predict(df), pred)


def test_combination_decision_is_the_lf_f1_definition():
    df = flows(300, seed=3)
    L = apply_lfs(CIC, df)
    decision = combination_decision(L, 2)
    y = (df["src_port"] <= 7000).astype(int).to_numpy()
    tree = build_tree(CIC, df, {"src_port": 1, "average_packet_size": 2})
    table = combination_f1(L, y, [(0, 1, 2)], CIC.lf_names, classes=CIC.classes)
    assert tree_f1(tree, df, y) == pytest.approx(float(table["F1"].iloc[0]))
    assert tree_f1(tree, df, np.array(CIC.classes)[y]) == tree_f1(tree, df, y)  # names work as gold too
    assert np.array_equal(tree.predict(df), decision)


# ---------------------------------------------------------------------------------------------- traversal


def test_path_for_a_point_matches_predict():
    tree = build_tree(CIC, None, {"src_port": 0.9, "average_packet_size": 0.1})
    point = {"src_port": 8888, "average_packet_size": 80}
    steps, label, index = tree.path(point)
    assert label == "benign" and index == 0
    assert index == tree.predict(pd.DataFrame([point]))[0]
    assert steps[0].feature == "src_port" and steps[0].value == 8888 and steps[0].outcome is False
    assert steps[-1].feature == "average_packet_size" and steps[-1].threshold == 100 and steps[-1].outcome is True
    for mode in ("paper", "faithful"):
        t = build_tree(CIC, None, {"average_packet_size": 1}, mode=mode)
        for p in ({"src_port": 100, "average_packet_size": 50}, {"src_port": 9500}, {"src_port": None, "average_packet_size": 7}):
            frame = pd.DataFrame([{"src_port": p.get("src_port"), "average_packet_size": p.get("average_packet_size")}], dtype=float)
            assert t.path(p).index == t.predict(frame)[0]


def test_nan_routes_to_the_false_branch_as_in_apply_lfs():
    pack = LFPack.from_dict({"pack": "nan", "classes": ["a", "b"], "lfs": [
        {"name": "ne", "label": "b", "when": [{"feature": "x", "op": "!=", "value": 3}]},
        {"name": "le", "label": "a", "when": [{"feature": "y", "op": "<=", "value": "median"}]},
    ]})
    df = pd.DataFrame({"x": [np.nan, 3.0, 4.0, np.nan], "y": [1.0, np.nan, 9.0, np.nan]})
    L = apply_lfs(pack, df)
    assert L[0, 0] == ABSTAIN and L[1, 1] == ABSTAIN  # the applier: NaN makes a condition false
    for mode in ("paper", "faithful"):
        tree = build_tree(pack, df, None, mode=mode)
        assert np.array_equal(tree.predict(df), combination_decision(L, 2))
        steps = tree.path({"x": float("nan"), "y": None}).steps
        assert all(s.outcome is False and s.value is None for s in steps)
        assert tree.path({}).index == ABSTAIN
    # a NaN threshold (a statistic of no values) is false for every row and survives JSON as null
    empty = pd.DataFrame({"x": [1.0, 2.0], "y": [np.nan, np.nan]})
    t = build_tree(pack, empty, None, mode="paper")
    assert json.loads(t.to_json())["nodes"][t.nodes[t.root].false]["threshold"] is None
    assert np.array_equal(Tree.from_json(t.to_json()).predict(empty), combination_decision(apply_lfs(pack, empty), 2))


# ---------------------------------------------------------------------------------------------- JSON


def test_json_round_trip_and_refusals(tmp_path):
    pack = LFPack.from_yaml(EXAMPLE)
    df = flows()
    for mode in ("paper", "faithful"):
        tree = build_tree(pack, df, {"bytes": 1}, mode=mode, display_names={"bytes": "Total bytes"})
        path = tmp_path / f"{mode}.json"
        tree.to_json(path)
        back = Tree.from_json(path)
        assert back == tree
        assert back.to_dict() == tree.to_dict()
        assert np.array_equal(back.predict(df), tree.predict(df))
        assert render_dot(back) == render_dot(tree) and "Total bytes" in render_dot(back)
        assert back.meta["decision"].startswith("majority vote")
    good = json.loads(tree.to_json())
    bad_cycle = json.loads(json.dumps(good))
    bad_cycle["nodes"][1 if good["nodes"][1]["type"] == "condition" else 0]["true"] = good["root"]
    bad_op = json.loads(json.dumps(good))
    bad_op["nodes"][good["root"]]["op"] = "__import__"
    bad_class = json.loads(json.dumps(good))
    leaf = next(n for n in bad_class["nodes"] if n["type"] == "leaf")
    leaf["class"] = 7
    for bad, word in ((bad_cycle, "cycle"), (bad_op, "op"), (bad_class, "class"), ({"format": "pickle"}, "format")):
        with pytest.raises(ValueError, match=word):
            Tree.from_dict(bad)
    with pytest.raises(ValueError, match="JSON"):
        Tree.from_json(b"\x80\x04K\x01.".decode("latin-1").join("{}"))


# ---------------------------------------------------------------------------------------------- rendering


def test_dot_renders_to_png(tmp_path):
    if shutil.which("dot") is None:
        if IN_CI:
            pytest.fail("Graphviz's dot (Debian package graphviz) must be installed in CI")
        pytest.skip("Graphviz's dot is not installed")
    tree = build_tree(LFPack.from_yaml(EXAMPLE), flows(), {"packets": 1, "bytes": 0.5})
    out = render_png(tree, tmp_path / "trees" / "tree.png", display_names={"bytes": 'Bytes "total"'})
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000
    # a single-leaf tree (no LFs) renders too
    empty = build_tree(LFPack.from_dict({"pack": "e", "classes": ["a", "b"], "lfs": []}))
    assert render_png(empty, tmp_path / "empty.png").stat().st_size > 0
    assert "-> inconclusive" in render_text(empty)


def test_missing_dot_names_the_debian_package(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    tree = build_tree(CIC)
    with pytest.raises(RuntimeError, match="graphviz"):
        render_png(tree, tmp_path / "x.png")


def test_stump_tree_for_a_latency_pair():
    rtt = pd.DataFrame({"rtt_ms": [10.0, 11, 12, 13, 14, 100, np.nan]})
    tree = stump_tree("rtt_ms", "q3 + 1.5*iqr", rtt)
    assert tree.classes == ["good", "noise"] and tree.n_conditions == 1 and tree.depth == 1
    assert list(tree.predict(rtt)) == [0, 0, 0, 0, 0, 1, 0]
    text = render_text(tree)
    assert "rtt_ms > " in text and "q3 + 1.5*iqr" in text and "inconclusive" not in text
    assert tree.path({"rtt_ms": 500}).label == "noise"


def test_feature_importance_ranks_the_informative_feature_first():
    df = flows(300, seed=1)
    y = (df["src_port"] > 10000).astype(int).to_numpy()
    for method in ("impurity", "permutation"):
        table = feature_importance(df, y, ["src_port", "packets", "average_packet_size"], methods=(method,), seed=0)
        imp = table[method].to_dict()
        assert max(imp, key=imp.get) == "src_port"
    tree = build_tree(CIC, None, imp, mode="paper")
    assert tree.nodes[tree.root].feature == "src_port"


def test_max_nodes_bounds_the_faithful_tree():
    lfs = [{"name": f"lf{j}", "label": ["a", "b"][j % 2], "when": [{"feature": f"x{j}", "op": ">", "value": 0}]} for j in range(10)]
    pack = LFPack.from_dict({"pack": "many", "classes": ["a", "b"], "lfs": lfs})
    tree = build_tree(pack)
    assert tree.n_conditions <= 10 * 11 ** 2  # the shared-diagram bound for single-condition LFs
    with pytest.raises(ValueError, match="max_nodes"):
        build_tree(pack, max_nodes=5)


# ---------------------------------------------------------------------------------------------- CLI and imports


def test_cli_explain_prints_path_and_label(tmp_path):
    app = typer.Typer()
    app.command("explain")(explain_cmd)
    app.command("noop")(lambda: None)  # two commands, so "explain" is addressed by name as in flamenco
    tree = build_tree(CIC, None, {"src_port": 0.9, "average_packet_size": 0.1})
    path = tmp_path / "tree.json"
    tree.to_json(path)
    runner = CliRunner()
    res = runner.invoke(app, ["explain", "--tree", str(path), "--point", '{"src_port": 8888, "average_packet_size": 80}'])
    assert res.exit_code == 0, res.output
    assert "label: benign" in res.output
    assert "src_port <= 6600" in res.output and "average_packet_size < 100" in res.output and "8888" in res.output
    res = runner.invoke(app, ["explain", "--tree", str(path), "--point", '{"src_port": 8888, "avg_packet_size": 80}'])
    assert res.exit_code == 0 and "label: inconclusive" in res.output
    assert "did you mean 'avg_packet_size'" in res.output
    assert runner.invoke(app, ["explain", "--tree", str(path), "--point", "[1, 2]"]).exit_code == 2
    assert runner.invoke(app, ["explain", "--tree", str(path), "--point", '{"src_port": "x"}']).exit_code == 2
    (tmp_path / "bad.json").write_text("{not json")
    assert runner.invoke(app, ["explain", "--tree", str(tmp_path / "bad.json"), "--point", "{}"]).exit_code == 2


def test_explain_imports_nothing_heavy():
    code = ("import sys; import flamenco_core.explain, flamenco.cli_explain; "
            "print([m for m in ('prefect', 'mlflow', 'matplotlib', 'graphviz', 'torch') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
