"""CICFlowMeter CSV (CIC-IDS2017, CSE-CIC-IDS2018, CIC-DDoS2019 and the like) into the flows table.

Record: one non-blank line after the header; its record number is the 1-based line number in the file.
Each record ends as one row, or is quarantined when malformed: the wrong number of fields (a truncated
or over-long line), a text where a number belongs (the field is named), or an unparsable or missing
timestamp, port or protocol. ``NaN`` and ``Infinity`` stay in the rows as NaN and inf; the driver
drops them with reasons.

Columns, matched on the snake-cased header (CIC-DDoS2019 writes most names with a leading space):

- ``Source IP``/``Src IP`` -> ``src``, ``Destination IP``/``Dst IP`` -> ``dst``, ``Source Port``/``Src Port``
  -> ``src_port``, ``Destination Port``/``Dst Port`` -> ``dst_port``, ``Protocol`` -> ``protocol`` (already
  the IANA number), ``Timestamp`` -> ``timestamp``, ``Label`` -> ``label`` (text as written, whitespace
  trimmed);
- :data:`EXCLUDED_COLUMNS` (row index, flow id, the HTTP URL) are not features;
- every other column is a numeric feature named by :func:`~flamenco_core.ingest.schema.snake_case`
  (``" Average Packet Size"`` -> ``average_packet_size``, ``"Flow Bytes/s"`` -> ``flow_bytes_s``).

``ctx.display_names`` maps each canonical name to the header as written, without the surrounding
spaces (``"flow_iat_min": "Flow IAT Min"``).

Options: ``tz`` (time zone of the naive timestamps, default UTC), ``timestamp_format`` (strftime
format; default ISO 8601, e.g. ``2018-12-01 09:17:11.183810``, or guessed for other CIC versions),
``dayfirst`` (for the guess of a non-ISO format; default True, as CICFlowMeter prints
``dd/MM/yyyy``), ``exclude_columns`` (more header names to leave out of the features).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .base import IngestError, ReadContext, open_maybe_compressed, register
from .schema import FLOW_KEY_FIELDS, KIND_KEY, snake_case, to_flows_table
from .column_values import (
    NA_STRINGS,
    RowProblems,
    add_int_problems,
    add_timestamp_problems,
    to_float,
    to_int,
    to_protocol,
    to_timestamp,
)
from .text_lines import LineSource, TextBlock, delimited_records, open_text, parse_header, read_delimited

#: Columns that are not flow features: the pandas row index the dataset was saved with, the flow id
#: (a text made of the 5-tuple) and the HTTP URL CIC-DDoS2019 adds. Matched on snake-cased names.
EXCLUDED_COLUMNS = ("Unnamed: 0", "Flow ID", "SimillarHTTP")
_EXCLUDED_SNAKE = {snake_case(c) for c in EXCLUDED_COLUMNS} | {"similarhttp", "index"}

#: canonical column -> snake-cased header names it is read from
KEY_ALIASES = {
    "src": ("source_ip", "src_ip"),
    "dst": ("destination_ip", "dst_ip"),
    "src_port": ("source_port", "src_port"),
    "dst_port": ("destination_port", "dst_port"),
    "protocol": ("protocol",),
    "timestamp": ("timestamp",),
    "label": ("label",),
}
REQUIRED = ("timestamp", "src", "dst", "src_port", "dst_port", "protocol")


def cic_columns(header: list[str], exclude: tuple[str, ...] = ()) -> tuple[dict[str, int], list[tuple[int, str]], list[str]]:
    """Assign header positions: ``({canonical key: position}, [(position, feature name)], [excluded headers])``.

    Raises :class:`IngestError` when a key column is missing."""
    snakes = [snake_case(h) for h in header]
    keys: dict[str, int] = {}
    for canonical, aliases in KEY_ALIASES.items():
        for i, s in enumerate(snakes):
            if s in aliases:
                keys[canonical] = i
                break
    missing = [k for k in REQUIRED if k not in keys]
    if missing:
        raise IngestError(
            f"missing CICFlowMeter column(s) for {', '.join(missing)}; header has {[h.strip() for h in header]}"
        )
    skip = _EXCLUDED_SNAKE | {snake_case(c) for c in exclude}
    used = set(keys.values())
    taken = set(keys)
    features: list[tuple[int, str]] = []
    excluded: list[str] = []
    for i, s in enumerate(snakes):
        if i in used:
            continue
        if s in skip or s.startswith("unnamed_"):
            excluded.append(header[i].strip())
            continue
        name, k = s or "column", 1
        while name in taken:  # a header repeated verbatim (raw CIC-IDS2017 has two "Fwd Header Length")
            name = f"{s}_{k}"
            k += 1
        taken.add(name)
        features.append((i, name))
    return keys, features, excluded


@register("cicflowmeter", "flows")
def read_cicflowmeter(path: str | Path, ctx: ReadContext, **options) -> Iterator[pd.DataFrame]:
    """Read a CICFlowMeter CSV into canonical flow frames of at most ``ctx.batch_rows`` rows (see the
    module docstring for the record definition, columns and options).

    ``engine="fast"`` (default) parses blocks of lines with pyarrow's CSV reader and sends any block it
    cannot take whole (quotes, a malformed line or value) through the reference path;
    ``engine="reference"`` reads every block with the reference path (line scan + pandas), the yardstick
    the fast path is tested against: both give the same rows, drops and quarantine, in the same order.
    With ``arrow=True`` (the ingest driver asks for it) the fast path yields canonical Arrow tables."""
    engine = options.get("engine", "fast")
    if engine == "fast":
        yield from _read_fast(path, ctx, **options)
        return
    options.pop("arrow", None)  # the reference path yields frames
    if engine != "reference":
        raise IngestError(f"{path}: unknown engine {engine!r}; choose 'fast' or 'reference'")
    tz = options.get("tz")
    fmt = options.get("timestamp_format")
    # CICFlowMeter prints dd/MM/yyyy (CIC-IDS2017's "5/7/2017 8:59" is 5 July), so day first by default
    dayfirst = bool(options.get("dayfirst", True))
    with open_text(path) as fh:
        src = LineSource(fh)
        head = src.header()
        if head is None:
            raise IngestError(f"{path}: empty file, no CICFlowMeter header")
        header = parse_header(head[1])
        try:
            keys, features, _ = cic_columns(header, tuple(options.get("exclude_columns") or ()))
        except IngestError as exc:
            raise IngestError(f"{path}: {exc}") from None
        names = {k: header[i].strip() for k, i in keys.items()}
        names.update({name: header[i].strip() for i, name in features})
        ctx.display_names.update(names)
        ctx.template = pd.DataFrame({
            **{k: pd.Series(dtype="object") for k in REQUIRED},
            **{name: pd.Series(dtype="float64") for _, name in features},
            **({"label": pd.Series(dtype="object")} if "label" in keys else {}),
        })
        n_fields = len(header)
        usecols = sorted([*keys.values(), *(i for i, _ in features)])
        str_cols = [keys[k] for k in ("timestamp", "src", "dst", "label") if k in keys]

        for block in src.blocks(ctx.batch_rows):
            rows, quoted = delimited_records(block, n_fields, ctx)
            if not len(rows):
                continue
            df = read_delimited(block, rows, quoted, n_fields, usecols, str_cols)
            frame = _build(df, keys, features, header, tz, fmt, dayfirst, ctx, block, rows)
            del df
            if frame is not None:
                yield frame


def _build(df, keys, features, header, tz, fmt, dayfirst, ctx, block, rows) -> pd.DataFrame | None:
    n = len(df)
    pr = RowProblems(n)
    ts_col = df[keys["timestamp"]]
    ts, missing, bad = to_timestamp(ts_col, tz, fmt, dayfirst=dayfirst)
    add_timestamp_problems(pr, header[keys["timestamp"]].strip(), ts_col, missing, bad)
    key_cols: dict[str, object] = {
        "timestamp": ts.array,
        "src": df[keys["src"]].astype(str).str.strip().array,
        "dst": df[keys["dst"]].astype(str).str.strip().array,
    }
    for key in ("src_port", "dst_port"):
        col = df[keys[key]]
        vals, miss, ibad = to_int(col, 0, 65535)
        add_int_problems(pr, header[keys[key]].strip(), col, miss, ibad, "port")
        key_cols[key] = vals
    col = df[keys["protocol"]]
    vals, miss, ibad = to_protocol(col)
    add_int_problems(pr, header[keys["protocol"]].strip(), col, miss, ibad, "protocol")
    key_cols["protocol"] = vals
    # one 2-D float block: building 80 separate columns costs more than the parsing
    feats = np.empty((n, len(features)), dtype="float64")
    for j, (i, _) in enumerate(features):
        col = df[i]
        feats[:, j], fbad = to_float(col)
        pr.add(fbad, header[i].strip(), "unparsable number", col)
    parts = [pd.DataFrame(key_cols), pd.DataFrame(feats, columns=[name for _, name in features], copy=False)]
    if "label" in keys:
        lab = df[keys["label"]].astype(str).str.strip()
        parts.append(pd.DataFrame({"label": lab.where(lab != "", None).array}))
    frame = pd.concat(parts, axis=1)
    if pr.bad.any():
        pr.quarantine(ctx, block.first_no + rows, lambda i: block.lines[rows[i]])
        frame = frame[~pr.bad].reset_index(drop=True)
    return frame if len(frame) else None


# --------------------------------------------------------------------------------------------------
# Fast path: pyarrow's CSV reader over byte blocks, the reference path for any block it cannot take whole.

#: Bytes parsed at a time by the fast path (bounded memory: a block, its Arrow table and its frame).
FAST_BLOCK_BYTES = 8 << 20


class _Bail(Exception):
    """Raised inside the fast path when a block holds a malformed value: the reference path redoes it."""


class _NoLines:
    """Stands in for the block in :func:`_build` on the fast path: quarantining needs the line, and a
    block with anything to quarantine goes through the reference path instead."""

    first_no = 0

    @property
    def lines(self):
        raise _Bail


class _BailContext(ReadContext):
    def quarantine(self, *args, **kwargs) -> None:
        raise _Bail


def _normalized_chunks(fh, size: int) -> Iterator[bytes]:
    """The file's bytes with universal newlines (``\\r\\n`` and a lone ``\\r`` become ``\\n``), as the
    reference's text mode reads them, so that lines are counted alike."""
    while True:
        chunk = fh.read(size)
        if not chunk:
            return
        if chunk.endswith(b"\r"):
            chunk += fh.read(1)  # keep a "\r\n" pair in one chunk
        if b"\r" in chunk:
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        yield chunk


