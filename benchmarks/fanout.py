"""The 25-pair Ark-like fan-out: scale-out with 1 and 2 workers, and the orchestration overhead.

    .venv/bin/python benchmarks/fanout.py [--scale 0.05] [--repeat 3] [--modes warm,cold] [--config FILE]

Generates Ark-like data (``flamenco_core.synth``, 25 SD pairs), ingests it, attaches the ground truth and
splits the pairs (untimed). Then times the latency pipeline's per-pair work:

- **direct** (the baseline): a plain loop over the core calls, ``run_pair`` and ``PairResult.write`` (labels,
  report, LF packs, trees and their PNGs: the same files the task writes), in a process of its own;
- **warm** (``dask``): the latency flow's own fan-out subflow (``flows.latency.latency_pairs_flow``: per pair
  the same core calls plus Prefect's task orchestration and the pair's MLflow child run with its artifacts)
  on ``DaskTaskRunner`` pointed at a running local Dask cluster of 1 and 2 single-threaded workers: the
  steady state of a served deployment, where start-up is paid once, not per run;
- **cold** (``processes``): the same subflow on Prefect's ``ProcessPoolTaskRunner``, spawning its workers per
  run: the time includes their start-up and first imports (torch, sklearn, MLflow), as a one-off
  ``flamenco run --runner processes`` pays them.

Fairness: the direct process and every Dask worker are warmed identically before timing (the core path
on the three largest pairs, which takes every lazy import: torch alone is ~4 s), and repeats interleave
direct and warm runs (this machine is shared and virtual: the same loop varies by +-15% from run to run);
the table shows medians. Every process runs its numeric libraries single-threaded (``OMP_NUM_THREADS=1``),
so a worker is a core and the 2-worker speedup measures the fan-out, not BLAS threads. Prefect's local
server is started once before timing (its start-up is printed apart) and every worker reports to it
(``tasks.runners.shared_local_api``). Goals (issue 6): 2 workers >= 1.8x one worker; overhead of one
orchestrated worker vs direct < 10%. Prefect and MLflow use a fresh temporary ``FLAMENCO_HOME``.

Per-pair work uses a lighter latency config than ``conf/latency.yaml`` (2 forest iterations and splits,
10 LSTM epochs, Snuba budget 4, two baselines) so the run takes minutes on 2 cores; ``--config`` runs the
full one.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

for _v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
# Dask's per-worker INFO lines would bury the table (workers read this from the environment).
os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")

BENCH_CONFIG = {
    "model": {"forest": {"n_iter": 2, "n_splits": 2}, "lstm": {"epochs": 10, "hidden": 32, "batch_size": 128, "lr": 0.003}},
    "snuba": {"budget": 4},
    "baselines": ["lof", "isolation_forest"],
}
EXPERIMENT = "flamenco-fanout-bench"


def prepare(work: Path, scale: float, seed: int, min_points: int) -> list[dict]:
    """Ark-like data -> canonical table with ground truth -> 25 SD-pair files (core calls, untimed)."""
    import pandas as pd

    from flamenco_core.experiments.latency import attach_labels
    from flamenco_core.ingest.pairs import write_pairs
    from flamenco_core.ingest.pipeline import ingest
    from flamenco_core.synth import generate_ark

    res = generate_ark(work / "raw", scale=scale, seed=seed)
    rep = ingest(res.data_paths, res.format, work / "ingest")
    labeled = attach_labels(pd.read_parquet(rep.data_path), pd.read_parquet(res.labels_path))
    labeled.to_parquet(work / "labeled.parquet")
    split = write_pairs(work / "labeled.parquet", work / "pairs", min_points)
    return split.pairs


def core_seconds(out: Path) -> float:
    """Sum of ``run_pair``'s own timing over the pairs written under ``out``: the core work alone. When it
    grows with the worker count, the cores were oversubscribed (other load on the machine)."""
    import json

    return sum(json.loads(p.read_text()).get("seconds", 0.0) for p in out.glob("*/report.json"))


def warm_items(items: list[dict], n: int = 3) -> list[dict]:
    """The pairs every timed process runs once before timing: the largest ``n``, which take every code
    path (multimodal split, label model, LSTM and forest) and so every lazy import (torch alone: ~4 s)."""
    return sorted(items, key=lambda it: -it["rows"])[:n]


def warm_up(items: list[dict], config: dict, out: str) -> int:
    """Run the core path on ``items`` untimed (in the benchmark process, or in each Dask worker)."""
    from flamenco_core.experiments.latency import LatencyConfig, run_pair
    import pandas as pd

    cfg = LatencyConfig.model_validate(config)
    for it in items:
        run_pair(pd.read_parquet(it["path"]), cfg, source="ark", plot_dir=Path(out)).write(Path(out) / it["pair_id"])
    return len(items)


def run_direct(items: list[dict], config: dict, out: Path) -> tuple[float, int]:
    """The baseline: the core per-pair call and the same files the task writes (labels, report, LF packs,
    trees with their PNGs), in a loop, in an already warm process."""
    import pandas as pd

    from flamenco_core.experiments.latency import LatencyConfig, run_pair

    cfg = LatencyConfig.model_validate(config)
    t0 = time.perf_counter()
    ok = 0
    for it in items:
        d = out / it["pair_id"]
        d.mkdir(parents=True, exist_ok=True)
        r = run_pair(pd.read_parquet(it["path"]), cfg, source="ark", plot_dir=d)
        r.write(d)
        ok += r.outcome != "failed"
    return time.perf_counter() - t0, ok


def run_prefect(items: list[dict], config: dict, out: Path, runner: str, workers: int,
                address: str | None = None, label: str = "") -> tuple[float, int]:
    """The flow on ``runner`` with ``workers`` workers (or the Dask scheduler at ``address``); wall time
    from call to return."""
    from flows.latency import latency_pairs_flow
    from tasks import tracking
    from tasks.runners import fan_out

    name = f"fanout-{label or runner}-x{workers}"
    parent = tracking.start_run(EXPERIMENT, name, params={"runner": runner, "workers": workers, "pairs": len(items)},
                                tags=tracking.standard_tags(pipeline="benchmark", dataset="ark-synth"))
    t0 = time.perf_counter()
    outcomes, _ = fan_out(latency_pairs_flow, items, config, str(out), EXPERIMENT, parent, "ark",
                          runner=runner, workers=None if address else workers, scheduler=address)
    dt = time.perf_counter() - t0
    ok = sum(o["status"] == "ok" for o in outcomes)
    tracking.log(parent, metrics={"seconds": dt, "pairs_ok": ok})
    tracking.end_run(parent)
    return dt, ok


def _warm_worker() -> bool:
    # Runs in each Dask worker before timing: the imports and the MLflow store connection a first task pays.
    import tasks.latency  # noqa: F401
    from tasks import tracking

    tracking.client().search_experiments(max_results=1)
    return True


class DirectProcess:
    """The direct loop's own process, warmed like a Dask worker. Not the benchmark process itself: that one
    hosts the Dask schedulers and Prefect's client threads, whose share of the GIL would slow the baseline."""

    def __init__(self, items: list[dict], config: dict, out: Path):
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"))
        self.pool.submit(warm_up, warm_items(items), config, str(out / "warm-direct")).result()

    def run(self, items: list[dict], config: dict, out: Path) -> tuple[float, int]:
        return self.pool.submit(run_direct, items, config, out).result()

    def close(self) -> None:
        self.pool.shutdown()


