"""nfdump exports (``-o csv``, ``-o extended``, ``-o long``, ``-o line``) into the flows table.

Details (what one record is, the columns, the options): docs/ingest.md, section nfdump.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import numpy as np
import pandas as pd

from .base import IngestError, ReadContext, register
from .column_values import RowProblems, add_int_problems, add_timestamp_problems, to_protocol, to_timestamp, unix_seconds
from .nfdump_values import (  # noqa: F401  (re-exported: the value parsers were importable from here)
    UNIT_SCALE,
    durations,
    parse_scaled,
    ports,
    scaled_numbers,
    split_address_port,
    trunc_rate,
)
from .text_lines import LineSource, TextBlock, delimited_records, open_text, parse_header, read_delimited

_DATE_START = re.compile(r"^\s*\d{4}-\d\d-\d\d[ T]\d\d:\d\d")
_TEXT_HEADER = re.compile(r"^\s*Date (first seen|flow start)")
#: Lines of the text trailer (and of aggregated output) that are not data.
TRAILER = re.compile(r"^\s*(?:Summary:|Time window:|Total flows processed:|Sys:|Aggregated flows|No matching flows)")

#: The CSV header of nfdump 1.6/1.7.1 ``-o csv``, used when the export was printed without it (``-q``).
DEFAULT_CSV_HEADER = (
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,nh,nhb,svln,"
    "dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,mpls9,mpls10,cl,sl,al,ra,eng,exid,tr"
).split(",")

#: canonical column -> nfdump CSV header names (1.6/1.7.1 first, later versions second)
CSV_ALIASES = {
    "timestamp": ("ts", "firstSeen"),
    "last_seen": ("te", "lastSeen"),
    "duration": ("td", "duration"),
    "src": ("sa", "srcAddr"),
    "dst": ("da", "dstAddr"),
    "src_port": ("sp", "srcPort"),
    "dst_port": ("dp", "dstPort"),
    "protocol": ("pr", "proto"),
    "packets": ("ipkt", "inPackets", "pkt", "packets"),
    "bytes": ("ibyt", "inBytes", "byt", "bytes"),
    "bps": ("bps",),
    "pps": ("pps",),
    "bpp": ("bpp",),
    "flows": ("fl", "flows"),
}
_CSV_REQUIRED = ("timestamp", "src", "dst", "src_port", "dst_port", "protocol", "packets", "bytes")

#: Text header labels -> field code; longest first so ``Src IP Addr:Port`` wins over ``Src IP Addr``.
TEXT_HEADER_FIELDS = {
    "Date first seen": "ts",
    "Date flow start": "ts",
    "Date last seen": "te",
    "Date flow end": "te",
    "Duration": "td",
    "Proto": "pr",
    "Src IP Addr:Port": "sap",
    "Dst IP Addr:Port": "dap",
    "Src IP Addr": "sa",
    "Dst IP Addr": "da",
    "Src Pt": "sp",
    "Dst Pt": "dp",
    "Flags": "flg",
    "Tos": "tos",
    "Packets": "pkt",
    "In Pkt": "pkt",
    "Bytes": "byt",
    "In Byte": "byt",
    "pps": "pps",
    "bps": "bps",
    "Bpp": "bpp",
    "Flows": "fl",
    # printed by some formats, single tokens, not used
    "Out Pkt": "-",
    "Out Byte": "-",
    "Src AS": "-",
    "Dst AS": "-",
    "Input": "-",
    "Output": "-",
    "STos": "-",
    "DTos": "-",
    "Dir": "-",
    "SMask": "-",
    "DMask": "-",
}
_HEADER_RE = re.compile("|".join(re.escape(k) for k in sorted(TEXT_HEADER_FIELDS, key=len, reverse=True)))
#: Text layouts printed without a header (``-q``), by token count once the ``->`` are removed.
HEADERLESS_LAYOUTS = {
    9: ["ts", "td", "pr", "sap", "dap", "pkt", "byt", "fl"],  # -o line
    11: ["ts", "td", "pr", "sap", "dap", "flg", "tos", "pkt", "byt", "fl"],  # -o long
    14: ["ts", "td", "pr", "sap", "dap", "flg", "tos", "pkt", "byt", "pps", "bps", "bpp", "fl"],  # -o extended
}
_DEFAULT_TEXT_NAMES = {
    "ts": "Date first seen",
    "te": "Date last seen",
    "td": "Duration",
    "pr": "Proto",
    "sap": "Src IP Addr:Port",
    "dap": "Dst IP Addr:Port",
    "sa": "Src IP Addr",
    "da": "Dst IP Addr",
    "sp": "Src Pt",
    "dp": "Dst Pt",
    "flg": "Flags",
    "tos": "Tos",
    "pkt": "Packets",
    "byt": "Bytes",
    "pps": "pps",
    "bps": "bps",
    "bpp": "Bpp",
    "fl": "Flows",
}
FEATURES = ("last_seen", "duration", "packets", "bytes", "bps", "pps", "bpp", "flows")
_ICMP = (1, 58)


@register("nfdump", "flows")
def read_nfdump(path: str | Path, ctx: ReadContext, **options) -> Iterator[pd.DataFrame]:
    """Read an nfdump CSV or text export into canonical flow frames of at most ``ctx.batch_rows`` rows
    (docs/ingest.md, nfdump.py: detection, records, columns and the option ``tz``)."""
    tz = options.get("tz")
    with open_text(path) as fh:
        src = LineSource(fh)
        head = src.header()
        if head is None:
            raise IngestError(f"{path}: empty file, no nfdump output")
        _, first = head
        if _TEXT_HEADER.match(first):
            yield from _read_text(path, ctx, src, first, None, tz)
            return
        fields = first.split(",")
        known = {a for aliases in CSV_ALIASES.values() for a in aliases}
        if not _DATE_START.match(first) and sum(f.strip() in known for f in fields) >= 3:
            yield from _read_csv(path, ctx, src, parse_header(first), None, tz)
            return
        if _DATE_START.match(first):
            # printed with -q: no header, the first line is already data
            if len(fields) == len(DEFAULT_CSV_HEADER):
                yield from _read_csv(path, ctx, src, list(DEFAULT_CSV_HEADER), head, tz)
                return
            n_tokens = len(_glue(first).split())
            if n_tokens in HEADERLESS_LAYOUTS:
                yield from _read_text(path, ctx, src, None, head, tz)
                return
        raise IngestError(f"{path}: not an nfdump csv/extended/long/line export (first line {first[:120]!r})")


def _blocks(src: LineSource, first: tuple[int, str] | None, n: int) -> Iterator[TextBlock]:
    if first is not None:  # headerless output: the line read for detection is already data
        yield TextBlock(first[1], first[0], 1)
    yield from src.blocks(n)


_SUMMARY = re.compile(r"^[ \t]*Summary[ \t]*$", re.MULTILINE)


def _read_csv(path, ctx: ReadContext, src: LineSource, header: list[str], first, tz) -> Iterator[pd.DataFrame]:
    stripped = [h.strip() for h in header]
    pos: dict[str, int] = {}
    for canonical, aliases in CSV_ALIASES.items():
        for a in aliases:
            if a in stripped:
                pos[canonical] = stripped.index(a)
                break
    missing = [c for c in _CSV_REQUIRED if c not in pos]
    if "duration" not in pos and "last_seen" not in pos:
        missing.append("duration (td) or last seen (te)")
    if missing:
        raise IngestError(f"{path}: nfdump csv lacks column(s) for {', '.join(missing)}; header: {stripped}")
    names = {k: stripped[i] for k, i in pos.items()}
    ctx.display_names.update({k: names.get(k, _DEFAULT_TEXT_NAMES[c]) for k, c in
                              (("timestamp", "ts"), ("src", "sa"), ("dst", "da"), ("src_port", "sp"),
                               ("dst_port", "dp"), ("protocol", "pr"), ("last_seen", "te"), ("duration", "td"),
                               ("packets", "pkt"), ("bytes", "byt"), ("bps", "bps"), ("pps", "pps"), ("bpp", "bpp"))})
    if "flows" in pos:
        ctx.display_names["flows"] = names["flows"]
    n_fields = len(header)
    usecols = sorted(set(pos.values()))
    str_cols = [pos[k] for k in ("timestamp", "last_seen", "src", "dst", "src_port", "dst_port", "protocol") if k in pos]
    for block in _blocks(src, first, ctx.batch_rows):
        m = _SUMMARY.search(block.text)
        limit = block.text.count("\n", 0, m.start()) if m else None
        rows, quoted = delimited_records(block, n_fields, ctx, limit=limit)
        if len(rows):
            df = read_delimited(block, rows, quoted, n_fields, usecols, str_cols)
            cols = {k: df[i] for k, i in pos.items()}
            frame = _assemble(cols, {k: stripped[i] for k, i in pos.items()}, tz, ctx, block.first_no + rows,
                              lambda i, block=block, rows=rows: block.lines[rows[i]])
            if frame is not None:
                yield frame
        if m:
            return  # the summary block and anything after it is not flow data


_DAYS = re.compile(r"(?<=\d)d[ \t]+(?=\d+:\d\d:)")


def _glue(text: str) -> str:
    """Make every field of the lines in ``text`` one whitespace-free token: ``1.4 M`` -> ``1.4M``,
    ``2d 01:02:03.000`` -> ``2d01:02:03.000``, and blank out the ``->`` between the addresses.

    Plain substring replacement on the whole block (no per-line regex): in nfdump output a lone unit
    letter only ever follows a number, and the line structure is untouched."""
    for unit in UNIT_SCALE:
        if unit and f" {unit}" in text:
            text = text.replace(f" {unit} ", f"{unit} ").replace(f" {unit}\n", f"{unit}\n")
            if text.endswith(f" {unit}"):
                text = text[:-2] + unit
    if "d " in text or "d\t" in text:
        text = _DAYS.sub("d", text)
    return text.replace(" -> ", "    ")


def _text_layout(path, header: str) -> tuple[list[str], list[str]]:
    codes, labels, rest = [], [], header
    for m in _HEADER_RE.finditer(header):
        codes.append(TEXT_HEADER_FIELDS[m.group(0)])
        labels.append(m.group(0))
    rest = _HEADER_RE.sub(" ", header)
    if rest.strip():
        raise IngestError(f"{path}: unsupported nfdump text column(s) {rest.split()} in header {header.strip()!r}")
    return codes, labels


def _read_text(path, ctx: ReadContext, src: LineSource, header: str | None, first, tz) -> Iterator[pd.DataFrame]:
    if header is not None:
        codes, labels = _text_layout(path, header)
    else:
        n_tokens = len(_glue(first[1]).split())
        codes = HEADERLESS_LAYOUTS[n_tokens]
        labels = [_DEFAULT_TEXT_NAMES[c] for c in codes]
    have = set(codes)
    missing = [
        name
        for name, ok in (
            ("Date first seen", "ts" in have),
            ("Proto", "pr" in have),
            ("Src IP Addr[:Port]", "sap" in have or {"sa", "sp"} <= have),
            ("Dst IP Addr[:Port]", "dap" in have or {"da", "dp"} <= have),
            ("Packets", "pkt" in have),
            ("Bytes", "byt" in have),
            ("Duration or Date last seen", "td" in have or "te" in have),
        )
        if not ok
    ]
    if missing:
        raise IngestError(f"{path}: nfdump text output lacks {', '.join(missing)}")
    # token positions: the dates take two tokens (day and time)
    starts, k = {}, 0
    for code, label in zip(codes, labels):
        if code != "-":
            starts.setdefault(code, (k, label))
        k += 2 if code in ("ts", "te") else 1
    n_tokens = k
    label_of = {code: label for code, (_, label) in starts.items()}
    disp = {
        "timestamp": label_of["ts"],
        "src": "Src IP Addr",
        "dst": "Dst IP Addr",
        "src_port": "Src Pt",
        "dst_port": "Dst Pt",
        "protocol": label_of["pr"],
        "last_seen": label_of.get("te", "Date last seen"),
        "duration": label_of.get("td", "Duration"),
        "packets": label_of["pkt"],
        "bytes": label_of["byt"],
        "bps": label_of.get("bps", "bps"),
        "pps": label_of.get("pps", "pps"),
        "bpp": label_of.get("bpp", "Bpp"),
    }
    if "fl" in starts:
        disp["flows"] = label_of["fl"]
    ctx.display_names.update(disp)

    for block in _blocks(src, first, ctx.batch_rows):
        lines = block.series()
        glued = TextBlock(_glue(block.text), block.first_no, block.n).series()
        skip = ((lines.str.len() == 0) | lines.str.isspace() | lines.str.contains(TRAILER)).to_numpy()
        if skip.any():
            lines, glued = lines[~skip], glued[~skip]
        if not len(lines):
            continue
        ctx.count_input(len(lines))
        tokens = glued.str.split(expand=True)
        counts = tokens.notna().sum(axis=1).to_numpy()
        wrong = counts != n_tokens
        if wrong.any():
            for no, raw, c in zip(lines.index[wrong], lines[wrong], counts[wrong]):
                ctx.quarantine(no, f"expected {n_tokens} fields, found {c}", raw)
            lines, tokens = lines[~wrong], tokens[~wrong]
        if not len(lines):
            continue
        tok = {code: tokens[i] for code, (i, _) in starts.items()}
        cols: dict[str, pd.Series] = {}
        names: dict[str, str] = {}
        cols["timestamp"], names["timestamp"] = tok["ts"] + " " + tokens[starts["ts"][0] + 1], label_of["ts"]
        if "te" in tok:
            cols["last_seen"], names["last_seen"] = tok["te"] + " " + tokens[starts["te"][0] + 1], label_of["te"]
        for key, code in (("duration", "td"), ("protocol", "pr"), ("packets", "pkt"), ("bytes", "byt"),
                          ("bps", "bps"), ("pps", "pps"), ("bpp", "bpp"), ("flows", "fl")):
            if code in tok:
                cols[key], names[key] = tok[code], label_of[code]
        for side, combined, a, p in (("src", "sap", "sa", "sp"), ("dst", "dap", "da", "dp")):
            if combined in tok:
                cols[f"{side}_addrport"], names[f"{side}_addrport"] = tok[combined], label_of[combined]
            else:
                cols[side], names[side] = tok[a], label_of[a]
                cols[f"{side}_port"], names[f"{side}_port"] = tok[p], label_of[p]
        texts = lines.to_numpy()
        frame = _assemble(cols, names, tz, ctx, lines.index.to_numpy(), texts.__getitem__)
        if frame is not None:
            yield frame


def _assemble(
    cols: dict[str, pd.Series], names: dict[str, str], tz, ctx: ReadContext, record_nos: np.ndarray, raw_of
) -> pd.DataFrame | None:
    """Canonical frame from the export's columns (positional, text or numbers), quarantining malformed
    rows; ``raw_of(i)`` gives the original line of row ``i``."""
    cols = {k: v.reset_index(drop=True) for k, v in cols.items()}
    n = len(record_nos)
    pr = RowProblems(n)
    out: dict[str, object] = {}

    ts, miss, bad = to_timestamp(cols["timestamp"], tz)
    add_timestamp_problems(pr, names["timestamp"], cols["timestamp"], miss, bad)
    out["timestamp"] = ts.to_numpy()

    proto, miss, bad = to_protocol(cols["protocol"])
    add_int_problems(pr, names["protocol"], cols["protocol"], miss, bad, "protocol")
    icmp = np.isin(proto, _ICMP) & ~miss & ~bad

    for side in ("src", "dst"):
        if f"{side}_addrport" in cols:
            field = names[f"{side}_addrport"]
            addr, port_text, abad = split_address_port(cols[f"{side}_addrport"], icmp)
            pr.add(abad, field, "unparsable address:port", cols[f"{side}_addrport"])
            port_field = field
        else:
            addr, port_text, abad = cols[side], cols[f"{side}_port"], np.zeros(n, dtype=bool)
            port_field = names[f"{side}_port"]
        port, pmiss, pbad = ports(port_text, icmp)
        add_int_problems(pr, port_field, port_text, pmiss & ~abad, pbad & ~abad, "port")
        out[side] = addr.astype(object).where(addr.notna(), "").astype(str).str.strip().to_numpy(dtype=object)
        out[f"{side}_port"] = port
    out["protocol"] = proto

    if "last_seen" in cols:
        last, lmiss, lbad = to_timestamp(cols["last_seen"], tz)
        add_timestamp_problems(pr, names["last_seen"], cols["last_seen"], lmiss, lbad)
    if "duration" in cols:
        dur, dbad = durations(cols["duration"])
        pr.add(dbad, names["duration"], "unparsable duration", cols["duration"])
    start = unix_seconds(ts)
    if "last_seen" in cols:
        out["last_seen"] = unix_seconds(last)
    if "duration" not in cols:
        dur = out["last_seen"] - start
    if "last_seen" not in cols:
        out["last_seen"] = start + dur
    out["duration"] = dur

    for key in ("packets", "bytes", "bps", "pps", "bpp", "flows"):
        if key in cols:
            v, vbad = scaled_numbers(cols[key])
            pr.add(vbad, names[key], "unparsable number", cols[key])
            out[key] = v
    packets, nbytes = out["packets"], out["bytes"]
    if "bps" not in out:
        out["bps"] = trunc_rate(nbytes * 8.0, dur)
    if "pps" not in out:
        out["pps"] = trunc_rate(packets, dur)
    if "bpp" not in out:
        out["bpp"] = trunc_rate(nbytes, packets)
    order = ["timestamp", "src", "dst", "src_port", "dst_port", "protocol", *[f for f in FEATURES if f in out]]
    frame = pd.DataFrame({k: out[k] for k in order})
    if pr.bad.any():
        pr.quarantine(ctx, record_nos, raw_of)
        frame = frame[~pr.bad].reset_index(drop=True)
    return frame if len(frame) else None
