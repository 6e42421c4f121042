"""Label model at Snorkel DryBell's scale: apply a 10-LF pack to 6,000,000 flows, fit Snorkel's
LabelModel, predict; wall time and peak memory against the goals (< 60 s, < 4 GB on 2 cores).

    .venv/bin/python benchmarks/labeling_model.py [--rows 6000000] [--cores 2] [--seed 0] [--matrix] [--json PATH]

A seeded synthetic flows frame (ports, protocol, bytes, packets, duration, inter-arrival mean; 30%
NTP-amplification-like attacks) is labeled by a declarative pack of 10 LFs whose thresholds are
statistics of the frame (``flamenco_core.labeling.apply_lfs``), then ``SnorkelLabelModel`` is fitted
(100 epochs) and predicts probabilities and labels for every row; rows no LF votes on are counted as
``filter_unlabeled`` would drop them. ``--matrix`` skips the frame and the applier and draws the label
matrix directly from known LF accuracies.

The process is pinned to ``--cores`` CPUs (``sched_setaffinity``) and numpy/torch use that many
threads. Generating the frame is not timed; peak memory is the whole process's peak RSS
(``ru_maxrss``), so it includes the frame itself (reported separately). Imports are timed as their own
row, since a cold import of torch is part of what a user waits for.
"""

from __future__ import annotations

import argparse
import os
import sys

# thread pools size themselves at import: limit them before numpy/torch load
_cores_arg = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--cores=")), None)
if _cores_arg is None and "--cores" in sys.argv:
    _cores_arg = sys.argv[sys.argv.index("--cores") + 1]
_CORES = int(_cores_arg or 2)
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, str(_CORES))
if hasattr(os, "sched_setaffinity"):
    _avail = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, set(_avail[:_CORES]))

import json  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_SECONDS = 60.0
GOAL_GB = 4.0

PACK = {
    "pack": "bench-flows-10",
    "version": 1,
    "group": "bench",
    "classes": ["benign", "attack"],
    "universal_features": ["src_port", "dst_port", "protocol"],
    "lfs": [
        {"name": "ntp_source_attack", "label": "attack", "when": [{"feature": "src_port", "op": "==", "value": 123}]},
        {"name": "web_benign", "label": "benign", "when": [{"feature": "dst_port", "op": "in", "value": [80, 443]}]},
        {"name": "big_bytes_attack", "label": "attack", "when": [{"feature": "bytes", "op": ">=", "value": "p90"}]},
        {"name": "small_bytes_benign", "label": "benign", "when": [{"feature": "bytes", "op": "<=", "value": "0.5*median"}]},
        {"name": "many_packets_attack", "label": "attack", "when": [{"feature": "packets", "op": ">=", "value": "mean + 2*std"}]},
        {"name": "few_packets_benign", "label": "benign", "when": [{"feature": "packets", "op": "<=", "value": "q1"}]},
        {"name": "short_heavy_attack", "label": "attack",
         "when": [{"feature": "duration", "op": "<=", "value": "0.25*median"}, {"feature": "bytes", "op": ">=", "value": "q3"}]},
        {"name": "long_benign", "label": "benign", "when": [{"feature": "duration", "op": ">=", "value": "q3"}]},
        {"name": "fast_iat_attack", "label": "attack", "when": [{"feature": "iat_mean", "op": "<=", "value": "p10"}]},
        {"name": "tcp_high_port_benign", "label": "benign",
         "when": [{"feature": "protocol", "op": "==", "value": 6}, {"feature": "dst_port", "op": "between", "value": [1024, 65535]}]},
    ],
}


def rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # KiB on Linux


