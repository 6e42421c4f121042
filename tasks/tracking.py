"""The one place that talks to MLflow.

Runs are created by id through :class:`mlflow.MlflowClient` (the fluent API's active run is thread-local)
and found again by their key (:data:`RUN_KEY_TAG`), so retries never duplicate them. Naming, tags and why:
docs/orchestration.md, sections "Failure isolation and reruns" and "MLflow naming scheme"."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from flamenco_core.env import debug_enabled, setup_environment

log_ = logging.getLogger(__name__)

RUN_KEY_TAG = "flamenco.run_key"
TAG_PIPELINE = "flamenco.pipeline"
TAG_DATASET = "flamenco.dataset"
TAG_LF_PACK = "flamenco.lf_pack"
TAG_GROUP = "flamenco.group"
TAG_COMBINATION = "flamenco.combination"
TAG_ITEM = "flamenco.item"
TAG_ATTEMPTS = "flamenco.attempts"
#: How a run ended (``ok``, ``partial``, ``failed``) and, for a FAILED run, why.
TAG_OUTCOME = "flamenco.outcome"
TAG_ERROR = "flamenco.error"
#: Tag prefix for a param whose value changed on a reused run (MLflow forbids changing a param).
PARAM_CHANGED_PREFIX = "flamenco.param_changed."
#: MLflow's description of a run or an experiment (Markdown, shown on its page).
TAG_DESCRIPTION = "mlflow.note.content"
#: MLflow 3's UI opens an experiment of unknown kind on its GenAI (traces) page; ours are model runs,
#: which it shows as the runs table (metric columns, nested child runs) when the experiment says so.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
#: The short (legend) name of an LF combination and the legend itself, on child and parent runs.
TAG_SHORT_NAME = "flamenco.short_name"
TAG_LEGEND = "flamenco.legend"
#: A list param with more items than this, or a value longer than :data:`PARAM_MAX_CHARS`, is logged as
#: a JSON artifact under ``params/``: a 68-feature list fills MLflow's compare view and says nothing there.
PARAM_MAX_ITEMS = 12
PARAM_MAX_CHARS = 250
#: The headline metrics of an LF combination: the same keys on child runs, in tables and in reports.
FLOW_HEADLINE = ("lf_f1", "cls_f1", "tree_f1", "coverage", "tree_vs_lf_difference")

#: Experiment descriptions by pipeline (the ``flamenco.pipeline`` tag of the experiment's first parent run).
PIPELINE_DESCRIPTIONS = {
    "latency": "Flamenco's automatic latency pipeline: one parent run per input (its averaged F1 and the "
               "unsupervised baselines', outcome counts, comparison table and chart) and one child run per SD "
               "pair (named src__dst), with the end model's hyperparameter trials nested under it. Headline "
               "metrics: f1_macro, f1_noise, f1_unlabeled_macro (rows outside the labeled pool), <baseline>.f1_macro.",
    "flow_records": "Flamenco's LF-combination experiments on flow records: one parent run per input (comparison "
                    "table and chart, tag flamenco.legend: the A/B/C letters of the LFs) and one child run per LF "
                    "combination, named by its letters (A+B); the full combination is in the tag "
                    "flamenco.combination and the run's description. Headline metrics: "
                    + ", ".join(FLOW_HEADLINE) + ".",
    "collaboration": "Flamenco code-to-data collaborations: each group's LF pack and their combination on local "
                     "data; aggregates only (coverage, conflict, F1 of majority vote and label model).",
    "ingest": "Flamenco ingest runs: per SD pair statistics profiles.",
    "compare": "Flamenco comparisons of LF combinations across runs (flamenco compare --log).",
}


def client():
    setup_environment()
    from mlflow import MlflowClient

    # MLflow's INFO lines ("Creating initial MLflow database tables...", "View run ... at: URL") would
    # interleave with a command's own summary; its warnings still show, and --debug shows everything
    if not debug_enabled():
        logging.getLogger("mlflow").setLevel(logging.WARNING)
    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def tracking_uri() -> str:
    setup_environment()
    return os.environ["MLFLOW_TRACKING_URI"]


#: ``(tracking URI, experiment name) -> id``: an experiment's id never changes, and every child run would
#: otherwise pay a lookup for it.
_EXPERIMENT_IDS: dict[tuple[str, str], str] = {}


def ensure_experiment(name: str) -> str:
    """Experiment id for ``name``, created with a project-local artifact root when new."""
    c = client()
    cache_key = (os.environ["MLFLOW_TRACKING_URI"], name)
    if cache_key in _EXPERIMENT_IDS:
        return _EXPERIMENT_IDS[cache_key]
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "active":  # a deleted one may be restored or purged: not cached
            _EXPERIMENT_IDS[cache_key] = exp.experiment_id
        return exp.experiment_id
    root = os.environ.get("FLAMENCO_ARTIFACT_ROOT")
    try:
        exp_id = c.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)
        _EXPERIMENT_IDS[cache_key] = exp_id
        return exp_id
    except Exception:
        # Another worker created it between our lookup and create.
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def describe_experiment(experiment: str, text: str, *, replace: bool = False) -> None:
    """Set ``experiment``'s description (shown on its page) unless it has one (``replace``: always), and
    its kind (:data:`EXPERIMENT_KIND`) unless set."""
    c = client()
    exp_id = ensure_experiment(experiment)
    tags = c.get_experiment(exp_id).tags
    if replace or not tags.get(TAG_DESCRIPTION):
        c.set_experiment_tag(exp_id, TAG_DESCRIPTION, text)
    if EXPERIMENT_KIND_TAG not in tags:
        c.set_experiment_tag(exp_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)


def describe_run(run_id: str, text: str) -> None:
    """Set a run's description (MLflow's ``mlflow.note.content``: the run page's Description box)."""
    client().set_tag(run_id, TAG_DESCRIPTION, text[:5000])


