"""Learned thresholds written as percentiles of the local data.

A tree's raw cut point becomes the percentile of the training data where it falls, chosen so that the
applier re-resolves it to a split of the training data identical to the tree's (``drift_rows`` counts the
rows where it would not). How the percentile is chosen: docs/autolf.md, section ``thresholds.py``."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from flamenco_core.labeling.expr import canonical_stat, format_percentile
from flamenco_core.labeling.stats import stats_of_values

#: Most decimals the expression grammar accepts after ``p`` (``p99.123456``).
MAX_GRAMMAR_DECIMALS = 6


@dataclass(frozen=True)
class PercentileThreshold:
    """A raw cut point rewritten as a statistic of the training data.

    ``op``/``stat`` form the condition (``feature op stat``); ``percentile`` is ``None`` for the
    ``min``/``max`` edge cases; ``resolved`` is what ``stat`` evaluates to on the training data;
    ``drift_rows`` counts training rows on which ``feature op stat`` and ``feature raw_op raw`` disagree.
    """

    feature: str
    raw_op: str
    raw: float
    op: str
    stat: str
    percentile: float | None
    decimals: int
    resolved: float
    drift_rows: int

    def to_dict(self) -> dict:
        return {
            "feature": self.feature, "op": self.op, "value": self.stat, "percentile": self.percentile,
            "decimals": self.decimals, "drift_rows": self.drift_rows,
        }


def _stat_name(q: float) -> str:
    # canonical names (q1, median, q3, min, max) where they exist, so a statistic is computed and recorded once
    name = canonical_stat("p" + format_percentile(q))
    assert name is not None  # q is clamped to [0, 100] by the caller
    return name


def sorted_finite(values: np.ndarray) -> np.ndarray:
    """Finite values, sorted: the population the applier takes percentiles of."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    v.sort()
    return v


def percentile_threshold(
    feature: str,
    sorted_values: np.ndarray,
    t: float,
    op: str,
    decimals: int = 2,
    max_decimals: int = 4,
) -> PercentileThreshold:
    """Rewrite ``feature op t`` (``op`` is ``"<="`` or ``">"``, a tree split) as a percentile condition.

    ``sorted_values`` are the training data's finite values of ``feature``, sorted (:func:`sorted_finite`).
    Tries ``decimals``, then more up to ``max_decimals``, and keeps the first choice whose resolved
    threshold splits the training data exactly as ``t``; if none does, the one with the least drift.
    """
    if op not in ("<=", ">"):
        raise ValueError(f"tree splits are '<=' or '>', got {op!r}")
    if not 0 <= decimals <= max_decimals <= MAX_GRAMMAR_DECIMALS:
        raise ValueError(f"need 0 <= decimals <= max_decimals <= {MAX_GRAMMAR_DECIMALS}; got {decimals}, {max_decimals}")
    s = sorted_values
    n = int(s.size)
    if n == 0:
        raise ValueError(f"feature {feature!r} has no finite values in the training data: no percentile to express {t}")
    k = int(np.searchsorted(s, t, side="right"))  # rows with value <= t
    if k == 0:
        # t lies below every value: "<= t" never holds, "> t" always does; min is the exact equivalent
        new_op = "<" if op == "<=" else ">="
        return PercentileThreshold(feature, op, float(t), new_op, "min", None, 0, float(s[0]), 0)
    if k == n:
        return PercentileThreshold(feature, op, float(t), op, "max", None, 0, float(s[-1]), 0)
    lo = int(np.searchsorted(s, s[k - 1], side="left"))  # ties of s[k-1] resolve to s[k-1] too
    span = 100.0 / (n - 1)
    q_lo, q_hi, q_mid = lo * span, k * span, (lo + k) / 2 * span
    tried: list[tuple[int, float]] = []
    for d in range(decimals, max_decimals + 1):
        scale = 10.0**d
        # midpoint first; the ends of the range next, for ranges narrower than one rounding step
        for q in (round(q_mid, d), math.ceil(q_lo * scale) / scale, math.floor(q_hi * scale) / scale):
            q = min(100.0, max(0.0, round(q, d)))
            if (d, q) not in tried:
                tried.append((d, q))
    stats = [_stat_name(q) for _, q in tried]
    # the applier's own code resolves each candidate, so what we verify is what it will compute
    resolved = stats_of_values(s, stats)
    best = None
    for (d, q), stat in zip(tried, stats):
        r = resolved[stat]
        drift = abs(int(np.searchsorted(s, r, side="right")) - k)
        cand = PercentileThreshold(feature, op, float(t), op, stat, q, d, float(r), drift)
        if drift == 0:
            return cand
        if best is None or drift < best.drift_rows:
            best = cand
    assert best is not None
    return best
