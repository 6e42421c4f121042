"""LF analysis: Snorkel's numbers, LF F1 under each abstain policy, combinations, outputs."""

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.metrics import f1_score, precision_score, recall_score

from flamenco_core.labeling.analysis import (
    combination_f1,
    label_summary,
    lf_f1,
    lf_summary,
    to_csv,
    to_markdown,
)

SNORKEL_COLS = ["j", "Polarity", "Coverage", "Overlaps", "Conflicts", "Correct", "Incorrect", "Emp. Acc."]


def snorkel_summary(L, Y=None, names=None):
    from snorkel.labeling import LFAnalysis, LabelingFunction

    lfs = [LabelingFunction(n, f=lambda x: -1) for n in names] if names else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's int8 -> float64 FutureWarning inside Snorkel
        a = LFAnalysis(L, lfs)
        return a, a.lf_summary(Y)


def random_L(rng, n, m, k, p_abstain=0.5, dtype=np.int8):
    L = rng.integers(0, k, (n, m))
    L[rng.random((n, m)) < p_abstain] = -1
    return L.astype(dtype)


def assert_same_as_snorkel(L, Y, names):
    _, ref = snorkel_summary(L, Y, names)
    ours = lf_summary(L, names, Y)
    cols = [c for c in SNORKEL_COLS if c in ref.columns]
    assert list(ours.index) == list(ref.index)
    for c in cols:
        if c == "Polarity":
            assert [list(map(int, p)) for p in ref[c]] == list(ours[c]), c
        else:
            # identical, not merely close
            np.testing.assert_array_equal(ours[c].to_numpy(), ref[c].to_numpy(), err_msg=c)


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("dtype", [np.int8, np.int64])
def test_lf_summary_identical_to_snorkel(k, dtype):
    rng = np.random.default_rng(k)
    L = random_L(rng, 3000, 6, k, dtype=dtype)
    L[:, 2] = np.where(L[:, 2] == 0, -1, L[:, 2])  # an LF with one polarity only
    L[:, 5] = -1  # an LF that never votes: coverage 0, accuracy 0 (not NaN)
    Y = rng.integers(0, k, 3000)
    names = [f"lf_{c}" for c in "abcdef"]
    assert_same_as_snorkel(L, Y, names)
    # and without gold labels
    _, ref = snorkel_summary(L, None, names)
    ours = lf_summary(L, names)
    assert "Correct" not in ours.columns and "F1" not in ours.columns
    for c in ["Coverage", "Overlaps", "Conflicts"]:
        np.testing.assert_array_equal(ours[c].to_numpy(), ref[c].to_numpy())


def test_label_summary_identical_to_snorkel():
    rng = np.random.default_rng(7)
    L = random_L(rng, 2000, 5, 3, p_abstain=0.7)
    a, _ = snorkel_summary(L)
    s = label_summary(L)
    assert s["rows"] == 2000 and s["lfs"] == 5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert s["coverage"] == a.label_coverage()
        assert s["overlap"] == a.label_overlap()
        assert s["conflict"] == a.label_conflict()


@settings(max_examples=60, deadline=None)
@given(
    L=arrays(np.int8, st.tuples(st.integers(1, 40), st.integers(1, 6)), elements=st.integers(-1, 2)),
    data=st.data(),
)
def test_lf_summary_matches_snorkel_property(L, data):
    Y = np.array(data.draw(st.lists(st.integers(0, 2), min_size=L.shape[0], max_size=L.shape[0])))
    names = [f"lf{j}" for j in range(L.shape[1])]
    assert_same_as_snorkel(L, Y, names)


# ----------------------------------------------------------------------------------------------- LF F1


def binary_case(seed=0, n=4000):
    rng = np.random.default_rng(seed)
    Y = (rng.random(n) < 0.3).astype(int)
    L = np.full((n, 4), -1, np.int8)
    fire = rng.random((n, 4)) < [0.5, 0.3, 0.8, 0.1]
    right = rng.random((n, 4)) < [0.9, 0.7, 0.6, 0.95]
    votes = np.where(right, Y[:, None], 1 - Y[:, None])
    L[fire] = votes[fire]
    L[:, 1] = np.where(L[:, 1] == 0, -1, L[:, 1])  # an "attack only" LF
    return L, Y


