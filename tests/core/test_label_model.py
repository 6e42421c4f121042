"""Label models: equality with Snorkel, determinism, fallback below 3 LFs, recovery, filtering."""

import numpy as np
import pandas as pd
import pytest

from builders import lf_votes
from flamenco_core.labeling.label_model import (
    MajorityVote,
    SnorkelLabelModel,
    _encode_rows,
    filter_unlabeled,
    make_label_model,
    majority_vote,
    preds_from_probs,
)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    # Snorkel's reference fits optimize tiny matrices; worker threads only slow them down on busy CI
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def synthetic_L(n=6000, accs=(0.9, 0.8, 0.75, 0.7, 0.65), cov=0.6, k=2, seed=0, balance=None):
    """Labels from known LF accuracies: each LF votes on a ``cov`` fraction of rows, right with its accuracy,
    otherwise a uniformly drawn wrong class."""
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=balance)
    return lf_votes(rng, y, accs, cov, k), y


def snorkel_fit(L, k=2, **kw):
    from snorkel.labeling.model import LabelModel

    lm = LabelModel(cardinality=k, verbose=False)
    lm.fit(L, progress_bar=False, **kw)
    return lm


@pytest.mark.parametrize(
    "k, kwargs",
    [
        (2, dict(seed=123)),
        (2, dict(seed=7, n_epochs=300, lr=0.02, class_balance=[0.7, 0.3])),
        (3, dict(seed=1, n_epochs=150)),
    ],
)
def test_snorkel_label_model_equals_snorkel(k, kwargs):
    import torch

    L, _ = synthetic_L(n=5000, k=k, seed=k)
    ref = snorkel_fit(L, k, **kwargs)
    ours = SnorkelLabelModel(cardinality=k, **kwargs).fit(L)
    # the compressed O gives the very same fit
    assert torch.equal(ours.model_.O, ref.O)
    assert torch.equal(ours.model_.mu, ref.mu)
    np.testing.assert_allclose(ours.predict_proba(L), ref.predict_proba(L), rtol=1e-10, atol=1e-13)
    np.testing.assert_array_equal(ours.predict(L), ref.predict(L, tie_break_policy="abstain"))
    np.testing.assert_allclose(ours.weights(), ref.get_weights())
    assert ours.name == "snorkel_label_model" and ours.fallback_reason is None


@pytest.mark.parametrize("m", [15, 45])
def test_equal_on_wide_matrices(m):
    # 15 LFs: 3^15 codes, the sort path; 45 LFs: beyond int64 codes, Snorkel's own dense path
    import torch

    L, _ = synthetic_L(n=3000, accs=np.linspace(0.6, 0.9, m), cov=0.3, seed=m)
    if m == 45:
        assert _encode_rows(L + 1, 3) is None
    ref = snorkel_fit(L, seed=3)
    ours = SnorkelLabelModel(seed=3).fit(L)
    assert torch.equal(ours.model_.mu, ref.mu)
    np.testing.assert_allclose(ours.predict_proba(L), ref.predict_proba(L), rtol=1e-9, atol=1e-12)


def test_y_dev_sets_class_balance_as_in_snorkel():
    import torch

    L, y = synthetic_L(n=3000, seed=11, balance=[0.8, 0.2])
    ref = snorkel_fit(L, seed=2, Y_dev=y[:500])
    ours = SnorkelLabelModel(seed=2).fit(L, Y_dev=y[:500])
    assert torch.equal(ours.model_.mu, ref.mu)


def test_deterministic_by_seed():
    L, _ = synthetic_L(n=4000, seed=5)
    a = SnorkelLabelModel(seed=42).fit(L).predict_proba(L)
    b = SnorkelLabelModel(seed=42).fit(L).predict_proba(L)
    np.testing.assert_array_equal(a, b)
    c = SnorkelLabelModel(seed=43).fit(L).predict_proba(L)
    assert not np.array_equal(a, c)  # the seed scales Snorkel's random initialization
    # random tie-breaking is seeded too
    P = np.full((1000, 2), 0.5)
    np.testing.assert_array_equal(preds_from_probs(P, "random", seed=1), preds_from_probs(P, "random", seed=1))


def test_majority_vote_equals_snorkel_voter():
    from snorkel.labeling.model import MajorityLabelVoter

    rng = np.random.default_rng(3)
    for k in (2, 3):
        L = rng.integers(-1, k, (3000, 5)).astype(np.int8)
        L[:50] = -1  # rows nobody votes on
        ref = MajorityLabelVoter(cardinality=k)
        mv = MajorityVote(cardinality=k).fit(L)
        np.testing.assert_array_equal(mv.predict(L), ref.predict(L, tie_break_policy="abstain"))
        np.testing.assert_array_equal(majority_vote(L, k), ref.predict(L, tie_break_policy="abstain"))
        np.testing.assert_allclose(MajorityVote(k, proba="snorkel").predict_proba(L), ref.predict_proba(L))
        # vote fractions; uniform where nobody voted
        P = mv.predict_proba(L)
        counts = np.stack([(L == c).sum(1) for c in range(k)], 1)
        covered = counts.sum(1) > 0
        np.testing.assert_allclose(P[covered], counts[covered] / counts[covered].sum(1, keepdims=True))
        np.testing.assert_allclose(P[~covered], 1.0 / k)
        np.testing.assert_array_equal(mv.predict(L), preds_from_probs(P))


