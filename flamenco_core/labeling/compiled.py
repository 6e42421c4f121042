"""A declarative LF pack compiled once: thresholds resolved from statistics, row blocks labeled with masks."""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Union

import numpy as np

from .constants import ABSTAIN, LABEL_DTYPE
from .expr import Expression, SpecError, parse_expression
from .spec import LFPack
from .stats import DataStatistics, MissingStatistic, Statistics
from .threads import run_each

#: Rows per block: masks of this many rows stay in L2 cache, which beats whole-column numpy passes.
DEFAULT_BLOCK_ROWS = 65_536

Thresholds = tuple[float, ...]


@dataclass(frozen=True)
class _Cond:
    feature: str
    op: str
    items: tuple[Union[Expression, float], ...]
    key: str
    is_list: bool


@dataclass(frozen=True)
class _LF:
    name: str
    index: int  # class index voted
    conds: tuple[_Cond, ...]


class CompiledPack:
    """A pack parsed once, ready to resolve thresholds and label blocks of columns."""

    def __init__(self, pack: LFPack) -> None:
        self.pack = pack
        lfs = []
        for lf in pack.lfs:
            conds = []
            for c in lf.when:
                items = tuple(
                    parse_expression(v, pack=pack.name, lf=lf.name) if isinstance(v, str) else float(v) for v in c.values
                )
                conds.append(_Cond(c.feature, c.op, items, c.key(), isinstance(c.value, list)))
            lfs.append(_LF(lf.name, pack.class_index(lf.label), tuple(conds)))
        self.lfs: tuple[_LF, ...] = tuple(lfs)

    @property
    def lf_names(self) -> list[str]:
        """The LF names, in pack order (the label matrix's columns)."""
        return [lf.name for lf in self.lfs]

    def feature_users(self) -> dict[str, str]:
        """``{feature: first LF reading it}``, for errors that name an LF."""
        users: dict[str, str] = {}
        for lf in self.lfs:
            for c in lf.conds:
                users.setdefault(c.feature, lf.name)
                for it in c.items:
                    if isinstance(it, Expression):
                        for f, _ in it.statistics(c.feature):
                            users.setdefault(f, lf.name)
        return users

    def needed_stats(self) -> dict[str, set[str]]:
        """``{feature: statistics the pack's thresholds read of it}``."""
        need: dict[str, set[str]] = {}
        for lf in self.lfs:
            for c in lf.conds:
                for it in c.items:
                    if isinstance(it, Expression):
                        for f, s in it.statistics(c.feature):
                            need.setdefault(f, set()).add(s)
        return need

    def check_features(self, available: Iterable[str], where: str) -> None:
        """SpecError naming the LF and feature for the first feature not in ``available``."""
        avail = set(available)
        for feature, lf in self.feature_users().items():
            if feature not in avail:
                raise unknown_feature(feature, avail, where, self.pack.name, lf)

    def resolve(self, stats: Statistics, n_jobs: int = 1) -> list[list[Thresholds]]:
        """Thresholds per LF per condition; each (feature, stat) and each expression computed once."""
        try:
            if isinstance(stats, DataStatistics):
                stats.prefetch(self.needed_stats(), n_jobs=n_jobs)
            else:
                stats.prefetch(self.needed_stats())
        except (MissingStatistic, TypeError):
            pass  # reported below, with the LF that needs it
        memo: dict[tuple[int, str], float] = {}
        out: list[list[Thresholds]] = []
        for lf in self.lfs:
            per_lf = []
            for c in lf.conds:
                vals = []
                for it in c.items:
                    if not isinstance(it, Expression):
                        vals.append(it)
                        continue
                    key = (id(it), c.feature)
                    if key not in memo:
                        memo[key] = self._evaluate(it, c.feature, stats, lf.name)
                    vals.append(memo[key])
                per_lf.append(tuple(vals))
            out.append(per_lf)
        return out

    def _evaluate(self, expr: Expression, feature: str, stats: Statistics, lf: str) -> float:
        def lookup(f: str, s: str) -> float:
            try:
                return stats.get(f, s)
            except MissingStatistic as exc:
                raise SpecError(
                    f"statistic {s!r} of feature {f!r} is not available: {exc.reason}",
                    pack=self.pack.name, lf=lf, token=s, expression=expr.text,
                ) from None
            except TypeError as exc:
                raise SpecError(str(exc), pack=self.pack.name, lf=lf, token=f, expression=expr.text) from None

        try:
            return expr.evaluate(lookup, feature)
        except SpecError as exc:
            raise exc.with_context(pack=self.pack.name, lf=lf) from None

    def thresholds_dict(self, resolved: list[list[Thresholds]]) -> dict[str, dict[str, Any]]:
        """``{LF: {condition key: number or [numbers]}}``: the resolved form recorded with a run."""
        out: dict[str, dict[str, Any]] = {}
        for lf, conds in zip(self.lfs, resolved):
            out[lf.name] = {c.key: (list(t) if c.is_list else t[0]) for c, t in zip(lf.conds, conds)}
        return out

    def label(
        self,
        columns: Mapping[str, np.ndarray],
        resolved: list[list[Thresholds]],
        n_rows: int,
        n_jobs: int = 1,
        block_rows: int = DEFAULT_BLOCK_ROWS,
    ) -> np.ndarray:
        """The int8 label matrix for float64 ``columns`` (each of length ``n_rows``)."""
        m = len(self.lfs)
        L = np.empty((n_rows, m), dtype=LABEL_DTYPE)
        if n_rows == 0 or m == 0:
            return L
        block_rows = max(1024, int(block_rows))
        starts = list(range(0, n_rows, block_rows))

        def run(start: int) -> None:
            stop = min(n_rows, start + block_rows)
            self._label_block(columns, resolved, start, stop, L)

        run_each(run, starts, n_jobs)
        return L

    def _label_block(self, columns, resolved, start: int, stop: int, L: np.ndarray) -> None:
        k = stop - start
        # LF-major buffer: each LF's votes are written contiguously, then one transposed copy into L.
        buf = np.empty((len(self.lfs), k), dtype=LABEL_DTYPE)
        cache: dict[tuple, np.ndarray] = {}
        block = {}
        for j, (lf, conds) in enumerate(zip(self.lfs, resolved)):
            mask = None
            for c, t in zip(lf.conds, conds):
                ck = (c.feature, c.op, t)
                cm = cache.get(ck)
                if cm is None:
                    x = block.get(c.feature)
                    if x is None:
                        x = block[c.feature] = columns[c.feature][start:stop]
                    cm = cache[ck] = condition_mask(x, c.op, t)
                if mask is None:
                    mask = cm.copy() if len(lf.conds) > 1 else cm
                else:
                    np.logical_and(mask, cm, out=mask)
            # vote = mask*(index+1) - 1: index where the LF fires, ABSTAIN (-1) elsewhere, no branch
            row = buf[j]
            np.multiply(mask.view(np.int8), np.int8(lf.index - ABSTAIN), out=row)
            row += ABSTAIN
        L[start:stop] = buf.T


