"""Ground truth for flow records: a label column mapped to classes, or alert windows joined to flows;
see docs/preprocess.md, ``ground_truth.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flamenco_core.errors import FlamencoError

#: The two classes of the flow path, in pack order (index = class).
FLOW_CLASSES = ("benign", "attack")

#: CIC-DDoS2019's text labels of normal traffic (compared case-insensitively, whitespace stripped).
CIC_BENIGN_LABELS = ("BENIGN",)

#: Accepted spellings of alert-window columns.
WINDOW_COLUMNS = {
    "start": ("start", "begin", "start_time", "from"),
    "end": ("end", "stop", "end_time", "to"),
    "target": ("target", "dst", "dst_ip", "destination", "victim"),
    "port": ("port", "dst_port", "target_port"),
}
CLOSED = ("both", "left")


class AlertWindowError(FlamencoError, ValueError):
    """An alert-windows file or frame that cannot be used (unusable input, exit 1); the message names the
    source and row."""


@dataclass
class GroundTruth:
    """Labels (class names; index = the input's index; NA = no label) and a ``report`` of counts.
    ``windows`` (alert windows only) lists each window with the number of flows it matched."""

    labels: pd.Series
    report: dict[str, Any]
    windows: Optional[pd.DataFrame] = field(default=None, repr=False)


# ----------------------------------------------------------------------------------------------------
# label column


def find_column(df: pd.DataFrame, name: str) -> str:
    """The column of ``df`` named ``name``, ignoring case and surrounding spaces (``KeyError`` if none)."""
    if name in df.columns:
        return name
    # CIC CSVs write " Label" with a leading space
    stripped = {str(c).strip(): c for c in df.columns}
    if name.strip() in stripped:
        return stripped[name.strip()]
    lower = {str(c).strip().lower(): c for c in df.columns}
    if name.strip().lower() in lower:
        return lower[name.strip().lower()]
    raise KeyError(f"no label column {name!r} (columns: {list(df.columns)[:10]}...)")


def labels_from_column(
    df: pd.DataFrame,
    column: str = "label",
    *,
    mapping: Optional[Mapping[str, str]] = None,
    default: Optional[str] = "attack",
    classes: Sequence[str] = FLOW_CLASSES,
) -> GroundTruth:
    """Classes from a text label column.

    ``mapping`` maps raw labels to classes (default ``{"BENIGN": "benign"}``); raw labels are compared
    with whitespace stripped and case-insensitively. Labels not in ``mapping`` get ``default``
    (``"attack"``: CIC-DDoS2019 names each attack, all of them attacks); with ``default=None`` an unknown
    label raises ``ValueError`` listing the unknown labels and their counts (issue 5: a label column with
    unknown classes). A raw label may also already be a class name (``benign``/``attack``). Blank or
    missing labels stay NA and are counted as ``unlabeled``. Mapped classes must be in ``classes``.

    The report holds ``counts`` per class, ``raw_counts`` per raw label, ``defaulted`` (raw labels that
    took the default) and ``unlabeled``.
    """
    col = find_column(df, column)
    classes = list(classes)
    mapping = dict(mapping) if mapping is not None else {b: classes[0] for b in CIC_BENIGN_LABELS}
    norm_map = {str(k).strip().lower(): v for k, v in mapping.items()}
    for c in classes:
        norm_map.setdefault(c.lower(), c)
    bad = sorted({v for v in norm_map.values() if v not in classes})
    if bad or (default is not None and default not in classes):
        raise ValueError(f"mapping targets {bad or [default]} are not classes {classes}")
    raw = df[col]
    text = raw.astype("string").str.strip()
    text = text.mask(text == "")
    codes, uniques = pd.factorize(text, use_na_sentinel=True)
    mapped: list[Any] = []
    defaulted: list[str] = []
    unknown: list[str] = []
    for u in uniques:
        cls = norm_map.get(str(u).lower())
        if cls is None:
            if default is None:
                unknown.append(str(u))
            else:
                defaulted.append(str(u))
            cls = default
        mapped.append(cls)
    counts_raw = np.bincount(codes[codes >= 0], minlength=len(uniques)) if len(uniques) else np.zeros(0, int)
    raw_counts = {str(u): int(n) for u, n in zip(uniques, counts_raw)}
    if unknown:
        listed = ", ".join(f"{u!r} ({raw_counts[u]} rows)" for u in unknown[:10])
        raise ValueError(f"label column {col!r} holds labels with no class: {listed}; add them to the mapping "
                         f"or set a default class")
    lookup = np.array(mapped + [None], dtype=object)  # NA sentinel -1 -> the last slot
    values = lookup[codes]
    labels = pd.Series(pd.array(values, dtype="string"), index=df.index, name="label")
    counts = {c: int((labels == c).sum()) for c in classes}
    report = {
        "method": "column",
        "column": str(col),
        "counts": counts,
        "raw_counts": raw_counts,
        "defaulted": {u: raw_counts[u] for u in defaulted},
        "unlabeled": int(labels.isna().sum()),
        "rows": int(len(df)),
    }
    return GroundTruth(labels, report)


# ----------------------------------------------------------------------------------------------------
# alert windows


def _rename_window_columns(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    lower = {str(c).strip().lower(): c for c in frame.columns}
    rename = {}
    for canon, names in WINDOW_COLUMNS.items():
        for n in names:
            if n in lower:
                rename[lower[n]] = canon
                break
    out = frame.rename(columns=rename)
    missing = [c for c in ("start", "end") if c not in out.columns]
    if missing:
        raise AlertWindowError(f"{source}: alert windows need columns start and end; missing {missing} "
                               f"(columns: {list(frame.columns)})")
    return out


_HAS_OFFSET = r"(?:Z|[+-]\d{2}:?\d{2})$"


def _to_utc(values: pd.Series, tz: str) -> pd.Series:
    """Datetimes in UTC (ns); values without an offset are read in ``tz`` (also within a column that
    mixes both), numbers are Unix epoch seconds; unparsable values become NaT."""
    if pd.api.types.is_numeric_dtype(values.dtype) and not pd.api.types.is_bool_dtype(values.dtype):
        return pd.to_datetime(values, unit="s", utc=True, errors="coerce").dt.as_unit("ns")
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        s = values
        if s.dt.tz is None:
            s = s.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        return s.dt.tz_convert("UTC").dt.as_unit("ns")
    text = values.astype("string").str.strip()
    aware = text.str.contains(_HAS_OFFSET, regex=True).fillna(False).astype(bool).to_numpy()
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns, UTC]")
    if aware.any():
        parsed = pd.to_datetime(text[aware], errors="coerce", format="mixed", utc=True)
        out[aware] = parsed.dt.as_unit("ns")
    if (~aware).any():
        parsed = pd.to_datetime(text[~aware], errors="coerce", format="mixed")
        local = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
        out[~aware] = local.dt.tz_convert("UTC").dt.as_unit("ns")
    return out


def windows_frame(
    windows: Union[pd.DataFrame, Iterable[Mapping[str, Any]]],
    source: str = "<alert windows>",
    *,
    tz: str = "UTC",
    row_offset: int = 1,
    line_offset: Optional[int] = None,
) -> pd.DataFrame:
    """Validate alert windows (a DataFrame or records) into columns ``start``, ``end`` (UTC), ``target``
    (string or NA), ``port`` (Int64 or NA) and ``row`` (1-based position in the source).

    Raises :class:`AlertWindowError` naming ``source`` and the row (and, for CSV, the line) of the first
    bad window: an unparsable or missing time, ``end`` before ``start``, a port that is not an integer
    in 0..65535.
    """
    frame = windows if isinstance(windows, pd.DataFrame) else pd.DataFrame(list(windows))
    if frame.empty:
        return pd.DataFrame({"start": pd.Series([], dtype="datetime64[ns, UTC]"),
                             "end": pd.Series([], dtype="datetime64[ns, UTC]"),
                             "target": pd.Series([], dtype="string"), "port": pd.Series([], dtype="Int64"),
                             "row": pd.Series([], dtype="int64")})
    frame = _rename_window_columns(frame.reset_index(drop=True), source)
    rows = np.arange(len(frame)) + row_offset

    def where(i: int) -> str:
        loc = f"row {rows[i]}"
        if line_offset is not None:
            loc += f" (line {i + line_offset})"
        return f"{source}: {loc}"

    start = _to_utc(frame["start"], tz)
    end = _to_utc(frame["end"], tz)
    for name, parsed in (("start", start), ("end", end)):
        bad = parsed.isna().to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise AlertWindowError(f"{where(i)}: cannot read {name} time {frame[name].iloc[i]!r}")
    backwards = (end < start).to_numpy()
    if backwards.any():
        i = int(np.argmax(backwards))
        raise AlertWindowError(f"{where(i)}: end {end.iloc[i]} is before start {start.iloc[i]}")
    if "target" in frame.columns:
        target = frame["target"].astype("string").str.strip()
        target = target.mask(target == "")
    else:
        target = pd.Series(pd.NA, index=frame.index, dtype="string")
    if "port" in frame.columns:
        raw_port = frame["port"]
        text = raw_port.astype("string").str.strip()
        blank = (text.isna() | (text == "")).fillna(True).astype(bool)
        num = pd.to_numeric(text.where(~blank), errors="coerce").astype("Float64")
        invalid = (num.isna() | (num % 1 != 0) | (num < 0) | (num > 65535)).fillna(True).astype(bool)
        bad = (~blank & invalid).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise AlertWindowError(f"{where(i)}: port {raw_port.iloc[i]!r} is not an integer in 0..65535")
        port = num.where(~blank).astype("Int64")
    else:
        port = pd.Series(pd.NA, index=frame.index, dtype="Int64")
    return pd.DataFrame({"start": start.reset_index(drop=True), "end": end.reset_index(drop=True),
                         "target": target.reset_index(drop=True), "port": port.reset_index(drop=True),
                         "row": rows})


def load_alert_windows(path: Union[str, Path], *, tz: str = "UTC") -> pd.DataFrame:
    """Read alert windows from CSV (header row; columns ``start``, ``end``, optional ``target``,
    ``port``; aliases in :data:`WINDOW_COLUMNS`) or YAML (a list of mappings, or a mapping with a
    ``windows`` or ``alerts`` list) and validate them with :func:`windows_frame`. Errors name the file and
    the row (1-based; for CSV also the file line)."""
    path = Path(path)
    if not path.is_file():
        raise AlertWindowError(f"{path}: alert-windows file not found")
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise AlertWindowError(f"{path}: not valid YAML: {exc}") from None
        if isinstance(data, Mapping):
            data = data.get("windows", data.get("alerts"))
        if data is None:
            data = []
        if not isinstance(data, list) or not all(isinstance(d, Mapping) for d in data):
            raise AlertWindowError(f"{path}: expected a list of windows (mappings with start, end, ...)")
        return windows_frame(data, str(path), tz=tz)
    try:
        # strings, so that times and ports are parsed (and reported) by windows_frame
        frame = pd.read_csv(path, dtype=str, skipinitialspace=True, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise AlertWindowError(f"{path}: cannot read CSV: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return windows_frame(frame, str(path), tz=tz, line_offset=2)


def _ns(values: pd.Series) -> np.ndarray:
    """UTC nanoseconds since the epoch of a tz-aware datetime Series without NaT."""
    return pd.DatetimeIndex(values).as_unit("ns").asi8


def _join_kind(
    rank_f: np.ndarray, key_f: np.ndarray, rank_s: np.ndarray, rank_e: np.ndarray, key_w: np.ndarray,
    n_ranks: int, closed: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Flows in any window, and flows per window, for windows that all use the same key columns.

    Times are ranks (equal times share a rank) and keys dense codes, so ``key * n_ranks + rank`` is one
    sortable int64 in which each key owns a disjoint range: one searchsorted then joins flows to the
    windows of their own key. Overlapping windows need no merging: a flow is inside some window iff the
    running maximum end of the windows starting at or before it reaches it (windows of lower keys end
    below the flow's key range, so they never do).
    """
    cf = key_f * n_ranks + rank_f
    cs = key_w * n_ranks + rank_s
    ce = key_w * n_ranks + rank_e
    order = np.argsort(cs, kind="stable")
    reach = np.maximum.accumulate(ce[order])
    i = np.searchsorted(cs[order], cf, side="right") - 1
    last_reach = reach[np.maximum(i, 0)]
    inside = (i >= 0) & ((cf <= last_reach) if closed == "both" else (cf < last_reach))
    cf_sorted = np.sort(cf)
    per_window = (np.searchsorted(cf_sorted, ce, side="right" if closed == "both" else "left")
                  - np.searchsorted(cf_sorted, cs, side="left"))
    return inside, np.maximum(per_window, 0)


def labels_from_alerts(
    df: pd.DataFrame,
    windows: Union[str, Path, pd.DataFrame, Iterable[Mapping[str, Any]]],
    *,
    time_col: str = "timestamp",
    target_col: str = "dst",
    port_col: str = "dst_port",
    positive: str = "attack",
    negative: str = "benign",
    closed: str = "both",
    tz: str = "UTC",
) -> GroundTruth:
    """Label flows by alert windows: ``positive`` when the flow's ``time_col`` (first-seen time) is in
    a window (``closed="both"``: ``start <= t <= end``; ``"left"``: ``start <= t < end``) and, where the
    window gives them, ``target_col == target`` and ``port_col == port``; ``negative`` otherwise.

    ``windows`` is a file (:func:`load_alert_windows`), a DataFrame or records. Overlapping windows are
    fine. Flows without a time get NA. The report counts flows matched and unmatched, windows that
    matched at least one flow and those that matched none (listed by row: often a time-zone or clock
    mismatch); :attr:`GroundTruth.windows` gives every window's flow count.
    """
    if closed not in CLOSED:
        raise ValueError(f"closed={closed!r}; choose one of {', '.join(CLOSED)}")
    source = str(windows) if isinstance(windows, (str, Path)) else "<alert windows>"
    win = load_alert_windows(windows, tz=tz) if isinstance(windows, (str, Path)) else windows_frame(windows, tz=tz)
    if time_col not in df.columns:
        raise KeyError(f"flows have no {time_col!r} column to join alert windows on")
    has_target = win["target"].notna().to_numpy()
    has_port = win["port"].notna().to_numpy()
    for needed, col, what in ((has_target.any(), target_col, "target"), (has_port.any(), port_col, "port")):
        if needed and col not in df.columns:
            raise KeyError(f"{source}: windows give a {what} but the flows have no {col!r} column")

    n, m = len(df), len(win)
    t_series = _to_utc(df[time_col].reset_index(drop=True), tz)
    t_ok = t_series.notna().to_numpy()
    t_ns = _ns(t_series[t_ok])
    # one rank scale for flow times and window bounds: equal instants get equal ranks, so the closed /
    # half-open comparisons on ranks are the comparisons on times
    uniq, inv = np.unique(np.concatenate([t_ns, _ns(win["start"]), _ns(win["end"])]), return_inverse=True)
    n_ranks = int(uniq.size) + 1
    k = int(t_ok.sum())
    rank_f, rank_s, rank_e = inv[:k], inv[k:k + m], inv[k + m:]
    # targets and ports as joint integer codes (-1: absent)
    if has_target.any():
        flow_target = df[target_col].astype("string").str.strip().reset_index(drop=True)[t_ok]
        codes, _ = pd.factorize(pd.concat([flow_target, win["target"]], ignore_index=True), use_na_sentinel=True)
        f_tgt, w_tgt = codes[:k], codes[k:]
    else:
        f_tgt, w_tgt = np.full(k, -1), np.full(m, -1)
    if has_port.any():
        f_port = pd.to_numeric(df[port_col], errors="coerce").reset_index(drop=True)[t_ok].fillna(-1).to_numpy(np.int64)
        w_port = win["port"].fillna(-1).to_numpy(np.int64)
    else:
        f_port, w_port = np.full(k, -1), np.full(m, -1)

    matched_ok = np.zeros(k, dtype=bool)
    window_flows = np.zeros(m, dtype=np.int64)
    for use_tgt in (False, True):
        for use_port in (False, True):
            kind = (has_target == use_tgt) & (has_port == use_port)
            if not kind.any():
                continue
            eligible = np.ones(k, dtype=bool)
            if use_tgt:
                eligible &= f_tgt >= 0
            if use_port:
                eligible &= f_port >= 0
            # key = (target, port) of the columns this kind uses, as one int64 (ports < 65536), then
            # densified (hash-based factorize, O(n)) so that key * n_ranks stays far from overflow
            fk = (f_tgt + 1) * 65537 * use_tgt + (f_port + 1) * use_port
            wk = (w_tgt[kind] + 1) * 65537 * use_tgt + (w_port[kind] + 1) * use_port
            dense, _ = pd.factorize(np.concatenate([fk[eligible], wk]).astype(np.int64))
            dense = dense.astype(np.int64)
            n_el = int(eligible.sum())
            inside, per_window = _join_kind(rank_f[eligible], dense[:n_el], rank_s[kind], rank_e[kind],
                                            dense[n_el:], n_ranks, closed)
            matched_ok[np.flatnonzero(eligible)[inside]] = True
            window_flows[kind] = per_window

    matched = np.zeros(n, dtype=bool)
    matched[np.flatnonzero(t_ok)] = matched_ok
    labels = pd.Series(np.where(matched, positive, negative), dtype="string", name="label")
    labels[~t_ok] = pd.NA
    labels.index = df.index
    per_window = win.assign(flows=window_flows)
    unmatched_rows = per_window.loc[per_window["flows"] == 0, "row"].tolist()
    report = {
        "method": "alerts",
        "source": source,
        "closed": closed,
        "rows": int(n),
        "counts": {negative: int((labels == negative).sum()), positive: int((labels == positive).sum())},
        "flows_matched": int(matched.sum()),
        "flows_unmatched": int(k - matched.sum()),
        "flows_without_time": int(n - k),
        "windows": int(m),
        "windows_matched": int((window_flows > 0).sum()),
        "windows_unmatched": len(unmatched_rows),
        "unmatched_window_rows": unmatched_rows[:100],
    }
    return GroundTruth(labels, report, per_window)


# ----------------------------------------------------------------------------------------------------
# dispatch


def ground_truth(
    df: pd.DataFrame,
    *,
    column: Optional[str] = None,
    alerts: Union[None, str, Path, pd.DataFrame, Iterable[Mapping[str, Any]]] = None,
    **options: Any,
) -> GroundTruth:
    """Ground truth from ``alerts`` (:func:`labels_from_alerts`) when given, else from the label
    ``column`` (:func:`labels_from_column`, default ``"label"``); ``options`` go to that function."""
    if alerts is not None:
        if column is not None:
            raise ValueError("give either a label column or alert windows, not both")
        return labels_from_alerts(df, alerts, **options)
    return labels_from_column(df, column or "label", **options)
