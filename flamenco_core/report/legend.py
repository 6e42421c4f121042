"""The A/B/C legend of LF combinations: one letter per LF, a combination named by its letters ("A+B").

Full combination names ("src_port_le_6600_attack + src_port_ge_9000_benign") do not fit a table column,
a terminal or MLflow's run-name column, and cut to a prefix they look identical. Letters follow the order
in which LFs first appear in the experiment's combinations (the default experiment starts with every
single LF, so that is the pack order); the legend is printed beside every table that uses it.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence

#: A joined name longer than this is shortened to its first letters and the LF count.
MAX_SHORT = 24


def letter(i: int) -> str:
    """The ``i``-th legend letter: A..Z, then AA, AB, ... (spreadsheet columns)."""
    out = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        out = chr(ord("A") + r) + out
    return out


def _lfs(combo: Any) -> Sequence[str]:
    if isinstance(combo, Mapping):
        return list(combo.get("lfs") or combo.get("refs") or [])
    return list(getattr(combo, "lfs", None) or getattr(combo, "refs", None) or combo or [])


def lf_legend(combinations: Iterable[Any]) -> dict[str, str]:
    """``{lf name: letter}`` over ``combinations`` (records, dicts with ``lfs``, objects with ``.lfs`` or
    plain lists of names), in order of first appearance."""
    names: dict[str, str] = {}
    for combo in combinations:
        for lf in _lfs(combo):
            if lf not in names:
                names[lf] = letter(len(names))
    return names


def short_name(lfs: Sequence[str], legend: Mapping[str, str], label: Optional[str] = None) -> str:
    """A combination's short name: its display ``label`` when the experiment file gave one, else its
    letters joined by "+" ("A+B"); a name longer than :data:`MAX_SHORT` keeps its first letters and
    says how many LFs there are ("A+B+C+D+E+…(12 LFs)"). An LF missing from the legend keeps its name."""
    if label:
        return str(label)
    parts = [legend.get(lf, lf) for lf in lfs]
    name = "+".join(parts)
    if len(name) <= MAX_SHORT:
        return name
    head = ""
    for p in parts:
        if len(head) + len(p) + 1 > MAX_SHORT - 10:
            break
        head += p + "+"
    return f"{head}…({len(parts)} LFs)"


def legend_text(legend: Mapping[str, str], sep: str = "   ") -> str:
    """``"A = name   B = name"``: the legend on one line (tables print it below themselves)."""
    return sep.join(f"{v} = {k}" for k, v in legend.items())
