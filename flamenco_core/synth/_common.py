"""What every generator shares: the result type, seeding, fast text writing, label files and
:func:`join_labels`.

Ground truth never goes into the data files: the readers must see exactly what a real dump would hold.
Labels go to a Parquet file keyed by columns that survive ingest, so a canonical table produced by the
project's readers can be joined back to its truth.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterable, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

#: Key columns of a latency labels file (one row per RTT). Atlas adds ``reply``: see :func:`join_labels`.
LATENCY_KEYS = ["timestamp", "src", "dst"]
ATLAS_KEYS = LATENCY_KEYS + ["reply"]
#: Key columns of a flows labels file (one row per flow record).
FLOW_KEYS = ["timestamp", "src", "dst", "src_port", "dst_port", "protocol"]

_PROTO_NUMBERS = {"ICMP": 1, "TCP": 6, "UDP": 17, "GRE": 47, "ESP": 50, "ICMP6": 58, "IPV6-ICMP": 58}

# Text is written in chunks so that scale 10+ runs keep a bounded amount of formatted text in memory.
_CHUNK_ROWS = 100_000


@dataclass
class SynthResult:
    """What a generator wrote.

    ``kind`` is ``"latency"`` or ``"flows"``; ``format`` names the reader that parses ``data_paths``
    (``"scamper"``, ``"atlas"``, ``"cicflowmeter"``, ``"nfdump"``); ``labels_path`` is the Parquet
    ground truth; ``summary`` holds JSON-serialisable counts (per class, per pair, ...).
    """

    kind: str
    format: str
    data_paths: list[Path]
    labels_path: Path
    summary: dict = field(default_factory=dict)


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """An independent generator per (seed, purpose): the plan and the data draw from separate streams, so
    computing a plan (cheap) never depends on how many values the data generation consumed."""
    return np.random.default_rng([int(seed), int(stream)])


def check_scale(scale: float) -> float:
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    return scale


def scaled_count(n: int, scale: float, floor: int) -> int:
    """``n * scale`` rounded, but never below ``floor`` (so that tiny test scales still give usable series)."""
    return max(int(floor), int(round(n * scale)))


def prepare_out_dir(out_dir: Path | str) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_rows(
    path: Path,
    template: str,
    columns: Sequence[np.ndarray | list],
    head: Iterable[str] = (),
    tail: Iterable[str] = (),
) -> None:
    """Write one ``template % row`` line per row of ``columns`` (a %-style template, so JSON braces need no
    escaping), with ``head`` lines before and ``tail`` lines after.

    The values are all computed by vectorised numpy code before this point; formatting maps the template
    over the columns at C speed, chunk by chunk. Files are written in binary with ``\\n`` line ends so the
    bytes do not depend on the platform.
    """
    with open(path, "wb") as fh:
        for line in head:
            fh.write(line.encode() + b"\n")
        write_rows_to(fh, template, columns)
        for line in tail:
            fh.write(line.encode() + b"\n")


def write_rows_to(fh: BinaryIO, template: str, columns: Sequence[np.ndarray | list]) -> None:
    """Append ``template % row`` lines for the rows of ``columns`` to an open binary file."""
    n = len(columns[0]) if columns else 0
    for i in range(0, n, _CHUNK_ROWS):
        cols = [c[i : i + _CHUNK_ROWS] for c in columns]
        cols = [c.tolist() if isinstance(c, np.ndarray) else list(c) for c in cols]
        fh.write("\n".join(map(template.__mod__, zip(*cols))).encode())
        fh.write(b"\n")


def in_runs(n: int, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Boolean mask of ``n`` points that lie in a run of ``lengths[i]`` points from ``starts[i]`` (runs may
    overlap; they are cut at ``n``): the bursts of the noise generators."""
    delta = np.zeros(n + 1, dtype=int)
    np.add.at(delta, starts, 1)
    np.add.at(delta, np.minimum(starts + lengths, n), -1)
    return np.cumsum(delta[:n]) > 0


def us_to_timestamps(us: np.ndarray) -> pd.Series:
    """Integer Unix microseconds -> ``datetime64[us, UTC]`` (the canonical timestamp type)."""
    return pd.Series(np.asarray(us, dtype="int64").astype("datetime64[us]")).dt.tz_localize("UTC")


def us_to_text(us: np.ndarray, unit: str = "us") -> np.ndarray:
    """Unix microseconds -> ``'YYYY-MM-DD HH:MM:SS[.ffffff]'`` strings (UTC), vectorised."""
    text = np.datetime_as_string(np.asarray(us, dtype="int64").astype("datetime64[us]"), unit=unit)
    return np.strings.replace(text, "T", " ")


def flow_labels(timestamp: pd.Series, src: np.ndarray, dst: np.ndarray, src_port: np.ndarray, dst_port: np.ndarray,
                protocol: np.ndarray, attack: np.ndarray) -> pd.DataFrame:
    """A flows labels frame: the :data:`FLOW_KEYS` columns in their canonical types (ports int32, protocol
    int16 IANA numbers) and ``label`` in ``attack``/``benign``."""
    return pd.DataFrame(
        {
            "timestamp": timestamp,
            "src": src.astype(str),
            "dst": dst.astype(str),
            "src_port": src_port.astype("int32"),
            "dst_port": dst_port.astype("int32"),
            "protocol": protocol.astype("int16"),
            "label": np.where(attack, "attack", "benign"),
        }
    )


