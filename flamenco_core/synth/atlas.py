"""RIPE-Atlas-like latency: ping results, one JSON object per line, modern firmware (fw 5020) keys.

Structure, noise, timeouts and the label key (``reply``, ``packet``): docs/synth.md, sections "Atlas-like
latency" and "Label files and join_labels"."""

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
    us_to_timestamps,
    write_labels,
    write_rows,
)

N_PROBES = 5
N_ANCHORS = 5
#: Ping results per pair at scale 1 (3 packets each): 100 to 450, assigned to pairs by seed.
ATLAS_SIZES = tuple(int(x) for x in np.round(np.geomspace(100, 450, N_PROBES * N_ANCHORS)))
PACKETS = 3
#: Fewest results per pair at any scale (15 results = 45 packets).
MIN_RESULTS = 15
N_SECONDARY = 8
INTERVAL_S = 240
BASE_S = 1_646_092_800  # 2022-03-01T00:00:00Z
NOISE_FRACTION = (0.02, 0.08)

_PROBE_ADDRS = [f"203.0.113.{21 + i}" for i in range(N_PROBES)]
_PROBE_IDS = [6012, 6187, 6344, 6530, 7021]
_ANCHOR_ADDRS = [f"198.51.100.{201 + i}" for i in range(N_ANCHORS)]
_MSM_IDS = [1402311, 1402312, 1402313, 1402318, 1402320]

# Key order as fw 5020 prints it; ``ttl`` appears only when a reply came back.
_HEAD = '{"fw":5020,"mver":"2.2.1","lts":%d,"dst_name":"%s","af":4,"dst_addr":"%s","src_addr":"%s","proto":"ICMP",'
_TAIL = (
    '"size":48,"result":[%s],"dup":0,"rcvd":%d,"sent":3,"min":%s,"max":%s,"avg":%s,"msm_id":%d,'
    '"prb_id":%d,"timestamp":%d,"msm_name":"Ping","from":"%s","type":"ping","group_id":%d,"step":240,'
    '"stored_timestamp":%d}'
)
_WITH_TTL = _HEAD + '"ttl":%d,' + _TAIL
_NO_TTL = _HEAD + _TAIL


def atlas_plan(scale: float = 1.0, seed: int = 0) -> pd.DataFrame:
    """The per-pair plan without generating any RTT: ``pair``, ``src``, ``dst``, ``prb_id``, ``msm_id``,
    ``n_results`` (at this scale), ``n_full`` (at scale 1), ``n_modes`` (2 where a small secondary peak
    exists), ``secondary_weight``, ``base_rtt_ms``, ``noise_fraction``, ``loss``, ``start_s``, ``ttl``."""
    scale = check_scale(scale)
    rng = rng_for(seed, 10)
    n_pairs = N_PROBES * N_ANCHORS
    sizes = rng.permutation(np.array(ATLAS_SIZES))
    n_modes = np.ones(n_pairs, dtype=int)
    n_modes[rng.choice(n_pairs, N_SECONDARY, replace=False)] = 2
    probe = np.repeat(np.arange(N_PROBES), N_ANCHORS)
    anchor = np.tile(np.arange(N_ANCHORS), N_PROBES)
    return pd.DataFrame(
        {
            "pair": np.arange(n_pairs),
            "src": [_PROBE_ADDRS[p] for p in probe],
            "dst": [_ANCHOR_ADDRS[a] for a in anchor],
            "prb_id": [_PROBE_IDS[p] for p in probe],
            "msm_id": [_MSM_IDS[a] for a in anchor],
            "n_results": [scaled_count(s, scale, MIN_RESULTS) for s in sizes],
            "n_full": sizes,
            "n_modes": n_modes,
            # The secondary peak's share of results; with equal widths its height ratio is w/(1-w) < 0.08.
            "secondary_weight": np.where(n_modes > 1, np.round(rng.uniform(0.02, 0.07, n_pairs), 4), 0.0),
            "base_rtt_ms": np.round(rng.uniform(4.0, 200.0, n_pairs), 3),
            "noise_fraction": np.round(rng.uniform(*NOISE_FRACTION, n_pairs), 4),
            "loss": np.round(rng.uniform(0.002, 0.02, n_pairs), 4),
            "start_s": rng.integers(0, INTERVAL_S, n_pairs),
            "ttl": rng.integers(44, 60, n_pairs),
        }
    )


