"""The outcome policy (README, "Exit codes and outcomes"), measured on the real command line: exit code,
one line on stderr, no traceback; and what a killed or failing run leaves on disk."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pyarrow.parquet as pq
import pytest

ROOT = Path(__file__).resolve().parents[2]
FLAMENCO = str(Path(sys.executable).with_name("flamenco"))


def flamenco(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    full = {**os.environ, "COLUMNS": "200", **(env or {})}
    full.pop("FLAMENCO_DEBUG", None) if not (env or {}).get("FLAMENCO_DEBUG") else None
    return subprocess.run([FLAMENCO, *map(str, args)], capture_output=True, text=True, env=full, timeout=timeout)


def one_line(res: subprocess.CompletedProcess) -> str:
    """The single stderr line of a failed command (asserting that it is one line, with no traceback)."""
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert lines[0].startswith("error: ")
    return lines[0]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ------------------------------------------------------------------------------------------- ingest


def test_ingest_of_intermediate_hops_only_exits_1_and_suggests_all_hops(tmp_path, samples):
    src = samples / "scamper_json" / "pantrace_trace.json"
    res = flamenco("ingest", src, "--format", "scamper", "--out", tmp_path / "o")
    assert res.returncode == 1
    line = one_line(res)
    assert "pantrace_trace.json" in line and "0 rows from 2931 records" in line and "try --all-hops" in line
    # the report still tells the truth about the input
    assert json.loads((tmp_path / "o" / "ingest_report.json").read_text())["dropped"]["intermediate_hop"] == 2929
    ok = flamenco("ingest", src, "--format", "scamper", "--out", tmp_path / "o", "--all-hops")
    assert ok.returncode == 0, ok.stderr


def test_ingest_with_the_wrong_format_exits_1_and_names_the_format_the_content_looks_like(tmp_path, samples):
    res = flamenco("ingest", samples / "cicddos2019" / "DrDoS_NTP.csv", "--format", "atlas", "--out", tmp_path)
    assert res.returncode == 1
    line = one_line(res)
    assert "DrDoS_NTP.csv" in line and "all quarantined" in line and "is --format atlas right?" in line
    assert "looks like cicflowmeter" in line


def test_ingest_of_an_empty_file_exits_1_with_empty_input(tmp_path):
    src = tmp_path / "empty.jsonl"
    src.write_text("")
    res = flamenco("ingest", src, "--format", "atlas", "--out", tmp_path / "o")
    assert res.returncode == 1
    assert "empty.jsonl: empty input" in one_line(res)


def test_header_only_cicflowmeter_writes_an_empty_table_with_the_canonical_columns(tmp_path, samples):
    header = (samples / "cicddos2019" / "DrDoS_NTP.csv").read_text().splitlines()[0]
    src = tmp_path / "header_only.csv"
    src.write_text(header + "\n")
    res = flamenco("ingest", src, "--format", "cicflowmeter", "--out", tmp_path / "o")
    assert res.returncode == 1
    assert "header_only.csv: empty input" in one_line(res)
    report = json.loads((tmp_path / "o" / "ingest_report.json").read_text())
    assert report["data_path"] == str(tmp_path / "o" / "data.parquet") and report["rows"] == 0
    table = pq.read_table(tmp_path / "o" / "data.parquet")
    assert table.num_rows == 0
    names = table.schema.names
    assert names[:6] == ["timestamp", "src", "dst", "src_port", "dst_port", "protocol"]
    assert "flow_iat_min" in names and "average_packet_size" in names and names[-1] == "label"
    assert str(table.schema.field("flow_iat_min").type) == "double"
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"


def test_ingest_into_an_out_that_is_a_file_is_a_usage_error(tmp_path, samples):
    target = tmp_path / "afile"
    target.write_text("mine")
    res = flamenco("ingest", samples / "cicddos2019" / "DrDoS_NTP.csv", "--format", "cicflowmeter", "--out", target)
    assert res.returncode == 2
    assert "afile is a file" in one_line(res)
    assert target.read_text() == "mine"


def test_a_second_ingest_into_a_folder_in_use_exits_3_and_names_the_holder(tmp_path, samples):
    out = tmp_path / "o"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from flamenco_core.outputs import OutputLock
        with OutputLock({str(out)!r}):
            print("locked", flush=True)
            time.sleep(120)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = flamenco("ingest", samples / "cicddos2019" / "DrDoS_NTP.csv", "--format", "cicflowmeter", "--out", out)
        assert res.returncode == 3
        line = one_line(res)
        assert "in use" in line and str(out) in line and str(holder.pid) in line
        assert not (out / "data.parquet").exists()
    finally:
        holder.kill()
        holder.wait()


def test_debug_shows_the_traceback(tmp_path):
    src = tmp_path / "empty.jsonl"
    src.write_text("")
    for args, env in (([ "--debug", "ingest"], None), (["ingest"], {"FLAMENCO_DEBUG": "1"})):
        res = flamenco(*args, src, "--format", "atlas", "--out", tmp_path / "o", env=env)
        assert res.returncode == 1
        assert "Traceback" in res.stderr and "NoRows" in res.stderr
    res = flamenco("ingest", src, "--format", "atlas", "--out", tmp_path / "o", "--debug")  # anywhere on the line
    assert "Traceback" in res.stderr


def test_a_failing_ingest_leaves_no_scratch_folder_and_the_previous_outputs(tmp_path, samples):
    out = tmp_path / "o"
    assert flamenco("ingest", samples / "cicddos2019" / "DrDoS_NTP.csv", "--format", "cicflowmeter",
                    "--out", out).returncode == 0
    before = {n: (out / n).read_bytes() for n in ("data.parquet", "quarantine.jsonl", "ingest_report.json")}
    lat = tmp_path / "latency.csv"
    lat.write_text("timestamp,src,dst,rtt_ms\n2024-01-01T00:00:00Z,a,b,1.5\n")
    flows = tmp_path / "flows.csv"
    flows.write_text("timestamp,src,dst,src_port,dst_port,protocol,bytes\n2024-01-01T00:00:00Z,a,b,1,2,6,10\n")
    res = flamenco("ingest", lat, flows, "--format", "csv", "--out", out)
    assert res.returncode == 1 and "cannot be mixed" in one_line(res)
    assert _names(out) == [".flamenco.lock", "data.parquet", "ingest_report.json", "quarantine.jsonl"]
    assert {n: (out / n).read_bytes() for n in before} == before


_KILLER = """
import os, signal, sys
import pyarrow.parquet as pq
from flamenco_core import outputs
from flamenco_core.ingest import pipeline

