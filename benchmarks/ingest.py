"""Ingest throughput and peak memory against plain-parser baselines.

    .venv/bin/python benchmarks/ingest.py [--scale 1] [--seed 0]

Generates Atlas-like JSON and CIC-like CICFlowMeter CSV with ``flamenco_core.synth`` (at scale 1 the
paper's sizes), then times, each in a fresh process so peak RSS is its own:
- Atlas: ``flamenco_core.ingest.pipeline.ingest`` (parse, account, clean, sort, write Parquet) against a
  ``json.loads``-per-line loop that only collects the RTTs (the least any reader must do);
- CIC: ``ingest`` against a bare ``pandas.read_csv`` of the same file.
Prints rows/s, the ratio ours/baseline (1.0 = as fast as the bare parser) and peak RSS. With ``--repeat N``
(default 3) the two sides alternate N times, each run in its own fresh process; the table gives the median
rows/s of each side, the ratio of the medians and the range of the N paired ratios (on a shared 2-core
machine one run of either side moves by up to a fifth).

Each side imports its libraries (pandas for ``read_csv``; pandas, pyarrow and the readers for Flamenco,
plus pyarrow's lazy loading of its compute kernels) before its clock starts: the figures compare the work per row, which is what grows with a dump; the
import times are printed as their own column (they are paid once per process, not per file).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.procs import in_fresh_process, peak_mb  # noqa: E402


def _atlas_baseline(paths):
    rtts = []
    for p in paths:
        with open(p) as fh:
            for line in fh:
                obj = json.loads(line)
                for r in obj.get("result", ()):
                    if "rtt" in r:
                        rtts.append(r["rtt"])
    return len(rtts)


def _cic_baseline(paths):
    import pandas as pd

    return sum(len(pd.read_csv(p, low_memory=False)) for p in paths)


def _ours(paths, fmt):
    from flamenco_core.ingest.pipeline import ingest

    with tempfile.TemporaryDirectory() as d:
        return ingest(paths, fmt, d).rows


_IMPORTS = {
    "_atlas_baseline": (),
    "_cic_baseline": ("pandas",),
    # every reader module: the driver imports them all on its first call
    "_ours": ("pandas", "pyarrow.parquet", "msgspec", "pyarrow.csv", "flamenco_core.ingest.pipeline",
              "flamenco_core.ingest.atlas", "flamenco_core.ingest.cicflowmeter", "flamenco_core.ingest.cicflowmeter_fast",
              "flamenco_core.ingest.nfdump", "flamenco_core.ingest.scamper", "flamenco_core.ingest.tabular"),
}


def _child(fn_name, args, q):
    import importlib

    fn = globals()[fn_name]
    t = time.perf_counter()
    for mod in _IMPORTS[fn_name]:
        importlib.import_module(mod)
    if fn_name == "_ours":
        # pyarrow loads its compute kernels on the first compute call (~1 s): a once-per-process cost like
        # an import, so it is counted in the import column, not per row
        import pyarrow as pa

        pa.array([1]).take(pa.array([0]))
    t_imp = time.perf_counter() - t
    t = time.perf_counter()
    rows = fn(*args)
    dt = time.perf_counter() - t
    q.put((rows, dt, peak_mb(), t_imp))


def measure(fn_name, *args):
    return in_fresh_process(_child, fn_name, args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--atlas-scale", type=float, default=20.0,
                    help="also time Atlas at this scale: scale 1 is only 2.6 MB, where fixed costs dominate")
    ap.add_argument("--data", type=Path, default=None, help="folder to keep generated data (default: temp)")
    ap.add_argument("--repeat", type=int, default=3, help="alternate both sides this many times (medians)")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    from flamenco_core.synth import GENERATORS

    console = Console(width=200)  # a table of numbers must not be cut to the terminal
    tmp = tempfile.TemporaryDirectory()
    root = args.data or Path(tmp.name)
    with console.status("generating data"):
        atlas = GENERATORS["atlas"](root / "atlas", scale=args.scale, seed=args.seed)
        big = GENERATORS["atlas"](root / "atlas_big", scale=args.atlas_scale, seed=args.seed) if args.atlas_scale else None
        cic = GENERATORS["cic"](root / "cic", scale=args.scale, seed=args.seed)
    # The generator's writes are still being flushed to disk: without this the first fsync of either side
    # (Flamenco fsyncs its outputs; on ext4 that commits every file's dirty data) would pay for them.
    os.sync()
    a_paths = [str(p) for p in atlas.data_paths]
    c_paths = [str(p) for p in cic.data_paths]
    cases = [("Atlas JSON", "atlas", a_paths, "_atlas_baseline", "json.loads loop")]
    if big is not None:
        cases.append((f"Atlas JSON x{args.atlas_scale:g}", "atlas", [str(p) for p in big.data_paths], "_atlas_baseline", "json.loads loop"))
    cases.append(("CICFlowMeter CSV", "cicflowmeter", c_paths, "_cic_baseline", "pandas.read_csv"))
    mb = lambda ps: sum(Path(p).stat().st_size for p in ps) / 2**20  # noqa: E731
    rows = []
    for name, fmt, paths, base_fn, base_name in cases:
        runs = []  # (baseline, ours) pairs, each (rows, seconds, peak MB, import s)
        for i in range(max(1, args.repeat)):
            with console.status(f"timing {name} ({i + 1}/{args.repeat})"):
                runs.append((measure(base_fn, paths), measure("_ours", paths, fmt)))
        b_rate = statistics.median(b[0] / b[1] for b, _ in runs)
        o_rate = statistics.median(o[0] / o[1] for _, o in runs)
        pair = sorted((o[0] / o[1]) / (b[0] / b[1]) for b, o in runs)
        rows.append((name, f"{mb(paths):.1f}", base_name, f"{b_rate:,.0f}", f"{max(b[2] for b, _ in runs):,.0f}",
                     f"{runs[0][1][0]:,}", f"{o_rate:,.0f}", f"{max(o[2] for _, o in runs):,.0f}",
                     f"{o_rate / b_rate:.2f}", f"{pair[0]:.2f}-{pair[-1]:.2f}",
                     f"{statistics.median(b[3] for b, _ in runs):.2f} / {statistics.median(o[3] for _, o in runs):.2f}"))
    t = Table(title=f"ingest benchmark (scale {args.scale}, seed {args.seed}, {args.repeat} alternated runs a side, medians)")
    for c in ("input", "MB", "baseline", "baseline rows/s", "baseline peak MB", "flamenco rows", "flamenco rows/s",
              "flamenco peak MB", "ratio ours/baseline", "paired ratios", "import s (base / ours)"):
        t.add_column(c, justify="right" if c not in ("input", "baseline") else "left")
    for r in rows:
        t.add_row(*r)
    console.print(t)


if __name__ == "__main__":
    main()
