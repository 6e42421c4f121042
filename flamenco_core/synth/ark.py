"""CAIDA-Ark-like latency: scamper ``icmp-echo-paris`` traces as ``sc_warts2json`` prints them.

25 source-destination (SD) pairs (5 vantage points x 5 destinations), one trace per RTT, time-ordered per
pair. 12 pairs are multimodal: 6 by route changes (level shifts holding for long segments) and 6 by a
mixture of paths. Noise is injected as heavy-tailed spikes (Pareto excursions) and bursts (consecutive
runs of raised RTTs, as in a congestion episode); the injected points are the ``noise`` ground truth.

Each trace records only the destination's reply (intermediate routers did not answer, which scamper
represents by leaving their hops out), and that probe's ``tx`` equals the trace's ``start``: a reader
taking the timestamp from either field produces the same key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._common import (
    SynthResult,
    check_scale,
    in_runs,
    prepare_out_dir,
    rng_for,
    scaled_count,
    us_to_text,
    us_to_timestamps,
    write_labels,
    write_rows,
)

#: RTTs per SD pair at scale 1 (heavy-tailed, 2,000 to 110,000; 466,000 in all). Assigned to pairs by seed.
ARK_SIZES = (
    2000, 2000, 2100, 2100, 2300, 2400, 2600, 2900, 3200, 3700, 4200, 4900, 5700,
    6800, 8200, 10100, 12500, 15700, 19900, 25700, 33500, 44100, 59200, 80200, 110000,
)  # fmt: skip
N_VANTAGE = 5
N_DEST = 5
N_LEVEL_SHIFT = 6
N_MIXTURE = 6
N_MULTIMODAL = N_LEVEL_SHIFT + N_MIXTURE
#: Fewest RTTs per pair at any scale.
MIN_POINTS = 40
#: A pair's probing interval is chosen so its scale-1 series spans this long; scale then stretches time.
SPAN_S = 30 * 86_400
BASE_US = 1_577_836_800 * 10**6  # 2020-01-01T00:00:00Z: fixed so output never depends on the clock
NOISE_FRACTION = (0.03, 0.15)
NOISE_KINDS = np.array(["", "spike", "burst"], dtype=object)

_VP_ADDRS = [f"192.0.2.{11 + i}" for i in range(N_VANTAGE)]  # TEST-NET-1: never a real host
_DST_ADDRS = ["198.51.100.1", "198.51.100.77", "203.0.113.9", "203.0.113.130", "198.51.100.200"]

_TRACE = (
    '{"type":"trace","version":"0.1", "userid":0, "method":"icmp-echo-paris", "src":"%s", "dst":"%s",'
    ' "icmp_sum":%d, "stop_reason":"COMPLETED", "stop_data":0,'
    ' "start":{"sec":%d, "usec":%d, "ftime":"%s"}, "hop_count":%d, "attempts":2, "hoplimit":0,'
    ' "firsthop":1, "wait":5, "wait_probe":0, "tos":0, "probe_size":44, "probe_count":%d,'
    ' "hops":[{"addr":"%s", "probe_ttl":%d, "probe_id":1, "probe_size":44, "tx":{"sec":%d, "usec":%d},'
    ' "rtt":%.3f, "reply_ttl":%d, "reply_tos":0, "reply_ipid":%d, "reply_size":44, "icmp_type":0,'
    ' "icmp_code":0}]}'
)
_CYCLE_START = '{"type":"cycle-start", "list_name":"team-1", "id":%d, "hostname":"%s", "start_time":%d}'
_CYCLE_STOP = '{"type":"cycle-stop", "list_name":"team-1", "id":%d, "hostname":"%s", "stop_time":%d}'


def ark_plan(scale: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """The per-pair plan (sizes, modality, base RTT, noise fraction, timing) without generating any RTT.

    Cheap: use it to check planned sizes at scale 1 without writing 466k traces. Columns: ``pair``, ``vp``,
    ``hostname``, ``src``, ``dst``, ``n`` (RTTs at this scale), ``n_full`` (at scale 1), ``modality``
    (``unimodal``/``level_shift``/``mixture``), ``n_modes``, ``base_rtt_ms``, ``noise_fraction``,
    ``interval_s`` (mean probing interval), ``start_us``, ``path_len``, ``init_ttl``.
    """
    scale = check_scale(scale)
    rng = rng_for(seed, 0)
    n_pairs = N_VANTAGE * N_DEST
    sizes = rng.permutation(np.array(ARK_SIZES))
    multi = rng.choice(n_pairs, N_MULTIMODAL, replace=False)
    modality = np.full(n_pairs, "unimodal", dtype=object)
    modality[multi[:N_LEVEL_SHIFT]] = "level_shift"
    modality[multi[N_LEVEL_SHIFT:]] = "mixture"
    n_modes = np.ones(n_pairs, dtype=int)
    n_modes[multi[:N_LEVEL_SHIFT]] = rng.integers(2, 4, N_LEVEL_SHIFT)  # bimodal or trimodal routes
    n_modes[multi[N_LEVEL_SHIFT:]] = rng.integers(2, 5, N_MIXTURE)
    vp = np.repeat(np.arange(N_VANTAGE), N_DEST)
    dst = np.tile(np.arange(N_DEST), N_VANTAGE)
    return pd.DataFrame(
        {
            "pair": np.arange(n_pairs),
            "vp": vp,
            "hostname": [f"vp{v + 1}-synth" for v in vp],
            "src": [_VP_ADDRS[v] for v in vp],
            "dst": [_DST_ADDRS[d] for d in dst],
            "n": [scaled_count(s, scale, MIN_POINTS) for s in sizes],
            "n_full": sizes,
            "modality": modality,
            "n_modes": n_modes,
            "base_rtt_ms": np.round(rng.uniform(8.0, 220.0, n_pairs), 3),
            "noise_fraction": np.round(rng.uniform(*NOISE_FRACTION, n_pairs), 4),
            "interval_s": SPAN_S / sizes,
            "start_us": rng.integers(0, 3600 * 10**6, n_pairs),
            "path_len": rng.integers(8, 22, n_pairs),
            "init_ttl": rng.choice([64, 128, 255], n_pairs),
        }
    )


def _segments(n: int, m: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Route epochs for a level-shift pair: 3-6 long segments, each at least half its fair share, visiting
    every one of the ``m`` routes, never repeating the previous route."""
    k = m + int(rng.integers(1, 4))
    share = 0.5 / k + 0.5 * rng.dirichlet(np.ones(k))
    bounds = np.round(np.cumsum(share) * n).astype(int)
    lengths = np.diff(np.concatenate([[0], bounds]))
    first = rng.permutation(m)
    steps = rng.integers(1, m, k - m)  # a step of 1..m-1 modulo m always changes route
    rest = (first[-1] + np.cumsum(steps)) % m
    seg_mode = np.concatenate([first, rest])
    segment = np.repeat(np.arange(k), lengths)
    return segment, seg_mode[segment]


