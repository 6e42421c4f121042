"""Tabular readers (``csv``, ``parquet``): column maps, the kind decision and the canonical frames.

Details (what one record is, the columns, the options): docs/ingest.md, section tabular.py.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pandas as pd

from .base import IngestError, ReadContext, register
from .column_values import (  # noqa: F401  (re-exported: the readers' helpers were importable from here)
    EXTRA_TIMESTAMP_FORMATS,
    NA_STRINGS,
    NFDUMP_PROTOCOLS,
    PROTOCOL_NUMBERS,
    TS_MAX,
    TS_MIN,
    RowProblems,
    add_int_problems,
    add_timestamp_problems,
    as_text,
    to_float,
    to_int,
    to_protocol,
    to_timestamp,
    unix_seconds,
)
from .schema import snake_case
from .text_lines import (  # noqa: F401  (re-exported, as above)
    LineSource,
    TextBlock,
    delimited_records,
    open_text,
    parse_header,
    read_delimited,
)

log = logging.getLogger(__name__)

LATENCY_REQUIRED = ("timestamp", "src", "dst", "rtt_ms")
LATENCY_OPTIONAL = ("source", "measurement", "hop_ttl", "label")
FLOWS_REQUIRED = ("timestamp", "src", "dst", "src_port", "dst_port", "protocol")


def load_column_map(path: str | Path) -> tuple[dict[str, str], str | None]:
    """Read ``{canonical: original}`` (and an optional ``kind``) from a YAML file: either the mapping at
    top level or under ``column_map``."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise IngestError(f"cannot read column map {path}: {exc}") from exc
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        raise IngestError(f"column map {path}: expected a mapping canonical -> original, got {type(data).__name__}")
    kind = None
    if "column_map" in data:
        kind = data.get("kind")
        data = data["column_map"] or {}
        if not isinstance(data, dict):
            raise IngestError(f"column map {path}: 'column_map' must be a mapping canonical -> original")
    bad = {k: v for k, v in data.items() if not isinstance(k, str) or not isinstance(v, str)}
    if bad:
        raise IngestError(f"column map {path}: names must be strings, got {bad}")
    return dict(data), kind


def _options_map(options: dict) -> tuple[dict[str, str], str | None]:
    cmap: dict[str, str] = {}
    kind = options.get("kind")
    if options.get("column_map_path"):
        cmap, file_kind = load_column_map(options["column_map_path"])
        kind = kind or file_kind
    if options.get("column_map"):
        cmap = {**cmap, **dict(options["column_map"])}
    if kind not in (None, "latency", "flows"):
        raise IngestError(f"kind must be 'latency' or 'flows', not {kind!r}")
    return cmap, kind


def resolve_columns(path: str | Path, found: list[str], column_map: dict[str, str], kind: str | None) -> tuple[dict[str, str], str]:
    """Map canonical names to the file's columns and decide the kind.

    Each canonical column is found by ``column_map`` (canonical -> original), else by its own name,
    else by a column whose snake-cased name equals it. Raises :class:`IngestError` naming the file, the
    missing column(s) and the columns found."""
    found_set = set(found)
    by_snake: dict[str, str] = {}
    for c in found:
        by_snake.setdefault(snake_case(str(c)), c)
    wrong = {k: v for k, v in column_map.items() if v not in found_set}
    if wrong:
        raise IngestError(
            f"{path}: column_map names column(s) not in the file: "
            + ", ".join(f"{k} -> {v!r}" for k, v in wrong.items())
            + f"; found columns: {found}"
        )
    mapped_originals = set(column_map.values())

    def lookup(canonical: str) -> str | None:
        if canonical in column_map:
            return column_map[canonical]
        if canonical in found_set and canonical not in mapped_originals:
            return canonical
        c = by_snake.get(canonical)
        return c if c is not None and c not in mapped_originals else None

    if kind is None:
        kind = "latency" if lookup("rtt_ms") is not None else "flows"
    required = LATENCY_REQUIRED if kind == "latency" else FLOWS_REQUIRED
    optional = LATENCY_OPTIONAL if kind == "latency" else ("label",)
    resolved = {c: lookup(c) for c in (*required, *optional)}
    missing = [c for c in required if resolved[c] is None]
    if missing:
        raise IngestError(
            f"{path}: missing required column(s) {', '.join(missing)} for {kind} data; found columns: {found}. "
            "Map them with column_map (canonical -> original)"
        )
    return {k: v for k, v in resolved.items() if v is not None}, kind