def _pair_points(p, rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = int(p.n_results)
    base = float(p.base_rtt_ms)
    # Atlas spreads a measurement's probes over the interval: a per-result offset below 240 s keeps order.
    ts = BASE_S + int(p.start_s) + np.arange(n) * INTERVAL_S + rng.integers(0, 60, n)
    # An exact count, not a Bernoulli draw, keeps the peak small even for the 15-result series of tiny scales.
    mode = np.zeros(n, dtype=int)
    mode[rng.choice(n, int(round(p.secondary_weight * n)), replace=False)] = 1
    offset = rng.uniform(0.15, 0.4) * base + rng.uniform(3, 10)
    width = 0.004 * base + 0.05
    level = base + mode * offset  # the path is a property of the result: its 3 packets share it
    good = level[:, None] + rng.gamma(2.0, width, (n, PACKETS))

    # Bursts cover consecutive results; spikes hit single packets.
    frac = float(p.noise_fraction)
    n_bursts = int(round(frac * n * 0.4 / 3.0))
    starts = rng.integers(0, n, n_bursts)
    lens = rng.integers(2, 5, n_bursts)
    in_burst = in_runs(n, starts, lens)[:, None] & np.ones((1, PACKETS), bool)
    spike = rng.random((n, PACKETS)) < frac * 0.6
    kind = np.where(spike, 1, np.where(in_burst, 2, 0)).astype(np.int8)
    # Noise clears the secondary peak (at most 40% of base + 10 ms above the main one): the paper's Atlas
    # noise is separable (F1 0.996), and ground truth that no rule could recover would measure nothing.
    c = np.maximum(0.6 * good, 12.0)
    exc = np.where(kind == 1, c * (1 + rng.pareto(1.5, (n, PACKETS))), c * (1 + rng.lognormal(-0.5, 0.5, (n, PACKETS))))
    rtt = np.round(good + np.where(kind > 0, np.minimum(exc, 3000.0), 0.0), 6)

    lost = rng.random((n, PACKETS)) < p.loss
    lost |= (rng.random(n) < p.loss)[:, None]  # a whole result lost now and then (probe or path outage)
    return {"ts": ts, "rtt": rtt, "kind": kind, "mode": np.repeat(mode[:, None], PACKETS, 1), "lost": lost}


def _format_results(rtt: np.ndarray, lost: np.ndarray) -> np.ndarray:
    """The ``result`` array's inner text per row, built column-wise with numpy string ops."""
    cells = []
    for j in range(PACKETS):
        txt = np.array(list(map('{"rtt":%r}'.__mod__, rtt[:, j].tolist())), dtype=object)
        cells.append(np.where(lost[:, j], '{"x":"*"}', txt))
    out = cells[0]
    for c in cells[1:]:
        out = out + "," + c
    return out


def _stat_text(values: np.ndarray, rcvd: np.ndarray) -> np.ndarray:
    txt = np.array(list(map(repr, values.tolist())), dtype=object)
    return np.where(rcvd > 0, txt, "-1")


def generate_atlas(out_dir: Path | str, scale: float = 1.0, seed: int = 0) -> SynthResult:
    """Write Atlas-like ping results (one ``.jsonl`` per anchor measurement) and ``atlas_labels.parquet``.

    Labels (one row per received reply): ``timestamp`` (the result's, UTC), ``src``, ``dst``, ``reply``
    (index among the result's received replies), ``packet`` (index in ``result``), ``label``
    (``good``/``noise``), ``rtt_ms``, ``mode`` (1 on the secondary peak), ``noise_kind``.
    """
    out = prepare_out_dir(out_dir)
    plan = atlas_plan(scale, seed)
    rng = rng_for(seed, 11)
    per_pair = [_pair_points(p, rng) for p in plan.itertuples(index=False)]
    data_paths: list[Path] = []
    label_frames = []
    for msm in _MSM_IDS:
        rows = plan.index[plan.msm_id == msm]
        ts = np.concatenate([per_pair[i]["ts"] for i in rows])
        pair_idx = np.concatenate([np.full(int(plan.n_results[i]), i) for i in rows])
        order = np.lexsort((pair_idx, ts))
        ts, pair_idx = ts[order], pair_idx[order]
        stack = {k: np.concatenate([per_pair[i][k] for i in rows])[order] for k in ("rtt", "kind", "mode", "lost")}
        rtt, lost = stack["rtt"], stack["lost"]
        got = ~lost
        rcvd = got.sum(1)
        mins = np.where(got, rtt, np.inf).min(1)
        maxs = np.where(got, rtt, -np.inf).max(1)
        avgs = np.round(np.where(got, rtt, 0.0).sum(1) / np.maximum(rcvd, 1), 7)
        src = plan.src.to_numpy()[pair_idx]
        dst = plan.dst.to_numpy()[pair_idx]
        n = len(ts)
        lts = rng.integers(1, 60, n)
        stored = ts + rng.integers(5, 120, n)
        common_head = [lts, dst, dst, src]
        common_tail = [
            _format_results(rtt, lost), rcvd, _stat_text(mins, rcvd), _stat_text(maxs, rcvd),
            _stat_text(avgs, rcvd), np.full(n, msm), plan.prb_id.to_numpy()[pair_idx], ts, src,
            np.full(n, msm), stored,
        ]  # fmt: skip
        ttl = plan.ttl.to_numpy()[pair_idx]
        lines = np.empty(n, dtype=object)
        some = rcvd > 0
        lines[some] = list(map(_WITH_TTL.__mod__, zip(*[c[some].tolist() for c in common_head + [ttl] + common_tail])))
        lines[~some] = list(map(_NO_TTL.__mod__, zip(*[c[~some].tolist() for c in common_head + common_tail])))
        path = out / f"atlas_msm_{msm}.jsonl"
        write_rows(path, "%s", [lines])
        data_paths.append(path)

        # One label row per received reply, in file order (row-major over result, packet).
        r_idx, pkt = np.nonzero(got)
        reply = np.cumsum(got, 1)[r_idx, pkt] - 1
        kind = stack["kind"][r_idx, pkt]
        label_frames.append(
            pd.DataFrame(
                {
                    "timestamp": us_to_timestamps(ts[r_idx] * 10**6),
                    "src": src[r_idx],
                    "dst": dst[r_idx],
                    "reply": reply.astype("int16"),
                    "packet": pkt.astype("int16"),
                    "label": np.where(kind > 0, "noise", "good"),
                    "rtt_ms": rtt[r_idx, pkt],
                    "mode": stack["mode"][r_idx, pkt].astype("int32"),
                    "noise_kind": np.array(["", "spike", "burst"], dtype=object)[kind],
                }
            )
        )
    labels = pd.concat(label_frames, ignore_index=True)
    labels_path = write_labels(labels, out / "atlas_labels.parquet")
    pairs = []
    for p, pts in zip(plan.itertuples(index=False), per_pair):
        got = ~pts["lost"]
        pairs.append(
            {
                "src": p.src,
                "dst": p.dst,
                "n_results": int(p.n_results),
                "n_replies": int(got.sum()),
                "n_lost": int(pts["lost"].sum()),
                "n_noise": int(((pts["kind"] > 0) & got).sum()),
                "n_modes": int(p.n_modes),
                "secondary_share": float(pts["mode"][:, 0].mean()),
            }
        )
    n_rep = sum(q["n_replies"] for q in pairs)
    n_noise = sum(q["n_noise"] for q in pairs)
    summary = {
        "n_pairs": len(pairs),
        "n_results": sum(q["n_results"] for q in pairs),
        "n_replies": n_rep,
        "n_lost": sum(q["n_lost"] for q in pairs),
        "n_good": n_rep - n_noise,
        "n_noise": n_noise,
        "noise_fraction": n_noise / n_rep,
        "n_secondary_peak": sum(q["n_modes"] > 1 for q in pairs),
        "pairs": pairs,
    }
    return SynthResult("latency", "atlas", data_paths, labels_path, summary)
