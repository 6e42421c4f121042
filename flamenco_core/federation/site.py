"""The site's side of a request: parse the packs, check them against the policy and the data, count.

:func:`answer` always returns a :class:`SiteAggregate`: ``ok`` with counts, ``refused`` with reasons built
from the request's own names, or ``failed`` with the exception's type name only. The checks and their
order: docs/federation.md, section "The site's catalog and policy"."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from flamenco_core.errors import UsageError
from flamenco_core.federation.config import GroundTruth, SitePolicy
from flamenco_core.federation.disclosure import Discloser
from flamenco_core.federation.models import (
    ConfusionRow,
    Count,
    LabelModelCounts,
    LFCounts,
    PackAggregate,
    PolicySummary,
    Reason,
    SiteAggregate,
)

ABSTAIN_COLUMN = "abstain"


class Refused(UsageError):
    """The request does not pass the site's policy; ``reasons`` say why (exit 2)."""

    def __init__(self, reasons: list[Reason]) -> None:
        super().__init__("; ".join(r.message for r in reasons[:3]))
        self.reasons = reasons


def request_hash(pack_texts: Sequence[str], dataset: str, label_model: str, seed: int) -> str:
    """Identity of a request: its packs' bytes, the dataset name and the options (seeds the noise)."""
    payload = {"packs": [hashlib.sha256(t.encode()).hexdigest() for t in pack_texts], "dataset": dataset,
               "label_model": label_model, "seed": int(seed)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


# ----------------------------------------------------------------------------------------------- checks


def parse_packs(pack_texts: Sequence[str], policy: SitePolicy) -> list:
    """The request's packs, validated within the policy's size caps; :class:`Refused` otherwise."""
    import yaml

    from flamenco_core.labeling.expr import SpecError
    from flamenco_core.labeling.spec import LFPack, PackLimits

    if not pack_texts:
        raise Refused([Reason(code="no_pack", message="the request holds no pack")])
    if len(pack_texts) > policy.max_packs:
        raise Refused([Reason(code="too_many_packs", message=f"the request holds {len(pack_texts)} packs; this site accepts at most {policy.max_packs}")])
    limits = PackLimits(max_bytes=policy.max_pack_bytes, max_lfs=policy.max_lfs)
    packs, reasons = [], []
    for i, text in enumerate(pack_texts):
        size = len(text.encode("utf-8"))
        if size > policy.max_pack_bytes:
            reasons.append(Reason(code="pack_too_large", message=f"pack #{i + 1} is {size} bytes; this site accepts at most {policy.max_pack_bytes}"))
            continue
        try:
            data = yaml.safe_load(text)
            packs.append(LFPack.from_dict(data, limits=limits))
        except yaml.YAMLError:
            reasons.append(Reason(code="invalid_pack", message=f"pack #{i + 1} is not valid YAML"))
        except SpecError as exc:
            reasons.append(Reason(code="invalid_pack", message=f"pack #{i + 1}: {exc}", pack=exc.pack, lf=exc.lf))
    if not reasons and len({p.name for p in packs}) != len(packs):
        reasons.append(Reason(code="duplicate_pack", message="two packs of the request share a name"))
    if reasons:
        raise Refused(reasons)
    return packs


def policy_reasons(packs: Sequence[Any], policy: SitePolicy, label_model: str) -> list[Reason]:
    """What the policy refuses in the packs themselves (no data read): label model, statistics, audit."""
    from flamenco_core.labeling.audit import audit_pack

    out: list[Reason] = []
    if label_model not in policy.label_models:
        out.append(Reason(code="label_model_not_allowed",
                          message=f"label model {label_model!r} is not allowed here (allowed: {', '.join(policy.label_models)})"))
    allowed = set(policy.allowed_statistics) if policy.allowed_statistics is not None else None
    for p in packs:
        if not p.lfs:
            out.append(Reason(code="empty_pack", message="the pack has no LFs", pack=p.name))
        if allowed is not None:
            for feature, stats in sorted(p.needed_stats().items()):
                for s in sorted(set(stats) - allowed):
                    out.append(Reason(code="statistic_not_allowed", pack=p.name, feature=feature,
                                      message=f"statistic {s!r} (of {feature!r}) is not allowed here; allowed: {', '.join(sorted(allowed))}"))
        for f in audit_pack(p, allow=policy.allow_findings):
            out.append(Reason(code=f"audit_{f.kind}", pack=p.name, lf=f.lf, message=f"{f.field}: {f.message}"))
    if len(packs) > 1 and len({frozenset(p.classes) for p in packs}) > 1:
        out.append(Reason(code="classes_differ", message="the packs of one request must share their classes"))
    return out


def small_cells(packs: Sequence[Any], df: pd.DataFrame, k: int, min_share: float) -> list[tuple[str, list[str]]]:
    """``(feature, [LFs])`` where two or more conditions on one feature cut out a *narrow* cell of 1..k-1 rows.

    Each LF's count is suppressed below k, but two LFs on one feature (``x > p50`` and
    ``x > 1.001*p50``; ``port >= 31337`` and ``port > 31337``) give by subtraction the rows between
    their thresholds: a window the single-LF check (:func:`~flamenco_core.labeling.collaborate.narrow_windows`)
    never sees. Conditions are evaluated exactly as when applying (each one as a one-condition LF through
    the applier); rows are grouped by which conditions on the feature hold. A group of 1..k-1 rows whose
    bounding thresholds lie closer than ``min_share`` of the feature's spread (IQR, else range), or that
    is a single value, is refused: that is a probe for the values in it. Wide cells with few rows (the
    paper's ``src_port <= 6600`` and ``src_port >= 9000`` leave a few flows between them) are not: their
    difference says "a few rows somewhere in 6601..8999", not which value. Universal features are
    checked too (a port is a value like any other). ``min_share <= 0`` switches the check off.
    """
    from flamenco_core.labeling.applier import apply_lfs, resolved_thresholds
    from flamenco_core.labeling.constants import ABSTAIN
    from flamenco_core.labeling.spec import LFPack
    from flamenco_core.labeling.stats import DataStatistics, column_values

    if min_share <= 0:
        return []
    by_feature: dict[str, dict[str, tuple]] = {}
    users: dict[str, set[str]] = {}
    for p in packs:
        for lf in p.lfs:
            for c in lf.when:
                by_feature.setdefault(c.feature, {})[c.key()] = (p, c)
                users.setdefault(c.feature, set()).add(lf.name)
    stats = DataStatistics(df)
    out = []
    for feature, conds in sorted(by_feature.items()):
        if len(conds) < 2 or feature not in df.columns:
            continue
        masks, cuts = [], []
        # one one-condition pack per source pack: thresholds resolve on this data like the real LFs'
        for p in {id(q): q for q, _ in conds.values()}.values():
            mine = [c for q, c in conds.values() if q is p]
            probe = LFPack.from_dict({
                "pack": "cells", "classes": list(p.classes), "universal_features": list(p.universal_features),
                "lfs": [{"name": f"c{i}", "label": p.classes[0], "when": [c.model_dump(mode="json")]} for i, c in enumerate(mine)],
            })
            masks.append(apply_lfs(probe, df) != ABSTAIN)
            for per_lf in resolved_thresholds(probe, stats).values():
                for t in per_lf.values():
                    cuts += [float(v) for v in (t if isinstance(t, list) else [t])]
        M = np.concatenate(masks, axis=1)
        groups, inverse, counts = np.unique(M, axis=0, return_inverse=True, return_counts=True)
        small = np.flatnonzero((counts > 0) & (counts < k))
        if not small.size:
            continue
        x = column_values(df, feature)
        cuts_arr = np.unique(np.asarray([c for c in cuts if np.isfinite(c)]))
        iqr = stats.get(feature, "iqr")
        spread = iqr if iqr > 0 else stats.get(feature, "max") - stats.get(feature, "min")
        for g in small:
            vals = x[np.asarray(inverse).ravel() == g]
            vals = vals[np.isfinite(vals)]
            if not vals.size:
                continue
            lo_c = cuts_arr[cuts_arr <= vals.min()]
            hi_c = cuts_arr[cuts_arr >= vals.max()]
            single = vals.min() == vals.max() and (vals.min() in cuts_arr)
            bounded = lo_c.size and hi_c.size
            if single or (bounded and hi_c.min() - lo_c.max() < min_share * spread):
                out.append((feature, sorted(users[feature])))
                break
    return out


def data_reasons(packs: Sequence[Any], df: pd.DataFrame, policy: SitePolicy) -> list[Reason]:
    """What the policy refuses once the data is known: size, features, narrow windows, small cells."""
    from flamenco_core.labeling.applier import pack_problems
    from flamenco_core.labeling.collaborate import narrow_windows

    if len(df) < policy.min_rows:
        return [Reason(code="too_few_rows", message=f"the dataset has fewer than the {policy.min_rows} rows this site reports on")]
    out: list[Reason] = []
    for p in packs:
        for e in pack_problems(p, list(df.columns)):
            # no "did you mean": the hint would list the site's column names
            out.append(Reason(code="unknown_feature", pack=p.name, lf=e.lf, feature=e.token,
                              message=f"feature {e.token!r} is not a column of the dataset"))
        for feature in sorted(p.features() & set(df.columns)):
            dt = df[feature].dtype
            if not (pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt)):
                out.append(Reason(code="not_numeric", pack=p.name, feature=feature, message=f"feature {feature!r} is not numeric here"))
    if out:
        return out
    for p in packs:
        for lf, feature in narrow_windows(p, df, policy.min_window_share):
            out.append(Reason(code="narrow_window", pack=p.name, lf=lf, feature=feature,
                              message=f"LF {lf!r} tests a window on {feature!r} narrower than {policy.min_window_share:.2%} of its spread here"))
    for feature, lfs in small_cells(packs, df, policy.min_group_size, policy.min_window_share):
        out.append(Reason(code="small_cell", feature=feature, lf=", ".join(lfs),
                          message=f"the conditions on {feature!r} (LFs {', '.join(lfs)}) cut the data into a cell of "
                                  f"fewer than {policy.min_group_size} rows in a narrow window; their counts' differences would describe those rows"))
    return out