def tabular_kind(path: str | Path, fmt: str | None = None, **options) -> str:
    """``"latency"`` or ``"flows"`` for a tabular file, reading only its header or schema (for the driver,
    since ``csv``/``parquet`` are registered with kind ``"auto"``)."""
    cmap, kind = _options_map(options)
    fmt = fmt or ("parquet" if str(path).endswith((".parquet", ".pq")) else "csv")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        found = list(pq.ParquetFile(path).schema_arrow.names)
    else:
        with open_text(path) as fh:
            head = LineSource(fh).header()
        if head is None:
            raise IngestError(f"{path}: empty file, no header line")
        found = parse_header(head[1], options.get("sep", ","))
    return resolve_columns(path, found, cmap, kind)[1]


class _TabularBuilder:
    """Turns frames with the file's column names into canonical frames, column-wise."""

    def __init__(self, path, ctx: ReadContext, found: list[str], options: dict, default_source: str):
        cmap, kind = _options_map(options)
        self.path = path
        self.ctx = ctx
        self.cols, self.kind = resolve_columns(path, found, cmap, kind)
        self.tz = options.get("tz")
        self.fmt = options.get("timestamp_format")
        self.unit = options.get("timestamp_unit", "s")
        self.dayfirst = bool(options.get("dayfirst", False))
        self.source = options.get("source", default_source)
        self.measurement = options.get("measurement", Path(str(path)).stem)
        excluded = set(options.get("exclude_columns") or ())
        self.candidates: list[str] = []
        if self.kind == "flows":
            used = set(self.cols.values())
            self.candidates = [c for c in found if c not in used and c not in excluded]
        self.features: list[tuple[str, str]] | None = None  # (original, snake) once decided
        names = {k: str(v) for k, v in self.cols.items()}
        ctx.display_names.update(names)

    def needed(self) -> list[str]:
        return list(dict.fromkeys([*self.cols.values(), *self.candidates]))

    def text_columns(self) -> list[str]:
        keys = ("timestamp", "src", "dst", "label", "source", "measurement", "protocol")
        return [self.cols[k] for k in keys if k in self.cols]

    def _decide_features(self, df: pd.DataFrame) -> None:
        feats: list[tuple[str, str]] = []
        taken = set(FLOWS_REQUIRED) | {"label"}
        for c in self.candidates:
            col = df[c]
            if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
                values, bad = to_float(col)
                present = int((~np.isnan(values)).sum() + bad.sum())
                if present and bad.sum() * 2 > present:
                    log.warning("%s: column %r is not numeric; left out of the features", self.path, c)
                    continue
            name = snake_case(str(c)) or "column"
            base, k = name, 1
            while name in taken:
                name = f"{base}_{k}"
                k += 1
            taken.add(name)
            feats.append((c, name))
        self.features = feats
        self.ctx.display_names.update({snake: str(orig) for orig, snake in feats})

    def build(self, df: pd.DataFrame, record_nos: np.ndarray, raw_of: Callable[[int], str]) -> pd.DataFrame | None:
        n = len(df)
        if n == 0:
            return None
        pr = RowProblems(n)
        out: dict[str, object] = {}
        c = self.cols
        ts, missing, bad = to_timestamp(df[c["timestamp"]], self.tz, self.fmt, self.unit, self.dayfirst)
        add_timestamp_problems(pr, str(c["timestamp"]), df[c["timestamp"]], missing, bad)
        out["timestamp"] = ts.array
        out["src"] = as_text(df[c["src"]]).str.strip().to_numpy()
        out["dst"] = as_text(df[c["dst"]]).str.strip().to_numpy()
        if self.kind == "latency":
            rtt, rbad = to_float(df[c["rtt_ms"]])
            pr.add(rbad, str(c["rtt_ms"]), "unparsable number", df[c["rtt_ms"]])
            out["rtt_ms"] = rtt
            out["source"] = as_text(df[c["source"]]).to_numpy() if "source" in c else np.full(n, self.source, dtype=object)
            out["measurement"] = (
                as_text(df[c["measurement"]]).to_numpy() if "measurement" in c else np.full(n, self.measurement, dtype=object)
            )
            if "hop_ttl" in c:
                ttl, tmiss, tbad = to_int(df[c["hop_ttl"]], 0, 255)
                pr.add(tbad, str(c["hop_ttl"]), "unparsable hop TTL", df[c["hop_ttl"]])
                out["hop_ttl"] = pd.arrays.IntegerArray(ttl.astype("int16"), tmiss)
            else:
                out["hop_ttl"] = pd.arrays.IntegerArray(np.zeros(n, dtype="int16"), np.ones(n, dtype=bool))
        else:
            for key, lo_hi, what in (("src_port", (0, 65535), "port"), ("dst_port", (0, 65535), "port")):
                vals, miss, ibad = to_int(df[c[key]], *lo_hi)
                add_int_problems(pr, str(c[key]), df[c[key]], miss, ibad, what)
                out[key] = vals
            vals, miss, ibad = to_protocol(df[c["protocol"]])
            add_int_problems(pr, str(c["protocol"]), df[c["protocol"]], miss, ibad, "protocol")
            out["protocol"] = vals
            if self.features is None:
                self._decide_features(df)
            for orig, snake in self.features or ():
                vals, fbad = to_float(df[orig])
                pr.add(fbad, str(orig), "unparsable number", df[orig])
                out[snake] = vals
        if "label" in c:
            lab = df[c["label"]]
            out["label"] = as_text(lab).str.strip().where(lab.notna(), None).to_numpy()
        frame = pd.DataFrame(out)
        if pr.bad.any():
            pr.quarantine(self.ctx, record_nos, raw_of)
            frame = frame[~pr.bad].reset_index(drop=True)
        return frame if len(frame) else None