def ui_command() -> str:
    """A command line that opens the MLflow UI on this project's store, runnable as printed: the venv's
    own ``mlflow`` (the README's setup puts no ``mlflow`` on PATH) and an absolute store URI."""
    import shlex
    import sys

    exe = Path(sys.executable).with_name("mlflow")
    return shlex.join([str(exe) if exe.exists() else "mlflow", "ui", "--backend-store-uri", tracking_uri()])


# ----------------------------------------------------------------------------------------- naming, tags


def run_name(pipeline: str, dataset: str, *detail: Any) -> str:
    """The parent-run name of the naming scheme: ``<pipeline>-<dataset>[-<detail>...]``
    (``latency-ark-seed0``, ``flows-cic-group_a+group_b``); empty parts are left out."""
    return "-".join(str(p) for p in (pipeline, dataset, *detail) if p not in (None, ""))


def standard_tags(
    *,
    pipeline: str | None = None,
    dataset: str | None = None,
    lf_pack: str | None = None,
    group: str | None = None,
    combination: str | None = None,
    **extra: Any,
) -> dict[str, str]:
    """The scheme's tags, ``flamenco.<name>``; ``None`` values are left out, ``extra`` keys are added
    under the same prefix (``item="10.0.0.1__8.8.8.8"`` -> ``flamenco.item``)."""
    named = {TAG_PIPELINE: pipeline, TAG_DATASET: dataset, TAG_LF_PACK: lf_pack, TAG_GROUP: group,
             TAG_COMBINATION: combination}
    named.update({f"flamenco.{k}": v for k, v in extra.items()})
    return {k: str(v) for k, v in named.items() if v is not None}


# --------------------------------------------------------------------------------------------- identity


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))


def input_hashes(paths: Iterable[str | Path]) -> dict[str, str]:
    """``{file name: SHA-256 of its content}`` for ``paths`` (memoized per process)."""
    from flamenco_core.ingest.manifest import content_hash

    return {Path(p).name: content_hash(p) for p in paths}