point = sys.argv[1]
if point == "parts":  # while the canonical table is being parsed into the scratch folder
    real_write = pq.ParquetWriter.write_table
    def write_table(self, *a, **k):
        real_write(self, *a, **k)
        os.kill(os.getpid(), signal.SIGKILL)
    pq.ParquetWriter.write_table = write_table
elif point == "fsync":  # the new files are complete, and the commit is about to start
    def fsync_file(path):
        os.kill(os.getpid(), signal.SIGKILL)
    outputs._fsync_file = fsync_file
else:  # at the n-th rename of the commit (the old report is already removed)
    n = int(point)
    real_replace = os.replace
    calls = []
    def replace(a, b):
        calls.append(b)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(a, b)
    outputs.os.replace = replace
pipeline.ingest([sys.argv[2]], "cicflowmeter", sys.argv[3])
"""


@pytest.mark.parametrize("point", ["parts", "fsync", "1", "2", "3"])
def test_a_killed_reingest_leaves_the_previous_outputs_or_no_report(tmp_path, samples, point):
    out = tmp_path / "o"
    assert flamenco("ingest", samples / "cicddos2019" / "DrDoS_NTP.csv", "--format", "cicflowmeter",
                    "--out", out).returncode == 0
    names = ("data.parquet", "quarantine.jsonl", "ingest_report.json")
    before = {n: (out / n).read_bytes() for n in names}
    proc = subprocess.run([sys.executable, "-c", _KILLER, point, samples / "cicddos2019" / "DrDoS_DNS.csv", out],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    visible = [n for n in _names(out) if not n.startswith(".")]
    if point in ("parts", "fsync"):
        # killed before the commit: every previous output intact, byte for byte
        assert {n: (out / n).read_bytes() for n in names} == before
    else:
        # killed mid-commit: the old report is gone first, so no report describes files it did not write
        assert "ingest_report.json" not in visible
        assert ((out / "data.parquet").read_bytes() == before["data.parquet"]) == (point == "1")
    # never a file that looks complete but is not: every visible Parquet file reads back whole
    for n in visible:
        if n.endswith(".parquet"):
            pq.read_table(out / n)
    # the next ingest sweeps the dead run's temporaries and completes
    assert flamenco("ingest", samples / "cicddos2019" / "DrDoS_DNS.csv", "--format", "cicflowmeter",
                    "--out", out).returncode == 0
    assert _names(out) == [".flamenco.lock", *sorted(names)]


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if not shutil.which("mount") or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def test_disk_full_is_one_line_and_keeps_the_previous_outputs(tmp_path, samples):
    mnt = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    if not _mount_tmpfs(mnt, "400k"):
        pytest.skip("mounting a small tmpfs needs root (mount -t tmpfs); the disk-full case is not testable here")
    try:
        out = mnt / "o"
        assert flamenco("ingest", samples / "cicddos2019" / "DrDoS_NTP.csv", "--format", "cicflowmeter",
                        "--out", out).returncode == 0
        before = {n: (out / n).read_bytes() for n in ("data.parquet", "quarantine.jsonl", "ingest_report.json")}
        big = tmp_path / "big.csv"
        big.write_text("\n".join((samples / "cicddos2019" / f).read_text() for f in sorted(
            os.listdir(samples / "cicddos2019"))))
        res = flamenco("ingest", big, "--format", "cicflowmeter", "--out", out)
        assert res.returncode == 1
        line = one_line(res)
        assert "No space left on device" in line and str(out) in line
        assert {n: (out / n).read_bytes() for n in before} == before
        assert _names(out) == [".flamenco.lock", "data.parquet", "ingest_report.json", "quarantine.jsonl"]
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def test_split_pairs_with_no_pair_large_enough_exits_1(tmp_path, samples):
    res = flamenco("ingest", samples / "ripe_atlas" / "sagan_tests_ping_results.jsonl", "--format", "atlas",
                   "--out", tmp_path, "--split-pairs", "100000")
    assert res.returncode == 1
    line = one_line(res)
    assert "no SD pair has 100000 rows" in line and "lower --split-pairs" in line


# -------------------------------------------------------------------------------------- run flows / flows

FOREST = {"model": {"kind": "random_forest", "random_forest": {
    "n_iter": 1, "n_splits": 2, "param_distributions": {"n_estimators": [10], "max_depth": [None], "bootstrap": [True]}}},
    "importance": {"n_estimators": 10}, "plots": False, "tree": {"png": False}}


def _runs(experiment: str):
    import mlflow

    from tasks import tracking

    mlflow.set_tracking_uri(tracking.tracking_uri())
    return mlflow.search_runs(experiment_names=[experiment], output_format="pandas")


def test_run_flows_into_an_out_that_is_a_file_is_a_usage_error(tmp_path, samples):
    target = tmp_path / "afile"
    target.write_text("mine")
    res = flamenco("run", "flows", "--input", samples / "cicddos2019" / "DrDoS_NTP.csv", "--format", "cicflowmeter",
                   "--lfs", ROOT / "conf" / "lf_packs" / "cic_ntp.yaml", "--out", target)
    assert res.returncode == 2
    assert "afile is a file" in one_line(res)


@pytest.mark.usefixtures("prefect_harness")
def test_run_flows_with_a_typo_in_a_pack_fails_once_before_the_fan_out(tmp_path, samples):
    import yaml
    from typer.testing import CliRunner

    from flamenco.cli import app

    typo = tmp_path / "typo.yaml"
    typo.write_text((ROOT / "conf" / "lf_packs" / "cic_ntp.yaml").read_text()
                    .replace("feature: flow_iat_min,", "feature: flow_iat_mn,"))
    (tmp_path / "fast.yaml").write_text(yaml.safe_dump(FOREST))
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["run", "flows", "--input", str(samples / "cicddos2019" / "DrDoS_NTP.csv"),
                                   "--format", "cicflowmeter", "--lfs", str(typo), "--out", str(out),
                                   "--config", str(tmp_path / "fast.yaml")])
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output
    assert "'flow_iat_mn'" in lines[0] and "did you mean flow_iat_min" in lines[0] and str(typo) in lines[0]
    assert not (out / "combinations").exists()  # no combination ran
    runs = _runs("flamenco-flow-records")
    parent = runs[runs["params.packs"].fillna("").str.contains("typo.yaml")]
    assert len(parent) == 1 and parent["status"].iloc[0] == "FAILED"
    assert "did you mean flow_iat_min" in parent["tags.flamenco.error"].iloc[0]
    children = runs.get("tags.mlflow.parentRunId")
    assert children is None or not (children == parent["run_id"].iloc[0]).any()  # no child run either


@pytest.mark.usefixtures("prefect_harness")
def test_flow_records_parent_run_ends_failed_with_the_reason_when_the_flow_raises(tmp_path, samples, monkeypatch):
    import tasks.runners
    from flows.flow_records import flow_records_flow

    def broken_fan_out(*a, **k):
        raise RuntimeError("scheduler unreachable")

    monkeypatch.setattr(tasks.runners, "fan_out", broken_fan_out)
    with pytest.raises(RuntimeError, match="scheduler unreachable"):
        flow_records_flow(str(samples / "cicddos2019" / "DrDoS_NTP.csv"), "cicflowmeter",
                          [str(ROOT / "conf" / "lf_packs" / "cic_ntp.yaml")], str(tmp_path / "out"),
                          config=FOREST, experiment="test-outcomes-flows", run_name="raises")
    parent = _runs("test-outcomes-flows")
    parent = parent[parent["tags.mlflow.runName"] == "raises"]
    assert parent["status"].tolist() == ["FAILED"]
    assert parent["tags.flamenco.error"].iloc[0] == "RuntimeError: scheduler unreachable"


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_flow_parent_run_always_ends_with_the_reason(tmp_path, samples, monkeypatch):
    import tasks.runners
    from flamenco_core.ingest.pipeline import NoRows
    from flows.ingest import ingest_flow

    exp = "test-outcomes-ingest"
    with pytest.raises(NoRows, match="try --all-hops"):
        ingest_flow([str(samples / "scamper_json" / "pantrace_trace.json")], "scamper", str(tmp_path / "o1"),
                    experiment=exp, run_name="no-rows")
    # a flow that raises after the ingest (the fan-out breaks) fails its parent run too ...
    real = tasks.runners.fan_out
    monkeypatch.setattr(tasks.runners, "fan_out", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("worker lost")))
    src = str(samples / "ripe_atlas" / "sagan_tests_ping_results.jsonl")
    with pytest.raises(RuntimeError, match="worker lost"):
        ingest_flow([src], "atlas", str(tmp_path / "o2"), min_points=1, experiment=exp, run_name="resumed")
    runs = _runs(exp).set_index("tags.mlflow.runName")
    assert runs.loc["no-rows", "status"] == "FAILED" and "try --all-hops" in runs.loc["no-rows", "tags.flamenco.error"]
    assert runs.loc["resumed", "status"] == "FAILED" and runs.loc["resumed", "tags.flamenco.error"] == "RuntimeError: worker lost"
    # ... and the rerun that succeeds reuses that run: FINISHED, without the earlier attempt's error
    monkeypatch.setattr(tasks.runners, "fan_out", real)
    summary = ingest_flow([src], "atlas", str(tmp_path / "o2"), min_points=1, experiment=exp, run_name="resumed")
    run = _runs(exp).set_index("tags.mlflow.runName").loc["resumed"]
    assert run["run_id"] == summary["parent_run_id"] and run["status"] == "FINISHED"
    assert run["tags.flamenco.outcome"] == "ok" and not isinstance(run.get("tags.flamenco.error"), str)


# ------------------------------------------------------------------------------------ temporary server


def _wait(predicate, timeout: float, step: float = 0.2) -> bool:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead: it only waits for its parent to read its status
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().split(")")[-1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, ValueError, IndexError):
                pass  # the process ended while /proc was read: it is nobody's child any more
    return out


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="the watchdog reads /proc (Linux)")
def test_children_of_a_bound_process_end_when_it_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import subprocess, sys, time
        from flamenco.watchdog import bind_to_this_process
        bind_to_this_process()
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
        print(child.pid, flush=True)
        time.sleep(300)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    assert _alive(child)
    parent.kill()  # SIGKILL: no atexit, no finally
    parent.wait()
    assert _wait(lambda: not _alive(child), 15), "the child outlived its killed parent"


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="the watchdog reads /proc (Linux)")
def test_the_temporary_prefect_server_ends_with_a_killed_cli(tmp_path, samples):
    env = {**os.environ, "FLAMENCO_HOME": str(tmp_path / "home")}
    for k in ("PREFECT_API_URL", "PREFECT_HOME", "MLFLOW_TRACKING_URI", "FLAMENCO_OWNER"):
        env.pop(k, None)
    cli = subprocess.Popen([FLAMENCO, "run", "flows", "--input", str(samples / "cicddos2019" / "DrDoS_NTP.csv"),
                            "--format", "cicflowmeter", "--lfs", str(ROOT / "conf" / "lf_packs" / "cic_ntp.yaml"),
                            "--out", str(tmp_path / "out")], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        servers: list[int] = []

        def server_started() -> bool:
            servers[:] = [p for p in _children(cli.pid)
                          if b"uvicorn" in Path(f"/proc/{p}/cmdline").read_bytes()] if _alive(cli.pid) else []
            return bool(servers) or cli.poll() is not None

        assert _wait(server_started, 120, 0.5) and servers, "the CLI started no temporary server"
        cli.kill()
        cli.wait()
        assert _wait(lambda: not any(_alive(p) for p in servers), 20), "the temporary server outlived the CLI"
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


@pytest.mark.usefixtures("prefect_harness")
def test_watch_dumps_once_while_another_watcher_runs_exits_3(tmp_path):
    from typer.testing import CliRunner

    from flamenco.cli import app

    (tmp_path / "dumps").mkdir()
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from flamenco_core.ingest.manifest import Manifest
        with Manifest.load({str(out / "manifest.json")!r}).lock():
            print("locked", flush=True)
            time.sleep(120)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        res = CliRunner().invoke(app, ["watch-dumps", str(tmp_path / "dumps"), "--once", "--out", str(out)])
        assert res.exit_code == 3, res.output
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1 and "in use by another watcher" in lines[0] and lines[0].startswith("error: ")
    finally:
        holder.kill()
        holder.wait()
