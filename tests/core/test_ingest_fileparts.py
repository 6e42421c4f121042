"""The per-file fan-out of an ingest (one part per file, then one merge) against the sequential ingest of
the same files: the same table, quarantine and report, on the real samples, across files that repeat each
other, out of time order, with empty files, spilled buckets, and the errors a mixed input must raise."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flamenco_core.ingest import merge
from flamenco_core.ingest.base import IngestError
from flamenco_core.ingest.fileparts import ingest_file, ingest_in_parts, merge_files, parts_folder
from flamenco_core.ingest.pipeline import ingest

from conftest import SAMPLES


def _outputs(out: Path, report) -> tuple:
    d = report.to_dict()
    for k in ("data_path", "quarantine_path"):
        d.pop(k)
    assert json.loads((out / "ingest_report.json").read_text())["rows"] == report.rows
    return pq.read_table(out / "data.parquet"), (out / "quarantine.jsonl").read_text(), d


def _assert_same(paths, fmt, tmp_path, **kw):
    seq = _outputs(tmp_path / "seq", ingest(paths, fmt, tmp_path / "seq", **kw))
    par = _outputs(tmp_path / "par", ingest_in_parts(paths, fmt, tmp_path / "par", **kw))
    assert par[0].schema.equals(seq[0].schema, check_metadata=True)
    assert par[0].equals(seq[0]), "tables differ"
    assert par[1] == seq[1], "quarantine differs"
    assert par[2] == seq[2], "report differs"
    assert not [p for p in (tmp_path / "par").iterdir() if p.name.startswith(".")
                and p.name != ".flamenco.lock"], "parts or scratch left behind"
    return seq


def _samples(folder: str) -> list[Path]:
    files = sorted((SAMPLES / folder).glob("*"))
    assert files, f"no sample files in {SAMPLES / folder}"
    return files


@pytest.mark.parametrize("folder,fmt", [("ripe_atlas", "atlas"), ("cicddos2019", "cicflowmeter"),
                                        ("scamper_json", "scamper"), ("nfdump", "nfdump")])
def test_parts_equal_the_sequential_ingest_on_every_sample_folder(folder, fmt, tmp_path):
    files = _samples(folder)
    if fmt == "nfdump":
        files = [f for f in files if f.name.startswith("nfdump_csv_")]  # one export layout, one column set
    # the first file again at the end: every one of its rows a duplicate of a row in another file
    seq = _assert_same(files + files[:1], fmt, tmp_path)
    assert seq[2]["rows"] > 0
    assert seq[2]["dropped"].get("duplicate", 0) > 0


def test_reversed_files_quarantine_and_empty_file(tmp_path):
    """Files given newest first (the merge sorts across files), a malformed line, and a file with no record."""
    atlas = _samples("ripe_atlas")
    bad = tmp_path / "bad.jsonl"
    good = atlas[0].read_bytes()
    if good[:2] == b"\x1f\x8b":
        good = gzip.decompress(good)
    bad.write_bytes(b"{not json\n" + good.splitlines()[0] + b"\n")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    seq = _assert_same(list(reversed(atlas)) + [bad, empty], "atlas", tmp_path)
    assert seq[2]["quarantined"] >= 1
    assert '"bad.jsonl"' in seq[1] or "bad.jsonl" in seq[1]


def test_spilled_buckets_across_parts(tmp_path, monkeypatch):
    """Past one bucket the merge partitions every file's part into time buckets."""
    monkeypatch.setattr(merge, "DEFAULT_BUCKET_BYTES", 64 << 10)
    monkeypatch.setattr(merge, "SAMPLE_CAP", 8)  # each file's sample thinned to its own stride, then merged
    cic = _samples("cicddos2019")
    _assert_same(cic[:4] + cic[:1], "cicflowmeter", tmp_path, batch_rows=100)


def test_no_rows_at_all_gives_the_empty_canonical_table(tmp_path):
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    seq = _assert_same([empty, empty], "atlas", tmp_path)
    assert seq[0].num_rows == 0 and seq[2]["rows"] == 0


def test_mixed_columns_and_lost_parts_raise(tmp_path):
    cic = _samples("cicddos2019")
    folder = parts_folder(tmp_path / "o")
    parts = [ingest_file(p, i, "cicflowmeter", folder) for i, p in enumerate(cic[:2])]
    with pytest.raises(IngestError, match="do not make one ingest"):
        merge_files(parts[1:], "cicflowmeter", tmp_path / "o")
    shutil.rmtree(parts[1].folder)
    with pytest.raises(IngestError, match="is gone"):
        merge_files(parts, "cicflowmeter", tmp_path / "o")


def test_files_with_other_columns_are_refused_as_in_the_sequential_ingest(tmp_path):
    nf = _samples("nfdump")
    mixed = [next(f for f in nf if f.name.startswith("nfdump_csv_")), next(f for f in nf if "extended" in f.name)]
    with pytest.raises(IngestError, match="differ from the first file's") as seq:
        ingest(mixed, "nfdump", tmp_path / "seq")
    with pytest.raises(IngestError, match="differ from the first file's") as par:
        ingest_in_parts(mixed, "nfdump", tmp_path / "par")
    assert str(par.value) == str(seq.value)
    assert not (tmp_path / "par" / "data.parquet").exists()
