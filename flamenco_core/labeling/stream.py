"""Labeling at dump scale: a Parquet dataset in, a label matrix and labels out, memory bounded by a batch.

:func:`label_parquet` makes two passes (apply and count vote patterns, then label); the label model is
fitted on the patterns and their counts, which is exact. See docs/labeling.md, section ``stream.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from .constants import ABSTAIN

#: Rows per record batch read and written.
DEFAULT_BATCH_ROWS = 1 << 20
L_FILE = "label_matrix.parquet"
LABELS_FILE = "labels.parquet"


@dataclass
class StreamResult:
    """What :func:`label_parquet` did: rows, distinct vote patterns, per-LF votes, the label model used
    (name, parameters, fallback reason) and where the outputs are."""

    n_rows: int
    n_patterns: int
    votes: dict[str, int]
    label_model: str
    label_model_params: dict
    fallback_reason: str
    matrix_path: str
    labels_path: str
    label_counts: dict[str, int] = field(default_factory=dict)
    #: the applier's :class:`~flamenco_core.labeling.applier.ApplyMeta` (statistics and thresholds used)
    meta: Any = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready: every field, the applier's record as a dict."""
        from dataclasses import asdict

        d = asdict(self)
        d["meta"] = self.meta.to_dict() if self.meta is not None else None
        return d


def _pattern_model_cls():
    """Snorkel's LabelModel fitted from (patterns, counts) (built lazily: importing this module must not
    import torch)."""
    global _PATTERN_CLS
    if _PATTERN_CLS is not None:
        return _PATTERN_CLS
    from .label_model import compressed_label_model_cls, weighted_unary_overlap

    base = compressed_label_model_cls()

    class _PatternLabelModel(base):
        counts: np.ndarray

        def _set_constants(self, L: np.ndarray) -> None:
            super()._set_constants(L)
            self.n = int(self.counts.sum())  # rows, not patterns: Snorkel's mu clamp depends on it

        def _generate_O(self, L: np.ndarray, higher_order: bool = False) -> None:
            # L: the distinct patterns shifted to 0..k (fit was given them), one row each
            weighted_unary_overlap(self, L, self.counts)
            w = self.counts.astype(np.float64)
            self.coverage = ((L != 0) * w[:, None]).sum(axis=0) / self.n

    _PATTERN_CLS = _PatternLabelModel
    return _PATTERN_CLS


_PATTERN_CLS = None


def fit_on_patterns(lm, patterns: np.ndarray, counts: np.ndarray):
    """Fit label model ``lm`` (from :func:`~flamenco_core.labeling.label_model.make_label_model`) on distinct
    vote ``patterns`` (U x m, ABSTAIN = -1) seen ``counts`` times each; returns ``lm``.

    A :class:`~flamenco_core.labeling.label_model.SnorkelLabelModel` gets the weighted fit (module
    docstring), equal to its fit on the expanded matrix; other models ignore row multiplicity in ``fit``
    (majority vote) and are fitted on the patterns as they are."""
    from .label_model import SnorkelLabelModel

    if not isinstance(lm, SnorkelLabelModel):
        return lm.fit(patterns)
    if patterns.shape[0] == 0:
        raise ValueError("cannot fit a label model on an empty label matrix")
    model = _pattern_model_cls()(cardinality=lm.cardinality, verbose=False)
    model.counts = np.asarray(counts, dtype=np.int64)
    return lm.fit_snorkel(model, patterns)


