"""Class maps: which pack class each raw label of a dataset's label column stands for.

A class map is a small YAML file (``yaml.safe_load`` only); the format: docs/labeling.md, section
``class_map.py``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .expr import SpecError

#: A class map file larger than this is refused before it is parsed (maps are a few hundred bytes).
MAX_BYTES = 200_000


class ClassMap(BaseModel):
    """A raw-label -> class map (see the module docstring for the file format)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(alias="class_map", min_length=1, max_length=256)
    description: Optional[str] = Field(default=None, max_length=8000)
    column: str = Field("label", min_length=1, max_length=256)
    classes: Optional[list[str]] = Field(default=None, min_length=2, max_length=127)
    map: dict[str, str] = Field(min_length=1)
    default: Optional[str] = None
    unknown: Literal["drop", "fail"] = "drop"

    @model_validator(mode="after")
    def _check(self) -> "ClassMap":
        keys = [k.strip().lower() for k in self.map]
        if len(set(keys)) != len(keys):
            raise ValueError("a raw label is listed twice (raw labels compare case-insensitively)")
        if self.classes is not None:
            if len(set(self.classes)) != len(self.classes):
                raise ValueError(f"classes must be distinct, got {self.classes}")
            targets = set(self.map.values()) | ({self.default} if self.default is not None else set())
            bad = sorted(targets - set(self.classes))
            if bad:
                raise ValueError(f"the map targets {bad}, which are not among its classes {self.classes}")
        return self

    @property
    def targets(self) -> list[str]:
        """The classes raw labels map to, in order of first appearance (the default last)."""
        out = list(dict.fromkeys(self.map.values()))
        if self.default is not None and self.default not in out:
            out.append(self.default)
        return out

    def check_classes(self, classes: Sequence[str], where: str = "the pack") -> None:
        """:class:`SpecError` when the map targets a class that ``classes`` (a pack's) does not have."""
        missing = [c for c in self.targets if c not in list(classes)]
        if missing:
            raise SpecError(f"class map {self.name!r} maps to {missing}, which {where} does not have (its classes: "
                            f"{list(classes)})")

    def ground_truth(self) -> dict[str, Any]:
        """The flow-records ``ground_truth`` settings that apply this map to the label column."""
        return {"column": self.column, "mapping": dict(self.map), "default": self.default, "unknown": self.unknown}

    def apply(self, raw: Any) -> pd.Series:
        """Class names for raw labels (a Series or array-like); ``<NA>`` for blank labels and for raw
        labels the map does not know when ``default`` is null."""
        s = pd.Series(raw, copy=False) if not isinstance(raw, pd.Series) else raw
        text = s.astype("string").str.strip()
        lookup = {k.strip().lower(): v for k, v in self.map.items()}
        codes, uniques = pd.factorize(text.str.lower(), use_na_sentinel=True)
        mapped = np.array([lookup.get(str(u), self.default) for u in uniques] + [None], dtype=object)
        out = pd.Series(mapped[codes], index=s.index, dtype="string")
        return out.mask(text.fillna("") == "")

    @classmethod
    def from_dict(cls, data: Any, source: str = "<class map>") -> "ClassMap":
        """Validate a mapping; :class:`SpecError` names the source and the problem."""
        if not isinstance(data, dict):
            raise SpecError(f"{source}: a class map is a mapping (class_map, map, ...)")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            msg = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ())) or 'map'}: {e.get('msg')}" for e in exc.errors())
            raise SpecError(f"{source}: invalid class map: {msg}") from None


def load_class_map(path: Union[str, Path]) -> ClassMap:
    """Load a class map YAML file (``yaml.safe_load`` only, at most :data:`MAX_BYTES`)."""
    import yaml

    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SpecError(f"{path}: a class map is at most {MAX_BYTES} bytes")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read class map {path}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise SpecError(f"{path}: not UTF-8 text: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    return ClassMap.from_dict(data, str(path))


__all__ = ["ClassMap", "MAX_BYTES", "load_class_map"]