def run_key(flow: str, inputs: Iterable[str | Path] | Mapping[str, str] | None = None,
            params: Mapping[str, Any] | None = None, **extra: Any) -> str:
    """A deterministic run identity: SHA-256 over the flow name, the inputs' content hashes (``inputs``
    is a list of files, hashed here, or a ready ``{name: sha256}`` mapping), the parameters, anything in
    ``extra`` (a parent run id, an item name) and the Flamenco version.

    Only content counts for inputs (not where the file lies), so moving a dump keeps its identity, and
    rewriting it with new data gives a new one.
    """
    from flamenco_core import __version__

    if inputs is None:
        hashes: list[str] = []
    elif isinstance(inputs, Mapping):
        hashes = sorted(inputs.values())
    else:
        hashes = sorted(input_hashes(inputs).values())
    payload = {"flow": flow, "inputs": hashes, "params": dict(params or {}), "extra": extra, "version": __version__}
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def _default_key(experiment: str, name: str, parent_run_id: str | None, params: dict | None, tags: dict | None) -> str:
    payload = {"experiment": experiment, "name": name, "parent": parent_run_id, "params": params or {},
               "tags": {k: str(v) for k, v in (tags or {}).items()}}
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def find_runs(experiment: str, key: str, experiment_id: str | None = None) -> list:
    """Active runs of ``experiment`` whose :data:`RUN_KEY_TAG` is ``key``, oldest first."""
    c = client()
    if experiment_id is None:
        exp = c.get_experiment_by_name(experiment)
        if exp is None:
            return []
        experiment_id = exp.experiment_id
    runs = c.search_runs([experiment_id], filter_string=f"tags.`{RUN_KEY_TAG}` = '{key}'", max_results=50)
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


# ---------------------------------------------------------------------------------------------- logging


def _long(v: Any) -> bool:
    """A param value that belongs in an artifact: a list/dict of many items or a long JSON text."""
    if isinstance(v, str):
        return False
    if isinstance(v, (list, tuple, set, dict)) and len(v) > PARAM_MAX_ITEMS:
        return True
    return len(json.dumps(v, default=str)) > PARAM_MAX_CHARS


def _clean_params(params: dict[str, Any]) -> tuple[dict[str, str], dict[str, Any]]:
    """``(params as MLflow strings, long values)``: a long list or mapping (:func:`_long`) becomes a short
    param naming its artifact (``68 items: params/classifier_features.json``), its value is returned to be
    logged there; MLflow's compare view then shows a line per param, not a wall of names. Strings are
    capped at MLflow's 6000 characters."""
    clean, long = {}, {}
    for k, v in params.items():
        if _long(v):
            long[k] = v
            n = len(v) if hasattr(v, "__len__") else 1
            clean[k] = f"{n} {'items' if isinstance(v, (list, tuple, set)) else 'entries'}: params/{k}.json"
        else:
            clean[k] = (v if isinstance(v, str) else json.dumps(v, default=str))[:6000]
    return clean, long


def _log(run_id: str, params: dict | None, metrics: dict | None, tags: dict | None) -> None:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.exceptions import MlflowException

    c = client()
    ts = int(time.time() * 1000)
    clean, long = _clean_params(params or {})
    if long:
        with tempfile.TemporaryDirectory() as d:
            for k, v in long.items():
                p = Path(d) / f"{k}.json"
                p.write_text(_strict_json(v))
                c.log_artifact(run_id, str(p), "params")
    metric_list = [Metric(k, float(v), ts, 0) for k, v in (metrics or {}).items() if v is not None]
    tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    try:
        c.log_batch(run_id, metrics=metric_list, params=[Param(k, v) for k, v in clean.items()], tags=tag_list)
    except MlflowException:
        if not clean:
            raise
        # A reused run (retry, rerun) may already hold a param with another value, which MLflow refuses to
        # change: keep the first value, record the new one as a tag, and log everything else.
        existing = c.get_run(run_id).data.params
        fresh = {k: v for k, v in clean.items() if k not in existing}
        changed = {f"{PARAM_CHANGED_PREFIX}{k}": v[:5000] for k, v in clean.items() if k in existing and existing[k] != v}
        if changed:
            log_.warning("run %s: params %s changed on rerun; new values kept as tags", run_id,
                         sorted(k[len(PARAM_CHANGED_PREFIX):] for k in changed))
        c.log_batch(run_id, metrics=metric_list, params=[Param(k, v) for k, v in fresh.items()],
                    tags=tag_list + [RunTag(k, v) for k, v in changed.items()])


