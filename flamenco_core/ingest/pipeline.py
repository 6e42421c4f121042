"""The ingest driver: run a reader over files, clean, account for every record, write Parquet.

Outputs in ``out_dir``: ``data.parquet`` (canonical table; always written, with the canonical columns
even when no row survives), ``quarantine.jsonl`` (one JSON object per malformed record: file, record,
field, reason, raw) and ``ingest_report.json``. They are written to temporary names and renamed
together, the report last (:class:`~flamenco_core.outputs.AtomicOutputs`), with ``out_dir`` locked for
the run (:class:`~flamenco_core.outputs.OutputLock`): a killed or failing re-ingest leaves the previous
outputs intact, and a second ingest into the same folder gets
:class:`~flamenco_core.outputs.OutputInUse`.

An ingest that yields no row is not an error here (its report is the truth about the input); callers
that need rows call :meth:`IngestReport.require_rows`, which raises :class:`NoRows` with the reason and
what to try (``--all-hops``, ``--format``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from collections import Counter
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flamenco_core.errors import UsageError
from flamenco_core.ingest import base
from flamenco_core.ingest.base import IngestError, ReadContext
from flamenco_core.ingest.clean import drop_invalid, drop_invalid_arrow
from flamenco_core.ingest.merge import (
    FILE_COL,
    HOLD_BYTES,
    SEQ_COL,
    EarlyWriter,
    dedupe_sort_parts,
    dedupe_sort_tables,
    open_parts,
    TimestampSample,
)
from flamenco_core.ingest.schema import (
    DISPLAY_NAMES_KEY,
    FLOW_KEY_COLUMNS,
    KIND_KEY,
    LATENCY_COLUMNS,
    conform,
    display_names,
    to_flows_table,
    to_latency_table,
)
from flamenco_core.outputs import AtomicOutputs, OutputLock, temp_name

DATA_FILE = "data.parquet"
QUARANTINE_FILE = "quarantine.jsonl"
REPORT_FILE = "ingest_report.json"



@dataclass
class FileReport:
    file: str
    sha256: str
    input_records: int = 0
    rows: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    quarantined: int = 0

    @property
    def balanced(self) -> bool:
        return self.input_records == self.rows + sum(self.dropped.values()) + self.quarantined


@dataclass
class IngestReport:
    """Counts for one ingest. Invariant: ``input_records == rows + sum(dropped) + quarantined``."""

    format: str
    kind: str
    input_records: int
    rows: int
    dropped: dict[str, int]
    quarantined: int
    files: list[FileReport]
    data_path: str | None
    quarantine_path: str | None

    @property
    def balanced(self) -> bool:
        return self.input_records == self.rows + sum(self.dropped.values()) + self.quarantined

    def require_rows(self, options: dict | None = None) -> "IngestReport":
        """Return ``self`` when at least one row survived, else raise :class:`NoRows` saying why and what
        to try (``options``: the reader options the ingest ran with)."""
        if self.rows == 0:
            raise NoRows(no_rows_message(self.to_dict(), options))
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["balanced"] = self.balanced
        for f, fr in zip(d["files"], self.files):
            f["balanced"] = fr.balanced
        return d


class NoRows(IngestError):
    """An ingest produced no row: the message names the file(s), the counts, and what to try."""


def _files_text(report: dict) -> str:
    names = [Path(f["file"]).name for f in report.get("files", [])]
    return ", ".join(names) if len(names) <= 3 else f"{len(names)} files ({', '.join(names[:2])}, ...)"


def no_rows_message(report: dict, options: dict | None = None) -> str:
    """One line for an ingest report (``IngestReport.to_dict()``) with no row: which file(s), what
    happened (empty input, every record quarantined, every traceroute reply an intermediate hop, every
    record dropped by cleaning) and what to try."""
    options = options or {}
    files = _files_text(report)
    n = report["input_records"]
    dropped = {k: v for k, v in sorted(report.get("dropped", {}).items(), key=lambda kv: -kv[1]) if v}
    counts = ", ".join(f"{v} {k}" for k, v in dropped.items())
    if n == 0:
        return f"{files}: empty input: no records to ingest"
    head = f"{files}: 0 rows from {n} records"
    fmt = report.get("format", "")
    if report.get("quarantined", 0) == n:
        from flamenco_core.ingest.sniff import guess_format

        guesses = {g for g in (guess_format(f["file"]) for f in report.get("files", [])) if g}
        looks = f" The content looks like {', '.join(sorted(guesses))}." if guesses - {fmt} else ""
        where = f" (see {report['quarantine_path']})" if report.get("quarantine_path") else ""
        return f"{head}, all quarantined as malformed{where}: is --format {fmt} right?{looks}"
    if dropped.get("intermediate_hop") and not options.get("all_hops"):
        return (f"{head} ({counts}): no reply came from a trace's destination; "
                "try --all-hops to keep every hop's RTT")
    return f"{head}: every record was dropped ({counts}); nothing left to use"


def load_readers() -> None:
    """Register every reader (imported here, not at package import, so `flamenco --help` stays fast)."""
    from flamenco_core.ingest import atlas, cicflowmeter, nfdump, scamper, tabular  # noqa: F401


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content hash recorded with every run so results can be traced to exact inputs."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _kind_of(fmt: str, frame: pd.DataFrame | pa.Table) -> str:
    kind = base.KINDS[fmt]
    if kind == "auto":
        names = frame.column_names if isinstance(frame, pa.Table) else frame.columns
        return "latency" if "rtt_ms" in names else "flows"
    return kind


def ingest(
    paths: Iterable[str | Path],
    fmt: str,
    out_dir: str | Path,
    *,
    options: dict | None = None,
    batch_rows: int = base.DEFAULT_BATCH_ROWS,
    on_batch: Callable[[str, int], None] | None = None,
) -> IngestReport:
    """Read ``paths`` with the ``fmt`` reader, clean, and write the canonical table to ``out_dir``.

    Parsing streams in record batches written to a temporary Parquet file; the final de-duplication and
    time sort then run out of core, one time bucket at a time (:mod:`~flamenco_core.ingest.merge`), so
    memory stays bounded whatever the input's size. ``options["engine"]`` picks the readers' parse path
    (``"fast"``, the default, or ``"reference"``, the original record-at-a-time path; both give the same
    tables). ``on_batch(file, rows)`` is called after each batch, for progress bars. ``out_dir`` is locked for the call and the outputs are replaced together,
    the report last (module docstring).

    Raises :class:`IngestError` when a file cannot be read at all, or when the readers' accounting does
    not balance (a bug: nothing may vanish silently); :class:`~flamenco_core.errors.UsageError` when
    ``out_dir`` is a file; :class:`~flamenco_core.outputs.OutputInUse` when another process is writing
    into ``out_dir``; ``OSError`` (e.g. a full disk) with the previous outputs left in place.
    """
    load_readers()
    if fmt not in base.READERS:
        raise IngestError(f"unknown format {fmt!r}; choose one of {', '.join(sorted(base.READERS))}")
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise IngestError(f"{p}: no such file")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: the output folder is a file; give a folder")
    with OutputLock(out), system_pool():
        try:
            return _ingest(paths, fmt, out, options or {}, batch_rows, on_batch)
        except OSError as exc:
            if exc.filename is not None or exc.errno is None:
                raise
            # pyarrow's write errors name no file: say which folder could not be written
            raise OSError(exc.errno, os.strerror(exc.errno), str(out)) from exc


_POOL_LOCK = threading.Lock()
_POOL_USERS = [0, None]  # ingests running in this process, the pool to restore when the last one ends


@contextmanager
def system_pool():
    """Arrow allocates from the C library's malloc while the ingest runs: pyarrow's default mimalloc pool
    spends about 1 s of system time on a fresh process's first 100 MB CSV (pages mapped and returned per
    block), malloc a fifth of that. Buffers remember their pool, so switching is safe at any time; ingests
    running on threads of one process share the switch, and the last one to end restores the default."""
    with _POOL_LOCK:
        if _POOL_USERS[0] == 0:
            _POOL_USERS[1] = pa.default_memory_pool()
            pa.set_memory_pool(pa.system_memory_pool())
        _POOL_USERS[0] += 1
    try:
        yield
    finally:
        with _POOL_LOCK:
            _POOL_USERS[0] -= 1
            if _POOL_USERS[0] == 0:
                pa.set_memory_pool(_POOL_USERS[1])


def _empty_table(kind: str, template: pd.DataFrame | None, names: dict[str, str]) -> pa.Table:
    """The canonical table with no rows: the reader's own columns when it announced them (a CSV
    header), else the canonical key columns."""
    if kind == "latency":
        return to_latency_table(pd.DataFrame({c: pd.Series(dtype="object") for c in LATENCY_COLUMNS}))
    if template is None:
        template = pd.DataFrame({c: pd.Series(dtype="object") for c in FLOW_KEY_COLUMNS})
    return to_flows_table(template.iloc[:0], names)


def output_schema(schema: pa.Schema, kind: str, names: dict[str, str]) -> pa.Schema:
    """The output's schema: ``schema`` without the internal columns, with the kind and display names."""
    meta = {KIND_KEY: kind.encode()}
    if kind == "flows":
        meta[DISPLAY_NAMES_KEY] = json.dumps(names).encode()
    return pa.schema([f for f in schema if f.name not in (SEQ_COL, FILE_COL)]).with_metadata(meta)


