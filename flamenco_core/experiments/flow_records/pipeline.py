"""The whole flow-records pipeline in one process (no Prefect, no MLflow): prepare, every combination's
stages, outputs. The Prefect flow (``flows/flow_records.py``) runs the same steps as tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import pandas as pd

from flamenco_core.experiments.flow_records.config import ExperimentFile, PreparationError
from flamenco_core.experiments.flow_records.outputs import failed_record, write_failed_preparation, write_outputs
from flamenco_core.experiments.flow_records.prepare import prepare
from flamenco_core.experiments.flow_records.stages import run_combination
from flamenco_core.labeling.spec import LFPack


def run_experiment(
    data: pd.DataFrame,
    packs: Sequence[Union[LFPack, str, Path]],
    out_dir: Union[str, Path],
    experiment: Union[ExperimentFile, str, Path, Mapping, None] = None,
    config: Any = None,
    *,
    alerts: Any = None,
    display_names: Optional[Mapping[str, str]] = None,
    sources: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """The whole pipeline in one process (no Prefect, no MLflow): :func:`prepare`, :func:`run_combination`
    for every combination, :func:`write_outputs`. Returns the report (also ``out_dir/report.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        prep = prepare(data, packs, config, experiment, alerts=alerts, display_names=display_names,
                       sources=sources, out_dir=out)
    except PreparationError as exc:
        return write_failed_preparation(packs, experiment, str(exc), out, sources=sources)
    records = []
    for combo in prep.combinations:
        try:
            records.append(run_combination(prep, combo, out))
        except Exception as exc:  # OSError included: without a task runner there is no retry
            records.append(failed_record(combo, f"{type(exc).__name__}: {exc}", prep.dataset))
    return write_outputs(prep, records, out)