def test_f1_negative_matches_sklearn_with_abstain_as_negative():
    L, Y = binary_case()
    out = lf_f1(L, Y, abstain="negative")
    for j in range(L.shape[1]):
        pred = np.where(L[:, j] == -1, 0, L[:, j])
        assert out["F1"].iloc[j] == pytest.approx(f1_score(Y, pred, zero_division=0), abs=1e-12)
        assert out["Precision"].iloc[j] == pytest.approx(precision_score(Y, pred, zero_division=0), abs=1e-12)
        assert out["Recall"].iloc[j] == pytest.approx(recall_score(Y, pred, zero_division=0), abs=1e-12)
        assert out["Coverage"].iloc[j] == pytest.approx((L[:, j] != -1).mean())
        assert out["Evaluated"].iloc[j] == len(Y)
    assert out.attrs["f1_definition"]["abstain"] == "negative"
    assert out.attrs["f1_definition"]["positive_class"] == 1


def test_f1_exclude_scores_covered_rows_only():
    L, Y = binary_case(1)
    out = lf_f1(L, Y, abstain="exclude")
    for j in range(L.shape[1]):
        m = L[:, j] != -1
        assert out["F1"].iloc[j] == pytest.approx(f1_score(Y[m], L[m, j], zero_division=0), abs=1e-12)
        assert out["Evaluated"].iloc[j] == m.sum()


def test_f1_wrong_counts_abstains_as_errors():
    L, Y = binary_case(2)
    out = lf_f1(L, Y, abstain="wrong")
    for j in range(L.shape[1]):
        pred = np.where(L[:, j] == -1, 1 - Y, L[:, j])  # abstain = the wrong class
        assert out["F1"].iloc[j] == pytest.approx(f1_score(Y, pred, zero_division=0), abs=1e-12)
    # ordering of the three readings: wrong <= negative for an LF that only votes attack (abstain is then
    # at best a right "benign" under negative), and exclude >= wrong always
    neg = lf_f1(L, Y, abstain="negative")["F1"]
    exc = lf_f1(L, Y, abstain="exclude")["F1"]
    assert (out["F1"] <= neg + 1e-12).all() and (out["F1"] <= exc + 1e-12).all()


def test_positive_class_by_name_and_index():
    L, Y = binary_case(3)
    classes = ["benign", "attack"]
    a = lf_f1(L, Y, classes=classes)
    b = lf_f1(L, Y, classes=classes, pos_label="attack")
    pd.testing.assert_frame_equal(a, b)
    c = lf_f1(L, Y, classes=classes, pos_label="benign")
    assert c.attrs["f1_definition"]["positive_class"] == "benign"
    assert c.attrs["f1_definition"]["negative_class"] == "attack"
    pred = np.where(L[:, 0] == -1, 1, L[:, 0])
    assert c["F1"].iloc[0] == pytest.approx(f1_score(Y, pred, pos_label=0, zero_division=0))
    with pytest.raises(ValueError, match="positive class 'ddos'"):
        lf_f1(L, Y, classes=classes, pos_label="ddos")


@pytest.mark.parametrize("abstain", ["negative", "exclude"])
def test_macro_f1_for_three_classes(abstain):
    rng = np.random.default_rng(4)
    L = random_L(rng, 3000, 4, 3)
    Y = rng.integers(0, 3, 3000)
    out = lf_f1(L, Y, abstain=abstain)
    assert out.attrs["f1_definition"]["average"] == "macro"
    for j in range(4):
        if abstain == "negative":
            y, p = Y, np.where(L[:, j] == -1, 0, L[:, j])
        else:
            m = L[:, j] != -1
            y, p = Y[m], L[m, j]
        ref = f1_score(y, p, average="macro", labels=[0, 1, 2], zero_division=0)
        assert out["F1"].iloc[j] == pytest.approx(ref, abs=1e-12)


def test_macro_f1_wrong_by_hand():
    # classes 0,1,2; one LF; rows: (y, vote)
    Y = np.array([0, 1, 2, 2])
    L = np.array([[0], [-1], [2], [-1]], dtype=np.int8)
    out = lf_f1(L, Y, abstain="wrong")
    # class 0: tp1; the two inconclusive rows (y=1, y=2) are FPs for class 0 -> fp 2; fn 0 -> F1 2/4
    # class 1: tp0 fp1 (row y=2 inconclusive) fn1 -> 0
    # class 2: tp1 fp1 (row y=1 inconclusive) fn1 -> 2/4
    assert out["F1"].iloc[0] == pytest.approx((0.5 + 0 + 0.5) / 3)


