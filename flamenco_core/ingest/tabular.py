"""Tabular readers (``csv``, ``parquet``) and the column-wise parsing helpers the text readers share.

The ``csv`` and ``parquet`` readers hold either latency or flow rows, decided per file: after the
column map is applied, a file with an ``rtt_ms`` column is latency data, any other file is flow data
(option ``kind`` forces one). Both are registered with kind ``"auto"``: **the driver must look at the
yielded columns** (``"rtt_ms" in frame.columns`` means latency) or call :func:`tabular_kind` first.

Record definitions:

- ``csv``: one record per non-blank line after the header (the record number is the 1-based line
  number in the file). A line with the wrong number of fields, or with a text where a number, a
  timestamp or a port belongs, is quarantined; everything else becomes one row (NaN and inf kept).
- ``parquet``: one record per row (the record number is the 1-based row index).

Options (both formats):

- ``column_map``: ``{canonical: original}``, e.g. ``{"rtt_ms": "RTT", "src": "probe"}``;
  ``column_map_path``: a YAML file holding that mapping (either at top level or under a
  ``column_map`` key, optionally with ``kind``). Columns whose names already are canonical, or whose
  snake-cased names are (``"Src"`` -> ``src``), need no entry.
- ``kind``: ``"latency"`` or ``"flows"`` (default: inferred as above).
- ``tz``: time zone of naive timestamps (default UTC). Timestamps are ISO strings, unix seconds
  (numbers or numeric strings; ``timestamp_unit`` changes the unit) or Parquet timestamps;
  ``timestamp_format`` forces a strftime format.
- latency only: ``source`` (default ``"csv"``), ``measurement`` (default: the file stem) fill the
  columns when the file has none; ``hop_ttl`` is NA when absent.
- flows only: ``exclude_columns`` lists extra columns to leave out of the features. Other
  columns become snake_case features when at least half of their non-empty values in the first batch
  are numbers; wholly textual columns (flags, names) are left out, with a logged warning.
- csv only: ``sep`` (default ``","``).

Text fields: CSV quoting is honoured per line, but a quoted field that spans lines is not supported
(each line is one record).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from itertools import islice
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd

from .base import IngestError, ReadContext, open_maybe_compressed, register
from .schema import snake_case

log = logging.getLogger(__name__)

#: The strings pandas reads as missing; a numeric field holding one of them is NaN, not malformed.
NA_STRINGS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
_NA_LOWER = frozenset(s.lower() for s in NA_STRINGS)

LATENCY_REQUIRED = ("timestamp", "src", "dst", "rtt_ms")
LATENCY_OPTIONAL = ("source", "measurement", "hop_ttl", "label")
FLOWS_REQUIRED = ("timestamp", "src", "dst", "src_port", "dst_port", "protocol")

#: Protocol names as nfdump prints them (its ``protoList``, index = IANA number) ...
NFDUMP_PROTOCOLS = (
    "0", "ICMP", "IGMP", "GGP", "IPIP", "ST", "TCP", "CBT", "EGP", "IGP", "BBN", "NVPII", "PUP", "ARGUS",
    "ENCOM", "XNET", "CHAOS", "UDP", "MUX", "DCN", "HMP", "PRM", "XNS", "Trnk1", "Trnk2", "Leaf1", "Leaf2",
    "RDP", "IRTP", "ISO-4", "NETBK", "MFESP", "MEINP", "DCCP", "3PC", "IDPR", "XTP", "DDP", "IDPR", "TP++",
    "IL", "IPv6", "SDRP", "Rte6", "Frag6", "IDRP", "RSVP", "GRE", "MHRP", "BNA", "ESP", "AH", "INLSP",
    "SWIPE", "NARP", "MOBIL", "TLSP", "SKIP", "ICMP6", "NOHE6", "OPTS6", "HOST", "CFTP", "NET", "SATNT",
    "KLAN", "RVD", "IPPC", "FS", "SATM", "VISA", "IPCV", "CPNX", "CPHB", "WSN", "PVP", "BSATM", "SUNND",
    "WBMON", "WBEXP", "ISOIP", "VMTP", "SVMTP", "VINES", "TTP", "NSIGP", "DGP", "TCF", "EIGRP", "OSPF",
    "S-RPC", "LARP", "MTP", "AX.25", "OS", "MICP", "SCCSP", "ETHIP", "ENCAP", "99", "GMTP", "IFMP", "PNNI",
    "PIM", "ARIS", "SCPS", "QNX", "A/N", "IPcmp", "SNP", "CpqPP", "IPXIP", "VRRP", "PGM", "0hop", "L2TP",
    "DDX", "IATP", "STP", "SRP", "UTI", "SMP", "SM", "PTP", "ISIS4", "FIRE", "CRTP", "CRUDP", "128", "IPLT",
    "SPS", "PIPE", "SCTP", "FC", "134", "MHEAD", "UDP-L", "MPLS",
)  # fmt: skip
#: ... plus the IANA keywords other tools print. Keys are upper-case; the first name wins, as in nfdump.
PROTOCOL_NUMBERS: dict[str, int] = {}
for _num, _name in enumerate(NFDUMP_PROTOCOLS):
    PROTOCOL_NUMBERS.setdefault(_name.upper(), _num)
for _name, _num in {"HOPOPT": 0, "IPV4": 4, "IPV6-ICMP": 58, "ICMPV6": 58, "IPV6-FRAG": 44,
                    "IPV6-ROUTE": 43, "IPV6-NONXT": 59, "IPV6-OPTS": 60, "UDPLITE": 136, "OSPFIGP": 89}.items():
    PROTOCOL_NUMBERS.setdefault(_name, _num)


# --------------------------------------------------------------------------------------------------
# Reading lines


def open_text(path: str | Path) -> io.TextIOWrapper:
    """Open a (possibly gzip/bzip2-compressed) text file; undecodable bytes become U+FFFD rather than
    aborting the file, a UTF-8 BOM is dropped and every line ending reads as ``\\n``."""
    return io.TextIOWrapper(open_maybe_compressed(path), encoding="utf-8-sig", errors="replace", newline=None)


class TextBlock:
    """Consecutive lines of a file, kept as one string (``text``, lines joined by ``\\n``) so that they
    can be scanned with numpy and handed to a parser without splitting; block line ``i`` is file line
    ``first_no + i``."""

    def __init__(self, text: str, first_no: int, n: int):
        self.text = text
        self.first_no = first_no
        self.n = n
        self._lines: list[str] | None = None

    @property
    def lines(self) -> list[str]:
        """The block's lines (split on first use: the fast paths never need them)."""
        if self._lines is None:
            self._lines = self.text.split("\n")
        return self._lines

    def series(self, mask: np.ndarray | None = None) -> pd.Series:
        """The lines (where ``mask``) as an object Series indexed by file line number."""
        s = pd.Series(self.lines, index=np.arange(self.first_no, self.first_no + self.n), dtype=object)
        return s if mask is None else s[mask]

    def select_text(self, mask: np.ndarray) -> str:
        """The lines where ``mask``, joined by ``\\n`` (the block text itself when all are selected)."""
        if mask.all():
            return self.text
        return "\n".join(np.asarray(self.lines, dtype=object)[mask].tolist())

    def scan(self, sep: str = ",") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per line: number of fields, whether it holds a quote, whether it is blank.

        Separators are counted on the encoded bytes (UTF-8 never puts an ASCII byte inside a multi-byte
        character), so a block costs a few numpy passes; only lines with quotes are re-counted with the
        csv module, and only separator-free lines are checked for being whitespace."""
        if len(sep) != 1 or ord(sep) > 127:
            fields = np.array([x.count(sep) for x in self.lines], dtype=np.int64) + 1
            quoted = np.array(['"' in x for x in self.lines], dtype=bool)
            blank = np.array([not x.strip() for x in self.lines], dtype=bool)
        else:
            buf = np.frombuffer(self.text.encode("utf-8", "surrogatepass"), dtype=np.uint8)
            ends = np.append(np.flatnonzero(buf == 10), len(buf))
            starts = np.concatenate(([0], ends[:-1] + 1))

            def per_line(byte: int) -> np.ndarray:
                pos = np.flatnonzero(buf == byte)
                # searching the few line ends among the many separator positions keeps this O(n log m)
                return np.diff(np.concatenate(([0], np.searchsorted(pos, ends))))

            fields = per_line(ord(sep)) + 1
            quoted = per_line(34) > 0 if '"' in self.text else np.zeros(self.n, dtype=bool)
            blank = (ends - starts) == 0
            maybe = ~blank & (fields == 1)
            if maybe.any():
                blank[maybe] = [self.lines[i].isspace() for i in np.flatnonzero(maybe)]
        if quoted.any():
            fields[quoted] = [_csv_field_count(self.lines[i], sep) for i in np.flatnonzero(quoted)]
        return fields, quoted, blank


class LineSource:
    """Numbered lines of a text file, read in blocks (bounded memory).

    :meth:`header` returns the first non-blank line; :meth:`blocks` then yields the following lines in
    :class:`TextBlock` s of at most ``n_lines`` lines."""

    def __init__(self, fh: io.TextIOBase):
        self._fh = fh
        self._next_no = 1

    def header(self) -> tuple[int, str] | None:
        """``(line number, text)`` of the first non-blank line, or None for a file without one."""
        for line in self._fh:
            no = self._next_no
            self._next_no += 1
            text = line.rstrip("\n")
            if text.strip():
                return no, text
        return None

    def blocks(self, n_lines: int) -> Iterator[TextBlock]:
        """The remaining lines, ``n_lines`` at a time."""
        n_lines = max(1, int(n_lines))
        while True:
            items = list(islice(self._fh, n_lines))
            if not items:
                return
            # universal-newline mode turned every line ending into "\n", so "\n" separates exactly the
            # file's lines (str.splitlines would also split on \x0b, \x1c, U+2028, ...)
            text = "".join(items)
            del items
            if text.endswith("\n"):
                text = text[:-1]
            n = text.count("\n") + 1
            block = TextBlock(text, self._next_no, n)
            self._next_no += n
            yield block


def parse_header(line: str, sep: str = ",") -> list[str]:
    """Split a header line with CSV quoting rules (the names are kept as written, spaces included)."""
    try:
        return next(csv.reader([line], delimiter=sep))
    except (csv.Error, StopIteration) as exc:
        raise IngestError(f"cannot parse header line {line[:200]!r}: {exc}") from exc


def _csv_field_count(line: str, sep: str) -> int:
    try:
        return len(next(csv.reader([line], delimiter=sep, strict=True)))
    except (csv.Error, StopIteration):
        return -1


def delimited_records(
    block: TextBlock, n_fields: int, ctx: ReadContext, sep: str = ",", limit: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Count the block's records (non-blank lines, the first ``limit`` lines only when given), quarantine
    those without ``n_fields`` fields, and return ``(positions of the good lines, quoted mask)``.

    A truncated line or one with an extra field is caught whether or not it is the last of the file."""
    fields, quoted, blank = block.scan(sep)
    records = ~blank
    if limit is not None:
        records[limit:] = False
    ctx.count_input(int(records.sum()))
    wrong = records & (fields != n_fields)
    for i in np.flatnonzero(wrong):
        found = "an unparsable quoted field" if fields[i] < 0 else str(int(fields[i]))
        ctx.quarantine(block.first_no + int(i), f"expected {n_fields} fields, found {found}", block.lines[i])
    return np.flatnonzero(records & ~wrong), quoted