#: The internal ``__seq`` of a row is ``file index << SEQ_FILE_SHIFT | position in its file``: ordered like
#: the rows of the files read one after the other, yet computable by each file alone (the per-file fan-out).
SEQ_FILE_SHIFT = 40


class FileReader:
    """One input file read into canonical Arrow batches with the internal columns (``__seq``, ``__file_idx``),
    cleaned of NaN/inf rows; after :meth:`tables` is exhausted, :attr:`report` holds the file's counts
    (duplicates are found later, across all files), :attr:`kind`, :attr:`names`, :attr:`template` and
    :attr:`quarantined` what the driver needs. ``kind``: the kind earlier files had (mixing raises)."""

    def __init__(self, path: Path, index: int, fmt: str, options: dict, batch_rows: int, kind: str | None = None):
        self.path, self.index, self.fmt, self.options = path, index, fmt, options
        self.ctx = ReadContext(str(path), batch_rows=batch_rows)
        self.kind = kind
        self.report = FileReport(file=str(path), sha256="")
        self.rows = 0  # rows yielded (before de-duplication)
        self.schema: pa.Schema | None = None  # of the first batch, internal columns included
        self.sample = TimestampSample()  # to cut the sort into time buckets

    @property
    def names(self) -> dict[str, str]:
        return self.ctx.display_names

    @property
    def template(self) -> pd.DataFrame | None:
        return self.ctx.template

    @property
    def quarantined(self) -> list[base.QuarantineRecord]:
        return self.ctx.quarantined

    def tables(self, hasher: ThreadPoolExecutor, on_batch: Callable[[str, int], None] | None = None):
        """Yield the file's batches; the SHA-256 of the file is computed on ``hasher`` meanwhile (hashlib
        releases the GIL, so on a second core the extra pass costs no wall time)."""
        reader, ctx, path = base.READERS[self.fmt], self.ctx, self.path
        hashing = hasher.submit(file_sha256, path)
        dropped: Counter = Counter()
        arrow = {"arrow": True} if getattr(reader, "accepts_arrow", False) else {}
        for frame in reader(path, ctx, **self.options, **arrow):
            n_in = frame.num_rows if isinstance(frame, pa.Table) else len(frame)
            if not n_in:
                continue
            ctx.produced += n_in
            this_kind = _kind_of(self.fmt, frame)
            if self.kind is None:
                self.kind = this_kind
            elif this_kind != self.kind:
                raise IngestError(f"{path}: {this_kind} data cannot be mixed with {self.kind} data in one ingest")
            if isinstance(frame, pa.Table):
                # the fast readers hand over canonical Arrow tables: no pandas round trip
                table, reasons = drop_invalid_arrow(frame)
            else:
                frame, reasons = drop_invalid(frame)
                table = None if frame.empty else (
                    to_latency_table(frame) if self.kind == "latency" else to_flows_table(frame))
            dropped.update(reasons)
            del frame
            if table is None or not table.num_rows:
                continue
            n = table.num_rows
            first = (self.index << SEQ_FILE_SHIFT) + self.rows
            table = table.append_column(SEQ_COL, pa.array(np.arange(first, first + n, dtype=np.int64)))
            table = table.append_column(FILE_COL, pa.array(np.full(n, self.index, dtype=np.int32)))
            self.rows += n
            self.sample.add(table["timestamp"].cast(pa.int64()).to_numpy())
            if self.schema is None:
                self.schema = table.schema
            yield table
            if on_batch:
                on_batch(str(path), n)
        if not ctx.balanced():
            raise IngestError(
                f"{path}: reader accounting does not balance: {ctx.input_records} input records, "
                f"{ctx.produced} rows, {dict(ctx.dropped)} dropped, {len(ctx.quarantined)} quarantined"
            )
        dropped.update(ctx.dropped)
        fr = self.report
        fr.sha256 = hashing.result()
        fr.input_records = ctx.input_records
        fr.rows = ctx.produced - sum(v for k, v in dropped.items() if k in ("nan", "inf"))
        fr.dropped = dict(dropped)
        fr.quarantined = len(ctx.quarantined)