def start_run(
    experiment: str,
    run_name: str,
    *,
    parent_run_id: str | None = None,
    params: dict | None = None,
    metrics: dict | None = None,
    tags: dict | None = None,
    key: str | None = None,
    description: str | None = None,
) -> str:
    """Create a run (a child when ``parent_run_id`` is given), log params/metrics/tags, return its id.

    ``description`` is the run's description (:data:`TAG_DESCRIPTION`); a parent run without one gets its
    pipeline's (:data:`PIPELINE_DESCRIPTIONS`), and its experiment gets that text too when it has none.

    Idempotent: the run's identity ``key`` (default: a hash of experiment, name, parent, params and tags;
    pipelines pass :func:`run_key`) is looked up first, and an existing run with that key is reopened
    (status RUNNING, :data:`TAG_ATTEMPTS` counted up) instead of creating a duplicate.
    """
    c = client()
    exp_id = ensure_experiment(experiment)
    key = key or _default_key(experiment, run_name, parent_run_id, params, tags)
    all_tags = {"mlflow.runName": run_name, **(tags or {}), RUN_KEY_TAG: key}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    pipeline_text = PIPELINE_DESCRIPTIONS.get(str((tags or {}).get(TAG_PIPELINE, "")))
    if description is None and not parent_run_id and pipeline_text:
        description = f"{run_name}: {pipeline_text}"
        describe_experiment(experiment, pipeline_text)
    if description:
        all_tags[TAG_DESCRIPTION] = description[:5000]

    existing = find_runs(experiment, key, exp_id)
    if existing:
        run = existing[0]
        run_id = run.info.run_id
        attempts = int(run.data.tags.get(TAG_ATTEMPTS, "1")) + 1
        c.update_run(run_id, status="RUNNING")
        _log(run_id, params, metrics, {**{k: v for k, v in all_tags.items() if k != "mlflow.runName"},
                                       TAG_ATTEMPTS: attempts})
        return run_id

    all_tags[TAG_ATTEMPTS] = 1
    run = c.create_run(exp_id, run_name=run_name, tags={k: str(v) for k, v in all_tags.items()})
    run_id = run.info.run_id
    # Lookup-then-create is not atomic: if another worker created the same key meanwhile, the oldest run
    # wins and the others delete themselves, so exactly one survives.
    racing = find_runs(experiment, key, exp_id)
    if len(racing) > 1 and racing[0].info.run_id != run_id:
        c.delete_run(run_id)
        return start_run(experiment, run_name, parent_run_id=parent_run_id, params=params, metrics=metrics,
                         tags=tags, key=key)
    _log(run_id, params, metrics, None)
    return run_id


