"""`flamenco lf apply --labels`: the streaming path writes the label matrix and the labels, equal to the
in-memory apply + label model, and refuses CSV input with a clear line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from flamenco.cli_lf import lf_app
from flamenco_core.labeling import LFPack, apply_lfs
from flamenco_core.labeling.label_model import make_label_model

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "labeling_applier.py"


def _bench():
    spec = importlib.util.spec_from_file_location("labeling_applier_bench", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_lf_apply_labels_streams_parquet(tmp_path):
    bench = _bench()
    df = bench.synth_flows(20_000, seed=2)
    data = tmp_path / "flows.parquet"
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), data, row_group_size=3000)
    pack_path = tmp_path / "pack.yaml"
    LFPack.from_dict(bench.PACK).to_yaml(pack_path)
    out, labels = tmp_path / "L.parquet", tmp_path / "labels" / "labels.parquet"
    res = CliRunner().invoke(lf_app, ["apply", str(pack_path), "--data", str(data), "--out", str(out),
                                      "--labels", str(labels), "--batch-rows", "5000", "--seed", "1"])
    assert res.exit_code == 0, res.output
    pack = LFPack.from_yaml(pack_path)
    L = apply_lfs(pack, df)
    np.testing.assert_array_equal(pq.read_table(out).to_pandas().to_numpy(), L)
    lm = make_label_model("snorkel", n_lfs=L.shape[1], cardinality=2, seed=1).fit(L)
    got = pq.read_table(labels).to_pandas()
    np.testing.assert_array_equal(got["label"].to_numpy(), lm.predict(L))
    np.testing.assert_array_equal(got[["p_benign", "p_attack"]].to_numpy(), lm.predict_proba(L))
    meta = json.loads(out.with_name(out.name + ".meta.json").read_text())
    assert meta["labels"]["distinct_patterns"] > 1 and sum(meta["labels"]["label_counts"].values()) == len(df)
    assert sorted(p.name for p in labels.parent.iterdir()) == ["labels.parquet"]  # no scratch left


def test_lf_apply_labels_refuses_csv(tmp_path):
    bench = _bench()
    csv = tmp_path / "flows.csv"
    bench.synth_flows(100, seed=0).to_csv(csv, index=False)
    pack_path = tmp_path / "pack.yaml"
    LFPack.from_dict(bench.PACK).to_yaml(pack_path)
    res = CliRunner().invoke(lf_app, ["apply", str(pack_path), "--data", str(csv), "--out", str(tmp_path / "L.parquet"),
                                      "--labels", str(tmp_path / "labels.parquet")])
    assert res.exit_code == 2 and "--labels streams Parquet data" in res.output


def test_lf_apply_labels_killed_leaves_nothing_after_the_next_run(tmp_path):
    """kill -9 mid-run leaves temporaries (a kill runs no cleanup); the next run into the same place
    removes them, and no file that looks complete is ever left by the killed run."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from flamenco_core.outputs import is_temporary

    bench = _bench()
    table = pa.Table.from_pandas(bench.synth_flows(50_000, seed=3), preserve_index=False)
    data = tmp_path / "flows.parquet"
    with pq.ParquetWriter(data, table.schema) as w:  # 4M rows: seconds of work, time to kill it mid-run
        for _ in range(80):
            w.write_table(table, row_group_size=50_000)
    pack_path = tmp_path / "pack.yaml"
    LFPack.from_dict(bench.PACK).to_yaml(pack_path)
    out, labels = tmp_path / "m" / "L.parquet", tmp_path / "labels" / "labels.parquet"
    cmd = [sys.executable, "-m", "flamenco.cli", "lf", "apply", str(pack_path), "--data", str(data),
           "--out", str(out), "--labels", str(labels)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (labels.parent.is_dir() and any(is_temporary(p.name) for p in labels.parent.iterdir())):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(60)
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists() and not labels.exists()  # nothing that looks complete
    left = [p.name for p in labels.parent.iterdir()]
    assert left and all(is_temporary(n) for n in left)

    small = tmp_path / "small.parquet"
    pq.write_table(table.slice(0, 5_000), small)
    res = CliRunner().invoke(lf_app, ["apply", str(pack_path), "--data", str(small), "--out", str(out),
                                      "--labels", str(labels)])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in labels.parent.iterdir()) == ["labels.parquet"]
    assert sorted(p.name for p in out.parent.iterdir()) == ["L.parquet", "L.parquet.meta.json"]
    assert pq.read_metadata(labels).num_rows == 5_000
