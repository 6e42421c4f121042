"""The fast path of the RIPE Atlas reader: msgspec-typed pings straight to Arrow, everything else to the rules.

The common result (a ping whose every reply is an RTT or a timeout) is decoded by msgspec into a struct
that declares only the fields read here; a block of them (one 4 MB read) is checked and turned into an
Arrow table column by column, with numpy, not one result at a time. Any other line is decoded again by
``json`` (the reference decoder) and accounted by :func:`~flamenco_core.ingest.atlas_rules.account_result`,
and its rows are merged back in line order, so both paths give the same rows, drops and quarantine, in the
same order.
"""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from .atlas_rules import SOURCE, account_result
from .base import ReadContext
from .latency_rows import latency_table, parse_typed_blocks

# An int timestamp below this many seconds (year 2255) times 1e6 is below 2**53, so the reference's float
# arithmetic (round(ts * 1e6)) is exact and equals the integer product.
_FAST_MAX_TS = 9_000_000_000
_MAX_MSM = 2**63 - 1
# msgspec turns a JSON integer RTT into a float; below 2**53 that float is exactly the reference's float(int).
_FAST_MAX_RTT = 1e15

_PING = None
_UNSET = None  # msgspec.UNSET, set with _PING


def ping_struct():
    """The msgspec type of the common ping result (built on first use: msgspec is imported lazily).

    Only the fields the fast path reads are declared (others are skipped in C); a line with any of them
    missing or of another JSON type fails to decode as this and takes the general path."""
    global _PING, _UNSET
    if _PING is None:
        import msgspec

        _UNSET = msgspec.UNSET
        # defstruct, not class syntax: this module's postponed annotations would be strings naming locals.
        # A reply carries an RTT or an "x" (timeout) and only the keys such replies carry; any other key
        # ("error", "late", ...) fails the whole line, which then takes the reference rules.
        reply = msgspec.defstruct("Reply", [
            # a JSON int is taken as a float, as as_rtt does; inf is refused. NaN marks "no rtt key": JSON
            # has no NaN literal, so it cannot come from the line
            ("rtt", float, math.nan),
            ("x", Any, msgspec.UNSET),
            ("ttl", Any, msgspec.UNSET), ("dup", Any, msgspec.UNSET), ("src_addr", Any, msgspec.UNSET),
        ], forbid_unknown_fields=True, gc=False)
        _PING = msgspec.defstruct("Ping", [
            ("type", str), ("timestamp", int), ("msm_id", int), ("from_", str), ("dst_addr", str),
            ("result", list[reply]),
        ], rename={"from_": "from"}, gc=False)
    return _PING


def _int_column(values: list, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """int64 values and a mask of those within ``[lo, hi]`` (JSON integers may exceed int64)."""
    try:
        arr = np.array(values, dtype=np.int64)
    except OverflowError:
        ok = np.array([lo <= v <= hi for v in values], dtype=bool)
        arr = np.array([v if k else 0 for v, k in zip(values, ok)], dtype=np.int64)
        return arr, ok
    return arr, (arr >= lo) & (arr <= hi)


def _clean_text(values: list[str]) -> np.ndarray:
    """Mask of the non-empty texts that ``strip`` leaves as they are (the reference strips them), found on
    the distinct values only (probe and target addresses repeat)."""
    bad = {v for v in set(values) if not v or v.strip() != v}
    if not bad:
        return np.ones(len(values), dtype=bool)
    return np.array([v not in bad for v in values], dtype=bool)


def _fast_rows(pings: list) -> tuple[np.ndarray, pa.Table | None, np.ndarray, int, int]:
    """Check a block's ping structs column-wise: ``(taken mask, table of their rows, each row's ping,
    replies, timeouts)``.

    A ping is taken when the reference would turn it into rows and timeouts only: type ``ping``, an int
    timestamp below :data:`_FAST_MAX_TS` and msm_id within int64, non-empty ``from``/``dst_addr`` without
    surrounding spaces, a non-empty reply list whose every reply is an RTT in ``[0, 1e15)`` or a timeout."""
    n = len(pings)
    res = [o.result for o in pings]
    counts = np.fromiter(map(len, res), dtype=np.int64, count=n)
    ts, ok = _int_column([o.timestamp for o in pings], 0, _FAST_MAX_TS - 1)
    msm, msm_ok = _int_column([o.msm_id for o in pings], 0, _MAX_MSM)
    src = [o.from_ for o in pings]
    dst = [o.dst_addr for o in pings]
    ok &= msm_ok & (counts > 0) & _clean_text(src) & _clean_text(dst)
    ok &= np.array([o.type == "ping" for o in pings], dtype=bool)
    flat = [r for rr in res for r in rr]
    rtt = np.array([r.rtt for r in flat], dtype=np.float64)
    rec = np.repeat(np.arange(n), counts)
    nan = np.isnan(rtt)
    with np.errstate(invalid="ignore"):
        bad = (rtt < 0.0) | (rtt >= _FAST_MAX_RTT)
    if nan.any():
        # the reference's order: an RTT wins over "x" in one reply; a reply with neither is malformed
        unset = _UNSET
        where = np.flatnonzero(nan)
        bad[where] = [flat[i].x is unset for i in where]
    if bad.any():
        ok[rec[bad]] = False
    take = ok[rec]
    replies = int(counts[ok].sum())
    keep = take & ~nan
    timeouts = int((take & nan).sum())
    if not keep.any():
        return ok, None, rec[keep], replies, timeouts
    idx = pa.array(rec[keep])
    uniq, inverse = np.unique(msm, return_inverse=True)
    measurement = pa.array([str(m) for m in uniq.tolist()], pa.string()).take(pa.array(inverse))
    table = latency_table(pa.array(ts * 1_000_000), pa.array(src, pa.string()), pa.array(dst, pa.string()),
                          pa.array(rtt[keep]), SOURCE, measurement, pa.nulls(n, pa.int16()), idx)
    return ok, table, rec[keep], replies, timeouts


def parse_atlas_fast(blocks, ctx: ReadContext, *, all_hops: bool = False) -> Iterator[pa.Table]:
    """The fast path of :func:`~flamenco_core.ingest.atlas_rules.parse_atlas_records`: the same rows, drops
    and quarantine, as Arrow tables of at most ``ctx.batch_rows`` rows.

    ``blocks`` are ``(record numbers, objects, lines)`` from
    :func:`~flamenco_core.ingest.base.iter_json_line_blocks` with ``typed=`` :func:`ping_struct`. The
    pings of a block that :func:`_fast_rows` takes become rows column-wise; every other record goes
    through the reference handler (decoded again by ``json``, the reference decoder, when it came as a
    struct), in line order, and its rows are merged back in line order."""
    yield from parse_typed_blocks(blocks, ctx, ping_struct(), _fast_rows, "timeout",
                                  lambda no, obj, batch: account_result(no, obj, ctx, batch, all_hops), SOURCE)
