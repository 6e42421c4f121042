"""Worf-like NetFlow: an ISP's exported flows with NTP amplification attacks, as ``nfdump -o csv`` prints
them (its 48-column header, one flow per line, then the ``Summary`` block).

300k flows at scale 1, balanced between attack and benign. Attack flows are NTP amplification replies:
many reflectors, source port 123, UDP, a few victims, large heavy-tailed packet and byte counts (~468-byte
monlist replies). Benign traffic mixes web (TCP/QUIC), DNS, benign NTP (also port 123, tiny flows: the
overlap that makes port 123 alone insufficient) and other traffic, with heavy-tailed sizes. Most flows are
UDP. Attacks arrive in episodes over one day; benign flows follow a diurnal cycle.

``ts``/``te`` print whole seconds, so the flow key (``timestamp, src, dst, src_port, dst_port,
protocol``) is made unique at one-second resolution.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ._common import SynthResult, attack_summary, check_scale, flow_labels, prepare_out_dir, rng_for, scaled_count
from ._common import us_to_text, us_to_timestamps, write_labels, write_rows

N_FLOWS = 300_000
ATTACK_FRACTION = 0.5
MIN_FLOWS = 200
DAY_S = 1_560_470_400  # 2019-06-14T00:00:00Z
N_EPISODES = 8
HEADER = (
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,svln,"
    "dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,al,ra,eng,"
    "exid,tr"
)
_MAC = "00:00:00:00:00:00"
_ROW = (
    "%s,%s,%s,%s,%s,%d,%d,%s,%s,0,0,%d,%d,0,0,%d,%d,0,0,0,0,0,%d,0.0.0.0,0.0.0.0,0,0,"
    + ",".join([_MAC] * 4)
    + ","
    + ",".join(["0-0-0"] * 10)
    + ",    0.000,    0.000,    0.000,10.255.0.1,0/0,1,%s"
)
_TCP_FLAGS = np.array(["...AP.SF", "...A...F", "...A.R..", "....S...", "...AP.S.", "...AP..."], dtype=object)


def _ip(prefix: str, idx: np.ndarray) -> np.ndarray:
    """``prefix.x.y`` addresses for integer indices (x = idx // 254, y = 1 + idx % 254)."""
    return np.strings.add(
        np.strings.add(np.strings.add(prefix + ".", (idx // 254).astype(str)), "."),
        (1 + idx % 254).astype(str),
    ).astype(object)


def _attack_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Flow start times (ms) inside a few attack episodes of 5-40 minutes."""
    starts = np.sort(rng.uniform(0.5, 23.0, N_EPISODES)) * 3600e3
    lengths = rng.uniform(5, 40, N_EPISODES) * 60e3
    weights = rng.dirichlet(np.full(N_EPISODES, 3.0))
    ep = rng.choice(N_EPISODES, n, p=weights)
    return (starts[ep] + rng.random(n) * lengths[ep]).astype(np.int64)


def _benign_times(rng: np.random.Generator, n: int) -> np.ndarray:
    """Diurnal start times (ms): density 1 + 0.6 sin, peak in the evening, by rejection sampling."""
    out = np.empty(0)
    while len(out) < n:  # ~2 rounds: acceptance is 1/1.6
        x = rng.random(2 * n) * 86_400e3
        keep = rng.random(2 * n) * 1.6 < 1 + 0.6 * np.sin(2 * np.pi * (x / 86_400e3 - 0.5))
        out = np.concatenate([out, x[keep]])
    return out[:n].astype(np.int64)


def _make_unique(df: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """Redraw the client-side port of flows whose second-resolution key repeats, until none does."""
    for _ in range(50):
        key = df[["ts_s", "sa", "da", "sp", "dp", "pr"]]
        dup = key.duplicated().to_numpy()
        if not dup.any():
            return df
        k = int(dup.sum())
        # Attack: the victim-side port; benign: the client's ephemeral source port.
        new = rng.integers(1024, 65536, k)
        att = df.attack.to_numpy()[dup]
        df.loc[dup, "dp"] = np.where(att, new, df.dp.to_numpy()[dup])
        df.loc[dup, "sp"] = np.where(att, df.sp.to_numpy()[dup], new)
    raise RuntimeError("could not make worf flow keys unique")


def _flows(rng: np.random.Generator, n_att: int, n_ben: int) -> pd.DataFrame:
    # ---- attack: reflectors:123 -> victims, heavy-tailed sizes --------------------------------------------
    n_refl = max(50, n_att // 60)
    a_sa = _ip("198.18", rng.integers(0, n_refl, n_att) * 7 % (254 * 250))  # benchmarking range, spread out
    a_da = _ip("10.20", rng.choice(24, n_att, p=rng.dirichlet(np.ones(24) * 0.5)))
    a_dp = np.where(rng.random(n_att) < 0.4, rng.choice([80, 443, 3074, 27015], n_att), rng.integers(1024, 65536, n_att))
    a_pkt = np.minimum(np.ceil(rng.pareto(1.1, n_att) * 8 + 1), 5_000_000).astype(np.int64)
    a_bpp = rng.choice([468, 468, 468, 396, 324], n_att) + rng.integers(0, 3, n_att) * 4
    a_td = np.where(a_pkt == 1, 0, np.minimum(rng.lognormal(np.log(12e3), 1.0, n_att), 300e3)).astype(np.int64)

    # ---- benign: web, QUIC, DNS, NTP clients, other --------------------------------------------------------
    svc = rng.choice(5, n_ben, p=[0.48, 0.12, 0.25, 0.05, 0.10])  # tcp web, quic, dns, ntp, other
    client = _ip("10.20", rng.integers(24, 254 * 40, n_ben))
    server = _ip("100.64", rng.integers(0, 254 * 60, n_ben))
    to_server = rng.random(n_ben) < 0.5  # both directions of a conversation are exported
    web_port = rng.choice([443, 80], n_ben, p=[0.8, 0.2])
    srv_port = np.select([svc == 0, svc == 1, svc == 2, svc == 3], [web_port, 443, 53, 123], rng.integers(1, 1024, n_ben))
    cli_port = np.where(svc == 3, 123, rng.integers(1024, 65536, n_ben))  # NTP clients often bind 123 too
    b_pr = np.where((svc == 0) | ((svc == 4) & (rng.random(n_ben) < 0.5)), "TCP", "UDP")
    b_sa = np.where(to_server, client, server)
    b_da = np.where(to_server, server, client)
    b_sp = np.where(to_server, cli_port, srv_port)
    b_dp = np.where(to_server, srv_port, cli_port)
    b_pkt = np.select(
        [svc == 2, svc == 3],
        [rng.integers(1, 3, n_ben), np.ones(n_ben, dtype=np.int64)],
        np.minimum(np.ceil(rng.lognormal(np.log(6), 1.6, n_ben)), 2_000_000),
    ).astype(np.int64)
    b_bpp = np.select(
        [svc == 2, svc == 3],
        [rng.integers(60, 300, n_ben), np.full(n_ben, 76)],
        np.where(to_server, rng.integers(40, 400, n_ben), rng.integers(200, 1500, n_ben)),
    )
    b_td = np.where(b_pkt == 1, 0, np.minimum(rng.lognormal(np.log(2e3), 1.8, n_ben), 300e3)).astype(np.int64)

    attack = np.r_[np.ones(n_att, bool), np.zeros(n_ben, bool)]
    pr = np.r_[np.full(n_att, "UDP", dtype=object), b_pr]
    pkt = np.r_[a_pkt, b_pkt]
    byt = pkt * np.r_[a_bpp, b_bpp] + rng.integers(0, 40, n_att + n_ben) * (pkt > 1)
    ts_ms = np.r_[_attack_times(rng, n_att), _benign_times(rng, n_ben)] + DAY_S * 1000
    tcp = pr == "TCP"
    flg = np.where(tcp, _TCP_FLAGS[rng.choice(len(_TCP_FLAGS), n_att + n_ben, p=[0.45, 0.15, 0.1, 0.1, 0.1, 0.1])], "........")
    df = pd.DataFrame(
        {
            "attack": attack,
            "ts_ms": ts_ms,
            "td_ms": np.r_[a_td, b_td],
            "sa": np.r_[a_sa, b_sa],
            "da": np.r_[a_da, b_da],
            "sp": np.r_[np.full(n_att, 123), b_sp].astype(np.int64),
            "dp": np.r_[a_dp, b_dp].astype(np.int64),
            "pr": pr,
            "flg": flg,
            "ipkt": pkt,
            "ibyt": byt.astype(np.int64),
            "in": np.where(attack, 1, rng.choice([1, 2, 3], n_att + n_ben)),
            "out": np.where(attack, 7, rng.choice([7, 8], n_att + n_ben)),
            "dir": np.zeros(n_att + n_ben, dtype=np.int64),
        }
    )
    df["ts_s"] = df.ts_ms // 1000
    df = _make_unique(df, rng)
    return df.iloc[np.argsort(df.ts_ms.to_numpy(), kind="stable")].reset_index(drop=True)


def generate_worf(out_dir: Path | str, scale: float = 1.0, seed: int = 0) -> SynthResult:
    """Write ``worf_nfdump.csv`` (``nfdump -o csv`` with its ``Summary`` block) and ``worf_labels.parquet``
    (``timestamp`` = ``ts`` at whole seconds, UTC; ``src``, ``dst``, ``src_port``, ``dst_port``,
    ``protocol`` as IANA numbers; ``label`` in ``benign``/``attack``)."""
    scale = check_scale(scale)
    out = prepare_out_dir(out_dir)
    rng = rng_for(seed, 30)
    n = scaled_count(N_FLOWS, scale, MIN_FLOWS)
    n_att = int(round(n * ATTACK_FRACTION))
    f = _flows(rng, n_att, n - n_att)
    ts_ms = f.ts_ms.to_numpy()
    te_ms = ts_ms + f.td_ms.to_numpy()
    td = f.td_ms.to_numpy()
    td_text = np.strings.add(np.strings.add((td // 1000).astype(str), "."), np.strings.zfill((td % 1000).astype(str), 3))
    tr_ms = te_ms + rng.integers(50, 60_000, len(f))  # exported a little after the flow ended
    cols = [
        us_to_text((ts_ms // 1000) * 10**6, "s"), us_to_text((te_ms // 1000) * 10**6, "s"), td_text,
        f.sa.to_numpy(), f.da.to_numpy(), f.sp.to_numpy(), f.dp.to_numpy(), f.pr.to_numpy(), f.flg.to_numpy(),
        f.ipkt.to_numpy(), f.ibyt.to_numpy(), f["in"].to_numpy(), f["out"].to_numpy(), f["dir"].to_numpy(),
        us_to_text(tr_ms * 1000, "ms"),
    ]  # fmt: skip
    flows, byt, pkt = len(f), int(f.ibyt.sum()), int(f.ipkt.sum())
    span_s = max((te_ms.max() - ts_ms.min()) / 1000, 1e-3)
    summary_lines = [
        "Summary",
        "flows,bytes,packets,avg_bps,avg_pps,avg_bpp",
        f"{flows},{byt},{pkt},{int(byt * 8 / span_s)},{int(pkt / span_s)},{byt // max(pkt, 1)}",
    ]
    path = out / "worf_nfdump.csv"
    write_rows(path, _ROW, cols, head=[HEADER], tail=summary_lines)

    labels = flow_labels(us_to_timestamps((ts_ms // 1000) * 10**6), f.sa.to_numpy(), f.da.to_numpy(), f.sp.to_numpy(),
                         f.dp.to_numpy(), np.where(f.pr.to_numpy() == "TCP", 6, 17), f.attack.to_numpy())
    labels_path = write_labels(labels, out / "worf_labels.parquet")
    summary = {
        **attack_summary(f.attack.to_numpy()),
        "port_123_share": float((f.sp == 123).mean()),
        "udp_share": float((f.pr == "UDP").mean()),
        "packets": pkt,
        "bytes": byt,
    }
    return SynthResult("flows", "nfdump", [path], labels_path, summary)
