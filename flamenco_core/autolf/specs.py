"""How committed Snuba heuristics become declarative LF specs: percentile thresholds, names, the pack."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any, Sequence

import numpy as np
import pandas as pd

from flamenco_core.labeling import LFPack, LFSpec
from flamenco_core.labeling.expr import canonical_stat, format_percentile
from flamenco_core.labeling.spec import LF_NAME_PATTERN

from .candidates import Candidate
from .config import SnubaConfig
from .thresholds import PercentileThreshold, percentile_threshold, sorted_finite

_OP_WORDS = {"<=": "le", ">": "gt", "<": "lt", ">=": "ge"}
_LF_NAME_RE = re.compile(LF_NAME_PATTERN)
MAX_NAME = 128


def name_part(feature: str, th: PercentileThreshold) -> str:
    """One condition of a spec name: ``rtt_ms_gt_p97.31``."""
    # Names show at most 2 decimals: the audit reads 3+ digit numbers in a name as restated data values,
    # and the condition itself holds the exact expression (3-4 decimals on large data, see .thresholds).
    stat = th.stat if th.percentile is None else canonical_stat("p" + format_percentile(round(th.percentile, 2)))
    return f"{feature}_{_OP_WORDS[th.op]}_{stat}"


def spec_name(prefix: str, round_: int, parts: list[str], label: str, taken: set[str]) -> str:
    """A valid LF name for a spec of round ``round_``, not in ``taken`` (hashed when too long or invalid)."""
    base = f"{prefix}_r{round_}_{'_and_'.join(parts)}_{label}"
    if len(base) > MAX_NAME - 8 or not _LF_NAME_RE.match(base):
        digest = hashlib.sha256(base.encode()).hexdigest()[:8]
        base = f"{prefix}_r{round_}_{digest}_{label}"[: MAX_NAME - 8]
    name, i = base, 2
    while name in taken:
        name, i = f"{base}_{i}", i + 1
    return name


def short_number(x: float) -> str:
    """``x`` with at most three decimals, for spec descriptions."""
    # three decimals keep descriptions readable and below the audit's precise-constant limit
    return f"{x:.3f}".rstrip("0").rstrip(".") if math.isfinite(x) else "nan"


class ThresholdCache:
    """Percentile rewrites of raw cut points, computed once per (feature, op, threshold)."""

    def __init__(self, unlabeled_df: pd.DataFrame, config: SnubaConfig) -> None:
        self.df = unlabeled_df
        self.config = config
        self.sorted: dict[str, np.ndarray] = {}
        self.cache: dict[tuple[str, str, float], PercentileThreshold] = {}

    def get(self, feature: str, op: str, t: float) -> PercentileThreshold:
        """The percentile form of the cut ``feature op t`` on the unlabeled data."""
        key = (feature, op, t)
        if key not in self.cache:
            if feature not in self.sorted:
                self.sorted[feature] = sorted_finite(self.df[feature].to_numpy(dtype=np.float64, na_value=np.nan))
            self.cache[key] = percentile_threshold(feature, self.sorted[feature], t, op,
                                                   self.config.percentile_decimals, self.config.max_percentile_decimals)
        return self.cache[key]


def tree_specs(cand: Candidate, beta: float, config: SnubaConfig, thresholds: ThresholdCache, tag: str):
    """Voting leaves of a tree candidate as LF specs (placeholder names), or ``None`` if none can vote."""
    pos, b = config.pos, config.b
    specs, conds, ps = [], [], []
    for j, leaf in enumerate(cand.leaves or []):
        if leaf.p >= b + beta:
            label = config.classes[pos]
        elif leaf.p <= b - beta:
            label = config.classes[1 - pos]
        else:
            continue
        if not leaf.conditions:  # a root-only tree (no split found) says nothing a spec could state
            continue
        when = []
        for f, op, t in leaf.conditions:
            th = thresholds.get(f, op, t)
            when.append({"feature": f, "op": th.op, "value": th.stat})
        specs.append(LFSpec.model_validate({"name": f"{tag}_{j}", "label": label, "when": when}))
        conds.append(leaf.conditions)
        ps.append(leaf.p)
    return (specs, conds, ps) if specs else None


def raw_path_mask(conds: tuple, columns: dict[str, np.ndarray]) -> np.ndarray:
    """Rows of ``columns`` that the raw cut points ``conds`` (a tree path) select."""
    mask = None
    for f, op, t in conds:
        x = columns[f]
        m = (x <= t) if op == "<=" else (x > t)
        mask = m if mask is None else (mask & m)
    return mask


def build_pack(specs: list[LFSpec], config: SnubaConfig, features: Sequence[str]) -> LFPack:
    """The committed specs as the run's :class:`LFPack` (name, classes and group from ``config``)."""
    desc = (
        f"Automatic LFs (Snuba-style) over features {', '.join(features)}: one spec per voting leaf of each "
        f"committed decision tree; a spec's description names its heuristic. Thresholds are percentiles of "
        f"the local data."
    )
    data: dict[str, Any] = {"pack": config.pack_name, "version": 1, "classes": list(config.classes),
                            "description": desc, "lfs": [s.model_dump(mode="json", exclude_none=True) for s in specs]}
    if config.group:
        data["group"] = config.group
    return LFPack.from_dict(data)
