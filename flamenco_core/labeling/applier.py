"""Applying LFs: declarative packs (vectorized), vectorized Python LFs and Snorkel LabelingFunctions.

The result is always Snorkel's label matrix: ``int8``, rows x LFs in pack/list order, ``ABSTAIN``
(-1) where an LF does not vote, class index otherwise. For packs it is identical to running
equivalent Snorkel ``LabelingFunction``s through ``PandasLFApplier`` (tested), at numpy speed:

* each statistic is computed once per feature (percentiles of a feature in one pass), each threshold
  expression evaluated once, before any data is touched;
* data is processed in row blocks that fit in cache; within a block each distinct condition
  (feature, op, threshold) is computed once and shared between the LFs that use it;
* no Python loop runs per row; blocks may run on threads (numpy releases the GIL).

Semantics of a condition: a NaN feature value (or a NaN threshold, e.g. ``std`` of one value) makes it
false, so the LF abstains; for ``!=`` too, although IEEE would call ``NaN != t`` true: missing data
should never cast a vote.

Data larger than memory: :func:`apply_lfs_parquet` streams Parquet record batches. Its statistics come
from a profile, or else from a first pass that reads only the needed columns, one column at a time
(8 bytes a row), and computes them exactly as the in-memory path does, so both give the same matrix.
Exact linear percentiles need every value of a column; a streaming sketch would make the matrix
depend on batch size, so it is not used. When even one column does not fit, pass a profile.
"""

from __future__ import annotations

import difflib
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .constants import ABSTAIN, LABEL_DTYPE
from .expr import Expression, SpecError, parse_expression
from .spec import LFPack
from .stats import DataStatistics, MissingStatistic, Statistics, as_statistics, column_values, stats_of_values
from flamenco_core.outputs import json_ready

#: Rows per block: masks of this many rows stay in L2 cache, which beats whole-column numpy passes.
DEFAULT_BLOCK_ROWS = 65_536
DEFAULT_BATCH_ROWS = 1_048_576

Thresholds = tuple[float, ...]


# ---------------------------------------------------------------------------------------------- Python LFs


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


# ---------------------------------------------------------------------------------------------- metadata


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


# ---------------------------------------------------------------------------------------------- compiled packs


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
                hint = difflib.get_close_matches(feature, sorted(avail), n=3)
                extra = f"; did you mean {', '.join(hint)}?" if hint else ""
                raise SpecError(f"unknown feature {feature!r}: not a column of the {where}{extra}", pack=self.pack.name, lf=lf, token=feature)

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

        if n_jobs and n_jobs > 1 and len(starts) > 1:
            with ThreadPoolExecutor(max_workers=n_jobs) as pool:
                list(pool.map(run, starts))
        else:
            for s in starts:
                run(s)
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


# ---------------------------------------------------------------------------------------------- public API


def resolved_thresholds(pack: LFPack, stats: Any) -> dict[str, dict[str, Any]]:
    """``{LF name: {condition: threshold}}`` for ``pack`` against ``stats``.

    ``stats`` is a profile (dict ``{feature: {stat: value}}``, e.g. from :func:`compute_stats`, or a
    profile-shaped DataFrame/file) or a :class:`~flamenco_core.labeling.stats.Statistics`. Conditions
    are keyed as written (``"bytes <= 0.5*p75"``); ``in``/``between`` give a list.
    """
    compiled = CompiledPack(pack)
    return compiled.thresholds_dict(compiled.resolve(as_statistics(stats)))


def pack_problems(pack: LFPack, data: Union[pd.DataFrame, Iterable[str]], where: str = "data") -> list[SpecError]:
    """Every reason ``pack`` cannot run on ``data`` (a DataFrame, or just its column names), found before
    any LF runs: a feature that is not a column (with "did you mean" hints, as :func:`apply_lfs` words
    it) and, given a DataFrame, a feature column that is not numeric. Empty when the pack fits."""
    compiled = CompiledPack(pack)
    frame = data if isinstance(data, pd.DataFrame) else None
    columns = list(frame.columns) if frame is not None else list(data)
    avail = set(columns)
    out: list[SpecError] = []
    for feature, lf in compiled.feature_users().items():
        if feature not in avail:
            hint = difflib.get_close_matches(feature, sorted(avail), n=3)
            extra = f"; did you mean {', '.join(hint)}?" if hint else ""
            out.append(SpecError(f"unknown feature {feature!r}: not a column of the {where}{extra}",
                                 pack=pack.name, lf=lf, token=feature))
        elif frame is not None:
            dt = frame[feature].dtype
            if not (pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt)):
                out.append(SpecError(f"feature {feature!r} is not numeric in the {where} (dtype {dt})",
                                     pack=pack.name, lf=lf, token=feature))
    return out


