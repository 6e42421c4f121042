"""Synthetic oversampling of minority classes in the training split only (validation and test are
never touched); see docs/preprocess.md, ``oversample.py``."""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Hashable, Mapping

import numpy as np
import pandas as pd

from flamenco_core.preprocess.splits import Splits

Sampler = Callable[[np.random.Generator, float, float, int], np.ndarray]


def _draw(rng: np.random.Generator, distribution: str | Sampler, lo: float, hi: float, n: int) -> np.ndarray:
    if callable(distribution):
        v = np.asarray(distribution(rng, lo, hi, n), dtype="float64")
        if v.shape != (n,):
            raise ValueError(f"sampler returned shape {v.shape}, expected ({n},)")
        return v
    if distribution == "uniform":
        return rng.uniform(lo, hi, n)
    if distribution == "loguniform":
        if lo <= 0:
            raise ValueError(f"loguniform needs lo > 0, got {lo}")
        return np.exp(rng.uniform(np.log(lo), np.log(hi), n))
    raise ValueError(f"unknown distribution {distribution!r}; use 'uniform', 'loguniform' or a callable")


def oversample(
    splits: Splits,
    bounds: Mapping[Hashable, tuple[float, float]],
    *,
    seed: int = 0,
    label_col: str = "label",
    target_ratio: float = 1.0,
    feature: str = "rtt_ms",
    distribution: str | Sampler = "uniform",
    time_col: str = "timestamp",
) -> Splits:
    """Add synthetic training rows for every class in ``bounds`` with fewer than ``target_ratio`` times
    the majority class's count, up to that count; values are drawn within ``bounds[class] = (lo, hi)``.

    Only ``splits.train`` changes; see the module docstring for the guarantee and how synthetic rows are
    built. Rows without a label do not count. What was added is recorded in
    ``result.meta["oversample"]`` (per class: before, added, bounds; seed, distribution).
    """
    if not isinstance(splits, Splits):
        raise TypeError(
            "oversample takes the Splits object (it changes the training split only); "
            f"got {type(splits).__name__}"
        )
    if not 0 < target_ratio <= 1 or not math.isfinite(target_ratio):
        raise ValueError(f"target_ratio must be in (0, 1], got {target_ratio}")
    train = splits.train
    for col in (label_col, feature):
        if col not in train.columns:
            raise ValueError(f"training split has no {col!r} column")
    if train.empty:
        raise ValueError("training split is empty: nothing to balance or to anchor synthetic rows at")
    for cls, b in bounds.items():
        lo, hi = (float(v) for v in b)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"bounds for {cls!r} must be finite with lo < hi, got {b}")
    counts = train[label_col].value_counts(dropna=True)
    top = int(counts.max()) if len(counts) else 0
    target = int(math.ceil(target_ratio * top - 1e-9))
    rng = np.random.default_rng(seed)
    plan = {cls: max(0, target - int(counts.get(cls, 0))) for cls in bounds}
    total = sum(plan.values())
    record = {
        "seed": seed,
        "target_ratio": target_ratio,
        "distribution": distribution if isinstance(distribution, str) else getattr(distribution, "__name__", "callable"),
        "classes": {
            str(cls): {"before": int(counts.get(cls, 0)), "added": plan[cls], "bounds": [float(b) for b in bounds[cls]]}
            for cls in bounds
        },
        "not_oversampled": [str(c) for c in counts.index if c not in bounds and int(counts[c]) < target],
    }
    real = train.copy()
    real["synthetic"] = False
    if total == 0:
        return dataclasses.replace(splits, train=real, meta={**splits.meta, "oversample": record})

    anchors = rng.integers(0, len(train), size=total)
    synth = train.iloc[anchors].copy()
    labels = np.concatenate([np.full(n, cls, dtype=object) for cls, n in plan.items() if n])
    values = np.concatenate(
        [_draw(rng, distribution, float(bounds[cls][0]), float(bounds[cls][1]), n) for cls, n in plan.items() if n]
    )
    synth.index = _new_index([f.index for f in splits], total)
    # Class order in the draw is fixed; shuffle which anchor gets which synthetic value.
    perm = rng.permutation(total)
    lab = pd.Series(labels[perm], index=synth.index)
    try:
        lab = lab.astype(train[label_col].dtype)
    except (TypeError, ValueError):
        pass  # e.g. a categorical without this class: keep plain objects
    synth[label_col] = lab
    synth[feature] = values[perm]
    if time_col in train.columns:
        synth[time_col] = _interleaved_times(train[time_col], anchors, rng)
    if "label_source" in synth.columns:
        synth["label_source"] = "synthetic"
    synth["synthetic"] = True
    out = pd.concat([real, synth])
    if time_col in out.columns:
        out = out.sort_values(time_col, kind="stable")
    return dataclasses.replace(splits, train=out, meta={**splits.meta, "oversample": record})


def _interleaved_times(times: pd.Series, anchors: np.ndarray, rng: np.random.Generator) -> np.ndarray | pd.Series:
    is_dt = pd.api.types.is_datetime64_any_dtype(times)
    # Integer nanoseconds (UTC) for datetimes: exact arithmetic, whatever the unit or time zone.
    raw = times.to_numpy(dtype="datetime64[ns]").astype("int64") if is_dt else times.to_numpy(dtype="float64")
    ts = np.sort(raw)
    start = raw[anchors]
    pos = np.searchsorted(ts, start, side="right")  # the next strictly later time
    gaps = np.diff(ts)
    positive = gaps[gaps > 0]
    fallback = np.median(positive) if positive.size else (1_000 if is_dt else 1.0)  # 1 us when no gap
    end = np.where(pos < ts.size, ts[np.minimum(pos, ts.size - 1)], start + fallback)
    frac = rng.uniform(0.0, 1.0, anchors.size)
    if not is_dt:
        return start + (end - start) * frac
    offset = np.floor((end - start).astype("float64") * frac).astype("int64")
    new = pd.Series((start + offset).astype("datetime64[ns]"))
    tz = getattr(times.dt, "tz", None)
    if tz is not None:
        new = new.dt.tz_localize("UTC").dt.tz_convert(tz)
    return new.astype(times.dtype).to_numpy()


def _new_index(indexes: list[pd.Index], n: int) -> pd.Index:
    # Past every split's labels, so synthetic rows never collide with a validation or test row.
    if all(pd.api.types.is_integer_dtype(ix.dtype) for ix in indexes):
        start = max((int(ix.max()) + 1 for ix in indexes if len(ix)), default=0)
        return pd.RangeIndex(start, start + n)
    return pd.Index([f"synthetic-{i}" for i in range(n)])