def _line_blocks(fh, first_no: int, batch_rows: int, block_bytes: int) -> Iterator[tuple[bytes, int, int, bool]]:
    """``(bytes, first line number, lines, ends a reference block)`` for the lines after the header, cut at
    ``block_bytes`` and at every ``batch_rows`` lines (where the reference's blocks end, so quarantine
    entries can be filed in the reference's order). Each block's bytes end with ``\\n``."""
    buf = b""
    no = first_no
    into = 0  # lines already given out of the current reference block
    chunks = _normalized_chunks(fh, block_bytes)
    eof = False
    while True:
        while not eof and (len(buf) < block_bytes or buf.count(b"\n") == 0):
            chunk = next(chunks, None)
            if chunk is None:
                eof = True
            else:
                buf += chunk
        if not buf:
            return
        if eof and not buf.endswith(b"\n"):
            buf += b"\n"  # the last line without a newline is still a line
        room = batch_rows - into
        cut = buf.rfind(b"\n", 0, block_bytes)
        if cut < 0:  # one line longer than a block: take it whole
            cut = buf.find(b"\n")
        head = buf[: cut + 1]
        n = head.count(b"\n")
        if n > room:  # the reference's block ends inside: cut at its last line
            nl = np.flatnonzero(np.frombuffer(head, dtype=np.uint8) == 10)
            head = buf[: int(nl[room - 1]) + 1]
            n = room
        buf = buf[len(head):]
        into += n
        ends = into == batch_rows or (eof and not buf)
        yield head, no, n, ends
        no += n
        if into == batch_rows:
            into = 0