def apply_lfs(
    lfs: Union[LFPack, Sequence[Any]],
    df: pd.DataFrame,
    stats: Any = None,
    *,
    n_jobs: int = 1,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    return_meta: bool = False,
) -> Union[np.ndarray, tuple[np.ndarray, ApplyMeta]]:
    """Label ``df``: an int8 matrix, rows x LFs, in pack (or list) order.

    ``lfs`` is an :class:`LFPack`, or a list of Snorkel ``LabelingFunction``s and/or
    :class:`VectorizedLF`s. For a pack, thresholds are statistics of ``df`` unless ``stats`` gives a
    profile (dict, profile-shaped DataFrame, path, or Statistics). ``n_jobs > 1`` labels row blocks on
    threads. With ``return_meta=True`` also returns an :class:`ApplyMeta` (statistics and resolved
    thresholds used, vote counts) to record with the run.
    """
    if isinstance(lfs, LFPack):
        return _apply_pack(lfs, df, stats, n_jobs=n_jobs, block_rows=block_rows, return_meta=return_meta)
    if stats is not None:
        raise TypeError("stats apply to LF packs only; Python LFs compute their own thresholds")
    return _apply_python(list(lfs), df, n_jobs=n_jobs, return_meta=return_meta)


def _apply_pack(pack: LFPack, df: pd.DataFrame, stats: Any, *, n_jobs: int, block_rows: int, return_meta: bool):
    compiled = CompiledPack(pack)
    compiled.check_features(df.columns, "data")
    columns: dict[str, np.ndarray] = {}
    users = compiled.feature_users()
    for feature in users:
        try:
            columns[feature] = column_values(df, feature)
        except (TypeError, ValueError) as exc:
            raise SpecError(f"feature {feature!r} cannot be compared as a number: {exc}", pack=pack.name, lf=users[feature], token=feature) from None
    if stats is None:
        source: Statistics = DataStatistics(columns)
        kind = "data"
    else:
        source = as_statistics(stats)
        kind = "profile"
    resolved = compiled.resolve(source, n_jobs=n_jobs)
    L = compiled.label(columns, resolved, len(df), n_jobs=n_jobs, block_rows=block_rows)
    if not return_meta:
        return L
    meta = ApplyMeta(
        lf_names=compiled.lf_names, n_rows=len(df), pack=pack.name, pack_version=pack.version, pack_hash=pack.content_hash,
        stats_source=kind, stats=source.used(), thresholds=compiled.thresholds_dict(resolved), votes=_votes(L, compiled.lf_names),
    )
    return L, meta


def _votes(L: np.ndarray, names: list[str]) -> dict[str, int]:
    counts = (L != ABSTAIN).sum(axis=0)
    return {n: int(c) for n, c in zip(names, counts)}


def _apply_python(lfs: list[Any], df: pd.DataFrame, *, n_jobs: int, return_meta: bool):
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

    if n_jobs and n_jobs > 1 and len(vec) > 1:
        with ThreadPoolExecutor(max_workers=n_jobs) as pool:
            list(pool.map(run_vec, vec))
    else:
        for item in vec:
            run_vec(item)
    if row_lfs:
        # Row-wise LFs are arbitrary Python over a pandas row: Snorkel's own applier runs them, so they
        # see exactly the data point they were written for.
        from snorkel.labeling import PandasLFApplier

        sub = PandasLFApplier([lf for _, lf in row_lfs]).apply(df, progress_bar=False)
        for col, (j, lf) in enumerate(row_lfs):
            L[:, j] = _check_votes(lf.name, sub[:, col], n)
    if not return_meta:
        return L
    return L, ApplyMeta(lf_names=names, n_rows=n, votes=_votes(L, names))


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


# ---------------------------------------------------------------------------------------------- Parquet


def _parquet_files(path: Union[str, Path]) -> list[Path]:
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.rglob("*.parquet") if f.is_file())
        if not files:
            raise FileNotFoundError(f"no .parquet files under {p}")
        return files
    if not p.exists():
        raise FileNotFoundError(p)
    return [p]