def check_schema(path: Path, schema: pa.Schema, first: pa.Schema) -> None:
    """Every file of one ingest has the first file's columns (canonical tables of one kind)."""
    if schema.names != first.names:
        raise IngestError(f"{path}: columns {schema.names} differ from the first file's {first.names}")


def _ingest(paths: list[Path], fmt: str, out: Path, options: dict, batch_rows: int,
            on_batch: Callable[[str, int], None] | None) -> IngestReport:
    kind: str | None = None
    names: dict[str, str] = {}
    file_reports: list[FileReport] = []
    quarantine: list[base.QuarantineRecord] = []
    writer: pa.ipc.RecordBatchFileWriter | None = None  # the scratch parts, once rows outgrow memory
    schema: pa.Schema | None = None
    template: pd.DataFrame | None = None
    total = 0  # rows read, all files
    sample = TimestampSample()
    held: list[pa.Table] = []  # batches kept in memory until they outgrow one sort bucket
    held_bytes = 0
    early: EarlyWriter | None = None  # writes the held rows as they come, while they are in time order

    # A hidden scratch folder beside the outputs (same file system, so nothing is copied at the end);
    # a killed run's copy is swept by the next run that locks the folder.
    scratch = out / temp_name("ingest")
    scratch.mkdir()
    hasher = ThreadPoolExecutor(1)
    try:
        with AtomicOutputs(out, report=REPORT_FILE) as outputs:
            tmp_path = scratch / "parts.arrow"
            for idx, path in enumerate(paths):
                fr = FileReader(path, idx, fmt, options, batch_rows, kind)
                for table in fr.tables(hasher, on_batch):
                    if schema is None:
                        schema = table.schema
                    else:
                        check_schema(path, table.schema, schema)
                    table = conform(table, schema)
                    # Rows stay in memory while they fit HOLD_BYTES (no scratch file for small inputs);
                    # past that, everything goes to the scratch parts.
                    if writer is None and held_bytes + table.nbytes <= HOLD_BYTES:
                        held.append(table)
                        held_bytes += table.nbytes
                        if early is None:
                            early = EarlyWriter(outputs.path(DATA_FILE),
                                                output_schema(schema, fr.kind, {**names, **fr.names}))
                        early.add(table)
                    else:
                        if early is not None:
                            early.stop()
                        if writer is None:
                            writer = open_parts(tmp_path, schema)
                            for t in held:
                                writer.write_table(t)
                            held, held_bytes = [], 0
                        writer.write_table(table)
                    del table
                kind = fr.kind
                total += fr.rows
                sample.merge(fr.sample.values(), fr.sample.stride)
                if template is None and fr.template is not None:
                    template = fr.template
                names.update(fr.names)
                quarantine.extend(fr.quarantined)
                file_reports.append(fr.report)

            if writer is not None or held:
                out_schema = output_schema(schema, kind, names)
                if writer is not None:
                    writer.close()
                    writer = None
                    dups = dedupe_sort_parts(tmp_path, outputs.path(DATA_FILE), out_schema, scratch,
                                             sample=sample.values(), total=total)
                else:
                    dups = dedupe_sort_tables(held, outputs.path(DATA_FILE), out_schema, early)
                    held = []
                del sample
            else:
                dups = None
            report = write_outputs(outputs, out, fmt, kind, template, names, file_reports,
                                   quarantine_lines(quarantine), dups)
    finally:
        hasher.shutdown(wait=True)
        if early is not None:
            early.stop()
        if writer is not None:
            writer.close()
        shutil.rmtree(scratch, ignore_errors=True)
    if not report.balanced:
        raise IngestError(f"ingest accounting does not balance: {report.to_dict()}")
    return report


