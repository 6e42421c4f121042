"""What every reader shares: record accounting, the quarantine, and the reader registry.

Accounting contract: for every input file, ``input_records == rows + sum(dropped.values()) +
quarantined``. A reader decides what one *record* is for its format (documented on the reader) and
reports each one exactly once, either as a produced row (cleaning may drop it later, by reason), a
drop by reason (e.g. an Atlas timeout reply), or a quarantine entry (a malformed record).
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pandas as pd

from flamenco_core.errors import FlamencoError

#: How many canonical rows a reader buffers before yielding a batch (bounded memory for large dumps).
DEFAULT_BATCH_ROWS = 200_000


class IngestError(FlamencoError):
    """A file cannot be read at all (missing tool, unknown format, unreadable file); exit 1 in the CLI.

    Record-level problems never raise: they are quarantined. The message names the file and, where
    one applies, the record and field.
    """


@dataclass
class QuarantineRecord:
    file: str
    record: int  # 1-based line number for text formats, record index otherwise
    field: str | None
    reason: str
    raw: str


@dataclass
class ReadContext:
    """Per-file accounting handed to a reader. Readers call :meth:`count_input`, :meth:`drop` and
    :meth:`quarantine`; produced rows are counted by the driver from the frames the reader yields."""

    file: str
    batch_rows: int = DEFAULT_BATCH_ROWS
    input_records: int = 0
    dropped: Counter = field(default_factory=Counter)
    quarantined: list[QuarantineRecord] = field(default_factory=list)
    produced: int = 0
    #: Flow readers fill {canonical column: original column name} for display.
    display_names: dict = field(default_factory=dict)
    #: A reader that knows the file's columns before any row (a CSV header) may set an empty frame with
    #: them, so that a file without rows still gets a table with its own columns.
    template: pd.DataFrame | None = None

    def count_input(self, n: int = 1) -> None:
        self.input_records += n

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] += int(n)

    def quarantine(self, record: int, reason: str, raw: str | bytes = "", field: str | None = None) -> None:
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", "replace")
        self.quarantined.append(QuarantineRecord(self.file, int(record), field, reason, raw[:500]))

    def balanced(self) -> bool:
        return self.input_records == self.produced + sum(self.dropped.values()) + len(self.quarantined)


Reader = Callable[..., Iterator[pd.DataFrame]]
READERS: dict[str, Reader] = {}
#: format name -> "latency" or "flows"
KINDS: dict[str, str] = {}


def register(name: str, kind: str) -> Callable[[Reader], Reader]:
    """Register ``fn(path, ctx, **options) -> Iterator[pd.DataFrame]`` as the reader for ``name``.

    A reader with the attribute ``accepts_arrow = True`` gets ``arrow=True`` from the ingest driver and may
    then yield canonical ``pyarrow.Table`` s instead of frames (no pandas round trip)."""

    def deco(fn: Reader) -> Reader:
        READERS[name] = fn
        KINDS[name] = kind
        return fn

    return deco


def open_maybe_compressed(path: str | Path) -> io.BufferedIOBase:
    """Open ``path`` for binary reading, decompressing gzip or bzip2 by content (magic bytes), not by name."""
    p = Path(path)
    with open(p, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] == b"\x1f\x8b":
        return gzip.open(p, "rb")
    if magic == b"BZh":
        return bz2.open(p, "rb")
    return open(p, "rb")


def iter_json_records(path: str | Path, ctx: ReadContext, *, fast: bool = False, typed=None,
                      blocks: bool = False) -> Iterator[tuple[int, dict]]:
    """Yield ``(record_no, obj)`` from a JSON-lines file or a JSON array, compressed or not.

    A line that is not valid JSON (or not an object) is quarantined as one input record. A JSON array is
    detected by its first non-blank byte; its elements are numbered from 1. ``fast=True`` reads JSON lines
    with :func:`iter_json_lines_fast` (``typed``: its msgspec struct type) and yields ``(record_no, obj,
    line)``; ``line`` is None for an array element (decoded by ``json`` already). ``blocks=True`` (with
    ``fast``) yields lists of those triples instead, as :func:`iter_json_line_blocks` does: the caller files
    each :class:`LineProblem` in its place.
    """
    with open_maybe_compressed(path) as fh:
        head = fh.peek(64)[:64] if hasattr(fh, "peek") else b""
        if head.lstrip()[:1] == b"[":
            try:
                data = json.load(fh)
            except (ValueError, RecursionError, UnicodeDecodeError):
                # Not a JSON array after all: a JSON-lines file whose first line is garbage. Reading it
                # line by line quarantines that line instead of losing every valid line after it.
                data = None
            if isinstance(data, list):
                objs = [obj if isinstance(obj, dict) else LineProblem(
                    f"array element is {type(obj).__name__}, not an object", json.dumps(obj)[:200]) for obj in data]
                del data
                block = (list(range(1, len(objs) + 1)), objs, [None] * len(objs))
                if blocks:
                    yield block
                    return
                for i, obj, _ in _filed(block, ctx):
                    yield (i, obj, None) if fast else (i, obj)
                return
    with open_maybe_compressed(path) as fh:
        if blocks:
            yield from iter_json_line_blocks(fh, typed)
        elif fast:
            yield from iter_json_lines_fast(fh, ctx, typed)
        else:
            yield from iter_json_lines(fh, ctx)


def iter_json_lines(stream, ctx: ReadContext) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_no, obj)`` from a binary stream of JSON lines (a file, or ``sc_warts2json``'s stdout),
    quarantining each line that is not a JSON object as one input record."""
    for lineno, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as exc:
            # ValueError covers JSONDecodeError, UnicodeDecodeError and ints past Python's digit limit.
            ctx.count_input()
            ctx.quarantine(lineno, f"invalid JSON: {str(exc)[:200]}", line)
            continue
        if not isinstance(obj, dict):
            ctx.count_input()
            ctx.quarantine(lineno, f"line is a JSON {type(obj).__name__}, not an object", line)
            continue
        yield lineno, obj