def test_preds_from_probs_matches_snorkel():
    from snorkel.utils import probs_to_preds

    rng = np.random.default_rng(9)
    P = rng.random((2000, 3))
    P[::7, 1] = P[::7, 0]  # exact ties
    P[::11, 2] = P[::11, 0] + 1e-7  # ties within Snorkel's tolerance
    P /= P.sum(1, keepdims=True)
    np.testing.assert_array_equal(preds_from_probs(P, "abstain"), probs_to_preds(P, "abstain"))
    r = preds_from_probs(P, "random", seed=0)
    tied = preds_from_probs(P, "abstain") == -1
    assert (r >= 0).all()
    np.testing.assert_array_equal(r[~tied], P[~tied].argmax(1))
    # a random pick is one of the tied classes
    assert np.all(np.abs(P[tied, r[tied]] - P[tied].max(1)) < 1e-5)
    with pytest.raises(ValueError, match="tie_break_policy"):
        preds_from_probs(P, "first")


def test_fallback_below_three_lfs():
    L, y = synthetic_L(n=2000, accs=(0.9, 0.7), seed=2)
    two = make_label_model("snorkel", n_lfs=2, seed=1)
    assert isinstance(two, MajorityVote) and two.name == "majority_vote"
    assert "at least 3 LFs" in two.fallback_reason and "2" in two.fallback_reason
    np.testing.assert_array_equal(two.fit(L).predict(L), majority_vote(L, 2))
    one = make_label_model("snorkel", n_lfs=1)
    assert one.name == "single_lf" and "own votes" in one.fallback_reason
    np.testing.assert_array_equal(one.fit(L[:, :1]).predict(L[:, :1]), L[:, 0])
    three = make_label_model("snorkel", n_lfs=3, seed=4, n_epochs=50)
    assert isinstance(three, SnorkelLabelModel) and three.fallback_reason is None
    assert three.get_params()["n_epochs"] == 50 and three.seed == 4
    assert make_label_model("majority", n_lfs=5).name == "majority_vote"
    assert make_label_model("majority", n_lfs=5).fallback_reason is None
    desc = two.describe()
    assert desc["name"] == "majority_vote" and desc["fallback_reason"] == two.fallback_reason
    with pytest.raises(ValueError, match="at least 3 LFs"):
        SnorkelLabelModel().fit(L)
    with pytest.raises(ValueError, match="unknown label model"):
        make_label_model("flyingsnake", n_lfs=3)
    with pytest.raises(ValueError, match="at least one LF"):
        make_label_model("snorkel", n_lfs=0)


def test_label_model_recovers_labels_better_than_a_single_lf():
    L, y = synthetic_L(n=20000, accs=(0.85, 0.8, 0.75, 0.7, 0.65), cov=0.6, seed=21)
    lm = make_label_model("snorkel", n_lfs=L.shape[1], seed=0).fit(L)
    pred = lm.predict(L, tie_break_policy="random")
    lm_acc = (pred == y).mean()
    best_single = max(((L[:, j] == y).mean() for j in range(L.shape[1])))  # an abstain is not a recovery
    assert lm_acc > best_single + 0.2
    # on the rows some LF votes on, weighting LFs by learned accuracy beats counting votes
    covered = (L != -1).any(1)
    mv = MajorityVote().fit(L).predict(L, tie_break_policy="random")
    assert (pred[covered] == y[covered]).mean() > (mv[covered] == y[covered]).mean() + 0.01
    # the learned accuracies are the ones the LFs were built with
    np.testing.assert_allclose(lm.weights(), [0.85, 0.8, 0.75, 0.7, 0.65], atol=0.03)


def test_input_checks():
    with pytest.raises(ValueError, match="2-D"):
        MajorityVote().fit(np.array([0, 1, -1]))
    with pytest.raises(ValueError, match="cardinality is 2"):
        MajorityVote().fit(np.array([[0, 2]]))
    with pytest.raises(ValueError, match="-2"):
        MajorityVote().fit(np.array([[0, -2]]))
    with pytest.raises(RuntimeError, match="not fitted"):
        SnorkelLabelModel().predict_proba(np.zeros((2, 3), int))
    lm = SnorkelLabelModel(seed=0).fit(synthetic_L(n=500)[0])
    with pytest.raises(ValueError, match="fitted on 5 LFs"):
        lm.predict(np.zeros((2, 3), int))
    with pytest.raises(ValueError, match="class_balance"):
        SnorkelLabelModel(class_balance=[0.5, 0.2, 0.3])


def test_filter_unlabeled():
    L = np.array([[0, -1], [-1, -1], [1, 1], [-1, -1]], dtype=np.int8)
    X = pd.DataFrame({"bytes": [1.0, 2.0, 3.0, 4.0]}, index=[10, 11, 12, 13])
    probs = MajorityVote().fit(L).predict_proba(L)
    Xf, pf, dropped = filter_unlabeled(X, probs, L)
    assert dropped == 2 and list(Xf.index) == [10, 12] and pf.shape == (2, 2)
    Xa, pa, d = filter_unlabeled(X.to_numpy(), probs, L)
    assert d == 2 and Xa.shape == (2, 1)
    same = filter_unlabeled(X, probs, L, enabled=False)
    assert same.dropped == 0 and same.X is X
    with pytest.raises(ValueError, match="row counts differ"):
        filter_unlabeled(X.iloc[:3], probs, L)
