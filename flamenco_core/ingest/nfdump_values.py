"""nfdump's printed values, parsed column-wise: scaled numbers (``1.4 M``), durations (``HH:MM:SS.mmm``),
ports (ICMP ``type.code``) and ``address:port`` tokens, each with a malformed mask; and nfdump's rates.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from .column_values import to_float, to_int

#: Unit suffixes nfdump (>= 1.6) prints after a space: decimal multiples.
UNIT_SCALE = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
_SCALED = re.compile(r"^\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*([kKMGT]?)\s*$")
_DURATION = re.compile(r"^(?:(\d+)d)?(\d+):(\d\d):(\d\d(?:\.\d*)?)$")
_PORT = re.compile(r"^(\d+)(?:\.(\d+))?$")


def parse_scaled(text: str) -> float:
    """One nfdump number: ``"1.4 M"`` -> 1.4e6, ``"2578"`` -> 2578.0, ``"3 k"`` -> 3000.0.

    Raises ``ValueError`` for anything else."""
    m = _SCALED.match(text)
    if not m:
        raise ValueError(f"not an nfdump number: {text!r}")
    return float(m.group(1)) * UNIT_SCALE[m.group(2)]


def scaled_numbers(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised :func:`parse_scaled`: float values and a malformed mask (missing markers are NaN)."""
    values, bad = to_float(col)
    if pd.api.types.is_numeric_dtype(col):
        return values, bad
    # plain numbers parsed above; only what failed can carry a unit (and a bare "inf" is no nfdump number)
    odd = bad | np.isinf(values)
    if odd.any():
        text = col[odd].astype(object).where(col[odd].notna(), "").astype(str)
        parts = text.str.extract(_SCALED)
        base = pd.to_numeric(parts[0], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        scale = parts[1].fillna("").map(UNIT_SCALE).to_numpy(dtype="float64", na_value=np.nan)
        got = base * scale
        values[odd] = got
        bad[odd] = np.isnan(got)
    return values, bad


def durations(col: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Seconds from ``HH:MM:SS.mmm``, ``Nd HH:MM:SS.mmm`` (the space removed beforehand) or plain seconds
    (``-N``), and a malformed mask (negative durations included)."""
    if pd.api.types.is_numeric_dtype(col):
        values, bad = to_float(col)
    else:
        text = col.astype(object).where(col.notna(), "").astype(str).str.strip()
        hms = text.str.contains(":", regex=False).to_numpy()
        values = np.full(len(text), np.nan)
        bad = np.zeros(len(text), dtype=bool)
        if (~hms).any():
            values[~hms], bad[~hms] = to_float(text[~hms])
        if hms.any():
            parts = text[hms].str.extract(_DURATION)
            secs = (
                pd.to_numeric(parts[0]).fillna(0).to_numpy(dtype="float64") * 86400
                + pd.to_numeric(parts[1]).to_numpy(dtype="float64", na_value=np.nan) * 3600
                + pd.to_numeric(parts[2]).to_numpy(dtype="float64", na_value=np.nan) * 60
                + pd.to_numeric(parts[3]).to_numpy(dtype="float64", na_value=np.nan)
            )
            values[hms] = secs
            bad[hms] = np.isnan(secs)
    bad |= values < 0
    return values, bad


def ports(col: pd.Series, icmp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Port numbers plus masks missing / malformed. For ICMP rows a ``type.code`` port (as nfdump prints
    the destination port) becomes ``type * 256 + code``, nfdump's own encoding."""
    if pd.api.types.is_numeric_dtype(col):
        return to_int(col, 0, 65535)
    text = col.astype(object).where(col.notna(), "").astype(str).str.strip()
    values, missing, bad = to_int(text, 0, 65535)
    sel = np.flatnonzero(icmp & text.str.contains(".", regex=False).to_numpy())
    if len(sel):  # ICMP "type.code" ("8.0" is no port 8)
        bad[sel] = True
        parts = text.iloc[sel].str.extract(_PORT)
        t, _, tbad = to_int(parts[0], 0, 255)
        c, _, cbad = to_int(parts[1], 0, 255)
        ok = ~tbad & ~cbad & parts[1].notna().to_numpy()
        values[sel[ok]] = t[ok] * 256 + c[ok]
        bad[sel[ok]] = False
    return values, missing, bad


_ADDR4 = r"^(\d{1,3}(?:\.\d{1,3}){3}):(\d+(?:\.\d+)?)$"
_ADDR6 = r"^(.*:.*)\.(\d+)$"
_ADDR6_ICMP = r"^(.*:.*)\.(\d+\.\d+)$"


def split_address_port(col: pd.Series, icmp: np.ndarray) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """Split nfdump's ``a.b.c.d:port`` (IPv4) and ``addr.port`` (IPv6) tokens; for ICMP rows the port may
    be ``type.code``. Returns address, port text and a malformed mask."""
    col = col.astype(object).where(col.notna(), "").astype(str)
    v4 = col.str.extract(_ADDR4)
    addr, port = v4[0], v4[1]
    other = addr.isna().to_numpy()
    if other.any():  # IPv6 (or malformed): only those rows pay for the other patterns
        rest = col[other]
        v6 = rest.str.extract(_ADDR6)
        v6i = rest.str.extract(_ADDR6_ICMP)
        use_i = icmp[other] & v6i[0].notna().to_numpy()
        addr = addr.astype(object)
        port = port.astype(object)
        addr[other] = v6[0].where(~use_i, v6i[0]).to_numpy()
        port[other] = v6[1].where(~use_i, v6i[1]).to_numpy()
    return addr, port, addr.isna().to_numpy()


def trunc_rate(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``trunc(num / den)`` as nfdump computes its rates: 0 when ``den`` is 0, NaN when either is missing."""
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = np.trunc(num / den)
    return np.where(den > 0, rate, np.where(np.isnan(den) | np.isnan(num), np.nan, 0.0))

