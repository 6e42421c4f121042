"""The flow-records pipeline (issue 5): the paper's packs, experiment files, the one-feature experiment's
shape on CIC-like data, bad input per combination, the real DrDoS_NTP sample, Worf-like nfdump with alert
windows through the CLI and the Prefect flow, and MLflow's parent and child runs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from flamenco_core.experiments.flow_records import (
    ExperimentFile,
    FlowRecordsConfig,
    Prepared,
    build_catalog,
    default_combinations,
    experiment_combinations,
    load_config,
    load_packs,
    prepare,
    read_input,
    run_experiment,
)
from flamenco_core.labeling import LFPack, audit_pack, resolved_thresholds
from flamenco_core.synth import GENERATORS

ROOT = Path(__file__).resolve().parents[2]
CIC_PACK = ROOT / "conf" / "lf_packs" / "cic_ntp.yaml"
WORF_PACK = ROOT / "conf" / "lf_packs" / "worf.yaml"
SINGLE_FEATURE = ROOT / "conf" / "experiments" / "cic_ntp_single_feature.yaml"
WORF_EXPERIMENT = ROOT / "conf" / "experiments" / "worf_port_and_size.yaml"
A, B = "src_port_le_6600_attack", "src_port_ge_9000_benign"
RECORD_KEYS = {"lfs", "lf_f1", "cls_f1", "tree_f1", "tree_vs_lf_difference", "coverage", "outcome"}

# Small budgets keep the file at about a minute on two cores; the defaults are larger.
FOREST = {
    "model": {"kind": "random_forest",
              "random_forest": {"n_iter": 1, "n_splits": 2,
                                "param_distributions": {"n_estimators": [20], "max_depth": [None], "bootstrap": [True]}}},
    "importance": {"n_estimators": 20},
    "label_model": {"params": {"n_epochs": 50}},
    "plots": False,
}
LSTM = {**FOREST, "model": {"kind": "lstm", "lstm": {"epochs": 2, "hidden": 8, "window": 4, "batch_size": 128}}}


@pytest.fixture(scope="module")
def cic(tmp_path_factory):
    """CIC-like NTP flows (scale 0.02: ~4,500 flows, 95% attack), ingested from CICFlowMeter CSV."""
    d = tmp_path_factory.mktemp("cic")
    res = GENERATORS["cic"](d / "raw", scale=0.02, seed=0)
    df, names, _ = read_input(res.data_paths[0], "cicflowmeter", d / "ingest")
    return df, names


def _by_name(report):
    return {r["combination"]: r for r in report["combinations"]}


# ---------------------------------------------------------------------------------------------------- packs, files


def test_packs_are_the_papers_and_audit_clean(cic):
    cic_pack, worf = LFPack.from_yaml(CIC_PACK), LFPack.from_yaml(WORF_PACK)
    assert audit_pack(cic_pack) == [] and audit_pack(worf) == []
    assert [(lf.name, lf.label) for lf in cic_pack.lfs] == [
        (A, "attack"), (B, "benign"), ("avg_packet_size_small_benign", "benign"), ("flow_iat_min_lt_mean_attack", "attack")]
    # statistics where the paper used statistics; literals only on universal features
    assert cic_pack.lf("flow_iat_min_lt_mean_attack").when[0].value == "mean"
    assert len(worf.lfs) == 7 and sorted({lf.label for lf in worf.lfs}) == ["attack", "benign"]
    assert [lf.when[0].value for lf in worf.lfs] == ["p75", "mean", "p75", "0.5*p75", "mean", 123, "p75"]
    df, _ = cic
    th = resolved_thresholds(cic_pack, {"src_port": {}, "average_packet_size": {"mean": 400.0}, "flow_iat_min": {"mean": 3.0}})
    assert th["avg_packet_size_small_benign"]["average_packet_size < 0.25*mean"] == 100.0
    assert th[A]["src_port <= 6600"] == 6600


def test_config_file_equals_the_model_defaults_and_overrides_merge(tmp_path):
    assert load_config() == FlowRecordsConfig()
    cfg = load_config({"model": {"kind": "rf", "random_forest": {"n_iter": 1}}}, {"seed": 3})
    assert cfg.model.kind == "random_forest" and cfg.model.random_forest["n_iter"] == 1 and cfg.seed == 3
    assert cfg.model.random_forest["n_splits"] == 3  # deep merge keeps the rest
    with pytest.raises(ValueError, match="no_such_key"):
        load_config({"no_such_key": 1})
    for path in (SINGLE_FEATURE, WORF_EXPERIMENT):
        assert ExperimentFile.from_yaml(path).combinations
    bad = tmp_path / "bad.yaml"
    bad.write_text("combinations: 5\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        ExperimentFile.from_yaml(bad)


def test_combinations_default_references_and_errors():
    packs = load_packs([CIC_PACK, WORF_PACK])
    cat = build_catalog(packs)
    assert len(cat.names) == 11 and cat.entry(A).group == "cic-ntp" and cat.entry("src_port_eq_123_attack").group == "worf"
    combos = default_combinations(cat)
    assert len(combos) == 11 + 55 + 1 and [c.role for c in combos].count("whole_pack") == 1
    # a second pack with an LF of the same name but other content: renamed, and the plain name is ambiguous
    clash = LFPack.from_dict({"pack": "group-b", "group": "B", "classes": ["benign", "attack"],
                              "universal_features": ["src_port"],
                              "lfs": [{"name": A, "label": "attack", "when": [{"feature": "src_port", "op": "<=", "value": 1024}]},
                                      {"name": "dup", "label": "attack", "when": [{"feature": "src_port", "op": "<=", "value": 6600}]}]})
    cat = build_catalog([packs[0], clash])
    assert cat.resolve("cic-ntp:" + A) == A and cat.resolve("group-b:" + A) == f"{A}__B"
    assert cat.resolve("group-b:dup") == A  # same content as cic-ntp's LF: one LF, two references
    exp = ExperimentFile.from_dict({"combinations": [[A], ["cic-ntp:" + A, "group-b:" + A], ["nope"], [B, B],
                                                     ["cic-ntp:" + A], ["group-b:dup"], {"name": "x", "lfs": [B]}]})
    combos, notes = experiment_combinations(exp, cat)
    errors = {c.index: c.error for c in combos if c.error}
    assert "ambiguous" in errors[0] and "unknown LF 'nope'" in errors[2] and "twice" in errors[3]
    assert combos[1].lfs == (A, f"{A}__B") and combos[-1].role == "whole_pack" and combos[-2].label == "x"
    assert len(notes) == 1 and "repeats" in notes[0]


# ---------------------------------------------------------------------------------------------------- experiments


def test_single_feature_experiment_has_the_papers_shape(cic, tmp_path):
    df, names = cic
    report = run_experiment(df, [CIC_PACK], tmp_path, experiment=SINGLE_FEATURE, config=FOREST, display_names=names)
    recs = _by_name(report)
    a, b, ab = recs[A], recs[B], recs[f"{A} + {B}"]
    whole = next(r for r in report["combinations"] if r["role"] == "whole_pack")
    assert len(recs) == 4 and all(RECORD_KEYS <= set(r) for r in recs.values())
    assert all(r["outcome"] == "ok" for r in recs.values()), [r["reason"] for r in recs.values()]
    # the paper's shape: the two port LFs together are at least as good as each alone
    assert ab["cls_f1"] >= a["cls_f1"] and ab["cls_f1"] >= b["cls_f1"]
    assert ab["cls_f1"] > 0.9 and ab["lf_f1"] > 0.9 and ab["coverage"] == 1.0
    # an LF that only says "benign" finds no attack: LF F1 0, and its classifier is the constant benign
    assert b["lf_f1"] == 0.0 and b["cls_f1"] == 0.0 and b["classifier"]["kind"] == "constant"
    assert a["training"]["single_class_fallback"] and a["training"]["features"] == ["src_port"]
    assert a["label_model"]["name"] == "single_lf" and ab["label_model"]["name"] == "majority_vote"
    assert "at least 3" in ab["label_model_fallback"] and whole["label_model"]["name"] == "snorkel_label_model"
    # faithful trees reproduce the LFs exactly; the paper's construction is reported beside them
    for r in recs.values():
        assert r["tree_vs_lf_difference"] == 0.0 and r["tree_f1"] == pytest.approx(r["lf_f1"])
        assert 0.0 <= r["tree_vs_lf_difference_paper"] <= 1.0 and r["diff_lf_tree"] == 0.0
    assert whole["tree_vs_lf_difference_paper"] > 0  # conflicting LFs: first match != majority
    from flamenco_core.explain import Tree

    tree = Tree.from_json(ab["artifacts"]["tree_json"])
    assert tree.mode == "faithful" and tree.features == ["src_port"] and Path(ab["artifacts"]["tree_png"]).stat().st_size > 0
    # thresholds from the training split, recorded
    prep = report["preparation"]
    train = pd.read_parquet(tmp_path / "work" / "frames" / "train.parquet")
    assert prep["statistics_source"] == "training split"
    assert prep["thresholds"]["flow_iat_min_lt_mean_attack"]["flow_iat_min < mean"] == pytest.approx(train["flow_iat_min"].mean())
    sizes = prep["splits"]["sizes"]
    assert sizes["test"] == pytest.approx(0.2 * len(df), abs=1) and sizes["validation"] == pytest.approx(0.16 * len(df), abs=2)
    # tables (CSV + Markdown), one record per combination, labels for every row
    for name in ("single_lf", "pairs", "group_combinations", "prediction_differences"):
        assert (tmp_path / "tables" / f"{name}.md").read_text().startswith("| ")
        assert (tmp_path / "tables" / f"{name}.csv").is_file()
    assert len(pd.read_csv(tmp_path / "tables" / "records.csv")) == 4
    labels = pd.read_parquet(tmp_path / "labels.parquet")
    assert len(labels) == len(df) and set(labels["label"]) <= {"benign", "attack"}
    assert set(labels["label_source"]) <= {"label_model", "classifier"} and labels["probability"].between(0, 1).all()
    assert report["labels"]["source_combination"] == whole["combination"]
    assert json.loads((tmp_path / "report.json").read_text())["tree_mode"] == "faithful"


def test_bad_input_gets_an_outcome_per_combination(cic, tmp_path):
    df, _ = cic
    df = df.assign(const=7.0)
    df["label"] = df["label"].astype(object)
    df.loc[df.index[::97], "label"] = "WeirdClass"
    bad = LFPack.from_dict({
        "pack": "bad", "group": "B", "classes": ["benign", "attack"], "universal_features": ["src_port"],
        "lfs": [
            # reads a real column, so it passes the check before the fan-out, and cannot be applied
            {"name": "broken_threshold_attack", "label": "attack", "when": [{"feature": "flow_iat_min", "op": ">", "value": "mean/(max-max)"}]},
            {"name": "const_le_mean_attack", "label": "attack", "when": [{"feature": "const", "op": "<=", "value": "mean"}]},
            {"name": "never_fires_attack", "label": "attack", "when": [{"feature": "src_port", "op": ">=", "value": 70000}]},
        ]})
    exp = {"experiment": "bad-input", "combinations": [
        ["broken_threshold_attack"], ["broken_threshold_attack", A], ["const_le_mean_attack"],
        ["const_le_mean_attack", B], ["never_fires_attack"], ["cic-ntp:" + B, "bad:never_fires_attack"], ["no_such_lf"], [A]]}
    cfg = {**FOREST, "ground_truth": {"mapping": {"BENIGN": "benign", "DrDoS_NTP": "attack"}, "default": None}}
    report = run_experiment(df, [LFPack.from_yaml(CIC_PACK), bad], tmp_path, experiment=exp, config=cfg)
    recs = _by_name(report)
    assert len(recs) == 9  # 8 entries + the whole pack
    for name in ("broken_threshold_attack", f"broken_threshold_attack + {A}"):
        assert recs[name]["outcome"] == "failed" and "division by zero" in recs[name]["error"]
    assert recs["no_such_lf"]["outcome"] == "failed" and "unknown LF" in recs["no_such_lf"]["error"]
    # a constant feature: undefined correlation, noted; its LF votes everywhere, so a constant classifier
    const, pair = recs["const_le_mean_attack"], recs[f"const_le_mean_attack + {B}"]
    assert const["outcome"] == "ok" and any("constant" in n for n in const["notes"])
    assert pair["correlation"] is None or np.isnan(pair["correlation"])
    assert pair["outcome"] == "ok" and pair["tree_vs_lf_difference"] == 0.0
    # LFs that cover no point: LF F1 0 (the paper's zero rows), classifier skipped with the reason
    never = recs["never_fires_attack"]
    assert never["lf_f1"] == 0.0 and never["coverage"] == 0.0 and never["outcome"] == "skipped"
    assert "no training row" in never["reason"] and any("cover no test row" in n for n in never["notes"])
    assert recs[f"{B} + never_fires_attack"]["groups"] == ["cic-ntp", "B"]
    assert recs[A]["outcome"] == "ok"
    # unknown labels: those rows leave the experiment, counted, and still get labels
    gt = report["preparation"]["ground_truth"]
    assert gt["unknown_labels"] == {"WeirdClass": len(df.index[::97])}
    assert report["preparation"]["rows"]["unlabeled"] == len(df.index[::97])
    summary = report["summary"]
    assert summary["failed"] == 4 and {f["combination"] for f in summary["failures"]} >= {"no_such_lf", "broken_threshold_attack"}
    # the whole pack holds the broken LF: it fails, and labels fall back to ground truth (or none), said so
    assert report["labels"]["source_outcome"] == "failed"
    labels = pd.read_parquet(tmp_path / "labels.parquet")
    assert len(labels) == len(df) and set(labels["label_source"]) == {"ground_truth", "none"}
    assert (labels["label_source"] == "none").sum() == len(df.index[::97])
    md = (tmp_path / "tables" / "single_lf.md").read_text()
    assert "failed" in md and "skipped" in md


def test_preparation_failure_skips_every_combination(cic, tmp_path):
    df, _ = cic
    report = run_experiment(df.drop(columns=["label"]), [CIC_PACK], tmp_path, config=FOREST)
    assert report["preparation"]["outcome"] == "failed" and "no ground truth" in report["preparation"]["error"]
    assert len(report["combinations"]) == 11 and {r["outcome"] for r in report["combinations"]} == {"skipped"}


def test_a_pack_that_does_not_fit_the_data_fails_before_any_combination_runs(cic, tmp_path):
    from flamenco_core.errors import EXIT_USAGE
    from flamenco_core.experiments.flow_records import PackMismatch

    df, _ = cic
    typo = tmp_path / "typo.yaml"
    typo.write_text(CIC_PACK.read_text().replace("feature: flow_iat_min,", "feature: flow_iat_mn,"))
    with pytest.raises(PackMismatch) as info:
        prepare(df, [typo], FOREST)
    msg = str(info.value)
    assert info.value.exit_code == EXIT_USAGE == 2 and "\n" not in msg
    assert str(typo) in msg and "'flow_iat_mn'" in msg and "did you mean flow_iat_min" in msg
    assert "flow_iat_min_lt_mean_attack" in msg  # the LF that reads it
    # a text column is not a number: same check, before anything runs
    text = LFPack.from_dict({"pack": "t", "classes": ["benign", "attack"], "lfs": [
        {"name": "src_attack", "label": "attack", "when": [{"feature": "src", "op": ">", "value": "mean"}]}]})
    with pytest.raises(PackMismatch, match="'src' is not numeric"):
        prepare(df, [text], FOREST)
    # the whole-run entry point reports it as its preparation failure, every combination skipped
    report = run_experiment(df, [typo], tmp_path / "out", config=FOREST)
    assert report["preparation"]["outcome"] == "failed" and "did you mean flow_iat_min" in report["preparation"]["error"]
    assert {r["outcome"] for r in report["combinations"]} == {"skipped"}


def test_a_benign_only_test_split_reports_f1_as_undefined_not_zero(cic, tmp_path):
    df, _ = cic
    benign = df[df["label"].astype(str).str.upper() == "BENIGN"].reset_index(drop=True)
    report = run_experiment(benign, [CIC_PACK], tmp_path, config=FOREST)
    assert report["summary"]["failed"] == 0 and report["combinations"]
    assert all(np.isnan(r["lf_f1"]) for r in report["combinations"])
    recs = json.loads((tmp_path / "report.json").read_text())["combinations"]
    for r in recs:
        assert r["lf_f1"] is None and r["tree_f1"] is None, r  # null in JSON: undefined
        assert r.get("cls_f1") is None
        assert "undefined" in r["f1_undefined"] and "'attack'" in r["f1_undefined"]
    md = (tmp_path / "tables" / "single_lf.md").read_text()
    assert "n/a" in md and "0.000" not in md.split("\n", 2)[2].split("|")[4]
    # with attack rows in test, F1 stays a number (binary behaviour unchanged)
    both = run_experiment(df, [CIC_PACK], tmp_path / "both", config=FOREST)
    assert all(isinstance(r["lf_f1"], float) and "f1_undefined" not in r for r in both["combinations"])


def test_real_drdos_ntp_sample_end_to_end(samples, tmp_path):
    df, names, ingest = read_input(samples / "cicddos2019" / "DrDoS_NTP.csv", "cicflowmeter", tmp_path / "ingest")
    report = run_experiment(df, [CIC_PACK], tmp_path / "out", config=LSTM, display_names=names,
                            sources={"input": "DrDoS_NTP.csv"})
    recs = report["combinations"]
    assert len(recs) == 11 and report["summary"]["failed"] == 0
    assert all(RECORD_KEYS <= set(r) and r["tree_vs_lf_difference"] == 0.0 for r in recs)
    ran = [r for r in recs if r["outcome"] == "ok"]
    assert ran and all(r["classifier"]["kind"] in ("lstm", "constant") for r in ran)
    assert all(0.0 <= r["cls_f1"] <= 1.0 for r in ran)
    labels = pd.read_parquet(tmp_path / "out" / "labels.parquet")
    assert len(labels) == ingest["rows"] == 366
    assert list(labels.columns) == ["timestamp", "src", "dst", "src_port", "dst_port", "protocol", "split", "label",
                                    "probability", "label_source"]
    assert set(labels["split"]) == {"train", "validation", "test"}
    assert list((tmp_path / "out" / "trees").glob("*.png"))


def test_worf_like_nfdump_end_to_end(tmp_path):
    res = GENERATORS["worf"](tmp_path / "raw", scale=0.01, seed=0)
    df, names, _ = read_input(res.data_paths[0], "nfdump", tmp_path / "ingest")
    from flamenco_core.synth import join_labels

    df = join_labels(df, pd.read_parquet(res.labels_path))
    report = run_experiment(df, [WORF_PACK], tmp_path / "out", experiment=WORF_EXPERIMENT, config=LSTM, display_names=names)
    recs = _by_name(report)
    assert len(recs) == 7 and report["summary"]["failed"] == 0
    port = recs["src_port_eq_123_attack"]
    assert port["lf_f1"] > 0.5 and port["groups"] == ["worf"]
    assert all(r["tree_vs_lf_difference"] == 0.0 for r in recs.values())
    assert recs["src_port_eq_123_attack + bytes_le_p75_benign"]["label_model"]["name"] == "majority_vote"
    assert recs["src_port_eq_123_attack + packets_le_p75_benign"]["correlation"] is not None
    assert "worf_port_and_size" not in report["dataset"] and report["dataset"] == "worf"


# ---------------------------------------------------------------------------------------------------- flow, CLI, MLflow


def _alert_windows(labels: pd.DataFrame, path: Path) -> int:
    """Alert windows per victim and attack episode (gaps over 15 minutes split episodes), as CSV."""
    att = labels[labels["label"] == "attack"].sort_values(["dst", "timestamp"])
    episode = (att.groupby("dst")["timestamp"].diff() > pd.Timedelta(minutes=15)).cumsum()
    win = att.groupby(["dst", episode])["timestamp"].agg(["min", "max"]).reset_index()
    pd.DataFrame({"start": win["min"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"), "end": win["max"].dt.strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "target": win["dst"]}).to_csv(path, index=False)
    return len(att)


def _cli_app():
    from flamenco.cli_run import run_app

    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """test root"""

    app.add_typer(run_app, name="run")
    return app


def test_cli_rejects_bad_arguments(tmp_path):
    runner = CliRunner()
    app = _cli_app()
    data = tmp_path / "x.csv"
    data.write_text("a\n1\n")
    res = runner.invoke(app, ["run", "flows", "--input", str(data), "--format", "pcap", "--lfs", str(CIC_PACK), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown format" in res.output
    res = runner.invoke(app, ["run", "flows", "--input", str(data), "--format", "csv", "--lfs", str(tmp_path / "no.yaml"), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no such file" in res.output
    bad = tmp_path / "exp.yaml"
    bad.write_text("combinations: [[a]]\nnot_a_key: 1\n")
    res = runner.invoke(app, ["run", "flows", "--input", str(data), "--format", "csv", "--lfs", str(CIC_PACK),
                              "--experiments", str(bad), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "not_a_key" in res.output
    res = runner.invoke(app, ["run", "--help"])
    assert res.exit_code == 0 and "flows" in res.output


@pytest.mark.usefixtures("prefect_harness")
def test_cli_runs_the_flow_on_worf_with_alerts_and_logs_to_mlflow(tmp_path, mlflow_uri):
    import mlflow
    import yaml

    res = GENERATORS["worf"](tmp_path / "raw", scale=0.01, seed=0)
    n_attack = _alert_windows(pd.read_parquet(res.labels_path), tmp_path / "alerts.csv")
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump({**FOREST, "tree": {"png": True}}))
    out = tmp_path / "out"
    result = CliRunner().invoke(_cli_app(), [
        "run", "flows", "--input", str(res.data_paths[0]), "--format", "nfdump", "--lfs", str(WORF_PACK),
        "--experiments", str(WORF_EXPERIMENT), "--alerts", str(tmp_path / "alerts.csv"), "--out", str(out),
        "--config", str(tmp_path / "fast.yaml")])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    gt = report["preparation"]["ground_truth"]
    assert gt["method"] == "alerts" and gt["flows_matched"] == n_attack and gt["windows_unmatched"] == 0
    recs = report["combinations"]
    assert len(recs) == 7 and all(RECORD_KEYS <= set(r) for r in recs) and report["summary"]["failed"] == 0
    assert len(pd.read_parquet(out / "labels.parquet")) == report["preparation"]["rows"]["input"]
    assert list((out / "trees").glob("*.png")) and (out / "tables" / "pairs.md").is_file()

    mlflow.set_tracking_uri(mlflow_uri)
    parent_id = report["mlflow"]["parent_run_id"]
    runs = mlflow.search_runs(experiment_names=[report["mlflow"]["experiment"]], output_format="pandas")
    parent = runs[runs["run_id"] == parent_id].iloc[0]
    assert parent["tags.flamenco.pipeline"] == "flow_records" and parent["tags.flamenco.dataset"] == "worf"
    assert parent["metrics.combinations_ok"] + parent["metrics.combinations_skipped"] == 7
    children = mlflow.search_runs(experiment_names=[report["mlflow"]["experiment"]],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`flamenco.pipeline` = 'flow_records'")
    assert len(children) == 7
    assert set(children["tags.flamenco.combination"]) == {r["combination"] for r in recs}
    assert set(children["tags.flamenco.dataset"]) == {"worf"} and children["metrics.lf_f1"].notna().all()
    port = children[children["tags.flamenco.combination"] == "src_port_eq_123_attack"].iloc[0]
    assert json.loads(port["params.lfs"]) == ["src_port_eq_123_attack"] and port["params.groups"] == '["worf"]'
    client = mlflow.MlflowClient()
    trees = [a.path for a in client.list_artifacts(port["run_id"], "trees")]
    assert any(p.endswith(".png") for p in trees)
    tables = [a.path for a in client.list_artifacts(parent_id, "tables")]
    assert "tables/pairs.md" in tables and "tables/single_lf.csv" in tables


@pytest.mark.usefixtures("prefect_harness")
def test_one_failed_combination_fails_only_its_task(cic, tmp_path, mlflow_uri):
    import mlflow
    from prefect import flow, unmapped

    from tasks.flow_records import combination_records as _records
    from tasks import tracking
    from tasks.flow_records import combination_task

    df, _ = cic
    broken = LFPack.from_dict({"pack": "broken", "classes": ["benign", "attack"], "lfs": [
        {"name": "broken_threshold_attack", "label": "attack", "when": [{"feature": "flow_iat_min", "op": ">", "value": "mean/(max-max)"}]}]})
    exp = {"combinations": [[A], ["broken_threshold_attack"], [A, B]]}
    prep = prepare(df, [CIC_PACK, broken], FOREST, exp, out_dir=tmp_path)
    combos = [c.to_dict() for c in prep.combinations]
    parent = tracking.start_run("test-flow-records-failures", "parent")

    @flow(name="probe-flow-records")
    def probe() -> tuple:
        futures = combination_task.map(combos, work_dir=unmapped(str(tmp_path / "work")), out_dir=unmapped(str(tmp_path)),
                                       experiment=unmapped("test-flow-records-failures"), parent_run_id=unmapped(parent))
        records = _records(combos, futures, str(tmp_path), prep.dataset, "test-flow-records-failures", parent)
        return [f.state.is_failed() for f in futures], records

    failed, records = probe()
    assert failed == [False, True, False, True]  # the broken LF's combination and the whole pack
    assert [r["outcome"] for r in records] == ["ok", "failed", "ok", "failed"]
    assert "division by zero" in records[1]["error"]
    mlflow.set_tracking_uri(mlflow_uri)
    status = {r["combination"]: mlflow.get_run(r["run_id"]).info.status for r in records}
    assert status[A] == "FINISHED" and status["broken_threshold_attack"] == "FAILED"
    assert Prepared.load(tmp_path / "work").lf_errors.keys() == {"broken_threshold_attack"}


def test_core_does_not_import_prefect_or_mlflow():
    code = ("import sys, flamenco_core.experiments.flow_records, flamenco.cli_run; "
            "bad = [m for m in ('prefect', 'mlflow') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
