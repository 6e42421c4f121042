"""Orchestration for real (issue 6): the dump manifest and watcher (twice; crash and resume), failure
isolation, deterministic MLflow run identity under retries, cache reuse on unchanged input, task-runner
selection (threads, processes, a Dask local cluster) and the LF-combination comparison, all on real
Prefect runs (test harness) and a real MLflow SQLite store."""

from __future__ import annotations

import bz2
import gzip
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from flamenco_core.ingest.manifest import Manifest, atomic_write_text, content_hash, detect_format

# ------------------------------------------------------------------------------------------- fixtures


def _dumps(samples: Path, d: Path) -> dict[str, Path]:
    """A dump folder: warts, gzip scamper JSON, bzip2 Atlas JSON, a corrupt (truncated) gzip dump, junk."""
    d.mkdir(parents=True, exist_ok=True)
    files = {
        "warts": d / "ping_v4.warts",
        "scamper": d / "trace_v4.json.gz",
        "atlas": d / "atlas_ping.jsonl.bz2",
        "corrupt": d / "pantrace_cut.json.gz",
        "junk": d / "notes.txt",
    }
    shutil.copy(samples / "warts" / "dioptra_ping_google_dns_v4_default.warts", files["warts"])
    files["scamper"].write_bytes(gzip.compress((samples / "scamper_json" / "dioptra_trace_google_dns_v4_default.json").read_bytes()))
    files["atlas"].write_bytes(bz2.compress((samples / "ripe_atlas" / "sagan_tests_ping_results.jsonl").read_bytes()))
    whole = gzip.compress((samples / "scamper_json" / "pantrace_trace.json").read_bytes())
    files["corrupt"].write_bytes(whole[: len(whole) // 2])  # the head decompresses, the stream ends early
    files["junk"].write_text("not a measurement\n")
    return files


def _latency_csv(path: Path, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    frames = []
    for (src, dst), n in {("10.0.0.1", "8.8.8.8"): 150, ("10.0.0.2", "1.1.1.1"): 120}.items():
        t0 = pd.Timestamp("2024-01-01", tz="UTC")
        frames.append(pd.DataFrame({
            "timestamp": (t0 + pd.to_timedelta(np.arange(n) * 60, unit="s")).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "src": src, "dst": dst, "rtt_ms": rng.gamma(4.0, 5.0, n).round(3)}))
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)


def _runs(experiment: str) -> pd.DataFrame:
    from tasks import tracking

    return tracking.search_runs(experiment)


# ------------------------------------------------------------------------------------- manifest (pure)


def test_detect_format_by_content(samples, tmp_path):
    files = _dumps(samples, tmp_path / "d")
    assert {k: detect_format(p) for k, p in files.items()} == {
        "warts": "warts", "scamper": "scamper", "atlas": "atlas", "corrupt": "scamper", "junk": None}
    # Content, not the name: a warts file called .json is still warts; gzip-compressed warts too.
    odd = tmp_path / "renamed.json"
    shutil.copy(files["warts"], odd)
    assert detect_format(odd) == "warts"
    (tmp_path / "w.warts.gz").write_bytes(gzip.compress(files["warts"].read_bytes()))
    assert detect_format(tmp_path / "w.warts.gz") == "warts"
    # A JSON array of Atlas results.
    arr = tmp_path / "atlas_array.json"
    lines = (samples / "ripe_atlas" / "sagan_tests_ping_results.jsonl").read_text().splitlines()
    arr.write_text("[" + ",".join(lines[:3]) + "]")
    assert detect_format(arr) == "atlas"


def test_manifest_states_and_atomic_writes(samples, tmp_path):
    files = _dumps(samples, tmp_path / "d")
    m = Manifest.load(tmp_path / "m.json")
    scan = m.scan(tmp_path / "d")
    assert sorted(e.file for e in scan.todo) == sorted(p.name for k, p in files.items() if k != "junk")
    assert dict(scan.skipped) == {"notes.txt": "unknown format (not warts, scamper JSON or RIPE Atlas JSON)"}
    assert all(e.state == "pending" for e in scan.todo)
    # Registered and saved before any work: a crash now loses nothing.
    assert Manifest.load(tmp_path / "m.json").counts() == {"pending": 4, "processing": 0, "done": 0, "failed": 1}

    first, second = scan.todo[0], scan.todo[1]
    m.start(first.sha256)
    m.finish(first.sha256, {"rows": 3})
    m.start(second.sha256)  # ... and the process dies here
    m2 = Manifest.load(tmp_path / "m.json")
    rescan = m2.scan(tmp_path / "d")
    assert rescan.todo[0].file == second.file and rescan.todo[0].state == "processing"  # resumed first
    assert first.file not in [e.file for e in rescan.todo]  # not redone
    assert len(rescan.todo) == 3

    # Same content under another name is the same dump; new content under an old name is a new one.
    shutil.copy(tmp_path / "d" / first.file, tmp_path / "d" / "zz_copy_of_first")
    assert ("zz_copy_of_first", f"same content as {first.file}") in m2.scan(tmp_path / "d").skipped
    # A temporary file from an interrupted write is never picked up.
    (tmp_path / "d" / "x.json.part").write_text("{}")
    assert "x.json.part" not in [n for n, _ in m2.scan(tmp_path / "d").skipped]

    # Atomic replace: no temporary file is left behind, and a corrupt manifest is refused, not reset.
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".m.json")] == []
    atomic_write_text(tmp_path / "bad.json", "{not json")
    with pytest.raises(ValueError, match="unreadable dump manifest"):
        Manifest.load(tmp_path / "bad.json")


