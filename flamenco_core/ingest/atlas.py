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
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from .base import IngestError, ReadContext, iter_json_records, reference_object, register

SOURCE = "atlas"

# Largest timestamp (seconds) that still fits a nanosecond datetime64; beyond it pandas would overflow.
_MAX_UNIX_S = 9.2e9


class LatencyBatch:
    """Column buffers for canonical latency rows, handed out as frames of at most ``batch_rows`` rows.

    Readers append one row at a time (the JSON walk is per record anyway) and build one DataFrame per batch,
    so memory stays bounded by ``batch_rows`` plus the rows of one input record.
    """

    def __init__(self, source: str, batch_rows: int) -> None:
        self.source = source
        self.batch_rows = max(1, int(batch_rows))
        self._clear()

    def _clear(self) -> None:
        self.ts_us: list[int] = []
        self.src: list[str] = []
        self.dst: list[str] = []
        self.rtt: list[float] = []
        self.measurement: list[str] = []
        self.hop_ttl: list[int | None] = []

    def __len__(self) -> int:
        return len(self.rtt)

    def add(
        self, ts_us: int, src: str, dst: str, rtt_ms: float, measurement: str, hop_ttl: int | None = None
    ) -> None:
        """Append one row; ``ts_us`` is integer microseconds since the Unix epoch (exact, unlike float s)."""
        self.ts_us.append(ts_us)
        self.src.append(src)
        self.dst.append(dst)
        self.rtt.append(rtt_ms)
        self.measurement.append(measurement)
        self.hop_ttl.append(hop_ttl)

    def _frame(self, lo: int, hi: int) -> pd.DataFrame:
        n = hi - lo
        return pd.DataFrame(
            {
                "timestamp": pd.to_datetime(np.asarray(self.ts_us[lo:hi], dtype="int64"), unit="us", utc=True),
                "src": pd.array(self.src[lo:hi], dtype="string"),
                "dst": pd.array(self.dst[lo:hi], dtype="string"),
                "rtt_ms": np.asarray(self.rtt[lo:hi], dtype="float64"),
                "source": pd.array([self.source] * n, dtype="string"),
                "measurement": pd.array(self.measurement[lo:hi], dtype="string"),
                "hop_ttl": pd.array(self.hop_ttl[lo:hi], dtype="Int16"),
            }
        )

    def _cut(self, k: int) -> None:
        for name in ("ts_us", "src", "dst", "rtt", "measurement", "hop_ttl"):
            del getattr(self, name)[:k]

    def full_frames(self) -> Iterator[pd.DataFrame]:
        """Yield (and forget) frames of exactly ``batch_rows`` rows while that many are buffered."""
        while len(self) >= self.batch_rows:
            frame = self._frame(0, self.batch_rows)
            self._cut(self.batch_rows)
            yield frame

    def flush(self) -> Iterator[pd.DataFrame]:
        """Yield every buffered row, in frames of at most ``batch_rows`` rows."""
        yield from self.full_frames()
        if len(self):
            frame = self._frame(0, len(self))
            self._clear()
            yield frame


def as_number(value: Any) -> float | None:
    """A JSON number or numeric string as float; None for anything else (booleans included)."""
    kind = type(value)
    if kind is float or kind is int:  # the common case, checked first: this runs for every value
        try:
            return float(value)
        except OverflowError:  # a JSON integer with hundreds of digits
            return None
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            return float(value.strip())
    except (ValueError, OverflowError):  # OverflowError: a JSON integer with hundreds of digits
        return None
    return None


def as_int(value: Any, lo: int, hi: int) -> int | None:
    """An integral JSON number or numeric string within ``[lo, hi]``; None otherwise."""
    if type(value) is int:
        return value if lo <= value <= hi else None
    x = as_number(value)
    if x is None or not math.isfinite(x) or x != int(x) or not lo <= x <= hi:
        return None
    return int(x)


def as_rtt(value: Any) -> float | None:
    """A usable round-trip time in ms (finite, >= 0); None for anything else."""
    x = as_number(value)
    if x is None or not math.isfinite(x) or x < 0:
        return None
    return x


