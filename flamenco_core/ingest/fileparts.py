"""The per-file fan-out of an ingest: each input file read on its own (in any process) into a part, then
one merge of the parts into the same outputs a sequential :func:`~flamenco_core.ingest.pipeline.ingest`
writes (same table, quarantine and report; ``tests/core/test_ingest_fileparts.py`` compares them).
"""

from __future__ import annotations

import shutil
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa

from flamenco_core.errors import UsageError
from flamenco_core.ingest import base
from flamenco_core.ingest.base import IngestError
from flamenco_core.ingest.merge import SAMPLE_STRIDE, TimestampSample, dedupe_sort_parts, open_parts
from flamenco_core.ingest.pipeline import (
    DATA_FILE,
    REPORT_FILE,
    FileReader,
    FileReport,
    IngestReport,
    load_readers,
    output_schema,
    system_pool,
    check_schema,
    quarantine_lines,
    write_outputs,
)
from flamenco_core.outputs import AtomicOutputs, OutputLock, temp_name


@dataclass
class FilePart:
    """What reading one file left in its part folder, and the counts the merge needs. Plain data, so that
    it travels from a worker process back to the flow."""

    index: int
    report: FileReport
    kind: str | None
    names: dict[str, str]
    template: pd.DataFrame | None
    folder: str
    rows: int  # rows in the part (before de-duplication across files)
    sample_stride: int = SAMPLE_STRIDE  # of the timestamp sample in sample.npy

    @property
    def parts(self) -> Path:
        return Path(self.folder) / "parts.arrow"

    @property
    def quarantine(self) -> Path:
        return Path(self.folder) / "quarantine.jsonl"

    @property
    def sample(self) -> Path:
        return Path(self.folder) / "sample.npy"


def parts_folder(out_dir: str | Path) -> Path:
    """A fresh hidden folder under ``out_dir`` for one ingest's parts (swept, like every temporary, by the
    next run that locks ``out_dir`` should this one be killed)."""
    folder = Path(out_dir) / temp_name("ingest-parts")
    folder.mkdir(parents=True)
    return folder


def ingest_file(path: str | Path, index: int, fmt: str, parts_dir: str | Path, *, options: dict | None = None,
                batch_rows: int = base.DEFAULT_BATCH_ROWS,
                on_batch: Callable[[str, int], None] | None = None) -> FilePart:
    """Read file number ``index`` of an ingest into ``parts_dir/<index>/``: its cleaned rows (Arrow IPC, the
    internal columns included), its quarantine lines and its timestamp sample. Takes no lock: the flow that
    fans out holds the output folder's."""
    load_readers()
    if fmt not in base.READERS:
        raise IngestError(f"unknown format {fmt!r}; choose one of {', '.join(sorted(base.READERS))}")
    path = Path(path)
    if not path.is_file():
        raise IngestError(f"{path}: no such file")
    folder = Path(parts_dir) / f"{index:06d}"
    if folder.exists():
        shutil.rmtree(folder)  # a retried task starts over
    folder.mkdir(parents=True)
    fr = FileReader(path, index, fmt, options or {}, batch_rows)
    part = FilePart(index, fr.report, None, {}, None, str(folder), 0)
    writer = None
    with system_pool(), ThreadPoolExecutor(1) as hasher:
        try:
            for table in fr.tables(hasher, on_batch):
                if writer is None:
                    writer = open_parts(part.parts, fr.schema)
                else:
                    check_schema(path, table.schema, fr.schema)
                writer.write_table(table.cast(fr.schema))
        finally:
            if writer is not None:
                writer.close()
    with open(part.quarantine, "w") as fh:
        fh.writelines(quarantine_lines(fr.quarantined))
    np.save(part.sample, fr.sample.values())
    part.sample_stride = fr.sample.stride
    part.kind, part.names, part.template, part.rows = fr.kind, dict(fr.names), fr.template, fr.rows
    return part


def _lines(paths: Iterable[Path]) -> Iterator[str]:
    for p in paths:
        with open(p) as fh:
            yield from fh


def merge_files(parts: list[FilePart], fmt: str, out_dir: str | Path, *, remove_parts: bool = True) -> IngestReport:
    """Merge the parts of every input file (:func:`ingest_file`) into ``out_dir``'s ``data.parquet``,
    ``quarantine.jsonl`` and ``ingest_report.json``, as :func:`~flamenco_core.ingest.pipeline.ingest` of the
    files in index order writes them: duplicates across files dropped (the first kept), time order, the
    quarantine in file order, the report last. ``out_dir`` is locked for the merge."""
    parts = sorted(parts, key=lambda p: p.index)
    if [p.index for p in parts] != list(range(len(parts))):
        raise IngestError(f"parts of files {[p.index for p in parts]} do not make one ingest (0..{len(parts) - 1})")
    for p in parts:
        if not Path(p.folder).is_dir():
            raise IngestError(f"{p.report.file}: its part {p.folder} is gone; ingest the file again")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: the output folder is a file; give a folder")
    kind = None
    for p in parts:
        if p.kind is not None and kind is not None and p.kind != kind:
            raise IngestError(f"{p.report.file}: {p.kind} data cannot be mixed with {kind} data in one ingest")
        kind = kind or p.kind
    with_rows = [p for p in parts if p.rows]
    schema = None
    for p in with_rows:
        s = pa.ipc.open_file(str(p.parts)).schema
        if schema is None:
            schema = s
        else:
            check_schema(Path(p.report.file), s, schema)
    names: dict[str, str] = {}
    template = None
    for p in parts:
        names.update(p.names)
        if template is None and p.template is not None:
            template = p.template
    reports = [FileReport(**asdict(p.report)) for p in parts]  # the merge adds duplicates to copies
    scratch = out / temp_name("ingest")
    with OutputLock(out), system_pool():
        scratch.mkdir(parents=True)
        try:
            with AtomicOutputs(out, report=REPORT_FILE) as outputs:
                dups: Counter | None = None
                if with_rows:
                    merged = TimestampSample()
                    for p in with_rows:
                        merged.merge(np.load(p.sample), p.sample_stride)
                    sample = merged.values()
                    dups = dedupe_sort_parts([p.parts for p in with_rows], outputs.path(DATA_FILE),
                                             output_schema(schema, kind, names), scratch, sample=sample,
                                             total=sum(p.rows for p in with_rows), parts_schema=schema)
                report = write_outputs(outputs, out, fmt, kind, template, names, reports,
                                       _lines(p.quarantine for p in parts), dups)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    if not report.balanced:
        raise IngestError(f"ingest accounting does not balance: {report.to_dict()}")
    if remove_parts:
        for p in parts:
            shutil.rmtree(p.folder, ignore_errors=True)
    return report


def ingest_in_parts(paths: Iterable[str | Path], fmt: str, out_dir: str | Path, *, options: dict | None = None,
                    batch_rows: int = base.DEFAULT_BATCH_ROWS) -> IngestReport:
    """:func:`ingest_file` on each file, one after the other, then :func:`merge_files`: the fan-out's
    result without a task runner (tests, and a reference for the flow's parallel version)."""
    out = Path(out_dir)
    with OutputLock(out):
        folder = parts_folder(out)
        try:
            parts = [ingest_file(p, i, fmt, folder, options=options, batch_rows=batch_rows) for i, p in enumerate(paths)]
            return merge_files(parts, fmt, out)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

