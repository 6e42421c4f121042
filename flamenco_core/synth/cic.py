"""CIC-DDoS2019-like NTP reflection flows, written as CICFlowMeter CSV (``DrDoS_NTP.csv`` layout).

Each flow is simulated packet by packet (lengths and arrival times, all flows at once with numpy) and its
88 columns are aggregated from those packets the way CICFlowMeter does, quirks included: the first
packet counted twice in the packet-length statistics and ``Average Packet Size``, UDP attack flows with a
negative ``Fwd Header Length`` (-1 per packet) and ``-1`` window/segment fields, ``Infinity`` rates for
zero-duration flows, Java-style ``4.4E8`` for large whole-number byte rates.

Class balance and marginals follow the paper's Table 2 for DrDoS_NTP: ~228k flows at scale 1, 95% attack
(attack-heavy, as the real file), ``Source Port`` mean ~3,859 with quartiles 644/781/918, ``Average
Packet Size`` ~425 +- 110, ``Flow IAT Min`` mostly 0. Attack flows come from low source ports (mostly
<= 6600) and benign ones mostly from ephemeral ports (>= 9000), with some overlap both ways.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._common import SynthResult, attack_summary, check_scale, flow_labels, prepare_out_dir, rng_for, scaled_count
from ._common import us_to_text, us_to_timestamps, write_labels, write_rows_to

#: Flows at scale 1 and the attack share (the paper's DrDoS_NTP subset is attack-heavy).
N_FLOWS = 228_000
ATTACK_FRACTION = 0.95
MIN_FLOWS = 200
HEADER = (
    "Unnamed: 0,Flow ID, Source IP, Source Port, Destination IP, Destination Port, Protocol, Timestamp,"
    " Flow Duration, Total Fwd Packets, Total Backward Packets,Total Length of Fwd Packets, Total Length of"
    " Bwd Packets, Fwd Packet Length Max, Fwd Packet Length Min, Fwd Packet Length Mean, Fwd Packet Length"
    " Std,Bwd Packet Length Max, Bwd Packet Length Min, Bwd Packet Length Mean, Bwd Packet Length Std,Flow"
    " Bytes/s, Flow Packets/s, Flow IAT Mean, Flow IAT Std, Flow IAT Max, Flow IAT Min,Fwd IAT Total, Fwd"
    " IAT Mean, Fwd IAT Std, Fwd IAT Max, Fwd IAT Min,Bwd IAT Total, Bwd IAT Mean, Bwd IAT Std, Bwd IAT Max,"
    " Bwd IAT Min,Fwd PSH Flags, Bwd PSH Flags, Fwd URG Flags, Bwd URG Flags, Fwd Header Length, Bwd Header"
    " Length,Fwd Packets/s, Bwd Packets/s, Min Packet Length, Max Packet Length, Packet Length Mean, Packet"
    " Length Std, Packet Length Variance,FIN Flag Count, SYN Flag Count, RST Flag Count, PSH Flag Count,"
    " ACK Flag Count, URG Flag Count, CWE Flag Count, ECE Flag Count, Down/Up Ratio, Average Packet Size,"
    " Avg Fwd Segment Size, Avg Bwd Segment Size, Fwd Header Length.1,Fwd Avg Bytes/Bulk, Fwd Avg"
    " Packets/Bulk, Fwd Avg Bulk Rate, Bwd Avg Bytes/Bulk, Bwd Avg Packets/Bulk,Bwd Avg Bulk Rate,Subflow"
    " Fwd Packets, Subflow Fwd Bytes, Subflow Bwd Packets, Subflow Bwd Bytes,Init_Win_bytes_forward,"
    " Init_Win_bytes_backward, act_data_pkt_fwd, min_seg_size_forward,Active Mean, Active Std, Active Max,"
    " Active Min,Idle Mean, Idle Std, Idle Max, Idle Min,SimillarHTTP, Inbound, Label"
)
DAY_US = 1_543_622_400 * 10**6  # 2018-12-01T00:00:00 (CIC timestamps are naive; read as UTC)
ATTACK_WINDOW_S = (10 * 3600 + 35 * 60, 600)  # the NTP attack ran 10:35-10:45 on day 1
BENIGN_WINDOW_S = (10 * 3600 + 20 * 60, 2400)
ATTACKER, VICTIM = "172.16.0.5", "192.168.50.1"
_INTERNAL = np.array([f"192.168.50.{i}" for i in (4, 5, 6, 7, 8, 9)], dtype=object)
_EXTERNAL = np.array(
    ["65.55.163.78", "72.21.91.29", "172.217.10.98", "23.15.4.24", "104.16.24.35", "52.84.125.33",
     "13.107.4.50", "151.101.1.69", "31.13.71.36", "4.2.2.4", "8.8.8.8", "205.174.165.73"],
    dtype=object,
)  # fmt: skip
_IDLE_US = 5_000_000  # CICFlowMeter's activity timeout
_CHUNK_FLOWS = 50_000


def _pick(rng: np.random.Generator, n: int, choices, p) -> np.ndarray:
    return np.asarray(choices)[rng.choice(len(choices), n, p=p)]


def _ports(rng: np.random.Generator, attack: np.ndarray, kind: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source and destination ports, and whether a benign flow is a server's reply (inbound).

    Attack: a dense block of low source ports (510-918) carrying the quartiles, a log-uniform tail to 6600
    and 1.8% anywhere (overlap); random destination ports on the victim. Benign: clients' ephemeral ports
    (>= 9000) towards a service, and 8% server-to-client flows whose source is the service's well-known
    port (overlap the other way, as the real file's ``65.55.163.78:443 -> 192.168.50.7`` rows)."""
    n = len(attack)
    u = rng.random(n)
    core = rng.integers(510, 919, n)
    tail = np.exp(rng.uniform(np.log(919), np.log(6600), n)).astype(np.int64)
    anywhere = rng.integers(1024, 65536, n)
    att_sport = np.where(u < 0.8, core, np.where(u < 0.982, tail, anywhere))
    service = np.where(
        kind == 2,
        _pick(rng, n, [53, 123, 137, 1900], [0.8, 0.1, 0.05, 0.05]),
        _pick(rng, n, [443, 80, 8080, 22], [0.65, 0.3, 0.03, 0.02]),
    )
    ephemeral = np.where(rng.random(n) < 0.24, rng.integers(9000, 49152, n), rng.integers(49152, 65536, n))
    inbound = ~attack & (rng.random(n) < 0.08)
    sport = np.where(attack, att_sport, np.where(inbound, service, ephemeral))
    dport = np.where(attack, rng.integers(1024, 65536, n), np.where(inbound, ephemeral, service))
    return sport, dport, inbound


