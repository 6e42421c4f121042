"""The ingest driver: run a reader over files, clean, account for every record, write Parquet.

Outputs in ``out_dir``: ``data.parquet`` (canonical table), ``quarantine.jsonl`` (one JSON object per
malformed record: file, record, field, reason, raw) and ``ingest_report.json``.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from flamenco_core.ingest import base
from flamenco_core.ingest.base import IngestError, ReadContext
from flamenco_core.ingest.clean import dedupe_and_sort, drop_invalid
from flamenco_core.ingest.schema import LATENCY_COLUMNS, display_names, to_flows_table, to_latency_table

DATA_FILE = "data.parquet"
QUARANTINE_FILE = "quarantine.jsonl"
REPORT_FILE = "ingest_report.json"

# Internal column that tracks which input file a row came from until duplicates are attributed.
_FILE_COL = "__file_idx"


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

    def to_dict(self) -> dict:
        d = asdict(self)
        d["balanced"] = self.balanced
        for f, fr in zip(d["files"], self.files):
            f["balanced"] = fr.balanced
        return d


def available_formats() -> list[str]:
    """Names accepted by :func:`ingest` (importing the reader modules registers them)."""
    _load_readers()
    return sorted(base.READERS)


def _load_readers() -> None:
    # Imported here, not at package import, so `flamenco --help` stays fast.
    from flamenco_core.ingest import atlas, cicflowmeter, nfdump, scamper, tabular  # noqa: F401


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Content hash recorded with every run so results can be traced to exact inputs."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _kind_of(fmt: str, frame: pd.DataFrame) -> str:
    kind = base.KINDS[fmt]
    if kind == "auto":
        return "latency" if "rtt_ms" in frame.columns else "flows"
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
    time sort then read the (compact) canonical table once. ``on_batch(file, rows)`` is called after each
    batch, for progress bars. Raises :class:`IngestError` when a file cannot be read at all, or when the
    readers' accounting does not balance (a bug: nothing may vanish silently).
    """
    _load_readers()
    if fmt not in base.READERS:
        raise IngestError(f"unknown format {fmt!r}; choose one of {', '.join(sorted(base.READERS))}")
    reader = base.READERS[fmt]
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.is_file():
            raise IngestError(f"{p}: no such file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    options = options or {}

    kind: str | None = None
    names: dict[str, str] = {}
    file_reports: list[FileReport] = []
    quarantine: list[base.QuarantineRecord] = []
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None

    with tempfile.TemporaryDirectory(dir=out) as tmp:
        tmp_path = Path(tmp) / "parts.parquet"
        for idx, path in enumerate(paths):
            ctx = ReadContext(str(path), batch_rows=batch_rows)
            fr = FileReport(file=str(path), sha256=file_sha256(path))
            dropped: Counter = Counter()
            for frame in reader(path, ctx, **options):
                if frame.empty:
                    continue
                ctx.produced += len(frame)
                this_kind = _kind_of(fmt, frame)
                if kind is None:
                    kind = this_kind
                elif this_kind != kind:
                    raise IngestError(f"{path}: {this_kind} data cannot be mixed with {kind} data in one ingest")
                frame, reasons = drop_invalid(frame)
                dropped.update(reasons)
                if frame.empty:
                    continue
                table = to_latency_table(frame) if kind == "latency" else to_flows_table(frame)
                table = table.append_column(_FILE_COL, pa.array([idx] * table.num_rows, pa.int32()))
                if writer is None:
                    schema = table.schema
                    writer = pq.ParquetWriter(tmp_path, schema)
                elif table.schema.names != schema.names:
                    raise IngestError(
                        f"{path}: columns {table.schema.names} differ from the first file's {schema.names}"
                    )
                writer.write_table(table.cast(schema))
                if on_batch:
                    on_batch(str(path), len(frame))
            if not ctx.balanced():
                raise IngestError(
                    f"{path}: reader accounting does not balance: {ctx.input_records} input records, "
                    f"{ctx.produced} rows, {dict(ctx.dropped)} dropped, {len(ctx.quarantined)} quarantined"
                )
            names.update(ctx.display_names)
            dropped.update(ctx.dropped)
            fr.input_records = ctx.input_records
            fr.rows = ctx.produced - sum(v for k, v in dropped.items() if k in ("nan", "inf"))
            fr.dropped = dict(dropped)
            fr.quarantined = len(ctx.quarantined)
            quarantine.extend(ctx.quarantined)
            file_reports.append(fr)

        data_path = out / DATA_FILE
        if writer is not None:
            writer.close()
            df = pq.read_table(tmp_path).to_pandas()
            file_idx = df[_FILE_COL].to_numpy()
            df, _, dup = dedupe_and_sort(df, ignore=(_FILE_COL,))
            if dup.any():
                per_file = pd.Series(file_idx[dup.to_numpy()]).value_counts()
                for idx, n in per_file.items():
                    fr = file_reports[int(idx)]
                    fr.dropped["duplicate"] = fr.dropped.get("duplicate", 0) + int(n)
                    fr.rows -= int(n)
            df = df.drop(columns=[_FILE_COL])
            table = to_latency_table(df) if kind == "latency" else to_flows_table(df, names)
            pq.write_table(table, data_path)
        else:
            kind = kind or ("latency" if base.KINDS[fmt] == "auto" else base.KINDS[fmt])
            empty = pd.DataFrame({c: pd.Series(dtype="object") for c in LATENCY_COLUMNS})
            if kind == "latency":
                pq.write_table(to_latency_table(empty), data_path)
            else:
                data_path = None

    qpath = out / QUARANTINE_FILE
    with open(qpath, "w") as fh:
        for q in quarantine:
            fh.write(json.dumps(asdict(q)) + "\n")

    total_dropped: Counter = Counter()
    for fr in file_reports:
        total_dropped.update(fr.dropped)
    report = IngestReport(
        format=fmt,
        kind=kind,
        input_records=sum(f.input_records for f in file_reports),
        rows=sum(f.rows for f in file_reports),
        dropped=dict(total_dropped),
        quarantined=len(quarantine),
        files=file_reports,
        data_path=str(data_path) if data_path else None,
        quarantine_path=str(qpath),
    )
    (out / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2))
    if not report.balanced:
        raise IngestError(f"ingest accounting does not balance: {report.to_dict()}")
    return report


def read_canonical(path: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """Load a canonical Parquet table and its display-name map."""
    table = pq.read_table(path)
    return table.to_pandas(), display_names(table)
