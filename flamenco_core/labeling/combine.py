"""Merging LF packs from several groups into one, keeping each LF's provenance (:func:`combine_packs`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Optional, Union

from .expr import SpecError

if TYPE_CHECKING:  # spec.py re-exports this module's names, so it imports spec.py only when called
    from .spec import LFPack, LFSpec

@dataclass
class CombineReport:
    """What :func:`combine_packs` did: duplicates dropped, names changed to avoid clashes."""

    #: (kept LF, its pack, dropped LF, its pack, content hash)
    duplicates: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    #: (pack, original name, new name): same name, different content
    renamed: list[tuple[str, str, str]] = field(default_factory=list)
    sources: list[tuple[str, Union[int, str], str]] = field(default_factory=list)  # (pack, version, hash)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data for the run log."""
        return {
            "sources": [{"pack": p, "version": v, "content_hash": h} for p, v, h in self.sources],
            "duplicates": [
                {"kept": k, "kept_pack": kp, "dropped": d, "dropped_pack": dp, "content_hash": h}
                for k, kp, d, dp, h in self.duplicates
            ],
            "renamed": [{"pack": p, "from": a, "to": b} for p, a, b in self.renamed],
        }


def combine_packs(
    packs: Iterable[LFPack],
    name: str,
    version: Union[int, str] = 1,
    group: Optional[str] = None,
    description: Optional[str] = None,
) -> tuple[LFPack, CombineReport]:
    """Merge packs into one, keeping each LF's provenance.

    * Classes must be the same set in every pack (labels are names, so order may differ; the first
      pack's order wins).
    * An LF whose content (:attr:`LFSpec.content_hash`) was already taken is a duplicate: the first one
      is kept, the later one dropped and reported.
    * Same name, different content: the later LF is renamed ``name__<its pack's group or name>``
      (with a counter if that is taken too) and reported.
    * LFs without ``group``/``author`` inherit their pack's group, so the merged pack still says who
      contributed what. ``universal_features`` is the union.
    """
    from .spec import LFPack

    packs = list(packs)
    if not packs:
        raise SpecError("combine needs at least one pack")
    classes = list(packs[0].classes)
    for p in packs[1:]:
        if set(p.classes) != set(classes):
            raise SpecError(f"classes differ: {packs[0].name!r} has {classes}, {p.name!r} has {p.classes}", pack=p.name)
    report = CombineReport(sources=[(p.name, p.version, p.content_hash) for p in packs])
    by_hash: dict[str, tuple[str, str]] = {}
    names: set[str] = set()
    lfs: list[LFSpec] = []
    universal: list[str] = []
    for p in packs:
        for f in p.universal_features:
            if f not in universal:
                universal.append(f)
        for lf in p.lfs:
            h = lf.content_hash
            if h in by_hash:
                kept, kept_pack = by_hash[h]
                report.duplicates.append((kept, kept_pack, lf.name, p.name, h))
                continue
            new_name = lf.name
            if new_name in names:
                base = f"{lf.name}__{_slug(p.group or p.name)}"
                new_name, i = base, 2
                while new_name in names:
                    new_name, i = f"{base}_{i}", i + 1
                report.renamed.append((p.name, lf.name, new_name))
            names.add(new_name)
            by_hash[h] = (new_name, p.name)
            lfs.append(lf.model_copy(update={"name": new_name, "group": lf.group or p.group}))
    groups = [p.group for p in packs if p.group]
    data = {
        "pack": name,
        "version": version,
        "group": group if group is not None else ("+".join(dict.fromkeys(groups)) or None),
        "description": description,
        "classes": classes,
        "universal_features": universal,
        "lfs": [lf.model_dump(mode="json", exclude_none=True) for lf in lfs],
    }
    return LFPack.from_dict({k: v for k, v in data.items() if v is not None}), report


def _slug(text: str) -> str:
    out = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in str(text))
    return out.strip("_") or "pack"
