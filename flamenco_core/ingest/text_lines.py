"""Delimited text read in blocks of lines: the line scan, field counts and the parse the text readers share.

:class:`LineSource` numbers a file's lines and hands them out as :class:`TextBlock` s (bounded memory);
:func:`delimited_records` counts a block's records and quarantines lines with the wrong field count;
:func:`read_delimited` parses the rest with pandas' C parser (the csv module for quoted lines).
"""

from __future__ import annotations

import csv
import io
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd

from .base import IngestError, ReadContext, open_maybe_compressed
from .column_values import NA_STRINGS


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