def test_content_hash_is_memoized_on_stat(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"a")
    h1 = content_hash(p)
    p.write_bytes(b"bb")  # size changes, so the memo does not apply
    assert content_hash(p) != h1


# ---------------------------------------------------------------------------------------- the watcher


@pytest.fixture
def cli():
    import logging
    import sys

    from prefect.logging.handlers import PrefectConsoleHandler

    from flamenco.cli_ops import compare_cmd, watch_dumps_cmd

    app = typer.Typer()
    app.command("watch-dumps")(watch_dumps_cmd)
    app.command("compare")(compare_cmd)
    yield app
    # Prefect may (re)configure its console handler while CliRunner has swapped sys.stderr; point it back
    # so later log lines (the harness's teardown) do not go to the runner's closed stream.
    for lg in (logging.getLogger(), logging.getLogger("prefect")):
        for h in lg.handlers:
            if isinstance(h, PrefectConsoleHandler) and getattr(h.stream, "closed", False):
                h.stream = sys.stderr
                h.console.file = sys.stderr


@pytest.mark.usefixtures("prefect_harness")
def test_watch_dumps_twice_second_processes_nothing(samples, tmp_path, cli):
    files = _dumps(samples, tmp_path / "dumps")
    out = tmp_path / "out"
    args = ["watch-dumps", str(tmp_path / "dumps"), "--once", "--out", str(out), "--pipeline", "ingest",
            "--min-points", "1", "--experiment", "test-watch"]  # each sample dump has a pair of >= 1 row
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 1, res.output  # the corrupt dump failed: exit 1, after the others ran
    report = json.loads((out / "watch_report.json").read_text())
    assert sorted(report["processed"]) == sorted(files[k].name for k in ("warts", "scamper", "atlas"))
    assert report["skipped"] == ["notes.txt"]
    assert [f["file"] for f in report["failed"]] == [files["corrupt"].name]
    assert "Compressed file ended" in report["failed"][0]["error"]
    assert report["pipeline"] == "ingest" and report["counts"]["done"] == 3
    for k in ("warts", "scamper", "atlas"):
        assert list((out / "dumps").glob(f"{files[k].name.split('.')[0]}-*/data.parquet"))

    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    again = json.loads((out / "watch_report.json").read_text())
    assert again["processed"] == [] and again["failed"] == []
    assert sorted(again["skipped"]) == sorted(p.name for p in files.values())
    assert again["skipped_reasons"][files["corrupt"].name].startswith("failed before:")
    # One MLflow parent run per dump, no more; the corrupt dump's run ended FAILED and says why.
    runs = _runs("test-watch")
    parents = runs[runs["tags.mlflow.runName"].str.startswith("watch-")]
    assert sorted(parents["status"]) == ["FAILED", "FINISHED", "FINISHED", "FINISHED"]
    assert "Compressed file ended" in parents.loc[parents["status"] == "FAILED", "tags.flamenco.error"].iloc[0]


