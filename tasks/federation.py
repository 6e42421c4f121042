"""Prefect tasks of the federation: the site's answer (site side), submitting a request to a site and
waiting for its answer (coordinator side), and logging the combined report to MLflow (through
:mod:`tasks.tracking`). The logic lives in :mod:`flamenco_core.federation`."""

from __future__ import annotations

import json
import time
from typing import Any, Optional

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks import tracking

#: Seconds between looks at a waiting flow run, and between checks that the site's worker is alive.
POLL_S = 1.0
WORKER_CHECK_S = 3.0


# ------------------------------------------------------------------------------------------ site side


def _read_dataset(cfg: Any, dataset: str, pack_texts: list[str]):
    """The catalog's dataset ``dataset``, reading only the columns the packs and the ground truth use.
    ``None`` when the catalog has no such name, or when the packs do not pass the request checks (the
    answer refuses them before looking at any data, so none is read)."""
    from flamenco_core.federation.site import Refused, parse_packs
    from tasks.collaboration import read_frame

    if dataset not in cfg.datasets:
        return None
    try:
        packs = parse_packs(pack_texts, cfg.policy)
    except Refused:
        return None
    columns = set().union(*(p.features() for p in packs))
    entry = cfg.dataset(dataset)
    if entry.ground_truth is not None:
        columns.add(entry.ground_truth.column)
    return read_frame(str(cfg.dataset_path(dataset)), columns)


def _log_at_site(exc: BaseException) -> None:
    """The whole traceback for the site's operator, on the flow run's stderr: the worker streams it to its
    own output, at the site. Not through ``logging``: Prefect may forward a logger to the coordinator's
    server (``PREFECT_LOGGING_EXTRA_LOGGERS``), and a message could quote the data."""
    import contextlib
    import sys
    import traceback

    # OSError, ValueError: no one reads the output any more (the worker is gone); the answer still goes
    with contextlib.suppress(OSError, ValueError):
        print("flamenco site: the request failed here; the coordinator gets the exception's type only:", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)


# No cache (a cache key is a hash of the inputs, stored on the server), no persisted result (it would
# lie in the site's storage anyway), no retries (the answer is deterministic).
@task(name="site-answer", cache_policy=NO_CACHE, persist_result=False)
def site_answer_task(pack_texts: list[str], dataset: str, *, label_model: str, seed: int,
                     config_path: Optional[str]) -> dict:
    """The site's aggregate for one request, as a JSON-ready dict. Never raises: an exception's message
    could quote the data and would be sent to the server as the task's state message."""
    from flamenco_core.federation.config import SitePolicy, load_site_config
    from flamenco_core.federation.models import PolicySummary, Reason, SiteAggregate
    from flamenco_core.federation.site import answer, request_hash

    site = "unknown"
    try:
        if not config_path:
            raise RuntimeError("FLAMENCO_SITE_CONFIG is not set")
        cfg = load_site_config(config_path)
        site = cfg.site
        df = _read_dataset(cfg, dataset, list(pack_texts))
        truth = cfg.datasets[dataset].ground_truth if dataset in cfg.datasets else None
        agg = answer(list(pack_texts), dataset, df, cfg.policy, site=cfg.site, truth=truth, label_model=label_model,
                     seed=seed, on_error=_log_at_site)
    except Exception as exc:
        _log_at_site(exc)
        policy = SitePolicy()
        agg = SiteAggregate(site=site, dataset=dataset, request_hash=request_hash(pack_texts, dataset, label_model, seed),
                            outcome="failed", reasons=[Reason(code="error", message=type(exc).__name__)],
                            policy=PolicySummary(**policy.summary()))
    return agg.model_dump(mode="json")


@task(name="publish-aggregate", cache_policy=NO_CACHE, persist_result=False)
def publish_aggregate_task(aggregate: dict, artifact_type: str) -> None:
    """Attach the aggregate to this flow run as an artifact: what the coordinator reads back."""
    from prefect.artifacts import Artifact

    Artifact(type=artifact_type, data=json.dumps(aggregate, sort_keys=True),
             description=f"aggregate of site {aggregate['site']} ({aggregate['outcome']})").create()


# ----------------------------------------------------------------------------------- coordinator side


