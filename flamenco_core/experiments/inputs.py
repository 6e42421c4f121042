"""Several input files read as one dataset: ``--input A --input B`` or a folder (issue 13).

:func:`expand_inputs` turns the paths given into the list of files (a folder gives its files of the
format, sorted by name; hidden files are skipped); :func:`read_inputs` ingests them together through the
ingest pipeline's public API (one canonical table, one ingest report with every file's hash) and reads
the table back. Canonical Parquet tables are read as they are, without ingest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Union

import pandas as pd

from flamenco_core.errors import NoUsableData, UsageError

#: The file suffixes a folder contributes, per input format.
SUFFIXES = {
    "cicflowmeter": (".csv",),
    "nfdump": (".csv", ".txt", ".nfdump"),
    "csv": (".csv",),
    "parquet": (".parquet",),
    # latency dumps, plain or compressed (readers detect gzip and bzip2 by content)
    "atlas": (".json", ".jsonl", ".gz", ".bz2"),
    "scamper": (".json", ".jsonl", ".gz", ".bz2"),
    "warts": (".warts", ".gz", ".bz2"),
}


def expand_inputs(paths: Iterable[Union[str, Path]], fmt: str) -> list[Path]:
    """The files to read: each path as given, or a folder's files with the format's suffixes (sorted).

    Raises :class:`~flamenco_core.errors.UsageError` for a path that does not exist, a folder with no such
    file, or a file given twice.
    """
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            suffixes = SUFFIXES.get(fmt, ())
            found = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith(".")
                           and (not suffixes or f.suffix.lower() in suffixes))
            if not found:
                raise UsageError(f"{p}: the folder holds no {fmt} file ({', '.join(suffixes) or 'any'})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"input {p}: no such file or folder")
    resolved = [f.resolve() for f in out]
    if len(set(resolved)) != len(resolved):
        twice = sorted({str(f) for f in out if resolved.count(f.resolve()) > 1})
        raise UsageError(f"an input is given twice: {', '.join(twice)}")
    return out


def read_inputs(paths: Iterable[Union[str, Path]], fmt: str, out_dir: Union[str, Path]) -> tuple[pd.DataFrame, dict[str, str], dict[str, Any]]:
    """Ingest every file of ``paths`` (see :func:`expand_inputs`) as one dataset into ``out_dir`` and read
    the canonical table back: ``(frame, display names, ingest report)``. Raises
    :class:`~flamenco_core.errors.NoUsableData` when no row survives."""
    from flamenco_core.ingest.pipeline import ingest, read_canonical

    files = expand_inputs(paths, fmt)
    report = ingest(files, fmt, out_dir)
    rep = report.to_dict()
    if report.data_path is None or not rep.get("rows"):
        raise NoUsableData(f"no rows survived ingest of {len(files)} file(s) ({rep.get('dropped')} dropped, "
                           f"{rep.get('quarantined')} quarantined)")
    df, names = read_canonical(report.data_path)
    return df, names, rep


__all__ = ["SUFFIXES", "expand_inputs", "read_inputs"]
