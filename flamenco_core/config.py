"""Loading a pipeline's settings: YAML mappings (``yaml.safe_load`` only), overrides deep-merged over the
defaults, pydantic validation with one-line errors. Every pipeline's config loads through
:func:`load_settings`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, TypeVar, Union

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def read_mapping(source: Union[str, Path]) -> dict[str, Any]:
    """The mapping in a YAML file (empty file: ``{}``); ``ValueError`` naming the file otherwise."""
    import yaml

    path = Path(source)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    return data


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged in: nested mappings merge, anything else is replaced."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def validation_text(exc: ValidationError) -> str:
    """One line naming each invalid setting (``a.b: message; ...``)."""
    return "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())


def load_settings(model: type[M], overrides: Iterable[Any], *, defaults: Optional[Union[str, Path]] = None,
                  what: str = "config") -> M:
    """``model`` validated from ``defaults`` (a YAML file; ``None``: the model's own defaults) with each
    override deep-merged in order. An override is ``None`` (skipped), a mapping, a YAML file, or a
    ``model`` instance (its explicitly set fields). Invalid settings raise ``ValueError`` naming them."""
    data: dict[str, Any] = read_mapping(defaults) if defaults is not None else {}
    for o in overrides:
        if o is None:
            continue
        if isinstance(o, model):
            o = o.model_dump(mode="json", exclude_unset=True)
        elif isinstance(o, (str, Path)):
            o = read_mapping(o)
        elif not isinstance(o, Mapping):
            raise TypeError(f"a config override is a mapping, a YAML path or a {model.__name__}, not {type(o).__name__}")
        data = deep_merge(data, o)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"invalid {what}: {validation_text(exc)}") from None
