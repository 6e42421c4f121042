"""The coordinator's side: combine the sites' aggregates into per-site and pooled analysis.

Every metric is exact where its counts were released and a ``[low, high]`` range where some were
suppressed; :func:`generalisation` says which LFs generalise. Definitions: docs/federation.md, section
"What comes back"."""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

from flamenco_core.federation.models import ConfusionRow, Count, PackAggregate, SiteOutcome

REPORT_FORMAT = "flamenco-federation-report"
REPORT_VERSION = 1
DEFAULT_MIN_COVERAGE = 0.01
DEFAULT_MAX_RATIO = 3.0
DEFAULT_MIN_ACCURACY = 0.6

Interval = Optional[tuple[float, float]]


def interval(c: Optional[Count], total: Interval, k: int) -> Interval:
    """Where a count lies given its total's interval (``None``: unknown)."""
    if c is None:
        return (0.0, 0.0)  # a column left out: zero by construction
    if c.value is not None:
        return (float(c.value), float(c.value))
    if c.suppressed == "fewer_than_k":
        return (0.0, float(k - 1) if total is None else min(float(k - 1), total[1]))
    if total is None:
        return None
    if c.suppressed == "complement_fewer_than_k":
        return (max(0.0, total[0] - (k - 1)), total[1])
    return (0.0, total[1])


def _add(a: Interval, b: Interval) -> Interval:
    return None if a is None or b is None else (a[0] + b[0], a[1] + b[1])


def _sum(xs: Iterable[Interval]) -> Interval:
    out: Interval = (0.0, 0.0)
    for x in xs:
        out = _add(out, x)
    return out


def _ratio(num: Interval, den: Interval) -> Interval:
    """``num / (den)`` where ``num`` is part of ``den`` (a fraction in [0, 1])."""
    if num is None or den is None or den[1] <= 0:
        return None
    lo = num[0] / den[1] if den[1] else 0.0
    hi = min(1.0, num[1] / den[0]) if den[0] > 0 else 1.0
    return (lo, hi)


def _part(a: Interval, b: Interval) -> Interval:
    """``a / (a + b)`` for disjoint counts ``a``, ``b`` (increasing in a, decreasing in b)."""
    if a is None or b is None:
        return None
    f = lambda x, y: x / (x + y) if x + y > 0 else 0.0  # noqa: E731 - zero_division=0, as in analysis
    return (f(a[0], b[1]), f(a[1], b[0]))


def _f1(tp: Interval, fp: Interval, fn: Interval) -> Interval:
    if tp is None or fp is None or fn is None:
        return None
    f = lambda t, p, n: 2 * t / (2 * t + p + n) if 2 * t + p + n > 0 else 0.0  # noqa: E731
    return (f(tp[0], fp[1], fn[1]), f(tp[1], fp[0], fn[0]))


def metric(iv: Interval, digits: int = 6) -> dict[str, Any]:
    """``{"value": x}`` when exact, ``{"value": None, "range": [lo, hi]}`` otherwise (``range`` null: unknown)."""
    if iv is None:
        return {"value": None, "range": None}
    lo, hi = round(iv[0], digits), round(iv[1], digits)
    return {"value": lo} if lo == hi else {"value": None, "range": [lo, hi]}


# ------------------------------------------------------------------------------------------ confusion


def cells(rows: Sequence[ConfusionRow], classes: Sequence[str], k: int, n_lab: Interval, exact: bool = True) -> dict:
    """``{(true, decided): interval}`` with ``abstain`` a decision, plus ``("total", true)``.

    With ``exact`` counts (no noise), a row's cells add up to its total, so each unknown cell also lies in
    ``[total_lo - sum(others_hi), total_hi - sum(others_lo)]``: a secondary-suppressed cell next to a
    few suppressed ones is then known within those few rows instead of within the whole row."""
    out: dict = {}
    for r in rows:
        tot = interval(r.total, n_lab, k)
        out[("total", r.true_class)] = tot
        row = {d: interval(r.decided.get(d), tot, k) for d in [*classes, "abstain"]}
        if exact and tot is not None and all(v is not None for v in row.values()):
            for _ in range(2):
                for d, v in row.items():
                    if v[0] == v[1]:
                        continue
                    others = [w for e, w in row.items() if e != d]
                    lo = max(v[0], tot[0] - sum(w[1] for w in others))
                    hi = min(v[1], tot[1] - sum(w[0] for w in others))
                    if lo <= hi:
                        row[d] = (lo, hi)
        for d, v in row.items():
            out[(r.true_class, d)] = v
    return out


