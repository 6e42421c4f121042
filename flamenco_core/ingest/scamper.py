"""scamper / CAIDA Ark measurements (ping, trace, tracelb) -> canonical latency rows.

Details (what one record is, the columns, the options): docs/ingest.md, section scamper.py.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import IO, Any, Iterable, Iterator

import pandas as pd

from .latency_rows import LatencyBatch, arrow_to_frame, as_int, as_rtt, raw_text, readable_records
from .scamper_fast import parse_scamper_fast, trace_struct
from .base import IngestError, ReadContext, iter_json_lines, iter_json_records, open_maybe_compressed, register

SOURCE = "ark"
METADATA_TYPES = frozenset({"cycle-start", "cycle-stop", "cycle-def", "list"})
_MAX_UNIX_S = 9_200_000_000  # keeps datetime64[ns] from overflowing


def _tv_us(value: Any) -> int | None:
    """A scamper ``{"sec", "usec"}`` time as integer microseconds; None when absent or malformed."""
    if not isinstance(value, dict):
        return None
    sec = as_int(value.get("sec"), 0, _MAX_UNIX_S)
    usec = as_int(value.get("usec", 0), 0, 999_999)
    if sec is None or usec is None:
        return None
    return sec * 1_000_000 + usec


def _tx_values(items: Any) -> list[int]:
    """The valid ``tx`` times (µs) among probe-like objects, for naming a measurement."""
    return [t for it in items if isinstance(it, dict) and (t := _tv_us(it.get("tx"))) is not None]


class _Record:
    """One scamper measurement being turned into rows: its header fields plus the shared accounting."""

    def __init__(self, no: int, obj: dict, ctx: ReadContext, batch: LatencyBatch, all_hops: bool) -> None:
        self.no, self.obj, self.ctx, self.batch, self.all_hops = no, obj, ctx, batch, all_hops
        self.src: str = obj["src"]
        self.dst: str = obj["dst"]
        self.start_us = _tv_us(obj.get("start"))
        self.measurement = ""

    def set_measurement(self, probes: Iterable[Any]) -> None:
        """Name the measurement by its start time, or by the earliest ``tx`` of ``probes`` when start is 0."""
        t = self.start_us if self.start_us else min(_tx_values(probes), default=0)
        self.measurement = f"{self.obj['type']}:{self.src}>{self.dst}@{t // 1_000_000}.{t % 1_000_000:06d}"

    def quarantine(self, reason: str, field: str) -> None:
        self.ctx.quarantine(self.no, reason, raw_text(self.obj), field=field)

    def reply(
        self,
        field: str,
        rtt_value: Any,
        tx: Any,
        replier: Any,
        ttl_value: Any = None,
        ttl_field: str | None = None,
    ) -> None:
        """Account one reply (already counted as input): a row, an ``intermediate_hop`` drop or a quarantine.

        ``ttl_field`` is None for replies that have no hop (ping): they never get a ``hop_ttl``.
        """
        rtt = as_rtt(rtt_value)
        if rtt is None:
            self.quarantine(f"invalid rtt {rtt_value!r:.60}", f"{field}.rtt")
            return
        tx_us = _tv_us(tx)
        if tx is not None and tx_us is None:
            self.quarantine(f"invalid tx {tx!r:.60}", f"{field}.tx")
            return
        ts = tx_us if tx_us is not None else self.start_us
        if not ts:
            # start 0 is a converter's placeholder, not a time: never emit 1970.
            self.quarantine("no usable time: no tx and start is missing or 0", f"{field}.tx")
            return
        if self.all_hops and ttl_field is not None:
            ttl = as_int(ttl_value, 0, 32767)
            if ttl is None:
                self.quarantine(f"invalid probe ttl {ttl_value!r:.60}", ttl_field)
                return
            self.batch.add(ts, self.src, self.dst, rtt, self.measurement, ttl)
        elif replier == self.dst:
            self.batch.add(ts, self.src, self.dst, rtt, self.measurement)
        else:
            self.ctx.drop("intermediate_hop")


def _trace(rec: _Record) -> None:
    ctx = rec.ctx
    hops = rec.obj.get("hops", [])  # scamper omits "hops" when nothing answered
    if not isinstance(hops, list):
        ctx.count_input()
        rec.quarantine("hops is not a list", "hops")
        return
    if not hops:
        ctx.count_input()
        ctx.drop("no_reply")
        return
    rec.set_measurement(hops)
    ctx.count_input(len(hops))
    for k, hop in enumerate(hops):
        field = f"hops[{k}]"
        if not isinstance(hop, dict):
            rec.quarantine("hop is not an object", field)
        elif not isinstance(hop.get("addr"), str):
            rec.quarantine("hop has no addr", f"{field}.addr")
        else:
            ttl_field = f"{field}.probe_ttl"
            rec.reply(field, hop.get("rtt"), hop.get("tx"), hop["addr"], hop.get("probe_ttl"), ttl_field)


def _ping(rec: _Record) -> None:
    ctx, obj = rec.ctx, rec.obj
    responses = obj.get("responses", [])
    if not isinstance(responses, list):
        ctx.count_input()
        rec.quarantine("responses is not a list", "responses")
        return
    sent = as_int(obj.get("ping_sent", 0), 0, 2**31)
    if sent is None:
        ctx.count_input()
        rec.quarantine(f"invalid ping_sent {obj.get('ping_sent')!r:.60}", "ping_sent")
        return
    if not responses and not sent:
        ctx.count_input()
        ctx.drop("no_reply")
        return
    rec.set_measurement(responses)
    answered: set[int] = set()
    ctx.count_input(len(responses))
    for k, resp in enumerate(responses):
        field = f"responses[{k}]"
        if not isinstance(resp, dict):
            rec.quarantine("response is not an object", field)
            continue
        seq = as_int(resp.get("seq"), 0, 2**31)
        if seq is not None:
            answered.add(seq)
        frm = resp.get("from", rec.dst)
        if not isinstance(frm, str):
            rec.quarantine("response from is not a string", f"{field}.from")
        elif frm != rec.dst:
            ctx.drop("reply_from_other")
        else:
            rec.reply(field, resp.get("rtt"), resp.get("tx"), frm)
    unanswered = sent - sum(1 for s in answered if s < sent)
    ctx.count_input(unanswered)
    ctx.drop("timeout", unanswered)


def _tracelb(rec: _Record) -> None:
    ctx = rec.ctx
    nodes = rec.obj.get("nodes", [])
    if not isinstance(nodes, list):
        ctx.count_input()
        rec.quarantine("nodes is not a list", "nodes")
        return
    # Collect (path, element address, probe) first: the measurement name needs the earliest tx.
    probes: list[tuple[str, Any, Any]] = []
    for a, node in enumerate(nodes):
        links = node.get("links", []) if isinstance(node, dict) else None
        if not isinstance(links, list):
            ctx.count_input()
            rec.quarantine("node is not an object with a links list", f"nodes[{a}]")
            continue
        for b, group in enumerate(links):
            if not isinstance(group, list):
                ctx.count_input()
                rec.quarantine("link is not a list", f"nodes[{a}].links[{b}]")
                continue
            for c, elem in enumerate(group):
                path = f"nodes[{a}].links[{b}][{c}]"
                plist = elem.get("probes", []) if isinstance(elem, dict) else None
                if not isinstance(plist, list):
                    ctx.count_input()
                    rec.quarantine("link hop is not an object with a probes list", path)
                    continue
                probes.extend((f"{path}.probes[{d}]", elem.get("addr"), p) for d, p in enumerate(plist))
    if not probes:
        ctx.count_input()
        ctx.drop("no_reply")
        return
    rec.set_measurement(p for _, _, p in probes)
    for path, addr, probe in probes:
        replies = probe.get("replies", []) if isinstance(probe, dict) else None
        if not isinstance(replies, list):
            ctx.count_input()
            rec.quarantine("probe is not an object with a replies list", path)
            continue
        if not replies:
            ctx.count_input()
            ctx.drop("timeout")
            continue
        ctx.count_input(len(replies))
        for e, rep in enumerate(replies):
            field = f"{path}.replies[{e}]"
            if not isinstance(rep, dict):
                rec.quarantine("reply is not an object", field)
            else:
                rec.reply(field, rep.get("rtt"), probe.get("tx"), addr, probe.get("ttl"), f"{path}.ttl")


_HANDLERS = {"trace": _trace, "ping": _ping, "tracelb": _tracelb}


def account_record(no: int, obj: dict, ctx: ReadContext, batch: LatencyBatch, all_hops: bool = False) -> None:
    """Account one scamper record and add its rows to ``batch`` (the reference rules, every case handled)."""
    rtype = obj.get("type")
    if isinstance(rtype, str) and rtype in METADATA_TYPES:
        ctx.count_input()
        ctx.drop("metadata")
        return
    if not isinstance(rtype, str) or not rtype:
        ctx.count_input()
        ctx.quarantine(no, "missing or non-string type", raw_text(obj), field="type")
        return
    handler = _HANDLERS.get(rtype)
    if handler is None:
        ctx.count_input()
        ctx.drop(f"unsupported_type:{rtype}")
        return
    bad = next((f for f in ("src", "dst") if not isinstance(obj.get(f), str) or not obj[f]), None)
    if bad is not None:
        ctx.count_input()
        ctx.quarantine(no, f"missing or invalid {bad}", raw_text(obj), field=bad)
        return
    handler(_Record(no, obj, ctx, batch, all_hops))


def parse_scamper_records(
    records: Iterator[tuple[int, dict]], ctx: ReadContext, *, all_hops: bool = False
) -> Iterator[pd.DataFrame]:
    """Turn ``(record_no, scamper JSON object)`` pairs into canonical latency frames, accounting every record."""
    batch = LatencyBatch(SOURCE, ctx.batch_rows)
    for no, obj in records:
        account_record(no, obj, ctx, batch, all_hops)
        yield from batch.full_frames()
    yield from batch.flush()


@register("scamper", "latency")
def read_scamper(
    path: str | Path, ctx: ReadContext, *, all_hops: bool = False, engine: str = "fast", arrow: bool = False,
    **options: Any,
) -> Iterator[pd.DataFrame]:
    """Read scamper JSON lines (``sc_warts2json`` output; plain, gz or bz2) from ``path``.

    ``all_hops=True`` emits every hop reply of traces and tracelbs with ``hop_ttl``. ``engine="fast"``
    (default) decodes lines with msgspec and takes the common trace column-wise
    (:mod:`~flamenco_core.ingest.scamper_fast`; every other record by the same rules, ``json`` deciding any
    line msgspec refuses), yielding canonical Arrow tables when ``arrow=True`` (the ingest driver asks for
    them); ``engine="reference"`` uses ``json`` and the rules throughout. Both give the same rows, drops and
    quarantine. Other ``options`` (meant for other readers) are ignored. See docs/ingest.md (scamper.py) for what
    one record is.
    """
    if engine not in ("fast", "reference"):
        raise IngestError(f"{path}: unknown engine {engine!r}; choose 'fast' or 'reference'")
    if engine == "fast":
        blocks = readable_records(iter_json_records(path, ctx, fast=True, typed=trace_struct(), blocks=True), path)
        for table in parse_scamper_fast(blocks, ctx, account_record, SOURCE, all_hops=all_hops):
            yield table if arrow else arrow_to_frame(table)
        return
    records = readable_records(iter_json_records(path, ctx), path)
    yield from parse_scamper_records(records, ctx, all_hops=all_hops)


def _feed(src: IO[bytes], dst: IO[bytes], errors: list[BaseException]) -> None:
    # Runs in a thread so that decompressing into sc_warts2json's stdin cannot deadlock against its stdout.
    try:
        with src, dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except BrokenPipeError:
        pass  # sc_warts2json stopped reading; its exit status tells why
    except BaseException as exc:  # noqa: BLE001 - re-raised by the reader as IngestError
        errors.append(exc)


@register("warts", "latency")
def read_warts(
    path: str | Path,
    ctx: ReadContext,
    *,
    all_hops: bool = False,
    sc_warts2json: str | None = None,
    **options: Any,
) -> Iterator[pd.DataFrame]:
    """Read a scamper warts file (plain, gz or bz2) by streaming it through ``sc_warts2json``.

    ``sc_warts2json`` names the converter binary (default: found on ``PATH``). Raises :class:`IngestError`
    when the converter is missing (install the Debian package ``scamper``), the file does not exist, or the
    converter exits non-zero (message names the file and the converter's stderr). Other ``options`` are
    ignored; ``all_hops`` is as for :func:`read_scamper`.
    """
    exe = sc_warts2json or shutil.which("sc_warts2json")
    if exe is None:
        raise IngestError(
            f"{path}: cannot read warts: sc_warts2json is not on PATH; install the Debian package "
            "`scamper` (apt-get install scamper)"
        )
    p = Path(path)
    if not p.is_file():
        raise IngestError(f"{path}: no such file")
    with open(p, "rb") as fh:
        magic = fh.read(3)
    compressed = magic[:2] == b"\x1f\x8b" or magic == b"BZh"
    feed_errors: list[BaseException] = []
    with tempfile.TemporaryFile() as stderr:
        # stderr goes to a file, not a pipe: an unread stderr pipe could fill and stall the converter.
        proc = subprocess.Popen(
            [exe] if compressed else [exe, str(p)],
            stdin=subprocess.PIPE if compressed else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
        )
        feeder = None
        if compressed:
            feeder = threading.Thread(
                target=_feed, args=(open_maybe_compressed(p), proc.stdin, feed_errors), daemon=True
            )
            feeder.start()
        try:
            assert proc.stdout is not None
            yield from parse_scamper_records(iter_json_lines(proc.stdout, ctx), ctx, all_hops=all_hops)
            rc = proc.wait()
        finally:
            if proc.poll() is None:  # the consumer stopped early: do not leave the converter running
                proc.kill()
                proc.wait()
            if feeder is not None:
                feeder.join(timeout=10)
            proc.stdout.close()
        if feed_errors:
            raise IngestError(f"{path}: cannot decompress warts file: {feed_errors[0]}")
        if rc != 0:
            stderr.seek(0)
            msg = stderr.read()[-2000:].decode("utf-8", "replace").strip()
            raise IngestError(f"{path}: sc_warts2json exited with status {rc}: {msg or '(no stderr)'}")


#: The ingest driver passes ``arrow=True`` to readers that say they accept it.
read_scamper.accepts_arrow = True
