"""The robustness scenario generator keeps the promises each family makes (issue 10)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flamenco_core.synth.scenarios import FAMILIES, LABELED_FRACTION, MIN_SPIKE_MS, generate, write

REQUIRED = {"level_shift_unlabeled", "labels_at_start", "labels_at_end", "route_flapping", "heavy_tail_no_noise",
            "spike_bursts", "diurnal", "sparse", "clean_labeled_pool"}


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {f: generate(f, n_pairs=3, seed=7) for f in FAMILIES}


def _pairs(df: pd.DataFrame):
    return [g for _, g in df.groupby(["src", "dst"], sort=False)]


def _runs(mask: np.ndarray) -> np.ndarray:
    """Lengths of the runs of True in ``mask``."""
    edges = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def test_families_listed():
    assert REQUIRED <= set(FAMILIES)
    with pytest.raises(ValueError, match="unknown scenario family"):
        generate("nope")


def test_deterministic_by_seed():
    a, b = generate("route_flapping", 2, seed=3), generate("route_flapping", 2, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert not np.array_equal(a["rtt_ms"].to_numpy()[:100], generate("route_flapping", 2, seed=4)["rtt_ms"].to_numpy()[:100])
    # A pair does not depend on how many others were asked for.
    first = generate("diurnal", 1, seed=3)
    pd.testing.assert_frame_equal(first, generate("diurnal", 3, seed=3).iloc[: len(first)])


def test_schema_and_common_properties(frames):
    for fam, df in frames.items():
        assert list(df.columns) == ["timestamp", "src", "dst", "rtt_ms", "truth", "label", "family"], fam
        assert str(df["timestamp"].dt.tz) == "UTC"
        assert (df["rtt_ms"] > 0).all() and np.isfinite(df["rtt_ms"]).all()
        assert set(df["truth"].unique()) <= {"good", "noise"} and df["truth"].notna().all()
        given = df["label"].notna()
        assert (df.loc[given, "label"] == df.loc[given, "truth"]).all(), fam
        assert (df["family"] == fam).all()
        pairs = _pairs(df)
        assert len(pairs) == 3 and df[["src", "dst"]].drop_duplicates().shape[0] == 3
        lo, hi = (100, 300) if fam == "sparse" else (2000, 6000)
        for g in pairs:
            assert lo <= len(g) <= hi, (fam, len(g))
            assert g["timestamp"].is_monotonic_increasing and g["timestamp"].is_unique
            assert abs(g["label"].notna().mean() - LABELED_FRACTION) < 0.01
            rate = (g["truth"] == "noise").mean()
            if fam != "heavy_tail_no_noise":
                assert 0.01 <= rate <= 0.09, (fam, rate)


def test_labeled_period_position(frames):
    for fam in ("labels_at_start", "level_shift_unlabeled", "labels_at_end", "diurnal"):
        for g in _pairs(frames[fam]):
            lab = g["label"].notna().to_numpy()
            n_lab = int(lab.sum())
            expect = slice(0, n_lab) if fam in ("labels_at_start", "level_shift_unlabeled") else slice(len(g) - n_lab, len(g))
            assert lab[expect].all(), fam


def test_level_shift_after_labeled_period(frames):
    df = frames["level_shift_unlabeled"]
    for g, info in zip(_pairs(df), df.attrs["scenario"]["pairs"]):
        at = info["shift_at"]
        assert at >= info["labeled"][1]
        good = (g["truth"] == "good").to_numpy()
        rtt = g["rtt_ms"].to_numpy()
        lab = g["label"].notna().to_numpy()
        # The data show the shift: the good RTTs after it sit at a level the labeled period never had
        # (per route mode, compare the lowest-mode floor before and after).
        before, after = np.percentile(rtt[good & lab], 2), np.percentile(rtt[good & (np.arange(len(g)) >= at)], 2)
        assert abs(after - before) >= MIN_SPIKE_MS * 0.8, (before, after)


def test_heavy_tail_has_no_noise(frames):
    df = frames["heavy_tail_no_noise"]
    assert (df["truth"] == "good").all()
    for g in _pairs(df):
        d = np.diff(g["rtt_ms"].to_numpy())
        assert np.abs(d).max() < 0.6 * g["rtt_ms"].median() + 20  # jitter of a few ms, no spikes


def test_clean_labeled_pool(frames):
    df = frames["clean_labeled_pool"]
    given = df["label"].notna()
    assert (df.loc[given, "truth"] == "good").all()
    assert (df.loc[~given, "truth"] == "noise").any()


def test_bursts_and_flapping(frames):
    runs = np.concatenate([_runs((g["truth"] == "noise").to_numpy()) for g in _pairs(frames["spike_bursts"])])
    assert runs.max() <= 20 and (runs >= 3).mean() > 0.6
    for info in frames["route_flapping"].attrs["scenario"]["pairs"]:
        assert info["n_modes"] == 3
    for g in _pairs(frames["route_flapping"]):
        good = g[g["truth"] == "good"]["rtt_ms"].to_numpy()
        assert good.max() / good.min() > 1.5  # three distinct route levels, not one


def test_mix_of_modalities():
    modes = {p["n_modes"] for f in ("labels_at_end", "diurnal") for p in generate(f, 3, seed=1).attrs["scenario"]["pairs"]}
    assert modes == {1, 2, 3}


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 10_000), fam=st.sampled_from(FAMILIES))
def test_noise_is_distinguishable(seed, fam):
    """Every noise probe is well above the good probes around it: a transient delay, never hidden in jitter."""
    df = generate(fam, 1, seed=seed)
    rtt = df["rtt_ms"].to_numpy()
    noise = (df["truth"] == "noise").to_numpy()
    if not noise.any():
        return
    good = pd.Series(np.where(noise, np.nan, rtt))
    # The nearest good probes before and after; the spike must exceed the higher of them clearly.
    near = np.fmax(good.ffill().bfill().to_numpy(), good.bfill().ffill().to_numpy())
    assert (rtt[noise] - near[noise] > 0.5 * MIN_SPIKE_MS).mean() > 0.97


def test_write_round_trip(tmp_path):
    meta = write("sparse", tmp_path, n_pairs=2, seed=1)
    data, labels, truth = (pd.read_csv(meta[k]) for k in ("data", "labels", "truth"))
    assert list(data.columns) == ["timestamp", "src", "dst", "rtt_ms"]
    assert list(labels.columns) == list(truth.columns) == ["timestamp", "src", "dst", "label"]
    assert len(data) == len(truth) == meta["rows"] and len(labels) == meta["labeled_rows"]
    df = generate("sparse", 2, seed=1)
    assert (pd.to_datetime(data["timestamp"], utc=True) == df["timestamp"]).all()
    assert (truth["label"] == df["truth"].astype(str)).all()
    joined = labels.merge(truth, on=["timestamp", "src", "dst"], suffixes=("", "_truth"))
    assert len(joined) == len(labels) and (joined["label"] == joined["label_truth"]).all()
