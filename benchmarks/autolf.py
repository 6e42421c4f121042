"""Automatic LFs (Snuba-style): F1 of the labels they produce, raw RTT against window features, and the
changes made to Snuba measured against plain Snuba.

    .venv/bin/python benchmarks/autolf.py [--seeds 20] [--n 8000] [--ark-scale 0.1]
        [--scenarios spikes,bursts,ark] [--configs snuba_plain,raw,window_plain,window,window_c2] [--json PATH]

Scenarios (all seeded; ``label`` is the injected ground truth):

* ``spikes``: lognormal baseline with heavy-tailed (Pareto) spikes, 6% noise.
* ``bursts``: 8% noise, 70% of it in congestion bursts of 10-40 points raised by 15-35% (overlapping the
  baseline's tail), the rest spikes. A series holds only ~15 bursts, so the noise share of its time
  splits varies (2.9% to 11% here): that is what the two held-out columns tell apart.
* ``ark``: the Ark-like generator's series (:mod:`flamenco_core.synth.ark`, in memory, the same values
  ``generate_ark`` writes), one subset per pair and route (the generator's own ``mode``: an oracle
  modality split, so this measures LF generation alone), split 65/25/10 in time with the validation part
  as the labeled set, as in the paper's Ark study. Subsets under 200 points are left out.

For ``spikes``/``bursts`` the first 2/3 of a series is training data of which a random 5% is labeled, the
last 1/3 held out. Columns: F1 of the noise class for the label model's labels on the training rows
(``train``: what the end model learns from), on held-out rows with the training data's thresholds
(``held_train_stats``: the pack applied with ``stats=`` a profile of the training data) and with thresholds
re-resolved on the held-out rows themselves (``held_local``); mean over series. Configurations:

* ``snuba_plain``: Snuba as published, on raw RTT: stumps, Snorkel's label model with the labeled class
  balance, no filter of trivial heuristics;
* ``raw``: this implementation on raw RTT (stumps);
* ``window``: stumps on RTT plus window features (mean, std, min, q1, median, q3, max over 10 points);
* ``window_plain``: ``window`` without this implementation's changes (as ``snuba_plain``);
* ``window_c2``: depth-2 trees on RTT plus window features.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flamenco_core.autolf import SnubaConfig, add_window_features, feature_sets, generate_lfs  # noqa: E402
from flamenco_core.labeling import DataStatistics  # noqa: E402

PLAIN = {"skip_trivial": False, "label_model": "snorkel", "class_balance": "labeled"}
CONFIGS = {
    "snuba_plain": ("raw", dict(PLAIN)),
    "raw": ("raw", {}),
    "window_plain": ("window", dict(PLAIN)),
    "window": ("window", {}),
    "window_c2": ("window", {"max_cardinality": 2}),
}


def rtt_series(n: int, seed: int, noise_frac: float, burst_share: float) -> pd.DataFrame:
    """Lognormal baseline, Pareto spikes and (``burst_share > 0``) bursts of 10-40 points raised 15-35%."""
    rng = np.random.default_rng(seed)
    good = 40.0 * rng.lognormal(0.0, 0.1, n)
    rtt = good.copy()
    noise = np.zeros(n, dtype=bool)
    if burst_share > 0:
        n_bursts = max(1, int(noise_frac * n * burst_share / 25))
        starts = rng.integers(0, n, n_bursts)
        lens = rng.integers(10, 41, n_bursts)
        amps = rng.uniform(0.15, 0.35, n_bursts)
        delta = np.zeros(n + 1, dtype=int)
        np.add.at(delta, starts, 1)
        np.add.at(delta, np.minimum(starts + lens, n), -1)
        in_burst = np.cumsum(delta[:n]) > 0
        marker = np.zeros(n, dtype=int)
        marker[starts] = np.arange(1, n_bursts + 1)
        burst_id = np.maximum.accumulate(marker) - 1
        rtt[in_burst] = good[in_burst] * (1 + amps[burst_id[in_burst]] * rng.uniform(0.8, 1.2, in_burst.sum()))
        noise |= in_burst
    n_spikes = int(noise_frac * n * (1 - burst_share))
    idx = rng.choice(n, n_spikes, replace=False)
    rtt[idx] = good[idx] * (1.3 + rng.pareto(1.5, n_spikes))
    noise[idx] = True
    df = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=n, freq="min", tz="UTC"), "rtt_ms": rtt,
                       "label": np.where(noise, "noise", "good")})
    return add_window_features(df)


def synthetic_cases(kind: str, seeds: int, n: int):
    for seed in range(seeds):
        df = rtt_series(n, seed, 0.06, 0.0) if kind == "spikes" else rtt_series(n, seed, 0.08, 0.7)
        cut = int(n * 2 / 3)
        train, test = df.iloc[:cut], df.iloc[cut:]
        labeled = train.sample(frac=0.05, random_state=seed)
        yield f"{kind}-{seed}", labeled, train.drop(labeled.index), test


def ark_cases(scale: float, seed: int = 0, min_points: int = 200):
    from flamenco_core.preprocess import time_splits
    from flamenco_core.synth._common import rng_for
    from flamenco_core.synth.ark import _pair_points, ark_plan

    plan = ark_plan(scale, seed)
    rng = rng_for(seed, 1)  # the stream generate_ark draws from, so the values are the ones it writes
    for p in plan.itertuples(index=False):
        pts = _pair_points(p, rng)
        for mode in np.unique(pts["mode"]):
            sel = pts["mode"] == mode
            if sel.sum() < min_points:
                continue
            df = pd.DataFrame({
                "timestamp": pd.to_datetime(pts["t_us"][sel], unit="us", utc=True),
                "rtt_ms": pts["rtt"][sel],
                "label": np.where(pts["kind"][sel] > 0, "noise", "good"),
            })
            df = add_window_features(df)
            s = time_splits(df, "ark")
            if (s.validation.label == "noise").sum() == 0 or (s.validation.label == "good").sum() == 0:
                continue
            yield f"ark-pair{p.pair}-mode{mode}", s.validation, s.train, s.test


def f1_noise(truth: pd.Series, pred: np.ndarray) -> float:
    y = (truth == "noise").to_numpy()
    p = np.asarray(pred) == 1
    denom = y.sum() + p.sum()
    return float(2 * (y & p).sum() / denom) if denom else 1.0


def run(cases, configs=CONFIGS) -> pd.DataFrame:
    rows = []
    sets = feature_sets()
    for case, labeled, unlabeled, test in cases:
        for name, (fs, overrides) in configs.items():
            t0 = time.perf_counter()
            try:
                r = generate_lfs(labeled, unlabeled, features=sets[fs], config=SnubaConfig(seed=0, **overrides))
            except ValueError as exc:  # recorded, never aborting the other cases
                rows.append({"case": case, "config": name, "error": str(exc)})
                continue
            secs = time.perf_counter() - t0
            rows.append({
                "case": case, "config": name, "rows": len(unlabeled), "seconds": secs, "heuristics": len(r.heuristics),
                "specs": len(r.pack.lfs), "rounds": len(r.rounds), "stop": r.stop_reason,
                "train": f1_noise(unlabeled.label, r.train_probs.argmax(axis=1)),
                "held_train_stats": f1_noise(test.label, r.predict_proba(test, stats=DataStatistics(unlabeled)).argmax(axis=1)),
                "held_local": f1_noise(test.label, r.predict_proba(test).argmax(axis=1)),
                "drift_rows": int(sum(r.drift.values())),
            })
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--n", type=int, default=8000)
    ap.add_argument("--ark-scale", type=float, default=0.1)
    ap.add_argument("--scenarios", default="spikes,bursts,ark")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    configs = {k: CONFIGS[k] for k in args.configs.split(",")}
    makers = {
        "spikes": lambda: synthetic_cases("spikes", args.seeds, args.n),
        "bursts": lambda: synthetic_cases("bursts", args.seeds, args.n),
        "ark": lambda: ark_cases(args.ark_scale),
    }
    out = {}
    for scenario in args.scenarios.split(","):
        t0 = time.perf_counter()
        df = run(makers[scenario](), configs)
        errors = df[df.get("error").notna()] if "error" in df else df.iloc[:0]
        ok = df[df.get("error").isna()] if "error" in df else df
        table = ok.groupby("config", sort=False)[["train", "held_train_stats", "held_local", "heuristics", "seconds"]].mean()
        wins = ok.pivot(index="case", columns="config", values="train")
        print(f"\n== {scenario}: {ok.case.nunique()} series ({int(ok.drop_duplicates('case').get('rows', pd.Series([0])).sum())} "
              f"training rows), mean F1(noise); errors: {len(errors)}; {time.perf_counter() - t0:.1f} s in all")
        print(table.round(3).to_string())
        if {"window", "raw"} <= set(wins.columns):
            print(f"window >= raw - 0.01 on training labels in {(wins['window'] >= wins['raw'] - 0.01).sum()}/{len(wins)} series")
        print(f"threshold drift rows (percentile vs raw cut point, training data): {int(ok.drift_rows.sum())}")
        out[scenario] = {"mean": table.round(4).to_dict(orient="index"), "n_series": int(ok.case.nunique()),
                         "errors": errors.to_dict(orient="records")}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
