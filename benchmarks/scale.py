"""Dump-scale ingest (issue 14): a generated Atlas-like and an Ark-like (scamper JSON) gzip dump of ``--gb``
each, ingested with a progress bar, against bare-parser baselines on the same files.

    .venv/bin/python benchmarks/scale.py [--gb 5] [--seed 0] [--data DIR] [--keep] [--only atlas|ark]

Data: seeded, written by this script (numpy draws the values; one formatted line per result is the
only per-record Python), gzip level 1, in roughly increasing time with jitter so the time sort has work,
with ~5% duplicate lines (as a re-fetched dump has) and ~3% timeouts. ``--gb 1`` is about 24M Atlas
results (69M RTTs; this generator's lines compress well) and 6.3M Ark traces. The free disk must hold the
dumps plus about 10x ``--gb`` of scratch for the ingest running (uncompressed Arrow parts, then the same
rows again in time buckets, and the output), which is checked first. Generated files are deleted at the end unless ``--keep`` (or ``--data`` given).

Each measurement runs in a fresh process, so its peak RSS (VmHWM) is its own:
- Flamenco: ``flamenco_core.ingest.pipeline.ingest`` (parse, account, clean, out-of-core dedupe and time
  sort, Parquet), with a rich progress bar over the rows;
- baseline: a bare ``json.loads`` loop over the gzip lines that only collects the RTTs (Atlas: each
  ``result[].rtt``; Ark: each ``hops[].rtt`` from the destination), the least any reader must do.
Imports are made before either clock starts. Printed: rows/s, peak RSS per process, and the speed ratio
(baseline seconds over ours, on the same file).

Then the latency flow (``flows.latency.latency_flow``, Prefect, a Dask runner with 2 workers) over a
**bounded sample** of the ingested Atlas dump: the ``--latency-pairs`` largest SD pairs (default 4; 0
skips it), read from the canonical table by row groups and written as one Parquet input. The latency core
costs about 1-5 s per pair, so the whole dump's pairs are out of reach here; the row reports that sample's
rows/s, its wall time (Prefect's and Dask's start included) and the peak RSS of the flow's process and
of its largest worker. The Ark-like dump's (monitor, target) pairs hold a few traces each, below any
``min_points``, so it gets no latency row. Prefect and MLflow state go to a temporary ``FLAMENCO_HOME``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.procs import in_fresh_process, peak_mb  # noqa: E402

CHUNK = 50_000  # results drawn per numpy call


def _addr(rng: np.random.Generator, n: int, net: int) -> list[str]:
    b = rng.integers(0, 256, size=(n, 3))
    return [f"{net}.{x}.{y}.{z}" for x, y, z in b.tolist()]


def gen_atlas(path: Path, gb: float, seed: int, status=None) -> int:
    """An Atlas-like ping dump of about ``gb`` GB gzip; returns the number of results written.

    Results come from 20,000 fixed (probe, target) pairs, as a day of Atlas measurements repeats each
    probe's target every few minutes: ``--gb 1`` gives each pair ~300 results (~900 RTTs)."""
    rng = np.random.default_rng(seed)
    probes = _addr(rng, 5000, 10)
    targets = _addr(rng, 400, 192)
    pair_probe = rng.integers(0, len(probes), 20_000)
    pair_target = rng.integers(0, len(targets), 20_000)
    target_bytes = gb * 2**30
    t0 = 1_700_000_000
    n = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as fh:
        while raw.tell() < target_bytes:
            pair = rng.integers(0, len(pair_probe), CHUNK)
            p = pair_probe[pair]
            d = pair_target[pair]
            base = rng.lognormal(3.0, 0.8, CHUNK)
            rtt = base[:, None] + rng.exponential(0.5, (CHUNK, 3))
            lost = rng.random((CHUNK, 3)) < 0.03
            ts = t0 + (n + np.arange(CHUNK)) // 200 + rng.integers(-30, 30, CHUNK)
            msm = 1_000_000 + d
            lines = []
            for i in range(CHUNK):
                res = ",".join('{"x":"*"}' if lost[i, j] else f'{{"rtt":{rtt[i, j]:.3f}}}' for j in range(3))
                line = (f'{{"fw":5020,"af":4,"dst_addr":"{targets[d[i]]}","src_addr":"{probes[p[i]]}",'
                        f'"from":"{probes[p[i]]}","proto":"ICMP","ttl":54,"size":48,"result":[{res}],"dup":0,'
                        f'"rcvd":3,"sent":3,"msm_id":{msm[i]},"prb_id":{p[i]},"timestamp":{ts[i]},'
                        f'"msm_name":"Ping","type":"ping","step":240}}\n')
                lines.append(line)
                if rng_dup[i % len(rng_dup)]:
                    lines.append(line)  # a re-fetched result: an exact duplicate
            fh.write("".join(lines).encode())
            n += len(lines)
            if status:
                status(f"Atlas dump: {raw.tell() / 2**30:.2f} of {gb:g} GB, {n:,} results")
    return n


