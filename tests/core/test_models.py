"""End models: LSTM, random forest with time-series CV, hyperparameter search, model choice, baselines."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score

from flamenco_core.models.baselines import BASELINE_NAMES, BASELINES, detect, run_baselines, unsupervised_labels
from flamenco_core.models.forest import FOREST_GRID, TimeSeriesForest, effective_splits, fit_forest_timeseries
from flamenco_core.models.lstm import LSTMClassifier, make_windows, window_indices
from flamenco_core.models.search import PAPER_LSTM_GRID, candidates, search
from flamenco_core.models.select import DEFAULT_SMALL_THRESHOLD, build_model, choose_model

# Small and fast: the LSTM tests train for a few epochs on a few thousand rows.
FAST = dict(window=5, hidden=16, lr=0.01, batch_size=64, device="cpu")


def spike_memory(n: int, seed: int = 0):
    """RTT-like series; row t is noise when a spike happened in rows t-2..t (needs the window)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(20.0, 1.0, n)
    spikes = rng.random(n) < 0.05
    x[spikes] += 8.0
    y = np.convolve(spikes.astype(int), np.ones(3, dtype=int))[:n] > 0
    return x, y.astype(int)


# ------------------------------------------------------------------ package import
def test_importing_models_loads_neither_torch_nor_sklearn():
    code = "import sys, flamenco_core.models as m; m.choose_model; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
    import flamenco_core.models as models

    assert all(getattr(models, name) is not None for name in models.__all__)


# ------------------------------------------------------------------ windows
def test_window_indices_pad_with_first_row_and_respect_groups():
    assert window_indices(4, 3).tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [1, 2, 3]]
    g = np.array(["a", "a", "b", "b", "b"])
    assert window_indices(5, 3, g).tolist() == [[0, 0, 0], [0, 0, 1], [2, 2, 2], [2, 2, 3], [2, 3, 4]]
    X = np.arange(10.0).reshape(5, 2)
    w = make_windows(X, 3)
    assert w.shape == (5, 3, 2)
    np.testing.assert_array_equal(w, X[window_indices(5, 3)])
    np.testing.assert_array_equal(make_windows(X, 3, g), X[window_indices(5, 3, g)])


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(1, 30),
    window=st.integers(1, 8),
    cuts=st.lists(st.integers(1, 29), max_size=4),
)
def test_window_indices_match_definition(n, window, cuts):
    groups = np.searchsorted(np.unique([c for c in cuts if c < n]), np.arange(n), side="right")
    idx = window_indices(n, window, groups)
    for t in range(n):
        start = int(np.flatnonzero(groups == groups[t])[0])
        assert idx[t].tolist() == [max(t - window + 1 + j, start) for j in range(window)]


# ------------------------------------------------------------------ LSTM
def test_lstm_is_a_sklearn_estimator():
    from sklearn.base import clone

    m = LSTMClassifier(hidden=8, lr=0.003, class_weight=None)
    c = clone(m)
    assert c is not m and c.get_params() == m.get_params()
    assert c.set_params(hidden=32, epochs=3) is c
    assert (c.hidden, c.epochs) == (32, 3)
    assert set(PAPER_LSTM_GRID) <= set(m.get_params())
    with pytest.raises(ValueError):
        c.set_params(no_such_param=1)


