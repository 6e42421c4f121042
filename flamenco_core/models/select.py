"""Choosing the end classifier per dataset (SD pair, subset, or flow table).

Default, following the paper: a random forest for small series (it used one for its 100-450-point
Atlas pairs, where an LSTM has too little to learn from) and the LSTM for large ones. Config can force
either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Rows below which the random forest is chosen by default.
DEFAULT_SMALL_THRESHOLD = 1000

#: Every accepted spelling of a model kind -> the kind (the one alias table of model configs).
MODEL_ALIASES = {
    "auto": "auto",
    "lstm": "lstm",
    "random_forest": "random_forest",
    "forest": "random_forest",
    "rf": "random_forest",
}


@dataclass(frozen=True)
class ModelChoice:
    """The chosen model kind (``"lstm"`` or ``"random_forest"``) and why, for the run record."""

    kind: str
    reason: str


def _get(config, key, default):
    if config is None:
        return default
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


def choose_model(n_rows: int, config=None) -> ModelChoice:
    """Pick the end classifier for a dataset of ``n_rows`` training rows.

    ``config`` is a mapping or an object (e.g. a pydantic model) with optional ``model``
    (``"auto"`` (default), ``"lstm"``, ``"random_forest"``; aliases ``"forest"``, ``"rf"``) and
    ``small_threshold`` (default :data:`DEFAULT_SMALL_THRESHOLD`): under ``auto``, fewer rows than the
    threshold choose the random forest, otherwise the LSTM.
    """
    raw = _get(config, "model", "auto") or "auto"
    model = MODEL_ALIASES.get(str(raw).lower())
    if model is None:
        raise ValueError(f"model must be one of {sorted(MODEL_ALIASES)}, got {raw!r}")
    threshold = int(_get(config, "small_threshold", DEFAULT_SMALL_THRESHOLD))
    if model != "auto":
        return ModelChoice(model, f"forced by config (model={raw})")
    if n_rows < threshold:
        return ModelChoice("random_forest", f"{n_rows} rows < small_threshold {threshold}")
    return ModelChoice("lstm", f"{n_rows} rows >= small_threshold {threshold}")


def build_model(kind: str | ModelChoice, params: Mapping | None = None, seed: int = 0):
    """An unfitted estimator of ``kind`` with ``params`` (its constructor arguments) and ``seed`` (its
    ``random_state``).

    ``"lstm"`` gives :class:`~flamenco_core.models.lstm.LSTMClassifier`, ``"random_forest"``
    :class:`~flamenco_core.models.forest.TimeSeriesForest`; both take ``fit(X, y)`` with hard or
    probabilistic labels.
    """
    k = kind.kind if isinstance(kind, ModelChoice) else MODEL_ALIASES.get(str(kind).lower())
    params = dict(params or {})
    # the config layer's "seed" is scikit-learn's random_state (a params mapping may still say seed)
    params["random_state"] = params.pop("seed", seed)
    if k == "lstm":
        from flamenco_core.models.lstm import LSTMClassifier

        return LSTMClassifier(**params)
    if k == "random_forest":
        from flamenco_core.models.forest import TimeSeriesForest

        return TimeSeriesForest(**params)
    raise ValueError(f"unknown model kind {kind!r}")
