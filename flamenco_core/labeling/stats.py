"""Statistics of local data: the numbers that threshold expressions are evaluated against.

Computed from data (:class:`DataStatistics`) or read from a profile (:class:`ProfileStatistics`), as
pandas' ``describe()`` defines them; both record what was read. Definitions: docs/labeling.md, section
``stats.py``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Iterable, Mapping, Optional, Union

import numpy as np
import pandas as pd

from flamenco_core.errors import UsageError

from .expr import BASE_STATS, canonical_stat, percentile_of

#: The statistics a profile holds and :func:`compute_stats` returns when not told otherwise.
DEFAULT_STATS = ("count", "mean", "std", "min", "q1", "median", "q3", "max")

_PCT_COL = re.compile(r"(\d{1,3}(?:\.\d+)?)%")


class MissingStatistic(UsageError, KeyError):
    """A statistic a source cannot supply (feature absent, or a percentile not in a profile); exit 2."""

    def __init__(self, feature: str, stat: str, reason: str) -> None:
        self.feature, self.stat, self.reason = feature, stat, reason
        super().__init__(f"{stat} of {feature!r}: {reason}")

    def __str__(self) -> str:
        return f"{self.stat} of {self.feature!r}: {self.reason}"


def normalize_stat_name(name: str) -> Optional[str]:
    """Canonical statistic for a profile column: accepts ``q1``/``25%``/``p25``, ``50%``/``median``, ..."""
    name = str(name).strip()
    m = _PCT_COL.fullmatch(name)
    if m:
        return canonical_stat("p" + m.group(1))
    return canonical_stat(name.lower())


def finite_values(values: np.ndarray) -> np.ndarray:
    """The finite values of a float column (statistics ignore NaN and +-inf)."""
    mask = np.isfinite(values)
    return values if mask.all() else values[mask]


def stats_of_values(values: np.ndarray, needed: Iterable[str]) -> dict[str, float]:
    """Canonical statistics of one column of float64 values (non-finite values ignored).

    Percentiles are computed together with one ``np.percentile`` call (linear interpolation, as
    pandas); min/max by reduction, which is exact and avoids a partition. Empty input gives NaN for
    everything but ``count``; ``std`` of one value is NaN (ddof=1).
    """
    stats = list(dict.fromkeys(needed))
    v = finite_values(np.asarray(values, dtype=np.float64))
    n = int(v.size)
    want_pct: set[str] = set()
    for s in stats:
        if s == "iqr":
            want_pct.update(("q1", "q3"))
        elif s not in ("count", "mean", "std", "min", "max"):
            if percentile_of(s) is None:
                raise ValueError(f"unknown statistic {s!r}")
            want_pct.add(s)
    pct: dict[str, float] = {}
    if want_pct:
        order = sorted(want_pct, key=lambda s: percentile_of(s))
        if n:
            qs = np.percentile(v, [percentile_of(s) for s in order], method="linear")
            pct = dict(zip(order, (float(q) for q in qs)))
        else:
            pct = {s: math.nan for s in order}
    mean = float(v.mean()) if n and ("mean" in stats or "std" in stats) else math.nan
    out: dict[str, float] = {}
    for s in stats:
        if s == "count":
            out[s] = float(n)
        elif s == "mean":
            out[s] = mean
        elif s == "std":
            out[s] = float(np.sqrt(((v - mean) ** 2).sum() / (n - 1))) if n > 1 else math.nan
        elif s == "min":
            out[s] = float(v.min()) if n else math.nan
        elif s == "max":
            out[s] = float(v.max()) if n else math.nan
        elif s == "iqr":
            out[s] = pct["q3"] - pct["q1"]
        else:
            out[s] = pct[s]
    return out


def column_values(data: pd.DataFrame, feature: str) -> np.ndarray:
    """A numeric column as float64 (nullable NA -> NaN); ``TypeError`` for non-numeric columns."""
    s = data[feature]
    if not (pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)):
        raise TypeError(f"feature {feature!r} is not numeric (dtype {s.dtype})")
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


class Statistics:
    """A source of statistics: ``get(feature, stat)`` with canonical stat names."""

    def __init__(self) -> None:
        self._used: dict[str, dict[str, float]] = {}

    def has_feature(self, feature: str) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def _lookup(self, feature: str, stat: str) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def prefetch(self, needed: Mapping[str, Iterable[str]]) -> None:
        """Compute/check ``{feature: stats}`` ahead of use (one pass per feature for data)."""
        for feature, stats in needed.items():
            for stat in stats:
                self.get(feature, stat)

    def get(self, feature: str, stat: str) -> float:
        """The value of ``stat`` (canonical or alias) for ``feature``; records it as used."""
        canon = canonical_stat(stat) or normalize_stat_name(stat)
        if canon is None:
            raise MissingStatistic(feature, stat, "not a statistic")
        value = self._lookup(feature, canon)
        self._used.setdefault(feature, {})[canon] = value
        return value

    def used(self) -> dict[str, dict[str, float]]:
        """``{feature: {stat: value}}`` of every statistic read so far (the form logged per run)."""
        return {f: dict(sorted(s.items())) for f, s in sorted(self._used.items())}


class DataStatistics(Statistics):
    """Statistics computed from local data, each once.

    ``data`` is a DataFrame or a mapping ``{feature: array}``; features are read lazily, so only the
    columns an LF pack needs are ever converted.
    """

    def __init__(
        self,
        data: Union[pd.DataFrame, Mapping[str, np.ndarray]],
        precomputed: Optional[Mapping[str, Mapping[str, float]]] = None,
    ) -> None:
        super().__init__()
        self._data = data
        # precomputed: statistics from an earlier pass over the same data (e.g. streamed Parquet columns)
        self._cache: dict[str, dict[str, float]] = {f: dict(s) for f, s in (precomputed or {}).items()}

    def has_feature(self, feature: str) -> bool:
        if feature in self._cache:
            return True
        return feature in self._data.columns if isinstance(self._data, pd.DataFrame) else feature in self._data

    def _values(self, feature: str) -> np.ndarray:
        if not self.has_feature(feature):
            raise MissingStatistic(feature, "*", "feature not in the data")
        if isinstance(self._data, pd.DataFrame):
            return column_values(self._data, feature)
        return np.asarray(self._data[feature], dtype=np.float64)

    def prefetch(self, needed: Mapping[str, Iterable[str]], n_jobs: int = 1) -> None:
        """Compute ``{feature: stats}``; features on ``n_jobs`` threads (partition releases the GIL)."""
        todo = {}
        for feature, stats in needed.items():
            missing = [s for s in stats if s not in self._cache.get(feature, {})]
            if missing:
                todo[feature] = missing

        def one(item):
            feature, missing = item
            return feature, stats_of_values(self._values(feature), missing)

        if n_jobs > 1 and len(todo) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                results = list(pool.map(one, todo.items()))
        else:
            results = [one(item) for item in todo.items()]
        for feature, values in results:
            self._cache.setdefault(feature, {}).update(values)

    def _lookup(self, feature: str, stat: str) -> float:
        cached = self._cache.get(feature, {})
        if stat not in cached:
            self.prefetch({feature: [stat]})
        return self._cache[feature][stat]


class ProfileStatistics(Statistics):
    """Statistics read from a profile ``{feature: {stat: value}}`` (see :func:`load_profile`).

    Aliases are resolved both ways (``q1`` = ``p25`` = ``25%``, ``min`` = ``p0`` ...), ``iqr`` is derived
    from ``q1``/``q3`` when absent. Anything else missing raises :class:`MissingStatistic`: a profile
    cannot produce a percentile it was not made with.
    """

    def __init__(self, profile: Mapping[str, Mapping[str, float]]) -> None:
        super().__init__()
        self._profile: dict[str, dict[str, float]] = {}
        for feature, row in profile.items():
            clean: dict[str, float] = {}
            for name, value in row.items():
                canon = normalize_stat_name(name)
                if canon is None:
                    continue  # extra profile columns (dtype, unique, ...) are not statistics
                clean[canon] = float(value) if value is not None else math.nan
            self._profile[str(feature)] = clean

    def has_feature(self, feature: str) -> bool:
        return feature in self._profile

    def _lookup(self, feature: str, stat: str) -> float:
        row = self._profile.get(feature)
        if row is None:
            raise MissingStatistic(feature, stat, "feature not in the profile")
        if stat in row:
            return row[stat]
        if stat == "iqr" and "q1" in row and "q3" in row:
            return row["q3"] - row["q1"]
        held = ", ".join(sorted(row)) or "none"
        raise MissingStatistic(feature, stat, f"not in the profile (it holds: {held}); percentiles cannot be computed from a profile")

    def to_dict(self) -> dict[str, dict[str, float]]:
        return {f: dict(r) for f, r in self._profile.items()}


def _is_profile_frame(df: pd.DataFrame) -> bool:
    cols = [normalize_stat_name(c) for c in df.columns]
    return len(cols) > 0 and all(c is not None for c in cols)


def profile_from_frame(df: pd.DataFrame) -> dict[str, dict[str, float]]:
    """A profile-shaped DataFrame (index feature, columns stats) as a dict.

    Also accepts ``df.describe()`` output (stats as the index, features as columns) by transposing it;
    a ``feature`` column is used as the index when present.
    """
    if "feature" in df.columns:
        df = df.set_index("feature")
    if not _is_profile_frame(df):
        if len(df.index) and all(normalize_stat_name(i) is not None for i in df.index):
            df = df.T
        else:
            raise TypeError(
                "not a profile: expected one row per feature and statistic columns "
                f"({', '.join(DEFAULT_STATS)}; 25%/50%/75% accepted); got columns {list(df.columns)[:8]}. "
                "For raw data, pass no stats (they are computed from the data) or use compute_stats()."
            )
    return {str(f): {str(k): v for k, v in row.items()} for f, row in df.to_dict(orient="index").items()}


def load_profile(source: Union[str, Path, pd.DataFrame, Mapping]) -> ProfileStatistics:
    """A profile from a dict, a profile-shaped DataFrame, or a CSV/JSON/YAML file."""
    if isinstance(source, ProfileStatistics):
        return source
    if isinstance(source, pd.DataFrame):
        return ProfileStatistics(profile_from_frame(source))
    if isinstance(source, Mapping):
        return ProfileStatistics(source)
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return ProfileStatistics(json.loads(path.read_text()))
    if suffix in (".yaml", ".yml"):
        import yaml

        return ProfileStatistics(yaml.safe_load(path.read_text()))
    if suffix == ".parquet":
        return ProfileStatistics(profile_from_frame(pd.read_parquet(path)))
    frame = pd.read_csv(path)
    if "feature" not in frame.columns:
        frame = frame.set_index(frame.columns[0])
    return ProfileStatistics(profile_from_frame(frame))


def as_statistics(source) -> Statistics:
    """A :class:`Statistics` from a Statistics, profile dict, profile DataFrame or profile file path.

    Raw data is not accepted here (a DataFrame of flows is not a profile): use :class:`DataStatistics`
    or :func:`compute_stats` for that.
    """
    if isinstance(source, Statistics):
        return source
    return load_profile(source)


def compute_stats(
    df: Union[pd.DataFrame, Mapping[str, np.ndarray]],
    features: Optional[Iterable[str]] = None,
    needed: Union[None, Iterable[str], Mapping[str, Iterable[str]]] = None,
) -> dict[str, dict[str, float]]:
    """``{feature: {stat: value}}`` for local data, describe()-compatible.

    ``features`` defaults to every numeric column; ``needed`` is a list of statistics for all features
    (any of ``count mean std min max median q1 q3 iqr pNN``), a mapping ``{feature: stats}`` (e.g. a
    pack's :meth:`~flamenco_core.labeling.spec.LFPack.needed_stats`), or ``None`` for
    :data:`DEFAULT_STATS`.
    """
    if features is None:
        if isinstance(df, pd.DataFrame):
            features = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c].dtype)]
        else:
            features = list(df)
    features = list(features)
    if needed is None or not isinstance(needed, Mapping):
        stats = list(DEFAULT_STATS if needed is None else needed)
        wanted = {f: stats for f in features}
    else:
        wanted = {f: list(needed.get(f, ())) for f in features}
    out: dict[str, dict[str, float]] = {}
    source = DataStatistics(df)
    for feature, stats in wanted.items():
        canon = []
        for s in stats:
            c = canonical_stat(s) or normalize_stat_name(s)
            if c is None:
                raise ValueError(f"unknown statistic {s!r} (allowed: {', '.join(BASE_STATS)}, pNN)")
            canon.append(c)
        source.prefetch({feature: canon})
        out[feature] = {c: source.get(feature, c) for c in canon}
    return out