def test_lstm_learns_a_sequence_problem():
    x, y = spike_memory(2000)
    m = LSTMClassifier(epochs=5, random_state=0, **FAST).fit(x[:1500], y[:1500])
    pred = m.predict(x[1500:])
    assert f1_score(y[1500:], pred, average="macro") > 0.9
    proba = m.predict_proba(x[1500:])
    assert proba.shape == (500, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert m.classes_.tolist() == [0, 1] and m.device_ == "cpu"
    assert m.n_epochs_run_ == len(m.history_) >= 1


def test_max_train_rows_trains_on_a_seeded_sample_and_predicts_every_row():
    x, y = spike_memory(3000, seed=4)
    kw = dict(epochs=3, random_state=0, **FAST)
    a = LSTMClassifier(max_train_rows=800, **kw).fit(x[:2000], y[:2000], X_val=x[2000:], y_val=y[2000:])
    b = LSTMClassifier(max_train_rows=800, **kw).fit(x[:2000], y[:2000], X_val=x[2000:], y_val=y[2000:])
    assert a.n_train_rows_ == 800
    np.testing.assert_array_equal(a.predict_proba(x), b.predict_proba(x))  # seeded
    assert a.predict_proba(x).shape == (3000, 2)
    assert f1_score(y[2000:], a.predict(x[2000:]), average="macro") > 0.85
    # a cap the rows do not reach changes nothing
    full = LSTMClassifier(**kw).fit(x[:1500], y[:1500])
    capped = LSTMClassifier(max_train_rows=5000, **kw).fit(x[:1500], y[:1500])
    np.testing.assert_array_equal(full.predict_proba(x), capped.predict_proba(x))
    assert full.n_train_rows_ == capped.n_train_rows_


def test_soft_labels_at_0_1_equal_hard_labels():
    x, y = spike_memory(600, seed=1)
    hard = LSTMClassifier(epochs=2, random_state=3, **FAST).fit(x, y)
    soft = LSTMClassifier(epochs=2, random_state=3, **FAST).fit(x, np.eye(2)[y])
    np.testing.assert_array_equal(hard.predict_proba(x), soft.predict_proba(x))
    assert hard.history_[-1]["train_loss"] == soft.history_[-1]["train_loss"]


def test_lstm_is_deterministic_by_seed():
    x, y = spike_memory(600, seed=2)
    a = LSTMClassifier(epochs=2, random_state=7, dropout=0.2, **FAST).fit(x, y).predict_proba(x)
    b = LSTMClassifier(epochs=2, random_state=7, dropout=0.2, **FAST).fit(x, y).predict_proba(x)
    c = LSTMClassifier(epochs=2, random_state=8, dropout=0.2, **FAST).fit(x, y).predict_proba(x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_early_stopping_on_a_plateau_restores_best_epoch():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(800, 3))
    y = rng.integers(0, 2, 800)  # nothing to learn: validation loss plateaus
    m = LSTMClassifier(epochs=30, patience=2, min_delta=0.01, random_state=0, **FAST).fit(X, y)
    assert m.n_epochs_run_ < 30
    assert m.n_epochs_run_ - m.best_epoch_ == 2  # stopped `patience` epochs after the last improvement
    assert all(np.isfinite(h["val_loss"]) for h in m.history_)

    # Explicit validation set (e.g. the probabilistic labels of a later period).
    Xv, Pv = rng.normal(size=(200, 3)), rng.dirichlet([1, 1], 200)
    m2 = LSTMClassifier(epochs=30, random_state=0, **FAST).fit(X, y, X_val=Xv, y_val=Pv)
    assert m2.n_epochs_run_ < 30
    # Without validation, no early stopping.
    m3 = LSTMClassifier(epochs=3, validation_fraction=0.0, random_state=0, **FAST).fit(X, y)
    assert m3.n_epochs_run_ == 3 and np.isnan(m3.history_[0]["val_loss"])


def test_class_weights_move_the_decision_towards_the_minority():
    rng = np.random.default_rng(0)
    n = 1500
    y = (rng.random(n) < 0.1).astype(int)
    X = rng.normal(y * 1.0, 1.0)[:, None]  # overlapping classes: the prior decides
    kw = dict(FAST, window=1, epochs=4, validation_fraction=0.0, random_state=0)
    plain = LSTMClassifier(class_weight=None, **kw).fit(X, y)
    balanced = LSTMClassifier(class_weight="balanced", **kw).fit(X, y)
    manual = LSTMClassifier(class_weight={0: 1.0, 1: 9.0}, **kw).fit(X, y)
    assert plain.predict(X).sum() < 0.02 * n
    assert balanced.predict(X).sum() > 0.2 * n
    assert manual.predict(X).sum() > 0.2 * n
    np.testing.assert_allclose(balanced.class_weight_, [n / (2 * (y == 0).sum()), n / (2 * y.sum())], rtol=1e-5)


def test_lstm_inputs_features_groups_and_bad_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = np.where(X[:, 0] > 0, "noise", "good")
    groups = np.repeat([0, 1, 2], 100)
    m = LSTMClassifier(epochs=2, random_state=0, **FAST).fit(X, y, groups=groups)
    assert m.classes_.tolist() == ["good", "noise"] and m.n_features_in_ == 4
    assert set(m.predict(X[:3], groups=groups[:3])) <= {"good", "noise"}  # fewer rows than the window
    with pytest.raises(ValueError, match="single class"):
        LSTMClassifier(**FAST).fit(X, np.zeros(300))
    with pytest.raises(ValueError, match="unseen"):
        LSTMClassifier(epochs=1, **FAST).fit(X, y, X_val=X[:10], y_val=["other"] * 10)
    with pytest.raises(ValueError, match="features"):
        m.predict(X[:, :2])
    with pytest.raises(ValueError):
        LSTMClassifier(**FAST).fit(np.where(X > 1, np.nan, X), y)


def test_adam_matches_the_reference_update():
    import torch

    from flamenco_core.models.lstm import _Adam

    # numpy reference of Adam with L2 added to the gradient (torch.optim.Adam's weight_decay);
    # torch.optim itself is not used here because it imports torch._dynamo (seconds).
    rng = np.random.default_rng(0)
    w0, grads = rng.normal(size=4), rng.normal(size=(5, 4))
    lr, (b1, b2), wd, eps = 0.01, (0.9, 0.999), 0.1, 1e-8
    w, m, v = w0.copy(), np.zeros(4), np.zeros(4)
    p = torch.tensor(w0, requires_grad=True)
    opt = _Adam([p], lr=lr, betas=(b1, b2), weight_decay=wd)
    for t, g in enumerate(grads, 1):
        gt = g + wd * w
        m = b1 * m + (1 - b1) * gt
        v = b2 * v + (1 - b2) * gt**2
        w = w - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        p.grad = torch.tensor(g)
        opt.step()
    np.testing.assert_allclose(p.detach().numpy(), w, rtol=1e-10, atol=1e-12)


def test_fitted_lstm_pickles():
    x, y = spike_memory(300)
    m = LSTMClassifier(epochs=1, random_state=0, **FAST).fit(x, y)
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m.predict_proba(x), m2.predict_proba(x))


