"""Rolling window features: the vectorized fast path against tsfresh's roll + extract.

    .venv/bin/python benchmarks/features.py [--window 10] [--tsfresh-points 2000] [--fast-points 1000000]
                                            [--pairs 1] [--repeat 3] [--seed 0]

Both compute the paper's statistics (count, min, mean, std, q1, median, q3, max of ``rtt_ms``) over the
last ``window`` points of each SD pair's series: tsfresh with ``roll_time_series`` + ``extract_features``
(single process, the equivalent feature settings), the fast path with
``flamenco_core.preprocess.windows.window_features``. tsfresh is timed on a small series (it runs at about
1,000 points/s), the fast path on a large one (best of ``--repeat``) and on tsfresh's series too, where the
two results are also compared. Imports are not timed. Prints points/s and the speed-up (goal >= 100x).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def series(n: int, pairs: int, seed: int) -> pd.DataFrame:
    """Ark-like RTTs: a gamma-distributed base around 20 ms with 5% high-RTT noise, one row a minute."""
    rng = np.random.default_rng(seed)
    rtt = np.where(rng.random(n) < 0.05, rng.uniform(150, 400, n), 20 + rng.gamma(2.0, 1.0, n))
    t0 = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame({
        "timestamp": (t0 + pd.to_timedelta(np.arange(n) // pairs * 60, unit="s")).astype("datetime64[us, UTC]"),
        "src": "10.0.0.1",
        "dst": [f"192.0.2.{i}" for i in np.arange(n) % pairs],
        "rtt_ms": rtt,
    })


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=int, default=10)
    ap.add_argument("--tsfresh-points", type=int, default=2_000)
    ap.add_argument("--fast-points", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=1, help="SD pairs the points are spread over")
    ap.add_argument("--repeat", type=int, default=3, help="fast-path runs (best is reported)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    import tsfresh  # noqa: F401  (imported before timing: its import alone takes seconds)
    from flamenco_core.preprocess.windows import TSFRESH_NAMES, tsfresh_features, window_features

    console = Console()
    w = args.window
    small = series(args.tsfresh_points, args.pairs, args.seed)
    large = series(args.fast_points, args.pairs, args.seed + 1)

    with console.status(f"tsfresh roll + extract on {len(small):,} points"):
        t_ts, ts = best_of(lambda: tsfresh_features(small, w, "paper"), 1)
    with console.status("fast path"):
        t_small, fast_small = best_of(lambda: window_features(small, w), args.repeat)
        t_large, _ = best_of(lambda: window_features(large, w), args.repeat)

    ts = ts.rename(columns=lambda c: f"rtt_ms_w{w}_" + TSFRESH_NAMES[c.split("__", 1)[1]])[fast_small.columns]
    diff = float(np.nanmax(np.abs(ts.to_numpy() - fast_small.to_numpy())))

    rate_ts = len(small) / t_ts
    table = Table(title=f"window features (window {w}, {args.pairs} pair(s), seed {args.seed})")
    for c in ("method", "points", "seconds", "points/s", "speed-up vs tsfresh"):
        table.add_column(c, justify="left" if c == "method" else "right")
    for name, n, dt in (
        ("tsfresh roll+extract", len(small), t_ts),
        ("fast path, same series", len(small), t_small),
        ("fast path", len(large), t_large),
    ):
        rate = n / dt
        table.add_row(name, f"{n:,}", f"{dt:.3f}", f"{rate:,.0f}", f"{rate / rate_ts:,.0f}x")
    console.print(table)
    console.print(f"max |fast - tsfresh| on the shared series: {diff:.3g}")
    goal = (len(large) / t_large) / rate_ts
    console.print(f"goal >= 100x: {'met' if goal >= 100 else 'NOT met'} ({goal:,.0f}x)")


if __name__ == "__main__":
    main()
