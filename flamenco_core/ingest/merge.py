"""Out-of-core de-duplication and time order for the ingest driver: memory bounded by a bucket, not the dump.

The driver writes every cleaned batch to a scratch Parquet file (``parts``) with two internal columns:
``__seq`` (the row's position in the whole ingest, files in the order given) and ``__file_idx`` (which
input file it came from). :func:`dedupe_sort_parts` then produces exactly what the in-memory reference
:func:`~flamenco_core.ingest.clean.dedupe_and_sort` produces on the whole table (drop exact duplicate
rows keeping the first, then a stable sort by ``timestamp``), without holding the table:

1. a pass over the ``timestamp`` column alone (one row group at a time) builds a histogram, from which
   consecutive time ranges (buckets) of at most ``bucket_rows`` rows are cut;
2. a pass over the parts appends each row group's rows to its bucket's scratch file (rows keep their
   ``__seq`` order inside a bucket, since row groups are read in order and filtering keeps order);
3. each bucket, in time order, is read alone, de-duplicated (duplicates share their timestamp, so they
   always fall in the same bucket) and sorted by ``(timestamp, __seq)``, which is the stable time sort.

Peak memory is about one bucket (``bucket_rows`` rows) plus one row group. A bucket can exceed
``bucket_rows`` only when more rows than that fall in one histogram bin (:data:`HIST_BINS` equal bins over
the time span): then that bin is one bucket, as it cannot be cut without splitting a timestamp.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SEQ_COL = "__seq"
FILE_COL = "__file_idx"
INTERNAL = (SEQ_COL, FILE_COL)

#: Histogram resolution of the time span. 2**16 bins keep the histogram at 512 KB while splitting even a
#: year-long dump into ~8 minute bins.
HIST_BINS = 1 << 16
#: Bucket size by default (uncompressed Arrow bytes): ~2M latency rows; held about three times over
#: while de-duplicating and sorting, so a few hundred MB at peak.
DEFAULT_BUCKET_BYTES = 128 << 20


def _ts_int(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Timestamps as int64 microseconds (the canonical unit)."""
    return col.cast(pa.int64()).to_numpy(zero_copy_only=False)