def _noise(good: np.ndarray, frac: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Inject spikes and bursts into ``good``; returns the RTTs and a kind code per point (0 good,
    1 spike, 2 burst)."""
    n = len(good)
    burst_share = rng.uniform(0.3, 0.7)
    mean_len = 1 + 1 / 0.25  # lengths are 1 + Geometric(0.25)
    n_bursts = int(round(frac * n * burst_share / mean_len))
    starts = np.sort(rng.integers(0, n, n_bursts))
    lens = 1 + rng.geometric(0.25, n_bursts)
    in_burst = in_runs(n, starts, lens)
    # Each point in a burst takes the amplitude of the latest burst that started at or before it.
    marker = np.zeros(n, dtype=int)
    marker[starts] = np.arange(1, n_bursts + 1)
    burst_id = np.maximum.accumulate(marker) - 1
    kind = np.where(in_burst, 2, 0).astype(np.int8)
    n_spikes = max(1, int(round(frac * n * (1 - burst_share))))
    kind[rng.choice(n, min(n_spikes, n), replace=False)] = 1

    # Excursions scale with the path's RTT (at least a few ms), so noise is relative, not absolute.
    # At least half the path's RTT (or 10 ms) above it: congestion and ICMP slow-path spikes stand out from
    # jitter, as in the paper's Ark data; they can still land on another route's level, which is what
    # makes modality matter.
    c = np.maximum(0.5 * good, 10.0)
    amp = rng.lognormal(0.3, 0.5, max(n_bursts, 1))
    spike_exc = c * (1.0 + rng.pareto(1.4, n))
    burst_exc = c * (1.0 + amp[np.clip(burst_id, 0, None)] * rng.uniform(0.5, 1.5, n))
    exc = np.where(kind == 1, spike_exc, np.where(kind == 2, burst_exc, 0.0))
    return good + np.minimum(exc, 5000.0), kind


def _pair_points(p: pd.Series, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n, m, base = int(p.n), int(p.n_modes), float(p.base_rtt_ms)
    gaps = rng.uniform(0.7, 1.3, n) * p.interval_s * 1e6
    t_us = BASE_US + int(p.start_us) + np.cumsum(np.maximum(gaps.astype(np.int64), 1))
    # Distinct routes differ by a clear margin (12-45% of base plus 2-12 ms) so modes do not blur.
    levels = base + np.concatenate([[0.0], np.cumsum(rng.uniform(0.12, 0.45, m - 1) * base + rng.uniform(2, 12, m - 1))])
    if p.modality == "level_shift":
        segment, mode = _segments(n, m, rng)
    elif p.modality == "mixture":
        weights = 0.6 * rng.dirichlet(np.full(m, 2.0)) + 0.4 / m  # every path carries >= 10% of probes
        mode = rng.choice(m, n, p=weights)
        segment = np.zeros(n, dtype=int)
    else:
        mode = np.zeros(n, dtype=int)
        segment = np.zeros(n, dtype=int)
    jitter = rng.gamma(2.0, 0.006 * base + 0.08, n)
    diurnal = 0.01 * base * np.sin(2 * np.pi * (t_us / 86_400e6) + rng.uniform(0, 2 * np.pi))
    good = levels[mode] + jitter + diurnal
    rtt, kind = _noise(good, float(p.noise_fraction), rng)
    return {
        "t_us": t_us,
        "rtt": np.round(rtt, 3),
        "kind": kind,
        "segment": segment,
        "mode": mode,
        "hop_ttl": int(p.path_len) + mode,  # another route, another length
        "reply_ipid": rng.integers(0, 65536, n),
        "icmp_sum": rng.integers(0, 65536, n),
    }


def generate_ark(out_dir: Path | str, scale: float = 1.0, seed: int = 0) -> SynthResult:
    """Write Ark-like scamper JSON (one file per vantage point) and ``ark_labels.parquet``.

    Labels: ``timestamp`` (UTC, microseconds: the trace start, equal to the destination probe's tx),
    ``src``, ``dst``, ``label`` (``good``/``noise``), ``rtt_ms`` (as written), ``segment`` (route epoch),
    ``mode`` (route/path index), ``noise_kind`` (``spike``/``burst``/empty), ``hop_ttl``.
    """
    out = prepare_out_dir(out_dir)
    plan = ark_plan(scale, seed)
    rng = rng_for(seed, 1)
    per_pair = [_pair_points(p, rng) for p in plan.itertuples(index=False)]
    data_paths: list[Path] = []
    label_frames = []
    for v in range(N_VANTAGE):
        rows = plan.index[plan.vp == v]
        parts = {k: np.concatenate([per_pair[i][k] for i in rows]) for k in per_pair[0]}
        pair_idx = np.concatenate([np.full(int(plan.n[i]), i) for i in rows])
        order = np.lexsort((pair_idx, parts["t_us"]))  # one monitor's cycle interleaves its destinations
        parts = {k: a[order] for k, a in parts.items()}
        pair_idx = pair_idx[order]
        src = plan.src.to_numpy()[pair_idx]
        dst = plan.dst.to_numpy()[pair_idx]
        t = parts["t_us"]
        sec, usec = t // 10**6, t % 10**6
        hop = parts["hop_ttl"]
        host = plan.hostname[rows[0]]
        path = out / f"ark_{host}.json"
        write_rows(
            path,
            _TRACE,
            [
                src, dst, parts["icmp_sum"], sec, usec, us_to_text(t, "s"), hop,
                hop + 1, dst, hop, sec, usec, parts["rtt"],
                plan.init_ttl.to_numpy()[pair_idx] - hop + 1, parts["reply_ipid"],
            ],
            head=[_CYCLE_START % (v + 1, host, int(sec[0]))],
            tail=[_CYCLE_STOP % (v + 1, host, int(sec[-1]))],
        )  # fmt: skip
        data_paths.append(path)
        label_frames.append(
            pd.DataFrame(
                {
                    "timestamp": us_to_timestamps(t),
                    "src": src,
                    "dst": dst,
                    "label": np.where(parts["kind"] > 0, "noise", "good"),
                    "rtt_ms": parts["rtt"],
                    "segment": parts["segment"].astype("int32"),
                    "mode": parts["mode"].astype("int32"),
                    "noise_kind": NOISE_KINDS[parts["kind"]],
                    "hop_ttl": hop.astype("int16"),
                }
            )
        )
    labels = pd.concat(label_frames, ignore_index=True)
    labels_path = write_labels(labels, out / "ark_labels.parquet")
    return SynthResult("latency", "scamper", data_paths, labels_path, _summary(plan, per_pair))


def _summary(plan: pd.DataFrame, per_pair: list[dict]) -> dict:
    pairs = []
    for p, pts in zip(plan.itertuples(index=False), per_pair):
        pairs.append(
            {
                "src": p.src,
                "dst": p.dst,
                "n": int(p.n),
                "modality": p.modality,
                "n_modes": int(p.n_modes),
                "n_segments": int(pts["segment"].max() + 1),
                "n_noise": int((pts["kind"] > 0).sum()),
                "n_spike": int((pts["kind"] == 1).sum()),
                "n_burst": int((pts["kind"] == 2).sum()),
            }
        )
    n = sum(q["n"] for q in pairs)
    noise = sum(q["n_noise"] for q in pairs)
    return {
        "n_pairs": len(pairs),
        "n_points": n,
        "n_good": n - noise,
        "n_noise": noise,
        "noise_fraction": noise / n,
        "n_multimodal": sum(q["n_modes"] > 1 for q in pairs),
        "pairs": pairs,
    }