def read_delimited(
    block: TextBlock,
    rows: np.ndarray,
    quoted: np.ndarray,
    n_fields: int,
    usecols: list[int],
    str_cols: Iterable[int],
    sep: str = ",",
) -> pd.DataFrame:
    """Parse the block lines at positions ``rows`` (all with ``n_fields`` fields) into a frame with
    columns ``usecols`` (field positions) and a 0..len(rows)-1 index.

    Columns in ``str_cols`` stay text (empty string when empty); the others are parsed by pandas'
    C parser, which gives float/int columns when every value is a number or a missing-value marker and
    an object column otherwise (for :func:`to_float` to find the culprits). Lines with quotes, and any
    block the C parser would misalign, go through the csv module instead."""
    str_cols = set(str_cols) & set(usecols)
    take = np.zeros(block.n, dtype=bool)
    take[rows] = True
    plain = take & ~quoted
    q = take & quoted
    parts = []
    if plain.any():
        n_plain = int(plain.sum())
        try:
            df = pd.read_csv(
                io.StringIO(block.select_text(plain)),
                sep=sep,
                header=None,
                names=list(range(n_fields)),
                usecols=usecols,
                dtype={c: str for c in str_cols},
                keep_default_na=False,
                na_values={c: list(NA_STRINGS) for c in usecols if c not in str_cols},
                quoting=csv.QUOTE_NONE,
                skip_blank_lines=False,
                engine="c",
                low_memory=False,
            )
            if len(df) != n_plain:
                raise ValueError("row count mismatch")
            df.index = np.flatnonzero(plain)
        except (ValueError, pd.errors.ParserError, csv.Error):
            df = _python_rows(block, np.flatnonzero(plain), usecols, sep, csv.QUOTE_NONE)
        parts.append(df)
    if q.any():
        parts.append(_python_rows(block, np.flatnonzero(q), usecols, sep, csv.QUOTE_MINIMAL))
    df = parts[0] if len(parts) == 1 else pd.concat(parts).sort_index()
    return df.reset_index(drop=True)


