"""Experiments: LF-combination studies composed from the core stages.

:mod:`.flow_records` is the manual-LF path for flow records (issue 5): packs of LFs from research groups,
their combinations compared by LF F1, classifier F1 and Tree F1, and the paper's tables.

Names are resolved lazily so importing this package stays cheap (the CLI imports it for ``--help``).
"""

from __future__ import annotations

from flamenco_core.lazy import lazy_exports

_EXPORTS = {
    name: "flow_records"
    for name in (
        "Catalog",
        "Combination",
        "ExperimentFile",
        "FlowRecordsConfig",
        "LFEntry",
        "PreparationError",
        "Prepared",
        "build_catalog",
        "default_combinations",
        "experiment_combinations",
        "failed_record",
        "load_config",
        "load_experiment",
        "load_packs",
        "prepare",
        "read_input",
        "run_combination",
        "run_experiment",
        "skipped_records",
        "write_failed_preparation",
        "write_outputs",
    )
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