# ---------------------------------------------------------------------------------------------- counting


def truth_indices(values: pd.Series, truth: GroundTruth, classes: Sequence[str]) -> np.ndarray:
    """Class indices of the ground-truth column (-1 where missing); ``ValueError`` without the values
    when one is not a class (the message must not quote the data)."""
    from flamenco_core.labeling.collaborate import class_indices

    s = values
    if truth.classes:
        s = values.map(truth.classes)
        if (values.notna() & s.isna()).any():
            raise ValueError("the ground-truth column holds values the site's class map does not name")
    try:
        return class_indices(s, classes, "ground truth")
    except ValueError:
        raise ValueError("the ground-truth column holds values that are not the pack's classes") from None


def _confusion(decisions: np.ndarray, Y: np.ndarray, classes: Sequence[str], disc: Discloser,
               n_lab: int, lab_released: bool, key: str, only: Optional[str] = None) -> list[ConfusionRow]:
    """Rows of each true class by decision. ``only``: the one class the decisions can take (an LF votes its
    label or abstains); the other columns are zero by construction, not by the data, so they are left
    out rather than suppressed (suppressing them would hide their neighbours too)."""
    k = len(classes)
    keep = Y >= 0
    d, y = decisions[keep], Y[keep]
    cols = np.where(d < 0, k, d)
    M = np.bincount(y * (k + 1) + cols, minlength=k * (k + 1)).reshape(k, k + 1)
    totals = disc.group(M.sum(axis=1), n_lab, lab_released, key="class_counts")
    names = [*classes, ABSTAIN_COLUMN]
    shown = [i for i, c in enumerate(names) if only is None or c in (only, ABSTAIN_COLUMN)]
    rows = []
    for t, cls in enumerate(classes):
        cells = disc.group(M[t, shown], int(M[t].sum()), totals[t].value is not None, key=f"{key}:{cls}")
        rows.append(ConfusionRow(true_class=cls, total=totals[t], decided={names[i]: c for i, c in zip(shown, cells)}))
    return rows


