"""Issue 14: how one SD pair's cost grows with its size. ``run_pair`` on one pair of 1k, 10k, 100k and 1M
RTTs, each size in a fresh process (imports paid before the clock starts: the pair's own work is timed).

    .venv/bin/python benchmarks/latency_scaling.py [--sizes 1000,10000,100000,1000000] [--seed 0]
        [--config conf/latency.yaml] [--labeled-share 0.35]

The pair: unimodal series of :mod:`flamenco_core.synth.scenarios` (family ``labels_at_end``: queueing
jitter, isolated spikes and short bursts) rescaled to a 50 ms route and laid end to end in time until the
size is reached, so every size is the same process, only longer. The user's labels are the truth on the
last ``--labeled-share`` of the pair; the rest is scored (``f1_unlabeled``). Prints a table: points,
seconds (wall and CPU), seconds per 1k points, that per-point cost as a ratio to the first row's, peak RSS
of the process, F1 on the unlabeled rows, and the estimators fitted on a sample of the rows (the pair's
report says so too). Wall times on a shared machine are inflated; the CPU column is the steadier one.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROUTE_MS = 50.0


def make_pair(n: int, seed: int, labeled_share: float):
    """One SD pair of ``n`` RTTs with ``truth`` and the user's ``label`` (truth on the last share, NA before)."""
    import numpy as np
    import pandas as pd

    from flamenco_core.synth.scenarios import generate

    pieces, have, batch = [], 0, 0
    while have < n:
        # a third of the scenario pairs are unimodal; 4,000 RTTs each on average
        df = generate("labels_at_end", n_pairs=max(8, 3 * (n - have) // 4000 + 3), seed=seed * 1000 + batch)
        for info, (_, g) in zip(df.attrs["scenario"]["pairs"], df.groupby(["src", "dst"], sort=False)):
            if info["n_modes"] == 1 and have < n:
                pieces.append(g.assign(rtt_ms=(g["rtt_ms"] * (ROUTE_MS / info["levels_ms"][0])).round(3)))
                have += len(g)
        batch += 1
    out = pd.concat(pieces, ignore_index=True).iloc[:n]
    # one probe a minute, end to end: the pieces' own clocks would overlap
    out["timestamp"] = pd.Timestamp("2024-01-01T00:00:00Z") + pd.to_timedelta(np.arange(n) * 60, unit="s")
    out["src"], out["dst"] = "10.0.0.1", "192.0.2.1"
    label = out["truth"].astype("string").copy()
    label[: int(round(n * (1 - labeled_share)))] = pd.NA
    out["label"] = label
    return out.drop(columns=["family"])


def one(n: int, seed: int, config: str, labeled_share: float) -> dict:
    """Generate, warm the imports, then time ``run_pair`` once (the child process of :func:`main`)."""
    import resource
    import time

    from flamenco_core.experiments.latency import LatencyConfig, preload, run_pair

    df = make_pair(n, seed, labeled_share)
    preload(threads=1)
    cfg = LatencyConfig.from_yaml(config)
    w, c = time.perf_counter(), time.process_time()
    rep = run_pair(df, cfg, source="ark").report()
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    notes = sorted({n for s in rep["subsets"] for n in s.get("notes", [])})
    return {"points": n, "wall_s": wall, "cpu_s": cpu, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "f1_macro": rep.get("f1_unlabeled", {}).get("f1_macro"), "subsets": len(rep["subsets"]),
            "models": rep["models"], "outcome": rep["outcome"], "notes": notes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default=str(Path(__file__).resolve().parents[1] / "conf" / "latency.yaml"))
    ap.add_argument("--labeled-share", type=float, default=0.35)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the child: one size, JSON on stdout's last line
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.seed, args.config, args.labeled_share)))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        # a fresh process per size: its peak RSS is that pair's alone
        out = subprocess.run([sys.executable, __file__, "--one", str(n), "--seed", str(args.seed), "--config", args.config,
                              "--labeled-share", str(args.labeled_share)], capture_output=True, text=True)
        if out.returncode:
            console.print(f"{n:,} points failed:\n{out.stderr[-3000:]}")
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        console.print(f"{n:,} points: {rows[-1]['wall_s']:.1f} s")
    t = Table(title="run_pair by pair size (fresh process per size, imports before the clock; machine shared)")
    for c in ("points", "wall s", "CPU s", "CPU s / 1k points", "per-point cost / first row's", "peak RSS MB",
              "unlabeled macro F1", "subsets", "models", "fitted on a sample"):
        t.add_column(c, justify="left" if c in ("models", "fitted on a sample") else "right")
    base = rows[0]["cpu_s"] / rows[0]["points"] if rows else float("nan")
    for r in rows:
        per = r["cpu_s"] / r["points"]
        t.add_row(f"{r['points']:,}", f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}", f"{1000 * per:.3f}", f"{per / base:.2f}",
                  f"{r['rss_mb']:.0f}", "n/a" if r["f1_macro"] is None else f"{r['f1_macro']:.3f}", str(r["subsets"]),
                  ",".join(r["models"]), "; ".join(r["notes"]) or "-")
    console.print(t)


if __name__ == "__main__":
    main()
