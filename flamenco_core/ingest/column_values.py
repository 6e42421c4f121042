"""Column-wise value parsing for the text readers: every function returns values plus a boolean
"malformed" mask, so that a block is validated with vectorised operations and only the bad rows are touched
one by one (:class:`RowProblems` files them).
"""

from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pandas as pd

from .base import ReadContext

#: The strings pandas reads as missing; a numeric field holding one of them is NaN, not malformed.
NA_STRINGS = (
    "", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
    "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null",
)  # fmt: skip
_NA_LOWER = frozenset(s.lower() for s in NA_STRINGS)

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
                raw_values = as_text(raw_values)
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


def as_text(col: pd.Series) -> pd.Series:
    """The values as Python strings, missing ones as ``""`` (how a reason quotes them)."""
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
        marker = sub.isna().to_numpy() | as_text(sub).str.strip().str.lower().isin(_NA_LOWER).to_numpy()
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
        text = as_text(col).str.strip()
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

    text = as_text(col).str.strip()
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
