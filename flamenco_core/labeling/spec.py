"""Declarative LF specs and packs: the unit research groups share.

Definitions and design notes: ``docs/labeling.md``."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError, model_validator

from .expr import Expression, SpecError, canonical_stat, parse_expression

OPS = ("<=", "<", ">=", ">", "==", "!=", "in", "between")
Op = Literal["<=", "<", ">=", ">", "==", "!=", "in", "between"]
Scalar = Union[StrictInt, StrictFloat, StrictStr]

#: Feature names are column names of canonical tables (snake_case identifiers).
FEATURE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: LF names become Parquet column names and CLI ``--allow`` arguments.
LF_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
MAX_IN_VALUES = 1024

#: Default size caps for pack files (see :class:`PackLimits`).
DEFAULT_MAX_BYTES = 1_000_000
DEFAULT_MAX_LFS = 1_000
DEFAULT_MAX_CONDITIONS = 32
DEFAULT_MAX_VALUES = 100_000
#: The format's own ceiling on conditions per LF; ``PackLimits.max_conditions`` cannot raise it.
HARD_MAX_CONDITIONS = 64


@dataclass(frozen=True)
class PackLimits:
    """Size caps checked when a pack is loaded, before it is parsed (bytes) or validated (counts).

    A pack comes from another group and every LF costs parsing, validation, auditing and a column of
    the label matrix, so an oversized pack is refused with one clear error instead of minutes of work.
    ``max_bytes``: size of the file or JSON text; ``max_lfs``: entries in ``lfs``;
    ``max_conditions``: entries in one LF's ``when`` (at most :data:`HARD_MAX_CONDITIONS`);
    ``max_values``: threshold values in all conditions together (an ``in`` list counts each item).
    ``None`` switches a cap off.
    """

    max_bytes: Optional[int] = DEFAULT_MAX_BYTES
    max_lfs: Optional[int] = DEFAULT_MAX_LFS
    max_conditions: Optional[int] = DEFAULT_MAX_CONDITIONS
    max_values: Optional[int] = DEFAULT_MAX_VALUES


#: The caps :meth:`LFPack.from_yaml` and :meth:`LFPack.from_json` apply by default.
DEFAULT_LIMITS = PackLimits()


def check_pack_size(data: Any, limits: PackLimits) -> None:
    """Raise :class:`SpecError` when the loaded mapping ``data`` exceeds ``limits``.

    Only list lengths are read (no LF is validated), so a 100,000-LF pack is refused in milliseconds.
    Malformed entries are left to validation, which reports them precisely.
    """
    if not isinstance(data, dict):
        return
    pack = data.get("pack") if isinstance(data.get("pack"), str) else None
    lfs = data.get("lfs")
    if not isinstance(lfs, list):
        return
    if limits.max_lfs is not None and len(lfs) > limits.max_lfs:
        raise SpecError(
            f"the pack has {len(lfs)} LFs; at most {limits.max_lfs} are accepted (PackLimits.max_lfs): "
            "split it into smaller packs",
            pack=pack,
        )
    total = 0
    for entry in lfs:
        when = entry.get("when") if isinstance(entry, dict) else None
        if not isinstance(when, list):
            continue
        if limits.max_conditions is not None and len(when) > limits.max_conditions:
            name = entry.get("name") if isinstance(entry.get("name"), str) else None
            raise SpecError(
                f"the LF has {len(when)} conditions; at most {limits.max_conditions} are accepted "
                "(PackLimits.max_conditions)",
                pack=pack,
                lf=name,
            )
        for cond in when:
            value = cond.get("value") if isinstance(cond, dict) else None
            total += len(value) if isinstance(value, list) else 1
        if limits.max_values is not None and total > limits.max_values:
            raise SpecError(
                f"the pack holds more than {limits.max_values} threshold values (PackLimits.max_values)",
                pack=pack,
            )


def _read_capped(path: Path, limits: Optional[PackLimits]) -> str:
    """The file's text, refusing it by size before reading more than the cap."""
    cap = limits.max_bytes if limits is not None else None
    try:
        size = path.stat().st_size
        if cap is not None and size > cap:
            raise SpecError(
                f"{path}: pack file is {size} bytes; at most {cap} are accepted (PackLimits.max_bytes): "
                "split it into smaller packs"
            )
        with path.open("rb") as fh:
            # st_size can be 0 or stale (pipes, growing files): read one byte past the cap to be sure
            raw = fh.read(cap + 1) if cap is not None else fh.read()
    except OSError as exc:
        raise SpecError(f"cannot read pack file {path}: {exc}") from None
    if cap is not None and len(raw) > cap:
        raise SpecError(f"{path}: pack file is larger than {cap} bytes (PackLimits.max_bytes)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text: {exc}") from None