def _online_workers(client: Any, pool: str) -> int:
    from prefect.client.schemas.objects import WorkerStatus

    return sum(w.status == WorkerStatus.ONLINE for w in client.read_workers_for_work_pool(pool))


def _read_aggregate(client: Any, flow_run_id: Any, artifact_type: str):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterType

    from flamenco_core.federation.models import SiteAggregate

    arts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                                                                type=ArtifactFilterType(any_=[artifact_type])))
    if not arts:
        return None
    data = arts[-1].data
    # Prefect may hand back the JSON text once more encoded as a JSON string: unwrap (twice at most)
    for _ in range(2):
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError:
                break
    return SiteAggregate.model_validate_json(json.dumps(data))


@task(name="ask-site", cache_policy=NO_CACHE, persist_result=False)
def ask_site_task(site: str, pack_texts: list[str], dataset: str, *, label_model: str, seed: int,
                  timeout_s: float, deployment_flow: str, artifact_type: str) -> dict:
    """Submit the request to ``site``'s deployment (its work pool), wait up to ``timeout_s`` and return a
    :class:`~flamenco_core.federation.models.SiteOutcome` as dict: ``ok``/``refused``/``failed`` with the
    site's aggregate, ``down`` (no deployment, or no worker online on its pool, before or while waiting)
    or ``timeout``. A run that did not finish is cancelled, so a worker coming back does not answer a
    request nobody waits for."""
    from prefect import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.states import Cancelled
    from pydantic import ValidationError

    from flamenco_core.federation.models import SiteOutcome
    from flamenco_core.federation.site import request_hash

    t0 = time.monotonic()
    name = f"{deployment_flow}/{site}"

    def outcome(status: str, reason: Optional[str] = None, run_id: Any = None, agg: Any = None) -> dict:
        return SiteOutcome(site=site, status=status, reason=reason, flow_run_id=str(run_id) if run_id else None,
                           seconds=round(time.monotonic() - t0, 2), aggregate=agg).model_dump(mode="json")

    with get_client(sync_client=True) as client:
        try:
            dep = client.read_deployment_by_name(name)
        except ObjectNotFound:
            return outcome("down", f"no deployment {name}: the site is not serving (flamenco site serve)")
        pool = dep.work_pool_name
        if not _online_workers(client, pool):
            return outcome("down", f"no worker online on work pool {pool}")
        # timeout=0: submit and return; the wait below is ours, so that a worker that dies is reported down
        # within a few heartbeats instead of after the whole timeout (run_deployment's own wait cannot tell)
        run = run_deployment(name, parameters={"packs": list(pack_texts), "dataset": dataset,
                                               "label_model": label_model, "seed": int(seed)},
                             timeout=0, as_subflow=False, tags=["flamenco-federate"])
        deadline = t0 + timeout_s
        last_check = time.monotonic()
        state = run.state
        while not (state and state.is_final()) and time.monotonic() < deadline:
            time.sleep(POLL_S)
            state = client.read_flow_run(run.id).state
            if time.monotonic() - last_check >= WORKER_CHECK_S and not (state and state.is_final()):
                last_check = time.monotonic()
                if not _online_workers(client, pool):
                    client.set_flow_run_state(run.id, Cancelled(message="coordinator: the site's worker went offline"), force=True)
                    return outcome("down", f"the worker of pool {pool} went offline while the run was "
                                           f"{state.type.value.lower() if state else 'scheduled'}", run.id)
        if not (state and state.is_final()):
            client.set_flow_run_state(run.id, Cancelled(message="coordinator: timed out"), force=True)
            return outcome("timeout", f"no answer within {timeout_s:g} s (run {state.type.value.lower() if state else 'scheduled'})", run.id)
        if state.is_crashed():
            # the process running the request ended under it (worker killed, machine down)
            return outcome("down", "the site's flow run crashed: its worker or process ended while answering", run.id)
        if not state.is_completed():
            # the type only: the site's state message is the site's business
            return outcome("failed", f"the site's flow run ended {state.type.value.lower()}", run.id)
        try:
            agg = _read_aggregate(client, run.id, artifact_type)
        except ValidationError as exc:
            # where and what, never the offending input (it came from the site)
            first = exc.errors(include_input=False)[0]
            where = ".".join(str(p) for p in first["loc"])
            return outcome("failed", f"the site's answer does not fit the aggregate schema ({exc.error_count()} errors, "
                                     f"first at {where}: {first['msg']}); ignored", run.id)
        if agg is None:
            return outcome("failed", "the site's flow run left no aggregate", run.id)
        if agg.request_hash != request_hash(pack_texts, dataset, label_model, seed) or agg.site != site:
            return outcome("failed", "the site's answer is for another request; ignored", run.id)
        reason = "; ".join(r.message for r in agg.reasons[:3]) or None
        return outcome(agg.outcome, reason, run.id, agg)


