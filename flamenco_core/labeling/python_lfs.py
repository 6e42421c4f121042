"""Python LFs: vectorized ``f(df)`` functions and Snorkel ``LabelingFunction``s, applied to a frame."""

from __future__ import annotations

from typing import Any, Callable, Union

import numpy as np
import pandas as pd

from .apply_meta import ApplyMeta, vote_counts
from .constants import ABSTAIN, LABEL_DTYPE
from .spec import LFPack
from .threads import run_each

class VectorizedLF:
    """A labeling function over a whole DataFrame: ``f(df) -> int array`` (one vote per row).

    Votes are class indices or ``ABSTAIN`` (-1). Build with :func:`vectorized_lf`.
    """

    def __init__(self, name: str, f: Callable[[pd.DataFrame], Any]) -> None:
        self.name = name
        self.f = f
        self.__doc__ = getattr(f, "__doc__", None)

    def __call__(self, df: pd.DataFrame) -> np.ndarray:
        return self.f(df)

    def __repr__(self) -> str:
        return f"VectorizedLF {self.name}"


def vectorized_lf(name: Union[str, Callable, None] = None) -> Any:
    """Decorator turning ``f(df) -> int array`` into a :class:`VectorizedLF`.

    Usable as ``@vectorized_lf``, ``@vectorized_lf()`` or ``@vectorized_lf(name="...")``::

        @vectorized_lf(name="many_small_packets")
        def many_small(df):
            return np.where((df.packets > 100) & (df.bytes < 64 * df.packets), 1, ABSTAIN)
    """
    if callable(name):
        return VectorizedLF(name.__name__, name)

    def wrap(f: Callable[[pd.DataFrame], Any]) -> VectorizedLF:
        return VectorizedLF(name or f.__name__, f)

    return wrap


def apply_python(lfs: list[Any], df: pd.DataFrame, *, n_jobs: int, return_meta: bool):
    """The label matrix of Python LFs on ``df`` (and its :class:`ApplyMeta` with ``return_meta``)."""
    names = [getattr(lf, "name", None) for lf in lfs]
    if any(not isinstance(n, str) for n in names):
        raise TypeError("every LF needs a name: use Snorkel's @labeling_function or @vectorized_lf")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"LF names must be unique; repeated: {', '.join(dup)}")
    n = len(df)
    L = np.full((n, len(lfs)), ABSTAIN, dtype=LABEL_DTYPE)
    row_lfs: list[tuple[int, Any]] = []
    vec: list[tuple[int, VectorizedLF]] = []
    for j, lf in enumerate(lfs):
        if isinstance(lf, VectorizedLF):
            vec.append((j, lf))
        elif _is_snorkel_lf(lf):
            row_lfs.append((j, lf))
        elif isinstance(lf, LFPack):
            raise TypeError("pass an LFPack on its own, not inside a list")
        else:
            raise TypeError(f"{names[j]!r} is neither a Snorkel LabelingFunction nor a VectorizedLF (use @vectorized_lf)")

    def run_vec(item: tuple[int, VectorizedLF]) -> None:
        j, lf = item
        L[:, j] = _check_votes(lf.name, lf(df), n)

    run_each(run_vec, vec, n_jobs)
    if row_lfs:
        # Row-wise LFs are arbitrary Python over a pandas row: Snorkel's own applier runs them, so they
        # see exactly the data point they were written for.
        from snorkel.labeling import PandasLFApplier

        sub = PandasLFApplier([lf for _, lf in row_lfs]).apply(df, progress_bar=False)
        for col, (j, lf) in enumerate(row_lfs):
            L[:, j] = _check_votes(lf.name, sub[:, col], n)
    if not return_meta:
        return L
    return L, ApplyMeta(lf_names=names, n_rows=n, votes=vote_counts(L, names))


def _is_snorkel_lf(obj: Any) -> bool:
    try:
        from snorkel.labeling import LabelingFunction
    except ImportError:  # pragma: no cover - snorkel is a dependency
        return False
    return isinstance(obj, LabelingFunction)


def _check_votes(name: str, votes: Any, n: int) -> np.ndarray:
    arr = np.asarray(votes)
    if arr.shape != (n,):
        raise ValueError(f"LF {name!r} returned shape {arr.shape}, expected ({n},)")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"LF {name!r} must return integer votes (class index or ABSTAIN=-1), got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise ValueError(f"LF {name!r} returned non-integer votes")
    if n and (arr.min() < ABSTAIN or arr.max() > np.iinfo(LABEL_DTYPE).max):
        raise ValueError(f"LF {name!r} returned votes outside -1..127")
    return arr.astype(LABEL_DTYPE, copy=False)
