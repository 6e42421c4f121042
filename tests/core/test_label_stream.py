"""Streaming labeling: label matrix, pattern-weighted label model and labels from a Parquet dataset equal
the in-memory apply + fit + predict; memory does not hold the rows (batches smaller than the data)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flamenco_core.labeling import LFPack, apply_lfs
from flamenco_core.labeling.label_model import make_label_model
from flamenco_core.labeling.stream import PatternCounter, label_parquet

_BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "labeling_applier.py"


def _bench():
    spec = importlib.util.spec_from_file_location("labeling_applier_bench", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("kind", ["snorkel", "majority"])
def test_stream_equals_in_memory(tmp_path, kind):
    bench = _bench()
    df = bench.synth_flows(30_000, seed=1)
    data = tmp_path / "flows"
    data.mkdir()
    for i, part in enumerate(np.array_split(np.arange(len(df)), 3)):  # a folder of three files
        pq.write_table(pa.Table.from_pandas(df.iloc[part], preserve_index=False), data / f"part{i}.parquet")
    pack = LFPack.from_dict(bench.PACK)
    res = label_parquet(pack, data, tmp_path / "out", label_model=kind, batch_rows=4096, seed=3)

    L = apply_lfs(pack, df)
    np.testing.assert_array_equal(pq.read_table(res.matrix_path).to_pandas().to_numpy(), L)
    lm = make_label_model(kind, n_lfs=L.shape[1], cardinality=2, seed=3).fit(L)
    got = pq.read_table(res.labels_path).to_pandas()
    np.testing.assert_array_equal(got["label"].to_numpy(), lm.predict(L))
    np.testing.assert_array_equal(got[["p_benign", "p_attack"]].to_numpy(), lm.predict_proba(L))
    assert res.n_rows == len(df) and 1 < res.n_patterns < 3 ** L.shape[1]
    assert sum(res.label_counts.values()) == len(df)


def test_pattern_counter_sparse_path_equals_dense():
    rng = np.random.default_rng(0)
    L = rng.integers(-1, 2, size=(5000, 6)).astype(np.int8)
    dense = PatternCounter(6, 2)
    sparse = PatternCounter(6, 2)
    sparse.dense = None  # force the merge-of-uniques path
    for part in np.array_split(L, 7):
        dense.add(part)
        sparse.add(part)
    for a, b in zip(dense.result(), sparse.result()):
        np.testing.assert_array_equal(a, b)
    codes, counts, patterns = dense.result()
    assert counts.sum() == len(L)
    u, c = np.unique(L, axis=0, return_counts=True)
    assert len(u) == len(codes) and sorted(c) == sorted(counts)


@pytest.mark.parametrize("m, dtype", [(6, np.uint16), (16, np.uint32), (30, np.int64)])
def test_pattern_codes_round_trip_in_the_narrowest_type(m, dtype):
    rng = np.random.default_rng(m)
    L = rng.integers(-1, 2, size=(3000, m)).astype(np.int8)
    L[0] = 1  # the largest code: every LF votes the last class
    counter = PatternCounter(m, 2)
    codes = counter.add(L)
    assert codes.dtype == dtype and counter.code_dtype == dtype
    got_codes, counts, patterns = counter.result()
    u, c = np.unique(L, axis=0, return_counts=True)
    order = np.lexsort(patterns.T[::-1])  # compare as sets of (pattern, count)
    np.testing.assert_array_equal(patterns[order], u)
    np.testing.assert_array_equal(counts[order], c)


def test_stream_leaves_only_its_outputs(tmp_path):
    bench = _bench()
    data = tmp_path / "flows.parquet"
    pq.write_table(pa.Table.from_pandas(bench.synth_flows(5_000, seed=2), preserve_index=False), data)
    pack = LFPack.from_dict(bench.PACK)
    out = tmp_path / "out"
    label_parquet(pack, data, out, batch_rows=1024)
    assert sorted(p.name for p in out.iterdir()) == ["label_matrix.parquet", "labels.parquet"]
    # a failing run (a column the pack needs is missing) leaves no scratch file either
    pq.write_table(pa.table({"unrelated": [1.0, 2.0]}), data)
    with pytest.raises(Exception, match="flows.parquet"):
        label_parquet(pack, data, tmp_path / "bad", batch_rows=1024)
    from flamenco_core.outputs import is_temporary

    assert not [p for p in (tmp_path / "bad").iterdir() if is_temporary(p.name)]


def test_background_writer_raises_the_write_error():
    from flamenco_core.labeling.parquet_apply import BackgroundWriter

    class Broken:
        def write_table(self, table):
            raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        with BackgroundWriter(Broken()) as bg:
            bg.write(pa.table({"a": [1]}))
