"""Out-of-core de-duplication and time order for the ingest driver: memory bounded by a bucket, not the dump.

How it works, step by step: docs/ingest.md, section merge.py.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flamenco_core.ingest.schema import FLOW_KEY_COLUMNS, LATENCY_COLUMNS, conform

SEQ_COL = "__seq"
FILE_COL = "__file_idx"
INTERNAL = (SEQ_COL, FILE_COL)

#: One timestamp in this many is kept to place the bucket bounds, at first (see :class:`TimestampSample`).
SAMPLE_STRIDE = 16
#: At most this many sampled timestamps are held (32 MB); past it the stride doubles. 4M samples still
#: put ~20,000 samples in each bucket of a 350M-row dump, far more than even buckets need. (A fixed
#: stride held 170 MB at 5 GB of Atlas gzip and grew on with the dump.)
SAMPLE_CAP = 4_000_000
#: Bucket size by default (uncompressed Arrow bytes): ~2M latency rows or ~190k 88-column flow rows. A
#: bucket's sort holds it three to four times over (the bucket, its sorted copy, the candidates for
#: de-duplication, the Parquet writer's pages), so a spilled ingest peaks near 0.7 GB whatever the dump's
#: size, under the 1.5 GB per process issue 14 allows.
DEFAULT_BUCKET_BYTES = 128 << 20
#: The driver keeps rows in memory, with no scratch parts, up to this many bytes (a 100 MB CSV fits):
#: sorted in one piece, they peak near 1 GB.
HOLD_BYTES = 256 << 20


def _ts_int(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Timestamps as int64 microseconds (the canonical unit)."""
    return col.cast(pa.int64()).to_numpy(zero_copy_only=False)


def open_parts(path: Path, schema: pa.Schema) -> pa.ipc.RecordBatchFileWriter:
    """A writer for a scratch parts file (uncompressed Arrow IPC)."""
    return pa.ipc.new_file(str(path), schema)


def _batches(path: Path):
    """The record batches of a scratch IPC file, one read at a time (a plain file, not a memory map:
    mapped pages would count in the process's resident memory)."""
    with pa.OSFile(str(path)) as f:
        reader = pa.ipc.open_file(f)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


def _all_batches(parts: Sequence[Path], schema: pa.Schema | None = None):
    """The record batches of several scratch IPC files in order, cast to ``schema`` when given (the files
    of a per-file fan-out were written apart; their types must agree before one table is made of them)."""
    for path in parts:
        for b in _batches(path):
            yield b if schema is None or b.schema.equals(schema) else b.cast(schema)


def _sample_parts(parts: Sequence[Path]) -> tuple[np.ndarray, int]:
    """(timestamp sample, rows) of scratch IPC files, for callers that kept no sample while writing."""
    rows, sample = 0, TimestampSample()
    for b in _all_batches(parts):
        rows += b.num_rows
        sample.add(_ts_int(b.column("timestamp")))
    return sample.values(), rows


