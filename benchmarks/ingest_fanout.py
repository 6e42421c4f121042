"""Many dump files: one ingest task per file on a task runner, then one merge, against the sequential ingest.

    .venv/bin/python benchmarks/ingest_fanout.py [--files 4] [--cic-scale 0.5] [--atlas-scale 5] [--workers 2]

Generates ``--files`` CIC-like CICFlowMeter CSVs and as many Atlas-like JSON files (``flamenco_core.synth``,
one seed per file), then times, each case in a fresh process (imports before the clock):

- **sequential** (the baseline): ``flamenco_core.ingest.pipeline.ingest`` of all files, one after the other;
- **fan-out, processes**: ``flows.ingest.ingest_sources(..., fan_out_files=True)`` inside a Prefect flow,
  one ``ingest-file`` task per file on ``ProcessPoolTaskRunner`` (``--workers``), then the merge task. The
  local Prefect server is started before the clock; the worker processes' start-up and imports are in it;
- **fan-out, threads**: the same on Prefect's thread pool runner.

Prints seconds, rows, peak RSS of the timed process (VmHWM; worker processes are not included) and the
speed ratio sequential / case. The outputs of every case are compared with the sequential ones (tables,
quarantine, report): a case that differs is marked, not timed silently.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.procs import in_fresh_process, peak_mb  # noqa: E402


def _sequential(paths, fmt, out, workers):
    from flamenco_core.ingest.pipeline import ingest

    t = time.perf_counter()
    rows = ingest(paths, fmt, out).rows
    return rows, time.perf_counter() - t


def _fanned(paths, fmt, out, workers, runner):
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from prefect import flow

    import flows.ingest as fi
    from tasks.runners import shared_local_api

    @flow(name="bench-ingest-fanout")
    def bench(paths, fmt, out):
        return fi.ingest_sources(paths, fmt, out, fan_out_files=True, runner=runner, workers=workers)[0]["rows"]

    @flow(name="bench-warm")
    def warm():
        return 1

    with shared_local_api(runner):
        warm()  # the local server's start-up is not the ingest's
        t = time.perf_counter()
        rows = bench(paths, fmt, out)
        return rows, time.perf_counter() - t


def _child(case, args, q):
    import pyarrow as pa

    import flamenco_core.ingest.pipeline as p

    p.load_readers()
    pa.array([1]).take(pa.array([0]))  # pyarrow's compute kernels load on first use: an import cost
    fn = {"sequential": _sequential, "processes": lambda *a: _fanned(*a, "processes"),
          "threads": lambda *a: _fanned(*a, "threads")}[case]
    rows, dt = fn(*args)
    q.put((rows, dt, peak_mb()))


def _measure(case, *args):
    return in_fresh_process(_child, case, args)


def _same(a: Path, b: Path) -> bool:
    import pyarrow.parquet as pq

    def report(d):
        r = json.loads((d / "ingest_report.json").read_text())
        return {k: v for k, v in r.items() if k not in ("data_path", "quarantine_path")}

    return (pq.read_table(a / "data.parquet").equals(pq.read_table(b / "data.parquet"))
            and (a / "quarantine.jsonl").read_text() == (b / "quarantine.jsonl").read_text() and report(a) == report(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--files", type=int, default=4)
    ap.add_argument("--cic-scale", type=float, default=0.5)
    ap.add_argument("--atlas-scale", type=float, default=5.0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cases", default="sequential,processes,threads")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    from flamenco_core.synth import GENERATORS

    tmp = tempfile.TemporaryDirectory()
    work = Path(tmp.name)
    os.environ.setdefault("FLAMENCO_HOME", str(work / "home"))
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_HOME", str(work / "home" / "prefect"))
    from flamenco_core.env import setup_environment

    setup_environment()
    console = Console(width=160)
    inputs = {}
    with console.status("generating data"):
        for fmt, gen, scale in (("cicflowmeter", "cic", args.cic_scale), ("atlas", "atlas", args.atlas_scale)):
            paths = []
            for i in range(args.files):
                ds = GENERATORS[gen](work / f"{gen}{i}", scale=scale, seed=i)
                paths += [str(p) for p in ds.data_paths]
            inputs[fmt] = paths
    cases = args.cases.split(",")
    t = Table(title=f"ingest fan-out: {args.files} files per format, {args.workers} workers")
    for c in ("input", "files", "MB", "case", "rows", "s", "rows/s", "peak MB (timed process)", "same outputs",
              "speed ratio (sequential s / case s)"):
        t.add_column(c, justify="left" if c in ("input", "case") else "right")
    for fmt, paths in inputs.items():
        mb = sum(Path(p).stat().st_size for p in paths) / 2**20
        base = None
        for case in cases:
            out = work / f"out-{fmt}-{case}"
            with console.status(f"{fmt}: {case}"):
                rows, dt, peak = _measure(case, paths, fmt, str(out), args.workers)
            if case == "sequential":
                base, base_out = dt, out
            same = "-" if case == "sequential" or base is None else ("yes" if _same(out, base_out) else "NO")
            t.add_row(fmt, str(len(paths)), f"{mb:.0f}", case, f"{rows:,}", f"{dt:.1f}", f"{rows / dt:,.0f}",
                      f"{peak:,.0f}", same, f"{base / dt:.2f}" if base else "-")
    console.print(t)


if __name__ == "__main__":
    main()