def _add_cells(a: Optional[dict], b: dict) -> dict:
    return dict(b) if a is None else {key: _add(a.get(key, (0.0, 0.0)), v) for key, v in b.items()}


def classifier_scores(c: dict, classes: Sequence[str]) -> dict[str, Any]:
    """Precision, recall, F1 of a decision (abstain = the negative class) from confusion intervals."""
    k = len(classes)
    targets = [classes[1]] if k == 2 else list(classes)
    neg = classes[0]
    ps, rs, fs = [], [], []
    for pos in targets:
        tp = c[(pos, pos)] if pos != neg else _add(c[(pos, pos)], c[(pos, "abstain")])
        fp = _sum(c[(t, pos)] if pos != neg else _add(c[(t, pos)], c[(t, "abstain")]) for t in classes if t != pos)
        fn = _sum(c[(pos, d)] for d in [*classes, "abstain"] if d != pos and not (pos == neg and d == "abstain"))
        ps.append(_part(tp, fp))
        rs.append(_part(tp, fn))
        fs.append(_f1(tp, fp, fn))
    avg = lambda xs: None if any(x is None for x in xs) else (sum(x[0] for x in xs) / len(xs), sum(x[1] for x in xs) / len(xs))  # noqa: E731
    return {"precision": metric(avg(ps)), "recall": metric(avg(rs)), "f1": metric(avg(fs))}


def lf_accuracy(c: dict, label: str, classes: Sequence[str]) -> Interval:
    """Correct / voted for an LF voting ``label``."""
    wrong = _sum(c[(t, label)] for t in classes if t != label)
    return _part(c[(label, label)], wrong)


# ------------------------------------------------------------------------------------------- analysis


def _pack_state(p: PackAggregate, k: int, exact: bool = True) -> dict:
    """Intervals of one pack at one site (what per-site metrics and the pooled sums are built from);
    ``exact``: the site added no noise (row sums then narrow the ranges, :func:`cells`)."""
    rows = interval(p.rows, None, k)
    n_lab = interval(p.labeled_rows, None, k) if p.labeled_rows is not None else None
    lfs = {}
    for lf in p.lfs:
        votes = interval(lf.votes, rows, k)
        lfs[lf.lf] = {"label": lf.label, "votes": votes, "overlaps": interval(lf.overlaps, votes, k),
                      "conflicts": interval(lf.conflicts, votes, k),
                      "cells": cells(lf.confusion, p.classes, k, n_lab, exact) if lf.confusion else None}
    lm = p.label_model
    both = interval(lm.both_conclusive, rows, k)
    return {
        "rows": rows, "covered": interval(p.covered, rows, k), "overlapped": interval(p.overlapped, rows, k),
        "conflicted": interval(p.conflicted, rows, k), "lfs": lfs,
        "mv_cells": cells(p.majority_vote_confusion, p.classes, k, n_lab, exact) if p.majority_vote_confusion else None,
        "lm": {"name": lm.name, "error": lm.error, "conclusive": interval(lm.conclusive, rows, k),
               "both": both, "agree": interval(lm.agree, both, k),
               "cells": cells(lm.confusion, p.classes, k, n_lab, exact) if lm.confusion else None},
    }


