"""The page of a federated request (``flamenco federate``): each site's status with its reason and
refusals, pooled and per-site LF tables (ranges where a site suppressed a count), and which LFs
generalise. Rendered from ``report.json``, which holds aggregates only."""

from __future__ import annotations

from pathlib import Path

from flamenco_core.report.html import definitions, esc, outcome_badges, section, table


def _fed_state(st: dict, head: str) -> str:
    """One pack's pooled or per-site state: its headline line and the LF table (ranges where counts were
    suppressed at a site), as the Markdown report words them."""
    from flamenco_core.federation.combine import LF_COLUMNS, lf_rows, state_summary

    return f"<h3>{esc(head)}</h3><p>{esc(state_summary(st))}</p>" + table(lf_rows(st), LF_COLUMNS)


def federation_sections(folder: Path, rep: dict) -> tuple[str, str, list[str]]:
    """Title, subtitle and sections of the page of ``flamenco federate``'s output folder."""
    sites = rep.get("sites") or []
    usable = rep.get("usable_sites") or []
    sections = [section("Summary", definitions([
        ("dataset", rep.get("dataset")),
        ("packs", ", ".join(f"{p.get('name')} {p.get('version') or ''}".strip() for p in rep.get("packs") or [])),
        ("sites asked", ", ".join(s.get("site") for s in sites)),
        ("sites that answered with counts", ", ".join(usable) or "none"),
        ("what came back", "aggregates only: counts under each site's policy, suppressed below its k or noised"),
        ("request", rep.get("request_id")),
    ]), "summary")]
    counts: dict[str, int] = {}
    for s in sites:
        counts[s.get("status")] = counts.get(s.get("status"), 0) + 1
    body = "<h3>Sites</h3>" + outcome_badges(counts)
    from flamenco_core.federation.combine import truth_text

    rows = [{"site": s.get("site"), "status": s.get("status"), "truth": truth_text(s.get("has_ground_truth")),
             "k": s.get("min_group_size"), "epsilon": s.get("noise_epsilon"), "seconds": s.get("seconds"),
             "reason": s.get("reason"),
             "refusals": "; ".join(f"{r.get('code')} ({r.get('lf') or r.get('feature') or r.get('pack') or '-'})"
                                   for r in s.get("refusals") or [] if s.get("status") == "refused")}
            for s in sites]
    body += table(rows, [("site", "site"), ("status", "status"), ("truth", "ground truth"), ("k", "k"),
                         ("epsilon", "noise epsilon"), ("seconds", "seconds"), ("reason", "reason"),
                         ("refusals", "refusals")])
    sections.append(section("Outcomes", body, "outcomes"))
    pooled = rep.get("pooled") or {}
    if pooled:
        sections.append(section("Pooled over the sites that answered", "".join(
            _fed_state(st, f"{name} (sites: {', '.join(st.get('sites') or [])})") for name, st in pooled.items()),
            "comparison"))
    gen = rep.get("generalisation") or []
    if gen:
        sections.append(section("Which LFs generalise", table(gen, [("pack", "pack"), ("lf", "LF"), ("verdict", "verdict"),
                                                                    ("why", "why")]), "generalisation"))
    per_site = rep.get("per_site") or {}
    if per_site:
        sections.append(section("Per site", "".join(
            _fed_state(st, f"{site}: {name}") for site, packs in per_site.items() for name, st in packs.items()), "sites"))
    return (f"Flamenco federation: dataset {rep.get('dataset')}",
            f"{len(sites)} site(s): " + ", ".join(f"{k} {v}" for k, v in counts.items()), sections)


__all__ = ["federation_sections"]
