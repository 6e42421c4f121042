"""Elliptic Envelope and robust covariance from one MinCovDet fit: the same labels as scikit-learn's two
separate fits, one fit per run_baselines call, and a seeded subsample beyond MCD_MAX_ROWS."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2
from sklearn.covariance import EllipticEnvelope, MinCovDet

from flamenco_core.models import baselines
from flamenco_core.models.baselines import detect, run_baselines


def _data(n, p, seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p)) @ rng.normal(size=(p, p))
    X[rng.random(n) < 0.05] += rng.normal(scale=8, size=p)  # outliers
    return X


def _count_mcd_fits(monkeypatch) -> list:
    """The rows of every MinCovDet fit from now on, in order."""
    calls = []
    real = MinCovDet.fit

    def counting(self, X, y=None):
        calls.append(len(X))
        return real(self, X, y)

    monkeypatch.setattr(MinCovDet, "fit", counting)
    return calls


def _standardized(X):
    return (X - X.mean(axis=0)) / X.std(axis=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("p", [1, 3])
@pytest.mark.parametrize("contamination", ["auto", 0.05, 0.2])
def test_shared_fit_matches_two_separate_sklearn_fits(seed, p, contamination):
    X = _data(400, p, seed)
    Xs = _standardized(X)
    c = 0.1 if contamination == "auto" else contamination
    ee = EllipticEnvelope(contamination=c, random_state=seed).fit(Xs)
    want_ee = ee.predict(Xs) == -1
    mcd = MinCovDet(random_state=seed).fit(Xs)
    d2 = mcd.mahalanobis(Xs)
    cut = chi2.ppf(0.975, df=p) if contamination == "auto" else np.quantile(d2, 1 - contamination)
    want_rc = d2 > cut

    df = run_baselines(X, ["elliptic_envelope", "robust_covariance"], contamination, seed)
    np.testing.assert_array_equal(df["elliptic_envelope"].to_numpy(dtype=bool), want_ee)
    np.testing.assert_array_equal(df["robust_covariance"].to_numpy(dtype=bool), want_rc)
    assert want_ee.any() and want_rc.any()


def test_run_baselines_fits_mcd_once(monkeypatch):
    calls = _count_mcd_fits(monkeypatch)
    X = _data(300, 2, 0)
    run_baselines(X, ["elliptic_envelope", "robust_covariance", "lof"], "auto", 0)
    assert calls == [300]
    # without the shared cache (two detect calls), each fits its own
    calls.clear()
    detect(X, "elliptic_envelope")
    detect(X, "robust_covariance")
    assert calls == [300, 300]


def test_jitter_fallback_is_shared_too(monkeypatch):
    calls = _count_mcd_fits(monkeypatch)
    x = np.r_[np.full(80, 5.0), np.arange(20.0)]  # most rows share a value: singular MCD support
    df = run_baselines(x, ["elliptic_envelope", "robust_covariance"], "auto", 0)
    outcomes = df.attrs["outcomes"]
    assert all(outcomes[m]["outcome"] == "fallback" for m in ("elliptic_envelope", "robust_covariance"))
    assert len(calls) == 2  # the plain fit (singular) and the jittered one, each once


def test_large_input_is_fitted_on_a_seeded_subsample(monkeypatch):
    monkeypatch.setattr(baselines, "MCD_MAX_ROWS", 200)
    X = _data(1000, 2, 4)
    a = run_baselines(X, ["elliptic_envelope", "robust_covariance"], 0.1, 7)
    b = run_baselines(X, ["elliptic_envelope", "robust_covariance"], 0.1, 7)
    assert a.equals(b)  # seeded
    assert "subsample of 200 of 1000 rows" in a.attrs["outcomes"]["robust_covariance"]["reason"]
    assert a.attrs["outcomes"]["robust_covariance"]["outcome"] == "ok"
    # the envelope's quantile is over all rows: about 10% flagged
    assert abs(a["elliptic_envelope"].mean() - 0.1) < 0.01
    # and the rows flagged agree closely with the full fit's
    monkeypatch.setattr(baselines, "MCD_MAX_ROWS", 10_000)
    full = run_baselines(X, ["robust_covariance"], 0.1, 7)
    assert (a["robust_covariance"] == full["robust_covariance"]).mean() > 0.97


def test_exactly_dependent_columns_skip_the_doomed_fit(monkeypatch):
    # A repeated column makes every subset's covariance singular: only the jittered fit runs, and its
    # labels are those of the fit after a failed plain one.
    calls = _count_mcd_fits(monkeypatch)
    X = _data(300, 2, 3)
    X = np.c_[X, X[:, 0]]
    df = run_baselines(X, ["elliptic_envelope", "robust_covariance"], "auto", 0)
    assert calls == [300]
    assert "repeated columns" in df.attrs["outcomes"]["robust_covariance"]["reason"]
    assert df.attrs["outcomes"]["robust_covariance"]["outcome"] == "fallback"
    rng = np.random.default_rng(0)
    Xs = _standardized(X)
    jittered = Xs + rng.normal(scale=baselines._JITTER, size=Xs.shape)
    calls.clear()
    d2 = MinCovDet(random_state=0).fit(jittered).mahalanobis(jittered)
    np.testing.assert_array_equal(df["robust_covariance"].to_numpy(dtype=bool), d2 > chi2.ppf(0.975, df=3))


def test_lof_kd_tree_matches_brute_force():
    from sklearn.neighbors import LocalOutlierFactor

    X = _data(2000, 5, 5)
    Xs = _standardized(X)
    want = LocalOutlierFactor(n_neighbors=20, algorithm="brute").fit_predict(Xs) == -1
    np.testing.assert_array_equal(run_baselines(X, ["lof"])["lof"].to_numpy(dtype=bool), want)


def test_lof_beyond_its_cap_fits_a_seeded_subsample(monkeypatch):
    from sklearn.neighbors import LocalOutlierFactor

    monkeypatch.setattr(baselines, "LOF_MAX_ROWS", 1000)  # half the rows, like 50k of a 110k Ark pair
    monkeypatch.setattr(baselines, "_LOF_CHUNK", 300)  # several blocks
    X = _data(2000, 3, 6)
    a = run_baselines(X, ["lof"], "auto", 3)
    assert a.equals(run_baselines(X, ["lof"], "auto", 3))  # seeded
    assert "subsample of 1000 of 2000 rows" in a.attrs["outcomes"]["lof"]["reason"]
    full = LocalOutlierFactor(n_neighbors=20).fit_predict(_standardized(X)) == -1
    assert (a["lof"].to_numpy(dtype=bool) == full).mean() > 0.97


def test_lof_beyond_its_cap_equals_scikit_learns_own_neighbour_search(monkeypatch):
    """scipy's kd-tree feeds scikit-learn's LOF precomputed neighbours: the same scores as LOF's own search."""
    from sklearn.neighbors import LocalOutlierFactor

    monkeypatch.setattr(baselines, "LOF_MAX_ROWS", 1200)
    X = _data(3000, 4, 8)
    got = run_baselines(X, ["lof"], "auto", 5)
    Xs = _standardized(X)
    rows = np.sort(np.random.default_rng(5).choice(len(X), 1200, replace=False))
    m = LocalOutlierFactor(n_neighbors=20, algorithm="brute", novelty=True).fit(Xs[rows])
    nof = np.empty(len(X))
    nof[rows] = m.negative_outlier_factor_
    rest = np.setdiff1d(np.arange(len(X)), rows)
    nof[rest] = m.score_samples(Xs[rest])
    np.testing.assert_array_equal(got["lof"].to_numpy(dtype=bool), nof < m.offset_)


def test_lof_on_tied_rows_agrees_with_brute_force():
    """Rounded RTTs repeat: among equal distances the two searches may pick different neighbours, which
    moves a few borderline rows at most."""
    from sklearn.neighbors import LocalOutlierFactor

    X = np.round(_data(2000, 2, 9), 1)
    assert len(np.unique(X, axis=0)) < len(X)  # ties are really there
    got = run_baselines(X, ["lof"])["lof"].to_numpy(dtype=bool)
    want = LocalOutlierFactor(n_neighbors=20, algorithm="brute").fit_predict(_standardized(X)) == -1
    assert (got == want).mean() > 0.99