def _render_state(st: dict, classes: Sequence[str]) -> dict:
    """Metrics of a pack (one site's or pooled intervals)."""
    rows = st["rows"]
    out: dict[str, Any] = {
        "rows": metric(rows, 0), "coverage": metric(_ratio(st["covered"], rows)),
        "overlap": metric(_ratio(st["overlapped"], rows)), "conflict": metric(_ratio(st["conflicted"], rows)),
        "lfs": [],
    }
    for name, lf in st["lfs"].items():
        row: dict[str, Any] = {"lf": name, "label": lf["label"], "coverage": metric(_ratio(lf["votes"], rows)),
                               "overlap": metric(_ratio(lf["overlaps"], rows)), "conflict": metric(_ratio(lf["conflicts"], rows))}
        if lf["cells"] is not None:
            row["emp_acc"] = metric(lf_accuracy(lf["cells"], lf["label"], classes))
            row.update(classifier_scores(lf["cells"], classes))
        out["lfs"].append(row)
    lm = st["lm"]
    out["label_model"] = {"name": lm["name"], "error": lm["error"], "coverage": metric(_ratio(lm["conclusive"], rows)),
                          "agreement_with_majority_vote": metric(_ratio(lm["agree"], lm["both"]))}
    if lm["cells"] is not None:
        out["label_model"].update(classifier_scores(lm["cells"], classes))
    if st["mv_cells"] is not None:
        out["majority_vote"] = classifier_scores(st["mv_cells"], classes)
    return out


def _pool(states: list[dict]) -> dict:
    first = states[0]
    pooled = {key: _sum(s[key] for s in states) for key in ("rows", "covered", "overlapped", "conflicted")}
    pooled["lfs"] = {}
    for name, lf in first["lfs"].items():
        gt = [s["lfs"][name]["cells"] for s in states if s["lfs"][name]["cells"] is not None]
        c = None
        for x in gt:
            c = _add_cells(c, x)
        pooled["lfs"][name] = {"label": lf["label"], **{key: _sum(s["lfs"][name][key] for s in states)
                                                        for key in ("votes", "overlaps", "conflicts")}, "cells": c}
    mv, lmc = None, None
    for s in states:
        if s["mv_cells"] is not None:
            mv = _add_cells(mv, s["mv_cells"])
        if s["lm"]["cells"] is not None:
            lmc = _add_cells(lmc, s["lm"]["cells"])
    names = sorted({s["lm"]["name"] for s in states})
    pooled["mv_cells"] = mv
    pooled["lm"] = {"name": "/".join(names), "error": None, "conclusive": _sum(s["lm"]["conclusive"] for s in states),
                    "both": _sum(s["lm"]["both"] for s in states), "agree": _sum(s["lm"]["agree"] for s in states),
                    "cells": lmc}
    return pooled


def generalisation(per_site: dict[str, dict], packs: Sequence[str], *, min_coverage: float = DEFAULT_MIN_COVERAGE,
                   max_ratio: float = DEFAULT_MAX_RATIO, min_accuracy: float = DEFAULT_MIN_ACCURACY) -> list[dict]:
    """One verdict per (pack, LF) over the sites that answered (rules in the module docstring)."""
    out = []
    for pack in packs:
        sites = [s for s, ps in per_site.items() if pack in ps]
        if not sites:
            continue
        for lf in per_site[sites[0]][pack]["lfs"]:
            name = lf["lf"]
            cov, acc = {}, {}
            for s in sites:
                row = next(r for r in per_site[s][pack]["lfs"] if r["lf"] == name)
                cov[s] = _as_iv(row["coverage"])
                if "emp_acc" in row:
                    acc[s] = _as_iv(row["emp_acc"])
            verdict, why = "unknown", "fewer than two sites answered"
            known = [v for v in cov.values() if v is not None]
            if len(sites) >= 2 and len(known) == len(sites):
                lows, highs = [v[0] for v in known], [v[1] for v in known]
                bad_acc = [s for s, a in acc.items() if a is not None and a[1] < min_accuracy]
                if max(lows) >= min_coverage and min(highs) < min_coverage:
                    verdict, why = "site_specific", f"covers at least {min_coverage:.0%} at some sites, less at others"
                elif bad_acc:
                    verdict, why = "site_specific", f"accuracy below {min_accuracy:.0%} at {', '.join(bad_acc)}"
                elif min(highs) > 0 and max(lows) / min(highs) > max_ratio:
                    verdict, why = "site_specific", f"coverage differs by more than {max_ratio:g}x between sites"
                elif min(lows) >= min_coverage and all(a is not None and a[0] >= min_accuracy for a in acc.values()) \
                        and (min(lows) > 0 and max(highs) / min(lows) <= max_ratio):
                    verdict, why = "generalises", (f"covers at least {min_coverage:.0%} everywhere, within {max_ratio:g}x"
                                                   + (f", accuracy at least {min_accuracy:.0%} where known" if acc else ""))
                else:
                    why = "the suppressed counts' ranges leave it open"
            out.append({"pack": pack, "lf": name, "verdict": verdict, "why": why,
                        "coverage": {s: per_site[s][pack]["lfs"][i]["coverage"] for s in sites
                                     for i, r in enumerate(per_site[s][pack]["lfs"]) if r["lf"] == name},
                        "emp_acc": {s: next(r for r in per_site[s][pack]["lfs"] if r["lf"] == name)["emp_acc"]
                                    for s in acc}})
    return out


