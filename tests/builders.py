"""Small test data built the same way in several test files: repository paths, LF pack dicts, label matrices.

Import as ``from builders import ...`` (pytest puts ``tests/`` on ``sys.path`` for ``tests/conftest.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from flamenco_core.labeling.constants import ABSTAIN

ROOT = Path(__file__).resolve().parents[1]
LF_PACKS = ROOT / "conf" / "lf_packs"
#: The two-LF CIC NTP example pack the docs show.
EXAMPLE_PACK = LF_PACKS / "example_cic_ntp_group_a.yaml"
FLOW_UNIVERSAL = ("src_port", "dst_port", "protocol")


def lf(name: str, label: str, *conds: tuple[str, str, Any], **meta: Any) -> dict[str, Any]:
    """An LF spec dict voting ``label`` when every ``(feature, op, value)`` in ``conds`` holds."""
    return {"name": name, "label": label, "when": [dict(feature=f, op=o, value=v) for f, o, v in conds], **meta}


def pack_dict(*lfs: dict[str, Any], name: str = "p", group: Optional[str] = None,
              classes: Sequence[str] = ("benign", "attack"), universal: Sequence[str] = FLOW_UNIVERSAL) -> dict[str, Any]:
    """A version-1 pack dict holding ``lfs`` (``group`` left out when ``None``)."""
    head: dict[str, Any] = {"pack": name, "version": 1}
    if group is not None:
        head["group"] = group
    return {**head, "classes": list(classes), "universal_features": list(universal), "lfs": list(lfs)}


def lf_votes(rng: np.random.Generator, y: np.ndarray, accuracies: Sequence[float], coverage: float, k: int) -> np.ndarray:
    """Votes of LFs following Dawid-Skene's model: each votes on a ``coverage`` share of rows, right with its
    accuracy, otherwise a uniformly drawn wrong class of ``k``; int8, ABSTAIN elsewhere."""
    n = len(y)
    L = np.full((n, len(accuracies)), ABSTAIN, dtype=np.int8)
    for j, a in enumerate(accuracies):
        fire = rng.random(n) < coverage
        right = rng.random(n) < a
        wrong = (y + rng.integers(1, k, n)) % k
        L[:, j] = np.where(fire, np.where(right, y, wrong), ABSTAIN)
    return L


def scenario_pair(family: str, seed: int, index: int, n_pairs: int = 4):
    """Pair ``index`` of :func:`flamenco_core.synth.scenarios.generate`'s ``family`` (seed ``seed``), time
    ordered, as ``run_pair`` takes it (``truth`` kept: it scores, never teaches)."""
    from flamenco_core.synth.scenarios import generate

    df = generate(family, n_pairs=n_pairs, seed=seed)
    pair = [g for _, g in df.groupby(["src", "dst"], sort=False)][index]
    return pair.sort_values("timestamp", kind="stable").reset_index(drop=True).drop(columns=["family"])


def unlabeled_errors(pair, labels) -> tuple[int, int, int]:
    """``(unlabeled rows, false positives, missed noise)`` of ``run_pair``'s ``labels`` against ``pair``'s
    truth, on the rows the user did not label."""
    truth = pair["truth"].astype(str).to_numpy()
    unl = pair["label"].isna().to_numpy()
    pred = labels["predicted"].fillna("good").astype(str).to_numpy()
    return (int(unl.sum()), int((unl & (pred == "noise") & (truth == "good")).sum()),
            int((unl & (pred == "good") & (truth == "noise")).sum()))
