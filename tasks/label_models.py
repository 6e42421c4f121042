"""MLflow record of a label-model comparison (``flamenco lf compare-models``, issue 13). MLflow is
reached through :mod:`tasks.tracking` only; the comparison itself is
:mod:`flamenco_core.experiments.label_model_comparison` (pure)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from tasks import tracking

#: Metrics of a comparison row logged to MLflow (per-class ``f1_<class>`` are added).
METRICS = ("f1_macro_covered", "f1_macro", "f1_weighted", "accuracy", "coverage", "decided", "fit_seconds")
EXPERIMENT = "flamenco-label-models"


def _metrics(row: Mapping[str, Any], classes: list[str]) -> dict[str, float]:
    # MLflow has no null: undefined scores are left out rather than logged as 0
    out = {}
    for k in list(METRICS) + [f"f1_{c}" for c in classes]:
        v = row.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[k] = float(v)
    return out


def log_label_model_comparison(report: Mapping[str, Any], *, dataset: str, inputs: Optional[Mapping[str, str]] = None,
                               experiment: Optional[str] = None, artifacts: Iterable[str | Path] = ()) -> str:
    """Log a comparison's ``report.json`` (from ``write_outputs``): a parent run
    ``label_models-<dataset>-<pack>`` with the comparison table, the best label model's and the end
    classifier's metrics (``best.*``, ``end_classifier.*``) and ``artifacts``; one child run per model
    (label models, baselines, end classifier) with its metrics and its fallback as a tag. Reruns on the
    same inputs and settings reuse the runs. Returns the parent run id."""
    experiment = experiment or EXPERIMENT
    prep = report.get("preparation") or {}
    pack_info = prep.get("pack") or {}
    pack = pack_info.get("pack")
    classes = list(report.get("classes") or [])
    params = {"pack": pack, "pack_hash": pack_info.get("content_hash"),
              "class_map": (prep.get("ground_truth") or {}).get("class_map"), "seed": prep.get("seed"),
              "classes": ",".join(classes), "covered_classes": ",".join(report.get("covered_classes") or [])}
    tags = tracking.standard_tags(pipeline="label_models", dataset=dataset, lf_pack=pack,
                                  best_label_model=report.get("best_label_model"))
    parent = tracking.start_run(
        experiment, tracking.run_name("label_models", dataset, pack), params=params, tags=tags,
        key=tracking.run_key("label_models", inputs, params, dataset=dataset),
        description=f"label models compared on {dataset} with pack {pack}: per-class and macro F1 on the test "
                    "split, coverage, fit time; the best label model is chosen on the validation split")
    rows = list(report.get("models") or [])
    try:
        for row in rows:
            child_tags = tracking.standard_tags(pipeline="label_models", dataset=dataset, lf_pack=pack,
                                                item=row.get("model_key"), kind=row.get("kind"))
            if row.get("fallback"):
                child_tags["flamenco.fallback"] = str(row["fallback"])[:5000]
            child = tracking.start_run(experiment, str(row.get("model_key")), parent_run_id=parent,
                                       params={"model": str(row.get("model"))}, metrics=_metrics(row, classes),
                                       tags=child_tags)
            tracking.close_run(child, outcome="fallback" if row.get("fallback") else "ok")
        import pandas as pd

        tracking.log_table(parent, pd.DataFrame(rows), "label_models")
        summary: dict[str, float] = {}
        for key, prefix in ((report.get("best_label_model"), "best"), ("end_classifier", "end_classifier")):
            row = next((r for r in rows if r.get("model_key") == key), None)
            if row is not None:
                summary.update({f"{prefix}.{k}": v for k, v in _metrics(row, classes).items()})
        tracking.log(parent, metrics=summary)
        tracking.log_artifacts(parent, [p for p in artifacts if Path(p).is_file()], "label_models")
    except Exception as exc:
        tracking.close_run(parent, "FAILED", error=f"{type(exc).__name__}: {exc}")
        raise
    tracking.close_run(parent, outcome="ok")
    return parent


__all__ = ["EXPERIMENT", "METRICS", "log_label_model_comparison"]