# ------------------------------------------------------------------ random forest
SMALL_FOREST = {"n_estimators": [5, 10], "max_depth": [2, None], "bootstrap": [True, False]}


def pair_450(seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(450) < 0.15).astype(int)
    return (rng.normal(30.0, 1.0, 450) + 15.0 * y)[:, None], y


def test_forest_grid_is_the_papers():
    assert FOREST_GRID == {"n_estimators": [50, 100, 150, 200], "max_depth": [2, 5, 10, None], "bootstrap": [True, False]}


def test_forest_search_uses_time_series_split_and_returns_best():
    from sklearn.model_selection import TimeSeriesSplit

    X, y = pair_450()
    r = fit_forest_timeseries(X, y, n_iter=4, seed=0, param_distributions=SMALL_FOREST)
    assert isinstance(r.cv, TimeSeriesSplit) and r.n_splits == 5 and r.note == ""
    for train, test in r.cv.split(X):
        assert train.max() < test.min()  # validation always after training: no future leakage
    assert len(r.cv_results) == 4
    best_row = r.cv_results.loc[r.cv_results["rank_test_score"].idxmin()]
    assert r.best_params == best_row["params"]
    assert r.best_score == pytest.approx(best_row["mean_test_score"])
    assert f1_score(y, r.best_estimator.predict(X), average="macro") > 0.9


def test_forest_labels_few_rows_and_single_class():
    X, y = pair_450()
    P = np.c_[1 - 0.8 * y, 0.8 * y]  # probabilistic labels: argmax, weighted by confidence
    r = fit_forest_timeseries(X, P, n_iter=2, confidence_weights=True, param_distributions=SMALL_FOREST)
    assert r.classes.tolist() == [0, 1]
    assert effective_splits(8, 5) == 3
    r8 = fit_forest_timeseries(X[:8], [0, 1] * 4, n_iter=2, param_distributions=SMALL_FOREST)
    assert r8.n_splits == 3 and "3 time-series folds" in r8.note
    r5 = fit_forest_timeseries(X[:5], [0, 1, 0, 1, 0])
    assert r5.cv is None and r5.n_splits == 0 and "without search" in r5.note
    with pytest.raises(ValueError, match="single class"):
        fit_forest_timeseries(X, np.zeros(450))


