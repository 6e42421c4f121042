"""Labeling: LF specs and packs, the safe threshold evaluator, the applier and the privacy audit.

Public contract::

    from flamenco_core.labeling import LFPack, apply_lfs, ABSTAIN
    pack = LFPack.from_yaml("conf/lf_packs/example_cic_ntp_group_a.yaml")
    L = apply_lfs(pack, df)                      # int8, rows x LFs, pack order; stats from df
    L = apply_lfs(pack, df, stats=profile)       # thresholds from a profile instead

Label conventions (ABSTAIN = -1, classes by position, mapping to the paper's {1, -1, 0}) are in
:mod:`flamenco_core.labeling.constants`.
"""

from .applier import (
    ApplyMeta,
    CompiledPack,
    VectorizedLF,
    apply_lfs,
    apply_lfs_parquet,
    label_matrix_frame,
    resolved_thresholds,
    vectorized_lf,
)
from .analysis import combination_f1, display_frame, label_summary, lf_f1, lf_summary, to_csv, to_markdown
from .audit import Finding, audit_pack
from .collaborate import CollaborationRefused, collaborate
from .label_model import MajorityVote, SnorkelLabelModel, filter_unlabeled, make_label_model
from .constants import ABSTAIN, LABEL_DTYPE, from_paper_votes, to_paper_votes
from .expr import SpecError, parse_expression
from .spec import CombineReport, Condition, LFPack, LFSpec, combine_packs
from .stats import DataStatistics, MissingStatistic, ProfileStatistics, Statistics, compute_stats, load_profile

__all__ = [
    "CollaborationRefused",
    "MajorityVote",
    "SnorkelLabelModel",
    "collaborate",
    "combination_f1",
    "filter_unlabeled",
    "label_summary",
    "lf_f1",
    "lf_summary",
    "make_label_model",
    "display_frame",
    "to_csv",
    "to_markdown",
    "ABSTAIN",
    "LABEL_DTYPE",
    "ApplyMeta",
    "CombineReport",
    "CompiledPack",
    "Condition",
    "DataStatistics",
    "Finding",
    "LFPack",
    "LFSpec",
    "MissingStatistic",
    "ProfileStatistics",
    "SpecError",
    "Statistics",
    "VectorizedLF",
    "apply_lfs",
    "apply_lfs_parquet",
    "audit_pack",
    "combine_packs",
    "compute_stats",
    "from_paper_votes",
    "label_matrix_frame",
    "load_profile",
    "parse_expression",
    "resolved_thresholds",
    "to_paper_votes",
    "vectorized_lf",
]