def _flow_times(rng: np.random.Generator, n: int, window: tuple[int, int]) -> np.ndarray:
    """Strictly increasing microsecond start times filling ``window`` (stretched when ``n`` is large), so
    that keys are unique within a class."""
    start, length = window
    span = max(length * 10**6, n * 100)
    gaps = 1 + rng.exponential(span / max(n, 1) - 1, n).astype(np.int64)
    return DAY_US + start * 10**6 + np.cumsum(gaps)


class _Groups:
    """Per-flow statistics over packets labelled by flow index (flows may own no packet)."""

    def __init__(self, flow: np.ndarray, n_flows: int):
        self.flow = flow
        self.n = n_flows

    def stats(self, v: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """count, sum, mean, sample std (0 below 2 values), min and max (0 when empty) of ``v[mask]``."""
        m = np.ones(len(v), bool) if mask is None else mask
        w = m.astype(np.float64)
        cnt = np.bincount(self.flow, weights=w, minlength=self.n)
        tot = np.bincount(self.flow, weights=v * w, minlength=self.n)
        mean = np.divide(tot, cnt, out=np.zeros(self.n), where=cnt > 0)
        # Two-pass deviations: identical values give exactly 0.0, as in the real files.
        dev = np.bincount(self.flow, weights=((v - mean[self.flow]) ** 2) * w, minlength=self.n)
        std = np.sqrt(np.divide(dev, cnt - 1, out=np.zeros(self.n), where=cnt > 1))
        mn = np.full(self.n, np.inf)
        mx = np.full(self.n, -np.inf)
        np.minimum.at(mn, self.flow[m], v[m])
        np.maximum.at(mx, self.flow[m], v[m])
        has = cnt > 0
        return {"count": cnt, "sum": tot, "mean": mean, "std": std, "min": np.where(has, mn, 0.0), "max": np.where(has, mx, 0.0)}


def _java_double(x: np.ndarray) -> np.ndarray:
    """Rates as the real files print them: ``Infinity`` for x/0, empty for 0/0, ``4.4E8`` (Java's
    Double.toString) for whole numbers >= 1e7, Python repr otherwise."""
    out = np.array(list(map(repr, x.tolist())), dtype=object)
    big = np.isfinite(x) & (x >= 1e7) & (x == np.floor(x))
    if big.any():
        digits = np.array([str(int(v)) for v in x[big]], dtype=object)
        exp = np.array([len(d) - 1 for d in digits])
        mant = np.array([d.rstrip("0") for d in digits], dtype=object)
        out[big] = [m[0] + "." + (m[1:] or "0") + "E" + str(e) for m, e in zip(mant, exp)]
    out[np.isinf(x)] = "Infinity"
    out[np.isnan(x)] = ""
    return out


def _simulate(rng: np.random.Generator, attack: np.ndarray, t0: np.ndarray) -> pd.DataFrame:
    """Simulate the packets of flows with the given classes and start times; return one row per flow
    with every aggregate the CSV needs."""
    n = len(attack)

    # ---- flow-level identity -------------------------------------------------------------------------
    kind = np.where(attack, 0, _pick(rng, n, [1, 2, 3], [0.70, 0.27, 0.03]))  # 0 NTP, 1 TCP, 2 UDP, 3 IP/0
    proto = np.select([kind == 1, kind == 3], [6, 0], 17)
    sport, dport, inbound_ben = _ports(rng, attack, kind)
    internal = _INTERNAL[rng.integers(0, len(_INTERNAL), n)]
    external = _EXTERNAL[rng.integers(0, len(_EXTERNAL), n)]
    src = np.where(attack, ATTACKER, np.where(inbound_ben, external, internal))
    dst = np.where(attack, VICTIM, np.where(inbound_ben, internal, external))
    multicast = kind == 3  # OSPF hellos as in the real capture: no ports, no payload, long and idle
    src = np.where(multicast, "192.168.50.253", src)
    dst = np.where(multicast, "224.0.0.5", dst)
    sport = np.where(multicast, 0, sport)
    dport = np.where(multicast, 0, dport)

    # ---- packet counts ---------------------------------------------------------------------------------
    u = rng.random(n)
    mid = np.exp(rng.uniform(np.log(6), np.log(60), n))
    nf_att = np.select([u < 0.3, u < 0.6, u < 0.93], [2, rng.integers(3, 6, n), mid], rng.integers(61, 201, n))
    nf_ben = np.select([kind == 3, kind == 2], [rng.integers(10, 60, n), rng.integers(1, 3, n)], 1 + rng.geometric(0.25, n))
    nf = np.where(attack, nf_att, nf_ben).astype(np.int64)
    nb_tcp = np.maximum(rng.geometric(0.3, n) - (rng.random(n) < 0.2), 0)
    nb = np.where(attack | (kind == 3), 0, np.where(kind == 2, rng.integers(1, 3, n), nb_tcp))
    # A few single-packet flows (zero duration -> the real files' Infinity rates).
    single = rng.random(n) < 0.0015
    nf = np.where(single, 1, nf)
    nb = np.where(single, 0, nb)

    # ---- packets ---------------------------------------------------------------------------------------
    f_flow = np.repeat(np.arange(n), nf)
    b_flow = np.repeat(np.arange(n), nb)
    f_pos = np.arange(len(f_flow)) - np.repeat(np.cumsum(nf) - nf, nf)
    b_pos = np.arange(len(b_flow)) - np.repeat(np.cumsum(nb) - nb, nb)
    fa = attack[f_flow]
    # NTP monlist replies carry 8 + 72k bytes; a flow keeps one reply size, its last packet may be short.
    entries = _pick(rng, n, [6, 5, 4, 3, 2], [0.25, 0.45, 0.20, 0.07, 0.03])
    last = f_pos == (nf[f_flow] - 1)
    short = np.minimum(rng.integers(1, 7, len(f_flow)), entries[f_flow])
    att_len = 8 + 72 * np.where(last & (nf[f_flow] > 2), short, entries[f_flow])
    m = len(f_flow)
    ben_len = np.where(rng.random(m) < 0.45, 0, np.minimum(rng.lognormal(np.log(250), 1.0, m), 1460))
    ben_len = np.where(kind[f_flow] == 2, rng.integers(28, 80, len(f_flow)), ben_len)
    ben_len = np.where(kind[f_flow] == 3, 0, ben_len)
    f_len = np.round(np.where(fa, att_len, ben_len))
    mb = len(b_flow)
    b_len = np.where(rng.random(mb) < 0.3, 0, np.minimum(rng.lognormal(np.log(600), 0.9, mb), 1460))
    b_len = np.round(np.where(kind[b_flow] == 2, rng.integers(40, 300, len(b_flow)), b_len))

    # Inter-arrival gaps in microseconds: reflected bursts often share a microsecond (IAT 0), but the
    # second packet of an attack flow is always later, so zero-duration flows stay rare.
    zero = rng.random(len(f_flow)) < 0.7
    att_gap = np.where(zero & (f_pos > 1), 0, np.ceil(rng.lognormal(np.log(3), 1.6, len(f_flow))))
    ben_gap = np.ceil(rng.lognormal(np.log(4000), 2.2, len(f_flow)))
    ben_gap = np.where(kind[f_flow] == 3, rng.integers(1_900_000, 10_000_000, len(f_flow)), ben_gap)
    f_gap = np.minimum(np.where(fa, att_gap, ben_gap), 30_000_000)
    f_gap[f_pos == 0] = 0
    f_t = _group_cumsum(f_gap, nf)
    first_reply = np.ceil(rng.lognormal(np.log(800), 1.5, n))
    b_gap = np.ceil(rng.lognormal(np.log(3000), 2.0, len(b_flow)))
    b_gap[b_pos == 0] = first_reply[b_flow[b_pos == 0]]
    b_t = _group_cumsum(b_gap, nb)

    # ---- aggregate -------------------------------------------------------------------------------------
    flow = np.concatenate([f_flow, b_flow])
    t = np.concatenate([f_t, b_t])
    length = np.concatenate([f_len, b_len])
    fwd = np.concatenate([np.ones(len(f_flow), bool), np.zeros(len(b_flow), bool)])
    order = np.lexsort((~fwd, t, flow))
    flow, t, length, fwd = flow[order], t[order], length[order], fwd[order]
    g = _Groups(flow, n)
    first = np.searchsorted(flow, np.arange(n))
    gap = np.diff(t, prepend=0.0)
    not_first = np.ones(len(t), bool)
    not_first[first] = False
    flow_iat = g.stats(gap, not_first)
    dur = t[np.concatenate([first[1:], [len(t)]]) - 1] - t[first]

    fs = g.stats(length, fwd)
    bs = g.stats(length, ~fwd)
    # Fwd/Bwd IATs: gaps between consecutive packets of one direction.
    f_only = _Groups(f_flow, n)
    fgap = np.diff(f_t, prepend=0.0)
    fgap_ok = f_pos > 0
    fiat = f_only.stats(fgap, fgap_ok)
    biat = _Groups(b_flow, n).stats(np.diff(b_t, prepend=0.0), b_pos > 0)

    # Packet-length statistics count the first packet twice, as CICFlowMeter does.
    first_len = length[first]
    n_pk = nf + nb
    total = fs["sum"] + bs["sum"]
    pl_mean = (total + first_len) / (n_pk + 1)
    pl_dev = np.bincount(flow, weights=(length - pl_mean[flow]) ** 2, minlength=n) + (first_len - pl_mean) ** 2
    pl_var = pl_dev / n_pk
    all_stats = g.stats(length)
    dur_s = dur / 1e6
    with np.errstate(divide="ignore", invalid="ignore"):
        bytes_s = total / dur_s
        pkts_s = n_pk / dur_s
    zero_dur = dur == 0
    fwd_pps = np.where(zero_dur, 0.0, nf / np.where(zero_dur, 1, dur_s))
    bwd_pps = np.where(zero_dur, 0.0, nb / np.where(zero_dur, 1, dur_s))

    idle = g.stats(gap, not_first & (gap > _IDLE_US))
    n_active = idle["count"] + 1
    active_mean = np.where(idle["count"] > 0, (dur - idle["sum"]) / n_active, 0.0)

    tcp = proto == 6
    hdr_unit = np.where(rng.random(n) < 0.85, 20, 32)
    fwd_hdr = np.where(attack, -nf, np.where(kind == 3, 0, nf * hdr_unit))
    bwd_hdr = np.where(attack, 0, nb * hdr_unit)
    min_seg = np.where(attack | (kind == 3), np.where(kind == 3, 0, -1), hdr_unit)
    flags = np.zeros((n, 8), dtype=np.int64)  # FIN SYN RST PSH ACK URG CWE ECE
    combo = _pick(rng, n, [0, 1, 2, 3, 4], [0.6, 0.15, 0.1, 0.08, 0.07])
    flags[:, 4] = tcp & (combo == 0)
    flags[:, 5] = tcp & (combo > 0)
    flags[:, 6] = tcp & (combo == 1)
    flags[:, 2] = tcp & (combo == 2)
    flags[:, 1] = tcp & (combo == 4)
    win_f = np.where(tcp, _pick(rng, n, [5840, 8192, 65535, 29200, 253], [0.6, 0.15, 0.1, 0.1, 0.05]), -1)
    win_b = np.where(tcp & (nb > 0), _pick(rng, n, [0, 29200, 243, 65535], [0.4, 0.3, 0.2, 0.1]), -1)
    f_nonzero_after_first = np.bincount(f_flow, weights=((f_len > 0) & (f_pos > 0)).astype(float), minlength=n)

    return pd.DataFrame(
        {
            "attack": attack, "src": src, "sport": sport, "dst": dst, "dport": dport, "proto": proto,
            "t0": t0, "dur": dur.astype(np.int64), "nf": nf, "nb": nb,
            "f_tot": fs["sum"], "b_tot": bs["sum"],
            "f_max": fs["max"], "f_min": fs["min"], "f_mean": fs["mean"], "f_std": fs["std"],
            "b_max": bs["max"], "b_min": bs["min"], "b_mean": bs["mean"], "b_std": bs["std"],
            "bytes_s": bytes_s, "pkts_s": pkts_s,
            "iat_mean": flow_iat["mean"], "iat_std": flow_iat["std"], "iat_max": flow_iat["max"], "iat_min": flow_iat["min"],
            "fiat_tot": fiat["sum"], "fiat_mean": fiat["mean"], "fiat_std": fiat["std"], "fiat_max": fiat["max"], "fiat_min": fiat["min"],
            "biat_tot": biat["sum"], "biat_mean": biat["mean"], "biat_std": biat["std"], "biat_max": biat["max"], "biat_min": biat["min"],
            "fwd_hdr": fwd_hdr, "bwd_hdr": bwd_hdr, "fwd_pps": fwd_pps, "bwd_pps": bwd_pps,
            "pl_min": all_stats["min"], "pl_max": all_stats["max"], "pl_mean": pl_mean,
            "pl_std": np.sqrt(pl_var), "pl_var": pl_var,
            **{f"flag{i}": flags[:, i] for i in range(8)},
            "down_up": np.floor(nb / nf).astype(float), "avg_pkt": (total + first_len) / n_pk,
            "win_f": win_f, "win_b": win_b, "act_data": f_nonzero_after_first.astype(np.int64), "min_seg": min_seg,
            "active_mean": active_mean, "active_max": active_mean, "active_min": active_mean,
            "idle_mean": idle["mean"], "idle_std": idle["std"], "idle_max": idle["max"], "idle_min": idle["min"],
        }
    )  # fmt: skip


def _group_cumsum(v: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``v`` restarting at each group (groups laid out contiguously, sizes ``counts``)."""
    c = np.concatenate([[0.0], np.cumsum(v)])
    starts = np.cumsum(counts) - counts  # index of each group's first element (empty groups included)
    return c[1:] - np.repeat(c[starts], counts)


# Column order of HEADER; constants are folded into the template so only varying fields are formatted.
_ROW = (
    "%d,%s,%s,%d,%s,%d,%d,%s,%d,%d,%d,"  # index .. Total Backward Packets
    "%r,%r,%r,%r,%r,%r,%r,%r,%r,%r,"  # lengths: totals, fwd max/min/mean/std, bwd max/min/mean/std
    "%s,%s,"  # Flow Bytes/s, Flow Packets/s
    "%r,%r,%r,%r,%r,%r,%r,%r,%r,%r,%r,%r,%r,%r,"  # flow, fwd, bwd IAT
    "%d,0,0,0,%d,%d,%r,%r,"  # PSH/URG flags, header lengths, packets/s
    "%r,%r,%r,%r,%r,"  # packet length min/max/mean/std/variance
    "%d,%d,%d,%d,%d,%d,%d,%d,"  # flag counts
    "%r,%r,%r,%r,%d,0,0,0,0,0,0,"  # down/up, sizes, header length.1, bulk
    "%d,%d,%d,%d,%d,%d,%d,%d,"  # subflows, windows, act_data, min_seg
    "%r,0.0,%r,%r,%r,%r,%r,%r,0,%d,%s"  # active, idle, SimillarHTTP, Inbound, Label
)


def _write_chunk(fh, f: pd.DataFrame, t0: np.ndarray, row_index: np.ndarray) -> None:
    flow_id = f.src + "-" + f.dst + "-" + f.sport.astype(str) + "-" + f.dport.astype(str) + "-" + f.proto.astype(str)
    label_text = np.where(f.attack, "DrDoS_NTP", "BENIGN")
    inbound = f.dst.str.startswith("192.168.50.").astype(np.int64)
    c = {k: f[k].to_numpy() for k in f.columns}
    cols = [
        row_index, flow_id.to_numpy(), c["src"], c["sport"], c["dst"], c["dport"], c["proto"],
        us_to_text(t0), c["dur"], c["nf"], c["nb"],
        c["f_tot"], c["b_tot"], c["f_max"], c["f_min"], c["f_mean"], c["f_std"],
        c["b_max"], c["b_min"], c["b_mean"], c["b_std"],
        _java_double(c["bytes_s"]), _java_double(c["pkts_s"]),
        c["iat_mean"], c["iat_std"], c["iat_max"], c["iat_min"],
        c["fiat_tot"], c["fiat_mean"], c["fiat_std"], c["fiat_max"], c["fiat_min"],
        c["biat_tot"], c["biat_mean"], c["biat_std"], c["biat_max"], c["biat_min"],
        c["flag2"], c["fwd_hdr"], c["bwd_hdr"], c["fwd_pps"], c["bwd_pps"],
        c["pl_min"], c["pl_max"], c["pl_mean"], c["pl_std"], c["pl_var"],
        *[c[f"flag{i}"] for i in range(8)],
        c["down_up"], c["avg_pkt"], c["f_mean"], c["b_mean"], c["fwd_hdr"],
        c["nf"], c["f_tot"].astype(np.int64), c["nb"], c["b_tot"].astype(np.int64),
        c["win_f"], c["win_b"], c["act_data"], c["min_seg"],
        c["active_mean"], c["active_max"], c["active_min"],
        c["idle_mean"], c["idle_std"], c["idle_max"], c["idle_min"],
        inbound.to_numpy(), label_text,
    ]  # fmt: skip
    write_rows_to(fh, _ROW, cols)


def generate_cic(out_dir: Path | str, scale: float = 1.0, seed: int = 0) -> SynthResult:
    """Write ``cic_DrDoS_NTP.csv`` (CICFlowMeter CSV, labels ``DrDoS_NTP``/``BENIGN`` in the file as in
    the real data) and ``cic_labels.parquet`` (``timestamp`` naive-as-UTC, ``src``, ``dst``, ``src_port``,
    ``dst_port``, ``protocol``, ``label`` in ``benign``/``attack``)."""
    scale = check_scale(scale)
    out = prepare_out_dir(out_dir)
    rng = rng_for(seed, 20)
    n = scaled_count(N_FLOWS, scale, MIN_FLOWS)
    n_att = int(round(n * ATTACK_FRACTION))
    # Start times first (cheap), in file order; packets are then simulated a chunk of flows at a time so
    # memory stays bounded at large scales.
    attack = np.r_[np.ones(n_att, bool), np.zeros(n - n_att, bool)]
    t0 = np.r_[_flow_times(rng, n_att, ATTACK_WINDOW_S), _flow_times(rng, n - n_att, BENIGN_WINDOW_S)]
    order = np.lexsort((~attack, t0))
    attack, t0 = attack[order], t0[order]
    row_index = rng.permutation(n)
    path = out / "cic_DrDoS_NTP.csv"
    keep: dict[str, list] = {k: [] for k in ("src", "dst", "sport", "dport", "proto", "avg_pkt", "iat_min", "pkts_s")}
    with open(path, "wb") as fh:
        fh.write(HEADER.encode() + b"\n")
        for i in range(0, n, _CHUNK_FLOWS):
            f = _simulate(rng, attack[i : i + _CHUNK_FLOWS], t0[i : i + _CHUNK_FLOWS])
            _write_chunk(fh, f, t0[i : i + _CHUNK_FLOWS], row_index[i : i + _CHUNK_FLOWS])
            for k in keep:
                keep[k].append(f[k].to_numpy())
    c = {k: np.concatenate(v) for k, v in keep.items()}

    labels = flow_labels(us_to_timestamps(t0), c["src"], c["dst"], c["sport"], c["dport"], c["proto"], attack)
    dup = int(labels.duplicated(["timestamp", "src", "dst", "src_port", "dst_port", "protocol"]).sum())
    if dup:  # impossible by construction (strictly increasing times per class, disjoint sources)
        raise RuntimeError(f"cic generator produced {dup} duplicate flow keys")
    labels_path = write_labels(labels, out / "cic_labels.parquet")
    summary = {
        **attack_summary(attack),
        "n_infinity": int(np.isinf(c["pkts_s"]).sum()),
        "source_port_mean": float(c["sport"].mean()),
        "source_port_quartiles": [float(q) for q in np.quantile(c["sport"], [0.25, 0.5, 0.75])],
        "average_packet_size_mean": float(c["avg_pkt"].mean()),
        "average_packet_size_std": float(c["avg_pkt"].std()),
        "flow_iat_min_zero_share": float((c["iat_min"] == 0).mean()),
    }
    return SynthResult("flows", "cicflowmeter", [path], labels_path, summary)