def _as_iv(m: dict) -> Interval:
    if m["value"] is not None:
        return (m["value"], m["value"])
    return tuple(m["range"]) if m.get("range") else None


def combine(outcomes: Sequence[SiteOutcome], *, dataset: str, packs: Sequence[dict[str, Any]],
            min_coverage: float = DEFAULT_MIN_COVERAGE, max_ratio: float = DEFAULT_MAX_RATIO,
            min_accuracy: float = DEFAULT_MIN_ACCURACY) -> dict:
    """The federated report: every site's status, per-site and pooled metrics per pack (and the
    combination), label-model agreement, which LFs generalise. ``packs``: ``[{name, content_hash}]`` as
    sent. Built from the aggregates only."""
    per_site: dict[str, dict] = {}
    states: dict[str, list[dict]] = {}
    classes_of: dict[str, list[str]] = {}
    for o in outcomes:
        if not o.usable:
            continue
        k = o.aggregate.policy.min_group_size
        per_site[o.site] = {}
        for p in o.aggregate.packs:
            st = _pack_state(p, k, exact=o.aggregate.policy.noise_epsilon is None)
            classes_of[p.pack] = list(p.classes)
            per_site[o.site][p.pack] = {"kind": p.kind, **_render_state(st, p.classes)}
            states.setdefault(p.pack, []).append(st)
    pooled = {name: {"sites": [s for s in per_site if name in per_site[s]], **_render_state(_pool(sts), classes_of[name])}
              for name, sts in states.items()}
    return {
        "report": REPORT_FORMAT,
        "format_version": REPORT_VERSION,
        "dataset": dataset,
        "packs": list(packs),
        "sites": [{"site": o.site, "status": o.status, "reason": o.reason, "seconds": o.seconds,
                   "flow_run_id": o.flow_run_id,
                   "has_ground_truth": o.aggregate.has_ground_truth if o.aggregate else None,
                   "min_group_size": o.aggregate.policy.min_group_size if o.aggregate else None,
                   "noise_epsilon": o.aggregate.policy.noise_epsilon if o.aggregate else None,
                   "refusals": [r.model_dump(mode="json") for r in o.aggregate.reasons] if o.aggregate else []}
                  for o in outcomes],
        "usable_sites": sorted(per_site),
        "per_site": per_site,
        "pooled": pooled,
        "generalisation": generalisation(per_site, list(states), min_coverage=min_coverage, max_ratio=max_ratio,
                                         min_accuracy=min_accuracy),
        "settings": {"abstain": "negative", "min_coverage": min_coverage, "max_ratio": max_ratio,
                     "min_accuracy": min_accuracy},
    }


# ------------------------------------------------------------------------------------------- Markdown


def metric_text(m: Optional[dict]) -> str:
    """A metric (:func:`metric`) for a table: a count as an integer, a fraction with 4 decimals, a range, or n/a."""
    if not m:
        return "-"
    v = m.get("value")
    if v is not None:
        return str(int(v)) if float(v).is_integer() and v > 1 else f"{v:.4f}"
    if m.get("range"):
        return f"[{m['range'][0]:.4f}, {m['range'][1]:.4f}]"
    return "n/a"


