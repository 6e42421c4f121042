"""Every label model of the registry on label matrices whose right answer is known (k = 4), and the
fallbacks recorded (flamenco_core.labeling.label_models)."""

from __future__ import annotations

import numpy as np
import pytest

from builders import lf_votes
from flamenco_core.labeling.constants import ABSTAIN
from flamenco_core.labeling.label_models import KINDS, REGISTRY, CrowdKitLabelModel, fit_all, make

K = 4


def _truth(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).choice(K, size=n, p=[0.4, 0.3, 0.2, 0.1])


def _workers(y: np.ndarray, accuracies, coverage: float, seed: int) -> np.ndarray:
    """LFs that vote on a ``coverage`` share of rows, right with their accuracy, else a uniformly drawn
    wrong class: Dawid-Skene's generative model, so every model should recover ``y``."""
    return lf_votes(np.random.default_rng(seed), y, accuracies, coverage, K)


def _one_class_lfs(y: np.ndarray, seed: int) -> np.ndarray:
    """Two LFs per class, each voting only its class (as declarative LFs do): recall 0.7, 4% false fires."""
    rng = np.random.default_rng(seed)
    cols = []
    for c in range(K):
        for _ in range(2):
            fire = np.where(y == c, rng.random(len(y)) < 0.7, rng.random(len(y)) < 0.04)
            cols.append(np.where(fire, c, ABSTAIN))
    return np.stack(cols, axis=1).astype(np.int8)


@pytest.mark.parametrize("kind", KINDS)
def test_every_model_recovers_known_labels(kind):
    y = _truth(3000, seed=1)
    L = _workers(y, [0.9, 0.8, 0.75, 0.7, 0.65, 0.85], coverage=0.8, seed=2)
    model = make(kind, n_lfs=L.shape[1], cardinality=K, seed=0).fit(L)
    assert model.fallback_reason is None, model.fallback_reason
    proba = model.predict_proba(L)
    assert proba.shape == (len(y), K)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    pred = model.predict(L)
    acc = float((pred == y).mean())
    # the best single LF is right on 0.9 * 0.8 = 72% of rows; combining six must do much better
    assert acc > 0.88, (kind, model.name, acc)
    # held-out rows drawn the same way: the fitted parameters transfer (predict is not transductive)
    y2 = _truth(1000, seed=3)
    L2 = _workers(y2, [0.9, 0.8, 0.75, 0.7, 0.65, 0.85], coverage=0.8, seed=4)
    assert float((model.predict(L2) == y2).mean()) > 0.85


def test_learned_accuracies_order_the_lfs():
    y = _truth(4000, seed=5)
    acc = [0.95, 0.55, 0.8]
    L = _workers(y, acc, coverage=0.9, seed=6)
    for kind in ("dawid_skene", "one_coin_ds"):
        w = make(kind, n_lfs=3, cardinality=K).fit(L).weights()
        assert np.argsort(w).tolist() == np.argsort(acc).tolist(), (kind, w)


def test_crowdkit_adapter_matches_crowdkit_on_the_fitted_rows():
    from crowdkit.aggregation import OneCoinDawidSkene

    from flamenco_core.labeling.label_models import crowd_frame, quiet_crowdkit

    y = _truth(1500, seed=7)
    L = _workers(y, [0.85, 0.7, 0.75, 0.6], coverage=0.7, seed=8)
    ours = make("one_coin_ds", n_lfs=4, cardinality=K).fit(L)
    with quiet_crowdkit():
        theirs = OneCoinDawidSkene(n_iter=100).fit(crowd_frame(L))
    tasks = theirs.labels_.index.to_numpy()
    agree = (ours.predict(L)[tasks] == theirs.labels_.to_numpy().astype(int)).mean()
    assert agree > 0.99