# ---------------------------------------------------------------------------------------------- MLflow


def _metric_prefix(*parts: str) -> str:
    """``a.b.`` from pack and scope names, with what MLflow refuses in a metric name (``+``) made ``_``."""
    import re

    return "".join(re.sub(r"[^A-Za-z0-9_\-. :/]", "_", p) + "." for p in parts)


def _metrics_of(state: dict, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key in ("coverage", "overlap", "conflict"):
        if state[key]["value"] is not None:
            out[f"{prefix}{key}"] = state[key]["value"]
    lm = state["label_model"]
    if lm["agreement_with_majority_vote"]["value"] is not None:
        out[f"{prefix}lm_agreement"] = lm["agreement_with_majority_vote"]["value"]
    for key, m in (("f1_label_model", lm.get("f1")), ("f1_majority_vote", (state.get("majority_vote") or {}).get("f1"))):
        if m and m["value"] is not None:
            out[f"{prefix}{key}"] = m["value"]
    return out


@task(name="log-federation", retries=2, retry_delay_seconds=1, cache_policy=NO_CACHE)
def log_federation_task(report: dict, experiment: str, run_name: str, report_files: list[str]) -> dict:
    """One MLflow parent run (the report's files as artifacts, pooled metrics) and one child per site (its
    status, its metrics, its aggregate-derived section). Everything logged comes from the report, which
    holds aggregates only."""
    ok = len(report["usable_sites"])
    params = {"dataset": report["dataset"], "packs": [p["name"] for p in report["packs"]],
              "pack_hashes": [p["content_hash"] for p in report["packs"]], "sites": [s["site"] for s in report["sites"]]}
    tags = tracking.standard_tags(pipeline="federate", dataset=report["dataset"])
    key = tracking.run_key("flamenco-federate", {p["name"]: p["content_hash"] for p in report["packs"]},
                           params | {"report": report.get("request_id")})
    parent = tracking.start_run(experiment, run_name, params=params, tags=tags, key=key)
    pooled_metrics: dict[str, float] = {"sites_usable": ok, "sites_asked": len(report["sites"])}
    for name, st in report["pooled"].items():
        pooled_metrics.update(_metrics_of(st, _metric_prefix(name, "pooled")))
    tracking.log(parent, metrics=pooled_metrics)
    tracking.log_artifacts(parent, report_files)
    children = {}
    for s in report["sites"]:
        metrics: dict[str, float] = {}
        for name, st in report["per_site"].get(s["site"], {}).items():
            metrics.update(_metrics_of(st, _metric_prefix(name)))
        child = tracking.start_run(experiment, s["site"], parent_run_id=parent,
                                   params={"site": s["site"], "status": s["status"]},
                                   metrics=metrics, tags=tracking.standard_tags(pipeline="federate", dataset=report["dataset"],
                                                                                item=s["site"], site=s["site"], status=s["status"]),
                                   key=tracking.run_key("flamenco-federate-site", None, {"parent": parent, "site": s["site"]}))
        tracking.log_json(child, {"site": s, "per_site": report["per_site"].get(s["site"])}, f"site_{s['site']}.json")
        tracking.close_run(child, "FINISHED" if s["status"] == "ok" else "FAILED",
                           error=None if s["status"] == "ok" else f"{s['status']}: {s['reason']}", outcome=s["status"])
        children[s["site"]] = child
    tracking.close_run(parent, "FINISHED" if ok else "FAILED", error=None if ok else "no site returned anything usable",
                       outcome="ok" if ok == len(report["sites"]) else ("partial" if ok else "failed"))
    return {"parent_run_id": parent, "children": children}
