"""The fast path of the CICFlowMeter reader: pyarrow's CSV parser over byte blocks, straight to Arrow.

The file's bytes are cut into blocks of whole lines (:func:`_line_blocks`), never across a block of the
reference reader, so that quarantine entries can be filed in the reference's order. A block pyarrow parses
whole, with every key value valid, becomes the canonical flows table column by column (:func:`_arrow_frame`);
any other block (quotes, a wrong field count, a text where a number belongs, a bad key value) is read by the
reference path (:func:`~flamenco_core.ingest.cicflowmeter.build_flows`), which quarantines what it must. Both
paths give the same rows, drops and quarantine, in the same order.
"""

from __future__ import annotations

import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .base import IngestError, ReadContext, open_maybe_compressed
from .cicflowmeter import CicLayout, build_flows, cic_layout, read_cicflowmeter
from .column_values import NA_STRINGS, TS_MAX, TS_MIN, to_timestamp
from .schema import FLOW_KEY_FIELDS, KIND_KEY, to_flows_table
from .text_lines import TextBlock, delimited_records, read_delimited

#: Bytes parsed at a time (bounded memory: a block, its Arrow table and its frame).
FAST_BLOCK_BYTES = 8 << 20
#: pyarrow parses a block's pieces on threads only where there are cores to spare: on two (shared)
#: cores the threads' hand-offs cost more than they gain.
_THREADS = (os.cpu_count() or 1) > 2
#: Blocks parsed ahead, each on its own thread, while the caller checks the current one (two beat one
#: on two shared cores: 1.47-1.73 s against 1.77-1.99 s for the 106 MB benchmark CSV, alternated in one run).
_AHEAD = 2
#: A timestamp pyarrow's ISO 8601 cast reads exactly as pandas' ISO 8601 parser does.
_PLAIN_ISO = r"^\d{4}-\d\d-\d\d[ T]([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,6})?$"


class _Bail(Exception):
    """Raised inside the fast path when a block holds a malformed value: the reference path redoes it."""


class _NoLines:
    """Stands in for the block in :func:`build_flows` on the fast path: quarantining needs the line, and a
    block with anything to quarantine goes through the reference path instead."""

    first_no = 0

    @property
    def lines(self):
        raise _Bail


class _BailContext(ReadContext):
    def quarantine(self, *args, **kwargs) -> None:
        raise _Bail


def _fill(fh, left: bytes | bytearray, size: int) -> tuple[bytearray, bool]:
    """``left`` and up to ``size`` more bytes of ``fh`` in one new buffer, read into it in place (joining
    and slicing ``bytes`` copied every block twice: three quarters of the cutting's cost), with universal
    newlines (``\\r\\n`` and a lone ``\\r`` become ``\\n``, as the reference's text mode reads them, so
    that lines are counted alike). True when the file has ended."""
    buf = bytearray(len(left) + size)
    buf[: len(left)] = left
    filled, eof = len(left), False
    with memoryview(buf) as view:
        while filled < len(buf):
            got = fh.readinto(view[filled:])
            if not got:
                eof = True
                break
            filled += got
    del buf[filled:]
    if b"\r" in buf:  # ``left`` holds none: it was normalized with the block before
        while buf.endswith(b"\r") and not eof:  # keep a "\r\n" pair in one block ("\r\r\n" too)
            more = fh.read(1)
            eof = not more
            buf += more
        buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # a bytearray's replace gives a bytearray
    return buf, eof