def readable_records(records: Iterator[tuple[int, dict]], path: str | Path) -> Iterator[tuple[int, dict]]:
    """Pass records through, turning a corrupt or truncated gzip/bzip2 stream into :class:`IngestError`.

    Record-level problems are quarantined, but a broken compressed stream loses everything after the break,
    so the file as a whole is unreadable and must fail visibly with its name.
    """
    try:
        yield from records
    except (OSError, EOFError, zlib.error) as exc:
        raise IngestError(f"{path}: cannot read compressed stream: {exc}") from exc


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
        ctx.quarantine(no, f"result is {type(slots).__name__}, not a list", _raw(obj), field="result")
        return
    ctx.count_input(len(slots))
    for i, slot in enumerate(slots):
        kind = _reply_kind(slot)
        if kind == "rtt":
            rtt = as_rtt(slot["rtt"])
            if rtt is None:
                ctx.quarantine(no, f"invalid rtt {slot['rtt']!r:.60}", _raw(obj), field=f"result[{i}].rtt")
            else:
                batch.add(ts_us, src, dst, rtt, msm)
        elif kind != "bad":
            ctx.drop(kind)
        else:
            ctx.quarantine(no, "reply is neither {rtt}, {x} nor {error}", _raw(obj), field=f"result[{i}]")


def _traceroute(
    no: int, obj: dict, head: tuple, ctx: ReadContext, batch: LatencyBatch, all_hops: bool
) -> None:
    ts_us, src, dst, msm = head
    hops = obj.get("result")
    if not isinstance(hops, list):
        ctx.count_input()
        what = "missing" if hops is None else f"a {type(hops).__name__}, not a list"
        ctx.quarantine(no, f"traceroute result is {what}", _raw(obj), field="result")
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
            ctx.quarantine(no, "hop is not an object", _raw(obj), field=f"result[{i}]")
            continue
        replies = hop.get("result")
        if not isinstance(replies, list) or not replies:
            ctx.count_input()
            if isinstance(replies, list):
                ctx.drop("no_reply")
            elif replies is None and "error" in hop:
                ctx.drop("error")
            else:
                ctx.quarantine(no, "hop has no reply list", _raw(obj), field=f"result[{i}].result")
            continue
        ctx.count_input(len(replies))
        ttl = as_int(hop.get("hop"), 0, 32767) if all_hops else None
        for j, rep in enumerate(replies):
            kind = _reply_kind(rep)
            if kind != "rtt":
                if kind == "bad":
                    reason = "reply is neither {rtt}, {x}, {late} nor {error}"
                    ctx.quarantine(no, reason, _raw(obj), field=f"result[{i}].result[{j}]")
                else:
                    drops[kind] += 1
                continue
            rtt = as_rtt(rep["rtt"])
            if rtt is None:
                reason = f"invalid rtt {rep['rtt']!r:.60}"
                ctx.quarantine(no, reason, _raw(obj), field=f"result[{i}].result[{j}].rtt")
            elif all_hops:
                if ttl is None:
                    reason = f"invalid hop number {hop.get('hop')!r:.60}"
                    ctx.quarantine(no, reason, _raw(obj), field=f"result[{i}].hop")
                else:
                    batch.add(ts_us, src, dst, rtt, msm, ttl)
            elif i == last and rep.get("from") == dst:
                batch.add(ts_us, src, dst, rtt, msm)
            else:
                drops["intermediate_hop"] += 1
    for reason, n in drops.items():
        ctx.drop(reason, n)


def _one_record(no: int, obj: dict, ctx: ReadContext, batch: LatencyBatch, all_hops: bool) -> None:
    """Account one result and add its rows to ``batch`` (the reference path, every case handled)."""
    rtype, why = _result_type(obj)
    if rtype is None:
        ctx.count_input()
        ctx.quarantine(no, why, _raw(obj), field="type")
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
            ctx.quarantine(no, reason, _raw(obj), field=field)
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
        _one_record(no, obj, ctx, batch, all_hops)
        yield from batch.full_frames()
    yield from batch.flush()