def _read_fast(path: str | Path, ctx: ReadContext, arrow: bool = False, **options) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    tz = options.get("tz")
    fmt = options.get("timestamp_format")
    dayfirst = bool(options.get("dayfirst", True))
    with open_maybe_compressed(path) as fh:
        # The header: the first non-blank line, read as the reference's text mode reads it.
        no = 0
        header_line = None
        pending = b""
        while header_line is None:
            raw = fh.readline()
            if not raw:
                break
            if raw.endswith(b"\r") or b"\r" in raw[:-1]:
                # a "\r" line break inside the header region: leave the file to the reference reader
                yield from read_cicflowmeter(path, ctx, **{**options, "engine": "reference"})
                return
            no += 1
            text = raw.decode("utf-8", "replace")
            if no == 1 and text.startswith("\ufeff"):
                text = text[1:]
            text = text.rstrip("\n").rstrip("\r")
            if text.strip():
                header_line = text
        del pending
        if header_line is None:
            raise IngestError(f"{path}: empty file, no CICFlowMeter header")
        header = parse_header(header_line)
        try:
            keys, features, _ = cic_columns(header, tuple(options.get("exclude_columns") or ()))
        except IngestError as exc:
            raise IngestError(f"{path}: {exc}") from None
        names = {k: header[i].strip() for k, i in keys.items()}
        names.update({name: header[i].strip() for i, name in features})
        ctx.display_names.update(names)
        ctx.template = pd.DataFrame({
            **{k: pd.Series(dtype="object") for k in REQUIRED},
            **{name: pd.Series(dtype="float64") for _, name in features},
            **({"label": pd.Series(dtype="object")} if "label" in keys else {}),
        })
        n_fields = len(header)
        usecols = sorted([*keys.values(), *(i for i, _ in features)])
        str_cols = [keys[k] for k in ("timestamp", "src", "dst", "label") if k in keys]
        col_names = [f"c{i}" for i in range(n_fields)]
        types = {f"c{i}": (pa.string() if i in str_cols else pa.float64()) for i in usecols}
        convert = pacsv.ConvertOptions(
            column_types=types, include_columns=[f"c{i}" for i in usecols], null_values=list(NA_STRINGS),
            strings_can_be_null=False, quoted_strings_can_be_null=False)

        # Quarantine entries of the current reference block, filed as the reference files them: wrong
        # field counts first, then bad values, each in line order.
        q_fields: list = []
        q_values: list = []
        for data, first_no, n_lines, ends in _line_blocks(fh, no + 1, ctx.batch_rows, FAST_BLOCK_BYTES):
            frame = None
            if n_lines and b'"' not in data:
                frame = _fast_block(data, n_lines, pacsv, col_names, convert, usecols, keys, features, header,
                                    tz, fmt, dayfirst, ctx, arrow)
            if frame is None:
                frame = _reference_block(data, first_no, n_lines, n_fields, usecols, str_cols, keys, features,
                                         header, tz, fmt, dayfirst, ctx, q_fields, q_values)
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


