"""Issue 4's benchmark: the automatic latency path on generated Ark-like and Atlas-like data with ground
truth, FLAMENCO against the unsupervised baselines, averaged over SD pairs.

    .venv/bin/python benchmarks/latency.py --scale 1 [--which ark,atlas] [--workers 2] [--config conf/latency.yaml]
    (the default config runs the forest and LSTM hyperparameter searches within their budgets)

The user's labels are the generators' ground truth on the last ``--labeled-share`` (35%) of each SD pair;
every other row is scored against the held-back truth (``f1_unlabeled``: what the labels are for), averaged
over pairs and over all those rows at once (a big pair weighs more), beside the test split of the labeled
pool (the paper's Figures 7 and 9). Baselines: LOF, Elliptic Envelope,
robust covariance, Isolation Forest and the rolling-median/MAD rule. Prints one table per dataset with
outcome counts and the wall time, and writes ``report_<dataset>.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _warm():
    from flamenco_core.experiments.latency import preload

    preload(threads=1)


def _ready(_):
    return None


def _pair(args):
    df, config, source, borrowed = args
    from flamenco_core.experiments.latency import LatencyConfig, run_pair

    c = time.process_time()
    rec = run_pair(df, LatencyConfig.model_validate(config), source=source, borrowed=borrowed).report()
    # CPU seconds beside the wall clock: on a shared machine the wall clock also counts other people's work
    rec["cpu_seconds"] = round(time.process_time() - c, 2)
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--which", default="ark,atlas")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--config", type=Path, default=Path(__file__).resolve().parents[1] / "conf" / "latency.yaml",
                    help="latency settings (default conf/latency.yaml: with the forest and LSTM hyperparameter searches)")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/latency"))
    ap.add_argument("--labeled-share", type=float, default=0.35, help="share of each pair the user labels (its end)")
    args = ap.parse_args()
    import pandas as pd
    from rich.console import Console
    from rich.table import Table

    from flamenco_core.experiments.latency import LatencyConfig, attach_labels, attach_truth, comparison_frame, summarize
    from flamenco_core.ingest.pairs import split_pairs
    from flamenco_core.ingest.pipeline import ingest
    from flamenco_core.synth import GENERATORS, hold_out_labels

    console = Console(width=200)
    cfg = LatencyConfig.from_yaml(args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    # One pool for every dataset, its workers warmed (imports, one BLAS thread each) before the first
    # pair: a fresh worker spends seconds importing scipy, scikit-learn and torch. The warm-up is timed
    # and printed on its own.
    tw = time.perf_counter()
    pool = ProcessPoolExecutor(args.workers, initializer=_warm)
    list(pool.map(_ready, range(args.workers)))
    console.print(f"{args.workers} workers started and warmed (imports) in {time.perf_counter() - tw:.1f} s")
    with pool:
        for name in args.which.split(","):
            t0 = time.perf_counter()
            res = GENERATORS[name](args.out / f"raw_{name}", scale=args.scale, seed=args.seed)
            rep = ingest(res.data_paths, res.format, args.out / f"ingest_{name}")
            partial, truth = hold_out_labels(pd.read_parquet(res.labels_path), share=args.labeled_share)
            df = attach_truth(attach_labels(pd.read_parquet(rep.data_path), partial), truth)
            pairs, skipped = split_pairs(df, cfg.min_points)
            t1 = time.perf_counter()
            source = "atlas" if name == "atlas" else "ark"
            from flamenco_core.experiments.latency import fit_source_level, needs_source_level

            borrowed = None
            if needs_source_level(list(pairs.values()), cfg):
                level, why = fit_source_level(list(pairs.values()), cfg, source)
                borrowed = level.to_dict() if level else None
                console.print(f"source level: {why or f'LFs from {level.pairs} pairs, {level.rows} labeled rows'}")
            jobs = [(g, cfg.model_dump(mode="json"), source, borrowed) for g in pairs.values()]
            # Largest pairs first: a big pair started last would leave the other worker idle at the end.
            order = sorted(range(len(jobs)), key=lambda i: -len(jobs[i][0]))
            futures = {i: pool.submit(_pair, jobs[i]) for i in order}
            records = [futures[i].result() for i in range(len(jobs))]
            t2 = time.perf_counter()
            summary = summarize(records)
            from flamenco_core.experiments.latency import outcome_counts

            summary["outcomes"] = outcome_counts(records, skipped=len(skipped))
            summary.update({"rows": int(len(df)), "pairs": records, "skipped": skipped.to_dict("records"),
                            "seconds_prepare": t1 - t0, "seconds_pairs": t2 - t1, "scale": args.scale, "workers": args.workers})
            (args.out / f"report_{name}.json").write_text(json.dumps(summary, indent=2, default=str))
            table = comparison_frame(summary)
            t = Table(title=f"{name}-like, scale {args.scale}: {len(records)} pairs, {len(df):,} RTTs; "
                            f"generate+ingest {t1 - t0:.0f} s, pairs {t2 - t1:.0f} s on {args.workers} workers "
                            f"({sum(r['cpu_seconds'] for r in records):.0f} CPU s in the pairs)")
            cols = ["f1_good", "f1_noise", "f1_macro", "unlabeled_f1_good", "unlabeled_f1_noise", "unlabeled_f1_macro",
                    "pooled_f1_noise", "pooled_f1_macro"]
            for c in ("method", "test good", "test noise", "test macro", "unlabeled good", "unlabeled noise", "unlabeled macro",
                      "all unlabeled rows: noise", "all unlabeled rows: macro", "unlabeled macro / FLAMENCO"):
                t.add_column(c, justify="left" if c == "method" else "right")
            base = table.loc["flamenco", "unlabeled_f1_macro"]
            fmt = lambda v: "n/a" if v != v else f"{v:.3f}"  # noqa: E731
            for m, r in table.iterrows():
                t.add_row(m, *(fmt(r.get(c, float("nan"))) for c in cols), fmt(r["unlabeled_f1_macro"] / base))
            console.print(t)
            oc = summary["outcomes"]
            console.print(f"pairs: {oc['pairs']}; subsets by level: {oc['subsets_by_level']}")


if __name__ == "__main__":
    main()