def test_time_series_forest_estimator():
    from sklearn.base import clone

    X, y = pair_450(1)
    f = TimeSeriesForest(n_iter=2, class_weight="balanced", random_state=0, param_distributions=SMALL_FOREST)
    assert clone(f).get_params() == f.get_params()
    f.set_params(n_splits=3)
    f.fit(X, y, X_val=X, y_val=y)  # LSTM-style keywords are accepted and ignored
    assert f.search_.n_splits == 3 and set(f.best_params_) == set(FOREST_GRID)
    assert f.predict_proba(X).shape == (450, 2) and f.predict(X[:, 0]).shape == (450,)


# ------------------------------------------------------------------ search
def test_candidates_grid_and_random_budgets():
    assert len(candidates(PAPER_LSTM_GRID)) == 11 * 3 * 4 * 3
    g5 = candidates(PAPER_LSTM_GRID, "grid", budget=5, seed=1)
    assert len(g5) == 5 and g5 == candidates(PAPER_LSTM_GRID, "grid", budget=5, seed=1)
    assert g5 != candidates(PAPER_LSTM_GRID, "grid", budget=5, seed=2)
    r7 = candidates(PAPER_LSTM_GRID, "random", budget=7, seed=0)
    assert len(r7) == 7 and len({tuple(sorted(c.items())) for c in r7}) == 7
    assert all(c[k] in PAPER_LSTM_GRID[k] for c in r7 for k in c)
    assert len(candidates({"a": [1, 2]}, "random", budget=10)) == 2
    with pytest.raises(ValueError):
        candidates(PAPER_LSTM_GRID, "bayes")


def test_search_on_validation_set_with_lstm():
    x, y = spike_memory(1600, seed=4)
    grid = {"lr": [0.01, 0.00001], "hidden": [8, 16]}
    base = LSTMClassifier(epochs=3, **{k: v for k, v in FAST.items() if k not in grid})
    res = search(base, grid, x[:1200], y[:1200], x[1200:], y[1200:], strategy="grid", budget=3, seed=0)
    assert len(res.results) == 3 and res.best_params in candidates(grid, "grid", 3, 0)
    assert res.best_score == res.results["score"].max()
    assert res.best_params["lr"] == 0.01  # 1e-5 learns nothing in 3 epochs
    assert isinstance(res.best_estimator, LSTMClassifier) and res.best_estimator.lr == 0.01
    assert {"param_lr", "param_hidden", "score", "fit_seconds", "n_epochs_run", "error"} <= set(res.results)


def test_search_random_records_failing_configurations():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2))
    y = (X[:, 0] > 0).astype(int)
    P = np.c_[1 - y, y].astype(float)  # probabilistic validation labels are scored by argmax
    res = search(
        LogisticRegression(), {"C": [0.01, 1.0, -1.0]}, X[:200], y[:200], X[200:], P[200:], strategy="random", budget=3
    )
    assert len(res.results) == 3
    assert res.results["error"].str.contains("C").sum() == 1  # C=-1 is invalid: recorded, search goes on
    assert res.best_params["C"] in (0.01, 1.0)
    with pytest.raises(ValueError, match="every configuration failed"):
        search(LogisticRegression(), {"C": [-1.0]}, X[:200], y[:200], X[200:], y[200:])


# ------------------------------------------------------------------ model choice
def test_choose_model():
    assert choose_model(450).kind == "random_forest"
    assert choose_model(DEFAULT_SMALL_THRESHOLD).kind == "lstm"
    assert choose_model(50_000, {"small_threshold": 100_000}).kind == "random_forest"
    assert choose_model(100, {"model": "lstm"}).kind == "lstm"
    assert choose_model(10**6, {"model": "rf"}).kind == "random_forest"

    class Cfg:  # attribute-style config (pydantic models)
        model = "auto"
        small_threshold = 10

    assert choose_model(20, Cfg()).kind == "lstm"
    with pytest.raises(ValueError):
        choose_model(10, {"model": "svm"})
    assert isinstance(build_model(choose_model(10**5), {"hidden": 32}, seed=3), LSTMClassifier)
    assert build_model("random_forest", seed=1).random_state == 1


