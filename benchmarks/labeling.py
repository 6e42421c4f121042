"""The labeling benchmark of issue 3, both halves in one command; with ``--from-parquet``, issue 14's
dump-scale run.

    .venv/bin/python benchmarks/labeling.py
    .venv/bin/python benchmarks/labeling.py --rows 10000000 --from-parquet [--seed 0] [--data DIR]

Without arguments:
1. ``labeling_applier.py``: 1,000,000 flows x 10 LFs, our applier (declarative specs and vectorized
   Python LFs) against Snorkel's PandasLFApplier (subsampled and scaled) and a raw-numpy lower bound.
2. ``labeling_model.py``: 6,000,000 rows x 10 LFs, apply + LabelModel fit + predict, time and peak memory.
Each half runs in its own process so peak memory is its own; extra arguments are not forwarded.

With ``--from-parquet``: writes ``--rows`` synthetic flows (``labeling_applier.synth_flows``, 1M-row parts,
one Parquet file each) and a profile of the pack's statistics computed on a separate 1M-row sample (a
first statistics pass would hold a whole column: the profile is how a dump is labeled), then runs
:func:`flamenco_core.labeling.stream.label_parquet` (apply 10 LFs, label matrix to Parquet, fit Snorkel's
LabelModel on the distinct vote patterns, predict, labels to Parquet) in a fresh process pinned to
``--cores`` CPUs, and prints rows/s, wall time per stage, import time and peak RSS (VmHWM).
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

here = Path(__file__).resolve().parent


def _peak_gb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def _child(data: str, profile: str, out: str, seed: int, batch_rows: int) -> None:
    """The timed run (in its own process: its peak RSS is its own)."""
    t0 = time.perf_counter()
    sys.path.insert(0, str(here.parent))
    import snorkel.labeling.model.label_model  # noqa: F401  (imports timed apart from the work)
    import torch

    # torch imports its compiler stack (torch._dynamo, ~10 s cold) when the first optimizer is built:
    # a one-time cost per process, timed with the imports, not with the labeling
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)

    from flamenco_core.labeling import LFPack
    from flamenco_core.labeling.stream import label_parquet

    sys.path.insert(0, str(here))
    from labeling_applier import PACK

    t_import = time.perf_counter() - t0
    pack = LFPack.from_dict(PACK)
    stats = json.loads(Path(profile).read_text())
    t = time.perf_counter()
    res = label_parquet(pack, data, out, stats=stats, seed=seed, batch_rows=batch_rows)
    wall = time.perf_counter() - t
    print(json.dumps({"rows": res.n_rows, "patterns": res.n_patterns, "wall_s": wall, "import_s": t_import,
                      "peak_gb": _peak_gb(), "label_model": res.label_model, "labels": res.label_counts}))


def _write_data(root: Path, rows: int, seed: int) -> tuple[Path, Path]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(here.parent))
    sys.path.insert(0, str(here))
    from labeling_applier import PACK, synth_flows

    from flamenco_core.labeling import LFPack
    from flamenco_core.labeling.stats import compute_stats

    data = root / f"flows_{rows}"
    profile = root / "profile.json"
    part = 1_000_000
    if not (data / "_SUCCESS").exists():
        data.mkdir(parents=True, exist_ok=True)
        for i, lo in enumerate(range(0, rows, part)):
            n = min(part, rows - lo)
            df = synth_flows(n, seed * 100_003 + i)  # one seed per part: reproducible, parts differ
            pq.write_table(pa.Table.from_pandas(df, preserve_index=False), data / f"part-{i:05d}.parquet")
            del df
        (data / "_SUCCESS").write_text("")
    pack = LFPack.from_dict(PACK)
    sample = synth_flows(part, seed + 7_777_777)
    stats = compute_stats(sample, pack.features(), pack.needed_stats())
    profile.write_text(json.dumps({f: {k: float(np.asarray(v).ravel()[0]) if np.ndim(v) else float(v)
                                       for k, v in s.items()} for f, s in stats.items()}))
    return data, profile


def _from_parquet(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-parquet", action="store_true")
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--batch-rows", type=int, default=1 << 20)
    ap.add_argument("--data", type=Path, default=None, help="folder for the generated data (kept; default: temp, removed)")
    args = ap.parse_args(argv)
    import shutil
    import tempfile

    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    root = args.data or Path(tempfile.mkdtemp(prefix="flamenco-labeling-"))
    try:
        with console.status(f"writing {args.rows:,} rows of flows as Parquet"):
            t = time.perf_counter()
            data, profile = _write_data(root, args.rows, args.seed)
            gen = time.perf_counter() - t
        out = root / "out"
        env = {**os.environ, "OMP_NUM_THREADS": str(args.cores), "MKL_NUM_THREADS": str(args.cores)}
        cmd = [sys.executable, __file__, "--child", str(data), str(profile), str(out), str(args.seed), str(args.batch_rows)]
        if hasattr(os, "sched_setaffinity"):
            cpus = sorted(os.sched_getaffinity(0))[: args.cores]
            cmd = ["taskset", "-c", ",".join(map(str, cpus)), *cmd] if shutil.which("taskset") else cmd
        with console.status("labeling (apply, pattern count, fit, predict, write)"):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            console.print(done.stderr[-4000:])
            return done.returncode
        r = json.loads(done.stdout.strip().splitlines()[-1])
        size = sum(p.stat().st_size for p in data.glob("*.parquet")) / 2**30
        tab = Table(title=f"streaming labeling from Parquet: {args.rows:,} rows x 10 LFs, {args.cores} cores "
                          f"(goal: 100M rows < 60 s, < 2 GB)")
        for c in ("rows", "input GB", "distinct patterns", "wall s (apply+fit+predict+write)", "rows/s",
                  "peak RSS GB", "import s (apart)", "label model", "data generation s"):
            tab.add_column(c, justify="right")
        tab.add_row(f"{r['rows']:,}", f"{size:.2f}", f"{r['patterns']:,}", f"{r['wall_s']:.1f}",
                    f"{r['rows'] / r['wall_s']:,.0f}", f"{r['peak_gb']:.2f}", f"{r['import_s']:.1f}", r["label_model"],
                    f"{gen:.0f}")
        console.print(tab)
        console.print(f"labels: {r['labels']}")
        return 0
    finally:
        if args.data is None:
            shutil.rmtree(root, ignore_errors=True)


def _default() -> int:
    rc = 0
    for script, args in (("labeling_applier.py", []), ("labeling_model.py", ["--rows", "6000000", "--cores", "2", "--seed", "0"])):
        print(f"\n== {script} {' '.join(args)}", flush=True)
        rc |= subprocess.call([sys.executable, str(here / script), *args])
    return rc


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), int(sys.argv[6]))
    elif "--from-parquet" in sys.argv[1:]:
        sys.exit(_from_parquet(sys.argv[1:]))
    else:
        sys.exit(_default())
