"""Evaluation: scores against scikit-learn and labeling.analysis, prediction differences, the paper's
two-level averaging, tables (Markdown shape, CSV) and plots (valid PNGs)."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from flamenco_core.evaluation import (
    METHOD_LABELS,
    average_scores,
    classification_scores,
    comparison_table,
    confusion_matrix,
    confusion_matrix_plot,
    dataset_scores,
    difference_columns,
    f1_bar_chart,
    group_combination_table,
    pair_table,
    paper_tables,
    prediction_difference,
    prediction_difference_matrix,
    prediction_difference_table,
    records_frame,
    scores_long,
    single_lf_table,
    to_csv,
    to_markdown,
    write_tables,
)
from flamenco_core.labeling.analysis import lf_f1

CLASS_SETS = {2: ["good", "noise"], 3: ["benign", "scan", "attack"], 4: ["a", "b", "c", "d"]}


@st.composite
def labelled(draw, inconclusive: bool = False):
    k = draw(st.sampled_from([2, 3, 4]))
    n = draw(st.integers(min_value=1, max_value=60))
    lo = -1 if inconclusive else 0
    y_true = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    y_pred = draw(st.lists(st.integers(lo, k - 1), min_size=n, max_size=n))
    return k, np.array(y_true), np.array(y_pred)


def _sk(y_true, y_pred, k):
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(range(k)), zero_division=0)
    return p, r, f, s, accuracy_score(y_true, y_pred) if len(y_true) else math.nan


def _check_against_sklearn(scores, classes, y_true, y_pred):
    k = len(classes)
    p, r, f, s, acc = _sk(y_true, y_pred, k)
    for i, c in enumerate(classes):
        assert scores[f"f1_{c}"] == pytest.approx(f[i])
        assert scores[f"precision_{c}"] == pytest.approx(p[i])
        assert scores[f"recall_{c}"] == pytest.approx(r[i])
        assert scores[f"support_{c}"] == s[i]
    assert scores["f1_macro"] == pytest.approx(f.mean())
    assert scores["precision_macro"] == pytest.approx(p.mean())
    assert scores["recall_macro"] == pytest.approx(r.mean())
    if len(y_true):
        assert scores["accuracy"] == pytest.approx(acc)


@settings(max_examples=40, deadline=None)
@given(labelled())
def test_scores_equal_sklearn_without_inconclusive(case):
    k, y_true, y_pred = case
    classes = CLASS_SETS[k]
    for policy in ("negative", "exclude", "wrong"):
        scores = classification_scores(y_true, y_pred, classes, abstain=policy)
        _check_against_sklearn(scores, classes, y_true, y_pred)
        assert scores["coverage"] == 1.0 and scores["evaluated"] == len(y_true)


@settings(max_examples=40, deadline=None)
@given(labelled(inconclusive=True))
def test_inconclusive_policies_match_sklearn_on_rewritten_predictions(case):
    k, y_true, y_pred = case
    classes = CLASS_SETS[k]
    neg = 0  # binary: the class other than the positive (index 1); k > 2: class 0
    s_neg = classification_scores(y_true, y_pred, classes, abstain="negative")
    _check_against_sklearn(s_neg, classes, y_true, np.where(y_pred == -1, neg, y_pred))
    keep = y_pred != -1
    s_exc = classification_scores(y_true, y_pred, classes, abstain="exclude")
    if keep.any():
        _check_against_sklearn(s_exc, classes, y_true[keep], y_pred[keep])
    assert s_exc["evaluated"] == int(keep.sum())
    assert s_exc["coverage"] == pytest.approx(keep.mean())


@settings(max_examples=40, deadline=None)
@given(labelled(inconclusive=True))
def test_f1_matches_labeling_analysis_for_every_policy(case):
    """The same F1 definitions as LF F1 (labeling.analysis), so LF / classifier / Tree F1 compare."""
    k, y_true, y_pred = case
    classes = CLASS_SETS[k]
    for policy in ("negative", "exclude", "wrong"):
        ours = classification_scores(y_true, y_pred, classes, abstain=policy)
        theirs = lf_f1(y_pred[:, None], y_true, ["x"], classes=classes, abstain=policy).iloc[0]
        assert ours["f1"] == pytest.approx(theirs["F1"])
        if k > 2:
            assert ours["f1_macro"] == pytest.approx(theirs["F1"])
            assert ours["precision_macro"] == pytest.approx(theirs["Precision"])
            assert ours["recall_macro"] == pytest.approx(theirs["Recall"])
        else:
            assert ours["precision_noise"] == pytest.approx(theirs["Precision"])
            assert ours["recall_noise"] == pytest.approx(theirs["Recall"])


def test_wrong_policy_counts_inconclusive_as_errors():
    y_true = np.array([1, 1, 0, 0])
    y_pred = np.array([1, -1, 0, -1])
    s = classification_scores(y_true, y_pred, ["benign", "attack"], abstain="wrong")
    # attack: tp 1, fn 1 (inconclusive attack), fp 1 (inconclusive benign)
    assert s["precision_attack"] == pytest.approx(0.5)
    assert s["recall_attack"] == pytest.approx(0.5)
    assert s["accuracy"] == pytest.approx(0.5)
    assert s["coverage"] == pytest.approx(0.5)


def test_names_and_indices_agree_and_unknown_classes_raise():
    classes = ["good", "noise"]
    y_true = ["good", "noise", "noise", "good"]
    y_pred = ["good", "noise", None, "inconclusive"]
    by_name = classification_scores(y_true, y_pred, classes)
    by_index = classification_scores([0, 1, 1, 0], [0, 1, -1, -1], classes)
    assert by_name == by_index
    with pytest.raises(ValueError, match="unknown classes"):
        classification_scores(y_true, ["good", "spam", "noise", "good"], classes)
    with pytest.raises(ValueError, match="conclusive"):
        classification_scores([0, -1], [0, 1], classes)
    with pytest.raises(ValueError, match="rows"):
        classification_scores([0, 1], [0], classes)


def test_positive_class_and_confusion_matrix():
    classes = ["benign", "attack"]
    y_true = [0, 0, 1, 1, 1]
    y_pred = [0, 1, 1, 1, -1]
    s_attack = classification_scores(y_true, y_pred, classes)
    s_benign = classification_scores(y_true, y_pred, classes, positive="benign")
    assert s_attack["f1"] == s_attack["f1_attack"]
    # with benign positive, an inconclusive row becomes "attack" under the negative policy
    assert s_benign["f1"] == s_benign["f1_benign"]
    assert s_benign["recall_attack"] == pytest.approx(1.0)
    cm = confusion_matrix(y_true, y_pred, classes)
    assert cm.loc["attack"].tolist() == [0, 2, 1]
    assert cm.loc["benign"].tolist() == [1, 1, 0]
    assert list(cm.columns) == ["benign", "attack", "inconclusive"]


def test_prediction_difference_and_matrix():
    rng = np.random.default_rng(3)
    n = 1000
    preds = {name: rng.integers(-1, 2, n) for name in ("lf", "classifier", "tree")}
    preds["tree"][:500] = preds["lf"][:500]
    m = prediction_difference_matrix(preds, sample_frac=0.2, seed=7)
    assert list(m.index) == list(m.columns) == ["lf", "classifier", "tree"]
    assert np.allclose(m.to_numpy(), m.to_numpy().T)
    assert np.all(np.diag(m.to_numpy()) == 0)
    assert m.attrs["rows"] == 200 and m.attrs["total_rows"] == n
    idx = np.sort(np.random.default_rng(7).choice(n, size=200, replace=False))
    for a in preds:
        for b in preds:
            assert m.loc[a, b] == pytest.approx(np.mean(preds[a][idx] != preds[b][idx]))
    full = prediction_difference_matrix(preds, sample_frac=None)
    assert full.loc["lf", "tree"] == pytest.approx(prediction_difference(preds["lf"], preds["tree"]))
    assert prediction_difference([-1, 0], [-1, 1]) == 0.5  # two inconclusives agree
    assert prediction_difference(["good", "noise"], [0, 0], classes=["good", "noise"]) == 0.5
    with pytest.raises(TypeError):
        prediction_difference(["good"], [0])
    assert math.isnan(prediction_difference([], []))


def test_two_level_average_is_unweighted():
    per_subset = pd.DataFrame(
        {
            "src": ["a", "a", "b", "a", "a", "b"],
            "dst": ["x", "x", "y", "x", "x", "y"],
            "subset": [0, 1, 0, 0, 1, 0],
            "method": ["flamenco"] * 3 + ["lof"] * 3,
            "f1_noise": [0.2, 0.4, 0.9, 0.0, 0.2, np.nan],
            "f1_good": [1.0, 0.8, 0.6, 0.5, 0.5, 0.5],
            "rows": [100, 5, 10, 100, 5, 10],
        }
    )
    per_dataset = dataset_scores(per_subset)
    assert set(per_dataset.columns) >= {"src", "dst", "method", "f1_noise", "f1_good", "n_subsets"}
    avg = average_scores(per_subset)
    # pair a-x averages its subsets (0.3), then pairs are averaged: (0.3 + 0.9) / 2, not (0.2+0.4+0.9)/3
    assert avg.loc["flamenco", "f1_noise"] == pytest.approx(0.6)
    assert avg.loc["flamenco", "f1_good"] == pytest.approx((0.9 + 0.6) / 2)
    assert avg.loc["lof", "f1_noise"] == pytest.approx(0.1)  # NaN pair skipped
    assert avg.loc["flamenco", "n_datasets"] == 2 and avg.loc["flamenco", "n_subsets"] == 3
    assert "rows" not in avg.columns  # not a metric
    single = average_scores(per_subset[per_subset.method == "flamenco"].drop(columns="method"), group=None)
    assert single.loc["all", "f1_noise"] == pytest.approx(0.6)


def test_comparison_table_from_report_records():
    pairs = [
        {"src": "a", "dst": "x", "rows": 100, "modality": 1, "f1_good": 0.9, "f1_noise": 0.8, "f1_macro": 0.85,
         "baselines": {"lof": {"f1_good": 0.5, "f1_noise": 0.3, "f1_macro": 0.4},
                       "isolation_forest": {"f1_good": 0.6, "f1_noise": 0.2, "f1_macro": 0.4}}},
        {"src": "b", "dst": "y", "rows": 50, "modality": 2, "f1_good": 1.0, "f1_noise": 1.0, "f1_macro": 1.0,
         "baselines": {"lof": {"f1_good": 0.7, "f1_noise": 0.5, "f1_macro": 0.6},
                       "isolation_forest": {"f1_good": 0.6, "f1_noise": 0.4, "f1_macro": 0.5}}},
    ]
    long = scores_long(pairs)
    assert set(long["method"]) == {"flamenco", "lof", "isolation_forest"}
    table = comparison_table(pairs)
    assert list(table.index) == ["flamenco", "lof", "isolation_forest"]
    assert list(table.columns[:3]) == ["f1_good", "f1_noise", "f1_macro"]
    assert table.loc["flamenco", "f1_noise"] == pytest.approx(0.9)
    assert table.loc["lof", "f1_macro"] == pytest.approx(0.5)
    md = to_markdown(table, index_labels=METHOD_LABELS)
    assert "FLAMENCO" in md and "Isolation Forest" in md


def _check_markdown(md: str, n_cols: int) -> list[list[str]]:
    lines = md.rstrip("\n").split("\n")
    assert len({len(line) for line in lines}) == 1, "rows padded to the same width"
    pipes = [[m.start() for m in re.finditer(r"(?<!\\)\|", line)] for line in lines]
    assert all(p == pipes[0] for p in pipes), "pipes line up"
    assert len(pipes[0]) == n_cols + 1
    assert re.fullmatch(r"\|( :?-+:? \|)+", lines[1]), "header separator"
    return [[c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def _records():
    return [
        {"lfs": ["src_port_le_6600"], "groups": ["A"], "features": ["src_port"], "lf_f1": 0.9, "cls_f1": 0.92,
         "tree_f1": 0.9, "coverage": 0.4, "conflicts": 0.0},
        {"lfs": ["src_port_ge_9000"], "groups": ["A"], "features": ["src_port"], "lf_f1": 0.0, "cls_f1": 0.5,
         "tree_f1": 0.0, "coverage": 0.0, "conflicts": 0.0, "outcome": "ok", "reason": "covers no test point"},
        {"lfs": ["src_port_le_6600", "src_port_ge_9000"], "groups": ["A"], "features": ["src_port"],
         "lf_f1": 0.91, "cls_f1": 0.95, "tree_f1": 0.91, "correlation": float("nan"), "coverage": 0.6,
         "conflicts": 0.0, "prediction_differences": {"lf_vs_cls": 0.1, "lf_vs_tree": 0.0, "cls_vs_tree": 0.1}},
        {"lfs": "avg_pkt_lt_100 + iat_min_lt_mean", "groups": ["A", "B"], "features": ["avg_packet_size", "flow_iat_min"],
         "lf_f1": 0.7, "cls_f1": 0.8, "tree_f1": 0.6, "correlation": 0.35, "coverage": 0.9, "conflicts": 0.2,
         "differences": pd.DataFrame([[0, 0.2, 0.3], [0.2, 0, 0.1], [0.3, 0.1, 0]],
                                     index=["lf", "classifier", "tree"], columns=["lf", "classifier", "tree"])},
        {"lfs": ["a", "b", "c"], "groups": ["A", "B"], "features": ["x", "y"], "outcome": "failed",
         "reason": "LF on missing feature 'z'"},
    ]


def test_records_and_paper_tables():
    df = records_frame(_records())
    assert list(df["n_lfs"]) == [1, 1, 2, 2, 3]
    assert df.loc[3, "combination"] == "avg_pkt_lt_100 + iat_min_lt_mean"
    assert df.loc[3, "diff_lf_cls"] == pytest.approx(0.2) and df.loc[3, "diff_cls_tree"] == pytest.approx(0.1)
    assert df.loc[2, "diff_lf_tree"] == 0.0
    assert df.loc[4, "outcome"] == "failed" and math.isnan(df.loc[4, "lf_f1"])

    single = single_lf_table(df)
    assert list(single.index) == ["src_port_le_6600", "src_port_ge_9000"]
    assert "correlation" not in single.columns
    pairs = pair_table(_records())
    assert list(pairs["lf_1"]) == ["src_port_le_6600", "avg_pkt_lt_100"]
    assert pairs.loc["avg_pkt_lt_100 + iat_min_lt_mean", "correlation"] == pytest.approx(0.35)
    groups = group_combination_table(df)
    assert list(groups.index) == ["avg_pkt_lt_100 + iat_min_lt_mean", "a + b + c"]
    diffs = prediction_difference_table(df)
    assert list(diffs.columns) == ["n_lfs", "diff_lf_cls", "diff_lf_tree", "diff_cls_tree"]
    tables = paper_tables(df, dataset="cic")
    assert set(tables) == {"cic_single_lf", "cic_pairs", "cic_group_combinations", "cic_prediction_differences"}
    for name, table in tables.items():
        rows = _check_markdown(to_markdown(table), len(table.columns) + 1)
        assert len(rows) == len(table) + 2
    md_rows = _check_markdown(to_markdown(pairs), len(pairs.columns) + 1)
    assert md_rows[0][:3] == ["LFs", "LF 1", "LF 2"]
    assert md_rows[2][4] == "–"  # NaN correlation of a one-feature pair shows blank-like


def test_difference_columns_forms():
    assert difference_columns({("tree", "lf"): 0.3})["diff_lf_tree"] == 0.3
    assert difference_columns({"classifier": {"tree": 0.2}})["diff_cls_tree"] == 0.2
    assert difference_columns({"diff_lf_cls": 0.1})["diff_lf_cls"] == 0.1
    with pytest.raises(ValueError):
        difference_columns({"lf_vs_forest": 0.1})


def test_markdown_escapes_and_alignment():
    df = pd.DataFrame({"name": ["a|b", "long name"], "score": [0.5, float("nan")], "n": [1, 20]},
                      index=pd.Index(["x", "y"], name="key"))
    md = to_markdown(df, floatfmt=".2f")
    rows = _check_markdown(md, 4)
    assert rows[2] == ["x", "a\\|b", "0.50", "1"]
    assert rows[3][2] == "–"
    sep = md.split("\n")[1]
    assert sep.split("|")[3].strip().endswith(":")  # numbers right-aligned
    no_index = to_markdown(df, index=False)
    _check_markdown(no_index, 3)


def test_csv_and_write_tables(tmp_path):
    tables = paper_tables(_records())
    written = write_tables(tables, tmp_path / "tables")
    for name, paths in written.items():
        assert paths["csv"].is_file() and paths["markdown"].is_file()
        back = pd.read_csv(paths["csv"], index_col=0)
        assert len(back) == len(tables[name])
    single = pd.read_csv(written["single_lf"]["csv"], index_col=0)
    assert single.loc["src_port_le_6600", "features"] == "src_port"
    p = to_csv(pd.DataFrame({"x": [1.0 / 3]}), tmp_path / "x.csv")
    assert pd.read_csv(p, index_col=0)["x"].iloc[0] == pytest.approx(1.0 / 3, abs=1e-15)


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_plots_write_valid_pngs(tmp_path):
    from matplotlib.image import imread

    table = pd.DataFrame({"f1_good": [0.99, 0.8, 0.6], "f1_noise": [0.95, 0.3, np.nan], "f1_macro": [0.97, 0.55, 0.6]},
                         index=pd.Index(["flamenco", "lof", "isolation_forest"], name="method"))
    bar = f1_bar_chart(table, tmp_path / "fig" / "bars.png", title="Ark")
    cm = confusion_matrix([0, 1, 1, 0, 1], [0, 1, -1, 1, 1], ["good", "noise"])
    cmp = confusion_matrix_plot(cm, tmp_path / "cm.png", title="noise")
    cmn = confusion_matrix_plot(cm, tmp_path / "cm_norm.png", normalize=True)
    for p in (bar, cmp, cmn):
        assert p.read_bytes()[:8] == PNG_MAGIC
        img = imread(p)
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    with pytest.raises(ValueError, match="metric"):
        f1_bar_chart(table.drop(columns="f1_macro"), tmp_path / "x.png")


def test_import_boundary():
    """Core evaluation imports neither prefect nor mlflow, and matplotlib only when plotting."""
    code = ("import sys, flamenco_core.evaluation, flamenco_core.preprocess.feature_selection, "
            "flamenco_core.preprocess.ground_truth; "
            "bad = [m for m in ('prefect', 'mlflow', 'matplotlib') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
