"""Modality of an RTT distribution, and splitting a multimodal series into unimodal subsets.

Definitions and design notes: ``docs/preprocess.md``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

DEFAULT_MAX_POINTS = 20_000
MIN_GRID, MAX_GRID = 512, 1 << 18
#: Largest points x grid product evaluated exactly; larger ones use binned FFT evaluation.
EXACT_LIMIT = 4_000_000
DEFAULT_MIN_SUBSET = 30


def _label(n_modes: int) -> str:
    return "unimodal" if n_modes <= 1 else "bimodal" if n_modes == 2 else "multimodal"


@dataclass(frozen=True, eq=False)
class ModalityResult:
    """What :func:`detect_modes` found.

    ``peaks``: ``(x, density)`` per mode, ascending in x (density NaN for a constant series); ``valleys``: split points (len ``n_modes - 1``),
    ascending; ``grid``/``density``: the evaluated KDE (empty for a constant series); ``n_points``: finite
    values seen; ``n_used``: values the KDE was fitted on (after subsampling); ``bandwidth``: the kernel
    standard deviation in ms; ``note``: why the result is degenerate, if it is.
    """

    n_modes: int
    peaks: tuple[tuple[float, float], ...]
    valleys: tuple[float, ...]
    grid: np.ndarray = field(repr=False)
    density: np.ndarray = field(repr=False)
    n_points: int = 0
    n_used: int = 0
    bandwidth: float | None = None
    min_height: float = 0.10
    note: str | None = None

    @property
    def label(self) -> str:
        """``unimodal``, ``bimodal`` or ``multimodal``."""
        return _label(self.n_modes)

    def to_dict(self) -> dict:
        """JSON-friendly summary (no grid) for reports and run parameters."""
        return {
            "label": self.label,
            "n_modes": self.n_modes,
            "peaks": [[x, h if np.isfinite(h) else None] for x, h in self.peaks],
            "valleys": list(self.valleys),
            "n_points": self.n_points,
            "n_used": self.n_used,
            "bandwidth": self.bandwidth,
            "min_height": self.min_height,
            "note": self.note,
        }


def detect_modes(
    rtt,
    min_height: float = 0.10,
    bw_method=None,
    grid: int | np.ndarray | Literal["auto"] = "auto",
    *,
    max_points: int = DEFAULT_MAX_POINTS,
    seed: int = 0,
) -> ModalityResult:
    """Modes of the RTT distribution of ``rtt`` (array-like; non-finite values are ignored).

    ``min_height``: a peak counts as a mode when its density is at least this fraction of the highest
    peak's. ``bw_method``: passed to ``gaussian_kde`` (``None`` = Scott's rule, ``"scott"``,
    ``"silverman"``, a factor or a callable), or ``"robust"`` (see module docstring). ``grid``: number of
    evaluation points, explicit x values, or ``"auto"`` (see module docstring). ``max_points``/``seed``:
    deterministic subsampling of large series.
    """
    from scipy.signal import find_peaks
    from scipy.stats import gaussian_kde

    if not 0.0 <= min_height <= 1.0:
        raise ValueError(f"min_height must be in [0, 1], got {min_height}")
    x = np.asarray(rtt, dtype="float64").ravel()
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        raise ValueError("detect_modes needs at least one finite RTT")
    empty = np.zeros(0)
    if np.ptp(x) == 0:
        return ModalityResult(1, ((float(x[0]), float("nan")),), (), empty, empty, n, n, None, min_height,
                              note=f"constant series ({n} points at {x[0]:g} ms): KDE undefined, treated as unimodal")
    used = x
    if n > max_points:
        used = np.random.default_rng(seed).choice(x, size=max_points, replace=False)
    if np.ptp(used) == 0:
        # Subsampling kept only one distinct value: the rest is a negligible minority.
        v = float(np.median(x))
        return ModalityResult(1, ((v, float("nan")),), (), empty, empty, n, used.size, None, min_height,
                              note="fewer than 2 distinct values in the subsample: treated as unimodal")
    try:
        robust = isinstance(bw_method, str) and bw_method == "robust"
        kde = gaussian_kde(used, bw_method=_robust_factor if robust else bw_method)
    except np.linalg.LinAlgError as exc:
        v = float(np.median(x))
        return ModalityResult(1, ((v, float("nan")),), (), empty, empty, n, used.size, None, min_height,
                              note=f"KDE failed ({exc}): treated as unimodal")
    bw = float(np.sqrt(kde.covariance[0, 0]))
    if isinstance(grid, str):
        if grid != "auto":
            raise ValueError(f"grid must be an int, an array or 'auto', got {grid!r}")
        lo, hi = float(x.min()) - 3 * bw, float(x.max()) + 3 * bw
        size = int(np.clip(np.ceil((hi - lo) / (bw / 5)), MIN_GRID, MAX_GRID))
        xs = np.linspace(lo, hi, size)
    elif np.ndim(grid) == 0:
        xs = np.linspace(float(x.min()) - 3 * bw, float(x.max()) + 3 * bw, int(grid))
    else:
        xs = np.sort(np.asarray(grid, dtype="float64"))
    uniform = not (np.ndim(grid) == 1 and not isinstance(grid, str))
    fine = xs.size > 1 and (xs[-1] - xs[0]) / (xs.size - 1) <= bw / 4  # binning error stays ~1e-3
    # An auto grid capped at MAX_GRID (far outliers) is binned anyway: exact evaluation would cost minutes.
    if uniform and (fine or isinstance(grid, str)) and used.size * xs.size > EXACT_LIMIT:
        dens = _binned_density(used, xs, bw)
    else:
        dens = kde(xs)
    top = float(dens.max())
    # Plateaus (flat tops) count once: find_peaks reports their middle.
    idx, _ = find_peaks(dens, height=min_height * top if top > 0 else None)
    if idx.size == 0:
        idx = np.array([int(np.argmax(dens))])
    valleys = tuple(float(xs[a + int(np.argmin(dens[a : b + 1]))]) for a, b in zip(idx[:-1], idx[1:]))
    peaks = tuple((float(xs[i]), float(dens[i])) for i in idx)
    return ModalityResult(len(peaks), peaks, valleys, xs, dens, n, int(used.size), bw, min_height)


def _robust_factor(kde) -> float:
    # gaussian_kde wants the bandwidth as a factor of the data's std: Silverman's 0.9 * A * n^(-1/5)
    # with A = min(std, IQR / 1.34), divided by std.
    x = kde.dataset[0]
    sd = float(np.std(x, ddof=1))
    q1, q3 = np.percentile(x, [25, 75])
    a = min(sd, (q3 - q1) / 1.34) if q3 > q1 else sd
    return 0.9 * a * x.size ** -0.2 / sd


def _binned_density(x: np.ndarray, xs: np.ndarray, bw: float) -> np.ndarray:
    """Gaussian KDE of ``x`` on the uniform grid ``xs``: linear binning, then FFT convolution."""
    from scipy.signal import fftconvolve

    step = (xs[-1] - xs[0]) / (xs.size - 1)
    pos = (x - xs[0]) / step
    left = np.clip(np.floor(pos).astype(np.int64), 0, xs.size - 2)
    frac = np.clip(pos - left, 0.0, 1.0)
    counts = np.bincount(left, weights=1.0 - frac, minlength=xs.size) + np.bincount(
        left + 1, weights=frac, minlength=xs.size
    )
    half = int(min(np.ceil(6 * bw / step), xs.size))
    offsets = np.arange(-half, half + 1) * step
    kernel = np.exp(-0.5 * (offsets / bw) ** 2)
    kernel /= kernel.sum() * step  # unit mass even when the kernel is narrow for the grid
    dens = fftconvolve(counts[: xs.size], kernel, mode="same") / x.size
    return np.maximum(dens, 0.0)  # FFT round-off can dip a hair below 0 in empty regions


@dataclass(frozen=True, eq=False)
class ModeSplit:
    """Unimodal subsets of one series.

    ``subsets``: frames in RTT order, each in time order with the original index and a ``subset`` column
    (0, 1, ... after merging/skipping); ``outcomes``: one record per RTT interval of the KDE split with
    ``interval`` (lo, hi], ``rows``, ``status`` (``ok``, ``merged`` or ``skipped``), ``subset`` (the id it
    ended up in, ``None`` when skipped) and ``reason``; ``bounds``: the (lo, hi] RTT interval of each
    final subset.
    """

    subsets: list[pd.DataFrame]
    outcomes: list[dict]
    bounds: list[tuple[float, float]]

    @property
    def frame(self) -> pd.DataFrame:
        """All kept rows, one frame in time order with its ``subset`` column."""
        if not self.subsets:
            return pd.DataFrame()
        return _time_sorted(pd.concat(self.subsets))


def _time_sorted(df: pd.DataFrame, time_col: str | None = "timestamp") -> pd.DataFrame:
    return df.sort_values(time_col, kind="stable") if time_col and time_col in df.columns else df


def split_by_modes(
    df: pd.DataFrame,
    result: ModalityResult,
    *,
    min_subset: int = DEFAULT_MIN_SUBSET,
    tiny: Literal["merge", "skip"] = "merge",
    feature: str = "rtt_ms",
    time_col: str | None = "timestamp",
) -> ModeSplit:
    """Cut ``df`` at ``result.valleys`` into subsets ``(-inf, v0], (v0, v1], ..., (v_last, inf)``.

    A subset with fewer than ``min_subset`` rows is merged into its neighbour (``tiny="merge"``, default)
    or dropped (``tiny="skip"``); see the module docstring. A single subset is kept however small (there
    is nothing to merge it into; later steps record their own outcome). Non-finite ``feature`` values
    raise ``ValueError`` (cleaning removes them).
    """
    if tiny not in ("merge", "skip"):
        raise ValueError(f"tiny must be 'merge' or 'skip', got {tiny!r}")
    x = pd.to_numeric(df[feature]).to_numpy(dtype="float64")
    if not np.isfinite(x).all():
        raise ValueError(f"{feature!r} has non-finite values; clean them before splitting by modes")
    cuts = np.asarray(result.valleys, dtype="float64")
    which = np.searchsorted(cuts, x, side="left")  # x == v_i goes to the lower interval, as (lo, hi]
    edges = np.concatenate([[-np.inf], cuts, [np.inf]])
    k = cuts.size + 1
    counts = np.bincount(which, minlength=k)
    # Separation at each valley: the KDE density there (higher = less separated).
    if cuts.size and result.grid.size:
        sep = np.interp(cuts, result.grid, result.density)
    else:
        sep = np.zeros(cuts.size)
    # Groups of original intervals: merging joins adjacent groups.
    groups: list[list[int]] = [[i] for i in range(k)]
    gcount = [int(c) for c in counts]
    records = [
        {"interval": (float(edges[i]), float(edges[i + 1])), "rows": int(counts[i]), "status": "ok", "reason": None}
        for i in range(k)
    ]
    if tiny == "merge":
        while len(groups) > 1:
            small = [g for g in range(len(groups)) if gcount[g] < min_subset]
            if not small:
                break
            g = min(small, key=lambda j: (gcount[j], j))
            # Boundary valley between group j and j+1 is the valley after group j's last interval.
            cand = []
            if g > 0:
                cand.append((sep[groups[g][0] - 1], gcount[g - 1], g - 1))
            if g < len(groups) - 1:
                cand.append((sep[groups[g][-1]], gcount[g + 1], g + 1))
            target = max(cand)[2]
            for i in groups[g]:
                if records[i]["status"] == "ok":
                    records[i]["status"] = "merged"
                    records[i]["reason"] = f"{gcount[g]} rows < min_subset {min_subset}: merged into its neighbour"
            lo, hi = sorted((g, target))
            groups[lo] = groups[lo] + groups[hi]
            gcount[lo] += gcount[hi]
            del groups[hi], gcount[hi]
        kept = groups
    else:
        kept = []
        for g in groups:
            if counts[g[0]] < min_subset and k > 1:
                for i in g:
                    records[i]["status"] = "skipped"
                    records[i]["reason"] = f"{int(counts[i])} rows < min_subset {min_subset}: skipped"
            else:
                kept.append(g)
        if not kept:  # every interval tiny: keeping nothing would lose the series, keep the largest
            big = int(np.argmax(counts))
            kept = [[big]]
            records[big].update(status="ok", reason=None)
    subsets, bounds = [], []
    for sid, g in enumerate(kept):
        mask = np.isin(which, g)
        sub = df.loc[mask].copy()
        sub["subset"] = sid
        subsets.append(_time_sorted(sub, time_col))
        bounds.append((float(edges[g[0]]), float(edges[g[-1] + 1])))
        for i in g:
            records[i]["subset"] = sid
    for r in records:
        r.setdefault("subset", None)
    return ModeSplit(subsets, records, bounds)


def plot_modality(rtt, result: ModalityResult, path, title: str | None = None) -> Path:
    """Save a PNG of the RTT histogram, the KDE, its peaks and the split valleys; returns the path.

    Uses matplotlib's object API on an Agg canvas (no pyplot, no global backend state), so it is safe in
    worker threads and headless runs.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = np.asarray(rtt, dtype="float64").ravel()
    x = x[np.isfinite(x)]
    fig = Figure(figsize=(7, 4), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    if x.size:
        ax.hist(x, bins=min(100, max(10, int(np.sqrt(x.size)))), density=True, color="0.85", label="RTTs")
    if result.grid.size:
        ax.plot(result.grid, result.density, color="C0", lw=1.5, label="KDE")
        top = max(h for _, h in result.peaks)
        ax.axhline(result.min_height * top, color="0.5", ls=":", lw=1, label=f"min height ({result.min_height:.0%})")
        ax.plot([p for p, _ in result.peaks], [h for _, h in result.peaks], "v", color="C3", ms=8, label="peaks")
    for i, v in enumerate(result.valleys):
        ax.axvline(v, color="C2", ls="--", lw=1.2, label="split points" if i == 0 else None)
    ax.set_xlabel("RTT (ms)")
    ax.set_ylabel("density")
    ax.set_title(title or f"{result.label} ({result.n_modes} mode{'s' if result.n_modes != 1 else ''})")
    if result.note:
        ax.text(0.01, 0.98, result.note, transform=ax.transAxes, va="top", fontsize=8, wrap=True)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out
