"""Code-to-data collaboration: the shareable report holds aggregates only (canary), audit refusal,
report contents, and the CLI functions."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from flamenco_core.labeling.analysis import lf_f1
from flamenco_core.labeling.applier import apply_lfs, resolved_thresholds
from flamenco_core.labeling.collaborate import CollaborationRefused, class_indices, collaborate
from flamenco_core.labeling.spec import LFPack
from flamenco_core.labeling.stats import compute_stats

CANARY_IP = "203.0.113.77"
CANARY_VALUE = 31337.4242

PACK_A = {
    "pack": "cic-ntp-group-a",
    "version": 1,
    "group": "A",
    "classes": ["benign", "attack"],
    "universal_features": ["src_port", "dst_port", "protocol"],
    "lfs": [
        {"name": "src_port_le_6600_attack", "label": "attack", "when": [{"feature": "src_port", "op": "<=", "value": 6600}]},
        {"name": "bytes_le_half_p75_benign", "label": "benign",
         "when": [{"feature": "bytes", "op": "<=", "value": "0.5*p75"}, {"feature": "packets", "op": "<=", "value": "mean"}]},
    ],
}
PACK_B = {
    "pack": "ntp-group-b",
    "version": 2,
    "group": "B",
    "classes": ["benign", "attack"],
    "universal_features": ["src_port", "protocol"],
    "lfs": [
        # the canary is the maximum of bytes: this threshold is derived from it
        {"name": "bytes_ge_tenth_max_attack", "label": "attack", "when": [{"feature": "bytes", "op": ">=", "value": "0.1*max"}]},
        {"name": "many_packets_attack", "label": "attack", "when": [{"feature": "packets", "op": ">", "value": "mean + 2*std"}]},
        # same content as group A's first LF under another name: a duplicate
        {"name": "low_src_port_attack", "label": "attack", "when": [{"feature": "src_port", "op": "<=", "value": 6600}]},
        {"name": "short_benign", "label": "benign", "when": [{"feature": "duration", "op": "<", "value": "q1"}]},
    ],
}


def flows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    df = pd.DataFrame(
        {
            "timestamp": pd.date_range("2024-05-01", periods=n, freq="s", tz="UTC"),
            "src": [f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}" for i in range(n)],
            "dst": "192.0.2.10",
            "src_port": np.where(y, rng.integers(1, 6000, n), rng.integers(1024, 65535, n)),
            "dst_port": np.where(y, 123, rng.integers(1, 65535, n)),
            "protocol": 17,
            "bytes": np.where(y, rng.lognormal(7.5, 0.6, n), rng.lognormal(5.5, 0.8, n)),
            "packets": np.where(y, rng.lognormal(3.5, 0.7, n), rng.lognormal(1.5, 0.7, n)),
            "duration": rng.lognormal(1.0, 1.0, n) * 1.37,
            "label": np.where(y, "attack", "benign"),
        }
    )
    return df


@pytest.fixture
def local_and_labeled():
    df = flows(1500, seed=1)
    df.loc[17, "src"] = CANARY_IP
    df.loc[42, "bytes"] = CANARY_VALUE  # larger than any lognormal draw here: it is the max
    labeled = flows(600, seed=2)
    labeled.loc[5, "src"] = CANARY_IP
    labeled.loc[9, "duration"] = CANARY_VALUE
    return df, labeled


def packs():
    return [LFPack.from_dict(PACK_A), LFPack.from_dict(PACK_B)]


def _forms(v: float) -> set[str]:
    """Ways a statistic value could be written out."""
    forms = {repr(v), str(v), f"{v:.6g}", f"{v:.4f}", f"{v:.3f}", f"{v:.2f}", f"{v:.8g}", f"{v:.10g}"}
    return {f for f in forms if len(f.replace("-", "").replace(".", "")) >= 4}


def leaked(out_dir: Path, needles: set[str]) -> list[tuple[str, str]]:
    hits = []
    for path in sorted(p for p in out_dir.rglob("*") if p.is_file()):
        blob = path.read_bytes()
        for needle in needles:
            if needle.encode() in blob:
                hits.append((path.name, needle))
    return hits


def test_canary_never_reaches_the_shareable_report(tmp_path, local_and_labeled):
    df, labeled = local_and_labeled
    ps = packs()
    out = tmp_path / "share"
    report = collaborate(ps, df, labeled, out)

    files = sorted(p.name for p in out.rglob("*") if p.is_file())
    assert files == ["report.json", "report.md"]

    needles = {CANARY_IP, f"{CANARY_VALUE}", "31337"}
    # every statistic value and resolved threshold the packs were evaluated with
    from flamenco_core.labeling.spec import combine_packs

    merged, _ = combine_packs(ps, name="merged")
    assert compute_stats(df, needed=merged.needed_stats())["bytes"]["max"] == CANARY_VALUE
    for pack in ps + [merged]:
        stats = compute_stats(df, needed=pack.needed_stats())
        for feature_stats in stats.values():
            for v in feature_stats.values():
                needles |= _forms(float(v))
        for conds in resolved_thresholds(pack, stats).values():
            for t in conds.values():
                for v in (t if isinstance(t, list) else [t]):
                    if isinstance(v, float) and not float(v).is_integer():
                        needles |= _forms(v)
    assert leaked(out, needles) == []

    # the scanner does find planted values (a control, so the assertion above means something)
    control = tmp_path / "control"
    control.mkdir()
    (control / "rows.csv").write_text(df.to_csv())
    (control / "stats.json").write_text(json.dumps(compute_stats(df, needed=ps[1].needed_stats())))
    found = {n for _, n in leaked(control, needles)}
    assert CANARY_IP in found and "31337" in found and len(found) > 3

    # statistics are listed by name only
    b = report["packs"][1]
    assert b["statistics_used"] == {"bytes": ["max"], "duration": ["q1"], "packets": ["mean", "std"]}
    assert report["packs"][0]["statistics_used"] == {"bytes": ["q3"], "packets": ["mean"]}


def test_report_contents(tmp_path, local_and_labeled):
    df, labeled = local_and_labeled
    ps = packs()
    report = collaborate(ps, df, labeled, tmp_path)
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert on_disk == report
    assert report["data"] == {"rows": 1500}
    assert report["labeled"]["rows"] == 600
    assert sum(report["labeled"]["class_counts"].values()) == 600
    assert [s["pack"] for s in report["packs"]] == ["cic-ntp-group-a", "ntp-group-b"]
    a, b = report["packs"]
    assert a["content_hash"] == ps[0].content_hash and a["group"] == "A" and b["version"] == 2
    assert [lf["name"] for lf in a["lfs"]] == ps[0].lf_names
    # 2 LFs: majority-vote fallback, said so; 4 LFs: Snorkel
    assert a["label_model"]["name"] == "majority_vote" and "at least 3 LFs" in a["label_model"]["fallback_reason"]
    assert b["label_model"]["name"] == "snorkel_label_model" and b["label_model"]["fallback_reason"] is None

    comb = report["combination"]
    assert comb["pack"] == "cic-ntp-group-a+ntp-group-b"
    assert [(d["kept"], d["dropped"]) for d in comb["duplicates"]] == [("src_port_le_6600_attack", "low_src_port_attack")]
    assert len(comb["lfs"]) == 5
    assert {lf["group"] for lf in comb["lfs"]} == {"A", "B"}

    # the per-LF numbers are the analysis module's, on the labeled rows with the local data's thresholds
    Y = class_indices(labeled["label"], ps[0].classes)
    stats = compute_stats(df, needed=ps[0].needed_stats())
    L_lab = apply_lfs(ps[0], labeled, stats=stats)
    ref = lf_f1(L_lab, Y, ps[0].lf_names, classes=ps[0].classes)
    for rec in a["labeled"]["lf_f1"]:
        assert rec["f1"] == pytest.approx(ref.loc[rec["lf"], "F1"])
        assert rec["coverage"] == pytest.approx(ref.loc[rec["lf"], "Coverage"])
        assert isinstance(rec["correct"], int)
    L = apply_lfs(ps[0], df)
    assert a["local"]["coverage"] == pytest.approx((L != -1).any(1).mean())
    assert a["label_model"]["rows_without_votes"] == int((L == -1).all(1).sum())
    assert a["local"]["lf_summary"][0]["polarity"] == ["attack"]
    assert report["settings"]["lf_f1"]["positive_class"] == "attack"
    assert report["settings"]["lf_f1"]["abstain"] == "negative"
    rows = {r["name"]: r for r in report["comparison"]}
    assert set(rows) == {"cic-ntp-group-a", "ntp-group-b", comb["pack"]}
    assert 0.0 <= rows[comb["pack"]]["f1_label_model"] <= 1.0

    md = (tmp_path / "report.md").read_text()
    assert "## Comparison" in md and "Duplicate LFs" in md and "low_src_port_attack" in md
    assert "statistics used (names only): bytes: max; duration: q1; packets: mean, std" in md


def test_without_labels_and_single_pack(tmp_path, local_and_labeled):
    df, _ = local_and_labeled
    report = collaborate(packs()[:1], df, None, tmp_path)
    assert report["combination"] is None and report["labeled"] is None
    assert "labeled" not in report["packs"][0]
    assert "f1_majority_vote" not in report["comparison"][0]
    assert report["settings"]["lf_f1"] is None


def test_audit_refuses_leaky_pack_unless_allowed(tmp_path, local_and_labeled):
    df, labeled = local_and_labeled
    leaky = dict(PACK_B, pack="leaky", lfs=PACK_B["lfs"] + [
        {"name": "bytes_literal_attack", "label": "attack", "when": [{"feature": "bytes", "op": ">", "value": 1500}]},
    ])
    ps = [LFPack.from_dict(PACK_A), LFPack.from_dict(leaky)]
    out = tmp_path / "refused"
    with pytest.raises(CollaborationRefused, match="bytes_literal_attack") as info:
        collaborate(ps, df, labeled, out)
    assert "leaky" in info.value.findings
    assert not out.exists()  # nothing applied, nothing written
    report = collaborate(ps, df, labeled, out, allow=["bytes_literal_attack"])
    assert report["packs"][1]["audit"]["allowed_findings"] == 1
    assert report["packs"][1]["audit"]["allowed_kinds"] == ["literal_threshold"]


def test_a_refused_collaboration_is_a_usage_error_and_still_a_value_error():
    from flamenco_core.errors import EXIT_USAGE, FlamencoError

    assert issubclass(CollaborationRefused, FlamencoError) and issubclass(CollaborationRefused, ValueError)
    assert CollaborationRefused.exit_code == EXIT_USAGE


def test_bad_inputs(tmp_path, local_and_labeled):
    df, labeled = local_and_labeled
    bad = labeled.copy()
    bad.loc[3, "label"] = "ddos"
    with pytest.raises(ValueError, match="unknown label value.*'ddos'"):
        collaborate(packs(), df, bad, tmp_path)
    with pytest.raises(CollaborationRefused, match="at least 10"):
        collaborate(packs(), df.head(5), None, tmp_path)
    with pytest.raises(ValueError, match="no 'label' column"):
        collaborate(packs(), df, labeled.drop(columns="label"), tmp_path)
    with pytest.raises(ValueError, match="at least one pack"):
        collaborate([], df, None, tmp_path)
    # missing labels are left out and counted
    some = labeled.copy()
    some.loc[:9, "label"] = None
    report = collaborate(packs(), df, some, tmp_path)
    assert report["labeled"]["rows"] == 590 and report["labeled"]["rows_without_label"] == 10


def test_class_indices():
    np.testing.assert_array_equal(class_indices(["good", "noise", None, "good"], ["good", "noise"]), [0, 1, -1, 0])
    np.testing.assert_array_equal(class_indices(pd.Series([1, 0]), ["good", "noise"]), [1, 0])
    with pytest.raises(ValueError, match="labels.csv: unknown label value.*'weird'"):
        class_indices(["good", "weird"], ["good", "noise"], source="labels.csv")
    with pytest.raises(ValueError, match="not a class index"):
        class_indices(pd.Series([0, 2]), ["good", "noise"])


# ------------------------------------------------------------------------------------------------ CLI


@pytest.fixture
def cli_app():
    from flamenco.cli_analysis import analyze_cmd, collaborate_cmd

    app = typer.Typer()
    app.command("analyze")(analyze_cmd)
    app.command("collaborate")(collaborate_cmd)
    return app


def _flat(text: str) -> str:
    return "".join(text.split())  # rich wraps long lines; compare without whitespace


@pytest.fixture
def files(tmp_path, local_and_labeled):
    df, labeled = local_and_labeled
    import yaml

    paths = {}
    for spec in (PACK_A, PACK_B):
        p = tmp_path / f"{spec['pack']}.yaml"
        p.write_text(yaml.safe_dump(spec, sort_keys=False))
        paths[spec["pack"]] = p
    paths["data"] = tmp_path / "local.parquet"
    df.to_parquet(paths["data"])
    paths["labeled"] = tmp_path / "labeled.csv"
    labeled.to_csv(paths["labeled"], index=False)
    return paths


def test_cli_analyze(cli_app, files, tmp_path, monkeypatch):
    runner = CliRunner()
    out = tmp_path / "analysis.csv"
    res = runner.invoke(cli_app, ["analyze", str(files["cic-ntp-group-a"]), "--data", str(files["data"]), "--labeled",
                                  str(files["labeled"]), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "src_port_le_6600_attack" in res.output and "majority vote" in res.output
    table = pd.read_csv(out, index_col=0)
    assert list(table.index) == [lf["name"] for lf in PACK_A["lfs"]]
    for col in ["Polarity", "Coverage", "Overlaps", "Conflicts", "Correct", "Incorrect", "Emp. Acc.", "F1", "Labeled Coverage"]:
        assert col in table.columns
    assert table.loc["src_port_le_6600_attack", "Polarity"] == "attack"

    # without labels, default output file in the current folder
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(cli_app, ["analyze", str(files["ntp-group-b"]), "--data", str(files["labeled"])])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ntp-group-b.analysis.csv").exists()


def test_cli_analyze_unknown_label_names_file_and_value(cli_app, files, tmp_path, local_and_labeled):
    _, labeled = local_and_labeled
    bad = labeled.copy()
    bad.loc[7, "label"] = "portscan"
    path = tmp_path / "bad_labels.csv"
    bad.to_csv(path, index=False)
    res = CliRunner().invoke(cli_app, ["analyze", str(files["cic-ntp-group-a"]), "--data", str(files["data"]),
                                       "--labeled", str(path), "--out", str(tmp_path / "x.csv")])
    assert res.exit_code == 2
    flat = _flat(res.output)
    assert "bad_labels.csv" in flat and "'portscan'" in flat
    res = CliRunner().invoke(cli_app, ["analyze", str(files["cic-ntp-group-a"]), "--data", str(tmp_path / "nope.parquet")])
    assert res.exit_code == 2 and "nosuchfile" in _flat(res.output)


def test_cli_collaborate(cli_app, files, tmp_path):
    out = tmp_path / "share"
    args = ["collaborate", "--pack", str(files["cic-ntp-group-a"]), "--pack", str(files["ntp-group-b"]),
            "--data", str(files["data"]), "--labeled", str(files["labeled"]), "--out", str(out)]
    res = CliRunner().invoke(cli_app, args)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    assert len(report["packs"]) == 2 and report["combination"] is not None
    assert (out / "report.md").exists()
    assert leaked(out, {CANARY_IP, "31337"}) == []
    assert "collaborationon1500localrows" in _flat(res.output) and "report.json" in _flat(res.output)


def test_cli_collaborate_refuses_leaky_pack(cli_app, files, tmp_path):
    import yaml

    leaky = dict(PACK_A, pack="leaky-a", lfs=PACK_A["lfs"] + [
        {"name": "bytes_gt_1500", "label": "attack", "when": [{"feature": "bytes", "op": ">", "value": 1500}]}])
    p = tmp_path / "leaky.yaml"
    p.write_text(yaml.safe_dump(leaky))
    base = ["collaborate", "--pack", str(p), "--data", str(files["data"]), "--out", str(tmp_path / "o")]
    res = CliRunner().invoke(cli_app, base)
    assert res.exit_code == 1 and "bytes_gt_1500" in _flat(res.output)
    res = CliRunner().invoke(cli_app, base + ["--allow", "bytes_gt_1500"])
    assert res.exit_code == 0, res.output


def test_cli_collaborate_names_a_feature_the_data_lacks(cli_app, files, tmp_path):
    # read for the packs' features only, such data once looked empty: "refused: the local data has 0 rows"
    import yaml

    p = tmp_path / "typo.yaml"
    p.write_text(yaml.safe_dump(dict(PACK_A, pack="typo", lfs=[
        {"name": "big", "label": "attack", "when": [{"feature": "byts", "op": ">=", "value": "p75"}]}])))
    res = CliRunner().invoke(cli_app, ["collaborate", "--pack", str(p), "--data", str(files["data"]),
                                       "--out", str(tmp_path / "o")])
    assert res.exit_code == 2, res.output
    assert "unknown feature 'byts'" in res.output and "0 rows" not in res.output