#: Bytes read at a time by :func:`iter_json_line_blocks`.
_LINE_BLOCK = 1 << 22


class LineProblem:
    """A line (or array element) that is no JSON object, travelling in its block until the walker files it:
    one input record, quarantined with ``reason`` and ``raw`` (so quarantine entries keep line order)."""

    __slots__ = ("reason", "raw")

    def __init__(self, reason: str, raw: str | bytes):
        self.reason = reason
        self.raw = raw

    def file(self, ctx: ReadContext, record: int) -> None:
        """Count and quarantine the line as record ``record`` of ``ctx``'s file."""
        ctx.count_input()
        ctx.quarantine(record, self.reason, self.raw)


def _filed(block, ctx: ReadContext):
    """The ``(line_no, obj, line)`` of a block, filing each :class:`LineProblem` where it stands."""
    for no, obj, line in zip(*block):
        if type(obj) is LineProblem:
            obj.file(ctx, no)
        else:
            yield no, obj, line


#: Lines decoded by one ``map`` call; a run holding a line of another shape is decoded line by line.
_DECODE_RUN = 256


def _decode_line(line: bytes, fast, plain, ends: bool):
    """One line as ``fast`` (the typed decoder) or ``plain`` gives it, else as ``json.loads`` does; a
    :class:`LineProblem` when it is no JSON object; None for a blank line. ``ends``: a newline followed the
    line in the file (the reference's raw text keeps it, as binary iteration does)."""
    import msgspec

    if fast is not None:
        try:
            return fast(line)
        except (msgspec.ValidationError, msgspec.DecodeError):
            pass  # not the common record's shape: the general decode below applies the reference's rules
    try:
        obj = plain(line)
    except (msgspec.DecodeError, RecursionError):
        if not line.strip():
            return None
        raw = line + b"\n" if ends else line
        try:
            obj = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            return LineProblem(f"invalid JSON: {str(exc)[:200]}", raw)
    if type(obj) is not dict:
        return LineProblem(f"line is a JSON {type(obj).__name__}, not an object", line + b"\n" if ends else line)
    return obj


def iter_json_line_blocks(stream, typed=None) -> Iterator[tuple[list[int], list[Any], list[bytes]]]:
    """The lines of a binary JSON-lines stream as blocks ``(line numbers, objects, lines)``, three parallel
    lists per 4 MB read (not one list of tuples: a block of tuples kept the garbage collector busy).

    Blank lines are left out (they are no records). ``typed`` (a ``msgspec.Struct`` type) is tried first: a
    line that fits it comes as that struct, built in C without a dict (the caller's fast path). Any other
    line is decoded as a plain object, by msgspec, which gives what ``json.loads`` gives whenever it accepts
    a line (exact big integers, last duplicate key wins); a line msgspec refuses goes to ``json.loads``, the
    reference, which accepts what msgspec does not (``NaN``, lone surrogates, UTF-16) and words the error
    messages. A line that is still no JSON object comes as a :class:`LineProblem` for the caller to file.
    Whole blocks, not single lines, cross the generator boundary: per line that hop cost as much as the
    decode."""
    import msgspec

    plain = msgspec.json.Decoder().decode
    fast = msgspec.json.Decoder(typed).decode if typed is not None else None
    errors = (msgspec.ValidationError, msgspec.DecodeError)
    lineno = 0
    tail = b""
    while True:
        block = stream.read(_LINE_BLOCK)
        if not block:
            lines = [tail] if tail else []
            tail = b""
        else:
            lines = (tail + block).split(b"\n")
            tail = lines.pop()
        last = len(lines) - 1
        nos: list[int] = []
        objs: list = []
        kept: list[bytes] = []
        for lo in range(0, len(lines), _DECODE_RUN):
            run = lines[lo:lo + _DECODE_RUN]
            if fast is not None:
                try:
                    # the common case: every line of the run fits ``typed``, decoded in one C-level loop
                    objs.extend(map(fast, run))
                    nos.extend(range(lineno + 1, lineno + 1 + len(run)))
                    kept.extend(run)
                    lineno += len(run)
                    continue
                except errors:
                    del objs[len(kept):]  # the run's decoded prefix: decoded again below
            for i, line in enumerate(run, lo):
                lineno += 1
                obj = _decode_line(line, fast, plain, bool(block) or i < last)
                if obj is not None:
                    objs.append(obj)
                    nos.append(lineno)
                    kept.append(line)
        if objs:
            yield nos, objs, kept
        if not block:
            return


def iter_json_lines_fast(stream, ctx: ReadContext, typed=None) -> Iterator[tuple[int, Any, bytes]]:
    """:func:`iter_json_lines` with msgspec: ``(line_no, obj, line)`` for the same lines, the same quarantine
    (:func:`iter_json_line_blocks`, one line at a time)."""
    for block in iter_json_line_blocks(stream, typed):
        yield from _filed(block, ctx)


def reference_object(line: bytes):
    """``json.loads(line)``: the object exactly as the reference decoder gives it."""
    return json.loads(line)
