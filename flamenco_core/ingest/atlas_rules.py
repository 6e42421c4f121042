"""The reference rules for RIPE Atlas results: what each ping/traceroute slot becomes (row, drop, quarantine).

One result at a time through every case (:func:`account_result`); the fast path
(:mod:`~flamenco_core.ingest.atlas_fast`) takes the common ping itself and hands every other result here,
so the rules live in one place. What one record is: see :mod:`~flamenco_core.ingest.atlas`.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any, Iterator

import pandas as pd

from .base import ReadContext
from .latency_rows import LatencyBatch, as_int, as_number, as_rtt, raw_text

SOURCE = "atlas"

# Largest timestamp (seconds) that still fits a nanosecond datetime64; beyond it pandas would overflow.
_MAX_UNIX_S = 9.2e9


def _address(obj: dict, *keys: str) -> str | None:
    for k in keys:
        v = obj.get(k)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None


def _result_type(obj: dict) -> tuple[str | None, str]:
    """(type, why-not) for a result; old firmware may omit ``type``, so infer it from the keys."""
    t = obj.get("type")
    if isinstance(t, str):
        return (t, "") if t else (None, "empty type")
    if t is not None:
        return None, f"type is {type(t).__name__}, not a string"
    if any(k in obj for k in ("avg", "rcvd", "sent")):
        return "ping", ""
    res = obj.get("result")
    if isinstance(res, list) and res and isinstance(res[0], dict) and "hop" in res[0]:
        return "traceroute", ""
    return None, "no type and not recognisable as ping or traceroute"


def _header(obj: dict) -> tuple[tuple[int, str, str, str] | None, str, str]:
    """Validate the fields every row needs: ((ts_us, src, dst, msm), failing field, reason)."""
    ts = as_number(obj.get("timestamp"))
    if ts is None or not math.isfinite(ts) or not 0 <= ts < _MAX_UNIX_S:
        return None, "timestamp", f"missing or invalid timestamp {obj.get('timestamp')!r:.60}"
    dst = _address(obj, "dst_addr", "addr")
    if dst is None:
        return None, "dst_addr", "missing destination (dst_addr/addr)"
    src = _address(obj, "from", "src_addr", "srcaddr")
    if src is None:
        return None, "from", "missing source address (from/src_addr/srcaddr)"
    msm = as_int(obj.get("msm_id"), 0, 2**63 - 1)
    if msm is None:
        return None, "msm_id", f"missing or invalid msm_id {obj.get('msm_id')!r:.60}"
    return (int(round(ts * 1_000_000)), src, dst, str(msm)), "", ""


def _reply_kind(slot: Any) -> str:
    """Classify one reply slot: 'rtt', 'late', 'timeout', 'error' or 'bad'."""
    if not isinstance(slot, dict):
        return "bad"
    if "late" in slot:
        return "late"
    if "rtt" in slot:
        return "rtt"
    if "x" in slot:
        return "timeout"
    if "error" in slot or "err" in slot:
        return "error"
    return "bad"


def _ping(no: int, obj: dict, head: tuple, ctx: ReadContext, batch: LatencyBatch) -> None:
    ts_us, src, dst, msm = head
    slots = obj.get("result")
    if slots is None or (isinstance(slots, list) and not slots):
        ctx.count_input()
        ctx.drop("no_per_reply_rtts")
        return
    if not isinstance(slots, list):
        ctx.count_input()
        ctx.quarantine(no, f"result is {type(slots).__name__}, not a list", raw_text(obj), field="result")
        return
    ctx.count_input(len(slots))
    for i, slot in enumerate(slots):
        kind = _reply_kind(slot)
        if kind == "rtt":
            rtt = as_rtt(slot["rtt"])
            if rtt is None:
                ctx.quarantine(no, f"invalid rtt {slot['rtt']!r:.60}", raw_text(obj), field=f"result[{i}].rtt")
            else:
                batch.add(ts_us, src, dst, rtt, msm)
        elif kind != "bad":
            ctx.drop(kind)
        else:
            ctx.quarantine(no, "reply is neither {rtt}, {x} nor {error}", raw_text(obj), field=f"result[{i}]")


def _traceroute(
    no: int, obj: dict, head: tuple, ctx: ReadContext, batch: LatencyBatch, all_hops: bool
) -> None:
    ts_us, src, dst, msm = head
    hops = obj.get("result")
    if not isinstance(hops, list):
        ctx.count_input()
        what = "missing" if hops is None else f"a {type(hops).__name__}, not a list"
        ctx.quarantine(no, f"traceroute result is {what}", raw_text(obj), field="result")
        return
    if not hops:
        ctx.count_input()
        ctx.drop("no_hops")
        return
    last = len(hops) - 1
    drops: Counter = Counter()  # summed here and handed to ctx once: this loop runs for every reply
    for i, hop in enumerate(hops):
        if not isinstance(hop, dict):
            ctx.count_input()
            ctx.quarantine(no, "hop is not an object", raw_text(obj), field=f"result[{i}]")
            continue
        replies = hop.get("result")
        if not isinstance(replies, list) or not replies:
            ctx.count_input()
            if isinstance(replies, list):
                ctx.drop("no_reply")
            elif replies is None and "error" in hop:
                ctx.drop("error")
            else:
                ctx.quarantine(no, "hop has no reply list", raw_text(obj), field=f"result[{i}].result")
            continue
        ctx.count_input(len(replies))
        ttl = as_int(hop.get("hop"), 0, 32767) if all_hops else None
        for j, rep in enumerate(replies):
            kind = _reply_kind(rep)
            if kind != "rtt":
                if kind == "bad":
                    reason = "reply is neither {rtt}, {x}, {late} nor {error}"
                    ctx.quarantine(no, reason, raw_text(obj), field=f"result[{i}].result[{j}]")
                else:
                    drops[kind] += 1
                continue
            rtt = as_rtt(rep["rtt"])
            if rtt is None:
                reason = f"invalid rtt {rep['rtt']!r:.60}"
                ctx.quarantine(no, reason, raw_text(obj), field=f"result[{i}].result[{j}].rtt")
            elif all_hops:
                if ttl is None:
                    reason = f"invalid hop number {hop.get('hop')!r:.60}"
                    ctx.quarantine(no, reason, raw_text(obj), field=f"result[{i}].hop")
                else:
                    batch.add(ts_us, src, dst, rtt, msm, ttl)
            elif i == last and rep.get("from") == dst:
                batch.add(ts_us, src, dst, rtt, msm)
            else:
                drops["intermediate_hop"] += 1
    for reason, n in drops.items():
        ctx.drop(reason, n)


def account_result(no: int, obj: dict, ctx: ReadContext, batch: LatencyBatch, all_hops: bool) -> None:
    """Account one result and add its rows to ``batch`` (the reference path, every case handled)."""
    rtype, why = _result_type(obj)
    if rtype is None:
        ctx.count_input()
        ctx.quarantine(no, why, raw_text(obj), field="type")
        return
    if rtype not in ("ping", "traceroute"):
        ctx.count_input()
        ctx.drop(f"unsupported_type:{rtype}")
        return
    head, field, reason = _header(obj)
    if head is None:
        ctx.count_input()
        if field == "dst_addr" and any(k in obj for k in ("error", "err", "dnserr")):
            ctx.drop("error")
        else:
            ctx.quarantine(no, reason, raw_text(obj), field=field)
        return
    if rtype == "ping":
        _ping(no, obj, head, ctx, batch)
    else:
        _traceroute(no, obj, head, ctx, batch, all_hops)


def parse_atlas_records(
    records: Iterator[tuple[int, dict]], ctx: ReadContext, *, all_hops: bool = False
) -> Iterator[pd.DataFrame]:
    """Turn ``(record_no, result)`` pairs into canonical latency frames, accounting every record in ``ctx``
    (the reference path: one record at a time through the full rules)."""
    batch = LatencyBatch(SOURCE, ctx.batch_rows)
    for no, obj in records:
        account_result(no, obj, ctx, batch, all_hops)
        yield from batch.full_frames()
    yield from batch.flush()


