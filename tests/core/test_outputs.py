"""Atomic, locked outputs (flamenco_core.outputs): real files, real subprocesses, real SIGKILL."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flamenco_core import outputs
from flamenco_core.errors import EXIT_IN_USE, FlamencoError
from flamenco_core.outputs import (
    AtomicOutputs,
    OutputInUse,
    OutputLock,
    atomic_path,
    atomic_write_bytes,
    atomic_write_parquet,
    atomic_write_text,
    is_temporary,
    sweep_temporaries,
)

ROOT = Path(__file__).resolve().parents[2]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _run(code: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def test_atomic_writers_replace_and_leave_no_temporary(tmp_path):
    p = tmp_path / "sub" / "report.json"
    atomic_write_text(p, "old")
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    atomic_write_parquet(pd.DataFrame({"a": [1, 2]}), tmp_path / "df.parquet", index=False)
    atomic_write_parquet(pa.table({"a": [3]}), tmp_path / "t.parquet")
    assert pq.read_table(tmp_path / "df.parquet").column("a").to_pylist() == [1, 2]
    assert pq.read_table(tmp_path / "t.parquet").column("a").to_pylist() == [3]
    assert _names(tmp_path) == ["b.bin", "df.parquet", "sub", "t.parquet"]
    assert _names(tmp_path / "sub") == ["report.json"]


def test_atomic_path_names_the_temporary_beside_the_target_and_removes_it_on_error(tmp_path):
    target = tmp_path / "data.parquet"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".data.parquet.tmp-")
            assert is_temporary(tmp.name) and f"-{os.getpid()}-" in tmp.name
            tmp.write_text("half")
            raise RuntimeError("disk full, say")
    assert target.read_text() == "previous"
    assert _names(tmp_path) == ["data.parquet"]


def test_atomic_path_refuses_a_result_that_was_never_written(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "x.json"):
            pass
    assert _names(tmp_path) == []


def test_atomic_outputs_commit_the_report_last_and_remove_the_old_report_first(tmp_path, monkeypatch):
    for name, text in (("data.parquet", "old data"), ("quarantine.jsonl", "old q"), ("report.json", "old report")):
        (tmp_path / name).write_text(text)
    with AtomicOutputs(tmp_path, report="report.json") as outs:
        outs.path("report.json").write_text("new report")  # asked for first, still renamed last
        outs.path("data.parquet").write_text("new data")
        outs.path("quarantine.jsonl").write_text("new q")
    assert [(tmp_path / n).read_text() for n in ("data.parquet", "quarantine.jsonl", "report.json")] == \
        ["new data", "new q", "new report"]
    assert _names(tmp_path) == ["data.parquet", "quarantine.jsonl", "report.json"]

    # A failure between two renames: the first file is new, and no report claims the set is complete.
    real_replace = os.replace
    calls = []

    def failing_replace(a, b):
        calls.append(Path(b).name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_replace(a, b)

    monkeypatch.setattr(outputs.os, "replace", failing_replace)
    with pytest.raises(OSError):
        with AtomicOutputs(tmp_path, report="report.json") as outs:
            for n in ("data.parquet", "quarantine.jsonl", "report.json"):
                outs.path(n).write_text("newer " + n)
    assert calls == ["data.parquet", "quarantine.jsonl"]
    assert not (tmp_path / "report.json").exists()
    assert _names(tmp_path) == ["data.parquet", "quarantine.jsonl"]  # temporaries removed


def test_a_writer_killed_mid_write_leaves_the_previous_file_and_nothing_that_looks_complete(tmp_path):
    target = tmp_path / "data.parquet"
    atomic_write_parquet(pd.DataFrame({"x": range(10)}), target, index=False)
    before = target.read_bytes()
    proc = _run(f"""
        import os, signal, sys
        from flamenco_core.outputs import atomic_path
        with atomic_path({str(target)!r}) as tmp:
            with open(tmp, "wb") as fh:
                fh.write(b"PAR1" + b"x" * 100_000)
                fh.flush()
                os.fsync(fh.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    assert target.read_bytes() == before
    assert pq.read_table(target).num_rows == 10
    left = [n for n in _names(tmp_path) if n != "data.parquet"]
    assert len(left) == 1 and is_temporary(left[0]) and left[0].startswith(".")  # hidden, never the real name
    # The next run that takes the folder's lock sweeps the dead writer's leftovers.
    with OutputLock(tmp_path):
        pass
    assert _names(tmp_path) == [".flamenco.lock", "data.parquet"]


def test_sweep_leaves_a_live_writers_temporaries(tmp_path):
    live = tmp_path / f".a.json.tmp-{os.getpid()}-0123abcd"
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True, check=True).stdout.strip()
    dead = tmp_path / "sub" / f".b.json.tmp-{dead_pid}-0123abcd"
    dead.parent.mkdir()
    live.write_text("in progress")
    dead.write_text("left by a crash")
    (tmp_path / "keep.tmp-1-0123abcd").write_text("not hidden: not ours")
    assert sweep_temporaries(tmp_path) == [dead]
    assert live.exists() and (tmp_path / "keep.tmp-1-0123abcd").exists()


def test_output_lock_is_exclusive_across_processes_and_names_the_holder(tmp_path):
    holder = _run(f"""
        import sys, time
        from flamenco_core.outputs import OutputLock
        with OutputLock({str(tmp_path)!r}):
            print("locked", flush=True)
            time.sleep(60)
    """)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputInUse) as info:
            OutputLock(tmp_path).acquire()
        err = info.value
        assert isinstance(err, FlamencoError) and err.exit_code == EXIT_IN_USE == 3
        assert err.pid == holder.pid and err.folder == tmp_path
        assert str(tmp_path) in str(err) and str(holder.pid) in str(err) and "in use" in str(err)
        # SIGKILL cannot run cleanup code: the kernel still drops the lock with the process.
        holder.send_signal(signal.SIGKILL)
        holder.wait(30)
        deadline = time.time() + 10
        while True:
            try:
                with OutputLock(tmp_path):
                    break
            except OutputInUse:
                assert time.time() < deadline
                time.sleep(0.1)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_output_lock_is_reentrant_within_a_process(tmp_path):
    outer = OutputLock(tmp_path)
    with outer:
        with OutputLock(tmp_path / "." ):  # same folder, another spelling
            assert outer.held
        assert outputs._HELD  # the outer hold remains
        probe = _run(f"""
            from flamenco_core.outputs import OutputLock, OutputInUse
            try:
                OutputLock({str(tmp_path)!r}).acquire()
                print("acquired")
            except OutputInUse:
                print("in use")
        """)
        assert probe.communicate(timeout=60)[0].strip() == "in use"
    assert not outputs._HELD


def test_output_lock_refuses_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(NotADirectoryError):
        OutputLock(f).acquire()
