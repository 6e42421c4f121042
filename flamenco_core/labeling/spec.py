"""Declarative LF specs and packs: the unit research groups share.

Definitions and design notes: ``docs/labeling.md``. Size caps on pack files: :mod:`.pack_limits`; merging
packs: :mod:`.combine` (its names are re-exported here)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr, ValidationError, model_validator

from .combine import CombineReport, combine_packs
from .expr import Expression, SpecError, canonical_stat, parse_expression
from .pack_limits import (
    DEFAULT_LIMITS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_CONDITIONS,
    DEFAULT_MAX_LFS,
    DEFAULT_MAX_VALUES,
    HARD_MAX_CONDITIONS,
    PackLimits,
    check_pack_size,
    read_capped,
)

OPS = ("<=", "<", ">=", ">", "==", "!=", "in", "between")
Op = Literal["<=", "<", ">=", ">", "==", "!=", "in", "between"]
Scalar = Union[StrictInt, StrictFloat, StrictStr]

#: Feature names are column names of canonical tables (snake_case identifiers).
FEATURE_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: LF names become Parquet column names and CLI ``--allow`` arguments.
LF_NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
MAX_IN_VALUES = 1024


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
        text = read_capped(path, limits)
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
            text = read_capped(Path(path_or_text), limits)
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
        """The pack as JSON text; also written to ``path`` when given."""
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
        """The LF names, in pack order."""
        return [lf.name for lf in self.lfs]

    @property
    def cardinality(self) -> int:
        """Number of classes."""
        return len(self.classes)

    def class_index(self, label: str) -> int:
        """Position of ``label`` in ``classes`` (its class index in a label matrix)."""
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
        """The LF named ``name``; KeyError if the pack has none."""
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

__all__ = [
    "OPS",
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_CONDITIONS",
    "DEFAULT_MAX_LFS",
    "DEFAULT_MAX_VALUES",
    "FEATURE_PATTERN",
    "HARD_MAX_CONDITIONS",
    "LF_NAME_PATTERN",
    "MAX_IN_VALUES",
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