def _as_float(col: Any, feature: str, pack: str, lf: str) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arr = pc.cast(col, pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise SpecError(f"feature {feature!r} cannot be compared as a number: {exc}", pack=pack, lf=lf, token=feature) from None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr.to_numpy(zero_copy_only=False)


def _parquet_stats(files: list[Path], compiled: CompiledPack) -> DataStatistics:
    import pyarrow.parquet as pq

    users = compiled.feature_users()
    computed: dict[str, dict[str, float]] = {}
    for feature, stats in compiled.needed_stats().items():
        # one column at a time: memory is one float64 column, not the table
        parts = [_as_float(pq.read_table(f, columns=[feature]).column(feature), feature, compiled.pack.name, users[feature]) for f in files]
        values = parts[0] if len(parts) == 1 else np.concatenate(parts)
        computed[feature] = stats_of_values(values, sorted(stats))
        del values, parts
    return DataStatistics({}, precomputed=computed)


def _iter_batches(files: list[Path], columns: list[str], batch_rows: int) -> Iterator[Any]:
    import pyarrow.parquet as pq

    for f in files:
        pf = pq.ParquetFile(f)
        yield from pf.iter_batches(batch_size=batch_rows, columns=columns)


def apply_lfs_parquet(
    pack: LFPack,
    path: Union[str, Path],
    stats: Any = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    out: Union[str, Path, None] = None,
    n_jobs: int = 1,
    *,
    block_rows: int = DEFAULT_BLOCK_ROWS,
    return_meta: bool = False,
) -> Any:
    """Apply a pack to Parquet data (a file or a folder of ``*.parquet``) batch by batch.

    Only the columns the pack reads are loaded. ``stats``: a profile, or ``None`` to compute statistics
    from the data in a first pass (one needed column at a time; exact, identical to
    :func:`apply_lfs` on the same data). With ``out`` the matrix is written there as Parquet (one int8
    column per LF, named by the LF; pack name and hash in the schema metadata) and the path is
    returned; without, the whole int8 matrix is returned. ``return_meta=True`` adds an
    :class:`ApplyMeta`.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    compiled = CompiledPack(pack)
    files = _parquet_files(path)
    for f in files:
        compiled.check_features(pq.read_schema(f).names, f"Parquet file {f.name}")
    users = compiled.feature_users()
    features = sorted(users)
    if stats is None:
        source: Statistics = _parquet_stats(files, compiled)
        kind = "data"
    else:
        source = as_statistics(stats)
        kind = "profile"
    resolved = compiled.resolve(source)
    names = compiled.lf_names
    schema = pa.schema(
        [pa.field(n, pa.int8(), nullable=False) for n in names],
        metadata={b"flamenco.pack": pack.name.encode(), b"flamenco.pack_hash": pack.content_hash.encode()},
    )
    writer = pq.ParquetWriter(str(out), schema) if out is not None else None
    parts: list[np.ndarray] = []
    votes = np.zeros(len(names), dtype=np.int64)
    n_rows = 0
    try:
        for batch in _iter_batches(files, features, batch_rows):
            cols = {f: _as_float(batch.column(f), f, pack.name, users[f]) for f in features}
            Lb = compiled.label(cols, resolved, batch.num_rows, n_jobs=n_jobs, block_rows=block_rows)
            n_rows += batch.num_rows
            votes += (Lb != ABSTAIN).sum(axis=0)
            if writer is not None:
                writer.write_table(pa.Table.from_arrays([pa.array(Lb[:, j]) for j in range(len(names))], schema=schema))
            else:
                parts.append(Lb)
        if writer is not None and n_rows == 0:
            writer.write_table(schema.empty_table())
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:
        result: Any = Path(out)
    else:
        result = np.concatenate(parts) if parts else np.empty((0, len(names)), dtype=LABEL_DTYPE)
    if not return_meta:
        return result
    meta = ApplyMeta(
        lf_names=names, n_rows=n_rows, pack=pack.name, pack_version=pack.version, pack_hash=pack.content_hash,
        stats_source=kind, stats=source.used(), thresholds=compiled.thresholds_dict(resolved),
        votes={n: int(v) for n, v in zip(names, votes)},
    )
    return result, meta


def label_matrix_frame(L: np.ndarray, names: Sequence[str]) -> pd.DataFrame:
    """The matrix as a DataFrame of int8 columns named by the LFs (the on-disk form)."""
    return pd.DataFrame({n: L[:, j] for j, n in enumerate(names)}, columns=list(names))
