"""The watcher's report: paths relative to its folder, one outcome table behind every view, strict JSON."""

from __future__ import annotations

import json
from pathlib import Path

from flamenco_core.report import watch


def _report(out: Path) -> dict:
    return watch.assemble(
        out, directory=out.parent / "dumps", manifest=out / "manifest.json", pipeline="latency", experiment="e",
        processed=["a.warts", "b.json"], failed=[{"file": "c.gz", "error": "EOFError: x | y" + "z" * 400}],
        skipped={"notes.txt": "not a measurement dump"}, resumed=["b.json"], counts={"done": 2, "failed": 1},
        seconds=float("nan"))


def test_paths_are_relative_to_the_output_folder(tmp_path):
    rep = _report(tmp_path / "out")
    assert rep["directory"] == "../dumps" and rep["manifest"] == "manifest.json"
    assert str(tmp_path) not in json.dumps(rep)


def test_outcome_rows_feed_markdown_and_cut_details(tmp_path):
    rep = _report(tmp_path / "out")
    rows = watch.outcome_rows(rep)
    assert [(r["file"], r["outcome"]) for r in rows] == [
        ("a.warts", "processed"), ("b.json", "processed"), ("c.gz", "failed"), ("notes.txt", "skipped")]
    assert rows[1]["detail"] == "resumed after a crash" and len(rows[2]["detail"]) > 400
    assert len(watch.outcome_rows(rep, detail_chars=50)[2]["detail"]) == 50
    md = watch.markdown(rep)
    assert md.startswith("# Dump watcher: 2 processed, 1 failed, 1 skipped")
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 4 and "x \\| y" in md  # header, rule, one line per dump; pipes escaped


def test_written_report_is_strict_json(tmp_path):
    out = tmp_path / "out"
    path = watch.write(out, _report(out))
    back = json.loads(path.read_text(), parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert back["seconds"] is None  # an undefined time is null, never a bare NaN
    assert watch.write(out, watch.busy(out, directory=tmp_path, pipeline="ingest", reason="held"))
    assert json.loads(path.read_text())["busy"] == "held"


def test_a_busy_manifest_is_an_output_in_use(tmp_path):
    from flamenco_core.errors import EXIT_IN_USE, FlamencoError
    from flamenco_core.ingest.manifest import Manifest, ManifestBusy

    m = Manifest.load(tmp_path / "manifest.json")
    with m.lock():
        try:
            with Manifest.load(tmp_path / "manifest.json").lock():
                raise AssertionError("a second watcher got the lock")
        except ManifestBusy as exc:
            assert isinstance(exc, FlamencoError) and isinstance(exc, RuntimeError)
            assert exc.exit_code == EXIT_IN_USE and "in use by another watcher" in str(exc)
