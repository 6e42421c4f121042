"""Multi-class labeling on the 13 real CIC-DDoS2019 sample files (issue 13): the shipped pack's label
matrix against hand-computed votes, the class map, the faithful multi-class tree, and the label-model
comparison's headline (best label model and end classifier above the baselines)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flamenco_core.labeling.constants import ABSTAIN
from flamenco_core.labeling.spec import LFPack, SpecError

ROOT = Path(__file__).resolve().parents[2]
PACK = ROOT / "conf" / "lf_packs" / "cic2019_multiclass.yaml"
CLASS_MAP = ROOT / "conf" / "class_maps" / "cic2019.yaml"


@pytest.fixture(scope="module")
def cic_dir(samples) -> Path:
    folder = samples / "cicddos2019"
    if len(list(folder.glob("*.csv"))) != 13:
        pytest.fail(f"{folder}: expected the 13 real CIC-DDoS2019 sample files")
    return folder


@pytest.fixture(scope="module")
def flows(cic_dir, tmp_path_factory) -> pd.DataFrame:
    from flamenco_core.experiments.inputs import read_inputs

    df, _, report = read_inputs([cic_dir], "cicflowmeter", tmp_path_factory.mktemp("ingest"))
    assert len(report["files"]) == 13
    return df


@pytest.fixture(scope="module")
def pack() -> LFPack:
    return LFPack.from_yaml(PACK)


def _row(df: pd.DataFrame, label: str, src_port: int, dst_port: int) -> int:
    hit = np.flatnonzero((df["label"] == label).to_numpy() & (df["src_port"] == src_port).to_numpy()
                         & (df["dst_port"] == dst_port).to_numpy())
    assert hit.size == 1, (label, src_port, dst_port, hit)
    return int(hit[0])


def test_label_matrix_on_real_flows_matches_hand_computed_votes(flows, pack):
    from flamenco_core.labeling.applier import apply_lfs

    # the statistics the pack's thresholds read, on all 5,572 rows (hand-checked against the CSVs)
    assert flows["fwd_packet_length_min"].max() == 1472  # the MTU's UDP payload: 1500 - 20 - 8
    assert flows["inbound"].min() == 0 and flows["inbound"].max() == 1
    assert flows["fwd_packet_length_max"].min() == 0
    mean_packets = flows["total_fwd_packets"].mean()
    assert 40 < mean_packets < 60  # DNS streams of 200 packets pull the mean of mostly 2-packet flows up
    L = apply_lfs(pack, flows)
    names = pack.lf_names
    k = {c: i for i, c in enumerate(pack.classes)}

    def expect(row: int, votes: dict[str, str]) -> None:
        want = [k[votes[n]] if n in votes else ABSTAIN for n in names]
        assert L[row].tolist() == want, {n: (int(a), b) for n, a, b in zip(names, L[row], want) if a != b}

    # SNMP answer: UDP, inbound, 229 bytes in [0.12, 0.2] x 1472 = [176.6, 294.4]
    r = _row(flows, "DrDoS_SNMP", 531, 38862)
    assert flows.loc[r, ["protocol", "inbound", "fwd_packet_length_min"]].tolist() == [17, 1, 229]
    expect(r, {"snmp_small_answers": "snmp"})
    # DNS stream: 200 packets > mean; 440 bytes is in the NetBIOS band [412.2, 883.2] but the stream is long
    r = _row(flows, "DrDoS_DNS", 634, 11894)
    assert flows.loc[r, ["total_fwd_packets", "fwd_packet_length_min"]].tolist() == [200, 440]
    expect(r, {"dns_long_udp_stream": "dns"})
    # a client's HTTPS flow: starts inside (inbound 0 = min) and goes to TCP 443
    r = _row(flows, "BENIGN", 54800, 443)
    assert flows.loc[r, ["protocol", "inbound"]].tolist() == [6, 0]
    expect(r, {"benign_outbound": "benign", "benign_web_client": "benign"})
    # SYN flood flow: TCP, inbound, no payload (max payload 0 = min); CICFlowMeter counted no SYN flag
    r = _row(flows, "Syn", 59724, 59724)
    assert flows.loc[r, ["protocol", "fwd_packet_length_max", "syn_flag_count"]].tolist() == [6, 0, 0]
    expect(r, {"tcp_flood_empty_segments": "tcp_flood"})
    # CLDAP answer fragment: 1472 >= 0.85 x 1472
    r = _row(flows, "DrDoS_LDAP", 900, 35228)
    expect(r, {"large_reflection_mtu_fragments": "large_reflection"})
    # UDP-lag: 369 bytes in [0.2, 0.28] x 1472 = [294.4, 412.2]; one size only (std 0, not above the median 0)
    r = _row(flows, "UDP-lag", 55447, 5691)
    assert flows.loc[r, ["fwd_packet_length_min", "fwd_packet_length_std"]].tolist() == [369, 0]
    expect(r, {"udp_flood_small_varying_payload": "udp_flood"})
    # protocol knowledge that this capture does not show: no attack flow comes from a reflector's service
    # port; the only votes are two benign Windows hosts' NetBIOS datagrams (137 -> 137, 138 -> 138)
    port_lfs = [j for j, n in enumerate(names) if "port" in n and not n.startswith("benign")]
    fired = (L[:, port_lfs] != ABSTAIN).any(axis=1)
    assert port_lfs and fired.sum() == 2
    assert set(flows.loc[fired, "label"]) == {"BENIGN"} and set(flows.loc[fired, "src_port"]) == {137, 138}


def test_class_map_maps_several_raw_labels_to_one_class(flows, pack):
    from flamenco_core.labeling.class_map import ClassMap, load_class_map

    cmap = load_class_map(CLASS_MAP)
    cmap.check_classes(pack.classes)
    gold = cmap.apply(flows["label"])
    raw = flows["label"]
    assert set(gold[raw.isin(["DrDoS_MSSQL", "MSSQL", "DrDoS_LDAP", "DrDoS_SSDP"])]) == {"large_reflection"}
    assert set(gold[raw.isin(["DrDoS_UDP", "UDP-lag"])]) == {"udp_flood"}
    assert gold.notna().all()  # every raw label of the 13 files has a class
    assert cmap.apply(pd.Series([" benign ", "WebDDoS", ""])).tolist()[0] == "benign"
    assert cmap.apply(pd.Series(["WebDDoS", ""])).isna().all()
    bad = ClassMap.from_dict({"class_map": "x", "map": {"BENIGN": "benign", "Syn": "syn"}})
    with pytest.raises(SpecError, match="syn"):
        bad.check_classes(pack.classes)
    with pytest.raises(SpecError, match="listed twice"):
        ClassMap.from_dict({"class_map": "x", "map": {"Syn": "a", "SYN": "b"}})


def test_faithful_multiclass_tree_on_real_flows(flows, pack):
    from flamenco_core.explain import build_tree, combination_decision
    from flamenco_core.labeling.applier import apply_lfs
    from flamenco_core.labeling.stats import DataStatistics

    stats = DataStatistics(flows)
    tree = build_tree(pack, stats, mode="faithful")
    decision = combination_decision(apply_lfs(pack, flows, stats=stats), len(pack.classes))
    pred = tree.predict(flows)
    assert (pred != decision).sum() == 0  # difference 0 on every real row
    # a leaf for every class the LFs decide on these flows, and the inconclusive leaf
    assert set(np.unique(pred).tolist()) == set(np.unique(decision).tolist())
    assert {ABSTAIN, 0, 1, 2, 3, 4, 5, 6} <= set(np.unique(pred).tolist())


def test_label_models_on_real_flows_beat_the_baselines(flows, pack, tmp_path):
    from flamenco_core.experiments.label_model_comparison import compare, prepare, write_outputs
    from flamenco_core.labeling.class_map import load_class_map

    prep = prepare(flows, pack, load_class_map(CLASS_MAP), seed=0)
    comp = compare(prep, seed=0)
    t = comp.table
    assert comp.covered == ["benign", "dns", "snmp", "netbios", "large_reflection", "udp_flood", "tcp_flood"]
    best = comp.best_label_model
    assert best in t.index
    lm, end = t.loc[best, "f1_macro_covered"], t.loc["end_classifier", "f1_macro_covered"]
    assert lm >= 0.75 and end >= 0.75
    for baseline in ("majority_class", "isolation_forest", "simplest_rule"):
        assert lm > t.loc[baseline, "f1_macro_covered"] + 0.3
        assert end > t.loc[baseline, "f1_macro_covered"] + 0.3
    assert t.loc["dawid_skene", "model"] == "one_coin_dawid_skene" and t.loc["dawid_skene", "fallback"]
    report = write_outputs(comp, tmp_path)
    assert (tmp_path / f"confusion_{best}.png").is_file() and (tmp_path / "confusion_end_classifier.png").is_file()
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["uncovered_classes"] == ["ntp", "tftp", "portmap"] == report["uncovered_classes"]
    raw = comp.raw_label_table(best)
    assert "DrDoS_NTP" in raw.index and "large_reflection" in raw.columns
