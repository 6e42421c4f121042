"""Result tables of the two evaluation paths, as DataFrames, CSV and Markdown.

Definitions and design notes: ``docs/evaluation.md``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flamenco_core.evaluation.metrics import average_scores
from flamenco_core.models.baselines import BASELINE_NAMES

#: FLAMENCO's method key in per-subset score frames.
FLAMENCO = "flamenco"

#: Display names of the methods (index values stay keys, so ``table.loc["lof"]`` works).
METHOD_LABELS = {
    FLAMENCO: "FLAMENCO",
    "lof": "LOF",
    "elliptic_envelope": "Elliptic Envelope",
    "robust_covariance": "Robust Covariance",
    "isolation_forest": "Isolation Forest",
}

#: Rows of the comparison table, in order.
METHOD_ORDER = (FLAMENCO,) + tuple(BASELINE_NAMES)

#: The latency comparison's columns.
COMPARISON_METRICS = ("f1_good", "f1_noise", "f1_macro")

#: The three predictors of a combination, in the order of the prediction-difference columns.
PREDICTORS = ("lf", "cls", "tree")
_PREDICTOR_ALIASES = {
    "lf": "lf", "lfs": "lf", "label_function": "lf", "labeling_function": "lf",
    "cls": "cls", "classifier": "cls", "clf": "cls", "model": "cls", "end_model": "cls",
    "tree": "tree", "trees": "tree",
}

#: Column headings used by the Markdown writer (CSV keeps the snake_case keys).
HEADINGS = {
    "combination": "LFs",
    "lf": "LF",
    "lf_1": "LF 1",
    "lf_2": "LF 2",
    "n_lfs": "#LFs",
    "groups": "Groups",
    "features": "Features",
    "lf_f1": "LF F1",
    "cls_f1": "Classifier F1",
    "tree_f1": "Tree F1",
    "correlation": "Correlation",
    "coverage": "Coverage",
    "conflicts": "Conflicts",
    "diff_lf_cls": "LF vs classifier",
    "diff_lf_tree": "LF vs tree",
    "diff_cls_tree": "Classifier vs tree",
    "outcome": "Outcome",
    "reason": "Reason",
    "f1_good": "F1 good",
    "f1_noise": "F1 noise",
    "f1_macro": "F1 macro",
    "n_datasets": "SD pairs",
    "n_subsets": "Subsets",
    "method": "Method",
}

_LIST_SEP = " + "


# ----------------------------------------------------------------------------------------------------
# latency comparison


def scores_long(pairs: Iterable[Mapping[str, Any]], keys: Sequence[str] = ("src", "dst", "subset")) -> pd.DataFrame:
    """Flatten report records (issue 4's ``report.json`` ``pairs``: ``{src, dst, [subset], f1_good, ...,
    baselines: {lof: {f1_good, ...}, ...}}``) into one row per (record, method) with a ``method`` column
    (``flamenco`` for the record's own scores)."""
    rows = []
    for rec in pairs:
        ident = {k: rec[k] for k in keys if k in rec}
        own = {k: v for k, v in rec.items() if k not in ident and k != "baselines" and _is_number(v)}
        rows.append({**ident, "method": FLAMENCO, **own})
        for name, scores in (rec.get("baselines") or {}).items():
            rows.append({**ident, "method": name, **{k: v for k, v in (scores or {}).items() if _is_number(v)}})
    return pd.DataFrame(rows)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def comparison_table(
    scores: Union[pd.DataFrame, Iterable[Mapping[str, Any]]],
    by: Sequence[str] = ("src", "dst"),
    metrics: Sequence[str] = COMPARISON_METRICS,
    methods: Optional[Sequence[str]] = None,
) -> pd.DataFrame:
    """The latency comparison table (issue 4; the numbers behind Figures 7 and 9).

    ``scores`` is a per-subset frame (dataset keys ``by``, a ``method`` column, metric columns) or report
    records as :func:`scores_long` reads them. Rows: ``methods`` (default FLAMENCO then the four
    baselines, those present), index ``method`` with keys (display names in :data:`METHOD_LABELS`);
    columns ``metrics`` averaged per SD pair then over SD pairs (unweighted), ``n_datasets``,
    ``n_subsets``.
    """
    df = scores if isinstance(scores, pd.DataFrame) else scores_long(scores)
    if "method" not in df.columns:
        raise ValueError("per-subset scores need a 'method' column (flamenco, lof, ...)")
    missing = [m for m in metrics if m not in df.columns]
    if missing:
        raise ValueError(f"scores lack the metric columns {missing}")
    avg = average_scores(df, by=[b for b in by if b in df.columns], metrics=list(metrics), group="method")
    present = list(avg.index)
    order = list(methods) if methods is not None else [m for m in METHOD_ORDER if m in present] + [
        m for m in present if m not in METHOD_ORDER
    ]
    out = avg.reindex(order)[list(metrics) + ["n_datasets", "n_subsets"]]
    out.index.name = "method"
    out.attrs["averaging"] = avg.attrs.get("averaging")
    return out


# ----------------------------------------------------------------------------------------------------
# LF-combination records


def _as_list(v: Any) -> list:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return []
    if isinstance(v, str):
        return [p.strip() for p in v.split(_LIST_SEP.strip())] if _LIST_SEP.strip() in v else [v]
    return [str(x) for x in v]


def _predictor(name: Any) -> str:
    key = str(name).strip().lower()
    if key not in _PREDICTOR_ALIASES:
        raise ValueError(f"unknown predictor {name!r} in prediction differences (use lf, cls, tree)")
    return _PREDICTOR_ALIASES[key]


def difference_columns(diffs: Any) -> dict[str, float]:
    """``{diff_lf_cls, diff_lf_tree, diff_cls_tree}`` from a record's prediction differences.

    Accepts the matrix of :func:`~flamenco_core.evaluation.metrics.prediction_difference_matrix` (a
    DataFrame), a nested mapping ``{a: {b: value}}``, or a flat mapping with keys ``"lf_vs_cls"``,
    ``"lf-tree"``, ``("cls", "tree")``, ``"diff_lf_tree"``; names may be ``classifier``/``cls``/``lf``/
    ``tree``. Pairs not given are NaN.
    """
    out = {f"diff_{a}_{b}": math.nan for i, a in enumerate(PREDICTORS) for b in PREDICTORS[i + 1:]}
    if diffs is None:
        return out

    def put(a: Any, b: Any, v: Any) -> None:
        pa, pb = _predictor(a), _predictor(b)
        if pa == pb:
            return
        ia, ib = sorted((PREDICTORS.index(pa), PREDICTORS.index(pb)))
        out[f"diff_{PREDICTORS[ia]}_{PREDICTORS[ib]}"] = float(v) if v is not None else math.nan

    if isinstance(diffs, pd.DataFrame):
        for a in diffs.index:
            for b in diffs.columns:
                put(a, b, diffs.loc[a, b])
        return out
    for key, v in dict(diffs).items():
        if isinstance(v, Mapping):
            for b, vv in v.items():
                put(key, b, vv)
            continue
        if isinstance(key, tuple):
            a, b = key
        else:
            text = str(key)
            text = text[5:] if text.startswith("diff_") else text
            for sep in ("_vs_", " vs ", "-", "__", "_"):
                if sep in text:
                    a, b = text.split(sep, 1)
                    break
            else:
                raise ValueError(f"cannot read prediction-difference key {key!r} (use e.g. 'lf_vs_tree')")
        put(a, b, v)
    return out


def records_frame(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per LF-combination record, normalized.

    Record keys (missing ones become NaN / empty): ``lfs`` (LF names; a list, or a string joined by
    " + "), ``groups`` (the research groups whose packs the LFs come from), ``features`` (the features
    the LFs read), ``lf_f1``, ``cls_f1``, ``tree_f1``, ``correlation`` (see
    :func:`flamenco_core.preprocess.feature_selection.correlation_of`), ``coverage``, ``conflicts``,
    prediction differences under ``prediction_differences`` (or ``differences``, ``diff``; any form
    :func:`difference_columns` reads, or already flat ``diff_*`` keys), ``outcome`` (``ok``, ``skipped``,
    ``failed``) and ``reason``. Other scalar keys are kept as extra columns.

    Columns: ``combination`` (LFs joined by " + "), ``lfs``, ``n_lfs``, ``groups``, ``features`` (tuples),
    the scores, ``diff_lf_cls``, ``diff_lf_tree``, ``diff_cls_tree``, ``outcome``, ``reason``.
    """
    rows = []
    for rec in records:
        lfs = _as_list(rec.get("lfs"))
        groups = list(dict.fromkeys(_as_list(rec.get("groups"))))
        features = list(dict.fromkeys(_as_list(rec.get("features"))))
        diffs = next((rec[k] for k in ("prediction_differences", "differences", "diff") if k in rec), None)
        cols = difference_columns(diffs)
        for k in cols:
            if k in rec and rec[k] is not None:
                cols[k] = float(rec[k])
        row = {
            "combination": _LIST_SEP.join(lfs),
            "lfs": tuple(lfs),
            "n_lfs": len(lfs),
            "groups": tuple(groups),
            "features": tuple(features),
        }
        for k in ("lf_f1", "cls_f1", "tree_f1", "correlation", "coverage", "conflicts"):
            v = rec.get(k)
            row[k] = float(v) if v is not None else math.nan
        row.update(cols)
        row["outcome"] = rec.get("outcome") or ("ok" if not _failed(row) else "incomplete")
        row["reason"] = rec.get("reason") or ""
        skip = set(row) | {"prediction_differences", "differences", "diff"}
        for k, v in rec.items():
            if k not in skip and (_is_number(v) or isinstance(v, str)):
                row[k] = v
        rows.append(row)
    cols = ["combination", "lfs", "n_lfs", "groups", "features", "lf_f1", "cls_f1", "tree_f1",
            "correlation", "coverage", "conflicts", "diff_lf_cls", "diff_lf_tree", "diff_cls_tree",
            "outcome", "reason"]
    df = pd.DataFrame(rows)
    if df.empty:
        return pd.DataFrame(columns=cols)
    return df[cols + [c for c in df.columns if c not in cols]]


def _failed(row: Mapping[str, Any]) -> bool:
    return all(isinstance(row[k], float) and math.isnan(row[k]) for k in ("lf_f1", "cls_f1", "tree_f1"))


def _frame(records: Union[pd.DataFrame, Iterable[Mapping[str, Any]]]) -> pd.DataFrame:
    return records if isinstance(records, pd.DataFrame) and "n_lfs" in records.columns else records_frame(records)


def _select(df: pd.DataFrame, columns: Sequence[str], index: str) -> pd.DataFrame:
    out = df[[c for c in columns if c in df.columns]].set_index(index)
    return out


def single_lf_table(records: Union[pd.DataFrame, Iterable[Mapping[str, Any]]]) -> pd.DataFrame:
    """The **single-LF table** (paper: Table 3 for CIC-DDoS2019, Table 9 for Worf): one row per
    combination of exactly one LF, index ``lf``; columns ``groups``, ``features``, ``lf_f1``, ``cls_f1``,
    ``tree_f1``, ``coverage``, ``outcome``, ``reason``. Correlation is not a column: one feature has no
    pair."""
    df = _frame(records)
    one = df[df["n_lfs"] == 1].rename(columns={"combination": "lf"})
    return _select(one, ["lf", "groups", "features", "lf_f1", "cls_f1", "tree_f1", "coverage", "outcome", "reason"], "lf")


def pair_table(records: Union[pd.DataFrame, Iterable[Mapping[str, Any]]]) -> pd.DataFrame:
    """The **pair table** (paper: Table 4 / Table 10): one row per pair of LFs; index ``combination``;
    columns ``lf_1``, ``lf_2``, ``features``, ``correlation``, ``lf_f1``, ``cls_f1``, ``tree_f1``,
    ``coverage``, ``conflicts``, ``outcome``, ``reason``."""
    df = _frame(records)
    two = df[df["n_lfs"] == 2].copy()
    two["lf_1"] = [lfs[0] for lfs in two["lfs"]]
    two["lf_2"] = [lfs[1] for lfs in two["lfs"]]
    return _select(two, ["combination", "lf_1", "lf_2", "features", "correlation", "lf_f1", "cls_f1", "tree_f1",
                         "coverage", "conflicts", "outcome", "reason"], "combination")


def group_combination_table(
    records: Union[pd.DataFrame, Iterable[Mapping[str, Any]]], min_lfs: int = 3, across_groups: bool = True
) -> pd.DataFrame:
    """The **group-combination table** (paper: Table 5 / Table 11): combinations of ``min_lfs`` or more
    LFs, and (``across_groups``) every combination mixing LFs of more than one group, whatever its size;
    index ``combination``; columns ``groups``, ``n_lfs``, ``features``, ``correlation``, ``lf_f1``,
    ``cls_f1``, ``tree_f1``, ``coverage``, ``conflicts``, ``outcome``, ``reason``; ordered by size."""
    df = _frame(records)
    keep = df["n_lfs"] >= min_lfs
    if across_groups:
        keep |= df["groups"].map(len) > 1
    sub = df[keep].sort_values("n_lfs", kind="stable")
    return _select(sub, ["combination", "groups", "n_lfs", "features", "correlation", "lf_f1", "cls_f1", "tree_f1",
                         "coverage", "conflicts", "outcome", "reason"], "combination")


def prediction_difference_table(records: Union[pd.DataFrame, Iterable[Mapping[str, Any]]]) -> pd.DataFrame:
    """The **prediction-difference table** (paper: Table 6 / Table 12): per combination, the fraction of
    differing predictions on the 20% test sample between LF and classifier, LF and tree, classifier and
    tree (the upper triangle of each combination's symmetric matrix); index ``combination``."""
    df = _frame(records)
    return _select(df, ["combination", "n_lfs", "diff_lf_cls", "diff_lf_tree", "diff_cls_tree"], "combination")


def difference_matrix_table(matrix: pd.DataFrame) -> pd.DataFrame:
    """One combination's prediction-difference matrix with display names for LF / classifier / tree."""
    names = {"lf": "LF", "cls": "Classifier", "tree": "Tree"}

    def label(x: Any) -> str:
        try:
            return names[_predictor(x)]
        except ValueError:
            return str(x)

    out = matrix.copy()
    out.index = [label(i) for i in matrix.index]
    out.columns = [label(c) for c in matrix.columns]
    return out


def paper_tables(records: Union[pd.DataFrame, Iterable[Mapping[str, Any]]], dataset: str = "") -> dict[str, pd.DataFrame]:
    """The four flow-path tables of one dataset, keyed ``single_lf``, ``pairs``, ``group_combinations``,
    ``prediction_differences`` (prefixed ``<dataset>_`` when given); empty tables are left out."""
    df = _frame(records)
    prefix = f"{dataset}_" if dataset else ""
    tables = {
        "single_lf": single_lf_table(df),
        "pairs": pair_table(df),
        "group_combinations": group_combination_table(df),
        "prediction_differences": prediction_difference_table(df),
    }
    return {prefix + k: v for k, v in tables.items() if len(v)}


# ----------------------------------------------------------------------------------------------------
# writers


def format_cell(v: Any, floatfmt: str = ".3f", na: str = "–") -> str:
    """One table cell as text, the same in every writer (Markdown here, rich in the CLI): floats with
    ``floatfmt``; None, NaN, NA and empty lists as ``na``; lists joined with " + "; anything else ``str``."""
    if v is None:
        return na
    if isinstance(v, (tuple, list)):
        return _LIST_SEP.join(str(x) for x in v) if v else na
    if isinstance(v, (float, np.floating)):
        return na if math.isnan(v) else format(float(v), floatfmt)
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    try:
        if pd.isna(v):
            return na
    except (TypeError, ValueError):
        pass
    return str(v)


def to_markdown(
    df: pd.DataFrame,
    floatfmt: str = ".3f",
    *,
    index: bool = True,
    na: str = "–",
    headings: Optional[Mapping[str, str]] = HEADINGS,
    index_labels: Optional[Mapping[Any, str]] = None,
    pad: bool = True,
) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (written here: no ``tabulate``); the one Markdown table
    writer of the project.

    Floats use ``floatfmt``, NaN and empty lists show ``na``, lists are joined with " + ". Column
    headings are mapped through ``headings`` (snake_case keys -> the paper's wording) and index values
    through ``index_labels`` (e.g. :data:`METHOD_LABELS`). Every column is padded to its widest cell so
    the pipes line up (``pad=False``: no padding, for tables whose cells vary widely); numeric columns
    are right-aligned (``---:``). Pipes inside cells are escaped.
    """
    headings = headings or {}
    cols = list(df.columns)
    header = [headings.get(str(c), str(c)) for c in cols]
    data = [[format_cell(v, floatfmt, na) for v in row] for row in df.itertuples(index=False, name=None)]
    numeric = [pd.api.types.is_numeric_dtype(df[c].dtype) and not pd.api.types.is_bool_dtype(df[c].dtype) for c in cols]
    if index:
        name = df.index.name if df.index.name is not None else ""
        header.insert(0, headings.get(str(name), str(name)))
        labels = index_labels or {}
        for row, idx in zip(data, df.index):
            row.insert(0, labels.get(idx, format_cell(idx, floatfmt, na)))
        numeric.insert(0, False)
    header = [h.replace("|", "\\|") for h in header]
    data = [[c.replace("|", "\\|") for c in row] for row in data]
    widths = [max([3, len(h)] + [len(r[i]) for r in data]) if pad else 0 for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)) + " |"

    sep = "| " + " | ".join(("-" * (max(w, 3) - 1) + ":") if num else ("-" * max(w, 3))
                            for w, num in zip(widths, numeric)) + " |"
    return "\n".join([line(header), sep] + [line(r) for r in data]) + "\n"


def to_csv(df: pd.DataFrame, path: Union[str, Path], *, index: bool = True) -> Path:
    """Write a table as CSV (lists joined by " + ", floats at full precision); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object and out[c].map(lambda v: isinstance(v, (list, tuple))).any():
            out[c] = out[c].map(lambda v: _LIST_SEP.join(map(str, v)) if isinstance(v, (list, tuple)) else v)
    out.to_csv(path, index=index)
    return path


def write_tables(
    tables: Mapping[str, pd.DataFrame], out_dir: Union[str, Path], floatfmt: str = ".3f",
    index_labels: Optional[Mapping[Any, str]] = None, na: str = "–",
) -> dict[str, dict[str, Path]]:
    """Write every table as ``<name>.csv`` and ``<name>.md`` under ``out_dir``; returns the paths. ``na``
    is what Markdown shows for a missing or undefined value (CSV leaves the cell empty)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict[str, Path]] = {}
    for name, table in tables.items():
        csv_path = to_csv(table, out_dir / f"{name}.csv")
        md_path = out_dir / f"{name}.md"
        md_path.write_text(to_markdown(table, floatfmt, index_labels=index_labels, na=na))
        written[name] = {"csv": csv_path, "markdown": md_path}
    return written