@register("csv", "auto")
def read_csv(path: str | Path, ctx: ReadContext, **options) -> Iterator[pd.DataFrame]:
    """Read a delimited text file of latency or flow rows (docs/ingest.md, tabular.py: the options,
    the record definition and how the kind is decided)."""
    sep = options.get("sep", ",")
    with open_text(path) as fh:
        src = LineSource(fh)
        head = src.header()
        if head is None:
            raise IngestError(f"{path}: empty file, no header line")
        found = parse_header(head[1], sep)
        if len(set(found)) != len(found):
            dup = sorted({c for c in found if found.count(c) > 1})
            raise IngestError(f"{path}: duplicated column name(s) {dup} in the header")
        b = _TabularBuilder(path, ctx, found, options, default_source="csv")
        pos = {c: i for i, c in enumerate(found)}
        usecols = sorted(pos[c] for c in b.needed())
        str_cols = {pos[c] for c in b.text_columns()}
        for block in src.blocks(ctx.batch_rows):
            rows, quoted = delimited_records(block, len(found), ctx, sep)
            if not len(rows):
                continue
            raw = read_delimited(block, rows, quoted, len(found), usecols, str_cols, sep)
            df = raw.rename(columns={i: found[i] for i in usecols})
            frame = b.build(df, block.first_no + rows, lambda i, block=block, rows=rows: block.lines[rows[i]])
            if frame is not None:
                yield frame


@register("parquet", "auto")
def read_parquet(path: str | Path, ctx: ReadContext, **options) -> Iterator[pd.DataFrame]:
    """Read a Parquet file of latency or flow rows in batches (``ParquetFile.iter_batches``); a record
    is a row, numbered from 1. See docs/ingest.md (tabular.py) for options and the kind decision."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise IngestError(f"{path}: not a readable Parquet file: {exc}") from exc
    found = list(pf.schema_arrow.names)
    b = _TabularBuilder(path, ctx, found, options, default_source="csv")
    offset = 0
    for batch in pf.iter_batches(batch_size=max(1, ctx.batch_rows), columns=b.needed()):
        df = batch.to_pandas()
        n = len(df)
        ctx.count_input(n)
        record_nos = np.arange(offset + 1, offset + n + 1)
        offset += n
        frame = b.build(df, record_nos, lambda i, df=df: json.dumps({str(k): v for k, v in df.iloc[i].items()}, default=str))
        if frame is not None:
            yield frame