#: The LF table's columns, ``(key, heading)``, in the Markdown report and on the report page.
LF_COLUMNS = (("lf", "LF"), ("label", "label"), ("coverage", "coverage"), ("overlap", "overlap"),
              ("conflict", "conflict"), ("emp_acc", "emp. acc."), ("f1", "F1"))


def truth_text(has_ground_truth: Optional[bool]) -> str:
    """A site's ground truth for a table: yes, no, or - (the site sent no aggregate)."""
    return "-" if has_ground_truth is None else ("yes" if has_ground_truth else "no")


def state_summary(st: dict) -> str:
    """One pack's pooled or per-site state in a line: rows, coverage, overlap, conflict, the label model's
    coverage, agreement and F1, and majority vote's F1 (where the sites had ground truth)."""
    m, lm = metric_text, st.get("label_model") or {}
    return (f"rows {m(st.get('rows'))}, coverage {m(st.get('coverage'))}, overlap {m(st.get('overlap'))}, conflict "
            f"{m(st.get('conflict'))}; label model {lm.get('name')}: coverage {m(lm.get('coverage'))}, agreement with "
            f"majority vote {m(lm.get('agreement_with_majority_vote'))}"
            + (f", F1 {m(lm.get('f1'))}" if "f1" in lm else "")
            + (f"; majority vote F1 {m((st.get('majority_vote') or {}).get('f1'))}" if "majority_vote" in st else ""))


def lf_rows(st: dict) -> list[dict[str, str]]:
    """One row of text per LF of a state, keyed by :data:`LF_COLUMNS`."""
    return [{"lf": str(r.get("lf")), "label": str(r.get("label")),
             **{k: metric_text(r.get(k)) for k, _ in LF_COLUMNS[2:]}} for r in st.get("lfs") or []]


def render_markdown(report: dict) -> str:
    """The federated report as Markdown (ranges where counts were suppressed)."""
    md = [f"# Federated LF analysis: dataset `{report['dataset']}`\n"]
    md.append("| site | status | ground truth | k | noise epsilon | reason |\n| --- | --- | --- | ---: | ---: | --- |")
    for s in report["sites"]:
        md.append(f"| {s['site']} | {s['status']} | {truth_text(s['has_ground_truth'])} "
                  f"| {s['min_group_size'] or '-'} | {s['noise_epsilon'] or '-'} | {(s['reason'] or '').replace('|', '/')[:160]} |")
    md.append("")
    for scope, title in (("pooled", "Pooled over the sites that answered"),):
        for name, st in report[scope].items():
            md.append(f"## {title}: `{name}` (sites: {', '.join(st['sites'])})\n")
            md.append(_pack_md(st))
    for site, packs in report["per_site"].items():
        for name, st in packs.items():
            md.append(f"## Site `{site}`: `{name}`\n")
            md.append(_pack_md(st))
    md.append("## Which LFs generalise\n")
    md.append("| pack | LF | verdict | why |\n| --- | --- | --- | --- |")
    for g in report["generalisation"]:
        md.append(f"| {g['pack']} | {g['lf']} | {g['verdict']} | {g['why']} |")
    return "\n".join(md) + "\n"


def _pack_md(st: dict) -> str:
    head = "| " + " | ".join(h for _, h in LF_COLUMNS) + " |\n| --- | --- |" + " ---: |" * (len(LF_COLUMNS) - 2)
    lines = [state_summary(st), "", head]
    lines += ["| " + " | ".join(r[k] for k, _ in LF_COLUMNS) + " |" for r in lf_rows(st)]
    return "\n".join(lines) + "\n"


__all__ = ["LF_COLUMNS", "REPORT_FORMAT", "classifier_scores", "combine", "generalisation", "interval", "lf_rows",
           "metric", "metric_text", "render_markdown", "state_summary", "truth_text"]
