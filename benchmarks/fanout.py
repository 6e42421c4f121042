"""The 25-pair Ark-like fan-out: scale-out with 1 and 2 workers, and the orchestration overhead.

    .venv/bin/python benchmarks/fanout.py [--scale 0.05] [--config FILE] [--modes cold,warm]

Generates Ark-like data (``flamenco_core.synth``, 25 SD pairs), ingests it, attaches the ground truth and
splits the pairs (untimed). Then times the per-pair work of the latency pipeline:

- **direct**: a plain loop calling the core function ``run_pair`` and writing its labels and report, the
  least any orchestration must do;
- **cold** (``processes``): a flow mapping the latency flow's own per-pair task
  (``tasks.latency.latency_pair_task``: the same core call plus its MLflow child run and artifacts) on
  Prefect's ``ProcessPoolTaskRunner`` with 1 and 2 workers; the time includes spawning the workers and
  their first imports (torch, sklearn, MLflow: seconds each), as a one-off ``flamenco run`` pays them;
- **warm** (``dask``): the same flow on ``DaskTaskRunner`` pointed at a running local Dask cluster (1 and 2
  single-threaded workers, started and warmed before timing), as under ``flamenco serve`` with a Dask
  cluster: the steady state of a deployment, where start-up is paid once, not per run.

Prefect's local server (started once per process in local mode) is started by a warm-up flow before any
timing, and its start-up time is printed on its own. Every process runs its numeric libraries
single-threaded (``OMP_NUM_THREADS=1``...), the direct loop included, so one worker is one core and the
2-worker speedup measures the fan-out, not BLAS threads. Goals (issue 6): 2 workers >= 1.8x one worker;
overhead of one orchestrated worker vs direct < 10%. Prefect and MLflow use a fresh temporary
``FLAMENCO_HOME`` (Prefect's local mode, MLflow SQLite).

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


def run_direct(items: list[dict], config: dict, out: Path) -> tuple[float, int]:
    """The baseline: the core per-pair call and its outputs, in a loop."""
    import json

    import pandas as pd

    from flamenco_core.experiments.latency import LatencyConfig, run_pair

    cfg = LatencyConfig.model_validate(config)
    t0 = time.perf_counter()
    ok = 0
    for it in items:
        d = out / it["pair_id"]
        d.mkdir(parents=True, exist_ok=True)
        r = run_pair(pd.read_parquet(it["path"]), cfg, source="ark", plot_dir=d)
        r.labels.to_parquet(d / "labels.parquet")
        (d / "report.json").write_text(json.dumps(r.report(), indent=2, default=str))
        ok += r.outcome != "failed"
    return time.perf_counter() - t0, ok


def _fanout_flow():
    from prefect import flow, unmapped

    from tasks.latency import latency_pair_task

    @flow(name="flamenco-fanout-bench")
    def fanout(items: list[dict], config: dict, out_dir: str, experiment: str, parent_run_id: str) -> int:
        futures = latency_pair_task.map(items, config=unmapped(config), out_dir=unmapped(out_dir),
                                        experiment=unmapped(experiment), parent_run_id=unmapped(parent_run_id),
                                        source=unmapped("ark"))
        for f in futures:
            f.wait()
        return sum(1 for f in futures if f.state.is_completed())

    return fanout


def run_prefect(items: list[dict], config: dict, out: Path, runner: str, workers: int,
                address: str | None = None, label: str = "") -> tuple[float, int]:
    """The flow on ``runner`` with ``workers`` workers (or the Dask scheduler at ``address``); wall time
    from call to return."""
    from tasks import tracking
    from tasks.runners import with_runner

    name = f"fanout-{label or runner}-x{workers}"
    parent = tracking.start_run(EXPERIMENT, name, params={"runner": runner, "workers": workers, "pairs": len(items)},
                                tags=tracking.standard_tags(pipeline="benchmark", dataset="ark-synth"))
    fanout = with_runner(_fanout_flow(), runner, None if address else workers, address)
    t0 = time.perf_counter()
    ok = fanout(items, config, str(out), EXPERIMENT, parent)
    dt = time.perf_counter() - t0
    tracking.log(parent, metrics={"seconds": dt, "pairs_ok": ok})
    tracking.end_run(parent)
    return dt, ok


def _warm_worker() -> bool:
    # Runs in each Dask worker before timing: the imports and the MLflow store connection a first task pays.
    import tasks.latency  # noqa: F401
    from tasks import tracking

    tracking.client().search_experiments(max_results=1)
    return True


def run_warm_dask(items: list[dict], config: dict, out: Path, workers: int) -> tuple[float, int]:
    """Start a local Dask cluster of ``workers`` single-threaded processes, warm it (imports, MLflow, one
    Prefect task per worker), then time the flow against its scheduler address."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        client.run(_warm_worker)
        run_prefect(items[:workers], config, out / "warmup", "dask", workers, cluster.scheduler_address, "dask-warmup")
        return run_prefect(items, config, out, "dask", workers, cluster.scheduler_address, "dask-warm")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--modes", default="cold,warm", help="cold (processes, start-up included), warm (running Dask cluster)")
    ap.add_argument("--config", type=Path, default=None, help="latency config YAML (default: the light bench config)")
    ap.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="flamenco-fanout-"))
    work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLAMENCO_HOME", str(work / "home"))
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    from flamenco.env import setup_environment

    setup_environment()
    import yaml
    from rich.console import Console
    from rich.table import Table

    from flamenco_core.experiments.latency import LatencyConfig

    console = Console()
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
    results = []
    load0 = os.getloadavg()[0]
    with console.status("direct: core run_pair in a loop"):
        results.append(("direct (core loop)", 1, *run_direct(items, config, work / "direct"), core_seconds(work / "direct")))
    console.print(f"direct: {results[-1][2]:.1f} s")
    for mode in modes:
        for workers in (1, 2):
            with console.status(f"{mode} x{workers}"):
                out = work / f"{mode}{workers}"
                if mode == "cold":
                    res = run_prefect(items, config, out, "processes", workers)
                    name = "Prefect processes (cold)"
                elif mode == "warm":
                    res = run_warm_dask(items, config, out, workers)
                    name = "Prefect dask (warm cluster)"
                else:
                    raise SystemExit(f"unknown mode {mode!r}")
            results.append((name, workers, *res, core_seconds(out)))
            console.print(f"{name} x{workers}: {res[0]:.1f} s")

    direct = results[0][2]
    t = Table(title=f"25-pair Ark-like fan-out (scale {args.scale}, {rows} rows, {os.cpu_count()} cores)")
    for c in ("run", "workers", "seconds", "pairs ok", "speedup vs 1 worker", "vs direct", "overhead vs direct",
              "core s"):
        t.add_column(c, justify="left" if c == "run" else "right")
    one = {}
    for name, w, sec, ok, core in results:
        if w == 1:
            one[name] = sec
        is_direct = name.startswith("direct")
        t.add_row(name, str(w), f"{sec:.1f}", f"{ok}/{len(items)}",
                  "-" if is_direct else f"{one[name] / sec:.2f}x", f"{direct / sec:.2f}x",
                  "-" if is_direct or w != 1 else f"{(sec - direct) / direct * 100:+.1f}%", f"{core:.1f}")
    console.print(t)
    console.print(f"core s: run_pair's own time summed over the pairs (same work everywhere; growth = contention). "
                  f"Load average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end.")
    for name in dict.fromkeys(n for n, *_ in results[1:]):
        by_w = {w: sec for n, w, sec, *_ in results if n == name}
        speedup, overhead = by_w[1] / by_w[2], (by_w[1] - direct) / direct
        console.print(f"{name}: 2 workers {speedup:.2f}x one worker (goal >= 1.8x: {'met' if speedup >= 1.8 else 'not met'}); "
                      f"overhead {overhead * 100:+.1f}% (goal < 10%: {'met' if overhead < 0.10 else 'not met'})")


if __name__ == "__main__":
    main()
