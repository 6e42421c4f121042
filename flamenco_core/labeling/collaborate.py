"""Code-to-data collaboration: run other groups' LF packs on local data and write a report of aggregates
only (what it holds and never holds, and the two refusals: ``docs/collaboration.md``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import pandas as pd

from flamenco_core.errors import UsageError
from flamenco_core.labeling.analysis import (
    DEFAULT_ABSTAIN,
    combination_f1,
    label_summary,
    lf_f1,
    lf_summary,
)
from flamenco_core.labeling.collaborate_markdown import render_markdown
from flamenco_core.labeling.expr import SpecError
from flamenco_core.labeling.label_model import ABSTAIN, labeled_mask, make_label_model
from flamenco_core.outputs import json_ready

REPORT_FORMAT = "flamenco-collaboration-report"
REPORT_VERSION = 1
DEFAULT_MIN_ROWS = 10
#: Narrowest LF window accepted, as a share of the feature's spread on the local data (IQR, else range).
DEFAULT_MIN_WINDOW_SHARE = 0.01


class CollaborationRefused(UsageError, ValueError):
    """A pack did not pass the privacy audit (or the data is too small to report on); exit 2."""

    def __init__(self, message: str, findings: Optional[dict[str, list]] = None) -> None:
        super().__init__(message)
        self.findings = findings or {}


def class_indices(values: Any, classes: Sequence[str], source: str = "labeled data") -> np.ndarray:
    """Map class names to indices (position in ``classes``); missing labels (None/NaN) give -1.

    Integer labels already in ``0..k-1`` are accepted as indices. An unknown name raises
    ``ValueError`` naming ``source`` and the value.
    """
    s = pd.Series(values)
    classes = list(classes)
    if pd.api.types.is_integer_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype):
        arr = s.to_numpy(dtype=np.int64, na_value=ABSTAIN) if s.isna().any() else s.to_numpy(dtype=np.int64)
        bad = arr[(arr != ABSTAIN) & ((arr < 0) | (arr >= len(classes)))]
        if bad.size:
            raise ValueError(f"{source}: label {int(bad[0])} is not a class index 0..{len(classes) - 1} ({classes})")
        return arr
    missing = s.isna().to_numpy()
    names = s.astype("string").fillna("")
    codes = pd.Index(classes).get_indexer(names.to_numpy(dtype=object)).astype(np.int64)
    unknown = (codes == -1) & ~missing
    if unknown.any():
        bad = names[unknown].unique()[:5]
        raise ValueError(
            f"{source}: unknown label value(s) {', '.join(repr(str(b)) for b in bad)}; the pack's classes are {classes}"
        )
    return codes


# ---------------------------------------------------------------------------------------------- helpers


def _records(df: pd.DataFrame, columns: dict[str, str], classes: Optional[Sequence[str]] = None) -> list[dict]:
    out = []
    # one record per LF (tens, not data rows); to_dict keeps each column's type (counts stay ints)
    for name, row in zip(df.index, df.to_dict(orient="records")):
        rec: dict[str, Any] = {"lf": str(name)}
        for col, key in columns.items():
            if col not in df.columns:
                continue
            v = row[col]
            if col == "Polarity" and classes is not None:
                v = [classes[i] for i in v]
            rec[key] = v
        out.append(rec)
    return json_ready(out)


_SUMMARY_COLS = {"Polarity": "polarity", "Coverage": "coverage", "Overlaps": "overlaps", "Conflicts": "conflicts"}
_F1_COLS = {
    "Coverage": "coverage",
    "Evaluated": "evaluated",
    "Correct": "correct",
    "Incorrect": "incorrect",
    "Emp. Acc.": "emp_acc",
    "Precision": "precision",
    "Recall": "recall",
    "F1": "f1",
}


def _pack_meta(pack, allowed_findings: list) -> dict:
    return {
        "pack": pack.name,
        "version": pack.version,
        "group": pack.group,
        "content_hash": pack.content_hash,
        "classes": list(pack.classes),
        "lfs": [
            {"name": lf.name, "label": lf.label, "group": lf.group or pack.group, "content_hash": lf.content_hash}
            for lf in pack.lfs
        ],
        # names only: the values are statistics of our data (see the module docstring)
        "statistics_used": {f: sorted(s) for f, s in sorted(pack.needed_stats().items())},
        "audit": {
            "findings": 0,
            "allowed_findings": len(allowed_findings),
            "allowed_kinds": sorted({f.kind for f in allowed_findings}),
        },
    }


def _analyze_pack(
    pack,
    df: pd.DataFrame,
    labeled: Optional[pd.DataFrame],
    label_column: str,
    pos_name: str,
    settings: dict,
    allowed_findings: list,
) -> dict:
    from flamenco_core.labeling.applier import apply_lfs

    classes = list(pack.classes)
    k = len(classes)
    names = [lf.name for lf in pack.lfs]
    section = _pack_meta(pack, allowed_findings)

    L, meta = apply_lfs(pack, df, return_meta=True)
    summary = lf_summary(L, names, classes=classes)
    section["local"] = {**{k_: v for k_, v in label_summary(L).items()}, "lf_summary": _records(summary, _SUMMARY_COLS, classes)}

    lm = make_label_model(settings["label_model"], n_lfs=len(names), cardinality=k, seed=settings["seed"])
    lm_section: dict[str, Any] = {"name": lm.name, "fallback_reason": lm.fallback_reason}
    try:
        lm.fit(L)
        lm_section["params"] = json_ready(lm.get_params())
        # the rows filter_unlabeled drops before end-model training
        lm_section["rows_without_votes"] = int(len(L) - labeled_mask(L).sum())
    except Exception as exc:  # one pack's failing model must not cost the other packs their report
        lm_section["error"] = f"{type(exc).__name__}: {exc}"
        lm = None
    section["label_model"] = lm_section

    if labeled is not None:
        Y = class_indices(labeled[label_column], classes, "labeled data")
        keep = Y != ABSTAIN
        lab = labeled.loc[keep] if not keep.all() else labeled
        Y = Y[keep]
        # thresholds from the local data's statistics: the same rules that label the local rows
        L_lab = apply_lfs(pack, lab, stats=meta.stats)
        f1_kw = dict(classes=classes, pos_label=pos_name, abstain=settings["abstain"])
        per_lf = lf_summary(L_lab, names, Y, **f1_kw)
        scores = lf_f1(L_lab, Y, names, **f1_kw)
        per_lf = scores.join(per_lf[["Correct", "Incorrect", "Emp. Acc."]])
        mv = combination_f1(L_lab, Y, [tuple(range(len(names)))], names, **f1_kw).iloc[0]
        section["labeled"] = {
            "rows": int(len(Y)),
            "lf_f1": _records(per_lf, _F1_COLS),
            "majority_vote": json_ready({k_.lower(): mv[k_] for k_ in ("Coverage", "Ties", "Evaluated", "Precision", "Recall", "F1")}),
        }
        if lm is not None:
            preds = lm.predict(L_lab)
            res = lf_f1(preds[:, None], Y, [lm.name], **f1_kw).iloc[0]
            lm_section["labeled"] = json_ready({k_.lower(): res[k_] for k_ in ("Coverage", "Evaluated", "Precision", "Recall", "F1")})
    return section


def _comparison_row(name: str, section: dict) -> dict:
    row = {
        "name": name,
        "lfs": len(section["lfs"]),
        "coverage": section["local"]["coverage"],
        "overlap": section["local"]["overlap"],
        "conflict": section["local"]["conflict"],
        "label_model": section["label_model"]["name"],
    }
    if "labeled" in section:
        row["f1_majority_vote"] = section["labeled"]["majority_vote"]["f1"]
        row["coverage_labeled"] = section["labeled"]["majority_vote"]["coverage"]
        row["f1_label_model"] = section["label_model"].get("labeled", {}).get("f1")
    return row


# ---------------------------------------------------------------------------------------------- API


def audit_packs(packs: Sequence[Any], allow: Iterable[str] = ()) -> dict[str, list]:
    """Audit every pack; ``{pack name: [allowed findings]}``. Raises :class:`CollaborationRefused` on
    any finding not in ``allow`` (LF names, or a pack name for pack-level findings)."""
    from flamenco_core.labeling.audit import audit_pack

    allow = list(allow)
    refused: dict[str, list] = {}
    allowed: dict[str, list] = {}
    for pack in packs:
        remaining = audit_pack(pack)
        blocking = audit_pack(pack, allow=allow) if allow else remaining
        if blocking:
            refused[pack.name] = blocking
        allowed[pack.name] = [f for f in remaining if f not in blocking]
    if refused:
        lines = [f"{p}: {f.lf or '(pack)'} [{f.kind}] {f.message}" for p, fs in refused.items() for f in fs]
        raise CollaborationRefused(
            "the privacy audit found what these packs would reveal; fix them or allow the LFs by name:\n  "
            + "\n  ".join(lines),
            findings=refused,
        )
    return allowed


def narrow_windows(pack: Any, df: pd.DataFrame, min_share: float = DEFAULT_MIN_WINDOW_SHARE) -> list[tuple[str, str]]:
    """``(LF, feature)`` pairs whose window on a non-universal feature of ``df`` is too narrow.

    An LF's conditions on one feature are intersected: the window runs from the largest lower bound
    (``>``, ``>=``, ``between``'s low end) to the smallest upper bound (``<``, ``<=``, ``between``'s high
    end); ``==`` and ``in`` are windows of width 0. Thresholds are resolved on ``df``'s statistics, as
    when applying. A window is too narrow when its width is below ``min_share`` times the feature's
    interquartile range on ``df`` (its range where the IQR is 0). Empty windows (low end above high end)
    never vote and are not reported; nor are thresholds that cannot be resolved (missing feature or
    statistic, NaN): applying reports those.
    """
    from flamenco_core.labeling.expr import parse_expression
    from flamenco_core.labeling.stats import DataStatistics, MissingStatistic

    if min_share <= 0:
        return []
    universal = set(pack.universal_features)
    stats = DataStatistics(df)
    # one pass per feature for every statistic the pack and the spreads need
    needed = pack.needed_stats()
    wanted = {c.feature for lf in pack.lfs for c in lf.when if c.feature not in universal}
    present = [f for f in sorted(wanted | set(needed)) if stats.has_feature(f)]
    for f in present:
        try:
            stats.prefetch({f: sorted(set(needed.get(f, ())) | ({"iqr", "min", "max"} if f in wanted else set()))})
        except (TypeError, ValueError):
            pass  # a non-numeric column: its LFs are skipped below and applying names the problem

    def spread(feature: str) -> float:
        iqr = stats.get(feature, "iqr")
        return iqr if iqr > 0 else stats.get(feature, "max") - stats.get(feature, "min")

    def resolve(v: Any, feature: str) -> float:
        return float(parse_expression(v).evaluate(stats.get, feature)) if isinstance(v, str) else float(v)

    narrow: list[tuple[str, str]] = []
    for lf in pack.lfs:
        low: dict[str, float] = {}
        high: dict[str, float] = {}
        points: set[str] = set()
        try:
            for c in lf.when:
                if c.feature in universal or c.op == "!=":
                    continue
                f = c.feature
                vals = [resolve(v, f) for v in c.values]
                if c.op in ("==", "in"):
                    points.add(f)
                    continue
                if c.op in (">", ">=", "between"):
                    low[f] = max(low.get(f, -math.inf), vals[0])
                if c.op in ("<", "<=", "between"):
                    high[f] = min(high.get(f, math.inf), vals[-1])
            for f in sorted(points | (set(low) & set(high))):
                width = 0.0 if f in points else high[f] - low[f]
                if width >= 0 and width < min_share * spread(f):
                    narrow.append((lf.name, f))
        except (SpecError, MissingStatistic, TypeError, ValueError):
            continue  # unresolvable here: applying the pack reports it with the LF's name
    return narrow


def check_windows(packs: Sequence[Any], df: pd.DataFrame, min_share: float = DEFAULT_MIN_WINDOW_SHARE) -> None:
    """Raise :class:`CollaborationRefused` naming every LF and feature with a window narrower than
    ``min_share`` of the feature's spread on ``df`` (see :func:`narrow_windows`)."""
    found = [(p.name, lf, f) for p in packs for lf, f in narrow_windows(p, df, min_share)]
    if found:
        lines = [f"{p}: LF {lf!r} on feature {f!r}" for p, lf, f in found]
        raise CollaborationRefused(
            f"these LFs test a window narrower than {min_share:.2%} of the feature's spread on the local data "
            "(interquartile range, or range where that is 0); their coverage would tell whether a local row holds "
            "a value in that window. Widen the windows, or lower min_window_share if you accept that:\n  "
            + "\n  ".join(lines)
        )