class TimestampSample:
    """Every ``stride``-th timestamp (int64 us) of the rows seen, kept while the driver writes the parts so
    that the bucket bounds need no extra pass over them. Memory is bounded whatever the dump's size: when
    more than ``cap`` are held, every other one is dropped and the stride doubles, so the sample stays
    spread evenly over the rows.

    Kept values are copies, not views: a view would keep every batch's timestamps (or its Arrow buffer)
    alive, memory growing with the dump."""

    def __init__(self, cap: int | None = None, stride: int | None = None) -> None:
        # the module's values are read at call time, so that a test can shrink them
        cap = SAMPLE_CAP if cap is None else cap
        stride = SAMPLE_STRIDE if stride is None else stride
        if cap < 1 or stride < 1:
            raise ValueError(f"cap and stride must be >= 1, got {cap} and {stride}")
        self.cap, self.stride = cap, stride
        self._parts: list[np.ndarray] = []
        self._held = 0

    def __len__(self) -> int:
        return self._held

    def add(self, ts: np.ndarray) -> None:
        """Sample one batch's timestamps."""
        self._append(np.array(ts[::self.stride], dtype=np.int64))

    def merge(self, values: np.ndarray, stride: int) -> None:
        """Add another sample taken with ``stride`` (another file's): the finer of the two is thinned to
        the coarser stride first, so that each keeps its share of the rows."""
        while self.stride < stride:
            self._thin()
        if stride < self.stride:
            values = values[::max(1, self.stride // stride)]
        self._append(np.array(values, dtype=np.int64))

    def values(self) -> np.ndarray:
        """The sampled timestamps, in the order seen."""
        return np.concatenate(self._parts) if self._parts else np.empty(0, np.int64)

    def _append(self, values: np.ndarray) -> None:
        if len(values):
            self._parts.append(values)
            self._held += len(values)
        while self._held > self.cap:
            self._thin()

    def _thin(self) -> None:
        kept = self.values()[::2].copy()
        self._parts, self._held, self.stride = ([kept] if len(kept) else []), len(kept), self.stride * 2


def bucket_bounds(sample: np.ndarray, total: int, bucket_rows: int) -> np.ndarray:
    """Upper timestamp bounds (int64 us, exclusive, ascending) of time buckets holding about
    ``bucket_rows`` of the ``total`` rows, cut at quantiles of ``sample`` (:class:`TimestampSample`); the last
    bound is past every timestamp. One bound means one bucket.

    Any bounds give the right result (duplicates share a timestamp, so they share a bucket); the sample
    only decides how even the buckets are."""
    last = np.array([np.iinfo(np.int64).max], dtype=np.int64)
    if total <= bucket_rows or len(sample) < 2:
        return last
    sample = np.sort(sample)
    n_buckets = -(-total // bucket_rows)
    cuts = sample[(np.arange(1, n_buckets) * len(sample)) // n_buckets]
    return np.concatenate((np.unique(cuts), last))


def _key_hash(table: pa.Table, key: list[str]) -> np.ndarray:
    """One uint64 per row mixing the ``key`` columns' values: equal rows get equal hashes (``-0.0`` is
    hashed as ``0.0`` and a missing value as one value, as pandas compares them); unequal rows rarely do."""
    h = np.zeros(table.num_rows, dtype=np.uint64)
    for name in key:
        col = table[name]
        if pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64())
        if col.null_count:
            col = pc.fill_null(col, 0)
        v = col.to_numpy()
        if v.dtype.kind == "f":
            v = (v + 0.0).view(np.uint64)  # -0.0 + 0.0 is 0.0
        h = (h * np.uint64(0x100000001B3)) ^ v.astype(np.uint64, copy=False)
    return h


def _dedupe_sort(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Drop exact duplicates (all columns but the internal ones; first by ``__seq`` kept), then sort by
    ``(timestamp, __seq)``. ``table`` holds its rows in ``__seq`` order. Returns the table and the
    ``__file_idx`` of every dropped row.

    Duplicates are found by pandas' ``DataFrame.duplicated``, the reference's own rule (``-0.0`` equals
    ``0.0``, missing values equal each other), but only among candidate rows: those whose hash of a few
    numeric key columns repeats (cheap to hash, unlike the addresses and, in a wide flows table, ~80 float
    columns more)."""
    cols = [c for c in table.column_names if c not in INTERNAL]
    key = [c for c in ("timestamp", "rtt_ms", "src_port", "dst_port") if c in cols]
    dup = np.zeros(table.num_rows, dtype=bool)
    cand = pd.Series(_key_hash(table, key)).duplicated(keep=False).to_numpy()
    if cand.any():
        idx = np.flatnonzero(cand)
        sub = table.select(cols).take(pa.array(idx)).to_pandas()
        dup[idx] = sub.duplicated(keep="first").to_numpy()
    dropped = np.empty(0, dtype=np.int32)
    kept = None  # positions of the rows kept, when some are dropped
    if dup.any():
        dropped = table[FILE_COL].to_numpy()[dup]
        kept = np.flatnonzero(~dup)
    ts = _ts_int(table["timestamp"])
    seq = table[SEQ_COL].to_numpy()
    if kept is not None:
        ts, seq = ts[kept], seq[kept]
    if len(ts) and not (ts[1:] >= ts[:-1]).all():  # a dump in time order needs no reshuffle
        if (seq[1:] > seq[:-1]).all():
            # rows in __seq order: a stable sort by time alone is the sort by (timestamp, __seq); one take
            # of the table both drops the duplicates and orders the rest
            order = np.argsort(ts, kind="stable")
            kept = order if kept is None else kept[order]
        else:
            if kept is not None:
                table, kept = table.take(pa.array(kept)), None
            kept = pc.sort_indices(table, sort_keys=[("timestamp", "ascending"), (SEQ_COL, "ascending")])
    if kept is not None:
        table = table.take(pa.array(kept) if isinstance(kept, np.ndarray) else kept)
    return table, dropped


def dedupe_sort_parts(
    parts: Path | Sequence[Path],
    out_path: Path,
    schema: pa.Schema,
    scratch: Path,
    *,
    bucket_bytes: int | None = None,
    bucket_rows: int | None = None,
    sample: np.ndarray | None = None,
    total: int | None = None,
    progress: Callable[[str, int], None] | None = None,
    parts_schema: pa.Schema | None = None,
) -> Counter:
    """De-duplicate and time-sort the scratch ``parts`` (Arrow IPC, :func:`open_parts`) into the Parquet
    file ``out_path`` with ``schema`` (the canonical schema with its metadata, without the internal
    columns), one bucket at a time (docs/ingest.md, merge.py).

    ``sample`` and ``total``: the :class:`TimestampSample` values and row count the caller kept while writing the
    parts (else one pass over the parts finds them). ``bucket_rows`` defaults to ``bucket_bytes`` (default
    :data:`DEFAULT_BUCKET_BYTES`) over the parts' bytes per row. ``progress(stage, rows)`` is called per bucket.
    Several parts files (one per input file, in the files' order) are read as one, each batch cast to
    ``parts_schema`` (the first file's, internal columns included) when given. Returns ``{file index:
    duplicates dropped}``."""
    files = [Path(parts)] if isinstance(parts, (str, Path)) else [Path(p) for p in parts]
    if sample is None or total is None:
        sample, total = _sample_parts(files)
    if bucket_rows is None:
        bucket_bytes = bucket_bytes or DEFAULT_BUCKET_BYTES  # read at call time (tests shrink it)
        size = sum(p.stat().st_size for p in files)
        bucket_rows = max(1, int(bucket_bytes / max(1.0, size / max(1, total))))
    bounds = bucket_bounds(sample, total, bucket_rows)
    dups: Counter = Counter()
    with _parquet_writer(out_path, schema) as writer:
        one = len(bounds) == 1
        buckets = [None] if one else _partition(files, bounds, scratch, parts_schema)
        for path in buckets:
            if path is None and not one:
                continue
            batches = list(_all_batches(files, parts_schema) if one else _batches(path))
            if not batches:
                continue
            table, dropped = _dedupe_sort(pa.Table.from_batches(batches))
            del batches
            if len(dropped):
                dups.update({int(k): int(v) for k, v in zip(*np.unique(dropped, return_counts=True))})
            writer.write_table(_output_rows(table, schema))
            if progress:
                progress("sort", table.num_rows)
            del table
            if path is not None:
                path.unlink()
    return dups


class EarlyWriter:
    """Writes the driver's held batches to the Parquet output on a thread while the reader parses on
    (pyarrow's writer releases the GIL), as long as they come in time order: for such an input
    :func:`dedupe_sort_tables` finds the file already written when no row is a duplicate. Any batch out
    of order stops it (the file is then rewritten whole)."""

    #: Rows gathered before one write (one row group).
    GROUP_ROWS = 64 << 10

    def __init__(self, out_path: Path, schema: pa.Schema):
        self.out_path, self.schema = out_path, schema
        self.pool = ThreadPoolExecutor(1)
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[pa.Table] = []
        self.rows = 0
        self.last: int | None = None
        self.ok = True

    def add(self, table: pa.Table) -> None:
        """Queue a batch (with the internal columns) for writing, unless it breaks the time order."""
        if not self.ok or not table.num_rows:
            return
        ts = _ts_int(table["timestamp"])
        if (self.last is not None and ts[0] < self.last) or not (ts[1:] >= ts[:-1]).all():
            self.stop()
            return
        self.last = int(ts[-1])
        self.pending.append(_output_rows(table, self.schema))
        self.rows += table.num_rows
        if self.rows >= self.GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        """Hand the rows queued so far to the writing thread (a last, smaller row group)."""
        if self.ok and self.pending:
            self.pool.submit(self._write, pa.concat_tables(self.pending))
            self.pending, self.rows = [], 0

    def _write(self, table: pa.Table) -> None:
        if self.writer is None:
            self.writer = _parquet_writer(self.out_path, self.schema)
        self.writer.write_table(table)

    def finish(self, schema: pa.Schema) -> bool:
        """Write what is left and close; True when the file is complete and has ``schema``."""
        if self.ok and self.schema.equals(schema, check_metadata=True):
            self.flush()
            self.pool.submit(self._close).result()  # raises the writes' errors
            self.pool.shutdown(wait=True)
            self.pool = None
            return True
        self.stop()
        return False

    def _close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def stop(self) -> None:
        """Give up: wait for the writes under way and close the file (it is rewritten or discarded)."""
        if self.pool is not None:
            self.ok = False
            self.pending = []
            self.pool.submit(self._close)
            self.pool.shutdown(wait=True)
            self.pool = None


def _output_rows(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` as the output file holds it: without the internal columns, with the output ``schema``."""
    return conform(table.drop_columns(list(INTERNAL)), schema)


def _parquet_writer(out_path: Path, schema: pa.Schema) -> pq.ParquetWriter:
    # Strings dictionary-encode well (addresses repeat); float features mostly do not, and trying costs
    # as much as the write itself. Min/max statistics are kept for the canonical columns (time, addresses,
    # ports, RTT, label: what readers filter on); a flow feature's range over a 64k-row group is nearly its
    # whole range, so its statistics would prune nothing and cost a tenth of the write.
    dict_cols = [f.name for f in schema if pa.types.is_string(f.type)]
    keep = set(LATENCY_COLUMNS) | set(FLOW_KEY_COLUMNS) | {"label"}
    stats = [f.name for f in schema if f.name in keep or not pa.types.is_floating(f.type)]
    return pq.ParquetWriter(out_path, schema, use_dictionary=dict_cols or False, write_statistics=stats)


def dedupe_sort_tables(tables: list[pa.Table], out_path: Path, schema: pa.Schema,
                       early: EarlyWriter | None = None) -> Counter:
    """:func:`dedupe_sort_parts` for batches the driver still holds in memory (they fit one bucket);
    ``early``: the :class:`EarlyWriter` that was given every batch, whose file stands when the sort and
    de-duplication change nothing."""
    if early is not None:
        early.flush()  # the last row group is written while the rows are checked, not after
    whole = pa.concat_tables(tables)
    table, dropped = _dedupe_sort(whole)
    tables.clear()
    if early is not None:
        if table is whole and not len(dropped) and early.finish(schema):
            return Counter()
        early.stop()
    dups: Counter = Counter({int(k): int(v) for k, v in zip(*np.unique(dropped, return_counts=True))})
    with _parquet_writer(out_path, schema) as writer:
        writer.write_table(_output_rows(table, schema))
    return dups


def _partition(parts: Sequence[Path], bounds: np.ndarray, scratch: Path,
               schema: pa.Schema | None = None) -> list[Path | None]:
    """Split the parts into one scratch IPC file per time bucket; None for a bucket without rows."""
    writers: dict[int, pa.ipc.RecordBatchFileWriter] = {}
    paths: list[Path | None] = [None] * len(bounds)
    try:
        for rg in _all_batches(parts, schema):
            b = np.searchsorted(bounds, _ts_int(rg.column("timestamp")), side="right")
            for k in np.unique(b):
                piece = rg if len(bounds) == 1 else rg.filter(pa.array(b == k))
                if k not in writers:
                    paths[k] = scratch / f"bucket-{k:05d}.arrow"
                    writers[k] = open_parts(paths[k], rg.schema)
                writers[k].write_batch(piece)
            del rg
    finally:
        for w in writers.values():
            w.close()
    return paths
