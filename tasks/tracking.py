"""The one place that talks to MLflow.

Runs are created through :class:`mlflow.MlflowClient`, never the fluent API: MLflow's active run is
thread-local, and Prefect runs mapped tasks in worker threads, so children are created by id with the
``mlflow.parentRunId`` tag (what ``start_run(parent_run_id=...)`` sets) and work from any thread.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

from flamenco.env import setup_environment


def client():
    setup_environment()
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])


def tracking_uri() -> str:
    setup_environment()
    return os.environ["MLFLOW_TRACKING_URI"]


def ensure_experiment(name: str) -> str:
    """Experiment id for ``name``, created with a project-local artifact root when new."""
    c = client()
    exp = c.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    root = os.environ.get("FLAMENCO_ARTIFACT_ROOT")
    try:
        return c.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)
    except Exception:
        # Another worker created it between our lookup and create.
        exp = c.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def _clean_params(params: dict[str, Any]) -> dict[str, str]:
    # MLflow caps param values at 6000 chars; long lists (file names) are truncated, the full value goes
    # into a JSON artifact by the caller where it matters.
    return {k: (v if isinstance(v, str) else json.dumps(v, default=str))[:6000] for k, v in params.items()}


def _log(run_id: str, params: dict | None, metrics: dict | None, tags: dict | None) -> None:
    from mlflow.entities import Metric, Param, RunTag
    import time

    c = client()
    ts = int(time.time() * 1000)
    c.log_batch(
        run_id,
        metrics=[Metric(k, float(v), ts, 0) for k, v in (metrics or {}).items() if v is not None],
        params=[Param(k, v) for k, v in _clean_params(params or {}).items()],
        tags=[RunTag(k, str(v)) for k, v in (tags or {}).items()],
    )


def start_run(
    experiment: str,
    run_name: str,
    *,
    parent_run_id: str | None = None,
    params: dict | None = None,
    metrics: dict | None = None,
    tags: dict | None = None,
) -> str:
    """Create a run (a child when ``parent_run_id`` is given), log params/metrics/tags, return its id."""
    c = client()
    exp_id = ensure_experiment(experiment)
    all_tags = {"mlflow.runName": run_name, **(tags or {})}
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = c.create_run(exp_id, run_name=run_name, tags={k: str(v) for k, v in all_tags.items()})
    _log(run.info.run_id, params, metrics, None)
    return run.info.run_id


def log(run_id: str, *, params: dict | None = None, metrics: dict | None = None, tags: dict | None = None) -> None:
    _log(run_id, params, metrics, tags)


def log_artifacts(run_id: str, paths: Iterable[str | Path], artifact_path: str | None = None) -> None:
    c = client()
    for p in paths:
        c.log_artifact(run_id, str(p), artifact_path)


def log_json(run_id: str, obj: Any, name: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_text(json.dumps(obj, indent=2, default=str))
        client().log_artifact(run_id, str(p))


def end_run(run_id: str, status: str = "FINISHED") -> None:
    client().set_terminated(run_id, status=status)
