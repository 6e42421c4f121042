"""Benchmark: applying 10 LFs to 1,000,000 flow records (issue 3, section 7, first bullet).

Compares, on the same synthetic, seeded, CIC-like flows:

* Flamenco's applier on a declarative pack (thresholds are statistics: computed from the data, or
  taken from a profile);
* Flamenco's applier on 10 equivalent ``@vectorized_lf`` Python LFs;
* Snorkel's ``PandasLFApplier`` on 10 equivalent row-wise ``LabelingFunction``s, run on a subsample
  (default 20,000 rows) and scaled linearly to the full row count (it is row-at-a-time, so linear);
* a raw-numpy lower bound: one hand-written ``np.where`` per LF with the thresholds precomputed.

Every method's matrix is checked against the others before timing is reported (Snorkel's on its
subsample). Goals: >= 500x Snorkel's rows/s, and within 2x of raw numpy.

    .venv/bin/python benchmarks/labeling_applier.py [--rows 1000000] [--snorkel-rows 20000] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flamenco_core.labeling import ABSTAIN, LFPack, apply_lfs, compute_stats, resolved_thresholds, vectorized_lf  # noqa: E402


def synth_flows(n: int, seed: int) -> pd.DataFrame:
    """Flow-like columns: canonical dtypes (int32 ports, int16 protocol), heavy tails, some NaNs."""
    rng = np.random.default_rng(seed)
    attack = rng.random(n) < 0.3
    packets = np.where(attack, rng.integers(1, 4, n), rng.integers(1, 400, n)).astype(np.float64)
    df = pd.DataFrame(
        {
            "src_port": np.where(attack, 123, rng.integers(1024, 65536, n)).astype(np.int32),
            "dst_port": np.where(attack, rng.integers(1024, 65536, n), rng.choice([53, 80, 443, 123], n)).astype(np.int32),
            "protocol": rng.choice(np.array([6, 17], dtype=np.int16), n, p=[0.6, 0.4]),
            "packets": packets,
            "bytes": packets * np.where(attack, 468.0, rng.lognormal(6, 1, n)),
            "duration": rng.exponential(2.0, n),
            "flow_bytes_s": rng.lognormal(8, 2, n),
            "iat_mean": rng.lognormal(0, 1.5, n),
            "fwd_pkt_len_mean": rng.lognormal(5, 0.7, n),
            "syn_flag_count": rng.integers(0, 3, n).astype(np.float64),
        }
    )
    for col, frac in (("bytes", 0.02), ("duration", 0.05), ("iat_mean", 0.01)):
        df.loc[rng.random(n) < frac, col] = np.nan
    return df


PACK = {
    "pack": "bench-10",
    "version": 1,
    "group": "bench",
    "classes": ["benign", "attack"],
    "universal_features": ["src_port", "dst_port", "protocol"],
    "lfs": [
        {"name": "ntp_reflection", "label": "attack", "when": [{"feature": "src_port", "op": "==", "value": 123}, {"feature": "protocol", "op": "==", "value": 17}]},
        {"name": "small_bytes", "label": "benign", "when": [{"feature": "bytes", "op": "<=", "value": "0.5*p75"}, {"feature": "packets", "op": "<=", "value": "mean"}]},
        {"name": "bytes_outlier", "label": "attack", "when": [{"feature": "bytes", "op": ">", "value": "q3 + 1.5*iqr"}]},
        {"name": "long_flow", "label": "benign", "when": [{"feature": "duration", "op": ">=", "value": "mean + 2*std"}]},
        {"name": "fast_rate", "label": "attack", "when": [{"feature": "flow_bytes_s", "op": ">", "value": "p99.9"}]},
        {"name": "web_or_dns", "label": "benign", "when": [{"feature": "dst_port", "op": "in", "value": [53, 80, 443]}]},
        {"name": "mid_iat", "label": "benign", "when": [{"feature": "iat_mean", "op": "between", "value": ["q1", "q3"]}]},
        {"name": "few_packets_udp", "label": "attack", "when": [{"feature": "packets", "op": "<", "value": "p10"}, {"feature": "protocol", "op": "!=", "value": 6}]},
        {"name": "big_segments", "label": "benign", "when": [{"feature": "fwd_pkt_len_mean", "op": ">", "value": "median"}]},
        {"name": "syn_heavy", "label": "attack", "when": [{"feature": "syn_flag_count", "op": ">=", "value": "max"}]},
    ],
}


def build_masks(thr: dict):
    """Per LF: (class index, f(columns) -> bool mask) with precomputed thresholds (shared by baselines)."""
    t = {name: conds for name, conds in thr.items()}

    def g(name, key):
        return t[name][key]

    return [
        (1, lambda c: (c["src_port"] == 123) & (c["protocol"] == 17)),
        (0, lambda c: (c["bytes"] <= g("small_bytes", "bytes <= 0.5*p75")) & (c["packets"] <= g("small_bytes", "packets <= mean"))),
        (1, lambda c: c["bytes"] > g("bytes_outlier", "bytes > q3 + 1.5*iqr")),
        (0, lambda c: c["duration"] >= g("long_flow", "duration >= mean + 2*std")),
        (1, lambda c: c["flow_bytes_s"] > g("fast_rate", "flow_bytes_s > p99.9")),
        (0, lambda c: (c["dst_port"] == 53) | (c["dst_port"] == 80) | (c["dst_port"] == 443)),
        (0, lambda c: (c["iat_mean"] >= g("mid_iat", "iat_mean between [q1, q3]")[0]) & (c["iat_mean"] <= g("mid_iat", "iat_mean between [q1, q3]")[1])),
        (1, lambda c: (c["packets"] < g("few_packets_udp", "packets < p10")) & (c["protocol"] != 6)),
        (0, lambda c: c["fwd_pkt_len_mean"] > g("big_segments", "fwd_pkt_len_mean > median")),
        (1, lambda c: c["syn_flag_count"] >= g("syn_heavy", "syn_flag_count >= max")),
    ]


def snorkel_row_functions(thr: dict):
    """The same 10 LFs written as idiomatic Snorkel row functions (attribute access, short-circuit)."""
    sb, sp = thr["small_bytes"]["bytes <= 0.5*p75"], thr["small_bytes"]["packets <= mean"]
    bo = thr["bytes_outlier"]["bytes > q3 + 1.5*iqr"]
    lf_ = thr["long_flow"]["duration >= mean + 2*std"]
    fr = thr["fast_rate"]["flow_bytes_s > p99.9"]
    lo, hi = thr["mid_iat"]["iat_mean between [q1, q3]"]
    fp = thr["few_packets_udp"]["packets < p10"]
    bs = thr["big_segments"]["fwd_pkt_len_mean > median"]
    sh = thr["syn_heavy"]["syn_flag_count >= max"]
    # NaN comparisons are False in Python as in numpy, so NaN rows abstain here as in the applier
    return [
        lambda x: 1 if x.src_port == 123 and x.protocol == 17 else ABSTAIN,
        lambda x: 0 if x.bytes <= sb and x.packets <= sp else ABSTAIN,
        lambda x: 1 if x.bytes > bo else ABSTAIN,
        lambda x: 0 if x.duration >= lf_ else ABSTAIN,
        lambda x: 1 if x.flow_bytes_s > fr else ABSTAIN,
        lambda x: 0 if x.dst_port in (53, 80, 443) else ABSTAIN,
        lambda x: 0 if lo <= x.iat_mean <= hi else ABSTAIN,
        lambda x: 1 if x.packets < fp and x.protocol != 6 else ABSTAIN,
        lambda x: 0 if x.fwd_pkt_len_mean > bs else ABSTAIN,
        lambda x: 1 if x.syn_flag_count >= sh else ABSTAIN,
    ]


def raw_numpy(cols: dict, masks) -> np.ndarray:
    L = np.empty((len(next(iter(cols.values()))), len(masks)), dtype=np.int8)
    for j, (k, m) in enumerate(masks):
        L[:, j] = np.where(m(cols), np.int8(k), np.int8(ABSTAIN))
    return L


def raw_numpy_stats(df: pd.DataFrame) -> dict:
    """The same thresholds with plain numpy (finite values, linear percentiles, ddof=1)."""
    def fin(c):
        v = df[c].to_numpy(np.float64)
        return v[np.isfinite(v)]

    b, p, d, r, i, f, s = (fin(c) for c in ("bytes", "packets", "duration", "flow_bytes_s", "iat_mean", "fwd_pkt_len_mean", "syn_flag_count"))
    bq1, bq3 = np.percentile(b, [25, 75])
    return {
        "small_bytes": {"bytes <= 0.5*p75": 0.5 * bq3, "packets <= mean": p.mean()},
        "bytes_outlier": {"bytes > q3 + 1.5*iqr": bq3 + 1.5 * (bq3 - bq1)},
        "long_flow": {"duration >= mean + 2*std": d.mean() + 2 * d.std(ddof=1)},
        "fast_rate": {"flow_bytes_s > p99.9": np.percentile(r, 99.9)},
        "mid_iat": {"iat_mean between [q1, q3]": list(np.percentile(i, [25, 75]))},
        "few_packets_udp": {"packets < p10": np.percentile(p, 10)},
        "big_segments": {"fwd_pkt_len_mean > median": np.median(f)},
        "syn_heavy": {"syn_flag_count >= max": s.max()},
    }


def best_of(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--snorkel-rows", type=int, default=20_000, help="Snorkel runs on this many rows; its rate is scaled")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=5, help="best of N for the fast methods")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="threads for the parallel row")
    args = ap.parse_args(argv)

    df = synth_flows(args.rows, args.seed)
    pack = LFPack.from_dict(PACK)
    profile = compute_stats(df, pack.features(), pack.needed_stats())
    thr = resolved_thresholds(pack, profile)
    masks = build_masks(thr)
    cols = {c: df[c].to_numpy() for c in df.columns}

    vec_lfs = []
    for spec, (k, m) in zip(pack.lfs, masks):
        vec_lfs.append(vectorized_lf(name=spec.name)(lambda d, k=k, m=m: np.where(m(d), k, ABSTAIN)))

    from snorkel.labeling import LabelingFunction, PandasLFApplier

    row_lfs = [LabelingFunction(spec.name, f) for spec, f in zip(pack.lfs, snorkel_row_functions(thr))]

    # ---- correctness first: all methods must agree
    L_spec = apply_lfs(pack, df)
    L_prof = apply_lfs(pack, df, stats=profile)
    L_vec = apply_lfs(vec_lfs, df)
    L_raw = raw_numpy(cols, build_masks(raw_numpy_stats(df)))
    for name, L in (("spec+profile", L_prof), ("vectorized", L_vec), ("raw numpy", L_raw)):
        assert np.array_equal(L_spec, L), f"{name} differs from the spec applier"
    sub = df.iloc[: args.snorkel_rows]
    t_snorkel, L_snorkel = best_of(lambda: PandasLFApplier(row_lfs).apply(sub, progress_bar=False), 1)
    assert np.array_equal(L_snorkel, apply_lfs(pack, sub, stats=profile)), "Snorkel's matrix differs"

    # ---- timings
    n = args.rows
    rows = []
    t, _ = best_of(lambda: apply_lfs(pack, df), args.repeat)
    rows.append(("flamenco: declarative pack (stats computed from data)", n, t))
    if args.jobs > 1:
        t, _ = best_of(lambda: apply_lfs(pack, df, n_jobs=args.jobs), args.repeat)
        rows.append((f"flamenco: declarative pack (stats from data, {args.jobs} threads)", n, t))
    t, _ = best_of(lambda: apply_lfs(pack, df, stats=profile), args.repeat)
    rows.append(("flamenco: declarative pack (stats from profile)", n, t))
    if args.jobs > 1:
        t, _ = best_of(lambda: apply_lfs(pack, df, stats=profile, n_jobs=args.jobs), args.repeat)
        rows.append((f"flamenco: declarative pack (profile, {args.jobs} threads)", n, t))
    t, _ = best_of(lambda: apply_lfs(vec_lfs, df), args.repeat)
    rows.append(("flamenco: 10 @vectorized_lf Python LFs", n, t))
    t_raw, _ = best_of(lambda: raw_numpy(cols, masks), args.repeat)
    rows.append(("raw numpy lower bound (thresholds precomputed)", n, t_raw))
    t_raw_stats, _ = best_of(lambda: raw_numpy(cols, build_masks(raw_numpy_stats(df))), args.repeat)
    rows.append(("raw numpy incl. computing the statistics", n, t_raw_stats))
    snorkel_rate = args.snorkel_rows / t_snorkel
    rows.append((f"snorkel PandasLFApplier (measured on {args.snorkel_rows:,} rows, scaled)", n, n / snorkel_rate))

    print(f"# 10 LFs x {n:,} synthetic flows (seed {args.seed}); best of {args.repeat}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}, pandas {pd.__version__}")
    print(f"# all matrices identical (Snorkel's on its {args.snorkel_rows:,}-row subsample); "
          f"raw-numpy ratio compares like with like: rows with a profile vs precomputed thresholds, "
          f"rows computing statistics vs raw numpy computing them")
    header = f"| {'method':<66} | {'rows':>9} | {'time (s)':>9} | {'rows/s':>12} | {'x Snorkel':>9} | {'vs raw numpy':>12} |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for name, nrows, secs in rows:
        rate = nrows / secs
        speedup = rate / snorkel_rate
        if name.startswith("snorkel"):
            vs_raw = f"{secs / t_raw:,.0f}x slower"
        elif "from data" in name:
            vs_raw = f"{secs / t_raw_stats:.2f}x time"
        elif name.startswith("raw numpy incl"):
            vs_raw = "-"
        else:
            vs_raw = f"{secs / t_raw:.2f}x time"
        print(f"| {name:<66} | {nrows:>9,} | {secs:>9.4f} | {rate:>12,.0f} | {speedup:>9,.0f} | {vs_raw:>12} |")
    spec_rate = n / rows[0][2]
    print()
    print(f"goal >= 500x Snorkel (pack, stats from data): {spec_rate / snorkel_rate:,.0f}x -> {'met' if spec_rate / snorkel_rate >= 500 else 'NOT met'}")
    ratio = next(secs for name, _, secs in rows if name.endswith("(stats from profile)")) / t_raw
    print(f"goal within 2x of raw numpy (pack with profile vs precomputed thresholds): {ratio:.2f}x -> {'met' if ratio <= 2 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