def _line_blocks(fh, first_no: int, batch_rows: int, block_bytes: int) -> Iterator[tuple[bytearray, int, int, bool]]:
    """``(bytes, first line number, lines, ends a reference block)`` for the lines after the header, cut at
    about ``block_bytes`` and at every ``batch_rows`` lines (where the reference's blocks end, so quarantine
    entries can be filed in the reference's order). Each block's bytes end with ``\\n``."""
    # the bytes after the last cut: a partial line, or the lines past a reference block's end
    left: bytes | bytearray = b""
    no = first_no
    into = 0  # lines already given out of the current reference block
    eof = False
    while True:
        if eof:
            buf = bytearray(left)
        else:
            # a line longer than the buffer is read on until it ends, doubling the read each time
            buf, eof = _fill(fh, left, max(block_bytes, len(left)))
        if not buf:
            return
        if eof and not buf.endswith(b"\n"):
            buf += b"\n"  # the last line without a newline is still a line
        cut = buf.rfind(b"\n")
        if cut < 0:
            left = buf  # the next _fill copies it into a larger buffer
            continue
        nl = np.frombuffer(buf, dtype=np.uint8, count=cut + 1) == 10
        n = int(np.count_nonzero(nl))
        room = batch_rows - into
        if n > room:  # the reference's block ends inside: cut at its last line
            cut = int(np.flatnonzero(nl)[room - 1])
            n = room
        del nl
        left = buf[cut + 1:]  # a slice of a bytearray is its own copy
        del buf[cut + 1:]
        into += n
        ends = into == batch_rows or (eof and not left)
        yield buf, no, n, ends
        no += n
        if into == batch_rows:
            into = 0


def _header_line(fh) -> tuple[int, str | None] | None:
    """``(line number, text)`` of the first non-blank line, read as the reference's text mode reads it
    (``text`` None at the end of the file); None when a ``\\r`` line break comes first, which is left to
    the reference reader."""
    no = 0
    while True:
        raw = fh.readline()
        if not raw:
            return no, None
        if raw.endswith(b"\r") or b"\r" in raw[:-1]:
            return None
        no += 1
        text = raw.decode("utf-8", "replace")
        if no == 1 and text.startswith("\ufeff"):
            text = text[1:]
        text = text.rstrip("\n").rstrip("\r")
        if text.strip():
            return no, text


def read_fast(path: str | Path, ctx: ReadContext, arrow: bool = False, **options) -> Iterator[pd.DataFrame | pa.Table]:
    """:func:`~flamenco_core.ingest.cicflowmeter.read_cicflowmeter` with ``engine="fast"`` (module
    docstring); canonical Arrow tables when ``arrow``, else frames."""
    with open_maybe_compressed(path) as fh:
        found = _header_line(fh)
        if found is None:
            yield from read_cicflowmeter(path, ctx, **{**options, "engine": "reference"})
            return
        no, header_line = found
        if header_line is None:
            raise IngestError(f"{path}: empty file, no CICFlowMeter header")
        lay = cic_layout(path, header_line, ctx, options)
        usecols = lay.usecols
        str_cols = set(lay.str_cols)
        col_names = [f"c{i}" for i in range(lay.n_fields)]
        types = {f"c{i}": (pa.string() if i in str_cols else pa.float64()) for i in usecols}
        convert = pacsv.ConvertOptions(
            column_types=types, include_columns=[f"c{i}" for i in usecols], null_values=list(NA_STRINGS),
            strings_can_be_null=False, quoted_strings_can_be_null=False)

        # Quarantine entries of the current reference block, filed as the reference files them: wrong
        # field counts first, then bad values, each in line order.
        q_fields: list = []
        q_values: list = []
        for data, first_no, n_lines, ends, parsed in _parsed_ahead(
                _line_blocks(fh, no + 1, ctx.batch_rows, FAST_BLOCK_BYTES), col_names, convert):
            frame = None
            table = parsed.result()
            if table is not None:
                frame = _fast_block(table, lay, ctx, arrow)
            del table
            if frame is None:
                frame = _reference_block(data, first_no, n_lines, lay, ctx, q_fields, q_values)
            if ends:
                ctx.quarantined.extend(q_fields)
                ctx.quarantined.extend(q_values)
                q_fields, q_values = [], []
            if frame is None:
                continue
            if arrow and isinstance(frame, pd.DataFrame):  # a block the reference path read
                frame = to_flows_table(frame) if len(frame) else None
            if frame is not None and len(frame):
                yield frame
        ctx.quarantined.extend(q_fields)
        ctx.quarantined.extend(q_values)


