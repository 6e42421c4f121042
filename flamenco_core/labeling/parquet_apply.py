"""Applying a pack to Parquet data larger than memory, batch by batch, with exact statistics.

Statistics come from a profile, or else from a first pass that reads only the needed columns, one column
at a time (8 bytes a row), and computes them exactly as the in-memory path does, so both give the same
matrix. Exact linear percentiles need every value of a column; a streaming sketch would make the matrix
depend on batch size, so it is not used. When even one column does not fit, pass a profile.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from .apply_meta import ApplyMeta
from .compiled import DEFAULT_BLOCK_ROWS, CompiledPack
from .constants import ABSTAIN, LABEL_DTYPE
from .expr import SpecError
from .spec import LFPack
from .stats import DataStatistics, Statistics, as_statistics, stats_of_values

#: Parquet rows read per batch.
DEFAULT_BATCH_ROWS = 1_048_576

def _parquet_files(path: Union[str, Path]) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.parquet") if f.is_file())
        if not files:
            raise FileNotFoundError(f"no .parquet files under {p}")
        return files
    if not p.exists():
        raise FileNotFoundError(p)
    return [p]


def _as_float(col: Any, feature: str, pack: str, lf: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arr = pc.cast(col, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SpecError(f"feature {feature!r} cannot be compared as a number: {exc}", pack=pack, lf=lf, token=feature) from None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr.to_numpy(zero_copy_only=False)


def _parquet_stats(files: list[Path], compiled: CompiledPack) -> DataStatistics:
    import pyarrow.parquet as pq

    users = compiled.feature_users()
    computed: dict[str, dict[str, float]] = {}
    for feature, stats in compiled.needed_stats().items():
        # one column at a time: memory is one float64 column, not the table
        parts = [_as_float(pq.read_table(f, columns=[feature]).column(feature), feature, compiled.pack.name, users[feature]) for f in files]
        values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        computed[feature] = stats_of_values(values, sorted(stats))
        del values, parts
    return DataStatistics({}, precomputed=computed)


def _iter_batches(files: list[Path], columns: list[str], batch_rows: int) -> Iterator[Any]:
    import pyarrow.parquet as pq

    for f in files:
        pf = pq.ParquetFile(f)
        yield from pf.iter_batches(batch_size=batch_rows, columns=columns)


class BackgroundWriter:
    """Writes Arrow tables to a ``ParquetWriter`` on one thread, in order, while the caller computes the
    next one (Arrow's writer releases the GIL): at most one table is in flight. A ``None`` writer makes
    it a no-op context. Leaving the context waits for the last write and raises its error, if any."""

    def __init__(self, writer) -> None:
        self.writer = writer
        self._pool = ThreadPoolExecutor(max_workers=1) if writer is not None else None
        self._pending = None

    def write(self, table) -> None:
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self.writer.write_table, table)

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is None:
            return
        try:
            if self._pending is not None:
                self._pending.result()
        finally:
            self._pool.shutdown(wait=True)  # never let the caller close the file under a write in flight


def apply_lfs_parquet(
    pack: LFPack,
    path: Union[str, Path],
    stats: Any = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    out: Union[str, Path, None] = None,
    n_jobs: int = 1,
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    return_meta: bool = False,
    on_batch: Optional[Callable[[np.ndarray], None]] = None,
) -> Any:
    """Apply a pack to Parquet data (a file or a folder of ``*.parquet``) batch by batch.

    Only the columns the pack reads are loaded. ``stats``: a profile, or ``None`` to compute statistics
    from the data in a first pass (one needed column at a time; exact, identical to
    :func:`apply_lfs` on the same data). With ``out`` the matrix is written there as Parquet (one int8
    column per LF, named by the LF; pack name and hash in the schema metadata) and the path is
    returned; without, the whole int8 matrix is returned. ``return_meta=True`` adds an
    :class:`ApplyMeta`. ``on_batch`` is called with each batch's int8 matrix, in row order (the streaming
    labeler counts vote patterns there instead of reading the matrix back).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    compiled = CompiledPack(pack)
    files = _parquet_files(path)
    for f in files:
        compiled.check_features(pq.read_schema(f).names, f"Parquet file {f.name}")
    users = compiled.feature_users()
    features = sorted(users)
    if stats is None:
        source: Statistics = _parquet_stats(files, compiled)
        kind = "data"
    else:
        source = as_statistics(stats)
        kind = "profile"
    resolved = compiled.resolve(source)
    names = compiled.lf_names
    schema = pa.schema(
        [pa.field(n, pa.int8(), nullable=False) for n in names],
        metadata={b"flamenco.pack": pack.name.encode(), b"flamenco.pack_hash": pack.content_hash.encode()},
    )
    # Votes are a few small integers: delta bit-packing writes them twice as fast as the default dictionary
    # encoding plus snappy, for about 1.6x the bytes (benchmarks/labeling.py --from-parquet)
    writer = (pq.ParquetWriter(str(out), schema, use_dictionary=False, column_encoding="DELTA_BINARY_PACKED",
                               compression="none") if out is not None else None)
    parts: list[np.ndarray] = []
    votes = np.zeros(len(names), dtype=np.int64)
    n_rows = 0
    try:
        with BackgroundWriter(writer) as bg:
            for batch in _iter_batches(files, features, batch_rows):
                cols = {f: _as_float(batch.column(f), f, pack.name, users[f]) for f in features}
                Lb = compiled.label(cols, resolved, batch.num_rows, n_jobs=n_jobs, block_rows=block_rows)
                n_rows += batch.num_rows
                votes += (Lb != ABSTAIN).sum(axis=0)
                if on_batch is not None:
                    on_batch(Lb)
                if writer is not None:
                    bg.write(pa.Table.from_arrays([pa.array(Lb[:, j]) for j in range(len(names))], schema=schema))
                else:
                    parts.append(Lb)
        if writer is not None and n_rows == 0:
            writer.write_table(schema.empty_table())
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        result: Any = Path(out)
    else:
        result = np.concatenate(parts) if parts else np.empty((0, len(names)), dtype=LABEL_DTYPE)
    if not return_meta:
        return result
    meta = ApplyMeta(
        lf_names=names, n_rows=n_rows, pack=pack.name, pack_version=pack.version, pack_hash=pack.content_hash,
        stats_source=kind, stats=source.used(), thresholds=compiled.thresholds_dict(resolved),
        votes={n: int(v) for n, v in zip(names, votes)},
    )
    return result, meta
