"""RIPE Atlas results (ping and traceroute, one JSON result per line) -> canonical latency rows.

Format ``atlas``: JSON lines or a JSON array, plain, gzip or bzip2 (detected by content).

What one *record* is (the unit of :class:`~flamenco_core.ingest.base.ReadContext` accounting):

* **ping** — each slot of the result's ``result`` list:
  ``{"rtt": ms}`` becomes a row (duplicate replies, ``"dup": 1``, are kept, as ``ripe.atlas.sagan`` keeps
  them as packets); ``{"x": "*"}`` is dropped as ``timeout``; ``{"error": ...}`` (or ``"err"``) is dropped as
  ``error``; anything else is quarantined naming the field (``result[2].rtt``, ``result[0]``).
  A result without per-reply values (firmware 0/1 carries only ``avg``/``min``/``max``; ``sagan`` gives no
  packets for it) or with an empty list is one record dropped as ``no_per_reply_rtts``.
* **traceroute** — each reply slot of each hop (``result[i].result[j]``). By default only replies from the
  destination (``from == dst_addr``) at the last hop become rows; other replies with an RTT are dropped as
  ``intermediate_hop``. With ``all_hops=True`` every reply with an RTT becomes a row whose ``hop_ttl`` is the
  hop number (``dst`` stays the traceroute's target, so ``(src, dst, hop_ttl)`` names a path position).
  ``{"x": "*"}`` -> ``timeout``; replies marked ``late`` -> ``late`` (``sagan`` skips them too); a hop
  carrying only ``error`` -> one record dropped ``error``; a hop with an empty reply list -> one record
  dropped ``no_reply``; a result with an empty hop list -> one record dropped ``no_hops``.
* **other types** (dns, http, ...) — the whole line is one record dropped as ``unsupported_type:<type>``.
* A line that is not JSON, or lacks a usable ``timestamp``, destination (``dst_addr``/``addr``), source
  (``from``/``src_addr``/``srcaddr``), ``msm_id`` or ``type`` is one quarantined record naming the field.
  A result without a destination that reports a top-level ``error``/``err``/``dnserr`` (e.g. the target name
  did not resolve) is one record dropped as ``error``.

Columns: ``timestamp`` is the result's ``timestamp`` (Atlas gives no per-reply time), ``src`` is ``from`` (the
probe's public address) when present and non-empty else ``src_addr``/``srcaddr``, ``dst`` is ``dst_addr`` else
``addr`` (firmware < 4460), ``measurement`` is ``msm_id``. Numbers may be JSON strings (old firmware).

Modules: the rules per result live in :mod:`~flamenco_core.ingest.atlas_rules`, the msgspec fast path in
:mod:`~flamenco_core.ingest.atlas_fast`, the row buffers in :mod:`~flamenco_core.ingest.latency_rows`; this
module registers the reader and keeps their public names importable from here.
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
    other readers) are ignored. See the module docstring for what one record is and how it is accounted.
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