def _parsed_ahead(blocks: Iterator[tuple[bytearray, int, int, bool]], col_names: list[str], convert):
    """The blocks of :func:`_line_blocks`, each with a future of its :func:`_parse`; the next
    :data:`_AHEAD` blocks are parsed on threads (pyarrow releases the GIL) while the caller checks and
    converts the current one."""
    with ThreadPoolExecutor(_AHEAD) as pool:
        queued: deque = deque()
        for block in blocks:
            queued.append(block + (pool.submit(_parse, block[0], block[2], col_names, convert),))
            if len(queued) > _AHEAD:
                yield queued.popleft()
        while queued:
            yield queued.popleft()


def _parse(data: bytes | bytearray, n_lines: int, col_names: list[str], convert) -> pa.Table | None:
    """The block as pyarrow parses it, or None when the reference path must read it (quotes, a line with
    the wrong field count, a text where a number belongs, a blank-looking line)."""
    if not n_lines or b'"' in data:
        return None
    invalid = []

    def on_invalid(row):
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=col_names, use_threads=_THREADS),
            parse_options=pacsv.ParseOptions(quote_char=False, newlines_in_values=False, invalid_row_handler=on_invalid),
            convert_options=convert,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        return None
    if invalid:
        return None
    if table.num_rows != n_lines:
        # pyarrow skips lines with no byte at all (no records either), and only those: count them only
        # when a line is missing, since searching every block for b"\n\n" costs a sixth of the parse
        nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        empty = int((np.diff(np.concatenate(([-1], nl))) == 1).sum())
        if table.num_rows != n_lines - empty:
            return None
    return table


def _fast_block(table: pa.Table, lay: CicLayout, ctx: ReadContext,
                arrow: bool = False) -> pd.DataFrame | pa.Table | None:
    """The block's rows from pyarrow's parsed ``table``, or None when the reference path must read it
    (any value :func:`build_flows` would quarantine)."""
    if arrow:
        out = _arrow_frame(table, lay)
        if out is not None:
            ctx.count_input(table.num_rows)
        return out
    df = pd.DataFrame({i: table.column(f"c{i}").to_pandas() for i in lay.usecols})
    del table
    try:
        frame = build_flows(df, lay, _BailContext(ctx.file), _NoLines(), np.arange(len(df)))
    except _Bail:
        return None
    ctx.count_input(len(df))
    return frame


def _reference_block(data: bytes | bytearray, first_no: int, n_lines: int, lay: CicLayout, ctx: ReadContext,
                     q_fields: list, q_values: list) -> pd.DataFrame | None:
    """The reference path for one block; its quarantine entries go to ``q_fields`` / ``q_values``."""
    text = data.decode("utf-8", "replace")[:-1]
    block = TextBlock(text, first_no, n_lines)
    a = ReadContext(ctx.file)
    rows, quoted = delimited_records(block, lay.n_fields, a)
    ctx.count_input(a.input_records)
    q_fields.extend(a.quarantined)
    if not len(rows):
        return None
    df = read_delimited(block, rows, quoted, lay.n_fields, lay.usecols, lay.str_cols)
    b = ReadContext(ctx.file)
    frame = build_flows(df, lay, b, block, rows)
    q_values.extend(b.quarantined)
    return frame