def test_combination_f1_is_majority_vote_with_ties_inconclusive():
    from snorkel.labeling.model import MajorityLabelVoter

    L, Y = binary_case(5)
    names = ["a", "b", "c", "d"]
    combos = [(0, 1), ("a", "c", "d"), (2,), (0, 1, 2, 3)]
    out = combination_f1(L, Y, combos, names, abstain="negative")
    assert list(out.index) == ["a + b", "a + c + d", "c", "a + b + c + d"]
    assert list(out["LFs"]) == [2, 3, 1, 4]
    for i, cols in enumerate([[0, 1], [0, 2, 3], [2], [0, 1, 2, 3]]):
        dec = MajorityLabelVoter(cardinality=2).predict(L[:, cols], tie_break_policy="abstain")
        pred = np.where(dec == -1, 0, dec)
        assert out["F1"].iloc[i] == pytest.approx(f1_score(Y, pred, zero_division=0), abs=1e-12)
        assert out["Coverage"].iloc[i] == pytest.approx((dec != -1).mean())
        tie = (dec == -1) & (L[:, cols] != -1).any(axis=1)
        assert out["Ties"].iloc[i] == pytest.approx(tie.mean())
    # a single-LF combination is that LF
    single = lf_f1(L, Y, names)
    assert out.loc["c", "F1"] == pytest.approx(single.loc["c", "F1"])
    with pytest.raises(ValueError, match="unknown LF 'zz'"):
        combination_f1(L, Y, [("a", "zz")], names)
    with pytest.raises(ValueError, match="twice"):
        combination_f1(L, Y, [("a", 0)], names)


def test_lf_summary_f1_column_and_bad_inputs():
    L, Y = binary_case(6)
    s = lf_summary(L, list("abcd"), Y, ["good", "noise"])
    np.testing.assert_allclose(s["F1"], lf_f1(L, Y)["F1"])
    assert s.attrs["f1_definition"]["positive_class"] == "noise"
    with pytest.raises(ValueError, match="gold label 5"):
        lf_summary(L, list("abcd"), np.where(np.arange(len(Y)) == 3, 5, Y), ["good", "noise"])
    with pytest.raises(ValueError, match="one per row"):
        lf_f1(L, Y[:-1])
    with pytest.raises(ValueError, match="abstain="):
        lf_f1(L, Y, abstain="ignore")
    with pytest.raises(ValueError, match="3 LF names for a label matrix with 4 columns"):
        lf_summary(L, list("abc"))
    with pytest.raises(ValueError, match="cardinality is 2"):
        lf_summary(np.array([[0, 2]]), classes=["good", "noise"])


def test_outputs_csv_markdown_rich(tmp_path):
    L, Y = binary_case(7, n=500)
    df = lf_summary(L, ["a", "b|pipe", "c", "d"], Y, ["benign", "attack"])
    path = to_csv(df, tmp_path / "out" / "summary.csv")
    back = pd.read_csv(path, index_col=0)
    assert list(back.index) == ["a", "b|pipe", "c", "d"]
    np.testing.assert_allclose(back["Coverage"], df["Coverage"])
    assert back.loc["b|pipe", "Polarity"] == "attack"
    md = to_markdown(df)
    lines = md.strip().splitlines()
    assert lines[0].startswith("| LF | j | Polarity | Coverage")
    assert len(lines) == 2 + 4
    assert "b\\|pipe" in md and "benign, attack" in md


def test_vectorized_scale():
    # 1M rows x 10 LFs must stay a matter of seconds (no per-row Python)
    import time

    rng = np.random.default_rng(8)
    L = random_L(rng, 1_000_000, 10, 2)
    Y = rng.integers(0, 2, 1_000_000)
    t = time.perf_counter()
    lf_summary(L, None, Y)
    combination_f1(L, Y, [(0, 1), (2, 3, 4)])
    assert time.perf_counter() - t < 30
