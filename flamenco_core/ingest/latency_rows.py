"""Buffers of canonical latency rows and the value checks the JSON latency readers (Atlas, scamper) share.

:class:`LatencyBatch` hands rows out as pandas frames (the reference readers); :class:`ArrowLatencyBatch`
as canonical Arrow tables (the fast readers). The ``as_*`` helpers read a JSON value the way every latency
reader must (numbers may be numeric strings in old firmware; booleans are no numbers).
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from .base import IngestError, LineProblem, ReadContext, reference_object
from .schema import KIND_KEY, LATENCY_SCHEMA, TS_TYPE

class LatencyBatch:
    """Column buffers for canonical latency rows, handed out as frames of at most ``batch_rows`` rows.

    Readers append one row at a time (the JSON walk is per record anyway) and build one DataFrame per batch,
    so memory stays bounded by ``batch_rows`` plus the rows of one input record.
    """

    def __init__(self, source: str, batch_rows: int) -> None:
        self.source = source
        self.batch_rows = max(1, int(batch_rows))
        self._clear()

    def _clear(self) -> None:
        self.ts_us: list[int] = []
        self.src: list[str] = []
        self.dst: list[str] = []
        self.rtt: list[float] = []
        self.measurement: list[str] = []
        self.hop_ttl: list[int | None] = []

    def __len__(self) -> int:
        return len(self.rtt)

    def add(
        self, ts_us: int, src: str, dst: str, rtt_ms: float, measurement: str, hop_ttl: int | None = None
    ) -> None:
        """Append one row; ``ts_us`` is integer microseconds since the Unix epoch (exact, unlike float s)."""
        self.ts_us.append(ts_us)
        self.src.append(src)
        self.dst.append(dst)
        self.rtt.append(rtt_ms)
        self.measurement.append(measurement)
        self.hop_ttl.append(hop_ttl)

    def _frame(self, lo: int, hi: int) -> pd.DataFrame:
        n = hi - lo
        return pd.DataFrame(
            {
                "timestamp": pd.to_datetime(np.asarray(self.ts_us[lo:hi], dtype="int64"), unit="us", utc=True),
                "src": pd.array(self.src[lo:hi], dtype="string"),
                "dst": pd.array(self.dst[lo:hi], dtype="string"),
                "rtt_ms": np.asarray(self.rtt[lo:hi], dtype="float64"),
                "source": pd.array([self.source] * n, dtype="string"),
                "measurement": pd.array(self.measurement[lo:hi], dtype="string"),
                "hop_ttl": pd.array(self.hop_ttl[lo:hi], dtype="Int16"),
            }
        )

    def _cut(self, k: int) -> None:
        for name in ("ts_us", "src", "dst", "rtt", "measurement", "hop_ttl"):
            del getattr(self, name)[:k]

    def full_frames(self) -> Iterator[pd.DataFrame]:
        """Yield (and forget) frames of exactly ``batch_rows`` rows while that many are buffered."""
        while len(self) >= self.batch_rows:
            frame = self._frame(0, self.batch_rows)
            self._cut(self.batch_rows)
            yield frame

    def flush(self) -> Iterator[pd.DataFrame]:
        """Yield every buffered row, in frames of at most ``batch_rows`` rows."""
        yield from self.full_frames()
        if len(self):
            frame = self._frame(0, len(self))
            self._clear()
            yield frame


def as_number(value: Any) -> float | None:
    """A JSON number or numeric string as float; None for anything else (booleans included)."""
    kind = type(value)
    if kind is float or kind is int:  # the common case, checked first: this runs for every value
        try:
            return float(value)
        except OverflowError:  # a JSON integer with hundreds of digits
            return None
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
    except (ValueError, OverflowError):  # OverflowError: a JSON integer with hundreds of digits
        return None
    return None


def as_int(value: Any, lo: int, hi: int) -> int | None:
    """An integral JSON number or numeric string within ``[lo, hi]``; None otherwise."""
    if type(value) is int:
        return value if lo <= value <= hi else None
    x = as_number(value)
    if x is None or not math.isfinite(x) or x != int(x) or not lo <= x <= hi:
        return None
    return int(x)


def as_rtt(value: Any) -> float | None:
    """A usable round-trip time in ms (finite, >= 0); None for anything else."""
    x = as_number(value)
    if x is None or not math.isfinite(x) or x < 0:
        return None
    return x


def readable_records(records: Iterator[tuple[int, dict]], path: str | Path) -> Iterator[tuple[int, dict]]:
    """Pass records through, turning a corrupt or truncated gzip/bzip2 stream into :class:`IngestError`.

    Record-level problems are quarantined, but a broken compressed stream loses everything after the break,
    so the file as a whole is unreadable and must fail visibly with its name.
    """
    try:
        yield from records
    except (OSError, EOFError, zlib.error) as exc:
        raise IngestError(f"{path}: cannot read compressed stream: {exc}") from exc


class ArrowLatencyBatch(LatencyBatch):
    """Canonical latency rows buffered per *record* (timestamp, addresses, measurement, hop) with one RTT
    per row, handed out as Arrow tables of at most ``batch_rows`` rows.

    A ping result's three replies share everything but the RTT, so the per-row Python work is one float
    append; the per-record columns are expanded with one ``take`` when a table is built. :meth:`add`
    (one row, its own record) keeps the interface of :class:`LatencyBatch` for the reference handlers."""

    def _clear(self) -> None:
        super()._clear()
        self.count: list[int] = []  # rows of each buffered record

    def add(
        self, ts_us: int, src: str, dst: str, rtt_ms: float, measurement: str, hop_ttl: int | None = None
    ) -> None:
        """Append one row (as :meth:`LatencyBatch.add`)."""
        super().add(ts_us, src, dst, rtt_ms, measurement, hop_ttl)
        self.count.append(1)

    def table(self) -> pa.Table:
        """Every buffered row as one canonical table; the buffer is emptied."""
        idx = pa.array(np.repeat(np.arange(len(self.count), dtype=np.int64), self.count))
        table = latency_table(pa.array(np.asarray(self.ts_us, dtype=np.int64)), pa.array(self.src, pa.string()),
                              pa.array(self.dst, pa.string()), pa.array(np.asarray(self.rtt, dtype=np.float64)),
                              self.source, pa.array(self.measurement, pa.string()),
                              pa.array(self.hop_ttl, pa.int16()), idx)
        self._clear()
        return table

    def full_frames(self):
        """Yield every buffered row once at least ``batch_rows`` are buffered (else nothing)."""
        if len(self) >= self.batch_rows:
            yield from self.flush()

    def flush(self):
        """Yield every buffered row, in tables of at most ``batch_rows`` rows."""
        if not len(self):
            return
        table = self.table()
        for lo in range(0, table.num_rows, self.batch_rows):
            yield table.slice(lo, self.batch_rows)


def latency_table(ts_us: pa.Array, src: pa.Array, dst: pa.Array, rtt: pa.Array, source: str,
                  measurement: pa.Array, hop_ttl: pa.Array, idx: pa.Array) -> pa.Table:
    """The canonical latency table of rows ``rtt`` whose other columns are per record (``ts_us``: int64
    microseconds, ``src``, ``dst``, ``measurement``, ``hop_ttl``), row ``i`` belonging to record ``idx[i]``."""
    arrays = [
        ts_us.take(idx).cast(TS_TYPE),
        src.take(idx),
        dst.take(idx),
        rtt,
        pa.array([source], pa.string()).take(pa.array(np.zeros(len(rtt), dtype=np.int64))),
        measurement.take(idx),
        hop_ttl.take(idx),
    ]
    return pa.Table.from_arrays(arrays, schema=LATENCY_SCHEMA.with_metadata({KIND_KEY: b"latency"}))


def merge_reference_rows(table: pa.Table | None, owner: np.ndarray, todo: np.ndarray, block: tuple,
                         ctx: ReadContext, account: Callable[[int, dict, LatencyBatch], None],
                         source: str) -> pa.Table | None:
    """Account the records of ``block`` (``(record numbers, objects, lines)``) at positions ``todo`` with
    the reference rules (``account(record_no, obj, batch)``), in order, and merge their rows with the fast
    path's ``table`` (row ``i`` from the record at position ``owner[i]``) in record order.

    A :class:`~flamenco_core.ingest.base.LineProblem` is filed in its place; a record the fast decoder
    made a struct of is decoded again by ``json`` (the reference decoder) first."""
    nos, objs, lines = block
    batch = ArrowLatencyBatch(source, 1)
    owners: list[int] = []
    for i in todo.tolist():
        obj = objs[i]
        if type(obj) is LineProblem:
            obj.file(ctx, nos[i])
            continue
        if type(obj) is not dict:
            obj = reference_object(lines[i])
        before = len(batch.rtt)
        account(nos[i], obj, batch)
        owners.extend([i] * (len(batch.rtt) - before))
    if not owners:
        return table
    ref = batch.table()
    if table is None:
        return ref
    order = np.argsort(np.concatenate((owner, np.asarray(owners, dtype=np.int64))), kind="stable")
    return pa.concat_tables([table, ref]).take(pa.array(order))


def parse_typed_blocks(blocks, ctx: ReadContext, typed: type, fast_rows: Callable, drop_reason: str,
                       account: Callable[[int, dict, LatencyBatch], None], source: str) -> Iterator[pa.Table]:
    """The block loop of the fast JSON readers: canonical tables of at most ``ctx.batch_rows`` rows.

    ``blocks`` are ``(record numbers, objects, lines)`` from
    :func:`~flamenco_core.ingest.base.iter_json_line_blocks` decoded with ``typed``. ``fast_rows(structs)``
    checks a block's ``typed`` structs column-wise and returns ``(taken mask, table, each row's struct,
    replies, drops)``, the drops counted under ``drop_reason``; every record it does not take goes through
    ``account(record_no, obj, batch)`` (the reference rules) in line order
    (:func:`merge_reference_rows`)."""
    step = max(1, int(ctx.batch_rows))
    for nos, objs, lines in blocks:
        pos = np.flatnonzero([type(o) is typed for o in objs])
        others = np.ones(len(objs), dtype=bool)
        table, owner = None, np.empty(0, dtype=np.int64)
        if len(pos):
            ok, table, owner, replies, dropped = fast_rows(objs if len(pos) == len(objs) else [objs[i] for i in pos])
            ctx.count_input(replies)
            ctx.drop(drop_reason, dropped)
            others[pos[ok]] = False
            owner = pos[owner]
        if others.any():
            table = merge_reference_rows(table, owner, np.flatnonzero(others), (nos, objs, lines), ctx, account, source)
        if table is None:
            continue
        for lo in range(0, table.num_rows, step):
            yield table.slice(lo, step)


def raw_text(obj: Any) -> str:
    """A record as quarantine text (built only when quarantining: 500 characters find the record again)."""
    return repr(obj)[:500]


def arrow_to_frame(table) -> pd.DataFrame:
    """A canonical latency Arrow table as the frame :class:`LatencyBatch` builds (same dtypes), for
    callers of a reader that want pandas frames."""
    def text(name):
        return pd.array(table[name].to_numpy(zero_copy_only=False), dtype="string")

    return pd.DataFrame({
        "timestamp": pd.to_datetime(table["timestamp"].cast("int64").to_numpy(), unit="us", utc=True),
        "src": text("src"),
        "dst": text("dst"),
        "rtt_ms": table["rtt_ms"].to_numpy(),
        "source": text("source"),
        "measurement": text("measurement"),
        "hop_ttl": pd.array(table["hop_ttl"].to_pandas(), dtype="Int16"),
    })

