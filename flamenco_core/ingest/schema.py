"""Canonical Arrow schemas shared by every reader (the contract of DESIGN.md).

Latency rows are one RTT each; flow rows are one flow record each. Readers produce pandas frames whose
columns follow these schemas; :func:`to_latency_table` / :func:`to_flows_table` coerce and validate them.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pyarrow as pa

TS_TYPE = pa.timestamp("us", tz="UTC")

LATENCY_SCHEMA = pa.schema(
    [
        pa.field("timestamp", TS_TYPE, nullable=False),
        pa.field("src", pa.string(), nullable=False),
        pa.field("dst", pa.string(), nullable=False),
        pa.field("rtt_ms", pa.float64(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("measurement", pa.string(), nullable=False),
        pa.field("hop_ttl", pa.int16(), nullable=True),
    ]
)
LATENCY_COLUMNS = [f.name for f in LATENCY_SCHEMA]

FLOW_KEY_FIELDS = [
    pa.field("timestamp", TS_TYPE, nullable=False),
    pa.field("src", pa.string(), nullable=False),
    pa.field("dst", pa.string(), nullable=False),
    pa.field("src_port", pa.int32(), nullable=True),
    pa.field("dst_port", pa.int32(), nullable=True),
    pa.field("protocol", pa.int16(), nullable=True),
]
FLOW_KEY_COLUMNS = [f.name for f in FLOW_KEY_FIELDS]

#: Parquet schema-metadata key holding {canonical column: original display name}.
DISPLAY_NAMES_KEY = b"flamenco.display_names"
KIND_KEY = b"flamenco.kind"

_NON_WORD = re.compile(r"[^0-9a-zA-Z]+")


def snake_case(name: str) -> str:
    """Snake-case an original column name: ``' Flow IAT Min'`` -> ``'flow_iat_min'``.

    Every run of non-alphanumerics becomes one ``_`` (``Flow Bytes/s`` -> ``flow_bytes_s``, CIC's
    duplicated ``Fwd Header Length.1`` -> ``fwd_header_length_1``).
    """
    return _NON_WORD.sub("_", name.strip()).strip("_").lower()


def _ts(series: pd.Series) -> pd.Series:
    """UTC instants as naive ``datetime64[us]``: the Arrow schema carries the UTC zone, and handing pyarrow
    naive UTC values avoids pandas' deprecated tz-dropping ``.values`` path."""
    s = series if pd.api.types.is_datetime64_any_dtype(series) else pd.to_datetime(series, utc=True)
    if getattr(s.dt, "tz", None) is not None:
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return s.astype("datetime64[us]")


def to_latency_table(df: pd.DataFrame) -> pa.Table:
    """Coerce a latency frame to :data:`LATENCY_SCHEMA` (plus ``label`` and ``truth`` when present: the
    user's labeled pool and the ground truth that only scores rows outside it)."""
    out = pd.DataFrame(
        {
            "timestamp": _ts(df["timestamp"]),
            "src": df["src"].astype(str),
            "dst": df["dst"].astype(str),
            "rtt_ms": pd.to_numeric(df["rtt_ms"]).astype("float64"),
            "source": df["source"].astype(str),
            "measurement": df["measurement"].astype(str),
            "hop_ttl": (df["hop_ttl"] if "hop_ttl" in df else pd.Series(pd.NA, index=df.index)).astype("Int16"),
        }
    )
    schema = LATENCY_SCHEMA
    if "label" in df.columns:
        out["label"] = df["label"].astype("string")
        schema = schema.append(pa.field("label", pa.string()))
    if "truth" in df.columns:
        out["truth"] = df["truth"].astype("string")
        schema = schema.append(pa.field("truth", pa.string()))
    table = pa.Table.from_pandas(out, schema=schema, preserve_index=False)
    return table.replace_schema_metadata({KIND_KEY: b"latency"})


def to_flows_table(df: pd.DataFrame, display_names: dict[str, str] | None = None) -> pa.Table:
    """Coerce a flows frame: key columns typed as :data:`FLOW_KEY_FIELDS`, every other column float64
    except ``label`` (string). ``display_names`` maps canonical names to the originals and is kept in the
    Parquet metadata so plots and trees can show what the user's tool called the feature."""
    cols = {}
    fields = []
    for f in FLOW_KEY_FIELDS:
        if f.name == "timestamp":
            cols[f.name] = _ts(df[f.name])
        elif pa.types.is_string(f.type):
            cols[f.name] = df[f.name].astype(str)
        else:
            cols[f.name] = pd.to_numeric(df[f.name]).astype({pa.int32(): "Int32", pa.int16(): "Int16"}[f.type])
        fields.append(f)
    feats = {}
    for c in df.columns:
        if c in cols or c == "label":
            continue
        feats[c] = pd.to_numeric(df[c]).astype("float64")
        fields.append(pa.field(c, pa.float64()))
    if "label" in df.columns:
        cols["label"] = df["label"].astype("string")
        fields.append(pa.field("label", pa.string()))
    keys = pa.Table.from_pandas(pd.DataFrame(cols, index=df.index), preserve_index=False)
    # Features straight from numpy, one column at a time: gathering ~80 float columns into one pandas
    # block first (and splitting it again) cost more than parsing them. from_pandas=True maps NaN to
    # null, as Table.from_pandas does.
    arrays = {name: keys[name] for name in keys.column_names}
    arrays.update({c: pa.array(v.to_numpy(), pa.float64(), from_pandas=True) for c, v in feats.items()})
    schema = pa.schema(fields)
    table = pa.Table.from_arrays([arrays[f.name].cast(f.type) for f in schema], schema=schema)
    meta = {KIND_KEY: b"flows", DISPLAY_NAMES_KEY: json.dumps(display_names or {}).encode()}
    return table.replace_schema_metadata(meta)


def display_names(table_or_schema: pa.Table | pa.Schema) -> dict[str, str]:
    """The {canonical: original} column-name map stored with a flows table (empty when absent)."""
    schema = table_or_schema.schema if isinstance(table_or_schema, pa.Table) else table_or_schema
    raw = (schema.metadata or {}).get(DISPLAY_NAMES_KEY)
    return json.loads(raw) if raw else {}


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table.cast(schema)``, without a cast where only the metadata differs (the common case: a cast of
    ~85 columns, chunk by chunk, costs more than the batch's checks)."""
    if table.schema.equals(schema, check_metadata=False):
        return pa.Table.from_arrays(table.columns, schema=schema)
    return table.cast(schema)
