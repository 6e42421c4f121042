"""What a site's policy lets out of a count: k-anonymity with complementary and secondary suppression,
then optional Laplace noise (seeded by what is counted, so asking again gives the same draw).

The rules and their limits: docs/federation.md, section "The site's catalog and policy"."""

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