def count_pack(pack: Any, df: pd.DataFrame, Y: Optional[np.ndarray], disc: Discloser, label_model: str, seed: int,
               kind: str = "pack") -> PackAggregate:
    """Apply ``pack`` to ``df`` (thresholds: statistics of ``df``) and release its counts through ``disc``."""
    from flamenco_core.labeling.analysis import label_summary, lf_summary
    from flamenco_core.labeling.applier import apply_lfs
    from flamenco_core.labeling.label_model import ABSTAIN, majority_vote, make_label_model

    classes = list(pack.classes)
    k = len(classes)
    names = [lf.name for lf in pack.lfs]
    L = apply_lfs(pack, df)
    n = int(L.shape[0])
    rows = disc.total(n)
    rel = rows.value is not None
    # what is counted, for the noise: the LFs' content (not the pack's name), so an LF asked for again, under
    # another name or inside the combination, gets the same noise (see disclosure)
    pk = hashlib.sha256("".join(sorted(lf.content_hash for lf in pack.lfs)).encode()).hexdigest()
    lmk = f"lm:{label_model}:{seed}:{pk}"
    # counts from the shared analysis' fractions (exact: a fraction of n rows times n, rounded)
    s = label_summary(L)
    per = lf_summary(L, names, classes=classes)
    cnt = lambda frac: int(round(float(frac) * n))  # noqa: E731
    n_lab = int((Y >= 0).sum()) if Y is not None else 0
    lab_count = disc.total(n_lab, key="labeled_rows") if Y is not None else None
    lab_rel = lab_count is not None and lab_count.value is not None
    lfs = []
    for j, lf in enumerate(pack.lfs):
        votes = cnt(per["Coverage"].iloc[j])
        h = lf.content_hash
        vc = disc.count(votes, n, rel, key=f"{h}:votes")
        lfs.append(LFCounts(
            lf=lf.name, label=lf.label, content_hash=lf.content_hash, votes=vc,
            # overlaps and conflicts depend on the other LFs: keyed by the pack's LFs too
            overlaps=disc.count(cnt(per["Overlaps"].iloc[j]), votes, vc.value is not None, key=f"{pk}:{h}:overlaps"),
            conflicts=disc.count(cnt(per["Conflicts"].iloc[j]), votes, vc.value is not None, key=f"{pk}:{h}:conflicts"),
            confusion=_confusion(L[:, j].astype(np.int64), Y, classes, disc, n_lab, lab_rel, f"{h}:confusion",
                                 only=lf.label) if Y is not None else None,
        ))
    mv = majority_vote(L, k)
    lm = make_label_model(label_model, n_lfs=len(names), cardinality=k, seed=seed)
    error = None
    try:
        lm.fit(L)
        pred = np.asarray(lm.predict(L), dtype=np.int64)
    except Exception as exc:  # the model's failure is reported by type; the counts above still count
        error, pred = type(exc).__name__, None
    if pred is not None:
        both = (pred != ABSTAIN) & (mv != ABSTAIN)
        bc = disc.count(int(both.sum()), n, rel, key=f"{lmk}:both")
        lmc = LabelModelCounts(
            name=lm.name, fallback=lm.fallback_reason,
            conclusive=disc.count(int((pred != ABSTAIN).sum()), n, rel, key=f"{lmk}:conclusive"),
            majority_conclusive=disc.count(int((mv != ABSTAIN).sum()), n, rel, key=f"{pk}:mv_conclusive"), both_conclusive=bc,
            agree=disc.count(int((both & (pred == mv)).sum()), int(both.sum()), bc.value is not None, key=f"{lmk}:agree"),
            confusion=_confusion(pred, Y, classes, disc, n_lab, lab_rel, f"{lmk}:confusion") if Y is not None else None)
    else:
        none = Count(suppressed="total_suppressed")
        lmc = LabelModelCounts(name=lm.name, fallback=lm.fallback_reason, error=error, conclusive=none,
                               majority_conclusive=disc.count(int((mv != ABSTAIN).sum()), n, rel, key=f"{pk}:mv_conclusive"),
                               both_conclusive=none, agree=none)
    return PackAggregate(
        pack=pack.name, version=pack.version, group=pack.group, content_hash=pack.content_hash, kind=kind,
        classes=classes, statistics_used={f: sorted(st) for f, st in sorted(pack.needed_stats().items())},
        rows=rows, covered=disc.count(cnt(s["coverage"]), n, rel, key=f"{pk}:covered"),
        overlapped=disc.count(cnt(s["overlap"]), n, rel, key=f"{pk}:overlapped"),
        conflicted=disc.count(cnt(s["conflict"]), n, rel, key=f"{pk}:conflicted"), labeled_rows=lab_count, lfs=lfs,
        majority_vote_confusion=_confusion(mv.astype(np.int64), Y, classes, disc, n_lab, lab_rel, f"{pk}:mv_confusion")
        if Y is not None else None,
        label_model=lmc,
    )