def _canonical_number(v: Union[int, float]) -> Union[int, float]:
    # 6600 and 6600.0 are the same threshold; hash them the same.
    if isinstance(v, float) and v.is_integer() and abs(v) < 2**53:
        return int(v)
    return v


class Condition(BaseModel):
    """One test ``feature op value``; an LF votes when all its conditions hold.

    ``value`` is a number (a literal: allowed for universal features, flagged by the audit elsewhere),
    a threshold expression string, or a list of those for ``in`` (any length) and ``between``
    (``[lo, hi]``, inclusive).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    feature: str = Field(pattern=FEATURE_PATTERN, max_length=128)
    op: Op
    value: Union[Scalar, list[Scalar]]

    @model_validator(mode="after")
    def _check_shape(self) -> "Condition":
        values = self.value if isinstance(self.value, list) else [self.value]
        if self.op == "in":
            if not isinstance(self.value, list) or not self.value:
                raise ValueError("op 'in' needs a non-empty list of values")
            if len(self.value) > MAX_IN_VALUES:
                raise ValueError(f"op 'in' takes at most {MAX_IN_VALUES} values")
        elif self.op == "between":
            if not isinstance(self.value, list) or len(self.value) != 2:
                raise ValueError("op 'between' needs a list [lo, hi]")
        elif isinstance(self.value, list):
            raise ValueError(f"op {self.op!r} takes a single value, not a list")
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError("values must be finite numbers")
        return self

    @property
    def values(self) -> list[Union[int, float, str]]:
        """The value(s) as a list (one item for comparison ops)."""
        return list(self.value) if isinstance(self.value, list) else [self.value]

    def key(self) -> str:
        """A readable, stable name for this condition: ``"bytes <= 0.5*p75"``."""
        if isinstance(self.value, list):
            shown = "[" + ", ".join(str(v) for v in self.value) + "]"
        else:
            shown = str(self.value)
        return f"{self.feature} {self.op} {shown}"

    def canonical(self) -> dict[str, Any]:
        """Content form for hashing: numbers normalized, expressions reduced to their tokens."""

        def canon(v: Union[int, float, str]) -> Union[int, float, str]:
            if isinstance(v, str):
                try:
                    return "=" + parse_expression(v).canonical
                except SpecError:
                    return "=" + v
            return _canonical_number(v)

        vals = [canon(v) for v in self.values]
        if self.op == "in":
            # membership is a set: order and repeats do not change what the LF does
            vals = sorted(set(vals), key=lambda x: (isinstance(x, str), str(x)))
        value: Any = vals if isinstance(self.value, list) else vals[0]
        return {"feature": self.feature, "op": self.op, "value": value}


class LFSpec(BaseModel):
    """A declarative labeling function: vote ``label`` when every condition in ``when`` holds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=LF_NAME_PATTERN, max_length=128)
    label: str = Field(min_length=1)
    when: list[Condition] = Field(min_length=1, max_length=HARD_MAX_CONDITIONS)
    author: Optional[str] = Field(default=None, max_length=256)
    group: Optional[str] = Field(default=None, max_length=256)
    description: Optional[str] = Field(default=None, max_length=4000)

    def canonical(self) -> dict[str, Any]:
        """What the LF does, without who wrote it: label and conditions (as a set)."""
        conds = sorted((c.canonical() for c in self.when), key=_canon_json)
        return {"label": self.label, "when": conds}

    @property
    def content_hash(self) -> str:
        """sha256 of the LF's behaviour (label + conditions); equal for duplicates under other names."""
        return hashlib.sha256(_canon_json(self.canonical()).encode()).hexdigest()

    def features(self) -> set[str]:
        """Features this LF reads, including those named in ``stat(feature)`` expressions."""
        out = set()
        for c in self.when:
            out.add(c.feature)
            for v in c.values:
                if isinstance(v, str):
                    out.update(f for f, _ in parse_expression(v).statistics(c.feature))
        return out


