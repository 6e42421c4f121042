"""Latency preprocessing (issue 4, section 1): modality, oversampling, thresholds, window features, splits."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flamenco_core.preprocess.modality import detect_modes, plot_modality, split_by_modes
from flamenco_core.preprocess.oversample import oversample
from flamenco_core.preprocess.splits import RATIOS, Splits, split_sizes, stratified_splits, time_splits
from flamenco_core.preprocess.thresholds import DEFAULT_K, HEURISTIC, MAD_SCALE, propose_labels, threshold
from flamenco_core.preprocess.windows import (
    TSFRESH_NAMES,
    WINDOW_STATS,
    tsfresh_features,
    window_feature_names,
    window_features,
)

ROOT = Path(__file__).resolve().parents[2]
FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
T0 = pd.Timestamp("2024-01-01", tz="UTC")


def latency_frame(n: int, seed: int = 0, pairs: int = 1, noise: float = 0.1, shuffle: bool = True) -> pd.DataFrame:
    """A canonical-looking latency table: gamma RTTs around 20 ms, a fraction of high-RTT noise."""
    rng = np.random.default_rng(seed)
    is_noise = rng.random(n) < noise
    rtt = np.where(is_noise, rng.uniform(150, 400, n), 20 + rng.gamma(2.0, 1.0, n))
    df = pd.DataFrame({
        "timestamp": (T0 + pd.to_timedelta(np.arange(n) * 60, unit="s")).astype("datetime64[us, UTC]"),
        "src": "10.0.0.1",
        "dst": [f"192.0.2.{i % pairs}" for i in range(n)],
        "rtt_ms": rtt,
        "source": "atlas",
        "measurement": "1001",
        "hop_ttl": pd.array([pd.NA] * n, dtype="Int16"),
        "label": pd.array(np.where(is_noise, "noise", "good"), dtype="string"),
    })
    return df.sample(frac=1.0, random_state=seed) if shuffle else df


def frame_hash(df: pd.DataFrame) -> int:
    return int(pd.util.hash_pandas_object(df, index=True).sum())


finite_values = st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=200)


# --------------------------------------------------------------------------------------------- thresholds
@FAST
@given(finite_values, st.floats(0, 10), st.floats(0, 10), st.sampled_from(["median_mad", "iqr", "std"]))
def test_threshold_is_monotone_in_k(values, k1, k2, method):
    lo, hi = sorted((k1, k2))
    assert threshold(values, method, lo) <= threshold(values, method, hi) + 1e-9 * (1 + abs(max(values, key=abs)))


@FAST
@given(finite_values, st.floats(0, 10), st.booleans())
def test_threshold_equals_direct_numpy(values, k, scaled):
    x = np.asarray(values)
    med = np.median(x)
    mad = np.median(np.abs(x - med)) * (MAD_SCALE if scaled else 1.0)
    q1, q3 = np.percentile(x, [25, 75])
    tol = dict(rtol=1e-9, atol=1e-6)
    assert np.isclose(threshold(x, "median_mad", k, scaled_mad=scaled), med + k * mad, **tol)
    assert np.isclose(threshold(x, "iqr", k), q3 + k * (q3 - q1), **tol)
    assert np.isclose(threshold(x, "std", k), x.mean() + k * x.std(ddof=1), **tol)


def test_threshold_defaults_nan_and_bad_inputs():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    assert threshold(x) == threshold(x, "median_mad", DEFAULT_K["median_mad"])
    # Non-finite values are ignored, as profile() does.
    assert threshold(np.r_[x, np.nan, np.inf], "iqr") == threshold(x, "iqr")
    with pytest.raises(ValueError, match="finite"):
        threshold([np.nan, np.nan])
    with pytest.raises(ValueError, match="unknown threshold method"):
        threshold(x, "zscore")
    with pytest.raises(ValueError, match="k must be"):
        threshold(x, "iqr", -1)
    with pytest.raises(ValueError, match="ddof"):
        threshold([3.0], "std")


@pytest.mark.parametrize("method", ["median_mad", "iqr", "std"])
def test_constant_series_threshold_is_the_value_and_all_good(method):
    df = pd.DataFrame({"rtt_ms": [12.5] * 20})
    assert threshold(df["rtt_ms"], method, 3) == 12.5
    labels = propose_labels(df, method, 3)
    assert (labels["label"] == "good").all()


def test_propose_labels_marks_heuristic_and_groups():
    df = latency_frame(400, seed=3)
    df["subset"] = np.where(df["rtt_ms"] > 1e9, 1, 0)
    df.loc[df.index[:50], "subset"] = 1
    df.loc[df.index[:50], "rtt_ms"] += 1000  # subset 1 lives at a much higher level
    labels = propose_labels(df, "median_mad", 3, by="subset")
    assert labels.index.equals(df.index)
    assert (labels["label_source"] == HEURISTIC).all()
    assert set(labels["label"].unique()) <= {"good", "noise"}
    thr = labels.groupby(df["subset"])["threshold"].unique()
    assert len(thr[0]) == len(thr[1]) == 1 and thr[1][0] > thr[0][0] + 500
    # Without per-subset thresholds, the high subset would all be called noise.
    flat = propose_labels(df, "median_mad", 3)
    assert (flat.loc[df["subset"] == 1, "label"] == "noise").all()
    assert (labels.loc[df["subset"] == 1, "label"] == "good").mean() > 0.5
    # Real noise in the big subset is found.
    big = df["subset"] == 0
    agree = (labels.loc[big, "label"] == df.loc[big, "label"]).mean()
    assert agree > 0.95


# --------------------------------------------------------------------------------------------------- splits
ratio_strategy = st.one_of(
    st.sampled_from(["ark", "atlas"]),
    st.tuples(st.floats(0.05, 1), st.floats(0.05, 1), st.floats(0.05, 1)).map(lambda t: tuple(v / sum(t) for v in t)),
)


@FAST
@given(st.integers(20, 300), ratio_strategy, st.integers(0, 2**16), st.booleans())
def test_time_splits_partition(n, ratios, seed, ties):
    df = latency_frame(n, seed=seed)
    if ties:  # repeated timestamps must not break the partition or the order
        df["timestamp"] = df["timestamp"].dt.floor("10min")
    s = time_splits(df, ratios)
    r = RATIOS[ratios] if isinstance(ratios, str) else ratios
    parts = [s.train, s.validation, s.test]
    idx = [p.index for p in parts]
    assert sum(len(i) for i in idx) == n
    assert len(idx[0].union(idx[1]).union(idx[2])) == n
    assert idx[0].intersection(idx[1]).empty and idx[0].intersection(idx[2]).empty and idx[1].intersection(idx[2]).empty
    for p, ratio in zip(parts, r):
        assert p["timestamp"].is_monotonic_increasing
        assert abs(len(p) - n * ratio) < 1.0 + 1e-9
        pd.testing.assert_frame_equal(p, df.loc[p.index])  # rows unchanged
    assert s.train["timestamp"].max() <= s.validation["timestamp"].min() <= s.test["timestamp"].min()
    assert s.sizes() == s.meta["sizes"]


def test_time_splits_presets_small_data_and_zero_ratio():
    assert split_sizes(100, "ark") == (65, 25, 10)
    assert split_sizes(100, "atlas") == (55, 20, 25)
    with pytest.raises(ValueError, match=r"too few .* at least \d+ rows"):
        time_splits(latency_frame(2), "ark")
    with pytest.raises(ValueError, match="sum to 1"):
        time_splits(latency_frame(50), (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="unknown ratio preset"):
        time_splits(latency_frame(50), "caida")
    assert split_sizes(4, "ark") == (2, 1, 1)  # test's 0.4 row rounds to 1, taken from train's rounded-up row
    assert split_sizes(20, (0.485, 0.485, 0.03)) == (10, 9, 1)
    with pytest.raises(ValueError, match="at least 11 rows"):  # no donor within 1 row of its share below that
        split_sizes(10, (0.9, 0.05, 0.05))
    s = time_splits(latency_frame(50), (0.8, 0.2, 0.0))
    assert s.sizes() == {"train": 40, "validation": 10, "test": 0}


def test_time_splits_per_subset():
    df = latency_frame(300, seed=1, shuffle=False)
    df["subset"] = (np.arange(300) % 3 == 0).astype(int)  # subsets interleaved in time
    s = time_splits(df, "atlas", by="subset")
    for sid, g in df.groupby("subset"):
        n_tr, n_va, n_te = split_sizes(len(g), "atlas")
        assert (s.train["subset"] == sid).sum() == n_tr
        assert (s.validation["subset"] == sid).sum() == n_va
        assert (s.test["subset"] == sid).sum() == n_te
        assert s.train.loc[s.train["subset"] == sid, "timestamp"].max() < s.validation.loc[
            s.validation["subset"] == sid, "timestamp"].min()
    assert all(p["timestamp"].is_monotonic_increasing for p in s)


def test_stratified_splits():
    df = latency_frame(1000, seed=5, noise=0.2)
    s = stratified_splits(df, "label", test=0.2, validation=0.2, seed=3)
    assert s.sizes() == {"train": 640, "validation": 160, "test": 200}
    overall = (df["label"] == "noise").mean()
    for p in s:
        assert abs((p["label"] == "noise").mean() - overall) < 0.01
        assert p["timestamp"].is_monotonic_increasing
    again = stratified_splits(df, "label", seed=3)
    assert all(a.index.equals(b.index) for a, b in zip(s, again))
    assert not stratified_splits(df, "label", seed=4).test.index.equals(s.test.index)
    unlabeled = df.assign(label=df["label"].where(df.index % 7 != 0))
    with pytest.raises(ValueError, match="no 'label'"):
        stratified_splits(unlabeled)
    one_noise = df.assign(label=["noise"] + ["good"] * (len(df) - 1))
    with pytest.raises(ValueError, match="cannot stratify"):
        stratified_splits(one_noise)


# ------------------------------------------------------------------------------------------------ windows
def naive_windows(df: pd.DataFrame, w: int, min_periods: int, groups: list[str]) -> pd.DataFrame:
    """Reference: a plain loop over each series in time order (small data only)."""
    out = pd.DataFrame(np.nan, index=df.index, columns=list(WINDOW_STATS))
    keyed = [("all", df)] if not groups else df.groupby(groups)
    for _, g in keyed:
        g = g.sort_values("timestamp", kind="stable")
        x = g["rtt_ms"].to_numpy()
        for i in range(len(g)):
            win = x[max(0, i - w + 1) : i + 1]
            if len(win) < min_periods:
                continue
            out.loc[g.index[i]] = [len(win), np.mean(win), np.std(win), np.min(win), np.quantile(win, 0.25),
                                   np.median(win), np.quantile(win, 0.75), np.max(win)]
    return out


@FAST
@given(
    st.integers(1, 60), st.integers(1, 12), st.integers(1, 3), st.integers(0, 2**16), st.booleans(), st.data(),
)
def test_window_features_match_naive_reference(n, w, pairs, seed, ties, data):
    min_periods = data.draw(st.integers(1, w))
    df = latency_frame(n, seed=seed, pairs=pairs)
    if ties:  # equal timestamps keep input order in both implementations
        df["timestamp"] = df["timestamp"].dt.floor("5min")
    rng = np.random.default_rng(seed)
    df["rtt_ms"] = np.round(rng.normal(30, 10, n), int(rng.integers(0, 3)))  # rounding makes ties
    got = window_features(df, w, min_periods=min_periods)
    assert list(got.columns) == window_feature_names(w)
    assert got.index.equals(df.index)
    ref = naive_windows(df, w, min_periods, ["src", "dst"])
    np.testing.assert_allclose(got.to_numpy(), ref.to_numpy(), rtol=1e-12, atol=1e-9, equal_nan=True)


def test_window_features_match_tsfresh():
    df = latency_frame(300, seed=11, pairs=2)
    for min_periods in (1, 10):
        fast = window_features(df, 10, min_periods=min_periods)
        ts = tsfresh_features(df, 10, "paper", min_periods=min_periods)
        ts = ts.rename(columns=lambda c: "rtt_ms_w10_" + TSFRESH_NAMES[c.split("__", 1)[1]])[fast.columns]
        assert ts.index.equals(fast.index)
        np.testing.assert_allclose(fast.to_numpy(), ts.to_numpy(), rtol=1e-12, atol=1e-12, equal_nan=True)
        assert fast.notna().all(axis=1).sum() == (300 if min_periods == 1 else 300 - 2 * 9)


def test_window_features_short_series_and_bad_input():
    df = latency_frame(25, seed=2, pairs=1, shuffle=False)
    df.loc[20:, "dst"] = "192.0.2.99"  # a second pair with 5 points
    out = window_features(df, 10)
    status = {o["group"]["dst"]: o for o in out.attrs["window_outcomes"]}
    assert status["192.0.2.0"]["status"] == "ok"
    assert status["192.0.2.99"]["status"] == "short" and "expanding" in status["192.0.2.99"]["reason"]
    assert out.loc[20:, "rtt_ms_w10_count"].tolist() == [1, 2, 3, 4, 5]  # windows never cross pairs
    strict = window_features(df, 10, min_periods=10)
    assert strict.loc[20:].isna().all().all()
    assert {o["status"] for o in strict.attrs["window_outcomes"]} == {"ok", "skipped"}
    bad = df.copy()
    bad.loc[3, "rtt_ms"] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        window_features(bad, 10)
    with pytest.raises(ValueError, match="min_periods"):
        window_features(df, 5, min_periods=6)


# ----------------------------------------------------------------------------------------------- modality
def mixture(components, seed=0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(mu, sd, n) for mu, sd, n in components])


@pytest.mark.parametrize(
    "components, label, centers",
    [
        ([(20, 1, 2000)], "unimodal", [20]),
        ([(20, 1, 1500), (40, 1, 1000)], "bimodal", [20, 40]),
        ([(20, 1, 1000), (40, 1.5, 1000), (60, 1, 700)], "multimodal", [20, 40, 60]),
        # Secondary bump at ~5% of the main peak's height: not a mode at the default 10%.
        ([(20, 1, 2000), (40, 1, 100)], "unimodal", [20]),
    ],
)
def test_detect_modes_on_mixtures(components, label, centers):
    x = mixture(components)
    r = detect_modes(x)
    assert r.label == label and r.n_modes == len(centers)
    assert np.allclose([p for p, _ in r.peaks], centers, atol=1.5)
    assert len(r.valleys) == r.n_modes - 1
    for (a, _), v, (b, _) in zip(r.peaks[:-1], r.valleys, r.peaks[1:]):
        assert a < v < b
    assert max(h for _, h in r.peaks) == pytest.approx(r.density.max())


def test_secondary_peak_threshold_is_min_height():
    x = mixture([(20, 1, 2000), (40, 1, 100)])
    r = detect_modes(x, min_height=0.01)
    assert r.n_modes == 2
    rel = r.peaks[1][1] / r.peaks[0][1]
    assert 0.01 < rel < 0.10


def test_detect_modes_subsamples_deterministically():
    x = mixture([(20, 1, 30_000), (50, 2, 15_000)], seed=1)
    a, b = detect_modes(x, seed=7), detect_modes(x, seed=7)
    assert a.n_used == 20_000 and a.n_points == 45_000
    np.testing.assert_array_equal(a.density, b.density)
    assert a.n_modes == 2 and 25 < a.valleys[0] < 45


def test_binned_evaluation_matches_exact_kde():
    from scipy.stats import gaussian_kde

    x = mixture([(20, 1, 12_000), (32, 2, 6_000)], seed=4)
    r = detect_modes(x)  # 18k points x a fine grid: beyond EXACT_LIMIT, so binned
    assert r.n_used * r.grid.size > 4_000_000
    sample = r.grid[:: max(1, r.grid.size // 400)]
    exact = gaussian_kde(x)(sample)
    binned = np.interp(sample, r.grid, r.density)
    assert np.abs(binned - exact).max() < 2e-3 * exact.max()


def test_robust_bandwidth_resists_noise_spikes():
    rng = np.random.default_rng(9)
    x = np.r_[mixture([(20, 0.5, 3000), (26, 0.5, 2000)], seed=9), rng.uniform(100, 2000, 150)]
    assert detect_modes(x).n_modes == 1  # spikes inflate the std, Scott's rule oversmooths
    robust = detect_modes(x, bw_method="robust")
    assert robust.n_modes == 2 and 20 < robust.valleys[0] < 26


def test_detect_modes_degenerate_inputs():
    r = detect_modes([7.5] * 50)
    assert r.label == "unimodal" and "constant" in r.note and r.peaks[0][0] == 7.5
    assert r.to_dict()["peaks"] == [[7.5, None]]
    two = detect_modes([1.0, 1.0, 1.0, 2.0])
    assert two.note is None and two.n_modes >= 1
    with pytest.raises(ValueError, match="finite"):
        detect_modes([np.nan])


def test_split_by_modes_subsets_in_time_order():
    rng = np.random.default_rng(0)
    x = rng.permutation(mixture([(20, 1, 600), (45, 1, 400)]))
    df = pd.DataFrame({"timestamp": T0 + pd.to_timedelta(np.arange(x.size), unit="s"), "rtt_ms": x})
    df = df.sample(frac=1.0, random_state=0)
    r = detect_modes(df["rtt_ms"])
    split = split_by_modes(df, r)
    assert [len(s) for s in split.subsets] == [600, 400]
    assert [o["status"] for o in split.outcomes] == ["ok", "ok"]
    for sid, s in enumerate(split.subsets):
        assert (s["subset"] == sid).all() and s["timestamp"].is_monotonic_increasing
    assert split.subsets[0]["rtt_ms"].max() < r.valleys[0] < split.subsets[1]["rtt_ms"].min()
    assert sorted(split.frame.index) == sorted(df.index)


def tiny_mode_frame():
    # 8 points tightly clustered: a clear KDE peak (above 10%), too few rows to model (the paper's case).
    x = np.r_[mixture([(20, 1, 60)]), np.full(8, 60.0) + np.linspace(-0.05, 0.05, 8)]
    return pd.DataFrame({"timestamp": T0 + pd.to_timedelta(np.arange(x.size), unit="s"), "rtt_ms": x})


def test_tiny_subset_is_merged_with_recorded_outcome():
    df = tiny_mode_frame()
    r = detect_modes(df["rtt_ms"])
    assert r.n_modes == 2
    split = split_by_modes(df, r, min_subset=30)
    assert len(split.subsets) == 1 and len(split.subsets[0]) == 68
    merged = [o for o in split.outcomes if o["status"] == "merged"]
    assert len(merged) == 1 and merged[0]["rows"] == 8 and merged[0]["subset"] == 0
    assert "min_subset" in merged[0]["reason"]

    skipped = split_by_modes(df, r, min_subset=30, tiny="skip")
    assert [len(s) for s in skipped.subsets] == [60]
    assert [o["status"] for o in skipped.outcomes] == ["ok", "skipped"]
    assert skipped.outcomes[1]["subset"] is None


def test_plot_modality_writes_png(tmp_path):
    x = mixture([(20, 1, 500), (40, 1, 300)])
    r = detect_modes(x)
    path = plot_modality(x, r, tmp_path / "plots" / "pair.png", title="10.0.0.1 -> 192.0.2.1")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    const = plot_modality([5.0] * 10, detect_modes([5.0] * 10), tmp_path / "const.png")
    assert const.stat().st_size > 0


# -------------------------------------------------------------------------------------------- oversampling
def labeled_splits(seed=0) -> Splits:
    return time_splits(latency_frame(600, seed=seed, noise=0.08), "ark")


def test_oversample_balances_train_only():
    s = labeled_splits()
    before = {name: frame_hash(f) for name, f in s.items()}
    out = oversample(s, {"noise": (150.0, 400.0)}, seed=1)
    # Structural guarantee: the same objects, unchanged; the input's train is untouched too.
    assert out.validation is s.validation and out.test is s.test
    assert {name: frame_hash(f) for name, f in s.items()} == before
    counts = out.train["label"].value_counts()
    assert counts["noise"] == counts["good"] == (s.train["label"] == "good").sum()
    syn = out.train[out.train["synthetic"]]
    assert len(syn) == out.meta["oversample"]["classes"]["noise"]["added"] > 0
    assert syn["rtt_ms"].between(150.0, 400.0).all() and (syn["label"] == "noise").all()
    pd.testing.assert_frame_equal(out.train.loc[s.train.index].drop(columns="synthetic"), s.train)
    # Interleaved in time, inside the training period, never colliding with val/test index labels.
    assert out.train["timestamp"].is_monotonic_increasing
    assert syn["timestamp"].min() >= s.train["timestamp"].min()
    assert syn["timestamp"].max() < s.validation["timestamp"].min() + pd.Timedelta(minutes=2)
    assert syn.index.intersection(s.validation.index.union(s.test.index)).empty
    assert (syn[["src", "source", "measurement"]].to_numpy() == s.train[["src", "source", "measurement"]].iloc[0].to_numpy()).all()


def test_oversample_is_seeded_and_configurable():
    s = labeled_splits(seed=2)
    a = oversample(s, {"noise": (150, 400)}, seed=5)
    b = oversample(s, {"noise": (150, 400)}, seed=5)
    c = oversample(s, {"noise": (150, 400)}, seed=6)
    pd.testing.assert_frame_equal(a.train, b.train)
    assert not a.train["rtt_ms"].equals(c.train["rtt_ms"])
    half = oversample(s, {"noise": (150, 400)}, seed=5, target_ratio=0.5)
    n_good = (s.train["label"] == "good").sum()
    assert (half.train["label"] == "noise").sum() == int(np.ceil(n_good / 2))
    logu = oversample(s, {"noise": (150, 400)}, seed=5, distribution="loguniform")
    assert logu.train.loc[logu.train["synthetic"], "rtt_ms"].between(150, 400).all()
    fixed = oversample(s, {"noise": (150, 400)}, seed=5, distribution=lambda rng, lo, hi, n: np.full(n, 333.0))
    assert (fixed.train.loc[fixed.train["synthetic"], "rtt_ms"] == 333.0).all()
    # Already balanced (or majority class only in bounds): nothing added, recorded.
    none = oversample(s, {"good": (10, 30)}, seed=5)
    assert not none.train["synthetic"].any() and none.meta["oversample"]["classes"]["good"]["added"] == 0
    assert none.meta["oversample"]["not_oversampled"] == ["noise"]


def test_oversample_refuses_anything_but_splits():
    s = labeled_splits()
    with pytest.raises(TypeError, match="Splits"):
        oversample(s.train, {"noise": (150, 400)})
    with pytest.raises(ValueError, match="lo < hi"):
        oversample(s, {"noise": (400, 150)})
    with pytest.raises(ValueError, match="no 'label'"):
        oversample(Splits(s.train.drop(columns="label"), s.validation, s.test), {"noise": (150, 400)})


# ----------------------------------------------------------------------------------------------- imports
def test_import_is_light():
    """The CLI imports these modules: tsfresh, matplotlib, scikit-learn, prefect and mlflow load lazily."""
    code = (
        "import sys\n"
        "import flamenco_core.preprocess.modality, flamenco_core.preprocess.oversample, "
        "flamenco_core.preprocess.thresholds, flamenco_core.preprocess.windows, flamenco_core.preprocess.splits\n"
        "heavy = [m for m in ('tsfresh', 'matplotlib', 'sklearn', 'prefect', 'mlflow') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