# ------------------------------------------------------------------ baselines
def spiky_series(n=500, n_spikes=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(20.0, 1.0, n)
    idx = rng.choice(n, n_spikes, replace=False)
    x[idx] += rng.uniform(15.0, 60.0, n_spikes)
    truth = np.zeros(n, dtype=int)
    truth[idx] = 1
    return x, truth


@pytest.mark.parametrize("method", BASELINE_NAMES)
def test_baselines_find_injected_spikes(method):
    x, truth = spiky_series()
    labels = unsupervised_labels(x, method, seed=0)
    assert labels.dtype == np.int8 and set(np.unique(labels)) <= {0, 1}
    assert labels[truth == 1].mean() > 0.5
    lab2 = unsupervised_labels(np.c_[x, np.roll(x, 1)], method, contamination=0.02, seed=0)
    assert lab2[truth == 1].mean() > 0.5


def test_run_baselines_and_degenerate_input():
    assert set(BASELINES) == set(BASELINE_NAMES)
    x, truth = spiky_series()
    df = run_baselines(np.c_[x, np.full(len(x), 5.0)], seed=0)  # constant column
    assert list(df.columns) == list(BASELINE_NAMES) and len(df) == len(x)
    assert all(o["outcome"] == "fallback" and "constant" in o["reason"] for o in df.attrs["outcomes"].values())
    assert all(df[m].to_numpy()[truth == 1].mean() > 0.5 for m in df)

    const = run_baselines(np.ones((50, 2)))
    assert (const.to_numpy() == 0).all()

    # Mostly one repeated value: MCD's support covariance is 0 -> refit with seeded jitter.
    rng = np.random.default_rng(0)
    q = np.r_[np.full(150, 10.0), rng.normal(10.0, 1.0, 50)]
    r = detect(q, "robust_covariance", seed=0)
    assert r.outcome == "fallback" and "jitter" in r.reason
    np.testing.assert_array_equal(r.labels, unsupervised_labels(q, "robust_covariance", seed=0))

    bad = run_baselines(x, contamination=0.9)  # invalid for every method: recorded, not raised
    assert bad.isna().all().all() and all(o["outcome"] == "failed" for o in bad.attrs["outcomes"].values())
    with pytest.raises(ValueError, match="NaN"):
        unsupervised_labels(np.r_[x, np.nan], "lof")
    with pytest.raises(ValueError, match="unknown"):
        unsupervised_labels(x, "one_class_svm")


def test_one_end_model_config_serves_both_pipelines():
    from flamenco_core.experiments.flow_records.config import ModelConfig as FlowModel
    from flamenco_core.experiments.latency import LatencyConfig, ModelConfig as LatencyModel
    from flamenco_core.models.config import EndModelConfig

    assert issubclass(FlowModel, EndModelConfig) and issubclass(LatencyModel, EndModelConfig)
    # the older spellings still read: model -> kind, forest -> random_forest, aliases through MODEL_ALIASES
    cfg = LatencyConfig.model_validate({"model": {"model": "rf", "forest": {"n_iter": 1}, "small_threshold": 10}})
    assert cfg.model.kind == "random_forest" and cfg.model.params() == {"n_iter": 1}
    assert LatencyConfig.model_validate(cfg.model_dump(mode="json")) == cfg  # what tasks receive round-trips
    auto = LatencyModel(small_threshold=10)
    assert auto.choose(9).kind == "random_forest" and auto.choose(10).kind == "lstm"
    assert auto.params("lstm")["max_train_rows"] == 20_000
    with pytest.raises(ValueError, match="choose lstm or random_forest"):
        auto.params()  # auto names no one classifier
    with pytest.raises(ValueError):
        FlowModel.model_validate({"kind": "auto"})  # every combination trains the same classifier
    with pytest.raises(ValueError):
        FlowModel.model_validate({"search": {"budget": 2}})  # a setting that would do nothing is refused