def _fast_block(data, n_lines, pacsv, col_names, convert, usecols, keys, features, header, tz, fmt, dayfirst,
                ctx, arrow=False) -> pd.DataFrame | None:
    """The block's frame from pyarrow's parser, or None when the reference path must read it (a line
    with the wrong field count, a text where a number belongs, a blank-looking line, any value
    :func:`_build` would quarantine)."""
    import pyarrow as pa

    invalid = []

    def on_invalid(row):
        invalid.append(row)
        return "skip"

    empty = 0  # lines with no byte at all (pyarrow skips them; they are no records either)
    if data.startswith(b"\n") or b"\n\n" in data:
        nl = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
        empty = int((np.diff(np.concatenate(([-1], nl))) == 1).sum())
    try:
        table = pacsv.read_csv(
            pa.py_buffer(data),
            # threads parse the block's 1 MB pieces in parallel; rows keep their order
            read_options=pacsv.ReadOptions(column_names=col_names, use_threads=True),
            parse_options=pacsv.ParseOptions(quote_char=False, newlines_in_values=False, invalid_row_handler=on_invalid),
            convert_options=convert,
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        return None
    if invalid or table.num_rows != n_lines - empty:
        return None
    if arrow:
        out = _arrow_frame(table, keys, features, tz, fmt, dayfirst)
        if out is not None:
            ctx.count_input(table.num_rows)
        return out
    df = pd.DataFrame({i: table.column(f"c{i}").to_pandas() for i in usecols})
    del table
    probe = _BailContext(ctx.file)
    try:
        frame = _build(df, keys, features, header, tz, fmt, dayfirst, probe, _NoLines(), np.arange(len(df)))
    except _Bail:
        return None
    ctx.count_input(len(df))
    return frame


def _reference_block(data, first_no, n_lines, n_fields, usecols, str_cols, keys, features, header, tz, fmt,
                     dayfirst, ctx, q_fields, q_values) -> pd.DataFrame | None:
    """The reference path for one block; its quarantine entries go to ``q_fields`` / ``q_values``."""
    text = data.decode("utf-8", "replace")[:-1]
    block = TextBlock(text, first_no, n_lines)
    a = ReadContext(ctx.file)
    rows, quoted = delimited_records(block, n_fields, a)
    ctx.count_input(a.input_records)
    q_fields.extend(a.quarantined)
    if not len(rows):
        return None
    df = read_delimited(block, rows, quoted, n_fields, usecols, str_cols)
    b = ReadContext(ctx.file)
    frame = _build(df, keys, features, header, tz, fmt, dayfirst, b, block, rows)
    q_values.extend(b.quarantined)
    return frame


#: The ingest driver passes ``arrow=True`` to readers that say they accept it.
read_cicflowmeter.accepts_arrow = True


def _arrow_frame(table, keys, features, tz, fmt, dayfirst):
    """The canonical flows table (as :func:`~flamenco_core.ingest.schema.to_flows_table` of :func:`_build`'s
    frame) straight from pyarrow's columns: the ~80 float features are used as parsed, only the key
    columns are checked. None when any key value would be quarantined (the reference path then redoes
    the block and files it)."""
    import pyarrow as pa

    n = table.num_rows
    ts_text = table.column(f"c{keys['timestamp']}").to_pandas()
    ts, missing, bad = to_timestamp(ts_text, tz, fmt, dayfirst=dayfirst)
    if missing.any() or bad.any():
        return None
    arrays = {"timestamp": pa.array(ts.to_numpy(dtype="datetime64[us]"), FLOW_KEY_FIELDS[0].type)}
    for key in ("src", "dst"):
        # Python's strip, as the reference: its idea of whitespace differs from Arrow's at the edges
        arrays[key] = pa.array(table.column(f"c{keys[key]}").to_pandas().str.strip().to_numpy(), pa.string())
    for key, hi, typ in (("src_port", 65535, pa.int32()), ("dst_port", 65535, pa.int32()), ("protocol", 255, pa.int16())):
        v = table.column(f"c{keys[key]}").to_numpy(zero_copy_only=False)  # float64, null -> NaN
        with np.errstate(invalid="ignore"):
            ok = (v == np.floor(v)) & (v >= 0) & (v <= hi)  # NaN (missing) fails too
        if not ok.all():
            return None
        arrays[key] = pa.array(v.astype(np.int64), pa.int64()).cast(typ)
    fields = list(FLOW_KEY_FIELDS)
    for i, name in features:
        arrays[name] = table.column(f"c{i}").combine_chunks() if n else pa.array([], pa.float64())
        fields.append(pa.field(name, pa.float64()))
    if "label" in keys:
        lab = table.column(f"c{keys['label']}").to_pandas().str.strip()
        arrays["label"] = pa.array(lab.where(lab != "", None).to_numpy(), pa.string())
        fields.append(pa.field("label", pa.string()))
    schema = pa.schema(fields, metadata={KIND_KEY: b"flows", b"flamenco.display_names": b"{}"})
    return pa.Table.from_arrays([arrays[f.name] for f in fields], schema=schema)