# Fast path: an int timestamp below this many seconds (year 2255) times 1e6 is below 2**53, so the
# reference's float arithmetic (round(ts * 1e6)) is exact and equals the integer product.
_FAST_MAX_TS = 9_000_000_000
_MAX_MSM = 2**63 - 1
# msgspec turns a JSON integer RTT into a float; below 2**53 that float is exactly the reference's float(int).
_FAST_MAX_RTT = 1e15


class ArrowLatencyBatch:
    """Canonical latency rows buffered per *record* (timestamp, addresses, measurement, hop) with one RTT
    per row, handed out as Arrow tables of at most ``batch_rows`` rows.

    A ping result's three replies share everything but the RTT, so the per-row Python work is one float
    append; the per-record columns are expanded with one ``take`` when a table is built. :meth:`add`
    (one row, its own record) keeps the interface of :class:`LatencyBatch` for the reference handlers."""

    def __init__(self, source: str, batch_rows: int) -> None:
        self.source = source
        self.batch_rows = max(1, int(batch_rows))
        self._clear()

    def _clear(self) -> None:
        self.ts_us: list[int] = []
        self.src: list[str] = []
        self.dst: list[str] = []
        self.measurement: list[str] = []
        self.hop_ttl: list[int | None] = []
        self.count: list[int] = []
        self.rtt: list[float] = []

    def __len__(self) -> int:
        return len(self.rtt)

    def add(
        self, ts_us: int, src: str, dst: str, rtt_ms: float, measurement: str, hop_ttl: int | None = None
    ) -> None:
        """Append one row (as :meth:`LatencyBatch.add`)."""
        self.ts_us.append(ts_us)
        self.src.append(src)
        self.dst.append(dst)
        self.measurement.append(measurement)
        self.hop_ttl.append(hop_ttl)
        self.count.append(1)
        self.rtt.append(rtt_ms)

    def _table(self):
        import pyarrow as pa

        from .schema import KIND_KEY, LATENCY_SCHEMA, TS_TYPE

        idx = pa.array(np.repeat(np.arange(len(self.count), dtype=np.int64), self.count))
        n = len(self.rtt)
        arrays = [
            pa.array(np.asarray(self.ts_us, dtype=np.int64)).take(idx).cast(TS_TYPE),
            pa.array(self.src, pa.string()).take(idx),
            pa.array(self.dst, pa.string()).take(idx),
            pa.array(np.asarray(self.rtt, dtype=np.float64)),
            pa.array([self.source], pa.string()).take(pa.array(np.zeros(n, dtype=np.int64))),
            pa.array(self.measurement, pa.string()).take(idx),
            pa.array(self.hop_ttl, pa.int16()).take(idx),
        ]
        schema = LATENCY_SCHEMA.with_metadata({KIND_KEY: b"latency"})
        return pa.Table.from_arrays(arrays, schema=schema)

    def full_frames(self):
        """Yield every buffered row once at least ``batch_rows`` are buffered (else nothing)."""
        if len(self) >= self.batch_rows:
            yield from self.flush()

    def flush(self):
        """Yield every buffered row, in tables of at most ``batch_rows`` rows."""
        if not len(self):
            return
        table = self._table()
        self._clear()
        for lo in range(0, table.num_rows, self.batch_rows):
            yield table.slice(lo, self.batch_rows)


def _ping_struct():
    """The msgspec type of the common ping result (built on first use: msgspec is imported lazily).

    Only the fields the fast path reads are declared (others are skipped in C); a line with any of them
    missing or of another JSON type fails to decode as this and takes the general path."""
    global _PING
    if _PING is None:
        import msgspec

        # defstruct, not class syntax: this module's postponed annotations would be strings naming locals
        # A reply with an RTT and only the keys such replies carry; any other key ("x", "error", "late",
        # ...) fails the whole line, which then takes the reference rules.
        reply = msgspec.defstruct("Reply", [
            ("rtt", float),  # a JSON int is taken as a float, as as_rtt does; inf is refused by msgspec
            ("ttl", Any, msgspec.UNSET), ("dup", Any, msgspec.UNSET), ("src_addr", Any, msgspec.UNSET),
        ], forbid_unknown_fields=True)
        Ping = msgspec.defstruct("Ping", [
            ("type", str), ("timestamp", int), ("msm_id", int), ("from_", str), ("dst_addr", str),
            ("result", list[reply]),
        ], rename={"from_": "from"})
        _PING = Ping
    return _PING