def gen_ark(path: Path, gb: float, seed: int, status=None) -> int:
    """An Ark-like scamper JSON (trace) dump of about ``gb`` GB gzip; returns the number of traces."""
    rng = np.random.default_rng(seed + 1)
    monitors = _addr(rng, 60, 137)
    targets = _addr(rng, 20000, 8)
    routers = _addr(rng, 3000, 62)
    target_bytes = gb * 2**30
    t0 = 1_700_000_000
    n = 0
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) as fh:
        fh.write(b'{"type":"cycle-start", "list_name":"default", "id":1, "hostname":"bench", "start_time":1700000000}\n')
        while raw.tell() < target_bytes:
            m = rng.integers(0, len(monitors), CHUNK)
            d = rng.integers(0, len(targets), CHUNK)
            hops = rng.integers(6, 16, CHUNK)
            sec = t0 + (n + np.arange(CHUNK)) // 50 + rng.integers(-20, 20, CHUNK)
            usec = rng.integers(0, 1_000_000, CHUNK)
            r = rng.integers(0, len(routers), (CHUNK, 16))
            rtt = np.cumsum(rng.exponential(2.0, (CHUNK, 16)), axis=1) + 0.3
            lines = []
            for i in range(CHUNK):
                h = int(hops[i])
                hs = [f'{{"addr":"{routers[r[i, k]]}", "probe_ttl":{k + 1}, "probe_id":1, "rtt":{rtt[i, k]:.3f}}}'
                      for k in range(h - 1)]
                hs.append(f'{{"addr":"{targets[d[i]]}", "probe_ttl":{h}, "probe_id":1, "rtt":{rtt[i, h - 1]:.3f}}}')
                lines.append(
                    f'{{"type":"trace","version":"0.1","method":"icmp-paris","src":"{monitors[m[i]]}",'
                    f'"dst":"{targets[d[i]]}","stop_reason":"COMPLETED","stop_data":0,'
                    f'"start":{{"sec":{sec[i]}, "usec":{usec[i]}}},"hop_count":{h},"hops":[{",".join(hs)}]}}\n')
            fh.write("".join(lines).encode())
            n += CHUNK
            if status:
                status(f"Ark dump: {raw.tell() / 2**30:.2f} of {gb:g} GB, {n:,} traces")
        fh.write(b'{"type":"cycle-stop", "list_name":"default", "id":1, "hostname":"bench", "stop_time":1700086400}\n')
    return n


rng_dup = np.random.default_rng(12345).random(100_003) < 0.05


def _atlas_baseline(path):
    rtts = []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            obj = json.loads(line)
            for r in obj.get("result", ()):
                if "rtt" in r:
                    rtts.append(r["rtt"])
    return len(rtts)


def _ark_baseline(path):
    rtts = []
    with gzip.open(path, "rb") as fh:
        for line in fh:
            obj = json.loads(line)
            dst = obj.get("dst")
            for h in obj.get("hops", ()):
                if h.get("addr") == dst:
                    rtts.append(h["rtt"])
    return len(rtts)


def _ours(path, fmt, out, progress):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from flamenco_core.ingest.pipeline import ingest

    cols = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f} rows"), TimeElapsedColumn())
    with Progress(*cols, disable=not progress) as bar:
        task = bar.add_task(f"ingest {Path(path).name}", total=None)
        report = ingest([path], fmt, out, on_batch=lambda f, n: bar.advance(task, n))
    return report.rows


