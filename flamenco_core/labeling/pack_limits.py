"""Size caps on LF pack files (:class:`PackLimits`), checked before a pack is parsed or validated."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from .expr import SpecError

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


def read_capped(path: Path, limits: Optional[PackLimits]) -> str:
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
