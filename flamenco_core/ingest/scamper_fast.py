"""The fast path of the scamper JSON reader: msgspec-typed traces straight to Arrow, everything else to the rules.

The common record of an Ark dump (a ``trace`` whose every hop has an address and an RTT) is decoded by
msgspec into a struct that declares only the fields read here; a block of them (one 4 MB read) is checked
and turned into an Arrow table column by column. Any other line (pings, tracelbs, metadata, anything
malformed) is decoded again by ``json`` and accounted by
:func:`~flamenco_core.ingest.scamper.account_record`, and its rows are merged back in line order, so both
paths give the same rows, drops and quarantine, in the same order.
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from .base import ReadContext
from .latency_rows import latency_table, parse_typed_blocks

_MAX_UNIX_S = 9_200_000_000  # as scamper.py: keeps datetime64[ns] from overflowing
# msgspec turns a JSON integer RTT into a float; below 2**53 that float is exactly the reference's float(int).
_FAST_MAX_RTT = 1e15

_TRACE = None
_UNSET = None  # msgspec.UNSET, set with _TRACE


def trace_struct():
    """The msgspec type of the common trace (built on first use: msgspec is imported lazily). A line
    with a declared field missing or of another JSON type fails to decode as this and takes the rules."""
    global _TRACE, _UNSET
    if _TRACE is None:
        import msgspec

        _UNSET = msgspec.UNSET
        # defstruct, not class syntax: this module's postponed annotations would be strings naming locals
        tv = msgspec.defstruct("Time", [("sec", int), ("usec", int, 0)], gc=False)
        hop = msgspec.defstruct("Hop", [
            ("addr", str), ("rtt", float), ("tx", tv, msgspec.UNSET), ("probe_ttl", Any, msgspec.UNSET),
        ], gc=False)
        _TRACE = msgspec.defstruct("Trace", [
            ("type", str), ("src", str), ("dst", str), ("start", tv, msgspec.UNSET), ("hops", list[hop], msgspec.UNSET),
        ], gc=False)
    return _TRACE


def _times_us(tvs: list, unset) -> tuple[np.ndarray, np.ndarray]:
    """(microseconds, valid) of scamper ``{"sec", "usec"}`` structs; an absent one is invalid."""
    sec = [-1 if t is unset else t.sec for t in tvs]
    usec = [0 if t is unset else t.usec for t in tvs]
    try:
        s, u = np.array(sec, dtype=np.int64), np.array(usec, dtype=np.int64)
    except OverflowError:  # a JSON integer past int64: invalid here, so its record takes the rules
        s = np.array([a if -1 <= a <= _MAX_UNIX_S else -1 for a in sec], dtype=np.int64)
        u = np.array([b if 0 <= b <= 999_999 else -1 for b in usec], dtype=np.int64)
    ok = (s >= 0) & (s <= _MAX_UNIX_S) & (u >= 0) & (u <= 999_999)
    return np.where(ok, s * 1_000_000 + u, 0), ok


def _fast_rows(traces: list, all_hops: bool, source: str) -> tuple[np.ndarray, pa.Table | None, np.ndarray, int, int]:
    """Check a block's trace structs column-wise: ``(taken mask, table of their rows, each row's trace,
    replies, intermediate hops dropped)``.

    A trace is taken when the reference would turn every hop into a row or an ``intermediate_hop`` drop:
    type ``trace``, non-empty ``src``/``dst``, a valid non-zero ``start``, a non-empty hop list whose every
    RTT is in ``[0, 1e15)``, every ``tx`` (when given) valid and non-zero, and with ``all_hops`` every
    ``probe_ttl`` an int in ``[0, 32767]``."""
    unset = _UNSET
    n = len(traces)
    hops = [t.hops for t in traces]
    counts = np.fromiter((0 if h is unset else len(h) for h in hops), dtype=np.int64, count=n)
    start, ok = _times_us([t.start for t in traces], unset)
    src = [t.src for t in traces]
    dst = [t.dst for t in traces]
    ok &= (start > 0) & (counts > 0)
    ok &= np.array([t.type == "trace" and bool(a) and bool(b) for t, a, b in zip(traces, src, dst)], dtype=bool)
    flat = [h for hs, k in zip(hops, counts.tolist()) if k for h in hs]
    rec = np.repeat(np.arange(n), counts)
    rtt = np.array([h.rtt for h in flat], dtype=np.float64)
    bad = ~np.isfinite(rtt) | (rtt < 0.0) | (rtt >= _FAST_MAX_RTT)
    txs = [h.tx for h in flat]
    ts = start[rec]
    if txs.count(unset) < len(txs):  # list.count compares identity first: a C loop
        where = np.flatnonzero([t is not unset for t in txs])
        tx_us, tx_ok = _times_us([txs[i] for i in where], unset)
        bad[where] |= ~tx_ok | (tx_us == 0)
        ts[where] = tx_us
    if all_hops:
        ttl_raw = [h.probe_ttl for h in flat]
        ttl_ok = np.array([type(v) is int and 0 <= v <= 32767 for v in ttl_raw], dtype=bool)
        bad |= ~ttl_ok
        row = np.ones(len(flat), dtype=bool)
    else:
        # object arrays compare element by element in C
        row = (np.array([h.addr for h in flat], dtype=object) == np.array(dst, dtype=object)[rec]).astype(bool)
    if bad.any():
        ok[rec[bad]] = False
    take = ok[rec]
    replies = int(counts[ok].sum())
    keep = take & row
    intermediate = int((take & ~row).sum())
    if not keep.any():
        return ok, None, rec[keep], replies, intermediate
    owner = rec[keep]
    # the reference's measurement name: "<type>:<src>><dst>@<sec>.<usec>" of the trace's start
    t0 = start.tolist()  # Python ints: numpy scalars format slowly
    measurement = pa.array([f"trace:{src[i]}>{dst[i]}@{t0[i] // 1_000_000}.{t0[i] % 1_000_000:06d}"
                            for i in owner.tolist()], pa.string())
    hop_ttl = (pa.array(np.array(ttl_raw, dtype=object)[keep].tolist(), pa.int16()) if all_hops
               else pa.nulls(int(keep.sum()), pa.int16()))
    rows = pa.array(np.arange(int(keep.sum()), dtype=np.int64))
    table = latency_table(pa.array(ts[keep]), pa.array([src[i] for i in owner.tolist()], pa.string()),
                          pa.array([dst[i] for i in owner.tolist()], pa.string()), pa.array(rtt[keep]), source,
                          measurement, hop_ttl, rows)
    return ok, table, owner, replies, intermediate


def parse_scamper_fast(blocks, ctx: ReadContext, account, source: str, *, all_hops: bool = False) -> Iterator[pa.Table]:
    """The fast path of :func:`~flamenco_core.ingest.scamper.parse_scamper_records`: the same rows, drops
    and quarantine, as Arrow tables of at most ``ctx.batch_rows`` rows.

    ``blocks`` are ``(record numbers, objects, lines)`` from
    :func:`~flamenco_core.ingest.base.iter_json_line_blocks` with ``typed=`` :func:`trace_struct`; the
    traces :func:`_fast_rows` takes become rows column-wise (``source``: the rows' source column), every
    other record goes through ``account(record_no, obj, ctx, batch, all_hops)`` (the reference rules) in
    line order."""
    yield from parse_typed_blocks(blocks, ctx, trace_struct(), lambda traces: _fast_rows(traces, all_hops, source),
                                  "intermediate_hop", lambda no, obj, batch: account(no, obj, ctx, batch, all_hops),
                                  source)
