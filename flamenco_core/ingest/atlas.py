"""RIPE Atlas results (ping and traceroute, one JSON result per line) -> canonical latency rows.

Modules: the rules per result live in :mod:`~flamenco_core.ingest.atlas_rules`, the msgspec fast path in
:mod:`~flamenco_core.ingest.atlas_fast`, the row buffers in :mod:`~flamenco_core.ingest.latency_rows`; this
module registers the reader and keeps their public names importable from here.

Details (what one record is, the columns, the options): docs/ingest.md, section atlas.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from .atlas_fast import parse_atlas_fast, ping_struct
from .atlas_rules import SOURCE, account_result, parse_atlas_records
from .base import IngestError, ReadContext, iter_json_records, register
from .latency_rows import (
    ArrowLatencyBatch,
    LatencyBatch,
    arrow_to_frame,
    as_int,
    as_number,
    as_rtt,
    readable_records,
)

__all__ = [
    "SOURCE", "ArrowLatencyBatch", "LatencyBatch", "account_result", "arrow_to_frame", "as_int", "as_number",
    "as_rtt", "parse_atlas_fast", "parse_atlas_records", "ping_struct", "read_atlas", "readable_records",
]


@register("atlas", "latency")
def read_atlas(
    path: str | Path, ctx: ReadContext, *, all_hops: bool = False, engine: str = "fast", arrow: bool = False,
    **options: Any,
) -> Iterator[pd.DataFrame]:
    """Read RIPE Atlas ping/traceroute results from ``path`` (JSON lines or array; plain, gz or bz2).

    ``all_hops=True`` emits every traceroute hop reply with ``hop_ttl`` instead of only the destination's
    replies at the last hop. ``engine="fast"`` (default) decodes with msgspec and yields Arrow tables;
    ``engine="reference"`` is the original ``json`` + pandas path, kept as the yardstick (both give the
    same rows, drops and quarantine). The fast path yields canonical Arrow tables when ``arrow=True`` (the
    ingest driver asks for them), else the same frames as the reference. Other ``options`` (meant for
    other readers) are ignored. See docs/ingest.md (atlas.py) for what one record is and how it is accounted.
    """
    if engine == "reference":
        records = readable_records(iter_json_records(path, ctx), path)
        yield from parse_atlas_records(records, ctx, all_hops=all_hops)
        return
    if engine != "fast":
        raise IngestError(f"{path}: unknown engine {engine!r}; choose 'fast' or 'reference'")
    blocks = readable_records(iter_json_records(path, ctx, fast=True, typed=ping_struct(), blocks=True), path)
    for table in parse_atlas_fast(blocks, ctx, all_hops=all_hops):
        yield table if arrow else arrow_to_frame(table)


#: The ingest driver passes ``arrow=True`` to readers that say they accept it.
read_atlas.accepts_arrow = True
