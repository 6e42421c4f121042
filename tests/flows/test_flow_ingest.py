"""The ingest flow for real: a Prefect run (test harness) logging to a real MLflow SQLite store."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def _latency_csv(path: Path) -> dict:
    rng = np.random.default_rng(7)
    sizes = {("10.0.0.1", "8.8.8.8"): 150, ("10.0.0.2", "1.1.1.1"): 120, ("10.0.0.3", "9.9.9.9"): 30}
    frames = []
    for (src, dst), n in sizes.items():
        t0 = pd.Timestamp("2024-01-01", tz="UTC")
        frames.append(pd.DataFrame({
            "timestamp": (t0 + pd.to_timedelta(np.arange(n) * 60, unit="s")).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "src": src, "dst": dst, "rtt_ms": rng.gamma(4.0, 5.0, n).round(3),
        }))
    df = pd.concat(frames, ignore_index=True)
    df.to_csv(path, index=False)
    return {"df": df, "sizes": sizes}


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_flow_logs_parent_and_children(tmp_path, mlflow_uri):
    import mlflow

    from flows.ingest import ingest_flow

    data = _latency_csv(tmp_path / "lat.csv")
    summary = ingest_flow([str(tmp_path / "lat.csv")], "csv", str(tmp_path / "out"), min_points=100,
                          experiment="test-ingest-flow", run_name="t1")
    assert summary["failed"] == 0
    assert sorted(o["item"] for o in summary["items"]) == ["10.0.0.1__8.8.8.8", "10.0.0.2__1.1.1.1"]
    assert summary["skipped"] == [{"src": "10.0.0.3", "dst": "9.9.9.9", "rows": 30}]
    assert summary["report"]["rows"] == 300

    mlflow.set_tracking_uri(mlflow_uri)
    runs = mlflow.search_runs(experiment_names=["test-ingest-flow"], output_format="pandas")
    parent = runs[runs["run_id"] == summary["parent_run_id"]]
    assert len(parent) == 1 and parent["metrics.items_ok"].iloc[0] == 2
    children = runs[runs["tags.mlflow.parentRunId"] == summary["parent_run_id"]]
    assert len(children) == 2
    df = data["df"]
    for _, child in children.iterrows():
        src, dst = child["params.src"], child["params.dst"]
        expect = df[(df.src == src) & (df.dst == dst)]["rtt_ms"]
        assert int(child["params.rows"]) == len(expect)
        assert child["metrics.mean"] == pytest.approx(expect.mean())
        assert child["metrics.std"] == pytest.approx(expect.std(ddof=1))
        assert child["metrics.q3"] == pytest.approx(expect.quantile(0.75))
        arts = [a.path for a in mlflow.MlflowClient().list_artifacts(child["run_id"])]
        assert arts == [f"{child['params.pair']}_profile.csv"]


@pytest.mark.usefixtures("prefect_harness")
def test_one_bad_pair_fails_only_its_task(tmp_path):
    from flamenco_core.ingest.pairs import write_pairs
    from flamenco_core.ingest.pipeline import ingest
    from flows.ingest import profile_items_flow
    from tasks import tracking

    _latency_csv(tmp_path / "lat.csv")
    rep = ingest([tmp_path / "lat.csv"], "csv", tmp_path / "out")
    split = write_pairs(rep.data_path, tmp_path / "pairs", 100)
    good, other = split.pairs
    Path(other["path"]).write_bytes(b"PAR1 this is not parquet")  # a corrupted pair file
    neg = pd.read_parquet(good["path"]).assign(rtt_ms=-1.0)
    neg_path = tmp_path / "neg.parquet"
    neg.to_parquet(neg_path)
    items = [good, other, {"pair_id": "negative", "rows": len(neg), "path": str(neg_path)}]
    parent = tracking.start_run("test-failures", "parent")
    outcomes = profile_items_flow(items, str(tmp_path / "prof"), "test-failures", parent, "csv")
    status = {o["item"]: o["status"] for o in outcomes}
    assert status == {good["pair_id"]: "ok", other["pair_id"]: "failed", "negative": "failed"}
    neg_err = next(o["error"] for o in outcomes if o["item"] == "negative")
    assert "negative rtt_ms" in neg_err and str(neg_path) in neg_err


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("runner", ["threads", "processes"])
def test_many_files_fan_out_one_task_per_file_and_merge_like_one_ingest(tmp_path, runner):
    """With fan_out_files, two files or more are read one task per file on the runner, then merged: the
    outputs are those of the sequential ingest, and each file has its own task run."""
    import pyarrow.parquet as pq
    from prefect.client.orchestration import get_client

    import flows.ingest as flow_ingest
    from flamenco_core.ingest.pipeline import ingest

    from conftest import SAMPLES

    files = sorted((SAMPLES / "ripe_atlas").glob("*"))
    sources = [str(f) for f in files + files[:1]]  # the repeat: duplicates across files
    summary = flow_ingest.ingest_flow(sources, "atlas", str(tmp_path / "out"), min_points=1,
                                      experiment="test-ingest-fanout", run_name=f"fan-{runner}", runner=runner, workers=2,
                                      fan_out_files=True)
    seq = ingest(sources, "atlas", tmp_path / "seq")
    assert pq.read_table(tmp_path / "out" / "data.parquet").equals(pq.read_table(tmp_path / "seq" / "data.parquet"))
    assert (tmp_path / "out" / "quarantine.jsonl").read_text() == (tmp_path / "seq" / "quarantine.jsonl").read_text()
    import json

    written = json.loads((tmp_path / "out" / "ingest_report.json").read_text())
    got = {k: v for k, v in written.items() if k not in ("data_path", "quarantine_path")}
    want = {k: v for k, v in seq.to_dict().items() if k not in ("data_path", "quarantine_path")}
    assert got == want and want["dropped"]["duplicate"] > 0
    assert summary["cached"]["ingest"] is False
    assert not [p for p in (tmp_path / "out").iterdir() if "ingest-parts" in p.name]

    async def file_task_runs():
        async with get_client() as client:
            runs = await client.read_task_runs()
            return [r for r in runs if r.name.startswith("ingest-file") and r.state.is_completed()]

    import asyncio

    assert len(asyncio.run(file_task_runs())) >= len(sources)
