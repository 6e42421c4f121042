"""The coordinator flow: one request (packs + a dataset name) to several sites' work pools, their
aggregates combined into one report, one MLflow parent run with a child per site.

The coordinator holds the packs and the site names, nothing else: it never sees a path, a row or a
statistic. Each site is asked concurrently (``ask_site_task``); a site that is down, refuses, fails or
times out is reported with its status and the others still count. The report (``report.json``,
``report.md``, and ``index.html`` as a view of them) is built from the sites' aggregates only (:func:`flamenco_core.federation.combine.combine`).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Optional

from prefect import flow

from tasks.federation import ask_site_task, log_federation_task
from tasks.report import write_report_task

DEFAULT_EXPERIMENT = "flamenco-federate"
DEFAULT_TIMEOUT_S = 600.0


def read_pack_texts(paths: list[str]) -> list[tuple[str, str]]:
    """``[(path, text)]`` of the packs, each validated here first (a bad pack fails fast, naming the file)."""
    from flamenco_core.labeling.spec import LFPack

    out = []
    for p in paths:
        LFPack.from_yaml(p)  # SpecError names the file and the field
        out.append((p, Path(p).read_text(encoding="utf-8")))
    return out


@flow(name="flamenco-federate", persist_result=False)
def federate_flow(
    packs: list[str],
    sites: list[str],
    dataset: str,
    out_dir: str,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    label_model: str = "snorkel",
    seed: int = 0,
    experiment: str = DEFAULT_EXPERIMENT,
    run_name: Optional[str] = None,
) -> dict:
    """Ask every site in ``sites`` to run ``packs`` (YAML files) on its dataset ``dataset``; write
    ``out_dir/report.json``, ``report.md`` and ``index.html``; log to MLflow. Returns the report with ``mlflow`` run ids."""
    from flamenco_core.federation.combine import combine, render_markdown
    from flamenco_core.federation.models import SiteOutcome
    from flamenco_core.labeling.spec import LFPack
    from flamenco_core.outputs import AtomicOutputs, json_ready
    from flows.site import AGGREGATE_ARTIFACT, SITE_FLOW_NAME

    texts = read_pack_texts(packs)
    pack_texts = [t for _, t in texts]
    futures = [ask_site_task.submit(s, pack_texts, dataset, label_model=label_model, seed=seed, timeout_s=timeout_s,
                                    deployment_flow=SITE_FLOW_NAME, artifact_type=AGGREGATE_ARTIFACT) for s in sites]
    outcomes = [SiteOutcome.model_validate(f.result()) for f in futures]
    meta = []
    for path, _ in texts:
        p = LFPack.from_yaml(path)
        meta.append({"name": p.name, "version": p.version, "content_hash": p.content_hash})
    report = combine(outcomes, dataset=dataset, packs=meta)
    report["request_id"] = hashlib.sha256(json.dumps({"packs": [m["content_hash"] for m in meta], "sites": sites,
                                                      "dataset": dataset, "label_model": label_model,
                                                      "seed": seed}, sort_keys=True).encode()).hexdigest()
    report["aggregates"] = [o.aggregate.model_dump(mode="json") if o.aggregate else None for o in outcomes]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = json_ready(report)
    with AtomicOutputs(out, report="report.json") as w:
        w.path("report.md").write_text(render_markdown(report), encoding="utf-8")
        w.path("report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    page = write_report_task(str(out))  # index.html: a view of report.json (aggregates only, like the report)
    name = run_name or "-".join(["federate", dataset, "+".join(m["name"] for m in meta)])
    runs = log_federation_task(report, experiment, name, [str(out / "report.json"), str(out / "report.md")])
    return {**report, "mlflow": runs, "page": page}