def sample_pairs(data_path: Path, k: int, out_path: Path) -> tuple[int, int]:
    """Write the ``k`` largest SD pairs of the canonical table ``data_path`` (ties by name) to ``out_path``;
    returns ``(pairs, rows)``. Two passes by row groups: memory holds the pair counts and the sample."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(data_path)
    counts = None
    for b in pf.iter_batches(batch_size=1 << 20, columns=["src", "dst"]):
        c = b.to_pandas().value_counts(["src", "dst"])
        counts = c if counts is None else counts.add(c, fill_value=0)
    top = counts.reset_index(name="rows").sort_values(["rows", "src", "dst"], ascending=[False, True, True]).head(k)
    chosen = set(zip(top["src"], top["dst"]))
    srcs, dsts = pa.array(sorted({a for a, _ in chosen})), pa.array(sorted({b for _, b in chosen}))
    parts = []
    for b in pf.iter_batches(batch_size=1 << 20):
        b = b.filter(pc.and_(pc.is_in(b.column("src"), srcs), pc.is_in(b.column("dst"), dsts)))
        df = b.to_pandas()
        parts.append(df[[pair in chosen for pair in zip(df["src"], df["dst"])]])
    sample = pd.concat(parts, ignore_index=True)
    sample.to_parquet(out_path, index=False)
    return len(chosen), len(sample)


def _latency(sample, out, home, workers, config):
    """The latency flow over ``sample`` on a Dask runner; returns ``(rows, extra)`` with the pairs scored
    and the peak RSS (MB) of the largest process under this one (a Dask worker)."""
    import os
    import threading

    import psutil

    os.environ["FLAMENCO_HOME"] = home  # before Prefect is imported: its state goes there
    peaks: dict[int, float] = {}
    stop = threading.Event()

    def watch():
        # VmHWM is each process's own peak: the last reading before a worker exits is its peak
        while not stop.wait(0.25):
            for c in psutil.Process().children(recursive=True):
                try:
                    with open(f"/proc/{c.pid}/status") as fh:
                        hwm = next((int(x.split()[1]) / 1024 for x in fh if x.startswith("VmHWM:")), 0.0)
                except OSError:
                    continue
                peaks[c.pid] = max(peaks.get(c.pid, 0.0), hwm)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    from flamenco_core.env import quiet_prefect_console, setup_environment

    setup_environment()
    quiet_prefect_console()
    from flows.latency import latency_flow

    try:
        summary = latency_flow([sample], "parquet", out, config=config, runner="dask", workers=workers,
                               run_name="scale-benchmark")
    finally:
        stop.set()
        t.join()
    import pandas as pd

    rows = len(pd.read_parquet(sample, columns=["rtt_ms"]))
    pairs = summary.get("outcomes", {}).get("pairs", {})
    return rows, {"pairs": pairs, "worker_peak_mb": max(peaks.values(), default=float("nan")), "processes": len(peaks)}


def _child(fn_name, args, q):
    import importlib

    for mod in ("pandas", "pyarrow.parquet", "msgspec", "flamenco_core.ingest.pipeline", "flamenco_core.ingest.atlas",
                "flamenco_core.ingest.scamper", "rich.progress") if fn_name == "_ours" else ():
        importlib.import_module(mod)
    if fn_name == "_ours":  # pyarrow's compute kernels load on first use (~1 s): an import-like cost
        import pyarrow as pa

        pa.array([1]).take(pa.array([0]))
    t = time.perf_counter()
    rows = globals()[fn_name](*args)
    dt = time.perf_counter() - t
    rows, extra = rows if isinstance(rows, tuple) else (rows, {})
    q.put((rows, dt, peak_mb(), extra))


def measure(fn_name, *args):
    out = in_fresh_process(_child, fn_name, args)
    return out[:3] if len(out) == 4 and not out[3] else out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=5.0, help="gzip size of each generated dump")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=None, help="folder for the dumps (kept)")
    ap.add_argument("--keep", action="store_true", help="keep the generated dumps")
    ap.add_argument("--only", choices=("atlas", "ark"), default=None)
    ap.add_argument("--latency-pairs", type=int, default=4,
                    help="run the latency flow (Dask, 2 workers) on this many of the Atlas dump's largest SD pairs "
                         "(a bounded sample: ~1-5 s per pair); 0 skips it")
    ap.add_argument("--latency-workers", type=int, default=2)
    ap.add_argument("--latency-config", type=Path, default=None,
                    help="latency settings for that run (default: the flow's, conf/latency.yaml)")
    args = ap.parse_args()
    from rich.console import Console
    from rich.table import Table

    console = Console(width=170)
    root = args.data or Path(tempfile.mkdtemp(prefix="flamenco-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    dumps = [d for d in ("atlas", "ark") if args.only in (None, d)]
    need = args.gb * 2**30 * (len(dumps) + 10)  # the dumps, and one ingest's scratch at a time
    free = shutil.disk_usage(root).free
    if free < need:
        console.print(f"[red]{root}: {free / 2**30:.1f} GB free, {need / 2**30:.1f} GB needed; use a smaller --gb[/red]")
        sys.exit(1)
    rows = []
    lat = None
    t_all = time.perf_counter()
    try:
        for name in dumps:
            path = root / f"{name}_{args.gb:g}gb.jsonl.gz"
            gen, fmt, base_fn, base_name = {
                "atlas": (gen_atlas, "atlas", "_atlas_baseline", "json.loads loop"),
                "ark": (gen_ark, "scamper", "_ark_baseline", "json.loads loop"),
            }[name]
            if not path.exists():
                with console.status(f"generating {path.name}") as st:
                    t = time.perf_counter()
                    n = gen(path, args.gb, args.seed, status=st.update)
                    console.print(f"generated {path.name}: {n:,} records, {path.stat().st_size / 2**30:.2f} GB "
                                  f"in {time.perf_counter() - t:.0f} s")
            with console.status(f"baseline: {base_name} over {path.name}"):
                b_rows, b_dt, b_mem = measure(base_fn, str(path))
            out = root / f"out_{name}"
            o_rows, o_dt, o_mem = measure("_ours", str(path), fmt, str(out), True)
            if name == "atlas" and args.latency_pairs > 0:
                with console.status(f"sampling the {args.latency_pairs} largest SD pairs"):
                    sample = root / "latency_sample.parquet"
                    n_pairs, n_rows = sample_pairs(out / "data.parquet", args.latency_pairs, sample)
                shutil.rmtree(out, ignore_errors=True)  # the sample is all the latency run reads
                with console.status(f"latency flow over {n_pairs} pairs ({n_rows:,} rows), Dask with "
                                    f"{args.latency_workers} workers"):
                    home = tempfile.mkdtemp(prefix="flamenco-scale-home-", dir=root)
                    lat = (n_pairs, *measure("_latency", str(sample), str(root / "out_latency"), home,
                                             args.latency_workers,
                                             str(args.latency_config) if args.latency_config else None))
            shutil.rmtree(out, ignore_errors=True)
            rows.append((name, f"{path.stat().st_size / 2**30:.2f}", f"{o_rows:,}", f"{o_dt:.0f}",
                         f"{o_rows / o_dt:,.0f}", f"{o_mem:,.0f}", base_name, f"{b_rows:,}", f"{b_rows / b_dt:,.0f}",
                         f"{b_mem:,.0f}", f"{b_dt / o_dt:.2f}"))
    finally:
        if args.data is None and not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    t = Table(title=f"dump-scale ingest (--gb {args.gb:g}, seed {args.seed}; goal: peak RSS < 1.5 GB per process)")
    for c in ("dump", "GB gz", "flamenco rows", "s", "flamenco rows/s", "flamenco peak MB", "baseline",
              "baseline rows", "baseline rows/s", "baseline peak MB", "speed ratio (baseline s / ours s)"):
        t.add_column(c, justify="left" if c in ("dump", "baseline") else "right")
    for r in rows:
        t.add_row(*r)
    console.print(t)
    console.print("same file on both sides, so the ratio is baseline time over ours (> 1: ours is faster). "
                  "baseline rows: every RTT the bare loop sees, duplicates included; flamenco rows: after drops, "
                  "quarantine and de-duplication")
    if lat is not None:
        n_pairs, l_rows, l_dt, l_mem, extra = lat
        t = Table(title=f"latency flow over a bounded sample of the Atlas dump: its {n_pairs} largest SD pairs "
                        f"(Dask, {args.latency_workers} workers; not the whole dump)")
        for c in ("pairs", "outcomes", "rows", "s (Prefect and Dask start included)", "rows/s", "flow process peak MB",
                  "largest worker peak MB", "processes under the flow"):
            t.add_column(c, justify="left" if c == "outcomes" else "right")
        t.add_row(str(n_pairs), ", ".join(f"{k} {v}" for k, v in extra["pairs"].items()), f"{l_rows:,}", f"{l_dt:.0f}",
                  f"{l_rows / l_dt:,.0f}", f"{l_mem:,.0f}", f"{extra['worker_peak_mb']:,.0f}", str(extra["processes"]))
        console.print(t)
    console.print(f"total wall time {time.perf_counter() - t_all:.0f} s (generation included)")


if __name__ == "__main__":
    main()