def test_dawid_skene_falls_back_on_one_class_lfs_and_says_so():
    y = _truth(2000, seed=9)
    L = _one_class_lfs(y, seed=10)
    ds = make("dawid_skene", n_lfs=L.shape[1], cardinality=K).fit(L)
    assert ds.name == "one_coin_dawid_skene"
    assert "votes one class" in ds.fallback_reason
    assert ds.describe()["requested"] == "dawid_skene"
    assert ds.describe()["fallback_reason"] == ds.fallback_reason
    covered = (L != ABSTAIN).any(axis=1)
    # still a label model: better than chance on the covered rows
    assert float((ds.predict(L)[covered] == y[covered]).mean()) > 0.5


@pytest.mark.parametrize("kind", ["dawid_skene", "one_coin_ds", "mmsr"])
def test_one_lf_is_its_own_votes(kind):
    y = _truth(500, seed=11)
    L = _workers(y, [0.8], coverage=0.6, seed=12)
    model = make(kind, n_lfs=1, cardinality=K).fit(L)
    assert model.name == "single_lf" and "at least 2 LFs" in model.fallback_reason
    voted = L[:, 0] != ABSTAIN
    assert (model.predict(L)[voted] == L[voted, 0]).all()
    assert (model.predict(L)[~voted] == ABSTAIN).all()


def test_snorkel_fallbacks_are_recorded():
    y = _truth(500, seed=13)
    L = _workers(y, [0.8, 0.7], coverage=0.6, seed=14)
    two = make("snorkel", n_lfs=2, cardinality=K).fit(L)
    assert two.name == "majority_vote" and "at least 3 LFs" in two.fallback_reason
    one = make("snorkel", n_lfs=1, cardinality=K).fit(L[:, :1])
    assert one.name == "single_lf" and one.fallback_reason


def test_no_votes_falls_back_to_uniform():
    L = np.full((50, 3), ABSTAIN, dtype=np.int8)
    model = make("mmsr", n_lfs=3, cardinality=K).fit(L)
    assert model.name == "majority_vote" and "no LF votes" in model.fallback_reason
    np.testing.assert_allclose(model.predict_proba(L), 1.0 / K)


@pytest.mark.parametrize("kind", ["dawid_skene", "one_coin_ds", "mmsr"])
def test_votes_for_one_class_fall_back_to_majority_vote(kind):
    # three benign-only LFs (the benign LFs of a multi-class pack, run as their own combination)
    y = _truth(400, seed=19)
    L = np.where(_one_class_lfs(y, seed=20)[:, :2] == ABSTAIN, ABSTAIN, 0).astype(np.int8)
    model = make(kind, n_lfs=2, cardinality=K).fit(L)
    assert model.name == "majority_vote" and "one class" in model.fallback_reason
    voted = (L != ABSTAIN).any(axis=1)
    assert (model.predict(L)[voted] == 0).all() and (model.predict(L)[~voted] == ABSTAIN).all()


def test_fit_all_times_every_model_and_keeps_going():
    y = _truth(800, seed=15)
    L = _workers(y, [0.9, 0.8, 0.7], coverage=0.7, seed=16)
    results = fit_all(L, K, seed=0)
    assert [r.kind for r in results] == list(KINDS) == list(REGISTRY)
    assert all(r.error is None and r.seconds >= 0 for r in results)
    rec = results[0].describe()
    assert {"kind", "name", "fallback_reason", "params", "fit_seconds", "error"} <= set(rec)


def test_fit_sample_is_seeded_and_recorded():
    y = _truth(3000, seed=17)
    L = _workers(y, [0.9, 0.8, 0.7], coverage=0.9, seed=18)
    a = CrowdKitLabelModel("one_coin_ds", cardinality=K, seed=3, max_fit_rows=500).fit(L)
    b = CrowdKitLabelModel("one_coin_ds", cardinality=K, seed=3, max_fit_rows=500).fit(L)
    assert a.fit_rows_ == 500 and a.describe()["fit_rows"] == 500
    np.testing.assert_array_equal(a.predict_proba(L), b.predict_proba(L))


def test_unknown_kind_and_bad_matrix_are_refused():
    with pytest.raises(ValueError, match="unknown label model"):
        make("glad")
    with pytest.raises(ValueError, match="cardinality"):
        make("dawid_skene", cardinality=2).fit(np.array([[0, 3]]))