class LFPack(BaseModel):
    """A named, versioned collection of LF specs with group metadata and a content hash.

    ``classes`` fixes the class indices (position in the list); ``universal_features`` are features
    whose literal values mean the same everywhere (ports, protocol numbers), the only ones where a
    shared pack may hold literal numbers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(alias="pack", min_length=1, max_length=256)
    version: Union[StrictInt, StrictStr] = 1
    group: Optional[str] = Field(default=None, max_length=256)
    description: Optional[str] = Field(default=None, max_length=4000)
    classes: list[str] = Field(min_length=2, max_length=127)
    universal_features: list[str] = Field(default_factory=list)
    lfs: list[LFSpec] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check_semantics(self) -> "LFPack":
        pack = self.name
        if len(set(self.classes)) != len(self.classes) or any(not c for c in self.classes):
            raise SpecError(f"classes must be distinct non-empty names, got {self.classes}", pack=pack)
        if len(set(self.universal_features)) != len(self.universal_features):
            raise SpecError("universal_features lists a feature twice", pack=pack)
        seen: set[str] = set()
        for lf in self.lfs:
            if lf.name in seen:
                raise SpecError("LF name used twice in the pack (LF names must be unique)", pack=pack, lf=lf.name)
            seen.add(lf.name)
            if lf.label not in self.classes:
                raise SpecError(f"label {lf.label!r} is not one of the pack's classes {self.classes}", pack=pack, lf=lf.name, token=lf.label)
            for c in lf.when:
                for v in c.values:
                    if isinstance(v, str):
                        parse_expression(v, pack=pack, lf=lf.name)
        return self

    # ------------------------------------------------------------------------------------ loading

    @classmethod
    def from_dict(cls, data: Any, limits: Optional[PackLimits] = None) -> "LFPack":
        """Validate a mapping (as loaded from YAML/JSON); errors are :class:`SpecError`.

        ``limits`` (default: none, for packs built in code) caps the counts before any LF is validated.
        """
        if not isinstance(data, dict):
            raise SpecError(f"a pack must be a mapping, not {type(data).__name__}")
        if limits is not None:
            check_pack_size(data, limits)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise _spec_error_from_validation(exc, data) from None

    @classmethod
    def load(cls, path: Union[str, Path], limits: Optional[PackLimits] = DEFAULT_LIMITS) -> "LFPack":
        """Load a pack file: JSON for a ``.json`` suffix, else YAML; a :class:`SpecError` starts with the path."""
        path = Path(path)
        try:
            return cls.from_json(path, limits) if path.suffix.lower() == ".json" else cls.from_yaml(path, limits)
        except SpecError as exc:
            msg = str(exc)
            if msg.startswith(str(path)):  # file-level errors (size, YAML syntax) already name it
                raise
            raise SpecError(f"{path}: {msg}") from None

    @classmethod
    def from_yaml(cls, path: Union[str, Path], limits: Optional[PackLimits] = DEFAULT_LIMITS) -> "LFPack":
        """Load a pack from a YAML (or JSON: a subset of YAML) file, with ``yaml.safe_load`` only.

        ``limits`` (default :data:`DEFAULT_LIMITS`; ``None`` for none) is checked on the file's size
        before it is parsed and on the counts before any LF is validated.
        """
        import yaml

        path = Path(path)
        text = _read_capped(path, limits)
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SpecError(f"{path}: not valid YAML: {exc}") from None
        return cls.from_dict(data, limits=limits)

    @classmethod
    def from_json(cls, path_or_text: Union[str, Path], limits: Optional[PackLimits] = DEFAULT_LIMITS) -> "LFPack":
        """Load a pack from a JSON file or JSON text, within ``limits`` (as :meth:`from_yaml`)."""
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            text = _read_capped(Path(path_or_text), limits)
        elif limits is not None and limits.max_bytes is not None and len(text.encode("utf-8")) > limits.max_bytes:
            raise SpecError(f"JSON pack text is larger than {limits.max_bytes} bytes (PackLimits.max_bytes)")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError(f"not valid JSON: {exc}") from None
        return cls.from_dict(data, limits=limits)

    def to_dict(self) -> dict[str, Any]:
        """The pack as plain data, keys in format order, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    def to_yaml(self, path: Union[str, Path, None] = None) -> str:
        """The pack as YAML text; also written to ``path`` when given."""
        import yaml

        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, default_flow_style=None, width=120)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_json(self, path: Union[str, Path, None] = None) -> str:
        text = json.dumps(self.to_dict(), indent=2)
        if path is not None:
            Path(path).write_text(text)
        return text

    # ------------------------------------------------------------------------------------ content

    def canonical(self) -> dict[str, Any]:
        """Everything the pack says, in a canonical form (what :attr:`content_hash` hashes)."""
        d = self.model_dump(mode="json", by_alias=True)
        d["lfs"] = [
            {**lf.model_dump(mode="json"), "when": [c.canonical() for c in lf.when]} for lf in self.lfs
        ]
        return d

    @property
    def content_hash(self) -> str:
        """sha256 over canonical JSON of the whole pack: stable across key order, whitespace, YAML vs JSON."""
        return hashlib.sha256(_canon_json(self.canonical()).encode()).hexdigest()

    @property
    def lf_names(self) -> list[str]:
        return [lf.name for lf in self.lfs]

    @property
    def cardinality(self) -> int:
        return len(self.classes)

    def class_index(self, label: str) -> int:
        return self.classes.index(label)

    def features(self) -> set[str]:
        """Every feature the pack reads."""
        out: set[str] = set()
        for lf in self.lfs:
            out |= lf.features()
        return out

    def needed_stats(self) -> dict[str, set[str]]:
        """``{feature: {canonical stat}}`` read by the pack's threshold expressions."""
        need: dict[str, set[str]] = {}
        for lf in self.lfs:
            for c in lf.when:
                for v in c.values:
                    if isinstance(v, str):
                        for f, s in parse_expression(v, pack=self.name, lf=lf.name).statistics(c.feature):
                            need.setdefault(f, set()).add(s)
        return need

    def lf(self, name: str) -> LFSpec:
        for lf in self.lfs:
            if lf.name == name:
                return lf
        raise KeyError(name)


