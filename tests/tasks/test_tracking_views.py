"""What MLflow shows (issue 15), read back through ``MlflowClient`` from the real SQLite store: experiment
and run descriptions, long params as artifacts, the comparison table (``log_table``) and chart on a
parent run, strict JSON artifacts, and the latency headline keys."""

import json
import math

import pandas as pd
import pytest

from tasks import tracking


def _client(uri):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_descriptions_and_long_params_as_artifacts(mlflow_uri, tmp_path):
    c = _client(mlflow_uri)
    parent = tracking.start_run("test-views", "flows-x", tags=tracking.standard_tags(pipeline="flow_records"))
    features = [f"feature_{i}" for i in range(68)]
    child = tracking.start_run("test-views", "A+B", parent_run_id=parent, description="**A+B** = p + q",
                               params={"classifier_features": features, "lfs": ["p", "q"]},
                               tags=tracking.standard_tags(combination="p + q", short_name="A+B"))
    exp = c.get_experiment_by_name("test-views")
    assert "LF combination" in exp.tags[tracking.TAG_DESCRIPTION]
    assert c.get_run(parent).data.tags[tracking.TAG_DESCRIPTION].startswith("flows-x: ")
    run = c.get_run(child)
    assert run.info.run_name == "A+B" and run.data.tags["flamenco.combination"] == "p + q"
    assert run.data.tags[tracking.TAG_DESCRIPTION] == "**A+B** = p + q"
    assert run.data.params["classifier_features"] == "68 items: params/classifier_features.json"
    assert json.loads(run.data.params["lfs"]) == ["p", "q"]  # short lists stay readable params
    local = c.download_artifacts(child, "params/classifier_features.json", str(tmp_path))
    assert json.loads(open(local).read()) == features


def test_parent_run_gets_comparison_table_chart_and_legend(mlflow_uri, tmp_path):
    from flamenco_core.report.charts import combination_chart, combination_frame

    c = _client(mlflow_uri)
    records = [{"combination": "p", "lfs": ["p"], "outcome": "ok", "lf_f1": 0.5, "cls_f1": 0.75, "tree_f1": 0.5},
               {"combination": "p + q", "lfs": ["p", "q"], "outcome": "ok", "lf_f1": float("nan"), "cls_f1": 1.0,
                "tree_f1": None}]
    chart = combination_chart(records, tmp_path / "comparison.png", title="d: F1 per LF combination, test split")
    parent = tracking.start_run("test-views-table", "parent")
    tracking.log_comparison(parent, combination_frame(records), chart, legend={"p": "A", "q": "B"},
                            description="best: A+B")
    run = c.get_run(parent)
    assert run.data.tags[tracking.TAG_LEGEND] == "A = p; B = q"
    assert run.data.tags[tracking.TAG_DESCRIPTION] == "best: A+B"
    assert [a.path for a in c.list_artifacts(parent, "charts")] == ["charts/comparison.png"]
    table = c.load_table(run.info.experiment_id, "tables/comparison.json", run_ids=[parent])
    assert list(table["short_name"]) == ["A", "A+B"] and list(table["cls_f1"]) == [0.75, 1.0]
    assert table["lf_f1"].isna().iloc[1]  # undefined stays undefined, not 0


def test_json_artifacts_are_strict_and_latency_keys_match(mlflow_uri, tmp_path):
    c = _client(mlflow_uri)
    run = tracking.start_run("test-views-json", "r")
    tracking.log_json(run, {"f1": float("nan"), "n": 1}, "summary.json")
    text = open(c.download_artifacts(run, "summary.json", str(tmp_path))).read()
    assert json.loads(text, parse_constant=lambda x: pytest.fail(f"bare {x} in JSON")) == {"f1": None, "n": 1}

    pair = {"f1_good": 1.0, "f1_noise": math.nan, "f1_macro": 0.5, "f1_unlabeled": {"f1_macro": 0.4},
            "baselines": {"lof": {"f1_macro": 0.3}}, "baselines_unlabeled": {"lof": {"f1_macro": 0.2}}}
    keys = tracking.latency_metrics(pair)
    assert keys == {"f1_good": 1.0, "f1_macro": 0.5, "f1_unlabeled_macro": 0.4, "lof.f1_macro": 0.3,
                    "unlabeled.lof.f1_macro": 0.2}
    avg = {**pair, "f1_unlabeled_pooled": {"flamenco": {"f1_macro": 0.45, "f1_noise": math.nan, "rows": 1000}}}
    assert tracking.latency_metrics(avg) == {**keys, "pooled.flamenco.f1_macro": 0.45}


def test_ui_command_runs_as_printed():
    import shlex
    from pathlib import Path

    argv = shlex.split(tracking.ui_command())
    assert Path(argv[0]).is_absolute() and Path(argv[0]).is_file()  # the venv's mlflow, not a bare name
    assert argv[1:3] == ["ui", "--backend-store-uri"] and argv[3] == tracking.tracking_uri()


def test_finished_children_logged_once_under_their_parent(mlflow_uri):
    c = _client(mlflow_uri)
    parent = tracking.start_run("test-trials", "pair-a", tags=tracking.standard_tags(pipeline="latency"))
    trials = [{"name": f"pair-a-trial{i}", "params": {"model": "lstm", "hidden": h}, "metrics": {"score": s},
               "tags": {"flamenco.kind": "trial"}} for i, (h, s) in enumerate([(32, 0.9), (64, 0.95)])]
    ids = tracking.log_finished_children("test-trials", parent, trials)
    # a retried pair task logs the same trials again: they are found, not duplicated
    assert tracking.log_finished_children("test-trials", parent, trials) == ids
    runs = [c.get_run(i) for i in ids]
    assert [r.info.status for r in runs] == ["FINISHED", "FINISHED"]
    assert [r.data.tags["mlflow.parentRunId"] for r in runs] == [parent, parent]
    assert [r.data.metrics["score"] for r in runs] == [0.9, 0.95] and runs[1].data.params["hidden"] == "64"
    other = tracking.start_run("test-trials", "pair-b", tags=tracking.standard_tags(pipeline="latency"))
    assert tracking.log_finished_children("test-trials", other, trials[:1])[0] not in ids  # keyed by parent
