"""Settings of the automatic latency path (``conf/latency.yaml``), validated by pydantic."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from flamenco_core.models.config import EndModelConfig


CLASSES = ("good", "noise")


METRIC_KEYS = ("f1_good", "f1_noise", "f1_macro")


class ModalityConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    min_height: float = Field(0.10, gt=0, lt=1, description="peak height relative to the highest peak")
    bw_method: Union[str, float, None] = Field("robust", description="KDE bandwidth: scott, silverman, robust or a factor")
    min_subset: int = Field(30, ge=1)
    tiny: Literal["merge", "skip"] = "merge"
    plot: bool = True


class ThresholdConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["median_mad", "iqr", "std"] = "median_mad"
    k: Optional[float] = None


class ModelConfig(EndModelConfig):
    """The latency path's end classifier (:class:`~flamenco_core.models.config.EndModelConfig`), chosen per
    SD pair by its size."""

    # The paper chose the forest for its 100-450-ping Atlas pairs (300-1,350 replies); Ark pairs are larger.
    small_threshold: int = Field(2000, ge=1, description="pairs with fewer rows get the random forest")
    # max_train_rows: an LSTM epoch costs a step per batch of training rows; beyond 20,000 a seeded sample
    # of rows is trained on (their windows still read every row), so a pair's cost grows with its rows
    # only through features, labels and predictions (benchmarks/latency_scaling.py).
    lstm: dict[str, Any] = Field(default_factory=lambda: {"epochs": 30, "hidden": 32, "batch_size": 128, "lr": 0.003,
                                                          "max_train_rows": 20_000})
    random_forest: dict[str, Any] = Field(default_factory=lambda: {"n_iter": 4, "n_splits": 3},
                                          validation_alias=AliasChoices("random_forest", "forest"))


class LatencyConfig(BaseModel):
    """Settings of the latency path (``conf/latency.yaml``); recorded with every run."""

    model_config = ConfigDict(extra="forbid")
    splits: Union[Literal["auto", "ark", "atlas"], tuple[float, float, float]] = Field(
        "auto", description="auto: ark (65/25/10) for scamper/warts data, atlas (55/20/25) for Atlas")
    min_points: int = Field(100, ge=1)
    window: int = Field(10, ge=2)
    features: Literal["window", "raw"] = "window"
    modality: ModalityConfig = Field(default_factory=ModalityConfig)
    thresholds: ThresholdConfig = Field(default_factory=ThresholdConfig)
    # Majority vote, not the labeled-F1 choice: when every LF separates the labeled rows perfectly (usual
    # on relative features) that choice is a tie, and Snorkel's model then follows the most conservative
    # LF on the unlabeled rows. Depth-2 trees let one LF say "far from the local baseline AND from every
    # route level", which separates spikes from route flapping (benchmarks/latency_robustness.py).
    # min_samples_leaf: a leaf voted by two or three labeled rows (say, a noise spike that happened to sit
    # below a lagging baseline) is a coincidence, not a rule.
    snuba: dict[str, Any] = Field(default_factory=lambda: {"budget": 6, "label_model": "majority", "max_cardinality": 2,
                                                           "min_samples_leaf": 5})
    model: ModelConfig = Field(default_factory=ModelConfig)
    baselines: tuple[str, ...] = ("lof", "elliptic_envelope", "robust_covariance", "isolation_forest")
    contamination: Union[Literal["auto"], float] = "auto"
    relative_window: int = Field(30, ge=2, description="past points in the local baseline of the relative features")
    absolute_features: bool = Field(False, description="also offer rtt_ms and its window statistics (absolute "
                                    "levels, which do not transfer to a new route or a level shift) to the subset-level LFs")
    two_sided: bool = Field(True, description="also deviations that look both ways in time (history labeling); "
                                              "false: causal features only, for online use")
    two_sided_window: int = Field(21, ge=3, description="points in the centred window of the two-sided features")
    # Wider than the centred window: a burst of similar spikes longer than half of it lifts both neighbour
    # medians, and a wider centred window would straddle more route changes, inflating its MAD.
    neighbour_window: int = Field(41, ge=3, description="points in the neighbour score's window (nrz: the lower "
                                  "of the medians of the half-window before and after the row)")
    min_class_rows: int = Field(5, ge=1, description="labeled rows of each class a level needs to learn LFs")
    heuristic_k: float = Field(3.5, gt=0, description="without user labels: robust z above which the heuristic pool says noise")
    noise_min_z: float = Field(3.0, ge=0, description="learned labels never call noise a row that stands less than "
                               "this many robust standard deviations above both its centred and its neighbour "
                               "baseline (causal: its rolling baseline), nor less than the calmest of the pair's "
                               "labeled noise rows; no floor where the pair has no labeled noise; 0 turns it off")
    # 6: a route that only the unlabeled period visits can jitter several times as much as the labeled ones
    # (2-6 times the series' usual jump on the scenario families), while a burst's rows jump 10 times and more
    noise_min_rough: float = Field(6.0, ge=0, description="two-sided: learned labels never call noise a row that stands "
                                   "less than noise_min_z above its centred baseline and jumps less than this "
                                   "(rtt_ms_pair_rough), nor less than the calmest such labeled noise row; 0 turns it off")
    envelope_guard: bool = Field(True, description="rows beyond the envelope of the labeled good rows are noise even "
                                                   "where the learned LFs say good")
    envelope_floor: float = Field(6.0, gt=0, description="the envelope never calls noise a row less than this many "
                                  "robust standard deviations above its baseline (a small pool's highest good row "
                                  "underestimates the highest of many more)")
    envelope_margin: float = Field(1.5, ge=1, description="envelope: noise beyond this multiple of the labeled good rows' highest robust z")
    seed: int = 0
    runner: Union[None, Literal["threads", "processes", "dask"], dict[str, Any]] = Field(
        None, description="the per-pair fan-out's task runner: a kind, or {kind, workers, address}; the CLI's "
                          "--runner/--workers/--scheduler win over it (tasks/runners.py)")

    @classmethod
    def from_yaml(cls, path: Union[str, Path, None]) -> "LatencyConfig":
        """The settings in the YAML file ``path`` over the defaults (``None``: the defaults), through the
        project's one settings loader; an invalid file raises ``ValueError`` naming it and each setting."""
        from flamenco_core.config import load_settings

        if path is None:
            return cls()
        try:
            return load_settings(cls, [path], what="latency config")
        except ValueError as exc:
            raise ValueError(str(exc) if str(path) in str(exc) else f"{path}: {exc}") from None


def resolve_ratios(config: LatencyConfig, source: str) -> Union[str, tuple[float, float, float]]:
    if config.splits != "auto":
        return config.splits
    return "atlas" if source == "atlas" else "ark"
