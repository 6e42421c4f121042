"""Split a canonical latency table into source-destination (SD) pair datasets."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from flamenco_core.ingest.schema import to_latency_table
from flamenco_core.outputs import atomic_write_parquet

DEFAULT_MIN_POINTS = 100  # the RIPE Atlas study's minimum pair size

_UNSAFE = re.compile(r"[^0-9A-Za-z.-]+")


def pair_id(src: str, dst: str) -> str:
    """A file-name-safe, readable identifier for an SD pair (``1.2.3.4__8.8.8.8``; IPv6 ``:`` -> ``-``)."""
    return f"{_UNSAFE.sub('-', str(src))}__{_UNSAFE.sub('-', str(dst))}"


@dataclass
class PairSplit:
    """Pairs written (``pair_id, src, dst, rows, path``) and pairs skipped for size (``src, dst, rows``)."""

    pairs: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    min_points: int = DEFAULT_MIN_POINTS

    def to_dict(self) -> dict:
        return asdict(self)


def split_pairs(df: pd.DataFrame, min_points: int = DEFAULT_MIN_POINTS) -> tuple[dict[tuple[str, str], pd.DataFrame], pd.DataFrame]:
    """Group ``df`` by (src, dst), each group in time order.

    Returns the pairs with at least ``min_points`` rows and a frame (src, dst, rows) of the skipped ones,
    largest first, so nothing disappears without a trace.
    """
    if min_points < 1:
        raise ValueError(f"min_points must be >= 1, got {min_points}")
    sizes = df.groupby(["src", "dst"], sort=True).size().rename("rows").reset_index()
    keep = sizes[sizes["rows"] >= min_points]
    skipped = sizes[sizes["rows"] < min_points].sort_values("rows", ascending=False, kind="stable").reset_index(drop=True)
    pairs = {}
    kept_keys = set(zip(keep["src"], keep["dst"]))
    for key, g in df.groupby(["src", "dst"], sort=True):
        if key in kept_keys:
            pairs[key] = g.sort_values("timestamp", kind="stable").reset_index(drop=True)
    return pairs, skipped


def write_pairs(data_path: str | Path, out_dir: str | Path, min_points: int = DEFAULT_MIN_POINTS) -> PairSplit:
    """Split the latency table at ``data_path`` into ``out_dir/<pair_id>.parquet`` files, each written
    atomically (a killed split never leaves a truncated pair file)."""
    df = pq.read_table(data_path).to_pandas()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs, skipped = split_pairs(df, min_points)
    result = PairSplit(min_points=min_points)
    for (src, dst), g in pairs.items():
        pid = pair_id(src, dst)
        path = out / f"{pid}.parquet"
        atomic_write_parquet(to_latency_table(g), path)
        result.pairs.append({"pair_id": pid, "src": src, "dst": dst, "rows": len(g), "path": str(path)})
    result.skipped = [{"src": r.src, "dst": r.dst, "rows": int(r.rows)} for r in skipped.itertuples()]
    return result


def no_pairs_message(skipped: list[dict], min_points: int, fix: str, where: str | None = None) -> str:
    """One line when no SD pair reached ``min_points`` rows: where, how many pairs and the largest, and
    ``fix`` (the knob the caller's user turns: ``--split-pairs``, ``min_points`` in a config)."""
    largest = max((int(s.get("rows", 0)) for s in skipped), default=0)
    head = f"{where}: " if where else ""
    return f"{head}no SD pair has {min_points} rows ({len(skipped)} pairs, the largest has {largest}); {fix}"


def validate_latency(df: pd.DataFrame, name: str) -> None:
    """Raise ValueError naming ``name`` when a latency dataset is unusable (empty, negative RTTs)."""
    if df.empty:
        raise ValueError(f"{name}: no rows")
    neg = int((df["rtt_ms"] < 0).sum())
    if neg:
        raise ValueError(f"{name}: {neg} negative rtt_ms values (field rtt_ms)")