def _check_fit(packs: Sequence[Any], frame: pd.DataFrame, where: str) -> None:
    from flamenco_core.labeling.applier import pack_problems

    problems = [e for p in packs for e in pack_problems(p, frame, where)]
    if len(problems) == 1:
        raise problems[0]
    if problems:
        more = len(problems) - 1
        raise SpecError(f"{problems[0]} (and {more} more problem{'s' if more > 1 else ''})")


def collaborate(
    packs: Sequence[Any],
    df: pd.DataFrame,
    labeled: Optional[pd.DataFrame],
    out_dir: Union[str, Path],
    label_column: str = "label",
    *,
    allow: Iterable[str] = (),
    label_model: str = "snorkel",
    seed: int = 0,
    abstain: str = DEFAULT_ABSTAIN,
    pos_label: Union[int, str] = 1,
    min_rows: int = DEFAULT_MIN_ROWS,
    combination_name: Optional[str] = None,
    min_window_share: float = DEFAULT_MIN_WINDOW_SHARE,
) -> dict:
    """Apply each pack and their combination to local data ``df`` and write the shareable report.

    ``labeled`` (optional) has the features and a ``label_column`` of class names; rows with a missing
    label are left out (and counted). ``allow`` accepts audit findings by LF (or pack) name; any other
    finding raises :class:`CollaborationRefused` before anything is applied. ``label_model``/``seed``
    pick the label model (see :func:`~flamenco_core.labeling.label_model.make_label_model`);
    ``abstain``/``pos_label`` define LF F1 (see :mod:`flamenco_core.labeling.analysis`; ``pos_label``
    is resolved against the first pack's classes and then used by name). ``min_window_share``: LF
    windows narrower than this share of a feature's spread on ``df`` are refused (see
    :func:`narrow_windows`; 0 switches the check off). Writes ``out_dir/report.json`` and
    ``out_dir/report.md`` and returns the report as a dict.
    """
    from flamenco_core import __version__
    from flamenco_core.labeling.analysis import f1_definition, resolve_f1_args
    from flamenco_core.labeling.spec import combine_packs

    packs = list(packs)
    if not packs:
        raise ValueError("collaborate needs at least one pack")
    for p in packs:
        if not p.lfs:
            raise ValueError(f"pack {p.name!r} has no LFs")
    if len({p.name for p in packs}) != len(packs):
        raise ValueError("two packs share a name; the report could not tell them apart")
    # A pack that does not fit the data is bad input (exit 2), found before anything is counted: read for
    # the packs' features only, such data would otherwise look empty ("0 rows").
    _check_fit(packs, df, "local data")
    if labeled is not None:
        _check_fit(packs, labeled, "labeled data")
    if len(df) < min_rows:
        raise CollaborationRefused(f"the local data has {len(df)} rows; reports need at least {min_rows} (aggregates of a few rows describe those rows)")
    allowed = audit_packs(packs, allow)
    check_windows(packs, df, min_window_share)

    classes = list(packs[0].classes)
    pos_index, _, _ = resolve_f1_args(len(classes), classes, pos_label, abstain, None, None)
    pos_name = classes[pos_index]
    settings = {"label_model": label_model, "seed": int(seed), "abstain": abstain}

    labeled_info: Optional[dict] = None
    if labeled is not None:
        if label_column not in labeled.columns:
            raise ValueError(f"labeled data has no {label_column!r} column (columns: {list(labeled.columns)[:12]})")
        Y0 = class_indices(labeled[label_column], classes, "labeled data")
        n_lab = int((Y0 != ABSTAIN).sum())
        if n_lab < min_rows:
            raise CollaborationRefused(f"the labeled data has {n_lab} labeled rows; reports need at least {min_rows}")
        counts = np.bincount(Y0[Y0 != ABSTAIN], minlength=len(classes))
        labeled_info = {
            "rows": n_lab,
            "rows_without_label": int(len(Y0) - n_lab),
            "class_counts": {c: int(n) for c, n in zip(classes, counts)},
        }

    sections = [_analyze_pack(p, df, labeled, label_column, pos_name, settings, allowed[p.name]) for p in packs]
    combination = None
    if len(packs) > 1:
        name = combination_name or "+".join(p.name for p in packs)
        merged, combine_report = combine_packs(packs, name=name)
        combination = _analyze_pack(merged, df, labeled, label_column, pos_name, settings,
                                    [f for p in packs for f in allowed[p.name]])
        combination.update(json_ready(combine_report.to_dict()))

    f1_def = None
    if labeled is not None:
        k = len(classes)
        pos, neg, average = resolve_f1_args(k, classes, pos_name, abstain, None, None)
        f1_def = f1_definition(k, classes, pos, neg, abstain, average)
    report = {
        "report": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "flamenco_version": __version__,
        "privacy": {
            "contents": "aggregates only: counts, fractions, F1 scores, pack metadata",
            "statistic_values": "withheld (thresholds are statistics of the local data); only their names are listed",
            "min_rows": int(min_rows),
        },
        "classes": classes,
        "data": {"rows": int(len(df))},
        "labeled": labeled_info,
        "settings": {
            "label_model": label_model,
            "seed": int(seed),
            "thresholds": "statistics of the local data, also for the labeled rows",
            "lf_f1": f1_def,
        },
        "comparison": [_comparison_row(s["pack"], s) for s in sections]
        + ([_comparison_row(combination["pack"], combination)] if combination else []),
        "packs": sections,
        "combination": combination,
    }
    report = json_ready(report)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    (out / "report.md").write_text(render_markdown(report))
    return report


__all__ = ["CollaborationRefused", "audit_packs", "check_windows", "class_indices", "collaborate", "narrow_windows",
           "DEFAULT_MIN_WINDOW_SHARE"]