def flows(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A seeded flows frame with ground truth: attacks are UDP from port 123, large, fast and short."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int8)
    att = y == 1
    ntp = att & (rng.random(n) < 0.7)
    src_port = rng.integers(1024, 65535, n, dtype=np.int32)
    src_port[ntp] = 123
    src_port[~att & (rng.random(n) < 0.01)] = 123  # some benign NTP
    dst_port = np.where(att, rng.integers(1024, 65535, n), rng.choice([80, 443, 53, 8080, 5000], n)).astype(np.int32)
    protocol = np.where(att | (rng.random(n) < 0.3), 17, 6).astype(np.int8)
    df = pd.DataFrame({
        "src_port": src_port,
        "dst_port": dst_port,
        "protocol": protocol,
        "bytes": np.where(att, rng.lognormal(9.0, 1.0, n), rng.lognormal(6.5, 1.3, n)),
        "packets": np.where(att, rng.lognormal(4.0, 1.0, n), rng.lognormal(2.0, 1.0, n)),
        "duration": np.where(att, rng.lognormal(-1.0, 1.0, n), rng.lognormal(0.5, 1.2, n)),
        "iat_mean": np.where(att, rng.lognormal(-5.0, 1.0, n), rng.lognormal(-2.0, 1.5, n)),
    })
    return df, y


def matrix(n: int, m: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A label matrix from known LF accuracies (0.6..0.9) and coverages (0.1..0.6)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(np.int8)
    L = np.full((n, m), -1, dtype=np.int8)
    for j, (acc, cov) in enumerate(zip(np.linspace(0.6, 0.9, m), np.linspace(0.1, 0.6, m))):
        fire = rng.random(n) < cov
        vote = np.where(rng.random(n) < acc, y, 1 - y).astype(np.int8)
        L[fire, j] = vote[fire]
    return L, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=6_000_000)
    ap.add_argument("--cores", type=int, default=2, help="CPUs the process is pinned to (set before imports)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--matrix", action="store_true", help="draw L directly instead of applying a pack to flows")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON")
    args = ap.parse_args()

    rows: list[tuple[str, float, float, str]] = []  # stage, seconds, peak RSS GB after it, note
    t = time.perf_counter()
    import snorkel.labeling.model.label_model  # noqa: F401  (imported lazily by fit; timed here, not there)
    import torch

    from flamenco_core.labeling import LFPack, apply_lfs
    from flamenco_core.labeling.label_model import labeled_mask, make_label_model

    torch.set_num_threads(args.cores)
    rows.append(("import torch, snorkel, flamenco", time.perf_counter() - t, rss_gb(), "not in the goal total"))

    pack = LFPack.from_dict(PACK)
    frame_gb = 0.0
    t = time.perf_counter()
    if args.matrix:
        L, y = matrix(args.rows, len(pack.lfs), args.seed)
        source = f"synthetic L ({len(pack.lfs)} LFs, known accuracies)"
        rows.append(("generate L", time.perf_counter() - t, rss_gb(), "not timed in the goal"))
    else:
        df, y = flows(args.rows, args.seed)
        frame_gb = df.memory_usage(deep=True).sum() / 1024**3
        source = f"synthetic flows through apply_lfs ({len(pack.lfs)} declarative LFs)"
        rows.append(("generate flows frame", time.perf_counter() - t, rss_gb(), f"frame {frame_gb:.2f} GB; not in the goal total"))
        t = time.perf_counter()
        L = apply_lfs(pack, df, n_jobs=args.cores)
        rows.append(("apply_lfs", time.perf_counter() - t, rss_gb(), f"{args.rows:,} x {L.shape[1]} int8"))

    t = time.perf_counter()
    lm = make_label_model("snorkel", n_lfs=L.shape[1], seed=args.seed, n_epochs=args.epochs)
    lm.fit(L)
    rows.append((f"LabelModel fit ({args.epochs} epochs)", time.perf_counter() - t, rss_gb(), lm.name))

    t = time.perf_counter()
    probs = lm.predict_proba(L)
    preds = lm.predict(L)
    kept = int(labeled_mask(L).sum())
    rows.append(("predict_proba + predict", time.perf_counter() - t, rss_gb(), f"{args.rows - kept:,} rows without votes"))

    timed = [r for r in rows if "not" not in r[3]]
    total_s = sum(r[1] for r in timed)
    peak = rss_gb()
    covered = preds != -1
    acc = float((preds[covered] == y[covered]).mean()) if covered.any() else float("nan")

    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"label model benchmark: {args.rows:,} rows, {source}, {args.cores} cores, seed {args.seed}")
    for col in ("stage", "wall s", "peak RSS GB", "note"):
        table.add_column(col, justify="left" if col in ("stage", "note") else "right")
    for stage, sec, gb, note in rows:
        table.add_row(stage, f"{sec:.2f}", f"{gb:.2f}", note)
    ok_t = total_s < GOAL_SECONDS
    ok_m = peak < GOAL_GB
    table.add_row("[b]apply + fit + predict[/b]", f"[b]{total_s:.2f}[/b]", f"[b]{peak:.2f}[/b]",
                  f"goal < {GOAL_SECONDS:.0f} s: {'met' if ok_t else 'MISSED'}; < {GOAL_GB:.0f} GB: {'met' if ok_m else 'MISSED'}")
    console.print(table)
    console.print(f"label model accuracy on the {covered.mean():.1%} of rows it labels: {acc:.3f}; "
                  f"probs {probs.shape} {probs.dtype}; peak RSS includes the {frame_gb:.2f} GB frame")
    if args.json:
        args.json.write_text(json.dumps({
            "rows": args.rows, "lfs": int(L.shape[1]), "cores": args.cores, "seed": args.seed, "source": source,
            "stages": [{"stage": s, "seconds": sec, "peak_rss_gb": gb, "note": n} for s, sec, gb, n in rows],
            "total_seconds": total_s, "peak_rss_gb": peak, "frame_gb": frame_gb, "accuracy_on_labeled": acc,
            "goals": {"seconds": GOAL_SECONDS, "gb": GOAL_GB, "met": bool(ok_t and ok_m)},
        }, indent=2))


if __name__ == "__main__":
    main()
