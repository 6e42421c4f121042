"""The LF catalog of a flow-records run (the union of its packs, with references) and its LF combinations."""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from flamenco_core.experiments.flow_records.config import CombinationEntry, ExperimentFile
from flamenco_core.labeling.spec import LFPack, LFSpec, SpecError, combine_packs


def load_packs(sources: Iterable[Union[str, Path, LFPack]]) -> list[LFPack]:
    """LF packs from YAML/JSON files (or packs); a :class:`SpecError` names the file."""
    out = []
    for s in sources:
        if isinstance(s, LFPack):
            out.append(s)
            continue
        out.append(LFPack.load(s))
    if not out:
        raise SpecError("no LF packs given")
    return out


@dataclass(frozen=True)
class LFEntry:
    """One LF of the run: ``name`` (unique in the run: a label-matrix column), ``ref`` (``pack:lf`` as
    written), its ``pack``, its ``group`` (the LF's, else the pack's group, else the pack's name) and
    its ``spec`` (named ``name``)."""

    name: str
    ref: str
    pack: str
    group: str
    spec: LFSpec

    @property
    def features(self) -> list[str]:
        """Features the LF reads, in the order its conditions name them."""
        return _ordered_features([self.spec])


def _ordered_features(specs: Iterable[LFSpec]) -> list[str]:
    from flamenco_core.labeling.expr import parse_expression

    out: list[str] = []
    for spec in specs:
        for c in spec.when:
            out.append(c.feature)
            for v in c.values:
                if isinstance(v, str):
                    out.extend(f for f, _ in parse_expression(v).statistics(c.feature))
    return list(dict.fromkeys(out))


@dataclass
class Catalog:
    """The LFs of all packs (union via :func:`~flamenco_core.labeling.spec.combine_packs`: an LF whose
    content another pack already has is an alias of it; a name clash with different content is renamed
    ``name__group``), and how experiment files may refer to them."""

    packs: list[LFPack]
    classes: list[str]
    entries: list[LFEntry]
    aliases: dict[str, str]
    combine_report: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """The run's LF names, in pack order (the label matrices' columns)."""
        return [e.name for e in self.entries]

    def entry(self, name: str) -> LFEntry:
        """The entry of a run LF name."""
        return self.entries[self.index(name)]

    def index(self, name: str) -> int:
        """Column of a run LF name in the label matrices (``KeyError`` when unknown)."""
        for i, e in enumerate(self.entries):
            if e.name == name:
                return i
        raise KeyError(name)

    def resolve(self, ref: str) -> str:
        """The run's LF name for ``ref`` (``pack:lf``, or a plain LF name unique across the packs).
        ``KeyError`` with a message for unknown or ambiguous names."""
        ref = str(ref).strip()
        if ":" in ref:
            if ref in self.aliases:
                return self.aliases[ref]
            pack = ref.rsplit(":", 1)[0]
            known = sorted(self.aliases)
            hint = difflib.get_close_matches(ref, known, n=3)
            if pack not in {p.name for p in self.packs}:
                raise KeyError(f"unknown LF {ref!r}: no pack named {pack!r} (packs: {', '.join(p.name for p in self.packs)})")
            raise KeyError(f"unknown LF {ref!r}" + (f"; did you mean {', '.join(hint)}?" if hint else ""))
        matches = {e.name for e in self.entries if e.name == ref}
        matches |= {target for alias, target in self.aliases.items() if alias.rsplit(":", 1)[1] == ref}
        if len(matches) == 1:
            return matches.pop()
        if len(matches) > 1:
            refs = sorted(a for a, t in self.aliases.items() if a.rsplit(":", 1)[1] == ref)
            raise KeyError(f"LF name {ref!r} is ambiguous across packs; write one of {', '.join(refs)}")
        plain = sorted({a.rsplit(":", 1)[1] for a in self.aliases} | set(self.names))
        hint = difflib.get_close_matches(ref, plain, n=3)
        raise KeyError(f"unknown LF {ref!r}" + (f"; did you mean {', '.join(hint)}?" if hint else ""))

    def pack_of(self, names: Sequence[str], name: str = "combination") -> LFPack:
        """A pack holding the LFs ``names`` (in that order) with the run's classes."""
        return LFPack.from_dict({
            "pack": name,
            "classes": list(self.classes),
            "lfs": [self.entry(n).spec.model_dump(mode="json", exclude_none=True) for n in names],
        })

    def features(self, names: Optional[Sequence[str]] = None) -> list[str]:
        """Features read by the LFs ``names`` (default: all), in order of appearance."""
        names = self.names if names is None else names
        return _ordered_features(self.entry(n).spec for n in names)


