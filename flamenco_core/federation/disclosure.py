"""What a site's policy lets out of a count: k-anonymity with complementary and secondary suppression,
then optional Laplace noise.

Rules (k = ``min_group_size``):

- a count ``c`` of rows out of a released total ``T`` is released only if ``k <= c <= T - k``: fewer
  than k rows would describe those rows, and a count within k of its total reveals the few rows outside
  it (``T - c``), so both are suppressed. Zero is a count like any other: releasing "0" but suppressing
  "3" would tell a probe which of the two it is;
- in a group of counts that add up to a released total (one row of a confusion matrix, the class counts),
  one suppressed cell could be recovered by subtraction, so the smallest released cell of that group is
  suppressed as well (*secondary* suppression);
- a count out of a suppressed total is suppressed (``total_suppressed``);
- released counts then get Laplace noise of scale ``1/epsilon`` when the policy asks for it (rounded,
  clipped to ``[0, T]``). The noise of a count is drawn from a generator seeded by the policy's seed, the
  dataset and *what is counted* (``key``: e.g. an LF's content hash and the field), so the same quantity
  gets the same noise in every answer: asking again, renaming the LF, or asking for it inside another
  pack or the combination does not give fresh draws to average away.

Limits, on purpose in plain words: suppression protects each count and each sum it is part of, not every
difference between counts of *different* LFs; the site refuses requests whose conditions cut a feature
into a cell of 1..k-1 rows (:func:`flamenco_core.federation.site.small_cells`), and noise is the answer
for the rest (docs/federation.md).
"""

from __future__ import annotations

import hashlib
from typing import Optional, Sequence

import numpy as np

from flamenco_core.federation.models import Count


class Discloser:
    """Applies one policy's k and noise to every count of one answer."""

    def __init__(self, k: int, epsilon: Optional[float] = None, seed: int = 0, salt: str = "") -> None:
        self.k = int(k)
        self.epsilon = epsilon
        self.seed = int(seed)
        self.salt = salt

    def _noisy(self, c: int, total: Optional[int], key: str) -> int:
        if self.epsilon is None:
            return int(c)
        digest = hashlib.sha256(f"{self.seed}\0{self.salt}\0{key}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        v = int(round(c + rng.laplace(0.0, 1.0 / self.epsilon)))
        return max(0, min(v, total)) if total is not None else max(0, v)

    def total(self, n: int, key: str = "rows") -> Count:
        """A total (rows of a dataset): released when it holds at least k rows."""
        if n < self.k:
            return Count(suppressed="fewer_than_k")
        return Count(value=self._noisy(n, None, key))

    def count(self, c: int, total: int, total_released: bool = True, key: str = "") -> Count:
        """``c`` rows out of ``total`` (see the module rules); ``key`` names what is counted (noise)."""
        if not total_released:
            return Count(suppressed="total_suppressed")
        if c < self.k:
            return Count(suppressed="fewer_than_k")
        if total - c < self.k:
            return Count(suppressed="complement_fewer_than_k")
        return Count(value=self._noisy(c, total, key))

    def group(self, cells: Sequence[int], total: int, total_released: bool = True, key: str = "") -> list[Count]:
        """Counts that add up to ``total``: each by :meth:`count`, plus secondary suppression."""
        cells = [int(c) for c in cells]
        if not total_released:
            return [Count(suppressed="total_suppressed") for _ in cells]
        reasons: list[Optional[str]] = []
        for c in cells:
            reasons.append("fewer_than_k" if c < self.k else ("complement_fewer_than_k" if total - c < self.k else None))
        if sum(r is not None for r in reasons) == 1 and len(cells) > 1:
            # one unknown in a sum with a known total is not unknown: hide the smallest other cell too
            j = min((i for i, r in enumerate(reasons) if r is None), key=lambda i: (cells[i], i))
            reasons[j] = "secondary"
        return [Count(suppressed=r) if r else Count(value=self._noisy(c, total, f"{key}[{i}]"))
                for i, (c, r) in enumerate(zip(cells, reasons))]


def value(c: Optional[Count]) -> Optional[int]:
    """The released number of ``c`` (``None`` when suppressed or absent)."""
    return None if c is None else c.value


__all__ = ["Discloser", "value"]