def _timestamps(col: pa.ChunkedArray, lay: CicLayout) -> pa.Array | None:
    """The timestamp column as ``timestamp[us, UTC]``, or None when a value is missing or malformed.

    Plain ISO 8601 texts in UTC (the common CIC-DDoS2019 case) are cast by Arrow, which reads them exactly
    as pandas' ISO 8601 parser does (checked by :data:`_PLAIN_ISO`, then the range pandas can hold); any
    other column goes through the reference's :func:`~flamenco_core.ingest.column_values.to_timestamp`."""
    typ = FLOW_KEY_FIELDS[0].type
    if (lay.tz or "UTC").upper() == "UTC" and lay.fmt is None and len(col) and pc.all(
            pc.match_substring_regex(col, _PLAIN_ISO)).as_py():
        try:
            us = pc.cast(col, pa.timestamp("us")).cast(pa.int64()).to_numpy().view("datetime64[us]")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            us = None
        if us is not None and not ((us < TS_MIN) | (us > TS_MAX)).any():
            return pa.array(us, typ)
    ts, missing, bad = to_timestamp(col.to_pandas(), lay.tz, lay.fmt, dayfirst=lay.dayfirst)
    if missing.any() or bad.any():
        return None
    return pa.array(ts.to_numpy(dtype="datetime64[us]"), typ)


def _has_blank_edge(col: pa.ChunkedArray) -> bool:
    """Whether a text's first or last byte may be whitespace to Python's ``strip``: anything but printable
    ASCII other than the space (a UTF-8 character beyond ASCII starts and ends with a byte above ``~``).
    Comparing the edge bytes costs half of a regular expression that scans every text."""
    raw = col.cast(pa.binary())
    edges = [pc.binary_slice(raw, 0, 1), pc.binary_slice(raw, -1)]
    odd = [pc.or_(pc.less(e, b"!"), pc.greater(e, b"~")) for e in edges]
    return bool(pc.any(pc.and_(pc.or_(*odd), pc.greater(pc.binary_length(raw), 0))).as_py())


def _stripped(col: pa.ChunkedArray) -> pa.Array:
    """``col`` with Python's ``strip`` applied (as the reference): Arrow's idea of whitespace differs from
    Python's at the edges, so only a column with a possibly-blank edge character goes through Python."""
    if not _has_blank_edge(col):
        return col.combine_chunks()
    return pa.array(col.to_pandas().str.strip().to_numpy(), pa.string())


def _arrow_frame(table: pa.Table, lay: CicLayout) -> pa.Table | None:
    """The canonical flows table (as :func:`~flamenco_core.ingest.schema.to_flows_table` of
    :func:`build_flows`'s frame) straight from pyarrow's columns: the ~80 float features are used as parsed,
    only the key columns are checked. None when any key value would be quarantined (the reference path
    then redoes the block and files it)."""
    keys = lay.keys
    n = table.num_rows
    ts = _timestamps(table.column(f"c{keys['timestamp']}"), lay)
    if ts is None:
        return None
    arrays = {"timestamp": ts}
    for key in ("src", "dst"):
        arrays[key] = _stripped(table.column(f"c{keys[key]}"))
    for key, hi, typ in (("src_port", 65535, pa.int32()), ("dst_port", 65535, pa.int32()), ("protocol", 255, pa.int16())):
        v = table.column(f"c{keys[key]}").to_numpy(zero_copy_only=False)  # float64, null -> NaN
        with np.errstate(invalid="ignore"):
            ok = (v == np.floor(v)) & (v >= 0) & (v <= hi)  # NaN (missing) fails too
        if not ok.all():
            return None
        arrays[key] = pa.array(v.astype(np.int64), pa.int64()).cast(typ)
    fields = list(FLOW_KEY_FIELDS)
    for i, name in lay.features:
        arrays[name] = table.column(f"c{i}").combine_chunks() if n else pa.array([], pa.float64())
        fields.append(pa.field(name, pa.float64()))
    if "label" in keys:
        lab = _stripped(table.column(f"c{keys['label']}"))
        arrays["label"] = pc.if_else(pc.equal(lab, ""), pa.scalar(None, pa.string()), lab)
        fields.append(pa.field("label", pa.string()))
    schema = pa.schema(fields, metadata={KIND_KEY: b"flows", b"flamenco.display_names": b"{}"})
    return pa.Table.from_arrays([arrays[f.name] for f in fields], schema=schema)
