"""End-model speed: LSTM training/inference throughput, random-forest search, unsupervised baselines.

    .venv/bin/python benchmarks/models.py [--rows 100000] [--features 1] [--window 10] [--hidden 64]
        [--batch-size 128] [--epochs 2] [--threads 1] [--seed 0]

- LSTM: seconds per epoch and training rows/s on ``--rows`` windows (``--window`` rows each, synthetic
  RTT-like series with spikes, probabilistic labels), and inference rows/s; on CPU and, in the same
  run, on CUDA when ``torch.cuda.is_available()``. ``--threads`` takes a comma list of torch CPU
  thread counts to compare (``0`` = torch's default).
- Random forest: ``fit_forest_timeseries`` (the paper's grid, 10 candidates, 5 time-series folds) on
  a 450-point pair, the size of the paper's largest Atlas pairs.
- Baselines: each unsupervised baseline on the same 450 points.
Prints a rich table.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def series(n: int, n_features: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.normal(30.0, 1.0, (n, n_features))
    noise = rng.random(n) < 0.1
    x[noise] += rng.uniform(10.0, 50.0, (int(noise.sum()), 1))
    p = np.clip(noise * 0.9 + rng.uniform(0.0, 0.1, n), 0.0, 1.0)
    return x.astype(np.float32), np.c_[1.0 - p, p], noise.astype(int)


def bench_lstm(args, device: str, threads: int | None):
    from flamenco_core.models.lstm import LSTMClassifier

    X, P, _ = series(args.rows, args.features, args.seed)
    m = LSTMClassifier(
        window=args.window,
        hidden=args.hidden,
        batch_size=args.batch_size,
        epochs=args.epochs,
        lr=1e-3,
        validation_fraction=0.0,  # time every epoch in full; early stopping would cut the run short
        random_state=args.seed,
        device=device,
        num_threads=threads,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    m.fit(X, P)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    per_epoch = float(np.mean([h["seconds"] for h in m.history_]))
    m.predict_proba(X[:1000])  # warm-up (CUDA kernels, allocator)
    t0 = time.perf_counter()
    m.predict_proba(X)
    pred_s = time.perf_counter() - t0
    return fit_s, per_epoch, fit_cpu / len(m.history_), len(X) / per_epoch, len(X) / pred_s


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=1)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", default="1", help="comma list of CPU thread counts; 0 = torch default")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-lstm", action="store_true")
    args = ap.parse_args(argv)

    import os

    import torch
    from rich.console import Console
    from rich.table import Table

    from flamenco_core.models.baselines import BASELINE_NAMES, unsupervised_labels
    from flamenco_core.models.forest import fit_forest_timeseries

    console = Console()
    cpu_name = f"{os.cpu_count()} cores, torch {torch.__version__}, default threads {torch.get_num_threads()}"
    lstm = Table(
        title=f"LSTM: {args.rows:,} windows x {args.window} rows x {args.features} feature(s), "
        f"hidden {args.hidden}, batch {args.batch_size}, {args.epochs} epochs ({cpu_name})"
    )
    # CPU seconds beside wall seconds: on a shared machine wall time also counts other processes' turns.
    for col in ("device", "threads", "fit s", "s / epoch", "cpu s / epoch", "train rows/s", "predict rows/s"):
        lstm.add_column(col, justify="right")
    runs = [("cpu", None if t == "0" else int(t)) for t in args.threads.split(",")]
    if torch.cuda.is_available():
        runs.append(("cuda", None))
    if not args.skip_lstm:
        for device, threads in runs:
            fit_s, per_epoch, cpu_epoch, train_rps, pred_rps = bench_lstm(args, device, threads)
            name = torch.cuda.get_device_name(0) if device == "cuda" else "cpu"
            lstm.add_row(
                name,
                "default" if threads is None else str(threads),
                f"{fit_s:.1f}",
                f"{per_epoch:.2f}",
                f"{cpu_epoch:.2f}",
                f"{train_rps:,.0f}",
                f"{pred_rps:,.0f}",
            )
        console.print(lstm)

    X, _, y = series(450, 1, args.seed)
    other = Table(title="450-point SD pair (the paper's largest Atlas pairs)")
    for col in ("model", "what", "seconds", "cpu s", "note"):
        other.add_column(col)
    t0, c0 = time.perf_counter(), time.process_time()
    r = fit_forest_timeseries(X, y, n_splits=5, n_iter=10, seed=args.seed)
    other.add_row(
        "random forest",
        f"RandomizedSearchCV, 10 of 32 candidates x {r.n_splits} TimeSeriesSplit folds + refit",
        f"{time.perf_counter() - t0:.2f}",
        f"{time.process_time() - c0:.2f}",
        f"best {r.best_params}, f1_macro {r.best_score:.3f}",
    )
    for m in BASELINE_NAMES:
        t0, c0 = time.perf_counter(), time.process_time()
        lab = unsupervised_labels(X, m, seed=args.seed)
        other.add_row(
            m,
            "fit + label",
            f"{time.perf_counter() - t0:.3f}",
            f"{time.process_time() - c0:.3f}",
            f"{int(lab.sum())} flagged of {len(lab)}",
        )
    console.print(other)


if __name__ == "__main__":
    main()