def bucket_bounds(parts: Path, bucket_rows: int) -> np.ndarray:
    """Upper timestamp bounds (int64 us, exclusive, ascending) of buckets of at most ``bucket_rows`` rows
    (module docstring); the last bound is past the largest timestamp. One bound means one bucket."""
    pf = pq.ParquetFile(parts)
    total = pf.metadata.num_rows
    if total <= bucket_rows:
        return np.array([np.iinfo(np.int64).max], dtype=np.int64)
    lo, hi = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    for i in range(pf.num_row_groups):
        ts = _ts_int(pf.read_row_group(i, columns=["timestamp"]).column(0))
        if len(ts):
            lo, hi = min(lo, int(ts.min())), max(hi, int(ts.max()))
    span = hi - lo + 1
    width = -(-span // HIST_BINS)  # ceil: HIST_BINS bins cover [lo, hi]
    counts = np.zeros(HIST_BINS, dtype=np.int64)
    for i in range(pf.num_row_groups):
        ts = _ts_int(pf.read_row_group(i, columns=["timestamp"]).column(0))
        counts += np.bincount((ts - lo) // width, minlength=HIST_BINS)[:HIST_BINS]
    bounds = []
    acc = 0
    for b in np.flatnonzero(counts):  # a Python loop over at most HIST_BINS bins, not over rows
        c = int(counts[b])
        if acc and acc + c > bucket_rows:
            bounds.append(lo + int(b) * width)
            acc = 0
        acc += c
    bounds.append(np.iinfo(np.int64).max)
    return np.asarray(bounds, dtype=np.int64)


def _dedupe_sort(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """Drop exact duplicates (all columns but the internal ones; first by ``__seq`` kept), then sort by
    ``(timestamp, __seq)``. Returns the table and the ``__file_idx`` of every dropped row.

    Duplicates are found by pandas' ``DataFrame.duplicated``, the reference's own rule (``-0.0`` equals
    ``0.0``, missing values equal each other); pandas 3 keeps the strings in Arrow, so a bucket costs a
    few bytes per row more than its table, and it was faster than Arrow's hash group-by here."""
    cols = [c for c in table.column_names if c not in INTERNAL]
    # Only rows whose key columns repeat can be duplicates: find those on the few key columns, then
    # compare every column on them alone (a wide flows table has ~80 float columns more).
    key = [c for c in ("timestamp", "src", "dst", "src_port", "dst_port", "rtt_ms") if c in cols]
    dup = np.zeros(table.num_rows, dtype=bool)
    cand = table.select(key).to_pandas().duplicated(keep=False).to_numpy()
    if cand.any():
        idx = np.flatnonzero(cand)
        sub = table.select(cols).take(pa.array(idx)).to_pandas()
        dup[idx] = sub.duplicated(keep="first").to_numpy()
    dropped = np.empty(0, dtype=np.int32)
    if dup.any():
        dropped = table[FILE_COL].to_numpy()[dup]
        table = table.filter(pa.array(~dup))
    table = table.sort_by([("timestamp", "ascending"), (SEQ_COL, "ascending")])
    return table, dropped


def dedupe_sort_parts(
    parts: Path,
    out_path: Path,
    schema: pa.Schema,
    scratch: Path,
    *,
    bucket_bytes: int = DEFAULT_BUCKET_BYTES,
    bucket_rows: int | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> Counter:
    """De-duplicate and time-sort the scratch ``parts`` into ``out_path`` with ``schema`` (the canonical
    schema with its metadata, without the internal columns), one bucket at a time (module docstring).

    ``bucket_rows`` defaults to ``bucket_bytes`` over the parts' uncompressed bytes per row.
    ``progress(stage, rows)`` is called per bucket. Returns ``{file index: duplicates dropped}``."""
    pf = pq.ParquetFile(parts)
    meta = pf.metadata
    if bucket_rows is None:
        raw = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
        per_row = max(1.0, raw / max(1, meta.num_rows))
        bucket_rows = max(1, int(bucket_bytes / per_row))
    bounds = bucket_bounds(parts, bucket_rows)
    dups: Counter = Counter()
    # Strings dictionary-encode well (addresses repeat); float features mostly do not, and trying costs
    # as much as the write itself.
    dict_cols = [f.name for f in schema if pa.types.is_string(f.type)]
    with pq.ParquetWriter(out_path, schema, use_dictionary=dict_cols or False) as writer:
        if len(bounds) == 1:
            buckets = [parts]
        else:
            buckets = _partition(pf, bounds, scratch)
        for path in buckets:
            if path is None:
                continue
            table, dropped = _dedupe_sort(pq.read_table(path, use_threads=False))
            if len(dropped):
                dups.update({int(k): int(v) for k, v in zip(*np.unique(dropped, return_counts=True))})
            writer.write_table(table.drop_columns(list(INTERNAL)).cast(schema))
            if progress:
                progress("sort", table.num_rows)
            del table
            if path != parts:
                path.unlink()
    return dups


def _partition(pf: pq.ParquetFile, bounds: np.ndarray, scratch: Path) -> list[Path | None]:
    """Split the parts into one scratch file per time bucket; None for a bucket without rows."""
    writers: dict[int, pq.ParquetWriter] = {}
    paths: list[Path | None] = [None] * len(bounds)
    try:
        for i in range(pf.num_row_groups):
            rg = pf.read_row_group(i)
            b = np.searchsorted(bounds, _ts_int(rg["timestamp"]), side="right")
            order = np.argsort(b, kind="stable")  # groups each bucket's rows, keeping their order
            cuts = np.searchsorted(b[order], np.arange(len(bounds) + 1))
            for k in np.flatnonzero(np.diff(cuts)):
                piece = rg.take(pa.array(order[cuts[k]:cuts[k + 1]]))
                if k not in writers:
                    paths[k] = scratch / f"bucket-{k:05d}.parquet"
                    writers[k] = pq.ParquetWriter(paths[k], rg.schema, compression="none")
                writers[k].write_table(piece)
            del rg
    finally:
        for w in writers.values():
            w.close()
    return paths