def log_finished_children(experiment: str, parent_run_id: str, children: list[dict]) -> list[str]:
    """Log ``children`` (each ``{name, params, metrics, tags}``) as FINISHED runs under ``parent_run_id``;
    returns their ids. Idempotent like :func:`start_run` (a child whose key already sits under the parent is
    reused), but with one lookup for all of them instead of two per run: a pair's hyperparameter trials
    are many small runs, created by the one task that owns their parent, so no other writer races them."""
    if not children:
        return []
    c = client()
    exp_id = ensure_experiment(experiment)
    existing = {r.data.tags.get(RUN_KEY_TAG): r.info.run_id for r in c.search_runs(
        [exp_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'", max_results=5000)}
    ids = []
    for ch in children:
        key = _default_key(experiment, ch["name"], parent_run_id, ch.get("params"), ch.get("tags"))
        run_id = existing.get(key)
        if run_id is None:
            tags = {"mlflow.runName": ch["name"], **(ch.get("tags") or {}), RUN_KEY_TAG: key,
                    "mlflow.parentRunId": parent_run_id, TAG_ATTEMPTS: 1}
            run_id = c.create_run(exp_id, run_name=ch["name"], tags={k: str(v) for k, v in tags.items()}).info.run_id
            _log(run_id, ch.get("params"), ch.get("metrics"), None)
            end_run(run_id)
        ids.append(run_id)
    return ids


def log(run_id: str, *, params: dict | None = None, metrics: dict | None = None, tags: dict | None = None) -> None:
    """Log params (a changed value on a reused run becomes a tag), metrics and tags to ``run_id``."""
    _log(run_id, params, metrics, tags)


def log_artifacts(run_id: str, paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
    """Upload files (a rerun overwrites the same artifact paths, so reused runs hold no stale copies)."""
    c = client()
    for p in paths:
        c.log_artifact(run_id, str(p), artifact_path)


def _strict_json(obj: Any) -> str:
    # null for undefined (NaN), never a bare NaN that strict JSON parsers reject
    from flamenco_core.outputs import json_ready

    return json.dumps(json_ready(obj), indent=2, allow_nan=False)


def log_json(run_id: str, obj: Any, name: str) -> None:
    """Log ``obj`` as the JSON artifact ``name`` (strict JSON: undefined numbers are ``null``)."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_text(_strict_json(obj))
        client().log_artifact(run_id, str(p))


def log_table(run_id: str, frame: Any, name: str = "comparison") -> None:
    """Log a table (a DataFrame) with ``mlflow``'s ``log_table`` as ``tables/<name>.json``, which the
    run's artifact view shows as a sortable table; NaN cells become empty."""
    frame = frame.astype(object).where(frame.notna(), None)
    client().log_table(run_id, data=frame, artifact_file=f"tables/{name}.json")


def log_comparison(run_id: str, frame: Any, chart: str | Path | None = None, *, legend: Mapping[str, str] | None = None,
                   description: str | None = None) -> None:
    """A parent run's comparison at a glance: the table (:func:`log_table`), the chart under ``charts/``,
    the legend as the :data:`TAG_LEGEND` tag and ``description`` as the run's description."""
    log_table(run_id, frame, "comparison")
    if chart is not None and Path(chart).is_file():
        client().log_artifact(run_id, str(chart), "charts")
    if legend:
        _log(run_id, None, None, {TAG_LEGEND: "; ".join(f"{v} = {k}" for k, v in legend.items())[:5000]})
    if description:
        describe_run(run_id, description)


def log_figure(run_id: str, figure: Any, name: str, artifact_path: str = "figures") -> None:
    """Log a figure under ``figures/``: a matplotlib figure (saved as ``name``, PNG by default) or the
    path of an image already written."""
    if isinstance(figure, (str, Path)):
        client().log_artifact(run_id, str(figure), artifact_path)
        return
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / (name if Path(name).suffix else f"{name}.png")
        figure.savefig(p, dpi=120, bbox_inches="tight")
        client().log_artifact(run_id, str(p), artifact_path)


def end_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=status)


def close_run(run_id: str, status: str = "FINISHED", *, error: str | None = None, outcome: str | None = None) -> None:
    """End a run FINISHED or FAILED with its outcome tagged. A FAILED run carries the reason in
    :data:`TAG_ERROR` (and outcome ``failed``); a FINISHED run drops the error tag an earlier attempt of
    the same run (reused after a crash or a retry) left, so its tags never contradict its status."""
    if status not in ("FINISHED", "FAILED"):
        raise ValueError(f"a run ends FINISHED or FAILED, not {status!r}")
    c = client()
    if status == "FAILED":
        _log(run_id, None, None, {TAG_OUTCOME: outcome or "failed", TAG_ERROR: (error or "failed")[:5000]})
    else:
        if outcome:
            _log(run_id, None, None, {TAG_OUTCOME: outcome})
        if TAG_ERROR in c.get_run(run_id).data.tags:
            c.delete_tag(run_id, TAG_ERROR)
    c.set_terminated(run_id, status=status)


# ------------------------------------------------------------------------------------------- comparison


def latency_metrics(scores: Mapping[str, Any]) -> dict[str, float]:
    """The latency headline metrics under one set of keys, for a pair's child run (its report) and the
    parent run (the average, same shape): ``f1_good``, ``f1_noise``, ``f1_macro``; on the rows outside the
    labeled pool ``f1_unlabeled_good|noise|macro``; per baseline ``<method>.f1_*`` and
    ``unlabeled.<method>.f1_*``; on the parent, F1 over all those rows at once
    ``pooled.<method>.f1_*``. Undefined scores (NaN, ``None``) are left out: MLflow has no null."""
    import math

    out: dict[str, Any] = {k: scores.get(k) for k in ("f1_good", "f1_noise", "f1_macro")}
    out.update({f"f1_unlabeled_{k.removeprefix('f1_')}": v for k, v in (scores.get("f1_unlabeled") or {}).items()})
    for m, v in (scores.get("baselines") or {}).items():
        out.update({f"{m}.{k}": x for k, x in v.items()})
    for m, v in (scores.get("baselines_unlabeled") or {}).items():
        out.update({f"unlabeled.{m}.{k}": x for k, x in v.items()})
    for m, v in (scores.get("f1_unlabeled_pooled") or {}).items():
        out.update({f"pooled.{m}.{k}": x for k, x in v.items() if k != "rows"})
    return {k: float(v) for k, v in out.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}

#: Metrics shown beside the chosen one in the LF-combination comparison, when runs have them.
COMPARE_METRICS = ("cls_f1", "lf_f1", "tree_f1", "f1_label_model", "f1_majority_vote", "coverage", "conflict",
                   "conflicts")


def search_runs(experiment: str):
    """All active runs of ``experiment`` as ``mlflow.search_runs`` returns them (a DataFrame with
    ``metrics.*``, ``params.*``, ``tags.*`` columns). Raises ``ValueError`` for an unknown experiment,
    naming the ones there are."""
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    c = client()
    if c.get_experiment_by_name(experiment) is None:
        names = sorted(e.name for e in c.search_experiments())
        raise ValueError(f"no experiment {experiment!r} in {uri}; experiments: {', '.join(names) or 'none'}")
    return mlflow.search_runs(experiment_names=[experiment], output_format="pandas")


def comparison(experiment: str, metric: str = "cls_f1", dataset: str | None = None):
    """The LF-combination comparison of ``experiment``: ``(runs, table)``.

    ``runs``: one row per run tagged with a combination (:data:`TAG_COMBINATION`; parents are not), with
    dataset, pipeline, combination, group, LF pack, status, the chosen ``metric`` and the other
    :data:`COMPARE_METRICS` present. ``table``: per (dataset, pipeline, combination), the number of runs
    (e.g. one per SD pair) and the metric's mean, std, min and max, plus the means of the other metrics,
    best first within each dataset. Raises ``ValueError`` when no run has the metric (naming those there
    are)."""
    import pandas as pd

    df = search_runs(experiment)

    def col(name: str) -> pd.Series:
        return df[name] if name in df.columns else pd.Series([None] * len(df), index=df.index, dtype=object)

    comb = col(f"tags.{TAG_COMBINATION}")
    df = df[comb.notna() & (comb.astype(str) != "")]
    if dataset is not None:
        df = df[col(f"tags.{TAG_DATASET}") == dataset]
    metric_cols = sorted(c[len("metrics."):] for c in df.columns if c.startswith("metrics.") and df[c].notna().any())
    if df.empty:
        raise ValueError(f"experiment {experiment!r} has no run tagged {TAG_COMBINATION}"
                         + (f" for dataset {dataset!r}" if dataset else ""))
    if metric not in metric_cols:
        raise ValueError(f"no combination run of {experiment!r} has metric {metric!r}; metrics: {', '.join(metric_cols) or 'none'}")
    group = col(f"tags.{TAG_GROUP}").where(col(f"tags.{TAG_GROUP}").notna(), col("tags.flamenco.groups"))
    others = [m for m in COMPARE_METRICS if m != metric and m in metric_cols]
    runs = pd.DataFrame({
        "dataset": col(f"tags.{TAG_DATASET}").fillna(""),
        "pipeline": col(f"tags.{TAG_PIPELINE}").fillna(""),
        "combination": col(f"tags.{TAG_COMBINATION}"),
        "group": group.fillna(""),
        "lf_pack": col(f"tags.{TAG_LF_PACK}").fillna(""),
        "run_name": col("tags.mlflow.runName"),
        "status": col("status"),
        metric: df[f"metrics.{metric}"],
        **{m: df[f"metrics.{m}"] for m in others},
        "run_id": col("run_id"),
        "parent_run_id": col("tags.mlflow.parentRunId"),
    }).loc[df.index].reset_index(drop=True)
    keys = ["dataset", "pipeline", "combination"]
    g = runs.groupby(keys, sort=False, dropna=False)
    table = g[metric].agg(["size", "mean", "std", "min", "max"]).rename(
        columns={"size": "runs", "mean": metric, "std": f"{metric}_std", "min": f"{metric}_min", "max": f"{metric}_max"})
    for m in others:
        table[m] = g[m].mean()
    table["group"] = g["group"].first()
    table["lf_pack"] = g["lf_pack"].first()
    table = table.reset_index()
    table = table.sort_values(["dataset", metric], ascending=[True, False], na_position="last", kind="stable")
    table.insert(0, "rank", table.groupby("dataset").cumcount() + 1)
    return runs, table.reset_index(drop=True)