@pytest.mark.usefixtures("prefect_harness")
def test_crash_mid_way_resumes_without_redoing_or_skipping(samples, tmp_path, monkeypatch):
    import flows.ingest as fi
    import flows.watch as fw

    d = tmp_path / "dumps"
    d.mkdir()
    for name in ("sagan_tests_ping_results.jsonl", "ripe_atlas_tools_tests_ping_results.jsonl", "misc_v4750_v5000_ping_results.jsonl"):
        shutil.copy(samples / "ripe_atlas" / name, d / name)
    out = tmp_path / "out"

    class PowerCut(BaseException):
        """Not an Exception: nothing in the pipeline may catch it, as with a killed process."""

    real_finish = fi.finish_parent_run_task
    calls = {"n": 0}

    def finish_then_crash(*args, **kwargs):
        # The second dump has done all its work (ingest, split, per-pair MLflow runs) when the power goes.
        calls["n"] += 1
        if calls["n"] == 2:
            raise PowerCut("mid-way through the second dump")
        return real_finish(*args, **kwargs)

    monkeypatch.setattr(fi, "finish_parent_run_task", finish_then_crash)
    with pytest.raises(PowerCut):
        fw.watch_dumps_flow(str(d), str(out), experiment="test-crash", pipeline="ingest", min_points=5)
    states = {e["file"]: e["state"] for e in json.loads((out / "manifest.json").read_text())["entries"].values()}
    assert sorted(states.values()) == ["done", "pending", "processing"]
    done = next(f for f, s in states.items() if s == "done")
    crashed = next(f for f, s in states.items() if s == "processing")
    pending = next(f for f, s in states.items() if s == "pending")
    runs_before = _runs("test-crash")

    monkeypatch.setattr(fi, "finish_parent_run_task", real_finish)
    report = fw.watch_dumps_flow(str(d), str(out), experiment="test-crash", pipeline="ingest", min_points=5)
    assert report["processed"] == [crashed, pending]  # the interrupted dump first, then the rest
    assert report["resumed"] == [crashed]
    assert report["skipped"] == [done] and report["skipped_reasons"][done] == "already processed"
    assert report["counts"]["done"] == 3

    runs = _runs("test-crash")
    # The interrupted dump's parent and child runs were found again, not duplicated: run identity.
    parent = runs[runs["tags.mlflow.runName"].str.contains(crashed.split(".")[0])]
    assert len(parent) == 1 and parent["tags.flamenco.attempts"].iloc[0] == "2" and parent["status"].iloc[0] == "FINISHED"
    kids_before = runs_before[runs_before["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]]
    kids = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"].iloc[0]]
    assert len(kids) == len(kids_before) > 0 and set(kids["run_id"]) == set(kids_before["run_id"])
    # ... and its preprocessing came from the cache.
    entry = next(e for e in json.loads((out / "manifest.json").read_text())["entries"].values() if e["file"] == crashed)
    assert entry["attempts"] == 2 and entry["state"] == "done"
    assert runs["tags.mlflow.runName"].str.startswith("watch-").sum() == 3


# -------------------------------------------------------------------------------------- run identity


def test_start_run_is_idempotent_by_key(mlflow_uri):
    from mlflow import MlflowClient

    from tasks import tracking

    key = tracking.run_key("t-flow", {"a.csv": "0" * 64}, {"x": 1})
    assert key == tracking.run_key("t-flow", {"renamed.csv": "0" * 64}, {"x": 1})  # content, not names
    assert key != tracking.run_key("t-flow", {"a.csv": "1" * 64}, {"x": 1})
    r1 = tracking.start_run("test-identity", "p", key=key, params={"x": 1})
    r2 = tracking.start_run("test-identity", "p", key=key, params={"x": 2})  # a rerun whose param changed
    assert r1 == r2
    run = MlflowClient(mlflow_uri).get_run(r1)
    assert run.data.params["x"] == "1" and run.data.tags["flamenco.param_changed.x"] == "2"
    assert run.data.tags["flamenco.attempts"] == "2" and run.info.status == "RUNNING"
    # Default identity (no key): name, parent, params and tags.
    c1 = tracking.start_run("test-identity", "child", parent_run_id=r1, params={"pair": "a"})
    assert tracking.start_run("test-identity", "child", parent_run_id=r1, params={"pair": "a"}) == c1
    assert tracking.start_run("test-identity", "child", parent_run_id=r1, params={"pair": "b"}) != c1
    # A racing worker that created the same key first wins; ours is the one kept by everybody.
    c = MlflowClient(mlflow_uri)
    exp = c.get_experiment_by_name("test-identity").experiment_id
    other = c.create_run(exp, tags={tracking.RUN_KEY_TAG: "race", "mlflow.runName": "r"}).info.run_id
    assert tracking.start_run("test-identity", "r", key="race") == other
    assert len(tracking.find_runs("test-identity", "race")) == 1


_attempts = {"n": 0}


def _flaky_logging_task_fn(experiment: str) -> str:
    from tasks import tracking

    run_id = tracking.start_run(experiment, "flaky", params={"item": "x"}, tags=tracking.standard_tags(pipeline="test"))
    _attempts["n"] += 1
    if _attempts["n"] == 1:
        raise OSError("transient: disk hiccup after the run was created")
    tracking.end_run(run_id)
    return run_id


@pytest.mark.usefixtures("prefect_harness")
def test_task_retries_never_duplicate_runs():
    from prefect import flow, task

    from tasks.common import transient as _transient

    flaky = task(_flaky_logging_task_fn, name="flaky", retries=2, retry_delay_seconds=0, retry_condition_fn=_transient)

    @flow
    def f() -> str:
        return flaky("test-retries")

    _attempts["n"] = 0
    run_id = f()
    assert _attempts["n"] == 2
    runs = _runs("test-retries")
    assert list(runs["run_id"]) == [run_id]
    assert runs["tags.flamenco.attempts"].iloc[0] == "2" and runs["status"].iloc[0] == "FINISHED"
    assert runs["tags.flamenco.pipeline"].iloc[0] == "test"


# ---------------------------------------------------------------------------------------------- cache


@pytest.mark.usefixtures("prefect_harness")
def test_rerun_on_unchanged_input_reuses_preprocessing(tmp_path):
    from prefect import flow

    from flows.ingest import ingest_flow
    from tasks.ingest import ingest_task

    src = tmp_path / "lat.csv"
    _latency_csv(src)
    out = str(tmp_path / "out")
    first = ingest_flow([str(src)], "csv", out, min_points=100, experiment="test-cache")
    second = ingest_flow([str(src)], "csv", out, min_points=100, experiment="test-cache")
    assert first["cached"] == {"ingest": False, "split": False}
    assert second["cached"] == {"ingest": True, "split": True}
    assert second["parent_run_id"] == first["parent_run_id"]
    assert len(_runs("test-cache")) == 3  # one parent, two pairs: the rerun logged into the same runs

    # The Prefect state itself says Cached.
    @flow
    def once() -> str:
        return ingest_task([str(src)], "csv", out, None, return_state=True).name

    assert once() == "Cached"

    # Deleted outputs are recomputed, not handed back as dangling paths.
    for p in (tmp_path / "out" / "pairs").glob("*.parquet"):
        p.unlink()
    third = ingest_flow([str(src)], "csv", out, min_points=100, experiment="test-cache")
    assert third["cached"] == {"ingest": True, "split": False}
    assert len(list((tmp_path / "out" / "pairs").glob("*.parquet"))) == 2

    # New content under the same path is new input.
    _latency_csv(src, seed=8)
    fourth = ingest_flow([str(src)], "csv", out, min_points=100, experiment="test-cache")
    assert fourth["cached"] == {"ingest": False, "split": False}
    assert fourth["parent_run_id"] != first["parent_run_id"]


# -------------------------------------------------------------------------------------------- runners


def test_runner_resolution(tmp_path, monkeypatch):
    from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from tasks.runners import make_task_runner, resolve

    monkeypatch.delenv("FLAMENCO_RUNNER", raising=False)
    assert resolve() == {"kind": "threads", "workers": None, "address": None}
    cfg = tmp_path / "c.yaml"
    cfg.write_text("runner: {kind: dask, workers: 3, address: 'tcp://127.0.0.1:8786'}\n")
    assert resolve(config=cfg) == {"kind": "dask", "workers": 3, "address": "tcp://127.0.0.1:8786"}
    assert resolve("processes", config={"runner": "dask"})["kind"] == "processes"  # the argument wins
    monkeypatch.setenv("FLAMENCO_RUNNER", "processes")
    assert resolve()["kind"] == "processes" and resolve(config={"runner": "threads"})["kind"] == "threads"
    with pytest.raises(ValueError, match="unknown runner"):
        resolve("gpu")
    with pytest.raises(ValueError, match="needs the dask runner"):
        resolve("threads", address="tcp://127.0.0.1:1")
    assert isinstance(make_task_runner("threads", 2), ThreadPoolTaskRunner)
    assert isinstance(make_task_runner("processes", 2), ProcessPoolTaskRunner)
    assert isinstance(make_task_runner("dask", 2), DaskTaskRunner)
    assert make_task_runner("dask", address="tcp://127.0.0.1:8786").address == "tcp://127.0.0.1:8786"


def _square_where(x: int) -> tuple[int, int]:
    return os.getpid(), x * x


@pytest.mark.usefixtures("prefect_harness")
@pytest.mark.parametrize("kind", ["threads", "processes", "dask"])
def test_runner_runs_a_flow(kind):
    from prefect import flow, task

    from tasks.runners import run_with_runner

    sq = task(_square_where, name="square")

    @flow
    def tiny(n: int) -> list:
        return [f.result() for f in sq.map(range(n))]

    out = run_with_runner(tiny, 6, runner=kind, workers=2)
    assert [v for _, v in out] == [x * x for x in range(6)]
    pids = {p for p, _ in out}
    if kind == "threads":
        assert pids == {os.getpid()}
    else:  # real parallelism: other processes did the work
        assert os.getpid() not in pids


_WORKER_API_SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
from prefect import flow, task
from tasks.runners import run_with_runner

def where(x):
    from prefect.settings import PREFECT_API_URL
    return os.getpid(), PREFECT_API_URL.value()

@flow
def tiny(n):
    return [f.result() for f in task(where).map(range(n))]

if __name__ == "__main__":
    import json
    print("RESULT", json.dumps(run_with_runner(tiny, 4, runner="dask", workers=2)))
"""


def test_worker_processes_report_to_the_parents_local_server(tmp_path):
    """Local mode, no harness: without a shared API URL each Dask worker would start a Prefect server of its
    own (20 s of CPU each, then a share of a core); the workers must use the parent's."""
    import json
    import subprocess
    import sys

    script = tmp_path / "worker_api.py"
    script.write_text(_WORKER_API_SCRIPT.format(root=str(Path(__file__).resolve().parents[2])))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180", PREFECT_LOGGING_LEVEL="WARNING")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    urls = {u for _, u in out}
    assert len(urls) == 1 and next(iter(urls)).startswith("http://127.0.0.1:"), urls
    assert os.getpid() not in {p for p, _ in out}


# -------------------------------------------------------------------------------------------- compare


PACK_A = {"pack": "ntp-a", "group": "A", "classes": ["benign", "attack"], "universal_features": ["src_port"],
          "lfs": [{"name": "low_port_attack", "label": "attack", "when": [{"feature": "src_port", "op": "<=", "value": 6600}]},
                  {"name": "small_benign", "label": "benign", "when": [{"feature": "bytes", "op": "<=", "value": "0.5*p75"}]}]}
PACK_B = {"pack": "ntp-b", "group": "B", "classes": ["benign", "attack"], "universal_features": ["src_port"],
          "lfs": [{"name": "big_attack", "label": "attack", "when": [{"feature": "bytes", "op": ">=", "value": "q3"}]},
                  {"name": "high_port_benign", "label": "benign", "when": [{"feature": "src_port", "op": ">=", "value": 9000}]}]}


def _flows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    return pd.DataFrame({
        "src_port": np.where(y, rng.integers(1, 6000, n), rng.integers(1024, 65535, n)),
        "bytes": np.where(y, rng.lognormal(7.5, 0.6, n), rng.lognormal(5.5, 0.8, n)),
        "label": np.where(y, "attack", "benign")})


@pytest.mark.usefixtures("prefect_harness")
def test_collaboration_flow_and_compare(tmp_path, cli):
    import yaml

    from flows.collaboration import collaboration_flow
    from tasks import tracking

    packs = []
    for spec in (PACK_A, PACK_B):
        p = tmp_path / f"{spec['pack']}.yaml"
        p.write_text(yaml.safe_dump(spec))
        packs.append(str(p))
    _flows(800, 1).to_parquet(tmp_path / "local.parquet")
    _flows(300, 2).to_csv(tmp_path / "labeled.csv", index=False)
    summary = collaboration_flow(packs, str(tmp_path / "local.parquet"), str(tmp_path / "collab"),
                                 labeled=str(tmp_path / "labeled.csv"), experiment="test-compare", dataset="ntp",
                                 label_model="majority")
    assert [r["name"] for r in summary["comparison"]] == ["ntp-a", "ntp-b", "ntp-a+ntp-b"]
    assert (tmp_path / "collab" / "report.md").is_file()
    parent = _runs("test-compare").set_index("run_id").loc[summary["parent_run_id"]]
    assert parent["status"] == "FINISHED" and parent["tags.flamenco.outcome"] == "ok"
    assert parent["metrics.packs"] == 2 and parent["metrics.rows"] == 800

    # a pack that does not fit the data fails the flow, and its parent run says why
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**PACK_A, "pack": "ntp-bad", "lfs": [
        {"name": "x", "label": "attack", "when": [{"feature": "no_such_column", "op": ">=", "value": "p75"}]}]}))
    with pytest.raises(Exception, match="no_such_column"):
        collaboration_flow([str(bad)], str(tmp_path / "local.parquet"), str(tmp_path / "collab_bad"),
                           experiment="test-compare-bad", dataset="ntp")
    failed = _runs("test-compare-bad")
    assert list(failed["status"]) == ["FAILED"] and "no_such_column" in failed["tags.flamenco.error"].iloc[0]

    # Classifier runs of two datasets, two SD pairs for one combination: the table averages them.
    for ds, comb, f1s in (("ark", "port", [0.8, 0.6]), ("ark", "port+size", [0.9]), ("cic", "port", [0.5])):
        for i, f1 in enumerate(f1s):
            rid = tracking.start_run("test-compare", f"{comb}-{i}", metrics={"cls_f1": f1, "lf_f1": f1 / 2},
                                     tags=tracking.standard_tags(pipeline="latency", dataset=ds, combination=comb, group="G"))
            tracking.end_run(rid)

    out = tmp_path / "cmp"
    res = CliRunner().invoke(cli, ["compare", "--experiment", "test-compare", "--out", str(out)])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "compare.csv")
    ark = table[table["dataset"] == "ark"].reset_index(drop=True)
    assert list(ark["combination"]) == ["port+size", "port"] and list(ark["rank"]) == [1, 2]
    assert ark.loc[1, "runs"] == 2 and ark.loc[1, "cls_f1"] == pytest.approx(0.7)
    assert ark.loc[1, "lf_f1"] == pytest.approx(0.35)
    assert "port+size" in (out / "compare.md").read_text() and (out / "compare.png").stat().st_size > 0
    assert len(pd.read_csv(out / "compare_runs.csv")) == 3 + 4  # collaboration children + classifier runs

    res = CliRunner().invoke(cli, ["compare", "--experiment", "test-compare", "--metric", "f1_label_model",
                                   "--dataset", "ntp", "--out", str(out / "collab"), "--log"])
    assert res.exit_code == 0, res.output
    collab = pd.read_csv(out / "collab" / "compare.csv")
    assert set(collab["combination"]) == {"ntp-a", "ntp-b", "ntp-a+ntp-b"} and collab["f1_label_model"].notna().all()
    assert set(collab["group"]) == {"A", "B", "A+B"}
    logged = _runs("test-compare").query("`tags.flamenco.pipeline` == 'compare'")
    assert len(logged) == 1

    res = CliRunner().invoke(cli, ["compare", "--experiment", "test-compare", "--metric", "nope"])
    assert res.exit_code == 2 and "cls_f1" in res.output
    res = CliRunner().invoke(cli, ["compare", "--experiment", "no-such-experiment"])
    assert res.exit_code == 2 and "no experiment" in res.output


def test_local_dask_workers_run_without_the_statistical_profiler():
    import dask
    from distributed import Client, LocalCluster

    from tasks.runners import LOCAL_WORKER_CONFIG, make_task_runner

    runner = make_task_runner("dask", workers=1)
    assert runner.cluster_kwargs["config"] is LOCAL_WORKER_CONFIG
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      config=LOCAL_WORKER_CONFIG) as cluster, Client(cluster, set_as_default=False) as client:
        states = client.run(lambda: dask.config.get("distributed.worker.profile.enabled"))
    assert list(states.values()) == [False]
