"""Issue 13 on the command line: ``flamenco lf compare-models`` on the 13 real CIC-DDoS2019 files (table,
outputs, MLflow runs), its usage errors, and ``flamenco run flows`` over several inputs with a class map and
a chosen label model."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from flamenco.cli import app

ROOT = Path(__file__).resolve().parents[2]
MULTI = ROOT / "conf" / "lf_packs" / "cic2019_multiclass.yaml"
CIC_MAP = ROOT / "conf" / "class_maps" / "cic2019.yaml"
BINARY_MAP = ROOT / "conf" / "class_maps" / "cic_binary.yaml"
NTP_PACK = ROOT / "conf" / "lf_packs" / "cic_ntp.yaml"


def _runs(experiment: str):
    import mlflow

    from tasks import tracking

    mlflow.set_tracking_uri(tracking.tracking_uri())
    return mlflow.search_runs(experiment_names=[experiment], output_format="pandas")


def test_compare_models_on_the_real_files(samples, tmp_path):
    out = tmp_path / "cmp"
    res = CliRunner().invoke(app, ["lf", "compare-models", str(MULTI), "--data", str(samples / "cicddos2019"),
                                   "--class-map", str(CIC_MAP), "--out", str(out), "--label-model", "majority",
                                   "--label-model", "mmsr", "--no-end-model", "--dataset", "cic13-test"],
                             env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    tables = [ln for ln in lines if ln[:1] in "┏┃┡│└" or ln.startswith((" class", " benign", " dns"))]
    assert len(tables) > 10 and max(map(len, tables)) <= 80, "\n".join(tables)
    assert not any("…" in ln for ln in tables), "\n".join(tables)  # model names and scores whole
    assert any(ln.startswith("│ isolation_forest ") for ln in tables)
    assert f"wrote {out / 'report.json'}" in lines  # a path on one line, however long
    assert "not covered: ntp, tftp, portmap" in res.output
    assert "best label model (chosen on validation): " in res.output
    report = json.loads((out / "report.json").read_text())
    keys = [m["model_key"] for m in report["models"]]
    assert keys == ["majority", "mmsr", "majority_class", "isolation_forest", "simplest_rule"]
    assert len(report["preparation"]["ground_truth"]["raw_counts"]) == 14
    for name in ("comparison.md", "per_class_f1.csv", f"confusion_{report['best_label_model']}.png"):
        assert (out / name).is_file(), name
    runs = _runs("flamenco-label-models")
    parent = runs[(runs["tags.flamenco.dataset"] == "cic13-test") & runs["tags.mlflow.parentRunId"].isna()]
    assert len(parent) == 1 and parent["status"].iloc[0] == "FINISHED"
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]]
    assert sorted(children["tags.mlflow.runName"]) == sorted(keys)
    best = report["best_label_model"]
    lm = next(m for m in report["models"] if m["model_key"] == best)
    assert parent[f"metrics.best.f1_macro_covered"].iloc[0] == pytest.approx(lm["f1_macro_covered"])
    assert "metrics.f1_snmp" in children.columns


def test_compare_models_usage_errors(samples, tmp_path):
    runner = CliRunner()
    base = ["lf", "compare-models", str(MULTI), "--data", str(samples / "cicddos2019" / "DrDoS_DNS.csv"),
            "--out", str(tmp_path / "o"), "--no-mlflow"]
    res = runner.invoke(app, [*base, "--label-model", "glad"])
    assert res.exit_code == 2 and "unknown label model 'glad'" in res.output
    # the binary map targets [benign, attack]: not the multi-class pack's classes
    res = runner.invoke(app, [*base, "--class-map", str(BINARY_MAP)])
    assert res.exit_code == 2 and "attack" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, [*base[:4], str(tmp_path / "nowhere"), *base[5:]])
    assert res.exit_code == 2 and "no such file or folder" in res.output


FAST = {"model": {"kind": "random_forest", "random_forest": {
    "n_iter": 1, "n_splits": 2, "param_distributions": {"n_estimators": [10], "max_depth": [None], "bootstrap": [True]}}},
    "importance": {"n_estimators": 10}, "plots": False, "tree": {"png": False}}


@pytest.mark.usefixtures("prefect_harness")
def test_run_flows_on_several_inputs_with_a_class_map_and_a_label_model(samples, tmp_path):
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(FAST))
    (tmp_path / "exp.yaml").write_text(yaml.safe_dump({"experiment": "two-files", "combinations": [["src_port_le_6600_attack"]]}))
    out = tmp_path / "out"
    files = [samples / "cicddos2019" / "DrDoS_NTP.csv", samples / "cicddos2019" / "Portmap.csv"]
    res = CliRunner().invoke(app, ["run", "flows", "--input", str(files[0]), "--input", str(files[1]),
                                   "--format", "cicflowmeter", "--lfs", str(NTP_PACK), "--class-map", str(BINARY_MAP),
                                   "--label-model", "mmsr", "--experiments", str(tmp_path / "exp.yaml"),
                                   "--config", str(tmp_path / "fast.yaml"), "--out", str(out)], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    table = [ln for ln in lines if ln[:1] in "┏┃┡│└"]
    assert table and max(map(len, table)) <= 80 and not any("…" in ln for ln in table), "\n".join(table)
    assert any(ln.startswith("│ A ") for ln in table) and "  A = src_port_le_6600_attack" in lines
    report = json.loads((out / "report.json").read_text())
    sources = report["preparation"]["sources"]
    assert [Path(f["file"]).name for f in sources["inputs"]] == ["DrDoS_NTP.csv", "Portmap.csv"]
    assert report["preparation"]["rows"]["input"] == 367 + 368 - _dropped(report)
    assert report["config"]["label_model"]["kind"] == "mmsr"
    assert report["config"]["ground_truth"]["mapping"] == {"BENIGN": "benign"}
    whole = next(r for r in report["combinations"] if r["role"] == "whole_pack")
    assert whole["label_model"]["name"] in ("mmsr", "majority_vote")
    assert whole["label_model"]["name"] == "mmsr" or whole["label_model"]["fallback_reason"]
    # binary: the multi-class fields and table stay out of the outputs
    assert "cls_f1_per_class" not in whole and "covered_classes" not in whole
    assert not (out / "tables" / "per_class_f1.csv").exists() and "per_class_f1" not in report["tables"]


def _dropped(report) -> int:
    ingest = report["preparation"]["sources"]["ingest"]
    return sum(ingest["dropped"].values()) + ingest["quarantined"]


def test_flow_records_core_on_the_13_files_is_multiclass(samples, tmp_path):
    from flamenco_core.experiments import flow_records as fr
    from flamenco_core.experiments.inputs import read_inputs
    from flamenco_core.labeling.class_map import load_class_map

    df, names, _ = read_inputs([samples / "cicddos2019"], "cicflowmeter", tmp_path / "ingest")
    exp = {"experiment": "multi", "combinations": [["snmp_small_answers", "dns_long_udp_stream"]]}
    cfg = {**FAST, "ground_truth": load_class_map(CIC_MAP).ground_truth(), "label_model": {"kind": "majority"}}
    report = fr.run_experiment(df, [MULTI], tmp_path / "out", exp, cfg, display_names=names)
    assert report["summary"]["ok"] == 2, report["summary"]
    whole = next(r for r in report["combinations"] if r["role"] == "whole_pack")
    assert whole["covered_classes"] == ["benign", "dns", "snmp", "netbios", "large_reflection", "udp_flood", "tcp_flood"]
    assert set(whole["cls_f1_per_class"]) == set(report["classes"]) and len(report["classes"]) == 10
    assert whole["lf_f1_macro_covered"] > 0.75 and whole["cls_f1_macro_covered"] > 0.75
    assert whole["tree_vs_lf_difference"] == 0.0
    pair = next(r for r in report["combinations"] if r["role"] != "whole_pack")
    assert pair["covered_classes"] == ["dns", "snmp"] and pair["lf_f1_per_class"]["snmp"] > 0.95
    table = pd.read_csv(tmp_path / "out" / "tables" / "per_class_f1.csv")
    assert list(table.columns[2:12]) == report["classes"] and len(table) == 4  # LFs and classifier per combination
    whole_lf = table[(table["combination"] == whole["combination"]) & (table["scorer"] == "LFs")].iloc[0]
    assert whole_lf["not covered"] == "ntp, tftp, portmap"
    assert whole_lf["macro (covered)"] == pytest.approx(whole["lf_f1_macro_covered"])


def test_mlflow_info_lines_stay_out_of_a_commands_output(samples, tmp_path):
    """A fresh store makes MLflow log "Creating initial MLflow database tables..." at INFO: a command's
    output holds its own summary only (MLflow's warnings would still show)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "FLAMENCO_HOME": str(tmp_path / "home")}
    env.pop("MLFLOW_TRACKING_URI", None)
    res = subprocess.run([str(Path(sys.executable).with_name("flamenco")), "lf", "compare-models", str(MULTI),
                          "--data", str(samples / "cicddos2019" / "DrDoS_DNS.csv"), "--class-map", str(CIC_MAP),
                          "--out", str(tmp_path / "o"), "--label-model", "majority", "--no-end-model"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "MLflow: experiment flamenco-label-models" in res.stdout
    assert "INFO mlflow" not in res.stdout + res.stderr, res.stderr
