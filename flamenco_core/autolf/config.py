"""Settings of a Snuba run (:class:`SnubaConfig`) and the reasons a run stops."""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .candidates import F1_AVERAGES, MODEL_KINDS, SPEC_KINDS

STOP_REASONS = ("feedback_empty", "feedback_one_class", "no_new_candidates", "budget")


class SnubaConfig(BaseModel):
    """Settings of :func:`generate_lfs` (all recorded with a run; every random step uses ``seed``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_cardinality: int = Field(1, ge=1, le=3, description="largest feature subset; tree depth = subset size")
    models: tuple[str, ...] = Field(("tree",), description="candidate generators: tree, logreg, knn")
    beta_grid: tuple[float, ...] = Field(tuple(float(x) for x in np.linspace(0.25, 0.45, 10)),
                                         description="abstain bands tried per candidate")
    b: float = Field(0.5, gt=0.0, lt=1.0, description="decision centre")
    budget: int = Field(10, ge=1, description="most rounds")
    first_round_keep: int = Field(3, ge=1)
    keep_per_round: int = Field(1, ge=1)
    seed: int = 0
    classes: tuple[str, str] = ("good", "noise")
    positive: str = "noise"
    label_model: Literal["auto", "snorkel", "majority", "labeled_nb"] = Field(
        "auto", description="auto: the best on the labeled rows of Snorkel (two priors), majority vote and "
                            "labeled naive Bayes (see verify.fit_label_model)")
    label_model_params: dict[str, Any] = Field(default_factory=dict)
    class_balance: Union[Literal["labeled"], None, tuple[float, float]] = Field(
        "labeled", description="label-model prior: estimated from the labeled set, uniform (None), or given")
    lm_columns: Literal["heuristic", "spec"] = "heuristic"
    f1_average: str = Field("macro", description="F1 for beta and score: macro, positive, weighted, micro")
    skip_trivial: bool = Field(True, description="skip heuristics whose labeled F1 does not beat voting one class everywhere")
    emit_specs_only: bool = Field(True, description="only candidates that can be written as LF specs (trees)")
    percentile_decimals: int = Field(2, ge=0, le=6)
    max_percentile_decimals: int = Field(4, ge=0, le=6)
    class_weight: Optional[Literal["balanced"]] = None
    min_samples_leaf: int = Field(1, ge=1)
    knn_neighbors: int = Field(5, ge=1)
    pack_name: str = "snuba-autolf"
    group: Optional[str] = None
    name_prefix: str = Field("snuba", pattern=r"^[A-Za-z][A-Za-z0-9_]*$", max_length=32)

    @field_validator("models")
    @classmethod
    def _known_models(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [m for m in v if m not in MODEL_KINDS]
        if bad or not v:
            raise ValueError(f"models must be a non-empty subset of {MODEL_KINDS}; got {v}")
        return tuple(dict.fromkeys(v))

    @field_validator("beta_grid")
    @classmethod
    def _betas(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not (0.0 < x < 0.5) for x in v):
            raise ValueError("beta_grid needs values in (0, 0.5)")
        return v

    @model_validator(mode="after")
    def _check(self) -> "SnubaConfig":
        if self.positive not in self.classes or self.classes[0] == self.classes[1]:
            raise ValueError(f"positive {self.positive!r} must be one of two distinct classes {self.classes}")
        if self.f1_average not in F1_AVERAGES:
            raise ValueError(f"f1_average must be one of {F1_AVERAGES}")
        if self.max_percentile_decimals < self.percentile_decimals:
            raise ValueError("max_percentile_decimals must be >= percentile_decimals")
        if self.emit_specs_only and any(m not in SPEC_KINDS for m in self.models):
            raise ValueError(
                f"models {[m for m in self.models if m not in SPEC_KINDS]} cannot be written as threshold LF specs "
                "(logistic regression weighs features together; kNN votes by distance to the labeled rows themselves); "
                "set emit_specs_only=False to use them as comparison-only heuristics"
            )
        if isinstance(self.class_balance, tuple) and (min(self.class_balance) <= 0 or abs(sum(self.class_balance) - 1) > 1e-6):
            raise ValueError("class_balance must be two positive numbers summing to 1")
        return self

    @property
    def pos(self) -> int:
        """Index of the positive class in ``classes``."""
        return self.classes.index(self.positive)

