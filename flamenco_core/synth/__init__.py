"""Seeded generators of benchmark data with known ground truth.

Each generator writes files in a real measurement format (so the project's readers parse them like any
dump) plus a Parquet labels file keyed by columns that survive ingest, and returns a :class:`SynthResult`.
They are stand-ins shaped after the paper's datasets (sizes, modality, noise, class balance, marginals),
not real data; see ``docs/synth.md``.

``GENERATORS[name](out_dir, scale=1.0, seed=0)``: ``scale`` multiplies row counts (the number of SD pairs
stays 25); the same seed and scale give byte-identical files.
"""

from __future__ import annotations

from typing import Callable

from ._common import ATLAS_KEYS, FLOW_KEYS, LATENCY_KEYS, SynthResult, join_labels, key_columns
from .ark import ark_plan, generate_ark
from .atlas import atlas_plan, generate_atlas
from .cic import generate_cic
from .holdout import hold_out_labels
from .worf import generate_worf

GENERATORS: dict[str, Callable[..., SynthResult]] = {
    "ark": generate_ark,
    "atlas": generate_atlas,
    "cic": generate_cic,
    "worf": generate_worf,
}

__all__ = [
    "ATLAS_KEYS",
    "FLOW_KEYS",
    "GENERATORS",
    "LATENCY_KEYS",
    "SynthResult",
    "ark_plan",
    "atlas_plan",
    "generate_ark",
    "generate_atlas",
    "generate_cic",
    "generate_worf",
    "hold_out_labels",
    "join_labels",
    "key_columns",
]