def answer(pack_texts: Sequence[str], dataset: str, df: Optional[pd.DataFrame], policy: SitePolicy, *, site: str,
           truth: Optional[GroundTruth] = None, label_model: str = "snorkel", seed: int = 0,
           combination: bool = True, on_error: Optional[Callable[[BaseException], None]] = None) -> SiteAggregate:
    """The site's whole answer to a request. ``df`` is the dataset named by the request (``None`` when the
    catalog has no such dataset: refused). Never raises: see the module docstring. ``on_error`` gets the
    exception behind a ``failed`` answer, for the site's own log: the answer carries its type only."""
    rh = request_hash(pack_texts, dataset, label_model, seed)
    base = dict(site=site, dataset=dataset, request_hash=rh, policy=PolicySummary(**policy.summary()),
                has_ground_truth=truth is not None, label_model=label_model, seed=int(seed))
    try:
        packs = parse_packs(pack_texts, policy)
        reasons = policy_reasons(packs, policy, label_model)
        if reasons:
            raise Refused(reasons)
        if df is None:
            raise Refused([Reason(code="unknown_dataset", message=f"this site has no dataset {dataset!r}")])
        reasons = data_reasons(packs, df, policy)
        if reasons:
            raise Refused(reasons)
        Y = None
        if truth is not None:
            if truth.column not in df.columns:
                raise Refused([Reason(code="no_ground_truth", message="the dataset's ground-truth column is missing")])
            Y = truth_indices(df[truth.column], truth, list(packs[0].classes))
        disc = Discloser(policy.min_group_size, policy.noise.epsilon if policy.noise else None,
                         policy.noise.seed if policy.noise else 0, salt=dataset)
        out = [count_pack(p, df, Y, disc, label_model, seed) for p in packs]
        if combination and len(packs) > 1:
            from flamenco_core.labeling.spec import combine_packs

            merged, _ = combine_packs(packs, name="+".join(p.name for p in packs))
            out.append(count_pack(merged, df, Y, disc, label_model, seed, kind="combination"))
        return SiteAggregate(outcome="ok", packs=out, **base)
    except Refused as r:
        return SiteAggregate(outcome="refused", reasons=r.reasons, **base)
    except Exception as exc:  # the type only: a message could quote a value of the data
        if on_error is not None:
            on_error(exc)
        return SiteAggregate(outcome="failed", reasons=[Reason(code="error", message=type(exc).__name__)], **base)


__all__ = ["Refused", "answer", "count_pack", "data_reasons", "parse_packs", "policy_reasons", "request_hash",
           "small_cells", "truth_indices"]
