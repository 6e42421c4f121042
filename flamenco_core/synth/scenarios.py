"""Scenario families of RTT series with ground truth, for the latency robustness benchmark (issue 10).

Written apart from the other generators (numpy and pandas only). The model of a series and the labels:
docs/synth.md, section "Scenario families"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import pandas as pd

#: The scenario families; :func:`generate` accepts each name.
FAMILIES: tuple[str, ...] = (
    "level_shift_unlabeled",
    "labels_at_start",
    "labels_at_end",
    "route_flapping",
    "heavy_tail_no_noise",
    "spike_bursts",
    "diurnal",
    "sparse",
    "clean_labeled_pool",
)

#: Share of each pair the user labeled.
LABELED_FRACTION = 0.35
#: The smallest delay a noise probe adds, in ms, in jitter standard deviations, and as a share of the level.
MIN_SPIKE_MS = 5.0
MIN_SPIKE_SIGMAS = 10.0
MIN_SPIKE_FRAC = 0.4

_EPOCH = pd.Timestamp("2024-03-04T00:00:00Z")
_DAY_S = 86_400.0


@dataclass(frozen=True)
class _Spec:
    """How a family departs from the default series."""

    labels_at: str = "end"             # which end of the pair the labeled period sits at
    sizes: tuple[int, int] = (2000, 6000)
    interval_s: int = 60
    modes: str = "mix"                 # mix: 1, 2 or 3 modes by pair; flap: always 3, short dwells
    noise: str = "spikes"              # spikes: isolated + a few short bursts; bursts: 3-20 long; none
    jitter: str = "queue"              # queue: a few % of the level; heavy: capped lognormal ms
    diurnal: bool = False
    shift: bool = False
    clean_labels: bool = False         # no noise inside the labeled period


_SPECS: dict[str, _Spec] = {
    # The labels come first so that the new level is one the labeled period never saw.
    "level_shift_unlabeled": _Spec(labels_at="start", shift=True),
    "labels_at_start": _Spec(labels_at="start"),
    "labels_at_end": _Spec(labels_at="end"),
    "route_flapping": _Spec(modes="flap"),
    "heavy_tail_no_noise": _Spec(noise="none", jitter="heavy"),
    "spike_bursts": _Spec(noise="bursts"),
    "diurnal": _Spec(diurnal=True),
    # Sparse pairs are typically probed less often too; ten minutes keeps 100-300 probes to a day or two.
    "sparse": _Spec(sizes=(100, 300), interval_s=600),
    "clean_labeled_pool": _Spec(clean_labels=True),
}


def _loguniform(rng: np.random.Generator, lo: float, hi: float, size=None):
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def _mode_levels(rng: np.random.Generator, n_modes: int) -> np.ndarray:
    # Each further route is clearly slower than the previous one, so the modes are real, separate routes.
    base = _loguniform(rng, 10.0, 180.0)
    steps = rng.uniform(1.3, 1.9, n_modes - 1)
    gaps = rng.uniform(2.0, 10.0, n_modes - 1)
    levels = [base]
    for s, g in zip(steps, gaps):  # at most two steps: not a per-row loop
        levels.append(levels[-1] * s + g)
    return np.array(levels)


def _route_sequence(rng: np.random.Generator, n: int, n_modes: int, flap: bool) -> np.ndarray:
    """The route mode of every probe: dwells of random length, each in a mode other than the last."""
    if n_modes == 1:
        return np.zeros(n, dtype=np.int64)
    lo, hi = (10.0, 400.0) if flap else (60.0, 2500.0)
    k = int(n // lo) + 2  # enough dwells to cover the series even if every one is the shortest
    dwell = np.maximum(_loguniform(rng, lo, hi, k).astype(np.int64), int(lo))
    hops = rng.integers(1, n_modes, k - 1)  # 1..n_modes-1: never "switch" to the mode already in use
    modes = (rng.integers(0, n_modes) + np.r_[0, np.cumsum(hops)]) % n_modes
    return np.repeat(modes, dwell)[:n]


def _event_mask(rng: np.random.Generator, n: int, n_noise: int, lengths: tuple[int, int], burst_share: float,
                allowed: np.ndarray) -> np.ndarray:
    """A boolean mask of ``~n_noise`` noise probes: isolated spikes and bursts of ``lengths`` probes.

    Events sit at random offsets inside equal slots of the series, which keeps them apart (a good probe
    always separates two events, so a burst's length is the length drawn) without a rejection loop.
    """
    if n_noise <= 0:
        return np.zeros(n, dtype=bool)
    lo, hi = lengths
    mean_len = burst_share * (lo + hi) / 2 + (1 - burst_share)
    m = max(1, int(round(n_noise / mean_len)))
    is_burst = rng.random(m) < burst_share
    ev_len = np.where(is_burst, rng.integers(lo, hi + 1, m), 1)
    # Shrink the events if the slots cannot hold them with a gap; only matters for tiny series.
    slot = n // m
    ev_len = np.minimum(ev_len, max(1, slot - 2))
    room = np.maximum(slot - ev_len - 1, 1)
    starts = np.arange(m) * slot + 1 + (rng.random(m) * room).astype(np.int64)
    starts = np.minimum(starts, n - ev_len)
    diff = np.zeros(n + 1, dtype=np.int64)
    np.add.at(diff, starts, 1)
    np.add.at(diff, starts + ev_len, -1)
    mask = np.cumsum(diff[:n]) > 0
    return mask & allowed


def _spike_delay(rng: np.random.Generator, level: np.ndarray, sigma: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The added delay of every probe (0 where ``mask`` is False)."""
    n = level.size
    relative = level * rng.uniform(0.5, 3.0, n)
    absolute = rng.uniform(20.0, 200.0, n)
    delay = np.where(rng.random(n) < 0.5, relative, absolute)
    floor = np.maximum.reduce([np.full(n, MIN_SPIKE_MS), MIN_SPIKE_SIGMAS * sigma, MIN_SPIKE_FRAC * level])
    return np.where(mask, np.maximum(delay, floor), 0.0)


def _pair_frame(family: str, spec: _Spec, fam_idx: int, i: int, seed: int) -> tuple[pd.DataFrame, dict[str, Any]]:
    # One stream per (seed, family, pair): pair i is the same series whatever n_pairs is.
    rng = np.random.default_rng([int(seed), fam_idx, i])
    n = int(rng.integers(spec.sizes[0], spec.sizes[1] + 1))

    # A mix of uni-, bi- and trimodal pairs; the rotating start makes the mix differ between seeds.
    n_modes = 3 if spec.modes == "flap" else 1 + (i + int(rng.integers(0, 3))) % 3
    levels = _mode_levels(rng, n_modes)
    route = _route_sequence(rng, n, n_modes, flap=spec.modes == "flap")
    level = levels[route]

    # Whole seconds: the timestamps survive a CSV round trip exactly, so the label join is exact.
    steps = spec.interval_s + rng.integers(-3, 4, n)
    steps[0] = 0
    t_s = int(rng.integers(0, 6 * 3600)) + np.cumsum(steps)

    info: dict[str, Any] = {"n": n, "n_modes": n_modes, "levels_ms": levels.round(3).tolist()}
    if spec.diurnal:
        # Congestion peaks once a day (at a pair-specific hour) and lifts the level by tens of %.
        amp = rng.uniform(0.2, 0.6)
        phase = rng.uniform(0, 2 * np.pi)
        level = level * (1 + amp * 0.5 * (1 - np.cos(2 * np.pi * t_s / _DAY_S + phase)))
        info["diurnal_amplitude"] = float(amp)
    n_lab = int(round(LABELED_FRACTION * n))
    labeled = np.zeros(n, dtype=bool)
    if spec.labels_at == "start":
        labeled[:n_lab] = True
    else:
        labeled[n - n_lab:] = True
    info["labeled"] = (0, n_lab) if spec.labels_at == "start" else (n - n_lab, n)
    if spec.shift:
        at = int(rng.integers(int(0.45 * n), int(0.85 * n)))
        up = rng.random() < 0.7
        rel = rng.uniform(0.4, 1.2) if up else rng.uniform(0.3, 0.5)
        # At least 5 ms either way even on the fastest path, so the shift is a real new level.
        rel = max(rel, MIN_SPIKE_MS / float(levels.min()))
        factor = 1 + rel if up else 1 - min(rel, 0.5)
        level = level * np.where(np.arange(n) >= at, factor, 1.0)
        info.update(shift_at=at, shift_factor=float(factor))

    if spec.jitter == "heavy":
        med = rng.uniform(0.8, 2.0)
        # Capped so the tail stays "a few ms": heavy, but still the path's own variability.
        jit = np.minimum(med * np.exp(rng.normal(0.0, 0.8, n)), 6.0 * med) - med
        sigma = np.full(n, med)
    else:
        sigma = level * rng.uniform(0.01, 0.04)
        # Gamma(4) standardised: mean 0, sd 1, skewed right like queueing delay, never below -2 sd.
        jit = sigma * (rng.gamma(4.0, 1.0, n) - 4.0) / 2.0

    rate = rng.uniform(0.02, 0.08)
    allowed = ~labeled if spec.clean_labels else np.ones(n, dtype=bool)
    if spec.noise == "none":
        noise = np.zeros(n, dtype=bool)
    elif spec.noise == "bursts":
        noise = _event_mask(rng, n, int(round(rate * n)), (3, 20), 0.85, allowed)
    else:
        noise = _event_mask(rng, n, int(round(rate * n)), (2, 5), 0.2, allowed)
    rtt = np.maximum(level + jit + _spike_delay(rng, level, sigma, noise), 0.1)

    src = f"10.{fam_idx}.{i // 250}.{i % 250 + 1}"
    dst = f"{int(rng.integers(11, 224))}.{int(rng.integers(0, 256))}.{int(rng.integers(0, 256))}.{int(rng.integers(1, 255))}"
    truth = pd.array(np.where(noise, "noise", "good"), dtype="string")
    label = truth.copy()
    label[~labeled] = pd.NA
    info.update(src=src, dst=dst, noise_rate=float(noise.mean()))
    frame = pd.DataFrame({
        "timestamp": _EPOCH + pd.to_timedelta(t_s, unit="s"),
        "src": src, "dst": dst, "rtt_ms": rtt.round(3), "truth": truth, "label": label, "family": family,
    })
    return frame, info


def generate(family: str, n_pairs: int = 4, seed: int = 0) -> pd.DataFrame:
    """``n_pairs`` SD pairs of family ``family`` (one of :data:`FAMILIES`), seeded by ``seed``.

    Columns: ``timestamp`` (UTC, increasing within a pair, ~one probe a minute), ``src``, ``dst``,
    ``rtt_ms`` (> 0), ``truth`` (good/noise, every row), ``label`` (the user's label: the truth on the
    labeled period, NA elsewhere), ``family``. Rows are grouped by pair, each pair in time order; the
    same arguments give the same frame. ``df.attrs["scenario"]`` lists per pair ``src``, ``dst``, ``n``,
    ``n_modes``, ``levels_ms``, ``labeled`` (row span within the pair, end exclusive), ``noise_rate`` and,
    where the family has them, ``shift_at``/``shift_factor`` or ``diurnal_amplitude``.
    """
    if family not in _SPECS:
        raise ValueError(f"unknown scenario family {family!r}; one of {list(FAMILIES)}")
    if n_pairs < 1:
        raise ValueError(f"n_pairs must be >= 1, got {n_pairs}")
    spec, fam_idx = _SPECS[family], FAMILIES.index(family)
    parts = [_pair_frame(family, spec, fam_idx, i, seed) for i in range(n_pairs)]
    df = pd.concat([p[0] for p in parts], ignore_index=True)
    df.attrs["scenario"] = {"family": family, "seed": int(seed), "pairs": [p[1] for p in parts]}
    return df


def _iso(ts: pd.Series) -> pd.Series:
    return ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def write(family: str, out_dir: Union[str, Path], n_pairs: int = 4, seed: int = 0) -> dict[str, Any]:
    """Write one family's series as the CSV files a user would hand to ``flamenco run latency``.

    Under ``out_dir``: ``data.csv`` (timestamp ISO UTC, src, dst, rtt_ms), ``labels.csv`` (timestamp,
    src, dst, label: the labeled rows only; for ``--labels``) and ``truth.csv`` (the same keys, label =
    truth, every row). Returns the paths and row counts.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = generate(family, n_pairs=n_pairs, seed=seed)
    keys = pd.DataFrame({"timestamp": _iso(df["timestamp"]), "src": df["src"], "dst": df["dst"]})
    paths = {"data": out / "data.csv", "labels": out / "labels.csv", "truth": out / "truth.csv"}
    keys.assign(rtt_ms=df["rtt_ms"]).to_csv(paths["data"], index=False)
    given = df["label"].notna().to_numpy()
    keys[given].assign(label=df.loc[given, "label"].astype(str)).to_csv(paths["labels"], index=False)
    keys.assign(label=df["truth"].astype(str)).to_csv(paths["truth"], index=False)
    return {**{k: str(v) for k, v in paths.items()}, "family": family, "seed": int(seed), "pairs": int(n_pairs),
            "rows": int(len(df)), "labeled_rows": int(given.sum()), "noise_rows": int((df["truth"] == "noise").sum())}
