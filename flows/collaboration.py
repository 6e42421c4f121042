"""The collaboration flow: other groups' LF packs on local data, a shareable report, MLflow runs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from tasks import tracking
from tasks.collaboration import collaborate_task, finish_collaboration_run_task, log_collaboration_task
from tasks.common import close_failed_parent_run, start_parent_run_task
from tasks.report import write_report_task

DEFAULT_EXPERIMENT = "flamenco-collaboration"


@flow(name="flamenco-collaboration")
def collaboration_flow(
    packs: list[str],
    data: str,
    out_dir: str,
    labeled: Optional[str] = None,
    experiment: str = DEFAULT_EXPERIMENT,
    dataset: Optional[str] = None,
    allow: Optional[list[str]] = None,
    label_model: str = "snorkel",
    seed: int = 0,
    label_column: str = "label",
    abstain: str = "negative",
    positive: Optional[str] = None,
    run_name: Optional[str] = None,
) -> dict:
    """Apply each group's pack (``packs``: YAML/JSON files) and their combination to ``data``; write the
    aggregate-only report into ``out_dir``; log a parent MLflow run (the report as artifacts) and one
    child run per pack and for the combination, tagged for ``flamenco compare``. Returns a summary."""
    dataset = dataset or Path(data).stem
    params = {"packs": [Path(p).name for p in packs], "label_model": label_model, "seed": seed,
              "abstain": abstain, "positive": positive, "allow": allow or [], "labeled": bool(labeled)}
    files = [*packs, data] + ([labeled] if labeled else [])
    key = tracking.run_key("flamenco-collaboration", [f for f in files if Path(f).is_file()],
                           params | {"dataset": dataset, "out_dir": str(Path(out_dir).resolve())})
    name = run_name or tracking.run_name("collaboration", dataset, "+".join(Path(p).stem for p in packs))
    parent = start_parent_run_task(experiment, name, params=params, key=key,
                                   tags=tracking.standard_tags(pipeline="collaboration", dataset=dataset))
    # Whatever ends the run early (an audit refusal, bad input, an interrupt), the parent run ends FAILED
    # with the reason in flamenco.error.
    try:
        report = collaborate_task(packs, data, out_dir, labeled, label_column=label_column, allow=allow,
                                  label_model=label_model, seed=seed, abstain=abstain, positive=positive)
        children = log_collaboration_task(report, experiment, parent, dataset)
        finish_collaboration_run_task(parent, out_dir, report)
    except BaseException as exc:
        close_failed_parent_run(parent, exc)
        raise
    create_markdown_artifact((Path(out_dir) / "report.md").read_text(), key="collaboration-report")
    page = write_report_task(str(out_dir), parent)  # index.html, and the comparison on the parent run
    return {"experiment": experiment, "parent_run_id": parent, "comparison": report["comparison"],
            "children": children, "out_dir": str(out_dir), "page": page}
