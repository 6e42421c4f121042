"""Synthetic benchmark generators: determinism, sizes, structure, marginals, parseability, label joins.

The project's readers are developed separately, so the files are parsed here with generic tools
(``json.loads`` per line, ``pandas.read_csv``) into canonical-like frames before joining the labels.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flamenco_core.synth import (
    FLOW_KEYS,
    GENERATORS,
    ark_plan,
    atlas_plan,
    join_labels,
    key_columns,
)
from flamenco_core.synth.ark import ARK_SIZES, N_MULTIMODAL

SMALL = 0.01


@pytest.fixture(scope="session")
def generated(tmp_path_factory):
    """Generate lazily, once per (name, scale, seed, tag)."""
    cache: dict = {}

    def get(name: str, scale: float = SMALL, seed: int = 0, tag: str = "a"):
        key = (name, scale, seed, tag)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"{name}_{seed}_{tag}")
            cache[key] = GENERATORS[name](out, scale=scale, seed=seed)
        return cache[key]

    return get


def _digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).read_bytes())
    return h.hexdigest()


# ---- generic parsers (stand-ins for the project readers) ----------------------------------------------


def parse_scamper(paths) -> pd.DataFrame:
    rows = []
    for p in paths:
        lines = Path(p).read_text().splitlines()
        objs = [json.loads(line) for line in lines]
        assert objs[0]["type"] == "cycle-start" and objs[-1]["type"] == "cycle-stop"
        for o in objs[1:-1]:
            assert o["type"] == "trace" and o["method"] == "icmp-echo-paris" and o["stop_reason"] == "COMPLETED"
            for h in o["hops"]:
                if h["addr"] == o["dst"]:
                    rows.append((o["start"]["sec"] * 10**6 + o["start"]["usec"], h["tx"]["sec"] * 10**6 + h["tx"]["usec"], o["src"], o["dst"], h["rtt"], h["probe_ttl"]))
    df = pd.DataFrame(rows, columns=["start_us", "tx_us", "src", "dst", "rtt_ms", "hop_ttl"])
    df["timestamp"] = pd.to_datetime(df.start_us, unit="us", utc=True)
    return df


def parse_atlas(paths) -> tuple[pd.DataFrame, int]:
    rows, timeouts = [], 0
    for p in paths:
        for line in Path(p).read_text().splitlines():
            o = json.loads(line)
            assert o["type"] == "ping" and o["fw"] == 5020 and o["sent"] == 3 and len(o["result"]) == 3
            assert o["from"] == o["src_addr"] and o["dst_name"] == o["dst_addr"]
            got = [r["rtt"] for r in o["result"] if "rtt" in r]
            timeouts += sum(r == {"x": "*"} for r in o["result"])
            assert o["rcvd"] == len(got)
            if got:
                assert o["min"] == min(got) and o["max"] == max(got)
            else:
                assert o["avg"] == o["min"] == o["max"] == -1
            rows += [(o["timestamp"], o["from"], o["dst_addr"], r) for r in got]
    df = pd.DataFrame(rows, columns=["ts", "src", "dst", "rtt_ms"])
    df["timestamp"] = pd.to_datetime(df.ts, unit="s", utc=True)
    return df, timeouts


def parse_cic(path) -> pd.DataFrame:
    df = pd.read_csv(path)
    df.columns = [c.strip() for c in df.columns]
    df["timestamp"] = pd.to_datetime(df["Timestamp"], utc=True)
    return df.rename(columns={"Source IP": "src", "Destination IP": "dst", "Source Port": "src_port", "Destination Port": "dst_port", "Protocol": "protocol"})


def parse_nfdump(path) -> tuple[pd.DataFrame, list[str]]:
    lines = Path(path).read_text().splitlines()
    assert lines[-3] == "Summary" and lines[-2] == "flows,bytes,packets,avg_bps,avg_pps,avg_bpp"
    df = pd.read_csv(path, nrows=len(lines) - 4)
    df["timestamp"] = pd.to_datetime(df.ts, utc=True)
    return df.rename(columns={"sa": "src", "da": "dst", "sp": "src_port", "dp": "dst_port", "pr": "protocol"}), lines[-3:]


# ---- registry, determinism, sizes ---------------------------------------------------------------------


def test_registry_and_result_fields(generated):
    assert set(GENERATORS) == {"ark", "atlas", "cic", "worf"}
    expect = {"ark": ("latency", "scamper"), "atlas": ("latency", "atlas"), "cic": ("flows", "cicflowmeter"), "worf": ("flows", "nfdump")}
    for name, (kind, fmt) in expect.items():
        r = generated(name)
        assert (r.kind, r.format) == (kind, fmt)
        assert r.data_paths and all(p.exists() for p in r.data_paths) and r.labels_path.exists()
        json.dumps(r.summary)  # summaries are JSON-serialisable


@pytest.mark.parametrize("name", ["ark", "atlas", "cic", "worf"])
def test_deterministic_by_seed(generated, name):
    a, b, c = generated(name, tag="a"), generated(name, tag="b"), generated(name, seed=1)
    assert _digest(a.data_paths) == _digest(b.data_paths)
    assert _digest([a.labels_path]) == _digest([b.labels_path])
    assert _digest(a.data_paths) != _digest(c.data_paths)


@pytest.mark.parametrize("name", ["ark", "atlas", "cic", "worf"])
def test_labels_unique_on_keys(generated, name):
    labels = pd.read_parquet(generated(name).labels_path)
    keys = key_columns(labels)
    assert not labels.duplicated(keys).any()
    assert str(labels.timestamp.dtype) == "datetime64[us, UTC]"
    assert set(labels.label) <= ({"good", "noise"} if generated(name).kind == "latency" else {"benign", "attack"})


def test_sizes_at_small_scale(generated):
    ark = generated("ark").summary
    assert ark["n_pairs"] == 25 and all(p["n"] >= 40 for p in ark["pairs"])
    atlas = generated("atlas").summary
    assert atlas["n_pairs"] == 25 and all(p["n_results"] >= 15 and p["n_replies"] >= 30 for p in atlas["pairs"])
    assert generated("cic").summary["n_flows"] == 2280
    assert generated("worf").summary["n_flows"] == 3000


def test_scale_one_plans_without_writing():
    plan = ark_plan(1.0, seed=0)
    assert len(plan) == 25 and plan.n.sum() == 466_000 == sum(ARK_SIZES)
    assert plan.n.min() == 2000 and plan.n.max() == 110_000
    assert (plan.modality != "unimodal").sum() == N_MULTIMODAL == 12
    assert sorted(ark_plan(1.0, seed=3).n) == sorted(plan.n)  # seeds permute the sizes, never change them
    assert (ark_plan(10.0).n == plan.n * 10).all()
    ap = atlas_plan(1.0)
    assert len(ap) == 25 and ap.n_results.min() == 100 and ap.n_results.max() == 450


def test_bad_scale_rejected(tmp_path):
    with pytest.raises(ValueError):
        GENERATORS["cic"](tmp_path, scale=0)


# ---- latency ------------------------------------------------------------------------------------------


def test_ark_structure_and_join(generated):
    r = generated("ark")
    labels = pd.read_parquet(r.labels_path)
    assert r.summary["n_multimodal"] == 12
    modes = labels.groupby(["src", "dst"])["mode"].nunique()
    assert len(modes) == 25 and (modes > 1).sum() == 12
    for p in r.summary["pairs"]:
        g = labels[(labels.src == p["src"]) & (labels.dst == p["dst"])]
        assert g.timestamp.is_monotonic_increasing and len(g) == p["n"]
        if p["modality"] == "level_shift":
            # Route changes: >= 3 segments, one route per segment, consecutive segments differ.
            per_seg = g.groupby("segment")["mode"].agg(["nunique", "first"])
            assert len(per_seg) >= 3 and (per_seg["nunique"] == 1).all()
            assert (np.diff(per_seg["first"].to_numpy()) != 0).all()
    frac = r.summary["noise_fraction"]
    assert 0.03 <= frac <= 0.15
    assert set(labels.noise_kind) == {"", "spike", "burst"}

    df = parse_scamper(r.data_paths)
    assert (df.start_us == df.tx_us).all()  # either field gives the same key
    joined = join_labels(df, labels)
    assert (joined.label == "noise").sum() == r.summary["n_noise"]
    assert np.allclose(joined.rtt_ms, join_labels(df, labels, columns=["rtt_ms"]).rtt_ms)


def test_ark_noise_is_mostly_above_good(generated):
    labels = pd.read_parquet(generated("ark", scale=0.05).labels_path)
    # Noise is an upward excursion from the route the probe took (its mode), not from the pair's median.
    keys = ["src", "dst", "mode"]
    med = labels[labels.label == "good"].groupby(keys).rtt_ms.median().rename("med")
    noise = labels[labels.label == "noise"].join(med, on=keys)
    assert (noise.rtt_ms > 1.1 * noise.med).mean() > 0.95


def test_atlas_structure_and_join(generated):
    r = generated("atlas")
    labels = pd.read_parquet(r.labels_path)
    df, timeouts = parse_atlas(r.data_paths)
    assert timeouts == r.summary["n_lost"] > 0
    assert len(df) == len(labels) == r.summary["n_replies"]
    joined = join_labels(df, labels, columns=["label", "rtt_ms"])  # reply derived by running count
    assert np.allclose(joined.rtt_ms, df.rtt_ms)
    assert r.summary["n_secondary_peak"] == 8
    assert all(p["secondary_share"] < 0.1 for p in r.summary["pairs"])
    assert (atlas_plan(1.0).secondary_weight < 0.08).all()  # the peak stays < 10% of the main one's height


def test_atlas_parses_with_sagan(generated):
    sagan = pytest.importorskip("ripe.atlas.sagan")
    r = generated("atlas")
    line = r.data_paths[0].read_text().splitlines()[0]
    res = sagan.Result.get(line)
    assert isinstance(res, sagan.PingResult) and not res.is_malformed and not res.is_error
    assert res.origin == json.loads(line)["from"] and res.packets_sent == 3


# ---- flows --------------------------------------------------------------------------------------------


def test_cic_format_marginals_and_join(generated, samples):
    r = generated("cic", scale=0.05)
    path = r.data_paths[0]
    header = path.read_text().split("\n", 1)[0]
    with open(samples / "cicddos2019" / "DrDoS_NTP.csv") as fh:
        assert header == fh.readline().rstrip("\n")
    df = parse_cic(path)
    assert df.shape == (11_400, 88 + 1)  # + parsed timestamp
    text = path.read_text()
    assert ",Infinity," in text and re.search(r",\d\.\d+E\d+,", text)  # quirks of the real files
    assert np.isinf(df["Flow Packets/s"]).sum() > 0
    assert set(df.Label) == {"DrDoS_NTP", "BENIGN"}
    attack = df.Label == "DrDoS_NTP"
    assert 0.9 < attack.mean() < 0.97

    sp = df.src_port
    assert abs(sp.mean() - 3859) / 3859 < 0.1
    assert np.allclose(np.quantile(sp, [0.25, 0.5, 0.75]), [644, 781, 918], rtol=0.05)
    aps = df["Average Packet Size"]
    assert abs(aps.mean() - 425) / 425 < 0.1 and 80 < aps.std() < 140
    assert (df["Flow IAT Min"] == 0).mean() > 0.5
    assert (sp[attack] <= 6600).mean() > 0.95 and (sp[~attack] >= 9000).mean() > 0.85

    # Internal consistency of the aggregates.
    n = df["Total Fwd Packets"] + df["Total Backward Packets"]
    assert np.allclose(df["Total Length of Fwd Packets"], df["Fwd Packet Length Mean"] * df["Total Fwd Packets"])
    assert (df["Fwd Packet Length Min"] <= df["Fwd Packet Length Max"]).all()
    assert (df["Flow IAT Max"] <= df["Flow Duration"]).all()
    assert ((df["Flow Duration"] == 0) | np.isclose(df["Flow IAT Mean"] * (n - 1), df["Flow Duration"])).all()

    labels = pd.read_parquet(r.labels_path)
    joined = join_labels(df, labels)
    assert ((joined.label == "attack") == attack).all()


def test_worf_format_port123_balance_and_join(generated, samples):
    r = generated("worf", scale=0.05)
    path = r.data_paths[0]
    with open(samples / "nfdump" / "nfdump_csv_cicddos2019_synflood.csv") as fh:
        assert path.read_text().split("\n", 1)[0] == fh.readline().rstrip("\n")
    df, summary = parse_nfdump(path)
    assert len(df) == 15_000 and df.shape[1] == 48 + 1
    flows, byt, pkt = (int(x) for x in summary[2].split(",")[:3])
    assert (flows, byt, pkt) == (len(df), df.ibyt.sum(), df.ipkt.sum())

    top = df.src_port.value_counts()
    assert top.index[0] == 123 and top.iloc[0] / len(df) > 0.4 and top.iloc[0] > 3 * top.iloc[1]
    assert (df.protocol == "UDP").mean() > 0.6
    for col in ("ipkt", "ibyt"):
        assert df[col].max() / df[col].median() > 100  # heavy tails

    labels = pd.read_parquet(r.labels_path)
    assert (labels.label == "attack").mean() == 0.5
    joined = join_labels(df, labels)  # protocol names map to numbers
    attack = joined.label == "attack"
    assert (df.src_port[attack] == 123).all() and (df.protocol[attack] == "UDP").all()
    assert (df.src_port[~attack] == 123).any()  # benign NTP overlaps


def test_join_labels_reports_unmatched(generated):
    r = generated("worf")
    df, _ = parse_nfdump(r.data_paths[0])
    labels = pd.read_parquet(r.labels_path)
    with pytest.raises(ValueError, match=r"^3 of 3000 rows did not match"):
        join_labels(df, labels.iloc[3:])
    with pytest.raises(ValueError, match="not unique"):
        join_labels(df, pd.concat([labels, labels.iloc[:1]]))
    assert key_columns(labels) == FLOW_KEYS


@pytest.mark.parametrize("name", ["ark", "atlas", "cic", "worf"])
def test_project_reader_output_joins_labels(generated, tmp_path, name):
    """End to end through the project's ingest (its readers, cleaning, de-duplication and time sort):
    every canonical row finds its label."""
    from flamenco_core.ingest import pipeline  # the project's own module: a failing import is a failure, not a skip

    r = generated(name)
    report = pipeline.ingest(r.data_paths, r.format, tmp_path)
    assert report.quarantined == 0
    df, _ = pipeline.read_canonical(report.data_path)
    labels = pd.read_parquet(r.labels_path)
    joined = join_labels(df, labels)
    # Only the CIC cleaning drops rows (its few Infinity rates); every other label is matched by one row.
    assert len(df) == len(labels) or name == "cic"
    assert joined.label.notna().all() and len(joined) > 0.99 * len(labels)
