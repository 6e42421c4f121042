"""The latency flow: Prefect runs with MLflow, runners that change where pairs run but not their labels,
and the output folder's lock."""

import json

import pandas as pd
import pytest

# The flow tests' config: small searches, so that a run stays in seconds.
FAST = {"model": {"forest": {"n_iter": 2, "n_splits": 2}, "lstm": {"epochs": 3}}, "snuba": {"budget": 3}}


@pytest.mark.usefixtures("prefect_harness")
def test_latency_flow_end_to_end(tmp_path, mlflow_uri):
    import mlflow
    import yaml

    from flamenco_core.synth import GENERATORS
    from flows.latency import latency_flow

    from flamenco_core.synth import hold_out_labels

    res = GENERATORS["ark"](tmp_path / "raw", scale=0.02, seed=1)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(FAST))
    src = [str(p) for p in res.data_paths[:1]]
    partial, truth = hold_out_labels(pd.read_parquet(res.labels_path), share=0.35)
    partial.to_parquet(tmp_path / "partial.parquet")
    summary = latency_flow(src, "scamper", str(tmp_path / "out"), labels=str(tmp_path / "partial.parquet"), config=str(cfg),
                           experiment="test-latency", truth=str(res.labels_path))
    assert not summary["failed"]
    # scored on rows the labels did not come from, against held-back truth
    unl = summary["average"]["f1_unlabeled"]
    assert unl["f1_macro"] > 0.9 and unl["f1_noise"] > 0.85, unl
    assert summary["outcomes"]["pairs"]["ok"] >= 1
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    for p in report["pairs"]:
        assert {"src", "dst", "rows", "modality", "f1_good", "f1_noise", "f1_macro", "baselines"} <= set(p)
        assert set(p["baselines"]) == {"lof", "elliptic_envelope", "robust_covariance", "isolation_forest", "rolling_mad"}
    assert {"f1_good", "f1_noise", "f1_macro", "baselines"} <= set(report["average"])
    labels = pd.read_parquet(tmp_path / "out" / "labels.parquet")
    cleaned = pd.read_parquet(tmp_path / "out" / "ingest" / "data.parquet")
    assert len(labels) == len(cleaned)
    assert labels["label"].isin(["good", "noise"]).all()
    assert set(labels["label_source"]) <= {"user", "label_model", "classifier", "heuristic", "envelope", "constant"}
    assert (labels["label_source"] != "user").sum() > 0.5 * len(labels)  # the model's labels, not the input's
    assert {"timestamp", "src", "dst", "rtt_ms", "label", "probability", "label_source"} <= set(labels.columns)

    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["test-latency"])
    children = runs[runs["tags.mlflow.parentRunId"] == summary["parent_run_id"]]
    assert len(children) == len(report["pairs"])
    parent = runs[runs["run_id"] == summary["parent_run_id"]].iloc[0]
    assert parent["metrics.pairs_ok"] >= 1 and parent["metrics.f1_unlabeled_macro"] == pytest.approx(unl["f1_macro"])
    assert "metrics.unlabeled.rolling_mad.f1_macro" in children
    # the end model's hyperparameter trials are nested under their pair's run
    trials = runs[runs["tags.mlflow.parentRunId"].isin(children["run_id"]) & (runs["tags.flamenco.kind"] == "trial")]
    assert len(trials) >= len(children) and trials["metrics.score"].notna().all()
    assert children["params.modality"].notna().all() and "metrics.f1_macro" in children
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(children["run_id"].iloc[0])}
    assert "report.json" in arts and any(a.endswith("_kde.png") for a in arts)


@pytest.mark.usefixtures("prefect_harness")
def test_runner_changes_where_pairs_run_not_their_labels(tmp_path, mlflow_uri):
    import yaml

    from flamenco_core.synth import GENERATORS, hold_out_labels
    from flows.latency import latency_flow

    res = GENERATORS["ark"](tmp_path / "raw", scale=0.02, seed=2)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump({**FAST, "runner": {"kind": "dask", "workers": 2}}))
    src = [str(p) for p in res.data_paths[:1]]
    partial, _ = hold_out_labels(pd.read_parquet(res.labels_path), share=0.35)
    partial.to_parquet(tmp_path / "partial.parquet")
    kw = dict(labels=str(tmp_path / "partial.parquet"), config=str(cfg), experiment="test-latency-runners",
              truth=str(res.labels_path))
    threads = latency_flow(src, "scamper", str(tmp_path / "threads"), runner="threads", **kw)
    dask = latency_flow(src, "scamper", str(tmp_path / "dask"), **kw)  # the config's runner
    assert threads["runner"] == "threads" and dask["runner"] == "dask"
    assert not threads["failed"] and not dask["failed"] and len(dask["pairs"]) >= 2
    a = pd.read_parquet(tmp_path / "threads" / "labels.parquet")
    b = pd.read_parquet(tmp_path / "dask" / "labels.parquet")
    # the model's labels and probabilities on the 65% the user did not label, not copies of the input
    assert (a["label_source"] != "user").mean() > 0.5
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    assert threads["average"]["f1_unlabeled"] == dask["average"]["f1_unlabeled"]


@pytest.mark.usefixtures("prefect_harness")
def test_a_second_run_into_a_busy_output_folder_is_refused(tmp_path):
    import subprocess
    import sys
    import time

    from flamenco_core.outputs import OutputInUse
    from flows.latency import latency_flow

    out = tmp_path / "busy"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from flamenco_core.outputs import OutputLock\n"
        f"l = OutputLock({str(out)!r}).acquire(); print('held', flush=True); time.sleep(60)")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        with pytest.raises(OutputInUse, match=str(holder.pid)):
            latency_flow([str(tmp_path / "nothing.jsonl")], "atlas", str(out))
        assert time.perf_counter() - t0 < 30 and not (out / "report.json").exists()
    finally:
        holder.kill()
        holder.wait()
