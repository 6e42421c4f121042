"""Flow-record experiments (issue 5): LF combinations compared by LF F1, classifier F1 and Tree F1, the
paper's manual path for NetFlow / CICFlowMeter data. See ``docs/flow_records.md`` for the definitions.

Modules, in pipeline order: :mod:`.config` (settings, experiment files), :mod:`.catalog` (LFs of the
packs, combinations), :mod:`.prepare` (ground truth, splits, statistics, votes), :mod:`.stages` (one
combination: label, train, evaluate, explain), :mod:`.record` (the typed record), :mod:`.outputs`
(tables, labels, report) and :mod:`.pipeline` (all of it in one process).
"""

from flamenco_core.experiments.flow_records.catalog import (
    Catalog,
    Combination,
    LFEntry,
    build_catalog,
    default_combinations,
    experiment_combinations,
    load_packs,
)
from flamenco_core.experiments.flow_records.config import (
    CombinationEntry,
    ExperimentFile,
    FlowRecordsConfig,
    PackMismatch,
    PreparationError,
    load_config,
    load_experiment,
)
from flamenco_core.experiments.flow_records.outputs import (
    failed_record,
    skipped_records,
    summary_markdown,
    write_failed_preparation,
    write_outputs,
)
from flamenco_core.experiments.flow_records.pipeline import run_experiment
from flamenco_core.experiments.flow_records.prepare import (
    WORK_DIR,
    Prepared,
    check_packs,
    describe_sources,
    prepare,
    read_input,
)
from flamenco_core.experiments.flow_records.record import (
    METRIC_KEYS,
    SUMMARY_COLUMNS,
    SUMMARY_KEYS,
    CombinationRecord,
)
from flamenco_core.experiments.flow_records.stages import run_combination

__all__ = [
    "Catalog", "Combination", "CombinationEntry", "CombinationRecord", "ExperimentFile", "FlowRecordsConfig",
    "LFEntry", "METRIC_KEYS", "PackMismatch", "PreparationError", "Prepared", "SUMMARY_COLUMNS", "SUMMARY_KEYS",
    "WORK_DIR", "build_catalog", "check_packs", "default_combinations", "describe_sources", "experiment_combinations",
    "failed_record", "load_config", "load_experiment", "load_packs", "prepare", "read_input",
    "run_combination", "run_experiment", "skipped_records", "summary_markdown", "write_failed_preparation",
    "write_outputs",
]
