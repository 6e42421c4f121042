"""Train/validation/test splits of a latency table.

Two flavours:

- :func:`time_splits` cuts a series in time order (the paper's studies: Ark 65/25/10, Atlas 55/20/25), so the
  model is always evaluated on data later than what it was trained on;
- :func:`stratified_splits` keeps the class proportions in every split (issue 5: stratified test 20%,
  validation 20% of the rest); each split is then ordered by time.

Both return a frozen :class:`Splits`. Downstream steps that change training data (oversampling) take the
``Splits`` object and return a new one, so validation and test cannot be altered by accident.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import pandas as pd

#: The paper's train/validation/test ratios per study.
RATIOS: dict[str, tuple[float, float, float]] = {
    "ark": (0.65, 0.25, 0.10),
    "atlas": (0.55, 0.20, 0.25),
}
SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True, eq=False)
class Splits:
    """Three disjoint frames (original index kept, rows in time order) and how they were made.

    ``meta`` records the method, ratios, seed and sizes (for run tracking); steps that derive a new
    ``Splits`` (e.g. :func:`flamenco_core.preprocess.oversample.oversample`) add their own entries.
    """

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict, repr=False)

    def __iter__(self) -> Iterator[pd.DataFrame]:
        return iter((self.train, self.validation, self.test))

    def items(self) -> Iterator[tuple[str, pd.DataFrame]]:
        """``(name, frame)`` pairs in the order train, validation, test."""
        return iter(zip(SPLIT_NAMES, self))

    def sizes(self) -> dict[str, int]:
        """Row count per split."""
        return {name: len(frame) for name, frame in self.items()}


def _resolve_ratios(ratios: Sequence[float] | str) -> tuple[float, float, float]:
    if isinstance(ratios, str):
        try:
            return RATIOS[ratios.lower()]
        except KeyError:
            raise ValueError(f"unknown ratio preset {ratios!r}; choose one of {sorted(RATIOS)} or give 3 numbers") from None
    r = tuple(float(x) for x in ratios)
    if len(r) != 3:
        raise ValueError(f"ratios need 3 values (train, validation, test), got {len(r)}")
    if any(not math.isfinite(x) or x < 0 for x in r):
        raise ValueError(f"ratios must be finite and >= 0, got {r}")
    if abs(sum(r) - 1.0) > 1e-6:
        raise ValueError(f"ratios must sum to 1, got {r} (sum {sum(r)})")
    return r  # type: ignore[return-value]


def split_sizes(n: int, ratios: Sequence[float] | str) -> tuple[int, int, int]:
    """Rows per split for ``n`` rows: largest-remainder rounding, so each size is within 1 row of
    ``n * ratio`` and the sizes sum to ``n``; a split with a positive ratio gets at least one row whenever
    that bound allows it (a rounded-up split gives its extra row to it).

    Raises ``ValueError`` when a split with a positive ratio would still get 0 rows; the message gives the
    minimum number of rows these ratios need.
    """
    r = np.asarray(_resolve_ratios(ratios))
    sizes = _allocate(n, r)
    empty = [SPLIT_NAMES[i] for i in range(3) if r[i] > 0 and sizes[i] == 0]
    if empty:
        need = _min_rows(r)
        raise ValueError(
            f"{n} rows are too few for ratios {tuple(r.tolist())}: {', '.join(empty)} would be empty "
            f"(these ratios need at least {need} rows)"
        )
    return int(sizes[0]), int(sizes[1]), int(sizes[2])


def _allocate(n: int, r: np.ndarray) -> np.ndarray:
    exact = n * r
    floors = np.floor(exact).astype(int)
    sizes = floors.copy()
    remainder = exact - floors
    # Ties go to the earlier split (train first): stable sort on the negated remainders.
    order = np.argsort(-remainder, kind="stable")
    sizes[order[: n - int(floors.sum())]] += 1
    for i in range(3):
        if r[i] > 0 and sizes[i] == 0:
            # The donor is the rounded-up split whose rounding was least due (smallest remainder); losing
            # its extra row keeps it within 1 row of its exact share.
            donors = [j for j in range(3) if sizes[j] > floors[j] and sizes[j] > 1]
            if donors:
                j = min(donors, key=lambda k: (remainder[k], -k))
                sizes[j] -= 1
                sizes[i] += 1
    return sizes


def _min_rows(r: np.ndarray) -> int:
    for n in range(1, 10_000):
        sizes = _allocate(n, r)
        if not any(r[i] > 0 and sizes[i] == 0 for i in range(3)):
            return n
    return 10_000


def _time_order(df: pd.DataFrame, time_col: str | None) -> pd.DataFrame:
    if time_col is not None and time_col in df.columns:
        if df[time_col].isna().any():
            raise ValueError(f"column {time_col!r} has missing values; cannot order rows in time")
        return df.sort_values(time_col, kind="stable")
    return df


def _as_list(by: str | Sequence[str] | None) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def time_splits(
    df: pd.DataFrame,
    ratios: Sequence[float] | str = "ark",
    *,
    time_col: str | None = "timestamp",
    by: str | Sequence[str] | None = None,
) -> Splits:
    """Split ``df`` in time order: the earliest rows train, then validation, then test.

    ``ratios`` is ``(train, validation, test)`` summing to 1, or a preset of :data:`RATIOS` (``"ark"``:
    65/25/10, ``"atlas"``: 55/20/25). Rows are ordered by ``time_col`` (stable, so equal timestamps keep
    input order); without that column, input order is the time order. With ``by`` (e.g. ``"subset"`` or
    ``["src", "dst", "subset"]``) every group is split on its own and the splits are concatenated, so each
    subset contributes its own earliest rows to train.

    Sizes use largest-remainder rounding (each within 1 row of ``n * ratio``). A split with a positive
    ratio that would get 0 rows raises ``ValueError`` saying how many rows are needed (the caller records
    it as a skip); a ratio of 0 gives an empty split deliberately.
    """
    r = _resolve_ratios(ratios)
    groups = _as_list(by)
    ordered = _time_order(df, time_col)
    if groups:
        parts: list[list[pd.DataFrame]] = [[], [], []]
        for key, g in ordered.groupby(groups, sort=True, dropna=False):
            try:
                cut = _cut(g, r)
            except ValueError as exc:
                raise ValueError(f"group {dict(zip(groups, key))}: {exc}") from None
            for i in range(3):
                parts[i].append(cut[i])
        frames = [
            _time_order(pd.concat(p), time_col) if p else ordered.iloc[:0] for p in parts
        ]
    else:
        frames = list(_cut(ordered, r))
    meta = {
        "method": "time",
        "ratios": list(r),
        "by": groups,
        "sizes": {name: len(f) for name, f in zip(SPLIT_NAMES, frames)},
    }
    return Splits(frames[0], frames[1], frames[2], meta)


def _cut(ordered: pd.DataFrame, r: tuple[float, float, float]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    n_train, n_val, _ = split_sizes(len(ordered), r)
    return (
        ordered.iloc[:n_train],
        ordered.iloc[n_train : n_train + n_val],
        ordered.iloc[n_train + n_val :],
    )


def stratified_splits(
    df: pd.DataFrame,
    label_col: str = "label",
    *,
    test: float = 0.2,
    validation: float = 0.2,
    seed: int = 0,
    time_col: str | None = "timestamp",
) -> Splits:
    """Stratified splits (issue 5): ``test`` of all rows, ``validation`` of the remaining rows, train the
    rest, each split keeping the class proportions of ``label_col`` and then ordered by time.

    Seeded (scikit-learn's ``train_test_split`` with ``random_state=seed``). Rows without a label, or a
    class too small to appear in every split, raise ``ValueError`` with the class counts.
    """
    from sklearn.model_selection import train_test_split  # lazy: keeps CLI start-up fast

    for name, frac in (("test", test), ("validation", validation)):
        if not (0.0 < frac < 1.0):
            raise ValueError(f"{name} fraction must be in (0, 1), got {frac}")
    if label_col not in df.columns:
        raise ValueError(f"stratified_splits needs a {label_col!r} column")
    y = df[label_col]
    if y.isna().any():
        raise ValueError(f"{int(y.isna().sum())} rows have no {label_col!r}; stratified splits need every row labeled")
    counts = y.value_counts()
    try:
        rest, te = train_test_split(df, test_size=test, stratify=y, random_state=seed)
        tr, va = train_test_split(rest, test_size=validation, stratify=rest[label_col], random_state=seed)
    except ValueError as exc:
        raise ValueError(f"cannot stratify {len(df)} rows with class counts {counts.to_dict()}: {exc}") from None
    frames = [_time_order(f, time_col) for f in (tr, va, te)]
    meta = {
        "method": "stratified",
        "test": test,
        "validation": validation,
        "seed": seed,
        "label_col": label_col,
        "sizes": {name: len(f) for name, f in zip(SPLIT_NAMES, frames)},
        "class_counts": {name: f[label_col].value_counts().to_dict() for name, f in zip(SPLIT_NAMES, frames)},
    }
    return Splits(frames[0], frames[1], frames[2], meta)
