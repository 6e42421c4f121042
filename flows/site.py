"""The site flow: runs on a site's own work pool, read by the site's own worker, answers with aggregates.

The catalog comes from the worker's environment, never from the request; the answer is a Prefect artifact
(:data:`AGGREGATE_ARTIFACT`) and the flow never raises. :func:`serve_site` is ``flamenco site serve``. See
docs/federation.md (top)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from prefect import flow

from tasks.federation import publish_aggregate_task, site_answer_task

SITE_FLOW_NAME = "flamenco-site"
SITE_CONFIG_ENV = "FLAMENCO_SITE_CONFIG"
AGGREGATE_ARTIFACT = "flamenco-aggregate"
ENTRYPOINT = "flows/site.py:site_flow"
PROJECT_DIR = Path(__file__).resolve().parents[1]


@flow(name=SITE_FLOW_NAME, log_prints=False, persist_result=False)
def site_flow(packs: list[str], dataset: str, label_model: str = "snorkel", seed: int = 0) -> dict:
    """Answer one request at this site: ``packs`` are LF packs as YAML text, ``dataset`` a name in the
    site's catalog. Returns (and publishes as an artifact) the site's aggregate as JSON-ready dict."""
    aggregate = site_answer_task(packs, dataset, label_model=label_model, seed=seed,
                                 config_path=os.environ.get(SITE_CONFIG_ENV))
    publish_aggregate_task(aggregate, AGGREGATE_ARTIFACT)
    return aggregate


# ------------------------------------------------------------------------------------------- serving


def site_job_template() -> dict:
    """The process pool's base job template without the ``command``, ``env`` and ``working_dir``
    variables: a flow run's job variables can then only name and label the process (the server refuses
    any other key: ``additionalProperties`` is false), while the worker's own environment, which holds
    the catalog's path, is what the flow run inherits."""
    from prefect.workers.process import ProcessWorker

    t = ProcessWorker.get_default_base_job_template()
    props = t["variables"]["properties"]
    for key in ("command", "env", "working_dir", "stream_output"):
        props.pop(key, None)
    t["variables"]["additionalProperties"] = False
    t["job_configuration"].update({"command": None, "env": {}, "working_dir": None, "stream_output": True})
    return t


def ensure_pool(pool: str) -> str:
    """Create the site's process pool with :func:`site_job_template` unless it exists; returns its name."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
            # an existing pool may carry the default template: the restricted one is what the site relies on
            client.update_work_pool(pool, WorkPoolUpdate(base_job_template=site_job_template()))
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process", base_job_template=site_job_template()))
    return pool


def deploy_site(site: str, pool: str, project_dir: Path = PROJECT_DIR) -> str:
    """Deploy :func:`site_flow` from ``project_dir`` to ``pool`` as ``flamenco-site/<site>``; returns the
    deployment id. The pull step makes the project folder the flow run's working directory."""
    f = site_flow.from_source(source=str(project_dir), entrypoint=ENTRYPOINT)
    dep_id = f.deploy(name=site, work_pool_name=pool, build=False, push=False, print_next_steps=False,
                      ignore_warnings=True, description=f"Flamenco site {site}: answers LF packs with aggregates only",
                      tags=["flamenco-site"])
    return str(dep_id)


def run_worker(site: str, pool: str, heartbeat_s: int = 10, printer: Any = print) -> None:
    """Run a process worker on ``pool`` in this process until interrupted."""
    import asyncio

    from prefect.workers.process import ProcessWorker

    async def main() -> None:
        async with ProcessWorker(work_pool_name=pool, name=f"{site}-worker", create_pool_if_not_found=False,
                                 heartbeat_interval_seconds=heartbeat_s) as worker:
            await worker.start(printer=printer)

    asyncio.run(main())


def serve_site(config_path: str, heartbeat_s: int = 10, project_dir: Path = PROJECT_DIR,
               on_ready: Optional[Any] = None) -> None:
    """``flamenco site serve``: pool, deployment, worker (blocks). ``on_ready(config, deployment_id)`` is
    called once the deployment exists, before the worker starts polling."""
    from flamenco_core.federation.config import load_site_config

    cfg = load_site_config(config_path)
    # the flow runs started by the worker inherit this: the catalog's path never travels in a request
    os.environ[SITE_CONFIG_ENV] = str(Path(config_path).resolve())
    ensure_pool(cfg.pool)
    dep_id = deploy_site(cfg.site, cfg.pool, project_dir)
    if on_ready:
        on_ready(cfg, dep_id)
    run_worker(cfg.site, cfg.pool, heartbeat_s)
