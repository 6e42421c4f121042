"""What an application of LFs used and produced (:class:`ApplyMeta`), the record logged with a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional, Sequence, Union

import numpy as np

from flamenco_core.outputs import json_ready

from .constants import ABSTAIN

@dataclass
class ApplyMeta:
    """What an application used and produced: the record logged with a run."""

    lf_names: list[str]
    n_rows: int
    pack: Optional[str] = None
    pack_version: Optional[Union[int, str]] = None
    pack_hash: Optional[str] = None
    stats_source: Optional[str] = None  # "data" or "profile"
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    votes: dict[str, int] = field(default_factory=dict)  # rows each LF voted on (not ABSTAIN)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data for the run log (undefined statistics, NaN, as ``null``)."""
        return {
            "pack": self.pack,
            "pack_version": self.pack_version,
            "pack_hash": self.pack_hash,
            "lf_names": list(self.lf_names),
            "n_rows": self.n_rows,
            "stats_source": self.stats_source,
            "stats": json_ready(self.stats),
            "thresholds": json_ready(self.thresholds),
            "votes": dict(self.votes),
        }


def vote_counts(L: np.ndarray, names: Sequence[str]) -> dict[str, int]:
    """``{LF name: rows it voted on}`` (not ``ABSTAIN``) for the label matrix ``L``."""
    counts = (L != ABSTAIN).sum(axis=0)
    return {n: int(c) for n, c in zip(names, counts)}