def quarantine_lines(records: Iterable[base.QuarantineRecord]) -> Iterator[str]:
    """The lines of ``quarantine.jsonl`` for ``records``."""
    return (json.dumps(asdict(q)) + "\n" for q in records)


def write_outputs(outputs: AtomicOutputs, out: Path, fmt: str, kind: str | None, template: pd.DataFrame | None,
                  names: dict[str, str], file_reports: list[FileReport], quarantine: Iterable[str],
                  dups: Counter | None) -> IngestReport:
    """The rest of an ingest once ``data.parquet`` is written (``dups``: ``{file index: duplicates}``
    dropped by the merge), or is to be written empty (``dups`` None: no row came out): the duplicates in
    the file reports, the quarantine file (``quarantine``: its lines, :func:`quarantine_lines`) and the
    report."""
    if dups is None:
        if kind is None:
            kind = _kind_of(fmt, template) if template is not None else (
                "latency" if base.KINDS[fmt] == "auto" else base.KINDS[fmt])
        pq.write_table(_empty_table(kind, template, names), outputs.path(DATA_FILE))
    else:
        for idx, n in dups.items():
            fr = file_reports[idx]
            fr.dropped["duplicate"] = fr.dropped.get("duplicate", 0) + n
            fr.rows -= n
    with open(outputs.path(QUARANTINE_FILE), "w") as fh:
        fh.writelines(quarantine)
    total_dropped: Counter = Counter()
    for fr in file_reports:
        total_dropped.update(fr.dropped)
    report = IngestReport(
        format=fmt,
        kind=kind,
        input_records=sum(f.input_records for f in file_reports),
        rows=sum(f.rows for f in file_reports),
        dropped=dict(total_dropped),
        quarantined=sum(f.quarantined for f in file_reports),
        files=file_reports,
        data_path=str(out / DATA_FILE),
        quarantine_path=str(out / QUARANTINE_FILE),
    )
    outputs.path(REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2))
    return report


def read_canonical(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Load a canonical Parquet table and its display-name map."""
    table = pq.read_table(path)
    return table.to_pandas(), display_names(table)
