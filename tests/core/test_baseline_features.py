"""Relative features (causal and two-sided), the distance to route levels, and the rolling_mad rule."""

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from flamenco_core.preprocess.baseline import rarity, relative_features, rolling_mad, two_sided_features

finite = st.floats(min_value=1.0, max_value=500.0, allow_nan=False, allow_infinity=False)


def _frame(x, t0="2024-01-01"):
    ts = pd.Timestamp(t0, tz="UTC") + pd.to_timedelta(np.arange(len(x)) * 60, unit="s")
    return pd.DataFrame({"timestamp": ts, "rtt_ms": np.asarray(x, dtype="float64")})


@settings(max_examples=60, deadline=None)
@given(st.lists(finite, min_size=3, max_size=80), st.data())
def test_causal_features_never_look_ahead(xs, data):
    """Changing what comes after row i leaves row i's causal features as they were (the series-wide
    floor aside: it is a median over the series, so the test keeps it fixed by changing values alike)."""
    i = data.draw(st.integers(min_value=0, max_value=len(xs) - 2))
    a = relative_features(_frame(xs), window=5, by=None, floor_frac=0.0)
    ys = list(xs[: i + 1]) + [v * 3.0 for v in xs[i + 1:]]
    b = relative_features(_frame(ys), window=5, by=None, floor_frac=0.0)
    cols = ["rtt_ms_base", "rtt_ms_dev", "rtt_ms_ratio"]
    np.testing.assert_allclose(a[cols].iloc[: i + 1].to_numpy(), b[cols].iloc[: i + 1].to_numpy())


def test_a_spike_stands_out_on_every_route():
    rng = np.random.default_rng(0)
    low = 20 + rng.normal(0, 0.3, 200)
    high = 90 + rng.normal(0, 0.3, 200)
    x = np.concatenate([low, high])
    x[100] += 15  # +75% on the low route
    x[300] += 60  # +67% on the high route
    rel = relative_features(_frame(x), window=30, by=None)
    two = two_sided_features(_frame(x), window=21, by=None)
    assert set(np.argsort(-two["rtt_ms_crz"].to_numpy())[:2]) == {100, 300}
    # the causal score, and the neighbour score (its past side), cannot tell the route change at row 200
    # from a spike until half a window has passed
    for col, edge in ((rel["rtt_ms_rz"], 16), (two["rtt_ms_nrz"], 11)):
        z = col.to_numpy()
        quiet = np.setdiff1d(np.arange(400), np.r_[100, 300, 200:200 + edge])
        assert z[[100, 300]].min() > z[quiet].max(), col.name
    assert rel["rtt_ms_ratio"].iloc[100] > 1.5 and rel["rtt_ms_ratio"].iloc[300] > 1.5
    # a lasting level shift is a spike only to the causal baseline, and only for half a window
    assert two["rtt_ms_crz"].iloc[np.r_[210:290, 310:390]].abs().max() < 10


def test_features_per_series_and_aligned_to_the_index():
    df = pd.concat([_frame([10, 11, 10, 50, 10]).assign(subset=0), _frame([80, 81, 80, 80, 82]).assign(subset=1)], ignore_index=True)
    shuffled = df.sample(frac=1.0, random_state=1)
    out = relative_features(shuffled, window=3, by=["subset"])
    assert out.index.equals(shuffled.index)
    ordered = relative_features(df, window=3, by=["subset"]).loc[shuffled.index]
    pd.testing.assert_frame_equal(out, ordered)
    # the 50 is measured against its own series (10s), never against the 80s
    assert out.loc[(shuffled["subset"] == 0) & (shuffled["rtt_ms"] == 50), "rtt_ms_dev"].iloc[0] == 40.0


def test_rarity_is_low_on_route_levels_and_high_between_them():
    from flamenco_core.preprocess import detect_modes

    rng = np.random.default_rng(3)
    x = np.concatenate([20 + rng.normal(0, 0.5, 600), 90 + rng.normal(0, 0.5, 300), [55.0, 140.0]])
    mod = detect_modes(x, seed=0)
    r = rarity(x, mod.grid, mod.density)
    assert np.quantile(r[:900], 0.99) < 0.5 and min(r[900], r[901]) > 2  # 1% of the peak density or less
    assert np.all(r >= 0) and r.max() <= 6  # capped: one far spike is not infinitely rare


@settings(max_examples=60, deadline=None)
@given(st.floats(min_value=1.0, max_value=300.0), st.integers(min_value=30, max_value=300), st.data())
def test_rolling_mad_flags_a_lone_spike_and_nothing_on_a_quiet_series(level, n, data):
    rng = np.random.default_rng(n)
    x = level + rng.normal(0, 0.01 * level, n)
    assert rolling_mad(x).sum() <= max(2, n // 15)  # Gaussian: a few strays where a 21-point MAD runs low
    i = data.draw(st.integers(min_value=0, max_value=n - 1))
    y = x.copy()
    y[i] += level  # +100%
    flags = rolling_mad(y)
    assert flags[i] == 1 and flags.dtype == np.int8 and len(flags) == n
    assert rolling_mad(np.full(n, level)).sum() == 0