def unknown_feature(feature: str, available: set[str], where: str, pack: str, lf: str) -> SpecError:
    """The error for ``feature`` not being a column of the ``where``, with "did you mean" hints."""
    hint = difflib.get_close_matches(feature, sorted(available), n=3)
    extra = f"; did you mean {', '.join(hint)}?" if hint else ""
    return SpecError(f"unknown feature {feature!r}: not a column of the {where}{extra}", pack=pack, lf=lf, token=feature)


def condition_mask(x: np.ndarray, op: str, t: Thresholds) -> np.ndarray:
    """Boolean mask of the rows of ``x`` that meet the condition ``op`` with resolved thresholds ``t``."""
    if op == "<=":
        return x <= t[0]
    if op == "<":
        return x < t[0]
    if op == ">=":
        return x >= t[0]
    if op == ">":
        return x > t[0]
    if op == "==":
        return x == t[0]
    if op == "!=":
        if math.isnan(t[0]):
            return np.zeros(x.shape, dtype=bool)
        m = x != t[0]
        m &= ~np.isnan(x)
        return m
    if op == "between":
        m = x >= t[0]
        m &= x <= t[1]
        return m
    if op == "in":
        vals = [v for v in t if not math.isnan(v)]
        if len(vals) <= 8:
            m = np.zeros(x.shape, dtype=bool)
            for v in dict.fromkeys(vals):
                m |= x == v
            return m
        return np.isin(x, np.asarray(vals, dtype=np.float64))
    raise SpecError(f"unknown op {op!r}")  # pragma: no cover - the spec validates ops