def _python_rows(block: TextBlock, pos: np.ndarray, usecols: list[int], sep: str, quoting: int) -> pd.DataFrame:
    rows = []
    for i in pos:
        try:
            fields = next(csv.reader([block.lines[i]], delimiter=sep, quoting=quoting))
        except (csv.Error, StopIteration):
            fields = []
        rows.append([fields[k] if k < len(fields) else "" for k in usecols])
    return pd.DataFrame(rows, index=pos, columns=usecols, dtype=object)


# --------------------------------------------------------------------------------------------------
# Column-wise value parsing: every function returns values plus a boolean "malformed" mask, so that a
# chunk is validated with vectorised operations and only the bad rows are touched one by one.


class RowProblems:
    """Collects malformed values column by column; :meth:`quarantine` files one entry per bad row
    (naming its first bad field, the reason listing all of them)."""

    def __init__(self, n: int):
        self.bad = np.zeros(n, dtype=bool)
        self._items: list[tuple[np.ndarray, str, str, np.ndarray]] = []

    def add(self, mask: np.ndarray, field: str, what: str, raw_values) -> None:
        """Record that rows ``mask`` hold ``what`` (e.g. "unparsable number") in ``field``; ``raw_values``
        (positional) are the values as read, quoted in the reason."""
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            self.bad |= mask
            if isinstance(raw_values, pd.Series):
                raw_values = _text(raw_values)
            self._items.append((mask, field, what, np.asarray(raw_values, dtype=object)))

    def quarantine(self, ctx: ReadContext, record_nos: np.ndarray, raw_of: Callable[[int], str]) -> None:
        """File the bad rows; ``raw_of(i)`` gives the original text of row position ``i``."""
        for i in np.flatnonzero(self.bad):
            probs = [(field, what, vals[i]) for mask, field, what, vals in self._items if mask[i]]
            reason = "; ".join(
                f"{what} in field {field!r}" if what.startswith("missing") else f"{what} {_short(v)} in field {field!r}"
                for field, what, v in probs
            )
            ctx.quarantine(int(record_nos[i]), reason, raw_of(int(i)), field=probs[0][0])


