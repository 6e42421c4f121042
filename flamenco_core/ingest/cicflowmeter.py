"""CICFlowMeter CSV (CIC-IDS2017, CSE-CIC-IDS2018, CIC-DDoS2019 and the like) into the flows table.

Details (what one record is, the columns, the options): docs/ingest.md, section cicflowmeter.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .base import IngestError, ReadContext, register
from .schema import snake_case
from .column_values import (
    RowProblems,
    add_int_problems,
    add_timestamp_problems,
    to_float,
    to_int,
    to_protocol,
    to_timestamp,
)
from .text_lines import LineSource, delimited_records, open_text, parse_header, read_delimited

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
    """Read a CICFlowMeter CSV into canonical flow frames of at most ``ctx.batch_rows`` rows
    (docs/ingest.md, cicflowmeter.py: the record definition, columns and options).

    ``engine="fast"`` (default) parses blocks of lines with pyarrow's CSV reader and sends any block it
    cannot take whole (quotes, a malformed line or value) through the reference path;
    ``engine="reference"`` reads every block with the reference path (line scan + pandas), the yardstick
    the fast path is tested against: both give the same rows, drops and quarantine, in the same order.
    With ``arrow=True`` (the ingest driver asks for it) the fast path yields canonical Arrow tables."""
    engine = options.get("engine", "fast")
    if engine == "fast":
        from .cicflowmeter_fast import read_fast  # here, not at the top: that module imports this one

        yield from read_fast(path, ctx, **options)
        return
    options.pop("arrow", None)  # the reference path yields frames
    if engine != "reference":
        raise IngestError(f"{path}: unknown engine {engine!r}; choose 'fast' or 'reference'")
    with open_text(path) as fh:
        src = LineSource(fh)
        head = src.header()
        if head is None:
            raise IngestError(f"{path}: empty file, no CICFlowMeter header")
        lay = cic_layout(path, head[1], ctx, options)
        for block in src.blocks(ctx.batch_rows):
            rows, quoted = delimited_records(block, lay.n_fields, ctx)
            if not len(rows):
                continue
            df = read_delimited(block, rows, quoted, lay.n_fields, lay.usecols, lay.str_cols)
            frame = build_flows(df, lay, ctx, block, rows)
            del df
            if frame is not None:
                yield frame


@dataclass
class CicLayout:
    """Where a CICFlowMeter file's columns are (:func:`cic_columns`) and how its values are read."""

    header: list[str]
    keys: dict[str, int]
    features: list[tuple[int, str]]
    tz: str | None
    fmt: str | None
    dayfirst: bool

    @property
    def n_fields(self) -> int:
        return len(self.header)

    @property
    def usecols(self) -> list[int]:
        return sorted([*self.keys.values(), *(i for i, _ in self.features)])

    @property
    def str_cols(self) -> list[int]:
        return [self.keys[k] for k in ("timestamp", "src", "dst", "label") if k in self.keys]


def cic_layout(path: str | Path, header_line: str, ctx: ReadContext, options: dict) -> CicLayout:
    """The layout of a file with this header line; fills ``ctx.display_names`` and ``ctx.template``.
    Raises :class:`IngestError` naming the file when a key column is missing."""
    header = parse_header(header_line)
    try:
        keys, features, _ = cic_columns(header, tuple(options.get("exclude_columns") or ()))
    except IngestError as exc:
        raise IngestError(f"{path}: {exc}") from None
    names = {k: header[i].strip() for k, i in keys.items()}
    names.update({name: header[i].strip() for i, name in features})
    ctx.display_names.update(names)
    # empty numpy columns, not empty Series: ~85 Series constructions cost a third of a second
    ctx.template = pd.DataFrame({
        **{k: np.empty(0, dtype=object) for k in REQUIRED},
        **{name: np.empty(0, dtype="float64") for _, name in features},
        **({"label": np.empty(0, dtype=object)} if "label" in keys else {}),
    })
    # CICFlowMeter prints dd/MM/yyyy (CIC-IDS2017's "5/7/2017 8:59" is 5 July), so day first by default
    return CicLayout(header, keys, features, options.get("tz"), options.get("timestamp_format"),
                     bool(options.get("dayfirst", True)))


def build_flows(df: pd.DataFrame, lay: CicLayout, ctx: ReadContext, block, rows: np.ndarray) -> pd.DataFrame | None:
    """Canonical flow rows of ``df`` (the parsed fields of ``block``'s lines at ``rows``); a row with a
    malformed key or feature value is quarantined with its line instead."""
    keys, features, header = lay.keys, lay.features, lay.header
    n = len(df)
    pr = RowProblems(n)
    ts_col = df[keys["timestamp"]]
    ts, missing, bad = to_timestamp(ts_col, lay.tz, lay.fmt, dayfirst=lay.dayfirst)
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


#: The ingest driver passes ``arrow=True`` to readers that say they accept it.
read_cicflowmeter.accepts_arrow = True