def _canon_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _spec_error_from_validation(exc: ValidationError, data: dict) -> SpecError:
    pack = data.get("pack") if isinstance(data.get("pack"), str) else None
    lfs = data.get("lfs") if isinstance(data.get("lfs"), list) else []
    lines = []
    first_lf = None
    for err in exc.errors():
        loc = list(err.get("loc", ()))
        where = ".".join(str(p) for p in loc)
        lf_name = None
        if len(loc) >= 2 and loc[0] == "lfs" and isinstance(loc[1], int) and loc[1] < len(lfs):
            entry = lfs[loc[1]]
            lf_name = entry.get("name") if isinstance(entry, dict) else None
            first_lf = first_lf or lf_name
        prefix = f"LF {lf_name!r} " if lf_name else ""
        lines.append(f"{prefix}{where}: {err.get('msg')}")
    message = "invalid pack: " + "; ".join(lines)
    return SpecError(message, pack=pack, lf=first_lf if len(lines) == 1 else None)


# ---------------------------------------------------------------------------------------------- combine


@dataclass
class CombineReport:
    """What :func:`combine_packs` did: duplicates dropped, names changed to avoid clashes."""

    #: (kept LF, its pack, dropped LF, its pack, content hash)
    duplicates: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    #: (pack, original name, new name): same name, different content
    renamed: list[tuple[str, str, str]] = field(default_factory=list)
    sources: list[tuple[str, Union[int, str], str]] = field(default_factory=list)  # (pack, version, hash)

    def to_dict(self) -> dict[str, Any]:
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


__all__ = [
    "OPS",
    "DEFAULT_LIMITS",
    "PackLimits",
    "check_pack_size",
    "Condition",
    "LFSpec",
    "LFPack",
    "CombineReport",
    "combine_packs",
    "SpecError",
    "Expression",
    "canonical_stat",
]