def attack_summary(attack: np.ndarray) -> dict:
    """The class counts every flows generator reports first: flows, attack and benign flows, attack share."""
    n, n_attack = len(attack), int(attack.sum())
    return {"n_flows": n, "n_attack": n_attack, "n_benign": n - n_attack, "attack_fraction": n_attack / n}


def write_labels(df: pd.DataFrame, path: Path) -> Path:
    """Write a labels frame to Parquet, column by column (UTC timestamps as ``timestamp[us, UTC]``,
    strings as ``string``); pyarrow's output has no wall-clock content, so equal frames give equal bytes."""
    arrays, names = [], []
    for name, s in df.items():
        if isinstance(s.dtype, pd.DatetimeTZDtype):
            arr = pa.array(s.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(), type=pa.timestamp("us", tz="UTC"))
        elif pd.api.types.is_string_dtype(s.dtype) or s.dtype == object:
            arr = pa.array(s.astype(str).to_numpy(dtype=object), type=pa.string())
        else:
            arr = pa.array(s.to_numpy())
        arrays.append(arr)
        names.append(str(name))
    pq.write_table(pa.Table.from_arrays(arrays, names=names), path, compression="zstd")
    return path


def key_columns(labels_df: pd.DataFrame) -> list[str]:
    """The key of a labels frame: flows if it has ``protocol``, else latency (+ ``reply`` for Atlas)."""
    if "protocol" in labels_df.columns:
        return list(FLOW_KEYS)
    if "reply" in labels_df.columns:
        return list(ATLAS_KEYS)
    return list(LATENCY_KEYS)


def _norm_timestamp(s: pd.Series) -> pd.Series:
    if not pd.api.types.is_datetime64_any_dtype(s):
        s = pd.to_datetime(s, utc=True)
    elif getattr(s.dt, "tz", None) is None:
        s = s.dt.tz_localize("UTC")
    return s.dt.tz_convert("UTC").astype("datetime64[us, UTC]")


def _norm_int(s: pd.Series, proto: bool = False) -> pd.Series:
    if proto and (s.dtype == object or pd.api.types.is_string_dtype(s)):
        # nfdump prints protocol names; labels hold IANA numbers as the canonical table does.
        up = s.astype("string").str.strip().str.upper()
        s = up.map(_PROTO_NUMBERS).fillna(up)
    return pd.to_numeric(s, errors="coerce").astype("Int64")


def _norm_keys(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(index=df.index)
    for k in keys:
        s = df[k]
        if k == "timestamp":
            out[k] = _norm_timestamp(s)
        elif k in ("src", "dst"):
            out[k] = s.astype(str)
        else:
            out[k] = _norm_int(s, proto=(k == "protocol"))
    return out


def join_labels(
    df: pd.DataFrame, labels_df: pd.DataFrame, columns: Sequence[str] = ("label",), require_all: bool = True
) -> pd.DataFrame:
    """Attach ground truth to a table produced by a reader from generated files.

    The key is chosen from ``labels_df`` (:func:`key_columns`): flows join on ``timestamp, src, dst,
    src_port, dst_port, protocol``; latency on ``timestamp, src, dst``. Atlas labels carry ``reply``, the
    index of a reply among the replies that came back in its result (timeouts have no row); when ``df`` has
    no ``reply`` column it is derived as the running count of rows within ``(src, dst, timestamp)`` in
    ``df``'s order, since the reader emits one row per received reply in file order, all with the result's
    timestamp. Key dtypes are normalised first (UTC microsecond timestamps, string addresses, integer
    ports, protocol names such as ``UDP`` mapped to numbers).

    Returns a copy of ``df`` with ``columns`` (default just ``label``) set from the labels, in ``df``'s row
    order. Raises ``ValueError`` naming how many rows did not match when any row has no label (unless
    ``require_all=False``: a user's labeled pool covers some rows, the rest stay NA), or when
    ``labels_df`` is not unique on the key.
    """
    keys = key_columns(labels_df)
    missing_cols = [c for c in columns if c not in labels_df.columns]
    if missing_cols:
        raise ValueError(f"labels have no column(s) {missing_cols}")
    derive_reply = "reply" in keys and "reply" not in df.columns
    left_keys = [k for k in keys if not (derive_reply and k == "reply")]
    absent = [k for k in left_keys if k not in df.columns]
    if absent:
        raise ValueError(f"table lacks key column(s) {absent} needed to join labels on {keys}")
    left = _norm_keys(df, left_keys).reset_index(drop=True)
    if derive_reply:
        left["reply"] = left.groupby(["src", "dst", "timestamp"], sort=False).cumcount().astype("Int64")
    right = _norm_keys(labels_df, keys).reset_index(drop=True)
    for c in columns:
        right[c] = labels_df[c].to_numpy()
    dup = int(right.duplicated(keys).sum())
    if dup:
        raise ValueError(f"labels are not unique on {keys}: {dup} duplicate key(s)")
    merged = left.merge(right, on=keys, how="left", indicator=True, validate="many_to_one")
    unmatched = int((merged["_merge"] == "left_only").sum())
    if unmatched and require_all:
        raise ValueError(f"{unmatched} of {len(df)} rows did not match a label on {keys}")
    out = df.copy()
    for c in columns:
        out[c] = merged[c].to_numpy()
    return out