class WarmCluster:
    """A local Dask cluster of ``workers`` single-threaded processes, warmed as a long-running deployment's
    workers are: imports, MLflow store, the core path on :func:`warm_items` and one Prefect task per worker."""

    def __init__(self, workers: int, items: list[dict], config: dict, out: Path):
        from distributed import Client, LocalCluster

        from tasks.runners import LOCAL_WORKER_CONFIG

        self.workers = workers
        # The same workers as `--runner dask` starts (tasks/runners.py), kept running between flow runs.
        self.cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                    dashboard_address=None, config=LOCAL_WORKER_CONFIG)
        # Not the default client: prefect-dask connects to a process's default client before any address.
        self.client = Client(self.cluster, set_as_default=False)
        self.client.run(_warm_worker)
        self.client.run(warm_up, warm_items(items), config, str(out / f"warm-core-x{workers}"))
        run_prefect(items[:workers], config, out / f"warm-prefect-x{workers}", "dask", workers,
                    self.cluster.scheduler_address, f"dask-warmup-x{workers}")

    def run(self, items: list[dict], config: dict, out: Path, label: str) -> tuple[float, int]:
        return run_prefect(items, config, out, "dask", self.workers, self.cluster.scheduler_address, label)

    def close(self) -> None:
        self.client.close()
        self.cluster.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="warm,cold", help="warm (running Dask cluster), cold (processes, start-up included)")
    ap.add_argument("--config", type=Path, default=None, help="latency config YAML (default: the light bench config)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of direct and warm modes (median reported)")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="flamenco-fanout-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLAMENCO_HOME", str(work / "home"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flamenco_core.env import setup_environment

    setup_environment()
    import yaml
    from rich.console import Console
    from rich.table import Table

    from flamenco_core.experiments.latency import LatencyConfig

    console = Console(width=max(Console().width, 150))  # the table is wide; keep it whole in logs
    config = (LatencyConfig.from_yaml(args.config) if args.config else LatencyConfig.model_validate(BENCH_CONFIG)).model_dump(mode="json")
    with console.status(f"generating and ingesting Ark-like data (scale {args.scale})"):
        items = prepare(work, args.scale, args.seed, config["min_points"])
    rows = sum(it["rows"] for it in items)
    console.print(f"{len(items)} SD pairs, {rows} rows; work folder {work}; {os.cpu_count()} CPUs; "
                  f"config {'light bench' if not args.config else args.config}")
    (work / "config.yaml").write_text(yaml.safe_dump(config))

    from prefect import flow

    @flow(name="flamenco-warmup")
    def warmup() -> int:
        return 1

    t0 = time.perf_counter()
    warmup()  # starts Prefect's local server (once per process in local mode)
    server_s = time.perf_counter() - t0
    console.print(f"Prefect local server start + first flow run: {server_s:.1f} s (once per process; none when serving)")

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = set(modes) - {"cold", "warm"}
    if unknown:
        raise SystemExit(f"unknown mode(s) {sorted(unknown)}; choose cold, warm")
    import statistics

    times: dict[tuple[str, int], list[tuple[float, int, float]]] = {}

    def record(name: str, workers: int, res: tuple[float, int], out: Path) -> None:
        times.setdefault((name, workers), []).append((res[0], res[1], core_seconds(out)))
        console.print(f"{name} x{workers}: {res[0]:.1f} s")

    load0 = os.getloadavg()[0]
    with console.status("starting and warming the direct loop's process (core path on the largest pairs)"):
        direct_proc = DirectProcess(items, config, work)
    direct_name, warm_name, cold_name = "direct (core loop)", "Prefect dask (warm cluster)", "Prefect processes (cold)"
    clusters = {}
    if "warm" in modes:
        for w in (1, 2):
            with console.status(f"starting and warming a {w}-worker Dask cluster"):
                clusters[w] = WarmCluster(w, items, config, work)
    try:
        # Repeats interleave the modes, so a slow spell of this (shared, virtual) machine hits them alike;
        # the table shows each mode's median.
        for rep in range(args.repeat):
            with console.status(f"[{rep + 1}/{args.repeat}] direct: core run_pair in a loop"):
                out = work / f"direct-r{rep}"
                record(direct_name, 1, direct_proc.run(items, config, out), out)
            for w, c in clusters.items():
                with console.status(f"[{rep + 1}/{args.repeat}] dask x{w}"):
                    out = work / f"dask{w}-r{rep}"
                    record(warm_name, w, c.run(items, config, out, f"dask-warm-r{rep}"), out)
    finally:
        direct_proc.close()
        for c in clusters.values():
            c.close()
    if "cold" in modes:
        for w in (1, 2):
            with console.status(f"cold processes x{w}"):
                out = work / f"cold{w}"
                record(cold_name, w, run_prefect(items, config, out, "processes", w, label="cold"), out)

    direct = statistics.median(t for t, *_ in times[(direct_name, 1)])
    t = Table(title=f"25-pair Ark-like fan-out (scale {args.scale}, {rows} rows, {os.cpu_count()} cores; "
                    f"median of {args.repeat} for direct and warm, cold once)")
    for c in ("run", "workers", "runs", "seconds (median)", "min-max", "pairs ok", "speedup vs 1 worker",
              "vs direct", "overhead vs direct", "core s", "outside core s", "orchestration overhead"):
        t.add_column(c, justify="left" if c == "run" else "right")
    med = {k: statistics.median(x for x, *_ in v) for k, v in times.items()}
    core = {k: statistics.median(c for *_, c in v) for k, v in times.items()}
    # Time outside run_pair in the same run: what orchestration adds, free of the run-to-run drift of the
    # core work itself (the same pair varies by up to 30% between runs here).
    outside = {k: statistics.median(x - c for x, _, c in v) for k, v in times.items()}
    d_core, d_out = core[(direct_name, 1)], outside[(direct_name, 1)]

    def orchestration(k) -> float:
        return (outside[k] - d_out) / d_core

    for (name, w), v in times.items():
        sec = med[(name, w)]
        is_direct = name == direct_name
        t.add_row(name, str(w), str(len(v)), f"{sec:.1f}", f"{min(x for x, *_ in v):.1f}-{max(x for x, *_ in v):.1f}",
                  f"{min(ok for _, ok, _ in v)}/{len(items)}",
                  "-" if is_direct else f"{med[(name, 1)] / sec:.2f}x", f"{direct / sec:.2f}x",
                  "-" if is_direct or w != 1 else f"{(sec - direct) / direct * 100:+.1f}%",
                  f"{core[(name, w)]:.1f}", f"{outside[(name, w)]:.1f}",
                  "-" if is_direct or w != 1 else f"{orchestration((name, w)) * 100:+.1f}%")
    console.print(t)
    console.print("core s: run_pair's own time summed over the pairs (the same work in every row). outside core s: "
                  "wall time minus core s (direct: writing the outputs; Prefect: that plus task orchestration and "
                  "MLflow child runs). orchestration overhead: outside core s beyond direct's, over direct's core s. "
                  f"Load average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.")
    for name in (warm_name, cold_name):
        if (name, 1) not in med:
            continue
        speedup, overhead = med[(name, 1)] / med[(name, 2)], (med[(name, 1)] - direct) / direct
        orch = orchestration((name, 1))
        note = " (includes worker start-up and first imports)" if name == cold_name else ""
        console.print(f"{name}: 2 workers {speedup:.2f}x one worker (goal >= 1.8x: {'met' if speedup >= 1.8 else 'not met'}); "
                      f"overhead{note}: wall clock {overhead * 100:+.1f}%, orchestration {orch * 100:+.1f}% "
                      f"(goal < 10%: {'met' if orch < 0.10 else 'not met'} by orchestration time, "
                      f"{'met' if overhead < 0.10 else 'not met'} by wall clock)")


if __name__ == "__main__":
    main()