def build_catalog(packs: Sequence[LFPack]) -> Catalog:
    """The run's LF catalog from ``packs`` (their classes must be the same set; pack names distinct)."""
    packs = list(packs)
    if not packs:
        raise SpecError("no LF packs given")
    seen: set[str] = set()
    for p in packs:
        if p.name in seen:
            raise SpecError(f"two packs are named {p.name!r}; pack names must be distinct to refer to their LFs")
        seen.add(p.name)
    union, report = combine_packs(packs, name="+".join(p.name for p in packs))
    renamed = {(p, a): b for p, a, b in report.renamed}
    dropped = {(dp, d): k for k, _kp, d, dp, _h in report.duplicates}
    entries: list[LFEntry] = []
    aliases: dict[str, str] = {}
    for p in packs:
        for lf in p.lfs:
            ref = f"{p.name}:{lf.name}"
            if (p.name, lf.name) in dropped:
                aliases[ref] = dropped[(p.name, lf.name)]
                continue
            name = renamed.get((p.name, lf.name), lf.name)
            spec = union.lf(name)
            entries.append(LFEntry(name, ref, p.name, spec.group or p.group or p.name, spec))
            aliases[ref] = name
    return Catalog(packs, list(union.classes), entries, aliases, report.to_dict())


@dataclass
class Combination:
    """One LF combination to evaluate: run LF names (``lfs``), the references as written (``refs``), an
    optional display ``label``, its ``role`` (``"whole_pack"`` produces ``labels.parquet``) and an
    ``error`` when the experiment file's entry could not be resolved (the combination then fails)."""

    index: int
    lfs: tuple[str, ...]
    refs: tuple[str, ...]
    label: Optional[str] = None
    role: str = "experiment"
    error: Optional[str] = None

    @property
    def name(self) -> str:
        """LF names joined by " + " (the tables' key)."""
        return " + ".join(self.lfs or self.refs)

    @property
    def slug(self) -> str:
        """A file-system-safe, unique folder/file stem."""
        text = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.label or "+".join(self.lfs or self.refs)).strip("_.")
        return f"c{self.index:03d}-{text[:60] or 'combination'}"

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what a Prefect task receives)."""
        return {"index": self.index, "lfs": list(self.lfs), "refs": list(self.refs), "label": self.label,
                "role": self.role, "error": self.error}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Combination":
        """Inverse of :meth:`to_dict`."""
        return cls(int(d["index"]), tuple(d.get("lfs") or ()), tuple(d.get("refs") or ()), d.get("label"),
                   d.get("role", "experiment"), d.get("error"))


def default_combinations(catalog: Catalog) -> list[Combination]:
    """Every single LF, every pair, and the whole pack (when it has more than two LFs; with one or two
    LFs the whole pack is already in the list and is marked as such)."""
    names = catalog.names
    tuples: list[tuple[str, ...]] = [(n,) for n in names] + list(itertools.combinations(names, 2))
    if len(names) > 2:
        tuples.append(tuple(names))
    return _numbered(catalog, [(t, tuple(catalog.entry(n).ref for n in t), None, None) for t in tuples])


def _numbered(catalog: Catalog, items: list[tuple]) -> list[Combination]:
    whole = frozenset(catalog.names)
    out = []
    for i, (lfs, refs, label, error) in enumerate(items):
        role = "whole_pack" if error is None and frozenset(lfs) == whole else "experiment"
        out.append(Combination(i, tuple(lfs), tuple(refs), label, role, error))
    return out


def experiment_combinations(experiment: Optional[ExperimentFile], catalog: Catalog) -> tuple[list[Combination], list[str]]:
    """The combinations of ``experiment`` (``None``: :func:`default_combinations`) and notes.

    Entries that name an unknown or ambiguous LF, or one LF twice, become combinations with an
    ``error`` (they fail; the others run). A repeated set of LFs is run once (noted). The whole pack is
    appended when the file does not list it.
    """
    if experiment is None or experiment.combinations is None:
        return default_combinations(catalog), []
    items: list[tuple] = []
    notes: list[str] = []
    seen: dict[frozenset, int] = {}
    raw: list[Any] = []
    if experiment.include_default:
        raw.extend([list(c.refs) for c in default_combinations(catalog)])
    raw.extend(experiment.combinations)
    for pos, entry in enumerate(raw):
        if isinstance(entry, CombinationEntry):
            refs, label = list(entry.lfs), entry.name
        elif isinstance(entry, str):
            refs, label = [entry], None
        else:
            refs, label = list(entry), None
        if not refs:
            items.append(((), (), label, "a combination needs at least one LF"))
            continue
        try:
            names = tuple(catalog.resolve(r) for r in refs)
        except KeyError as exc:
            items.append(((), tuple(refs), label, str(exc.args[0]) if exc.args else str(exc)))
            continue
        if len(set(names)) != len(names):
            items.append((names, tuple(refs), label, f"combination {refs} names an LF twice"))
            continue
        key = frozenset(names)
        if key in seen:
            notes.append(f"combination {refs} repeats entry {seen[key]}; run once")
            continue
        seen[key] = len(items)
        items.append((names, tuple(refs), label, None))
    if frozenset(catalog.names) not in seen:
        items.append((tuple(catalog.names), tuple(e.ref for e in catalog.entries), "whole-pack", None))
    return _numbered(catalog, items), notes