def _short(v) -> str:
    text = repr(v) if isinstance(v, str) else repr(str(v))
    return text if len(text) <= 60 else text[:57] + "...'"


def _text(col: pd.Series) -> pd.Series:
    return col.astype(object).where(col.notna(), "").astype(str)


def to_float(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Values as float64 and a mask of malformed entries: a text that is not a number. Empty fields and
    missing-value markers (``NaN``, ``NA``, ``null``, ...) become NaN and ``Infinity``/``inf`` become
    inf; neither is malformed (the driver drops them with reasons)."""
    if pd.api.types.is_bool_dtype(col) or pd.api.types.is_numeric_dtype(col):
        return np.array(col.to_numpy(dtype="float64", na_value=np.nan)), np.zeros(len(col), dtype=bool)
    num = pd.to_numeric(col, errors="coerce")
    values = np.array(num.to_numpy(dtype="float64", na_value=np.nan))
    nan = np.isnan(values)
    bad = np.zeros(len(col), dtype=bool)
    if nan.any():
        sub = col[nan]
        marker = sub.isna().to_numpy() | _text(sub).str.strip().str.lower().isin(_NA_LOWER).to_numpy()
        bad[nan] = ~marker
    return values, bad


def to_int(col: pd.Series, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integers in ``[lo, hi]`` as int64 plus two masks: missing (empty/NA) and malformed (a text, a
    fraction or out of range). Values at masked positions are 0."""
    values, bad = to_float(col)
    missing = np.isnan(values) & ~bad
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(values) & (values == np.floor(values)) & (values >= lo) & (values <= hi)
    bad = ~ok & ~missing
    return np.where(ok, values, 0).astype("int64"), missing, bad


def to_protocol(col: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IANA protocol numbers from numbers or names (``TCP``, ``udp``, ``ICMP6``, ``ipv6-icmp``, ...);
    masks as :func:`to_int`."""
    if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
        text = _text(col).str.strip()
        named = text.str.upper().map(PROTOCOL_NUMBERS)
        has_name = named.notna().to_numpy()
        if has_name.any():
            col = text.where(~has_name, named.astype("Int64").astype(str))
    return to_int(col, 0, 255)


#: strftime formats tried, after pandas' ISO 8601 parser and its format guess, for timestamps that
#: CICFlowMeter versions print (CIC-IDS2017, CSE-CIC-IDS2018).
EXTRA_TIMESTAMP_FORMATS = (
    "%d/%m/%Y %I:%M:%S %p",
    "%d/%m/%Y %H:%M:%S",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %I:%M:%S %p",
    "%m/%d/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M",
)
_TZ_SUFFIX = re.compile(r"(?:Z|[+-]\d\d:?\d\d)$", re.IGNORECASE)


def to_timestamp(
    col: pd.Series,
    tz: str | None = None,
    fmt: str | None = None,
    unit: str = "s",
    dayfirst: bool = False,
) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    """UTC timestamps (``datetime64[us, UTC]``) plus masks missing / malformed.

    Numbers (or numeric strings) are unix time in ``unit``; strings are ISO 8601, ``fmt`` if given, else
    a format guessed from the first string that is not ISO (see :data:`EXTRA_TIMESTAMP_FORMATS`).
    Naive values are local time in ``tz`` (default UTC); a local time that does not exist or is
    ambiguous (DST change) counts as malformed."""
    tz = tz or "UTC"
    n = len(col)
    if isinstance(col.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(col):
        missing = col.isna().to_numpy()
        acc = _utc_values(col, tz)
        return _finish(acc, col.index, missing)
    if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        values = col.to_numpy(dtype="float64", na_value=np.nan)
        missing = np.isnan(values)
        acc = _from_unix(values, unit)
        return _finish(acc, col.index, missing)

    text = _text(col).str.strip()
    missing = text.str.lower().isin(_NA_LOWER).to_numpy()
    acc = np.full(n, np.datetime64("NaT"), dtype="datetime64[us]")
    todo = ~missing
    if todo.any():
        if tz.upper() == "UTC":
            # naive and offset-carrying strings in one pass: both are read as UTC
            got = pd.to_datetime(text, format=fmt or "ISO8601", utc=True, errors="coerce")
            acc[todo] = _utc_values(got, "UTC")[todo]
        else:
            aware = todo & text.str.contains(_TZ_SUFFIX).to_numpy()
            if aware.any():
                got = pd.to_datetime(text[aware], format=fmt or "ISO8601", utc=True, errors="coerce")
                acc[aware] = _utc_values(got, "UTC")
            naive = todo & ~aware
            if naive.any():
                acc[naive] = _utc_values(pd.to_datetime(text[naive], format=fmt or "ISO8601", errors="coerce"), tz)
        todo &= np.isnat(acc)
    if fmt is None and todo.any():
        num = pd.to_numeric(text[todo], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        sel = np.flatnonzero(todo)[~np.isnan(num)]
        if len(sel):
            acc[sel] = _from_unix(num[~np.isnan(num)], unit)
            todo[sel] = False
    if fmt is None and todo.any():
        from pandas.tseries.api import guess_datetime_format

        guessed = guess_datetime_format(text[todo].iloc[0], dayfirst=dayfirst)
        extra = [f for f in EXTRA_TIMESTAMP_FORMATS if f.startswith("%d") == dayfirst]
        extra += [f for f in EXTRA_TIMESTAMP_FORMATS if f not in extra]
        for f in ([guessed] if guessed else []) + extra:
            if not todo.any():
                break
            sel = np.flatnonzero(todo)
            got = _utc_values(pd.to_datetime(text.iloc[sel], format=f, errors="coerce"), tz)
            ok = ~np.isnat(got)
            acc[sel[ok]] = got[ok]
            todo[sel[ok]] = False
    return _finish(acc, col.index, missing)


def _from_unix(values: np.ndarray, unit: str) -> np.ndarray:
    got = pd.to_datetime(pd.Series(values), unit=unit, utc=True, errors="coerce")
    return _utc_values(got, "UTC")


def _utc_values(dt: pd.Series, tz: str) -> np.ndarray:
    """Naive UTC ``datetime64[us]`` values of a datetime series (naive values are local time in ``tz``)."""
    dt = pd.to_datetime(dt, errors="coerce")
    if not isinstance(dt.dtype, pd.DatetimeTZDtype):
        if tz.upper() != "UTC":
            dt = dt.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        else:
            dt = dt.dt.tz_localize("UTC")
    return dt.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")


#: Timestamps outside pandas' nanosecond range (years 1677-2262) count as malformed: they are no
#: measurement times (``-1`` read as ISO year -1) and would overflow code that works in nanoseconds.
TS_MIN = np.datetime64(pd.Timestamp.min.ceil("us").to_datetime64(), "us")
TS_MAX = np.datetime64(pd.Timestamp.max.floor("us").to_datetime64(), "us")


def _finish(acc: np.ndarray, index, missing: np.ndarray) -> tuple[pd.Series, np.ndarray, np.ndarray]:
    out_of_range = ~np.isnat(acc) & ((acc < TS_MIN) | (acc > TS_MAX))
    if out_of_range.any():
        acc = acc.copy()
        acc[out_of_range] = np.datetime64("NaT")
    return pd.Series(acc, index=index).dt.tz_localize("UTC"), missing, np.isnat(acc) & ~missing


def unix_seconds(ts: pd.Series) -> np.ndarray:
    """Unix time in seconds (float, NaN for NaT) of a tz-aware timestamp series."""
    us = ts.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
    out = us.astype("int64") / 1e6
    out[np.isnat(us)] = np.nan
    return out


def add_timestamp_problems(problems: RowProblems, field: str, col: pd.Series, missing, bad) -> None:
    """Add the masks of :func:`to_timestamp` (a record without a time is malformed too)."""
    problems.add(missing, field, "missing timestamp", col)
    problems.add(bad, field, "unparsable timestamp", col)


def add_int_problems(problems: RowProblems, field: str, col: pd.Series, missing, bad, what: str) -> None:
    """Add the masks of :func:`to_int`/:func:`to_protocol` for a key column (port, protocol)."""
    problems.add(missing, field, f"missing {what}", col)
    problems.add(bad, field, f"unparsable {what}", col)


# --------------------------------------------------------------------------------------------------
# The tabular readers


def load_column_map(path: str | Path) -> tuple[dict[str, str], str | None]:
    """Read ``{canonical: original}`` (and an optional ``kind``) from a YAML file: either the mapping at
    top level or under ``column_map``."""
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise IngestError(f"cannot read column map {path}: {exc}") from exc
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        raise IngestError(f"column map {path}: expected a mapping canonical -> original, got {type(data).__name__}")
    kind = None
    if "column_map" in data:
        kind = data.get("kind")
        data = data["column_map"] or {}
        if not isinstance(data, dict):
            raise IngestError(f"column map {path}: 'column_map' must be a mapping canonical -> original")
    bad = {k: v for k, v in data.items() if not isinstance(k, str) or not isinstance(v, str)}
    if bad:
        raise IngestError(f"column map {path}: names must be strings, got {bad}")
    return dict(data), kind


def _options_map(options: dict) -> tuple[dict[str, str], str | None]:
    cmap: dict[str, str] = {}
    kind = options.get("kind")
    if options.get("column_map_path"):
        cmap, file_kind = load_column_map(options["column_map_path"])
        kind = kind or file_kind
    if options.get("column_map"):
        cmap = {**cmap, **dict(options["column_map"])}
    if kind not in (None, "latency", "flows"):
        raise IngestError(f"kind must be 'latency' or 'flows', not {kind!r}")
    return cmap, kind


def resolve_columns(path: str | Path, found: list[str], column_map: dict[str, str], kind: str | None) -> tuple[dict[str, str], str]:
    """Map canonical names to the file's columns and decide the kind.

    Each canonical column is found by ``column_map`` (canonical -> original), else by its own name,
    else by a column whose snake-cased name equals it. Raises :class:`IngestError` naming the file, the
    missing column(s) and the columns found."""
    found_set = set(found)
    by_snake: dict[str, str] = {}
    for c in found:
        by_snake.setdefault(snake_case(str(c)), c)
    wrong = {k: v for k, v in column_map.items() if v not in found_set}
    if wrong:
        raise IngestError(
            f"{path}: column_map names column(s) not in the file: "
            + ", ".join(f"{k} -> {v!r}" for k, v in wrong.items())
            + f"; found columns: {found}"
        )
    mapped_originals = set(column_map.values())

    def lookup(canonical: str) -> str | None:
        if canonical in column_map:
            return column_map[canonical]
        if canonical in found_set and canonical not in mapped_originals:
            return canonical
        c = by_snake.get(canonical)
        return c if c is not None and c not in mapped_originals else None

    if kind is None:
        kind = "latency" if lookup("rtt_ms") is not None else "flows"
    required = LATENCY_REQUIRED if kind == "latency" else FLOWS_REQUIRED
    optional = LATENCY_OPTIONAL if kind == "latency" else ("label",)
    resolved = {c: lookup(c) for c in (*required, *optional)}
    missing = [c for c in required if resolved[c] is None]
    if missing:
        raise IngestError(
            f"{path}: missing required column(s) {', '.join(missing)} for {kind} data; found columns: {found}. "
            "Map them with column_map (canonical -> original)"
        )
    return {k: v for k, v in resolved.items() if v is not None}, kind


def tabular_kind(path: str | Path, fmt: str | None = None, **options) -> str:
    """``"latency"`` or ``"flows"`` for a tabular file, reading only its header or schema (for the driver,
    since ``csv``/``parquet`` are registered with kind ``"auto"``)."""
    cmap, kind = _options_map(options)
    fmt = fmt or ("parquet" if str(path).endswith((".parquet", ".pq")) else "csv")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        found = list(pq.ParquetFile(path).schema_arrow.names)
    else:
        with open_text(path) as fh:
            head = LineSource(fh).header()
        if head is None:
            raise IngestError(f"{path}: empty file, no header line")
        found = parse_header(head[1], options.get("sep", ","))
    return resolve_columns(path, found, cmap, kind)[1]


class _TabularBuilder:
    """Turns frames with the file's column names into canonical frames, column-wise."""

    def __init__(self, path, ctx: ReadContext, found: list[str], options: dict, default_source: str):
        cmap, kind = _options_map(options)
        self.path = path
        self.ctx = ctx
        self.cols, self.kind = resolve_columns(path, found, cmap, kind)
        self.tz = options.get("tz")
        self.fmt = options.get("timestamp_format")
        self.unit = options.get("timestamp_unit", "s")
        self.dayfirst = bool(options.get("dayfirst", False))
        self.source = options.get("source", default_source)
        self.measurement = options.get("measurement", Path(str(path)).stem)
        excluded = set(options.get("exclude_columns") or ())
        self.candidates: list[str] = []
        if self.kind == "flows":
            used = set(self.cols.values())
            self.candidates = [c for c in found if c not in used and c not in excluded]
        self.features: list[tuple[str, str]] | None = None  # (original, snake) once decided
        names = {k: str(v) for k, v in self.cols.items()}
        ctx.display_names.update(names)

    def needed(self) -> list[str]:
        return list(dict.fromkeys([*self.cols.values(), *self.candidates]))

    def text_columns(self) -> list[str]:
        keys = ("timestamp", "src", "dst", "label", "source", "measurement", "protocol")
        return [self.cols[k] for k in keys if k in self.cols]

    def _decide_features(self, df: pd.DataFrame) -> None:
        feats: list[tuple[str, str]] = []
        taken = set(FLOWS_REQUIRED) | {"label"}
        for c in self.candidates:
            col = df[c]
            if not (pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col)):
                values, bad = to_float(col)
                present = int((~np.isnan(values)).sum() + bad.sum())
                if present and bad.sum() * 2 > present:
                    log.warning("%s: column %r is not numeric; left out of the features", self.path, c)
                    continue
            name = snake_case(str(c)) or "column"
            base, k = name, 1
            while name in taken:
                name = f"{base}_{k}"
                k += 1
            taken.add(name)
            feats.append((c, name))
        self.features = feats
        self.ctx.display_names.update({snake: str(orig) for orig, snake in feats})

    def build(self, df: pd.DataFrame, record_nos: np.ndarray, raw_of: Callable[[int], str]) -> pd.DataFrame | None:
        n = len(df)
        if n == 0:
            return None
        pr = RowProblems(n)
        out: dict[str, object] = {}
        c = self.cols
        ts, missing, bad = to_timestamp(df[c["timestamp"]], self.tz, self.fmt, self.unit, self.dayfirst)
        add_timestamp_problems(pr, str(c["timestamp"]), df[c["timestamp"]], missing, bad)
        out["timestamp"] = ts.array
        out["src"] = _text(df[c["src"]]).str.strip().to_numpy()
        out["dst"] = _text(df[c["dst"]]).str.strip().to_numpy()
        if self.kind == "latency":
            rtt, rbad = to_float(df[c["rtt_ms"]])
            pr.add(rbad, str(c["rtt_ms"]), "unparsable number", df[c["rtt_ms"]])
            out["rtt_ms"] = rtt
            out["source"] = _text(df[c["source"]]).to_numpy() if "source" in c else np.full(n, self.source, dtype=object)
            out["measurement"] = (
                _text(df[c["measurement"]]).to_numpy() if "measurement" in c else np.full(n, self.measurement, dtype=object)
            )
            if "hop_ttl" in c:
                ttl, tmiss, tbad = to_int(df[c["hop_ttl"]], 0, 255)
                pr.add(tbad, str(c["hop_ttl"]), "unparsable hop TTL", df[c["hop_ttl"]])
                out["hop_ttl"] = pd.arrays.IntegerArray(ttl.astype("int16"), tmiss)
            else:
                out["hop_ttl"] = pd.arrays.IntegerArray(np.zeros(n, dtype="int16"), np.ones(n, dtype=bool))
        else:
            for key, lo_hi, what in (("src_port", (0, 65535), "port"), ("dst_port", (0, 65535), "port")):
                vals, miss, ibad = to_int(df[c[key]], *lo_hi)
                add_int_problems(pr, str(c[key]), df[c[key]], miss, ibad, what)
                out[key] = vals
            vals, miss, ibad = to_protocol(df[c["protocol"]])
            add_int_problems(pr, str(c["protocol"]), df[c["protocol"]], miss, ibad, "protocol")
            out["protocol"] = vals
            if self.features is None:
                self._decide_features(df)
            for orig, snake in self.features or ():
                vals, fbad = to_float(df[orig])
                pr.add(fbad, str(orig), "unparsable number", df[orig])
                out[snake] = vals
        if "label" in c:
            lab = df[c["label"]]
            out["label"] = _text(lab).str.strip().where(lab.notna(), None).to_numpy()
        frame = pd.DataFrame(out)
        if pr.bad.any():
            pr.quarantine(self.ctx, record_nos, raw_of)
            frame = frame[~pr.bad].reset_index(drop=True)
        return frame if len(frame) else None


@register("csv", "auto")
def read_csv(path: str | Path, ctx: ReadContext, **options) -> Iterator[pd.DataFrame]:
    """Read a delimited text file of latency or flow rows (see the module docstring for the options,
    the record definition and how the kind is decided)."""
    sep = options.get("sep", ",")
    with open_text(path) as fh:
        src = LineSource(fh)
        head = src.header()
        if head is None:
            raise IngestError(f"{path}: empty file, no header line")
        found = parse_header(head[1], sep)
        if len(set(found)) != len(found):
            dup = sorted({c for c in found if found.count(c) > 1})
            raise IngestError(f"{path}: duplicated column name(s) {dup} in the header")
        b = _TabularBuilder(path, ctx, found, options, default_source="csv")
        pos = {c: i for i, c in enumerate(found)}
        usecols = sorted(pos[c] for c in b.needed())
        str_cols = {pos[c] for c in b.text_columns()}
        for block in src.blocks(ctx.batch_rows):
            rows, quoted = delimited_records(block, len(found), ctx, sep)
            if not len(rows):
                continue
            raw = read_delimited(block, rows, quoted, len(found), usecols, str_cols, sep)
            df = raw.rename(columns={i: found[i] for i in usecols})
            frame = b.build(df, block.first_no + rows, lambda i, block=block, rows=rows: block.lines[rows[i]])
            if frame is not None:
                yield frame


@register("parquet", "auto")
def read_parquet(path: str | Path, ctx: ReadContext, **options) -> Iterator[pd.DataFrame]:
    """Read a Parquet file of latency or flow rows in batches (``ParquetFile.iter_batches``); a record
    is a row, numbered from 1. See the module docstring for options and the kind decision."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as exc:
        raise IngestError(f"{path}: not a readable Parquet file: {exc}") from exc
    found = list(pf.schema_arrow.names)
    b = _TabularBuilder(path, ctx, found, options, default_source="csv")
    offset = 0
    for batch in pf.iter_batches(batch_size=max(1, ctx.batch_rows), columns=b.needed()):
        df = batch.to_pandas()
        n = len(df)
        ctx.count_input(n)
        record_nos = np.arange(offset + 1, offset + n + 1)
        offset += n
        frame = b.build(df, record_nos, lambda i, df=df: json.dumps({str(k): v for k, v in df.iloc[i].items()}, default=str))
        if frame is not None:
            yield frame