class PatternCounter:
    """Counts of distinct vote rows over batches: a dense table when (k+1)^m is small, else merged sorted
    unique codes (memory: the distinct patterns, never the rows)."""

    def __init__(self, m: int, cardinality: int) -> None:
        self.m, self.base = m, cardinality + 1
        if m * np.log2(self.base) > 62:
            raise ValueError(f"{m} LFs with {cardinality} classes do not fit one 64-bit pattern code; "
                             "label such a matrix in memory (apply_lfs + fit)")
        self.powers = self.base ** np.arange(m, dtype=np.int64)
        self.space = int(self.base) ** m
        self.dense = np.zeros(self.space, dtype=np.int64) if self.space <= 1 << 22 else None
        self.codes = np.empty(0, dtype=np.int64)
        self.counts = np.empty(0, dtype=np.int64)

    @property
    def code_dtype(self) -> np.dtype:
        """The narrowest integer type that holds every code (what :meth:`encode` returns)."""
        for t in (np.uint16, np.uint32):
            if self.space <= int(np.iinfo(t).max) + 1:
                return np.dtype(t)
        return np.dtype(np.int64)

    def encode(self, L: np.ndarray) -> np.ndarray:
        """One code per row of ``L`` (votes -1..k-1), of :attr:`code_dtype`."""
        # int32 arithmetic where the codes fit: half the memory traffic of int64 on the hot path
        work = np.int32 if self.space <= 1 << 31 else np.int64
        codes = np.zeros(L.shape[0], dtype=work)
        for j in range(self.m):  # one pass per LF keeps the temporary at n integers
            codes += (L[:, j].astype(work) + 1) * work(self.powers[j])
        return codes.astype(self.code_dtype, copy=False)

    def add(self, L: np.ndarray) -> np.ndarray:
        """Count the rows of ``L``; returns their codes (:meth:`encode`)."""
        codes = self.encode(L)
        if self.dense is not None:
            self.dense += np.bincount(codes, minlength=self.space)
            return codes
        u, c = np.unique(codes.astype(np.int64, copy=False), return_counts=True)
        allc = np.concatenate((self.codes, u))
        allk = np.concatenate((self.counts, c))
        self.codes, inv = np.unique(allc, return_inverse=True)
        self.counts = np.bincount(inv, weights=allk).astype(np.int64)
        return codes

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(sorted codes, counts, patterns U x m with votes -1..k-1)."""
        if self.dense is not None:
            codes = np.flatnonzero(self.dense).astype(np.int64)
            counts = self.dense[codes]
        else:
            codes, counts = self.codes, self.counts
        patterns = (codes[:, None] // self.powers[None, :]) % self.base - 1
        return codes, counts, patterns.astype(np.int8)


def label_parquet(
    pack,
    data: Union[str, Path],
    out_dir: Union[str, Path],
    *,
    stats: Any = None,
    label_model: str = "snorkel",
    label_model_params: Optional[dict] = None,
    seed: int = 0,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    n_jobs: int = 1,
    matrix_path: Union[str, Path, None] = None,
) -> StreamResult:
    """Apply ``pack`` to the Parquet ``data`` (file or folder), fit the label model on the distinct vote
    patterns and write ``label_matrix.parquet`` and ``labels.parquet`` (``label`` int8, ABSTAIN = -1 where
    the model abstains; ``p_<class>`` float64 per class) into ``out_dir``, row order as in ``data``.

    Memory grows with ``batch_rows`` and the number of distinct patterns, not with rows (module docstring);
    a first statistics pass (no ``stats``) holds one needed column at a time. ``label_model``: ``snorkel``
    (majority vote below 3 LFs, as :func:`~flamenco_core.labeling.label_model.make_label_model`) or
    ``majority``. ``matrix_path``: write the label matrix there instead of ``out_dir``. Deterministic for a
    given ``seed``."""
    from flamenco_core.outputs import temp_name

    from .applier import apply_lfs_parquet

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    matrix = Path(matrix_path) if matrix_path is not None else out / L_FILE
    names = list(pack.lf_names)
    k = len(pack.classes)
    counter = PatternCounter(len(names), k)
    # Each row's pattern code is spooled to a scratch file while the pack is applied, so the labels pass
    # reads 2-8 bytes a row instead of decoding the matrix twice. The call removes it, failed or not; a
    # killed run's file carries the project's temporary name, which the next run's output lock sweeps.
    spool = out / temp_name("codes")
    try:
        with open(spool, "xb") as fh:
            _, meta = apply_lfs_parquet(pack, data, stats=stats, batch_rows=batch_rows, out=matrix, n_jobs=n_jobs,
                                        return_meta=True, on_batch=lambda Lb: fh.write(counter.add(Lb).tobytes()))
        return _write_labels(pack, counter, spool, out, meta, label_model, label_model_params, seed, batch_rows,
                             matrix)
    finally:
        spool.unlink(missing_ok=True)


def _write_labels(pack, counter: PatternCounter, spool: Path, out: Path, meta, label_model, label_model_params, seed,
                  batch_rows, matrix) -> StreamResult:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from .label_model import make_label_model
    from .parquet_apply import BackgroundWriter

    names = list(pack.lf_names)
    k = len(pack.classes)
    n_rows = int(meta.n_rows)
    codes, counts, patterns = counter.result()

    lm = make_label_model(label_model, n_lfs=len(names), cardinality=k, seed=seed, **(label_model_params or {}))
    if n_rows:
        fit_on_patterns(lm, patterns, counts)
        # each distinct pattern is scored once; rows get their pattern's answer
        p_pat = lm.predict_proba(patterns)
        y_pat = lm.predict(patterns).astype(np.int8)
    else:
        p_pat = np.empty((0, k))
        y_pat = np.empty(0, dtype=np.int8)

    schema = pa.schema(
        [pa.field("label", pa.int8(), nullable=False)]
        + [pa.field(f"p_{c}", pa.float64(), nullable=False) for c in pack.classes],
        metadata={b"flamenco.pack": pack.name.encode(), b"flamenco.pack_hash": pack.content_hash.encode(),
                  b"flamenco.label_model": lm.name.encode()},
    )
    label_counts = np.zeros(k + 1, dtype=np.int64)  # index 0: abstain
    labels_path = out / LABELS_FILE
    lut = None
    if counter.dense is not None:  # code -> pattern index by one gather instead of a binary search
        lut = np.zeros(counter.space, dtype=np.int64)
        lut[codes] = np.arange(len(codes))
    with pq.ParquetWriter(labels_path, schema) as writer, open(spool, "rb") as fh:
        with BackgroundWriter(writer) as bg:
            while (c := np.fromfile(fh, dtype=counter.code_dtype, count=batch_rows)).size:
                idx = lut[c] if lut is not None else np.searchsorted(codes, c)
                y = y_pat[idx]
                label_counts += np.bincount(y.astype(np.int64) + 1, minlength=k + 1)
                cols = [pa.array(y)] + [pa.array(p_pat[idx, j]) for j in range(k)]
                bg.write(pa.Table.from_arrays(cols, schema=schema))
        if n_rows == 0:
            writer.write_table(schema.empty_table())
    return StreamResult(
        n_rows=n_rows,
        n_patterns=int(len(codes)),
        votes={n: int(v) for n, v in meta.votes.items()},
        label_model=lm.name,
        label_model_params=lm.get_params(),
        fallback_reason=getattr(lm, "fallback_reason", "") or "",
        matrix_path=str(matrix),
        labels_path=str(labels_path),
        label_counts={"abstain": int(label_counts[0]),
                      **{c: int(label_counts[i + 1]) for i, c in enumerate(pack.classes)}},
        meta=meta,
    )


__all__ = ["ABSTAIN", "PatternCounter", "StreamResult", "fit_on_patterns", "label_parquet"]