_PING = None


def parse_atlas_fast(records, ctx: ReadContext, *, all_hops: bool = False):
    """The fast path of :func:`parse_atlas_records`: the same rows, drops and quarantine, as Arrow tables.

    ``records`` are ``(record_no, obj, line)`` from :func:`~flamenco_core.ingest.base.iter_json_lines_fast`
    with ``typed=`` :func:`_ping_struct`. The common result (a ping with an int timestamp and msm_id,
    ``from`` and ``dst_addr`` that need no cleaning, every reply a non-negative ``rtt`` and nothing else)
    arrives as that struct and is taken with a few checks. Any other result goes through the reference
    handler, decoded again by ``json`` (the reference decoder) when it came as a struct, so the rules
    live in one place."""
    Ping = _ping_struct()
    batch = ArrowLatencyBatch(SOURCE, ctx.batch_rows)
    msm_text: dict[int, str] = {}
    inputs = 0  # replies counted here and handed to ctx once per table
    for no, obj, line in records:
        if type(obj) is Ping:
            res = obj.result
            ts = obj.timestamp
            msm = obj.msm_id
            src = obj.from_
            dst = obj.dst_addr
            if (obj.type == "ping" and res and 0 <= ts < _FAST_MAX_TS and 0 <= msm <= _MAX_MSM
                    and src and dst and src.strip() == src and dst.strip() == dst):
                rtts = [r.rtt for r in res]
                # a negative RTT, or one too large to be sure it was written as a float: the reference
                if min(rtts) >= 0.0 and max(rtts) < _FAST_MAX_RTT:
                    m = msm_text.get(msm)
                    if m is None:
                        if len(msm_text) > 100_000:
                            msm_text.clear()
                        m = msm_text[msm] = str(msm)
                    batch.ts_us.append(ts * 1_000_000)
                    batch.src.append(src)
                    batch.dst.append(dst)
                    batch.measurement.append(m)
                    batch.hop_ttl.append(None)
                    batch.count.append(len(rtts))
                    batch.rtt.extend(rtts)
                    inputs += len(rtts)
                    if len(batch.rtt) >= batch.batch_rows:
                        ctx.count_input(inputs)
                        inputs = 0
                        yield from batch.flush()
                    continue
            obj = reference_object(line)
        _one_record(no, obj, ctx, batch, all_hops)
        if len(batch.rtt) >= batch.batch_rows:
            ctx.count_input(inputs)
            inputs = 0
            yield from batch.flush()
    ctx.count_input(inputs)
    yield from batch.flush()


def _raw(obj: dict) -> str:
    # Built only when quarantining: the quarantine keeps 500 characters, enough to find the record again.
    return repr(obj)[:500]


def arrow_to_frame(table) -> pd.DataFrame:
    """A canonical latency Arrow table as the frame :class:`LatencyBatch` builds (same dtypes), for
    callers of a reader that want pandas frames."""
    def text(name):
        return pd.array(table[name].to_numpy(zero_copy_only=False), dtype="string")

    return pd.DataFrame({
        "timestamp": pd.to_datetime(table["timestamp"].cast("int64").to_numpy(), unit="us", utc=True),
        "src": text("src"),
        "dst": text("dst"),
        "rtt_ms": table["rtt_ms"].to_numpy(),
        "source": text("source"),
        "measurement": text("measurement"),
        "hop_ttl": pd.array(table["hop_ttl"].to_pandas(), dtype="Int16"),
    })


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
    records = readable_records(iter_json_records(path, ctx, fast=True, typed=_ping_struct()), path)
    for table in parse_atlas_fast(records, ctx, all_hops=all_hops):
        yield table if arrow else arrow_to_frame(table)


#: The ingest driver passes ``arrow=True`` to readers that say they accept it.
read_atlas.accepts_arrow = True
